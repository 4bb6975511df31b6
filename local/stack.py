"""The whole service on one machine: the Firestore, Pub/Sub (the tasks' end
notifications) and Cloud Storage emulators, our Cloud Tasks emulator
(local.cloud_tasks_emulator, with the timers' queue), every Cloud Function
behind one gunicorn (the gateway), a cron that calls
`cron_sweep` every minute (Cloud Scheduler's job in production), and N bots.
The service configuration (local/config/ unless another directory is given)
is pushed to the bucket at start; the local OIDC issuer, in the Cloud Tasks
emulator's process, stands in for Google's identity: the timers, the cron,
the CLI and the admin who mints the bots' bootstrap tokens all present ID
tokens it signed, verified as production verifies Google's.

Each process runs in its own session, so it outlives the command that started
it (`up --detach`) and stopping its process group also stops its children
(gunicorn workers, a bot's task). What runs is recorded in the state directory
(its names that the CLI reads too are in shared/local_state.py):

    stack.json   base_url, issuer_url, project, bucket, config_dir, ports,
                 started_secs and processes:
                 [{name, kind, pid, start_ticks, url, log, started_secs}]
    secrets.json the key of the tokens the functions sign (bootstrap, bot
                 and run tokens: SWARMING_TOKEN_SECRET), mode 0600, kept
    issuer_secret  what the local OIDC issuer mints ID tokens for (the CLI
                 logs the local user in with it), mode 0600, kept
    signing_key.json  the service-account key the functions sign the CAS
                 URLs with (SWARMING_SIGNING_KEY_FILE), mode 0600, kept
    logs/        one log per process
    storage/     the Cloud Storage emulator's files
    bots/<id>/   each bot's directory: swarming_bot.zip, downloaded from the
                 gateway's `bot_code` as a new host would (a bootstrap token,
                 the `bot_bootstrap` script), and everything the bot keeps

A pid is trusted only with the start time it had (`start_ticks`, from
/proc/<pid>/stat), so a stale stack.json never makes `down` signal a process
that reused the pid. Linux only, like the emulators it runs.
"""

import concurrent.futures
import contextlib
import json
import logging
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Iterator, NamedTuple, TypeVar

import requests

from local import emulators, processes
from local.processes import StartError
from shared.local_state import id_token, issuer_secret_path, local_user, read_state, stack_path

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[1]
PROJECT = "swarming-local"
BUCKET = "swarming-local"
#: The service configuration pushed at start, unless another is given.
CONFIG_DIR = REPO / "local" / "config"
SECRETS_FILE = "secrets.json"
#: The functions' environment, as the gateway runs them (it holds the token secret: 0600).
FUNCTIONS_ENV_FILE = "functions_env.json"
BOT_READY_SECS = 30.0
#: The most Firestore commits each gateway worker has in flight: the emulator
#: collapses under hundreds at once (functions.service.gate_commits).
EMULATOR_MAX_COMMITS = 16
#: How often the local cron calls `cron_sweep` (Cloud Scheduler's in production).
CRON_SECS = 60.0
#: The Cloud Tasks queue of the timers (`timer_expire`, `timer_bot_died`, `timer_notify`).
TIMERS_QUEUE = f"projects/{PROJECT}/locations/local/queues/timers"
#: The identity the timers' OIDC tokens are minted for; the gateway accepts only it.
SERVICE_ACCOUNT = f"swarming-timers@{PROJECT}.iam.gserviceaccount.com"
#: The timers queue's retries. Production's defaults (first retry after 0.1 s,
#: doubling up to an hour) spend the first tries within a second of a failure,
#: while the gateway may be restarting, then may leave a timer waiting up to an
#: hour, far past the bot death timeout (10 min). A timer's handler is
#: idempotent and cron_sweep repairs what a dropped timer leaves, so: retry
#: from 1 s, never wait more than a minute (the cron's period) between tries,
#: and give up after 100 tries (about an hour and a half).
TIMERS_MAX_ATTEMPTS = 100
TIMERS_MIN_BACKOFF_SECS = 1
TIMERS_MAX_BACKOFF_SECS = 60

Record = dict[str, Any]


def ensure_secrets(state_dir: Path) -> dict[str, str]:
    """The stack's secrets, made once (mode 0600) and kept across restarts, so
    that the bots' tokens survive a restart of the stack: secrets.json (the
    functions' token secret) and issuer_secret (the local issuer's)."""
    path = state_dir / SECRETS_FILE
    if not path.exists():
        processes.write_private(path, {"token_secret": secrets.token_urlsafe(32)})
    issuer = issuer_secret_path(state_dir)
    if not issuer.exists():
        processes.write_private(issuer, secrets.token_urlsafe(32))
    return json.loads(path.read_text(encoding="utf-8"))


def functions_env(state_dir: Path) -> dict[str, str]:
    """The environment the running stack's functions have, to serve them in
    another process against the same emulators (bench/auth.py does)."""
    return json.loads((Path(state_dir) / FUNCTIONS_ENV_FILE).read_text(encoding="utf-8"))


def kill_gateway(state_dir: Path) -> None:
    """SIGKILLs the running stack's gateway, all its workers with it, as a
    crashed host would leave the functions' callers: their requests in
    flight get no answer."""
    state = read_state(state_dir)
    assert state is not None, f"no stack in {state_dir}"
    [record] = [r for r in state["processes"] if r["name"] == "gateway"]
    os.killpg(os.getpgid(record["pid"]), signal.SIGKILL)
    processes.stop(record["pid"], grace=0)  # Reaps it.
    state["processes"].remove(record)
    _write_state(state_dir, state)


def start_gateway(state_dir: Path) -> None:
    """Starts the stack's gateway again, on its port, with its settings."""
    state = read_state(state_dir)
    assert state is not None, f"no stack in {state_dir}"
    port, env = state["ports"]["gateway"], functions_env(state_dir)
    _launch(state_dir, state, "gateway", "gateway", lambda log_path: _start_gateway(port, log_path, env))


def is_alive(record: Record) -> bool:
    """Whether the recorded process still runs (not a zombie, not a reused pid)."""
    stat = processes.stat(record["pid"])
    return stat is not None and stat.state != "Z" and stat.start_ticks == record["start_ticks"]


def up(state_dir: Path, bots: int = 0, gateway_port: int = 0, firestore_port: int = 0,
       storage_port: int = 0, cloud_tasks_port: int = 0, config_dir: Path = CONFIG_DIR) -> dict[str, Any]:
    """Starts the stack with the service configuration of `config_dir` and
    returns what stack.json records. On any failure (or Ctrl-C) it stops
    everything it started before raising."""
    state_dir = Path(state_dir).resolve()
    _refuse_if_running(state_dir)
    state_dir.mkdir(parents=True, exist_ok=True)
    ensure_secrets(state_dir)
    state: dict[str, Any] = {
        "base_url": None, "issuer_url": None, "project": PROJECT, "bucket": BUCKET,
        "config_dir": str(Path(config_dir).resolve()), "ports": {}, "processes": [], "started_secs": None,
    }
    children_before = _children()
    began = time.monotonic()
    try:
        _start_all(state_dir, state, bots, gateway_port, firestore_port, storage_port, cloud_tasks_port)
    except BaseException:
        _stop_new_children(children_before)
        stack_path(state_dir).unlink(missing_ok=True)
        raise
    state["started_secs"] = round(time.monotonic() - began, 2)
    _write_state(state_dir, state)
    return state


def down(state_dir: Path) -> list[str]:
    """Stops every recorded process with its process group, bots first (they
    call the gateway, which calls the emulators); returns the names that were
    still running."""
    state = read_state(state_dir)
    if state is None:
        return []
    records = state["processes"]
    bots = [r for r in records if r["kind"] == "bot"]
    services = [r for r in reversed(records) if r["kind"] != "bot"]
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, len(bots))) as pool:
        running = list(pool.map(_stop_record, bots))
    running += [_stop_record(r) for r in services]
    stack_path(state_dir).unlink(missing_ok=True)
    return [r["name"] for r, was_running in zip(bots + services, running) if was_running]


def _start_all(state_dir: Path, state: dict[str, Any], bots: int, gateway_port: int,
               firestore_port: int, storage_port: int, cloud_tasks_port: int) -> None:
    ports = state["ports"]
    ports["firestore"] = _port(firestore_port, "firestore")
    firestore = _launch(state_dir, state, "firestore", "firestore",
                        lambda log_path: emulators.start_firestore(ports["firestore"], log_path))
    ports["pubsub"] = _port(0, "pubsub")
    pubsub = _launch(state_dir, state, "pubsub", "pubsub",
                     lambda log_path: emulators.start_pubsub(ports["pubsub"], log_path))
    ports["storage"] = _port(storage_port, "storage")
    storage = _launch(state_dir, state, "storage", "storage",
                      lambda log_path: emulators.start_storage(ports["storage"], log_path,
                                                               state_dir / "storage"))
    _prepare_bucket(storage.url, Path(state["config_dir"]))
    ports["cloud_tasks"] = _port(cloud_tasks_port, "cloud_tasks")
    ports["cloud_tasks_certs"] = _port(0, "cloud_tasks_certs")
    cloud_tasks = _launch(state_dir, state, "cloud_tasks", "cloud_tasks",
                          lambda log_path: _start_cloud_tasks(ports["cloud_tasks"], ports["cloud_tasks_certs"],
                                                              issuer_secret_path(state_dir), log_path))
    state["issuer_url"] = f"http://127.0.0.1:{ports['cloud_tasks_certs']}"
    _create_timers_queue(cloud_tasks.url)
    ports["gateway"] = _port(gateway_port, "gateway")
    gateway_url = f"http://127.0.0.1:{ports['gateway']}"
    env = {**firestore.env, **pubsub.env, **storage.env, **cloud_tasks.env,
           "SWARMING_PROJECT": PROJECT, "SWARMING_BUCKET": BUCKET,
           "SWARMING_TOKEN_SECRET": ensure_secrets(state_dir)["token_secret"],
           # The timers call the functions back at the gateway's URL, which is also their tokens' audience.
           "SWARMING_FUNCTIONS_URL": gateway_url, "SWARMING_TASKS_QUEUE": TIMERS_QUEUE,
           "SWARMING_SERVICE_ACCOUNT": SERVICE_ACCOUNT,
           "SWARMING_FIRESTORE_MAX_COMMITS": str(EMULATOR_MAX_COMMITS),
           "SWARMING_SIGNING_KEY_FILE": str(emulators.signing_key(state_dir / "signing_key.json"))}
    processes.write_private(state_dir / FUNCTIONS_ENV_FILE, env)
    gateway = _launch(state_dir, state, "gateway", "gateway",
                      lambda log_path: _start_gateway(ports["gateway"], log_path, env))
    state["base_url"] = gateway.url
    _launch(state_dir, state, "cron", "cron", lambda log_path: _start_cron(gateway.url, state_dir, log_path))
    for n in range(1, bots + 1):
        bot_id = f"local-bot-{n}"
        _launch(state_dir, state, "bot", bot_id,
                lambda log_path: _start_bot(bot_id, gateway.url, state_dir, firestore.url, log_path))


class _Started(NamedTuple):
    """A process that answers; an emulators.Emulator has these fields too."""
    process: subprocess.Popen
    url: str | None


_S = TypeVar("_S", _Started, emulators.Emulator)


def _launch(state_dir: Path, state: dict[str, Any], kind: str, name: str,
            start: Callable[[Path], _S]) -> _S:
    """Starts one process, times it, and records it in stack.json at once, so
    that `down` finds it even if this command dies before the rest is up."""
    log_path = state_dir / "logs" / (f"bot-{name}.log" if kind == "bot" else f"{name}.log")
    began = time.monotonic()
    started = start(log_path)
    secs = round(time.monotonic() - began, 2)
    pid = started.process.pid
    stat = processes.stat(pid)
    state["processes"].append({
        "name": name, "kind": kind, "pid": pid, "start_ticks": stat.start_ticks if stat else None,
        "url": started.url, "log": str(log_path), "started_secs": secs,
    })
    _write_state(state_dir, state)
    log.info("%s ready at %s in %.2f s (pid %d)", name, started.url, secs, pid)
    return started


def _port(requested: int, name: str) -> int:
    """A free port when 0 is asked; otherwise the requested one, refused when
    taken, since the readiness check would believe whatever answers there."""
    if requested == 0:
        return processes.free_port()
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", requested))
        except OSError:
            raise StartError(f"port {requested} for {name} is already in use") from None
    return requested


@contextlib.contextmanager
def _quiet_google_imports() -> Iterator[None]:
    """google-api-core warns at import, on stderr, that support for this
    Python version ends on some date (a FutureWarning): noise in the output of
    `swarming local up`, whose errors are one line."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=FutureWarning, module="google")
        yield


def _prepare_bucket(storage_url: str, config_dir: Path) -> None:
    """The stack's bucket, with the service configuration of `config_dir`
    pushed to it, as a deployment pushes its own."""
    # Imported here: it takes 0.3 s, which every `swarming` command would pay.
    with _quiet_google_imports():
        from google.api_core.exceptions import Conflict
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import storage

        from functions.config_source import ConfigSource
        from shared import service_config
        from shared.errors import ConfigError

    client = storage.Client(project=PROJECT, credentials=AnonymousCredentials(),
                            client_options={"api_endpoint": storage_url})
    try:
        client.create_bucket(BUCKET)
    except Conflict:
        pass  # kept in storage/ from an earlier run
    try:
        ConfigSource(lambda: client.bucket(BUCKET)).push(service_config.read_dir(config_dir))
    except ConfigError as e:
        raise StartError(f"the service configuration in {config_dir} is not valid:\n{e}") from None


def _start_cloud_tasks(port: int, certs_port: int, issuer_secret: Path, log_path: Path) -> emulators.Emulator:
    """Our Cloud Tasks emulator, with the local OIDC issuer; its url is the
    gRPC host:port (no scheme), as client_for and SWARMING_TASKS_EMULATOR_HOST
    take it."""
    host = f"127.0.0.1:{port}"
    certs_url = f"http://127.0.0.1:{certs_port}/oauth2/v1/certs"
    process = processes.spawn(
        [sys.executable, "-m", "local.cloud_tasks_emulator", "--port", str(port), "--certs-port", str(certs_port),
         "--issuer-secret-file", str(issuer_secret)],
        log_path, env={"PYTHONUNBUFFERED": "1"}, cwd=REPO,
    )
    # The emulator serves its certificates last, once its gRPC API answers.
    processes.wait_until(processes.http_ok(certs_url), process, "Cloud Tasks emulator", log_path)
    return emulators.Emulator("cloud_tasks", host, process, {
        "SWARMING_TASKS_EMULATOR_HOST": host, "SWARMING_ID_TOKEN_CERTS_URL": certs_url})


def _create_timers_queue(host: str) -> None:
    # Imported here: gRPC and the Cloud Tasks client take 0.5 s, which every `swarming` command would pay.
    with _quiet_google_imports():
        from google.api_core.exceptions import AlreadyExists
        from google.cloud import tasks_v2
        from google.protobuf import duration_pb2

        from local.cloud_tasks_emulator import client_for

    queue = tasks_v2.Queue(name=TIMERS_QUEUE, retry_config=tasks_v2.RetryConfig(
        max_attempts=TIMERS_MAX_ATTEMPTS, min_backoff=duration_pb2.Duration(seconds=TIMERS_MIN_BACKOFF_SECS),
        max_backoff=duration_pb2.Duration(seconds=TIMERS_MAX_BACKOFF_SECS)))
    client = client_for(host)
    try:
        client.create_queue(parent=TIMERS_QUEUE.rpartition("/queues/")[0], queue=queue, timeout=10)
    except AlreadyExists:
        pass  # cannot happen on a fresh emulator, and would be the same queue
    finally:
        client.transport.close()


#: How gunicorn serves the gateway. A request in progress holds one of a
#: worker's threads, and a held poll (functions/long_poll.py) holds it for up
#: to SWARMING_POLL_HOLD_SECS: threads enough for a thousand waiting bots
#: (gthread starts them as needed; a waiting one costs no CPU). An idle
#: keep-alive connection holds no thread, only a socket in the worker's
#: poller: it is kept longer than any client's idle gap (a backed-off bot's
#: 66 s), as Google's front end keeps a deployed function's client
#: connections (610 s); gunicorn's default, 2 s, closed connections that
#: clients were about to reuse (`RemoteDisconnected`).
GATEWAY_WORKERS, GATEWAY_THREADS, GATEWAY_KEEP_ALIVE_SECS = 2, 512, 620
#: Each answer's line in the gateway's log names its Firestore reads and
#: writes (benches add them up) and the caller's user agent (Cloud Tasks').
GATEWAY_ACCESS_LOG = '%(h)s %(t)s "%(r)s" %(s)s %(b)s %(M)sms reads=%({x-firestore-reads}o)s ' \
                     'writes=%({x-firestore-writes}o)s "%(a)s"'
GATEWAY_OPTIONS = ("--workers", str(GATEWAY_WORKERS), "--worker-class", "gthread",
                   "--threads", str(GATEWAY_THREADS), "--worker-connections", str(2 * GATEWAY_THREADS),
                   "--keep-alive", str(GATEWAY_KEEP_ALIVE_SECS), "--access-logformat", GATEWAY_ACCESS_LOG)


def _start_gateway(port: int, log_path: Path, env: dict[str, str]) -> _Started:
    url = f"http://127.0.0.1:{port}"
    process = processes.spawn(
        [sys.executable, "-m", "gunicorn", "local.gateway:make_app()", "--bind", f"127.0.0.1:{port}",
         *GATEWAY_OPTIONS, "--graceful-timeout", "3", "--no-control-socket",
         "--access-logfile", "-"],
        log_path, env={**env, "PYTHONUNBUFFERED": "1"}, cwd=REPO,
    )
    processes.wait_until(processes.http_ok(url + "/", expect='"functions"'), process, "gateway", log_path)
    return _Started(process, url)


def _start_cron(base_url: str, state_dir: Path, log_path: Path) -> _Started:
    """Calls as Cloud Scheduler does: with an ID token of the service's own
    account, for the URL called, from the local issuer."""
    process = processes.spawn(
        [sys.executable, "-m", "local.cron", "--server", base_url, "--every", str(CRON_SECS),
         "--state-dir", str(state_dir), "--account", SERVICE_ACCOUNT, "cron_sweep"],
        log_path, env={"PYTHONUNBUFFERED": "1"}, cwd=REPO,
    )
    return _Started(process, None)


def _start_bot(bot_id: str, base_url: str, state_dir: Path, firestore_url: str, log_path: Path) -> _Started:
    """Starts a bot as on a new host: with a fresh bootstrap token (minted by
    `server_token` as the local user, an admin of local/config), runs the
    `bot_bootstrap` script in the bot's directory, which downloads
    swarming_bot.zip from `bot_code`, leaves the token for the bot's handshake
    and execs `python3 swarming_bot.zip start_bot`; the bot then execs itself
    from swarming_bot.1.zip (then .2, .1... as it updates), always the same
    pid in the same process group, the one `down` stops. Ready once the bot's
    handshake has written its registry entry."""
    # Imported here: it loads the Firestore client (0.4 s), needed only with bots.
    with _quiet_google_imports():
        from functions.store import BOTS

    work_dir = state_dir / "bots" / bot_id
    work_dir.mkdir(parents=True, exist_ok=True)
    script = bootstrap_script(base_url, id_token(state_dir, local_user(), base_url))
    process = processes.spawn(["sh", "-c", script], log_path, cwd=work_dir,
                              env={"SWARMING_BOT_ID": bot_id, "PYTHONUNBUFFERED": "1"})
    registry = f"{firestore_url}/v1/projects/{PROJECT}/databases/(default)/documents/{BOTS}/{bot_id}"
    processes.wait_until(processes.http_ok(registry), process, f"bot {bot_id}", log_path,
                         timeout=BOT_READY_SECS)
    return _Started(process, None)


def bootstrap_script(base_url: str, admin_token: str) -> str:
    """The start script a new host runs: a bootstrap token minted with
    `server_token`, then `bot_bootstrap?token=...`."""
    minted = _call_for_bot(requests.post, f"{base_url}/server_token", json={},
                           headers={"Authorization": f"Bearer {admin_token}"})
    token = minted.json()["bootstrap_token"]
    return _call_for_bot(requests.get, f"{base_url}/bot_bootstrap", params={"token": token}).text


def _call_for_bot(method: Callable[..., requests.Response], url: str, **kwargs: Any) -> requests.Response:
    try:
        response = method(url, timeout=30, **kwargs)
    except requests.RequestException as e:
        raise StartError(f"cannot start the bots: {url}: {e}") from None
    if not response.ok:
        raise StartError(f"cannot start the bots: {url} answered {response.status_code}: {response.text[:300]}")
    return response


def _refuse_if_running(state_dir: Path) -> None:
    """Refuses a second stack; clears what a dead one left (its record, and any
    child left in the group of a process that died)."""
    state = read_state(state_dir)
    if state is None:
        return
    if any(is_alive(r) for r in state["processes"]):
        raise StartError(f"a local stack is already running in {state_dir}; run 'swarming local down'")
    down(state_dir)


def _write_state(state_dir: Path, state: dict[str, Any]) -> None:
    path = stack_path(state_dir)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(state, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def _stop_record(record: Record) -> bool:
    """Stops a recorded process and its group; True when any of it still ran."""
    pid = record["pid"]
    stat = processes.stat(pid)
    if stat is not None and stat.start_ticks != record["start_ticks"]:
        return False  # the pid names another process now: ours ended, and its group with it
    members = processes.group_members(pid)
    if stat is not None:
        processes.stop(pid)  # also reaps the leader when it is our dead child
    elif members:
        processes.stop(members[0])  # the leader died: stop what it left in its group
    return bool(members)


def _stop_new_children(before: set[int]) -> None:
    """Stops every process this one started since `before`, newest first: they
    include one that an emulator starter spawned and had not returned yet."""
    new = [(stat.start_ticks, pid) for pid in _children() - before if (stat := processes.stat(pid))]
    for _, pid in sorted(new, reverse=True):
        processes.stop(pid)


def _children() -> set[int]:
    me = os.getpid()
    return {pid for pid, stat in processes.all_stats().items() if stat.ppid == me}
