"""`swarming local up|down|status`: the whole service on this machine."""

import contextlib
import functools
import json
import signal
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterator, NoReturn

import click

from local import stack
from local.processes import StartError
from shared import local_state

#: Signals that stop a foreground stack like Ctrl-C does.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
WATCH_SECS = 1.0

STATE_DIR_HELP = "State directory of the local stack (logs, tokens, what runs)."


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--state-dir", envvar=local_state.DIR_ENV, default=local_state.DEFAULT_DIR, show_default=True,
              type=click.Path(file_okay=False, path_type=Path), help=STATE_DIR_HELP)
@click.pass_context
def local(ctx: click.Context, state_dir: Path) -> None:
    """Run the emulators, every function and bots on this machine.

    The Firestore, Cloud Storage and Cloud Tasks emulators, every function
    behind one gateway, the cron that Cloud Scheduler is in production, and
    bots started from the bot zip."""
    ctx.obj = state_dir


def state_dir_option(command: Callable) -> Callable:
    """Accepts --state-dir after the command too (`swarming local up --state-dir D`)."""

    @click.option("--state-dir", "command_state_dir", default=None,
                  type=click.Path(file_okay=False, path_type=Path),
                  help=STATE_DIR_HELP + " Default: the group's --state-dir.")
    @click.pass_obj
    @functools.wraps(command)
    def wrapper(group_state_dir: Path, command_state_dir: Path | None, **kwargs: Any) -> Any:
        return command(state_dir=command_state_dir or group_state_dir, **kwargs)

    return wrapper


@local.command()
@click.option("--bots", default=1, show_default=True, type=click.IntRange(min=0),
              help="How many bots to start.")
@click.option("--detach", is_flag=True, help="Return once everything answers, leaving it running.")
@click.option("--port", default=0, type=click.IntRange(0, 65535), help="Gateway port. Default: a free one.")
@click.option("--firestore-port", default=0, type=click.IntRange(0, 65535),
              help="Firestore emulator port. Default: a free one.")
@click.option("--storage-port", default=0, type=click.IntRange(0, 65535),
              help="Cloud Storage emulator port. Default: a free one.")
@click.option("--cloud-tasks-port", default=0, type=click.IntRange(0, 65535),
              help="Cloud Tasks emulator port (gRPC). Default: a free one.")
@click.option("--config-dir", default=stack.CONFIG_DIR, show_default=True,
              type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="The service configuration pushed at start (pools, bot groups, settings).")
@state_dir_option
def up(state_dir: Path, bots: int, detach: bool, port: int, firestore_port: int, storage_port: int,
       cloud_tasks_port: int, config_dir: Path) -> None:
    """Start the stack. In the foreground it runs until Ctrl-C (or SIGTERM),
    then stops everything; with --detach stop it with 'swarming local down'."""
    with _signals_as_interrupt():
        try:
            state = stack.up(state_dir, bots=bots, gateway_port=port, firestore_port=firestore_port,
                             storage_port=storage_port, cloud_tasks_port=cloud_tasks_port, config_dir=config_dir)
        except StartError as e:
            _fail(str(e))
        except KeyboardInterrupt:
            click.echo("interrupted: stopped what had started", err=True)
            sys.exit(130)
        if detach:
            _print_started(state, state_dir, detach=True)
            return
        code = _serve(state, state_dir)
        _stop(state_dir)
    sys.exit(code)


@local.command()
@state_dir_option
def down(state_dir: Path) -> None:
    """Stop every process of the stack, with everything they started."""
    _stop(state_dir)


@local.command()
@click.option("--json", "as_json", is_flag=True, help="Print stack.json with an 'alive' flag per process.")
@state_dir_option
def status(state_dir: Path, as_json: bool) -> None:
    """Show each process of the stack and whether it is alive. Exit status 0
    when everything recorded runs, 1 otherwise (or when nothing was started)."""
    state = stack.read_state(state_dir)
    if state is None:
        click.echo("null" if as_json else f"nothing running in {state_dir}")
        sys.exit(1)
    for record in state["processes"]:
        record["alive"] = stack.is_alive(record)
    state["running"] = all(r["alive"] for r in state["processes"])
    if as_json:
        click.echo(json.dumps(state, indent=2))
    else:
        for record in state["processes"]:
            click.echo(f"{_service_line(record)}  {'alive' if record['alive'] else 'DEAD'}  {record['log']}")
        click.echo(f"BASE_URL={state['base_url']}")
    sys.exit(0 if state["running"] else 1)


def _print_started(state: dict[str, Any], state_dir: Path, detach: bool) -> None:
    for record in state["processes"]:
        click.echo(_service_line(record))
    base_url = state["base_url"]
    click.echo(f"BASE_URL={base_url}")
    click.echo(f"web UI: {_web_ui_link(state_dir, base_url)}")
    click.echo(f"config: {state['config_dir']} (the CLI logs in as user:{local_state.local_user()})")
    click.echo(f"started in {state['started_secs']:.1f} s; "
               + ("stop it with 'swarming local down'" if detach else "Ctrl-C stops it"))


def _web_ui_link(state_dir: Path, base_url: str) -> str:
    """A link that signs the browser in once as the local user: an ID token
    in its fragment, which the page posts and no server logs (functions/ui_session.py)."""
    try:
        return f"{base_url}/ui/signin#{local_state.id_token(state_dir, local_state.local_user(), base_url)}"
    except OSError as e:
        return f"{base_url}/ui (no sign-in link: {e})"


def _service_line(record: dict[str, Any]) -> str:
    label = f"bot {record['name']}" if record["kind"] == "bot" else record["name"]
    return f"{label:<17} {record['url'] or '-':<24} pid {record['pid']}"


def _serve(state: dict[str, Any], state_dir: Path) -> int:
    """Waits for a stop signal (exit status 0), or for a process to die (1)."""
    try:
        _print_started(state, state_dir, detach=False)
        while True:
            dead = [r for r in state["processes"] if not stack.is_alive(r)]
            if dead:
                for record in dead:
                    click.echo(f"error: {record['name']} stopped unexpectedly; see {record['log']}", err=True)
                return 1
            time.sleep(WATCH_SECS)
    except KeyboardInterrupt:
        click.echo("stopping")
        return 0


def _stop(state_dir: Path) -> None:
    """Stops the stack; a second Ctrl-C must not leave half of it running."""
    with _signals_ignored():
        stopped = stack.down(state_dir)
    click.echo(f"stopped: {', '.join(stopped)}" if stopped else f"nothing running in {state_dir}")


def _fail(message: str) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    sys.exit(1)


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


@contextlib.contextmanager
def _signals_handled_by(handler: Callable | int) -> Iterator[None]:
    saved = {sig: signal.signal(sig, handler) for sig in STOP_SIGNALS}
    try:
        yield
    finally:
        for sig, old in saved.items():
            signal.signal(sig, old)


def _signals_as_interrupt() -> contextlib.AbstractContextManager[None]:
    """SIGTERM and SIGHUP stop like Ctrl-C, so `up` cleans up on each too."""
    return _signals_handled_by(_raise_interrupt)


def _signals_ignored() -> contextlib.AbstractContextManager[None]:
    return _signals_handled_by(signal.SIG_IGN)
