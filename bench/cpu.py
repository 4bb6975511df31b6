"""CPU time of the local stack's processes, read from /proc.

Each process the stack starts leads a process group of its own (the
gateway with its workers, a bot with its task runners), so a group's CPU is
what that part of the stack used: its live processes' own time plus the time
of the children they reaped (a task runner's, once its bot has waited for it).
"""

import os
from pathlib import Path
from typing import Any

_TICKS = os.sysconf("SC_CLK_TCK")


def by_group() -> dict[int, float]:
    """CPU seconds (user and system, own and reaped children's) of the live
    processes, summed by process group."""
    groups: dict[int, float] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:
            continue
        pgrp = int(fields[2])
        groups[pgrp] = groups.get(pgrp, 0.0) + sum(int(f) for f in fields[11:15]) / _TICKS  # utime..cstime
    return groups


def group_secs(pgrp: int) -> float:
    """The CPU seconds of one process group (see `by_group`)."""
    return by_group().get(pgrp, 0.0)


def by_kind(stack: dict[str, Any]) -> dict[str, float]:
    """The CPU seconds of the stack's processes by their kind (firestore,
    gateway, bot...: stack.json's records), and of this process."""
    groups = by_group()
    kinds: dict[str, float] = {}
    for record in stack["processes"]:
        kinds[record["kind"]] = kinds.get(record["kind"], 0.0) + groups.get(record["pid"], 0.0)
    kinds["bench"] = sum(os.times()[:4])
    return kinds


def used(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    """CPU seconds used between two `by_kind` readings, by kind."""
    return {kind: after[kind] - before.get(kind, 0.0) for kind in after}
