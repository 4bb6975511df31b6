"""Why a task is still pending: for each slice it may still run, how many
live bots match it now (and, when none does, which of its dimensions rules
out the most bots), where it stands in its queue, and when it expires.

Every figure is a count aggregation (one billed read per 1,000 entries), so
the answer costs a few reads whatever the fleet's size: the task, its
pending slice, one count per OR alternative of each slice (at most
MAX_ALTERNATIVES), one per dimension of a slice no bot matches, and one for
the position.
"""

import datetime
from typing import Any

from functions.bot_store import BotStore, dimension_filter
from functions.errors import NotFound
from functions.models import iso
from functions.store import Store
from functions.tasks import Check
from shared import dimensions as dims_lib
from shared import task_id as task_ids
from shared.states import State
from shared.task_request import TaskRequest

#: OR alternatives counted per slice; a slice with more says its count is partial.
MAX_ALTERNATIVES = 8
_LIVE = ("is_dead", "==", False)


def explain(store: Store, bots: BotStore, task_id: str, check: Check) -> dict[str, Any]:
    """`check(result)` raises unless the caller may read the task →
    `{task_id, state, slices: [...]}`, `slices` empty unless it is pending."""
    found = store.get_task(task_ids.summary_id(task_ids.parse(task_id, "task_id")))
    if found is None:
        raise NotFound(f"no task {task_id}")
    result, request = found
    check(result)
    answer: dict[str, Any] = {"task_id": result.task_id, "state": result.state.value, "slices": []}
    if result.state != State.PENDING:
        return answer
    current = result.current_task_slice
    pending = store.get_to_run(result.task_id, current)
    expires = pending[0].expiration_ts if pending else result.expiration_ts
    for index in range(current, len(request.task_slices)):
        if index > current and expires is not None:
            expires += datetime.timedelta(seconds=request.task_slices[index].expiration_secs)
        answer["slices"].append({"slice": index, **_matching(bots, request, index),
                                 "position": store.count_ahead(pending[0]) if pending and index == current else None,
                                 "expiration_ts": iso(expires) if expires else None})
    return answer


def _matching(bots: BotStore, request: TaskRequest, index: int) -> dict[str, Any]:
    """How many live bots match the slice (an upper bound when bots match
    several OR alternatives), and its dimension that rules out the most."""
    alternatives = sorted(dims_lib.expand(request.task_slices[index].properties.dimensions), key=sorted)
    counted = alternatives[:MAX_ALTERNATIVES]
    total = sum(bots.count_bots([dimension_filter(flag) for flag in sorted(flags)] + [_LIVE]) for flags in counted)
    answer = {"matching_bots": total, "partial": len(alternatives) > len(counted), "blocking": None}
    if total == 0 and counted:
        pool = f"pool:{request.pool}"
        alone = {flag: bots.count_bots([dimension_filter(f) for f in dict.fromkeys([pool, flag])] + [_LIVE])
                 for flag in sorted(counted[0])}
        flag = min(alone, key=lambda f: (alone[f], f != pool, f))
        answer["blocking"] = {"dimension": flag, "matching_bots": alone[flag]}
    return answer
