"""What a bot reports about the run it holds: stdout, heartbeats, the end."""

import base64
import binascii
import datetime
from typing import Any

from functions import dedup, stdout
from functions.bots import BotRequest, Registry
from functions.context import Context
from functions.errors import BadRequest, Conflict, PayloadTooLarge
from functions.models import TaskResult
from functions.store import TaskBatch, Writes
from shared import task_id as task_ids
from shared.errors import ValidationError
from shared.states import State
from shared.task_properties import CasReference
from shared.wire import WireObject

#: The result of a running task is rewritten at most this often by heartbeats.
HEARTBEAT_SECS = 10
#: The keys of `performance_stats`, each a number ≥ 0 or an object of such numbers.
PERFORMANCE_STATS: dict[str, tuple[str, ...] | None] = {
    "bot_overhead_secs": None,
    "cas_download": ("duration_secs", "items_cold", "bytes_cold", "items_hot", "bytes_hot"),
    "cas_upload": ("duration_secs", "items", "bytes", "items_uploaded", "bytes_uploaded"),
}


def update(ctx: Context, registry: Registry, bot: BotRequest, body: dict[str, Any],
           now: datetime.datetime) -> dict[str, Any]:
    run_id = body.get("task_id")
    if not isinstance(run_id, str) or not task_ids.is_valid(run_id) or run_id.endswith("0"):
        raise BadRequest("task_id: must be the run id from the manifest")
    data, offset = _output(body)
    end = _end(body)

    def change(result: TaskResult, _batch: TaskBatch) -> Writes:
        if result.run_id != run_id or result.bot_id != bot.bot_id:
            raise Conflict(f"run {run_id} is not held by bot {bot.bot_id}")
        if result.state.is_final:  # A final result never changes, nor its stdout.
            if end and not _same_end(result, end):
                raise Conflict(f"task {result.task_id} already ended {result.state.value}")
            return Writes.NOTHING
        if end:
            _apply_end(result, end, now)
        elif (now - result.modified_ts).total_seconds() < HEARTBEAT_SECS:
            return Writes.OUTPUT
        result.modified_ts = now
        return Writes.OUTPUT | Writes.RESULT

    result = ctx.store.transact(task_ids.summary_id(run_id), change, output=(run_id, offset, data))
    if end:
        dedup.finished(ctx, result, now)
    must_stop = (result.state.is_final and not end) or result.killing and not result.state.is_final
    stop_reason = (State.KILLED.value if result.killing else result.state.value) if must_stop else None
    return {"ok": True, "must_stop": must_stop, "stop_reason": stop_reason,
            "session": registry.check_in(bot, result.task_id, now)}


def _apply_end(result: TaskResult, end: dict[str, Any], now: datetime.datetime) -> None:
    """A stop before the command started is CANCELED; after a kill, KILLED."""
    result.cas_output_root, result.performance_stats = end["cas_output_root"], end["performance_stats"]
    if end["canceled"]:
        result.state = State.CANCELED if result.killing else State.BOT_DIED
        result.abandoned_ts = now
        return
    if result.killing:
        result.state = State.KILLED
    else:
        result.state = State.TIMED_OUT if end["timed_out"] else State.COMPLETED
    result.exit_code, result.duration, result.completed_ts = end["exit_code"], end["duration"], now


def _same_end(result: TaskResult, end: dict[str, Any]) -> bool:
    """A resent completion (the bot did not get the answer) is no conflict."""
    if end["canceled"]:
        return result.state in (State.CANCELED, State.BOT_DIED)
    return (result.exit_code, result.duration, result.cas_output_root) == (
        end["exit_code"], end["duration"], end["cas_output_root"])


def _output(body: dict[str, Any]) -> tuple[bytes, int]:
    try:
        data = base64.b64decode(body.get("output") or "", validate=True)
    except (binascii.Error, TypeError) as e:
        raise BadRequest(f"output: not valid base64 ({e})") from e
    offset = body.get("output_chunk_start", 0)
    if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
        raise BadRequest("output_chunk_start: must be a non-negative integer")
    if offset + len(data) > stdout.MAX_SIZE:
        raise PayloadTooLarge(f"output: stdout is capped at {stdout.MAX_SIZE} bytes")
    return data, offset


def _end(body: dict[str, Any]) -> dict[str, Any] | None:
    """The end of the run the update reports, if it does: `exit_code` with
    `duration`, or `canceled` (the bot stopped before starting the command);
    either may carry `cas_output_root` and `performance_stats`."""
    exit_code, duration = body.get("exit_code"), body.get("duration")
    if (exit_code is None) != (duration is None):
        raise BadRequest("exit_code: exit_code and duration come together or not at all")
    canceled = body.get("canceled", False)
    if not isinstance(canceled, bool):
        raise BadRequest("canceled: must be a boolean")
    files = _files(body)
    if exit_code is None:
        if canceled:
            return {"canceled": True, **files}
        for key, value in files.items():
            if value is not None:
                raise ValidationError(key, "only comes with the end of the run (exit_code, or canceled)")
        return None
    if isinstance(exit_code, bool) or not isinstance(exit_code, int):
        raise BadRequest("exit_code: must be an integer")
    if isinstance(duration, bool) or not isinstance(duration, (int, float)) or duration < 0:
        raise BadRequest("duration: must be a non-negative number of seconds")
    timed_out = bool(body.get("hard_timeout") or body.get("io_timeout"))
    return {"exit_code": exit_code, "duration": float(duration), "timed_out": timed_out, "canceled": False,
            **files}


def _files(body: dict[str, Any]) -> dict[str, Any]:
    """`cas_output_root` and `performance_stats`, validated (null is absent)."""
    root, stats = body.get("cas_output_root"), body.get("performance_stats")
    return {
        "cas_output_root": None if root is None else CasReference.from_wire(root, "cas_output_root").to_wire(),
        "performance_stats": None if stats is None else _performance_stats(stats),
    }


def _performance_stats(body: Any) -> dict[str, Any]:
    """Only the keys of PERFORMANCE_STATS, all optional; ValidationError names a bad one."""
    stats = WireObject(body, "performance_stats", PERFORMANCE_STATS)
    valid: dict[str, Any] = {}
    for key, value in stats.body.items():
        keys = PERFORMANCE_STATS[key]
        if keys is None:
            valid[key] = _non_negative(value, stats.field(key))
        else:
            group = WireObject(value, stats.field(key), keys)
            valid[key] = {k: _non_negative(v, group.field(k)) for k, v in group.body.items()}
    return valid


def _non_negative(value: Any, field: str) -> int | float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < float("inf"):
        raise ValidationError(field, "must be a number ≥ 0")
    return value
