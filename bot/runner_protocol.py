"""What the bot and its task runner process tell each other: the runner's
input, a file the bot writes (bot/runner_supervisor.py) and the runner reads
(bot/runner_main.py), then what becomes of the task, one JSON line at a time
on a pipe the other way, then the runner's exit code.

The input is `w/task_runner_in.json`, mode 0600 (the manifest may carry
secrets, and the run token is the runner's credential; the runner deletes it
with the rest of w/ before the command starts). The status lines:

    {"started": PID}                           the command runs, in process group PID
    {"error": MESSAGE, "missing_cas": [...]}   the bot could not run the task
    {"result": {"exit_code", "duration", "stop", "reported"}}

Besides, the runner holds the read end of a lifeline pipe whose write end
only the bot holds: its end of file tells the runner the bot died.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any, Type, TypeVar

from bot import layout
from bot.cas_cache import Limits
from bot.task_runner import Result, Timings
from shared.bot_api import ATTRIBUTES, BotAttributes
from shared.cas import Digest
from shared.manifest import Manifest
from shared.wire import MAX_INT64, REQUIRED, WireObject

INPUT_NAME = "task_runner_in.json"
#: The runner's exit codes: the task ended (reported or not, see Status.result);
#: the bot could not run it (see Status.error). Anything else is a runner that died.
TASK_ENDED, TASK_ERROR = 0, 10

N = TypeVar("N")


@dataclasses.dataclass(frozen=True)
class RunnerInput:
    """What the bot hands its task runner process for one task."""

    manifest: Manifest  # From the won claim.
    server: str  # The bot's server; the manifest's `host`, when set, is used instead.
    attributes: BotAttributes  # The bot's, with the server's last session: every update carries them.
    bot_dir: Path  # The bot's directory (bot/layout.py): the task's w/ and io/, c/, cas_cache/, logs/.
    timings: Timings  # The runner's: output pace, keepalives, grace, its patience with the server.
    cas_limits: Limits  # cas_cache/'s, from the hooks' settings as of the attributes.
    # The runner's credential, for this run's updates and its files only (the
    # claim's Run.run_token); never in an environment, nor a file past this one.
    run_token: str | None = dataclasses.field(default=None, repr=False)
    #: The user the command runs as (the settings' `run_tasks_as`); None: the runner's.
    run_as: str | None = None

    def write(self, path: Path) -> None:
        """Creates `path`, readable by this user only; one already there is an error."""
        layout.write_private(path, self.to_wire())

    @classmethod
    def read(cls, path: Path) -> RunnerInput:
        """Raises OSError, ValueError (not JSON) or ValidationError (naming the field)."""
        return cls.from_wire(json.loads(path.read_text(encoding="utf-8")))

    def to_wire(self) -> dict[str, Any]:
        return {"manifest": self.manifest.to_wire(), "server": self.server, "attributes": self.attributes.to_wire(),
                "bot_dir": str(self.bot_dir), "timings": dataclasses.asdict(self.timings),
                "cas_limits": dataclasses.asdict(self.cas_limits), "run_token": self.run_token,
                "run_as": self.run_as}

    @classmethod
    def from_wire(cls, body: Any) -> RunnerInput:
        wire = WireObject(body, "", [f.name for f in dataclasses.fields(cls)])
        attributes = WireObject(wire.get("attributes"), "attributes", ATTRIBUTES)
        token, run_as = wire.optional("run_token"), wire.optional("run_as")
        return cls(manifest=Manifest.from_wire(wire.get("manifest"), "manifest"),
                   server=wire.string("server", MAX_INT64, default=REQUIRED),
                   attributes=BotAttributes.read(attributes),
                   bot_dir=Path(wire.string("bot_dir", MAX_INT64, default=REQUIRED)),
                   timings=_numbers(Timings, wire, "timings"), cas_limits=_numbers(Limits, wire, "cas_limits"),
                   run_token=None if token is None else wire.string("run_token", MAX_INT64),
                   run_as=None if run_as is None else wire.string("run_as", MAX_INT64))


@dataclasses.dataclass(frozen=True)
class Status:
    """One line on the status pipe: the command started, the bot could not
    run the task, or the task ended. One of the fields is set."""

    started: int | None = None  # The command's pid, which is also its process group.
    error: str | None = None  # Why the bot could not run the task.
    missing_cas: tuple[Digest, ...] | None = None  # With `error`: the inputs the store lacked.
    result: Result | None = None  # How the task ended.

    def to_wire(self) -> dict[str, Any]:
        wire: dict[str, Any] = {}
        if self.started is not None:
            wire["started"] = self.started
        if self.error is not None:
            wire["error"] = self.error
            wire["missing_cas"] = None if self.missing_cas is None else [d.to_wire() for d in self.missing_cas]
        if self.result is not None:
            wire["result"] = self.result.to_wire()
        return wire

    @classmethod
    def from_wire(cls, body: Any) -> Status:
        wire = WireObject(body, "", [f.name for f in dataclasses.fields(cls)])
        started, error, result = wire.optional("started"), wire.optional("error"), wire.optional("result")
        missing = wire.optional("missing_cas")
        return cls(started=None if started is None else wire.integer("started", 1, MAX_INT64),
                   error=None if error is None else wire.string("error", MAX_INT64),
                   missing_cas=None if missing is None else tuple(
                       Digest.from_wire(item, where) for where, item in wire.items("missing_cas", MAX_INT64)),
                   result=None if result is None else Result.from_wire(result, "result"))


def _numbers(kind: Type[N], wire: WireObject, key: str) -> N:
    """A dataclass of numbers ≥ 0 (Timings, Limits), from the object at `key`."""
    numbers = WireObject(wire.get(key), wire.field(key), [f.name for f in dataclasses.fields(kind)])
    return kind(**{name: numbers.number(name, 0, math.inf) for name in numbers.body})
