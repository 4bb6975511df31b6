"""Why a task did not complete normally, in one line, from its result's fields
(and its request's, for the slice it waited on and its timeouts)."""

import datetime
from typing import Any

from shared.states import State


def explain(result: dict[str, Any], request: dict[str, Any] | None) -> str | None:
    """`task ID STATE: reason`, or None for a task that completed (whatever its exit code)."""
    state = State(result["state"])
    if state in (State.COMPLETED, State.PENDING, State.RUNNING):
        return None
    reason = _REASONS[state](result, _slice(result, request))
    return f"task {result['task_id']} {state.value}: {reason}"


def _slice(result: dict[str, Any], request: dict[str, Any] | None) -> dict[str, Any] | None:
    slices = (request or {}).get("task_slices") or []
    index = result.get("current_task_slice") or 0
    return slices[index] if index < len(slices) else None


def _where(result: dict[str, Any], task_slice: dict[str, Any] | None) -> str:
    """`slice K` (of N), with its dimensions when the request is known."""
    where = f"slice {result.get('current_task_slice') or 0}"
    if task_slice:
        dims = " ".join(f"{d['key']}={d['value']}" for d in task_slice["properties"].get("dimensions", []))
        where += f" ({dims})"
    return where


def _waited(result: dict[str, Any]) -> str:
    start, end = result.get("created_ts"), result.get("abandoned_ts") or result.get("completed_ts")
    if not (start and end):
        return ""
    seconds = (datetime.datetime.fromisoformat(end) - datetime.datetime.fromisoformat(start)).total_seconds()
    return f" after {seconds:.0f} s"


def _on_bot(result: dict[str, Any]) -> str:
    return f" on bot {result['bot_id']}" if result.get("bot_id") else ""


def _expired(result: dict[str, Any], task_slice: dict[str, Any] | None) -> str:
    return f"expired{_waited(result)}: no bot matching {_where(result, task_slice)} took it"


def _no_resource(result: dict[str, Any], task_slice: dict[str, Any] | None) -> str:
    return f"no live bot matches {_where(result, task_slice)}, and it does not wait for capacity"


def _timed_out(result: dict[str, Any], task_slice: dict[str, Any] | None) -> str:
    ran = f" after {result['duration']:.1f} s" if result.get("duration") is not None else ""
    limits = ""
    if task_slice:
        props = task_slice["properties"]
        limits = f" (hard timeout {props['execution_timeout_secs']} s, I/O timeout {props['io_timeout_secs']} s)"
    return f"stopped{ran}{_on_bot(result)}: it ran out of time{limits}"


def _killed(result: dict[str, Any], task_slice: dict[str, Any] | None) -> str:
    return f"killed while running{_on_bot(result)}, by {result.get('canceled_by') or 'a cancel with kill_running'}"


def _canceled(result: dict[str, Any], task_slice: dict[str, Any] | None) -> str:
    by = f", by {result['canceled_by']}" if result.get("canceled_by") else ""
    return "canceled before its command started" + _on_bot(result) + by


def _bot_died(result: dict[str, Any], task_slice: dict[str, Any] | None) -> str:
    bot = f"bot {result['bot_id']}" if result.get("bot_id") else "its bot"
    message = result.get("internal_failure_message")
    return f"{bot} died or stopped reporting" + (f": {message}" if message else "")


def _client_error(result: dict[str, Any], task_slice: dict[str, Any] | None) -> str:
    missing = result.get("missing_cas") or []
    if missing:
        return "missing CAS digests: " + ", ".join(f"{d['hash']}/{d['size_bytes']}" for d in missing)
    return result.get("internal_failure_message") or "the request could not be carried out"


_REASONS = {
    State.EXPIRED: _expired, State.NO_RESOURCE: _no_resource, State.TIMED_OUT: _timed_out, State.KILLED: _killed,
    State.CANCELED: _canceled, State.BOT_DIED: _bot_died, State.CLIENT_ERROR: _client_error,
}
