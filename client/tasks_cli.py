"""`swarming trigger`, `collect` and `run`."""

import functools
import json
import sys
import time
import uuid
from pathlib import Path
from typing import Any, BinaryIO, Callable, NoReturn, TypeVar

import click

from client import credentials, exit_status, outcome, slices, transfers
from client.api import ApiError, Client
from shared import local_state, task_properties, task_request
from shared.cas import Digest
from shared.states import State
from shared.wire import to_base64

#: How often `collect` looks at a task: fast while output flows, then slower.
POLL_MIN_SECS, POLL_MAX_SECS = 0.5, 5.0
#: Answers that say the server is down or overloaded for now: `collect` waits on.
UNAVAILABLE_STATUSES = (429, 502, 503, 504)
T = TypeVar("T")


def server_options(command: Callable) -> Callable:
    """--server and --token, defaulting to the local stack of --local-dir."""

    @click.option("--server", envvar="SWARMING_SERVER",
                  help="Base URL of the functions. Default: the running local stack.")
    @click.option("--token", envvar="SWARMING_TOKEN",
                  help="Bearer token (a Google ID token). Default: on the local stack, the local user's; "
                       "elsewhere, gcloud's (`gcloud auth print-identity-token`).")
    @click.option("--state-dir", envvar=local_state.DIR_ENV, default=local_state.DEFAULT_DIR, show_default=True,
                  type=click.Path(path_type=Path), help="State directory of the local stack.")
    @functools.wraps(command)
    def wrapper(server: str | None, token: str | None, state_dir: Path, **kwargs: Any) -> Any:
        return command(client=_client(server, token, state_dir), **kwargs)

    return wrapper


def _client(server: str | None, token: str | None, state_dir: Path) -> Client:
    state = local_state.read_state(state_dir)
    if not server:
        if state is None:
            raise click.UsageError(f"no --server given and no local stack runs in {state_dir} "
                                   "(start one with 'swarming local up --detach')")
        server = state["base_url"]
    if token:
        return Client(server, token)
    if state is not None and state["base_url"] == server:
        return Client(server, credentials.local_user(state_dir, server))
    try:
        return Client(server, credentials.gcloud())
    except credentials.CredentialsError as e:
        raise click.UsageError(str(e)) from None


def pairs(values: tuple[str, ...], option: str) -> list[tuple[str, str]]:
    pairs = []
    for value in values:
        key, sep, val = value.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{value!r} is not key=value", param_hint=option)
        pairs.append((key, val))
    return pairs


class TagType(click.ParamType):
    """A tag, KEY:VALUE, the key not empty."""

    name = "KEY:VALUE"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        if not task_request.TAG_RE.fullmatch(value):
            self.fail(f"{value!r} is not key:value", param, ctx)
        return value


tag_type = TagType()


def _read_secret(context: click.Context, param: click.Parameter, path: str | None) -> bytes | None:
    """The file's bytes, read while the options are parsed: a file missing,
    unreadable or too large is a usage error before any call."""
    if path is None:
        return None
    try:
        with open(path, "rb") as f:
            secret = f.read(task_properties.MAX_SECRET_BYTES + 1)
    except OSError as e:
        raise click.BadParameter(f"cannot read {path}: {e.strerror or e}", context, param) from None
    if len(secret) > task_properties.MAX_SECRET_BYTES:
        raise click.BadParameter(f"{path} is larger than {task_properties.MAX_SECRET_BYTES} bytes", context, param)
    return secret


def request_options(command: Callable) -> Callable:
    for decorator in reversed([
        click.option("-d", "--dimension", "dimensions", multiple=True, metavar="KEY=VALUE",
                     help="A dimension the bot must have; repeat a key to AND values, 'a|b' is an OR. "
                          "pool is required."),
        click.option("--name", default="", help="Task name."),
        click.option("--priority", type=int, default=task_request.DEFAULT_PRIORITY, show_default=True,
                     help="0 (most urgent) to 255."),
        click.option("--tag", "tags", multiple=True, type=tag_type, help="Tag (repeatable)."),
        click.option("--env", "env", multiple=True, metavar="KEY=VALUE", help="Environment variable."),
        click.option("--user", default="", help="User the task runs for (default: the caller)."),
        click.option("--hard-timeout", type=int, default=task_properties.DEFAULT_EXECUTION_TIMEOUT_SECS,
                     show_default=True, help="Seconds the command may run."),
        click.option("--io-timeout", type=int, default=task_properties.DEFAULT_IO_TIMEOUT_SECS,
                     show_default=True, help="Seconds the command may go without output (0: no limit)."),
        click.option("--grace-period", type=int, default=task_properties.DEFAULT_GRACE_PERIOD_SECS,
                     show_default=True, help="Seconds between SIGTERM and SIGKILL when the task is stopped."),
        click.option("--idempotent", is_flag=True,
                     help="The task may reuse the result of an identical successful task."),
        click.option("--expiration", type=int, default=task_request.DEFAULT_EXPIRATION_SECS,
                     show_default=True, help="Seconds the task may wait for a bot."),
        click.option("--wait-for-capacity", is_flag=True,
                     help="Wait even if no live bot has the dimensions (else the task ends NO_RESOURCE)."),
        click.option("--cas-dir", type=click.Path(exists=True, file_okay=False, path_type=Path),
                     help="Upload this directory (only the files the store lacks) as the task's inputs."),
        click.option("--cas-digest", type=transfers.DigestType(),
                     help="The task's inputs: a tree 'swarming archive' uploaded."),
        click.option("--secret-bytes-path", "secret_bytes", metavar="FILE", callback=_read_secret,
                     help=f"Give the task this file's bytes (at most {task_properties.MAX_SECRET_BYTES} bytes), "
                          "which it alone reads, from the file its LUCI_CONTEXT variable names."),
        click.option("--relative-cwd", default="", metavar="PATH",
                     help="Run the command in this directory, relative to the task's inputs."),
        click.option("--env-prefix", "env_prefixes", multiple=True, nargs=2, metavar="KEY PATH",
                     help="Prepend PATH (relative to the task's directory) to the variable KEY, as a path list "
                          "(repeatable; the paths of a key in order)."),
        click.option("--named-cache", "named_caches", multiple=True, nargs=2, metavar="NAME PATH",
                     help="Mount the bot's named cache NAME at PATH, relative to the task's directory (repeatable)."),
        click.option("--output", "outputs", multiple=True, metavar="PATH",
                     help="A file the command leaves, relative to its directory, to upload with its outputs "
                          "(repeatable)."),
        click.option("--optional-dimension", "optional_dimensions", multiple=True, nargs=3,
                     type=(str, str, click.IntRange(min=1)), metavar="KEY VALUE EXPIRATION",
                     help="Ask also for this dimension during the first EXPIRATION seconds, then without it: "
                          "makes task slices (repeatable; see docs/cli.md)."),
        click.option("--service-account", default="", metavar="ACCOUNT",
                     help="The task's service account: 'none' (default) or 'bot' (the bot's own)."),
        click.option("--parent-task-id", envvar="SWARMING_TASK_ID", default="", metavar="TASK_ID",
                     help="The task that creates this one: cancelled with it. Default: $SWARMING_TASK_ID, set "
                          "when run inside a task."),
        click.option("--pubsub-topic", default="", metavar="projects/P/topics/T",
                     help="Publish a message on this Pub/Sub topic when the task ends (docs/tasks.md)."),
        click.option("--pubsub-userdata", default="", metavar="TEXT",
                     help="Given back in the message's data, as 'userdata'."),
        click.option("--pubsub-auth-token", envvar="SWARMING_PUBSUB_AUTH_TOKEN", default="", metavar="TOKEN",
                     help="Sent as the message's 'auth_token' attribute, never shown by the service "
                          "(default: $SWARMING_PUBSUB_AUTH_TOKEN, which keeps it off the command line)."),
        click.option("--bot-ping-tolerance", type=int, default=task_request.DEFAULT_BOT_PING_TOLERANCE_SECS,
                     show_default=True, help="Seconds the bot may go silent before the task is BOT_DIED."),
        click.option("--json-input", type=click.File("rb"), metavar="FILE",
                     help="The whole NewTaskRequest as JSON, as the HTTP API's tasks_new takes it ('-': stdin); "
                          "no request flag nor command then."),
        click.argument("command_args", nargs=-1, metavar="-- COMMAND [ARGS]..."),
    ]):
        command = decorator(command)
    return command


def build_request(dimensions: tuple[str, ...], name: str, priority: int, tags: tuple[str, ...],
                  env: tuple[str, ...], user: str, hard_timeout: int, io_timeout: int, grace_period: int,
                  idempotent: bool, expiration: int, wait_for_capacity: bool, secret_bytes: bytes | None,
                  command_args: tuple[str, ...], relative_cwd: str = "",
                  env_prefixes: tuple[tuple[str, str], ...] = (), named_caches: tuple[tuple[str, str], ...] = (),
                  outputs: tuple[str, ...] = (), optional_dimensions: tuple[slices.Optional, ...] = (),
                  service_account: str = "", parent_task_id: str = "", pubsub_topic: str = "",
                  pubsub_userdata: str = "", pubsub_auth_token: str = "",
                  bot_ping_tolerance: int = task_request.DEFAULT_BOT_PING_TOLERANCE_SECS) -> dict[str, Any]:
    if not command_args:
        raise click.UsageError("give the command after '--', or the whole request with --json-input")
    prefixes: dict[str, list[str]] = {}
    for key, path in env_prefixes:
        prefixes.setdefault(key, []).append(path)
    properties = {
        "command": list(command_args),
        "relative_cwd": relative_cwd,
        "dimensions": [{"key": k, "value": v} for k, v in pairs(dimensions, "--dimension")],
        "env": [{"key": k, "value": v} for k, v in pairs(env, "--env")],
        "env_prefixes": [{"key": k, "value": paths} for k, paths in prefixes.items()],
        "caches": [{"name": n, "path": p} for n, p in named_caches],
        "outputs": list(outputs),
        "execution_timeout_secs": hard_timeout,
        "io_timeout_secs": io_timeout,
        "grace_period_secs": grace_period,
        "idempotent": idempotent,
    }
    if secret_bytes is not None:
        properties["secret_bytes"] = to_base64(secret_bytes)
    # Its own uuid: a retried create returns the task the first try made (Client.new_task retries it).
    return {"name": name, "priority": priority, "tags": list(tags), "user": user,
            "task_slices": slices.task_slices(properties, expiration, wait_for_capacity, list(optional_dimensions)),
            "service_account": service_account, "parent_task_id": parent_task_id,
            "pubsub_topic": pubsub_topic, "pubsub_userdata": pubsub_userdata, "pubsub_auth_token": pubsub_auth_token,
            "bot_ping_tolerance_secs": bot_ping_tolerance, "request_uuid": str(uuid.uuid4())}


def _read_json_input(source: BinaryIO, request_args: dict[str, Any]) -> dict[str, Any]:
    """The request of --json-input, which no request flag may amend (but the
    inputs, --cas-dir or --cas-digest): each given on the command line is a
    usage error, so that what runs is the file."""
    context = click.get_current_context()
    given = [name for name in request_args
             if context.get_parameter_source(name) == click.core.ParameterSource.COMMANDLINE]
    if given or request_args["command_args"]:
        options = {param.name: param.opts[-1] for param in context.command.params}
        flags = ", ".join("the command" if n == "command_args" else options[n] for n in given)
        raise click.UsageError(f"--json-input is the whole request: drop {flags or 'the command'}")
    try:
        request = json.loads(source.read(task_request.MAX_REQUEST_BYTES + 1))
    except ValueError as e:
        raise click.BadParameter(f"not JSON: {e}", param_hint="--json-input") from None
    if not isinstance(request, dict):
        raise click.BadParameter("not a JSON object (a NewTaskRequest)", param_hint="--json-input")
    return {"request_uuid": str(uuid.uuid4()), **request}


def output_options(command: Callable) -> Callable:
    for decorator in reversed([
        click.option("--output-dir", type=click.Path(file_okay=False, path_type=Path),
                     help="Download each task's outputs into OUTPUT_DIR/<task_id>/."),
        click.option("--task-summary-json", type=click.Path(dir_okay=False, path_type=Path),
                     help='Write the results to this file as {"shards": [result, ...]} (null: not ended).'),
    ]):
        command = decorator(command)
    return command


def _trigger(client: Client, cas_dir: Path | None, cas_digest: Digest | None, json_input: BinaryIO | None,
             **request_args: Any) -> str:
    """Creates the task; with --cas-dir, uploads its inputs first."""
    if cas_dir and cas_digest:
        raise click.UsageError("give --cas-dir or --cas-digest, not both")
    # Checked before anything is uploaded.
    if json_input:
        request = _read_json_input(json_input, request_args)
    else:
        request = build_request(**request_args)
    try:
        if cas_dir:
            cas_digest = transfers.archive(client, cas_dir).digest
            click.echo(f"inputs {cas_digest}", err=True)
        for task_slice in request["task_slices"] if cas_digest else ():
            task_slice["properties"]["cas_input_root"] = {"digest": cas_digest.to_wire()}
        return client.new_task(request)["task_id"]
    except ApiError as e:
        fail(e)


def fail(error: ApiError) -> NoReturn:
    where = f" ({error.field})" if error.field else ""
    click.echo(f"error: {error.message}{where}", err=True)
    sys.exit(exit_status.ExitStatus.ERROR)


@click.command()
@server_options
@request_options
@click.option("--dump-json", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the task ids to this file, for 'collect --requests-json'.")
def trigger(client: Client, dump_json: Path | None, **request_args: Any) -> None:
    """Create a task and print its id."""
    task_id = _trigger(client, **request_args)
    if dump_json:
        dump_json.write_text(json.dumps({"server": client.server, "tasks": [{"task_id": task_id}]}, indent=2))
    click.echo(task_id)


@click.command()
@server_options
@click.argument("task_ids", nargs=-1)
@click.option("--requests-json", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Collect the tasks of a 'trigger --dump-json' file.")
@click.option("--timeout", type=float, default=0, help="Give up waiting after this many seconds (0: never).")
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON instead of the output.")
@output_options
def collect(client: Client, task_ids: tuple[str, ...], requests_json: Path | None, timeout: float,
            as_json: bool, output_dir: Path | None, task_summary_json: Path | None) -> None:
    """Wait for tasks, print their output, and exit with the task's exit code."""
    ids = list(task_ids)
    if requests_json:
        ids += [t["task_id"] for t in json.loads(requests_json.read_text())["tasks"]]
    if not ids:
        raise click.UsageError("give task ids or --requests-json")
    sys.exit(_collect(client, ids, timeout, as_json, output_dir, task_summary_json))


@click.command()
@server_options
@request_options
@click.option("--timeout", type=float, default=0, help="Give up waiting after this many seconds (0: never).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON instead of the output.")
@output_options
def run(client: Client, timeout: float, as_json: bool, output_dir: Path | None, task_summary_json: Path | None,
        **request_args: Any) -> None:
    """Trigger a task, wait for it, print its output, and exit with its exit code."""
    task_id = _trigger(client, **request_args)
    click.echo(f"task {task_id}", err=True)
    sys.exit(_collect(client, [task_id], timeout, as_json, output_dir, task_summary_json))


def _collect(client: Client, task_ids: list[str], timeout: float, as_json: bool, output_dir: Path | None,
             task_summary_json: Path | None) -> int:
    deadline = time.monotonic() + timeout if timeout else None
    results: list[dict[str, Any]] = []
    stdouts: list[str] = []  # With --json.
    try:
        for task_id in task_ids:
            sink = bytearray() if as_json else None
            result = _wait(client, task_id, deadline, sink)
            if result is None:
                break
            if output_dir:
                _download_outputs(client, result, output_dir)
            if sink is not None:
                stdouts.append(sink.decode("utf-8", "replace"))
            _explain(client, result)
            results.append(result)
    except ApiError as e:
        fail(e)
    except KeyboardInterrupt:
        return exit_status.ExitStatus.INTERRUPTED
    if task_summary_json:
        shards: list[dict[str, Any] | None] = [*results, *[None] * (len(task_ids) - len(results))]
        task_summary_json.write_text(json.dumps({"shards": shards}, indent=2))
    if len(results) < len(task_ids):
        return exit_status.ExitStatus.WAIT_TIMEOUT
    if as_json:
        click.echo(json.dumps([{**r, "output": o} for r, o in zip(results, stdouts)], indent=2))
    return next((code for code in map(exit_status.for_result, results) if code), 0)


def _explain(client: Client, result: dict[str, Any]) -> None:
    """Says on stderr why a task did not complete (client/outcome.py); its
    request, for the slice it waited on, only then."""
    if result["state"] == State.COMPLETED.value:
        return
    try:
        request = client.call("task_request", {"task_id": result["task_id"]})
    except ApiError:
        request = None  # The reason without the slice's dimensions.
    click.echo(outcome.explain(result, request), err=True)


def _download_outputs(client: Client, result: dict[str, Any], output_dir: Path) -> None:
    """Into OUTPUT_DIR/<task_id>/; a task without outputs gets no directory."""
    root = result.get("cas_output_root")
    if root:
        task_id = result["task_id"]
        digest = Digest.from_wire(root["digest"], "cas_output_root.digest")
        transfers.download(client, digest, output_dir / task_id, label=f"outputs of {task_id}")


def _wait(client: Client, task_id: str, deadline: float | None, sink: bytearray | None) -> dict | None:
    """Streams the task's stdout (to `sink`, or to our stdout) until it ends;
    returns its result, or None when the deadline passed."""
    offset, delay = 0, POLL_MIN_SECS
    while (polled := _patiently(functools.partial(client.stdout, task_id, offset), deadline)) is not None:
        data, offset, state = polled
        if data:
            _emit(data, sink)
            delay = POLL_MIN_SECS
            continue  # There may be more right away (reads are paged).
        if State(state).is_final:
            return _patiently(functools.partial(client.result, task_id), deadline)
        if (paused := _pause(delay, deadline)) is None:
            return None
        delay = paused
    return None


def _patiently(call: Callable[[], T], deadline: float | None) -> T | None:
    """`call`'s answer, asked again while the server is unavailable or
    unreachable (after the client's own retries) until `deadline`; None
    past it. Any other failure is raised: waiting would not mend it."""
    delay: float | None = POLL_MIN_SECS
    while delay is not None:
        try:
            return call()
        except ApiError as e:
            if e.code != "unreachable" and e.status not in UNAVAILABLE_STATUSES:
                raise
            click.echo(f"{e}; waiting on", err=True)
        delay = _pause(delay, deadline)
    return None


def _pause(delay: float, deadline: float | None) -> float | None:
    """Sleeps `delay` and returns the next, longer one; None, without
    sleeping, once `deadline` passed."""
    if deadline is not None and time.monotonic() >= deadline:
        return None
    time.sleep(delay)
    return min(delay * 1.5, POLL_MAX_SECS)


def _emit(data: bytes, sink: bytearray | None) -> None:
    if sink is not None:
        sink += data
    else:
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
