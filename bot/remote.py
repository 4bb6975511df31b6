"""The bot's side of the Bot API (PROTOCOL.md): one method per call, typed
replies, and one exception per failure the bot acts on.

Every bot call is idempotent by design (a poll carries its request_uuid, a claim
its claim_id, stdout its byte offset), so every one of them, POSTs included, is
retried by urllib3 on transient failures; the body, and so those ids, is the
same on every attempt.
"""

from __future__ import annotations

import base64
import dataclasses
import os
import re
import tempfile
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Sequence, TypeVar, Union

import requests
from requests.adapters import HTTPAdapter
from urllib3.util import Retry

from shared.cas import Digest
from shared.errors import SwarmingError, ValidationError
from shared.task_properties import CasReference

T = TypeVar("T")

#: (connect, read) seconds. No bot call streams, so a read this long means a stuck server.
TIMEOUT = (10.0, 60.0)
RETRY_STATUSES = (429, 500, 502, 503, 504)
#: As the server validates named cache names.
CACHE_NAME_RE = re.compile(r"^[a-z0-9_]{1,128}$")


def default_retry() -> Retry:
    """Up to 8 attempts more, backing off 0, 1, 2, 4... s (capped at 30 s, plus
    up to 1 s of jitter so a fleet does not retry in step): about a minute and a
    half before a call fails and the loop's own backoff takes over."""
    return Retry(total=8, allowed_methods=None, status_forcelist=RETRY_STATUSES,
                 backoff_factor=0.5, backoff_max=30.0, backoff_jitter=1.0,
                 raise_on_status=False)


class RemoteError(SwarmingError):
    """A call failed for good, after the retries. `status` is None when no HTTP
    answer came back at all."""

    def __init__(self, call: str, status: int | None, code: str, message: str):
        where = f"HTTP {status}" if status else "no answer"
        super().__init__(f"{call}: {where}: {code}: {message}")
        self.call = call
        self.status = status
        self.code = code
        self.message = message


class RunGone(RemoteError):
    """409 on a task update: the run is no longer this bot's to report on."""


class BadManifest(RemoteError):
    """A claim was won but its manifest is unusable: the run is this bot's, and
    must be failed with `task_error` rather than left to time out."""

    def __init__(self, run_id: str, message: str):
        super().__init__("bot_claim", 200, "bad_manifest", message)
        self.run_id = run_id


@dataclasses.dataclass(frozen=True)
class Attributes:
    """What a bot says about itself on every call."""

    dimensions: dict[str, list[str]]
    state: dict[str, Any]
    version: str

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class Sleep:
    duration: float


@dataclasses.dataclass(frozen=True)
class Candidate:
    task_id: str
    slice: int


@dataclasses.dataclass(frozen=True)
class UpdateCode:
    """Switch to the bot code of this digest (seed: "update")."""

    version: str


@dataclasses.dataclass(frozen=True)
class Restart:
    """Restart the bot process; `host` when the server asked for the host
    (`restart`), which only a hook may turn into a reboot."""

    message: str
    host: bool = False


@dataclasses.dataclass(frozen=True)
class Terminate:
    """Complete this termination task, then exit."""

    task_id: str


@dataclasses.dataclass(frozen=True)
class Claim:
    """Pending tasks the bot may claim, to be tried in order."""

    candidates: tuple[Candidate, ...]


@dataclasses.dataclass(frozen=True)
class Skip:
    reason: str


@dataclasses.dataclass(frozen=True)
class Manifest:
    """What to run, from a won claim. Paths are relative to the task's `w/`."""

    task_id: str  # The run id: every update names it.
    bot_id: str
    command: tuple[str, ...]
    env: dict[str, str]
    hard_timeout: float
    grace_period: float | None  # None: the bot's default.
    io_timeout: float = 0.0  # Seconds without output before the command is stopped; 0: none.
    relative_cwd: str = ""  # Where the command runs, under w/.
    # Prepended, in order and made absolute under w/, to each variable.
    env_prefixes: dict[str, tuple[str, ...]] = dataclasses.field(default_factory=dict)
    host: str = ""  # The server URL for the whole task; empty: the bot's.
    #: Named caches, (name, path under w/): kept in the bot's c/ between tasks.
    caches: tuple[tuple[str, str], ...] = ()
    cas_input_root: Digest | None = None  # The manifest of the tree to place in w/ first.
    outputs: tuple[str, ...] = ()  # Paths under w/ uploaded with ${ISOLATED_OUTDIR} after the command.
    #: The manifest as the server sent it, for the task runner process (fields
    #: the bot itself does not read included).
    raw: dict[str, Any] = dataclasses.field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> "Manifest":
        """Raises TypeError or ValueError naming the first bad field."""
        command = tuple(_typed(body["command"], list))
        if not command or not all(isinstance(arg, str) for arg in command):
            raise ValueError("command must be a non-empty list of strings")
        grace = body.get("grace_period")
        env = _typed(body.get("env") or {}, dict)
        return cls(
            task_id=_typed(body["task_id"], str),
            bot_id=_typed(body["bot_id"], str),
            command=command,
            env={_typed(k, str): _typed(v, str) for k, v in env.items()},
            hard_timeout=_seconds(body["hard_timeout"], "hard_timeout"),
            grace_period=None if grace is None else _seconds(grace, "grace_period"),
            io_timeout=_seconds(body.get("io_timeout") or 0, "io_timeout"),
            relative_cwd=_typed(body.get("relative_cwd") or "", str),
            env_prefixes=_env_prefixes(body.get("env_prefixes") or []),
            host=_typed(body.get("host") or "", str),
            caches=_caches(body.get("caches") or []),
            cas_input_root=_cas_reference(body.get("cas_input_root")),
            outputs=tuple(_typed(p, str) for p in _typed(body.get("outputs") or [], list)),
            raw=body,
        )


@dataclasses.dataclass(frozen=True)
class Completion:
    """The end of a run; exit code and duration always travel together."""

    exit_code: int
    duration: float
    hard_timeout: bool = False
    io_timeout: bool = False
    cas_output_root: Digest | None = None  # The tree of the task's outputs; None: nothing uploaded.
    #: {"bot_overhead_secs", "cas_download": {...}, "cas_upload": {...}} (bot/task_files.py).
    performance_stats: dict[str, Any] | None = None


@dataclasses.dataclass(frozen=True)
class Update:
    """One bot_task_update: stdout bytes at their offset, maybe the end: the
    completion of a command that ran, or `canceled` for one that never started."""

    offset: int
    output: bytes = b""
    completion: Completion | None = None
    canceled: bool = False


class Remote:
    """The server's Bot API over one HTTP session."""

    def __init__(self, server: str, token: str, retry: Retry | None = None,
                 timeout: tuple[float, float] = TIMEOUT):
        self.server = server.rstrip("/")
        self.token = token  # Handed to the task runner process, which reports the task.
        self._timeout = timeout
        self._session = requests.Session()
        adapter = HTTPAdapter(max_retries=retry or default_retry())
        self._session.mount("http://", adapter)
        self._session.mount("https://", adapter)
        self._session.headers["Authorization"] = f"Bearer {token}"
        self._extra_headers: dict[str, str] = {}  # From the get_authentication_headers hook.
        #: The server's last `session`, sent back on every call: it tells the
        #: server what it last wrote of this bot, sparing a write per call.
        self.bot_session: str | None = None

    def close(self) -> None:
        self._session.close()

    def set_headers(self, headers: Mapping[str, str]) -> None:
        """Headers added to every later call (the `get_authentication_headers`
        hook's), in place of those set before; an `Authorization` among them
        replaces the bearer token's until they are set again without one."""
        for name in self._extra_headers:
            self._session.headers.pop(name, None)
        self._session.headers["Authorization"] = f"Bearer {self.token}"
        self._extra_headers = dict(headers)
        self._session.headers.update(self._extra_headers)

    def handshake(self, attributes: Attributes) -> dict[str, Any]:
        return self._bot_call("bot_handshake", attributes, {}, lambda reply: reply)

    def poll(self, attributes: Attributes, request_uuid: str) -> PollReply:
        return self._bot_call("bot_poll", attributes, {"request_uuid": request_uuid}, _poll_reply)

    def claim(self, attributes: Attributes, candidate: Candidate, claim_id: str) -> Manifest | Skip:
        fields = {"task_id": candidate.task_id, "slice": candidate.slice, "claim_id": claim_id}
        return self._bot_call("bot_claim", attributes, fields, _claim_reply)

    def task_update(self, attributes: Attributes, run_id: str, update: Update) -> str | None:
        """Returns None to carry on, or why the server wants the task stopped."""
        fields: dict[str, Any] = {
            "task_id": run_id,
            "output": base64.b64encode(update.output).decode("ascii"),
            "output_chunk_start": update.offset,
        }
        if update.completion:
            fields["exit_code"] = update.completion.exit_code
            fields["duration"] = update.completion.duration
            fields["hard_timeout"] = update.completion.hard_timeout
            fields["io_timeout"] = update.completion.io_timeout
            if update.completion.cas_output_root is not None:
                fields["cas_output_root"] = CasReference(update.completion.cas_output_root).to_wire()
            if update.completion.performance_stats is not None:
                fields["performance_stats"] = update.completion.performance_stats
        if update.canceled:
            fields["canceled"] = True
        return self._bot_call("bot_task_update", attributes, fields, _update_reply)

    def task_error(self, attributes: Attributes, run_id: str, message: str,
                   missing_cas: Sequence[Any] | None = None) -> None:
        """Ends a run the bot could not carry out: BOT_DIED, or CLIENT_ERROR
        when `missing_cas` names inputs that were not there. Safe to retry:
        an ended run does not end again."""
        fields: dict[str, Any] = {"task_id": run_id, "message": message}
        if missing_cas is not None:
            fields["client_error"] = {"missing_cas": list(missing_cas)}
        self._bot_call("bot_task_error", attributes, fields, lambda reply: None)

    def event(self, attributes: Attributes, event: str, message: str) -> None:
        """`bot_event`: bot_error, bot_log, bot_rebooting or bot_shutdown
        (the body: the attributes, `event` and `message`)."""
        self._bot_call("bot_event", attributes, {"event": event, "message": message}, lambda reply: None)

    def bot_code(self, version: str, dest: Path) -> None:
        """Downloads the bot zip of digest `version` to `dest`, replaced whole
        or not at all: a partial download never takes the name."""
        url = f"{self.server}/bot_code"
        try:
            response = self._session.get(url, params={"version": version}, timeout=self._timeout, stream=True)
        except requests.RequestException as e:
            raise RemoteError("bot_code", None, "unreachable", str(e)) from e
        with response:
            if not response.ok:
                raise _error("bot_code", response)
            fd, tmp = tempfile.mkstemp(prefix=dest.name + ".", suffix=".tmp", dir=dest.parent)
            try:
                with os.fdopen(fd, "wb") as out:
                    for chunk in response.iter_content(1 << 16):
                        out.write(chunk)
                os.replace(tmp, dest)
            except requests.RequestException as e:
                raise RemoteError("bot_code", response.status_code, "truncated", str(e)) from e
            finally:
                if os.path.exists(tmp):
                    os.unlink(tmp)

    def call(self, function: str, body: dict[str, Any]) -> dict[str, Any]:
        """A call without the bot's attributes, as the CAS functions take
        them: this makes a Remote the `shared.cas_transfer.Service` of a task."""
        return self._post(function, body)

    def _bot_call(self, name: str, attributes: Attributes, fields: dict[str, Any],
              parse: Callable[[dict[str, Any]], T]) -> T:
        session = {"session": self.bot_session} if self.bot_session else {}
        reply = self._post(name, {**attributes.to_json(), **session, **fields})
        if isinstance(reply.get("session"), str):
            self.bot_session = reply["session"]
        try:
            return parse(reply)
        except (AttributeError, KeyError, TypeError, ValueError) as e:
            raise RemoteError(name, 200, "bad_reply", f"{e!r} in {reply!r}") from e

    def _post(self, name: str, body: dict[str, Any]) -> dict[str, Any]:
        try:
            response = self._session.post(f"{self.server}/{name}", json=body, timeout=self._timeout)
        except requests.RequestException as e:
            raise RemoteError(name, None, "unreachable", str(e)) from e
        if not response.ok:
            raise _error(name, response)
        try:
            reply = response.json()
        except ValueError:
            reply = None
        if not isinstance(reply, dict):
            raise RemoteError(name, response.status_code, "bad_reply", response.text[:200])
        return reply


def _error(call: str, response: requests.Response) -> RemoteError:
    try:
        error = response.json()["error"]
        code, message = str(error["code"]), str(error["message"])
    except (ValueError, KeyError, TypeError):
        code, message = "http_error", response.text[:200]
    kind = RunGone if response.status_code == 409 else RemoteError
    return kind(call, response.status_code, code, message)


PollReply = Union[Sleep, Claim, UpdateCode, Restart, Terminate]


def _poll_reply(reply: dict[str, Any]) -> PollReply:
    cmd = reply["cmd"]
    if cmd == "sleep":
        return Sleep(float(reply["duration"]))
    if cmd == "claim":
        return Claim(tuple(Candidate(_typed(c["task_id"], str), int(c.get("slice", 0)))
                           for c in reply["candidates"]))
    if cmd == "update":
        return UpdateCode(_typed(reply["version"], str))
    if cmd in ("bot_restart", "restart"):
        return Restart(str(reply.get("message") or ""), host=cmd == "restart")
    if cmd == "terminate":
        return Terminate(_typed(reply["task_id"], str))
    raise ValueError(f"unknown cmd {cmd!r}")


def _claim_reply(reply: dict[str, Any]) -> Union[Manifest, Skip]:
    cmd = reply["cmd"]
    if cmd == "run":
        body = reply["manifest"]
        try:
            return Manifest.from_json(body)
        except (AttributeError, KeyError, TypeError, ValueError) as e:
            run_id = body.get("task_id") if isinstance(body, dict) else None
            if not isinstance(run_id, str):
                raise  # Not even whose run it is: nothing to report on.
            raise BadManifest(run_id, f"{e!r} in the manifest") from e
    if cmd == "skip":
        return Skip(str(reply.get("reason", "")))
    raise ValueError(f"unknown cmd {cmd!r}")


def _update_reply(reply: dict[str, Any]) -> Optional[str]:
    if not reply.get("must_stop"):
        return None
    return str(reply.get("stop_reason") or "stopped by the server")


def _seconds(value: Any, field: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
        raise ValueError(f"{field}: {value!r} is not a non-negative number of seconds")
    return float(value)


def _env_prefixes(value: Any) -> dict[str, tuple[str, ...]]:
    """`[{key, value: [paths]}]` as in the task request, or the reference's
    `{key: [paths]}`; the paths are checked where they are used, under w/."""
    pairs = value.items() if isinstance(value, dict) else (
        (_typed(item, dict)["key"], item["value"]) for item in _typed(value, list))
    prefixes: dict[str, tuple[str, ...]] = {}
    for key, paths in pairs:
        if _typed(key, str) in prefixes:
            raise ValueError(f"env_prefixes: {key!r} given twice")
        prefixes[key] = tuple(_typed(p, str) for p in _typed(paths, list))
    return prefixes


def _caches(value: Any) -> tuple[tuple[str, str], ...]:
    """`[{name, path}]`; a name is also the cache's directory under c/."""
    caches = []
    for item in _typed(value, list):
        name, path = _typed(_typed(item, dict)["name"], str), _typed(item["path"], str)
        if not CACHE_NAME_RE.match(name):
            raise ValueError(f"caches: {name!r} does not match {CACHE_NAME_RE.pattern}")
        if name in dict(caches):
            raise ValueError(f"caches: {name!r} given twice")
        caches.append((name, path))
    return tuple(caches)


def _cas_reference(value: Any) -> Digest | None:
    """`{digest: {hash, size_bytes}}`, or None."""
    if value is None:
        return None
    try:
        return CasReference.from_wire(value, "cas_input_root").digest
    except ValidationError as e:
        raise ValueError(str(e)) from e


def _typed(value: Any, kind: type[T]) -> T:
    if not isinstance(value, kind):
        raise TypeError(f"{value!r} is not a {kind.__name__}")
    return value
