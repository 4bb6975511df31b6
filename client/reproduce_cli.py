"""`swarming reproduce`: run a task's command on this machine, as a bot would.

The task's inputs are downloaded into WORK/w, the command runs in
WORK/w/<relative_cwd> with the request's env and env prefixes, and
${ISOLATED_OUTDIR} is WORK/out. What a bot adds and a user cannot have is
left out: the task's secret bytes (the server never hands them out) and its
LUCI_CONTEXT.
"""

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import click

from client import exit_status, transfers
from client.api import ApiError, Client
from client.tasks_cli import fail, server_options
from shared.errors import ValidationError
from shared.task_properties import PROPERTIES, TaskProperties

OUTDIR = "${ISOLATED_OUTDIR}"


@click.command()
@server_options
@click.argument("task_id")
@click.option("--work", type=click.Path(file_okay=False, path_type=Path),
              help="Directory to run in, absent or empty (default: a new temporary one): the inputs go to "
                   "WORK/w, ${ISOLATED_OUTDIR} is WORK/out.")
@click.option("--leak", is_flag=True, help="Keep the directory afterwards (its path is printed on stderr).")
def reproduce(client: Client, task_id: str, work: Path | None, leak: bool) -> None:
    """Run a task's command here: its inputs, env, env prefixes and relative cwd, as on a bot.

    Streams the command's output and exits with its exit code. Uses the slice the task ran (or waits) on.
    It runs whatever the request says, as you: read it first with 'swarming request-show TASK_ID'."""
    if work is not None and work.exists() and any(work.iterdir()):
        raise click.BadParameter(f"{work} is not empty", param_hint="--work")
    properties = _properties(client, task_id)
    root = Path(tempfile.mkdtemp(prefix="swarming-reproduce-")) if work is None else work
    try:
        sys.exit(_run(client, properties, root.resolve()))
    finally:
        if leak:
            click.echo(f"kept {root}", err=True)
        else:
            shutil.rmtree(root, ignore_errors=True)


def _properties(client: Client, task_id: str) -> TaskProperties:
    """The properties of the slice the task is on, checked as the server checks
    a new request: the paths in them stay under the work directory."""
    try:
        index = client.result(task_id).get("current_task_slice") or 0
        request = client.call("task_request", {"task_id": task_id})
    except ApiError as e:
        fail(e)
    field = f"task_slices[{index}].properties"
    try:
        return PROPERTIES.read(request["task_slices"][index]["properties"], field)
    except (ValidationError, LookupError, TypeError) as e:
        raise click.ClickException(f"the server's request of {task_id} is unusable: {e}") from None


def _run(client: Client, properties: TaskProperties, root: Path) -> int:
    work_dir, out_dir = root / "w", root / "out"
    out_dir.mkdir(parents=True)
    work_dir.mkdir()
    if properties.cas_input_root:
        try:
            transfers.download(client, properties.cas_input_root.digest, work_dir, label="inputs")
        except ApiError as e:
            fail(e)
    for cache in properties.caches:
        (work_dir / cache.path).mkdir(parents=True, exist_ok=True)  # Empty: the bot's caches are not here.
    if properties.has_secret_bytes:
        click.echo("note: the task has secret bytes, which the server never hands out: it runs without them",
                   err=True)
    command = [arg.replace(OUTDIR, str(out_dir)) for arg in properties.command]
    cwd = work_dir / properties.relative_cwd
    try:
        process = subprocess.Popen(command, cwd=cwd, env=environment(properties, work_dir, out_dir))
    except OSError as e:
        raise click.ClickException(f"cannot run {command[0]} in {cwd}: {e.strerror or e}") from None
    try:
        return exit_status.for_exit_code(process.wait())
    except KeyboardInterrupt:  # The command, in our process group, had the SIGINT too.
        process.wait()
        return exit_status.ExitStatus.INTERRUPTED


def environment(properties: TaskProperties, work_dir: Path, out_dir: Path) -> dict[str, str]:
    """Ours, with the request's env (${ISOLATED_OUTDIR} expanded) and its
    env prefixes, absolute under `work_dir`, before what a variable held."""
    env = {**os.environ, **{k: v.replace(OUTDIR, str(out_dir)) for k, v in properties.env.items()},
           "ISOLATED_OUTDIR": str(out_dir)}
    for key, paths in properties.env_prefixes.items():
        env[key] = os.pathsep.join([*(str(work_dir / path) for path in paths), *filter(None, [env.get(key)])])
    return env
