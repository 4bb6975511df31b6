"""The bot's default health self-check (seed 000, "Health self-check"): a bot
that fails it reports `quarantined: <reason>` in its state, and the server
gives it no task until a later check passes.

The rules, with thresholds from `get_settings()`:
- TEMP holds no more than `max_temp_files` (1024) entries; more means a leak.
- Every partition that matters (the bot's work dir's, TEMP's and /) keeps at
  least `free_partition.percent` (15 %) of its size or `free_partition.size_gib`
  (4 GiB) free, whichever is the lower: a small disk needs its 15 %, a large
  one only 4 GiB. Setting either to 0 turns the disk check off.
"""

from __future__ import annotations

import os
import shutil
from typing import Any, Mapping

from bot import host_state

GIB = 1024 ** 3

#: The defaults of the settings read here; `get_settings()` overrides any of them.
DEFAULT_FREE_PERCENT = 15.0
DEFAULT_FREE_SIZE_GIB = 4.0
DEFAULT_MAX_TEMP_FILES = 1024


def check(work_dir: str | os.PathLike, settings: Mapping[str, Any] | None = None, *,
          temp_dir: str | None = None,
          disk_usage: host_state.DiskUsage = shutil.disk_usage) -> str | None:
    """Why the bot is unhealthy, or None when it is fine. Raises OSError when
    a directory cannot be examined at all (the caller quarantines on it)."""
    settings = settings or {}
    temp_dir = temp_dir or host_state.temp_dir()
    reasons = []
    max_files = int(settings.get("max_temp_files", DEFAULT_MAX_TEMP_FILES))
    nb_files = host_state.count_temp_files(temp_dir)
    if max_files and nb_files > max_files:
        reasons.append(f"TEMP ({temp_dir}) holds {nb_files} files, more than {max_files}: "
                       "something leaks temporary files")
    free = settings.get("free_partition") or {}
    percent = float(free.get("percent", DEFAULT_FREE_PERCENT))
    size = float(free.get("size_gib", DEFAULT_FREE_SIZE_GIB)) * GIB
    checked = set()
    for what, path in (("the bot's directory", os.fspath(work_dir)), ("TEMP", temp_dir),
                       ("the root", os.path.abspath(os.sep))):
        mount = host_state.mount_point(path)
        if mount in checked:
            continue
        checked.add(mount)
        reason = check_partition(path, percent, size, disk_usage=disk_usage)
        if reason:
            reasons.append(f"{what}: {reason}")
    return "; ".join(reasons) or None


def min_free_bytes(total: float, percent: float, size: float) -> float:
    """The lower of `percent` of the partition and `size` bytes; 0 (no
    minimum) when either is 0."""
    return min(total * percent / 100.0, size)


def check_partition(path: str, percent: float = DEFAULT_FREE_PERCENT,
                    size: float = DEFAULT_FREE_SIZE_GIB * GIB, *,
                    disk_usage: host_state.DiskUsage = shutil.disk_usage) -> str | None:
    """Why the partition of `path` is too full, or None."""
    usage = disk_usage(path)
    total, available = usage.total, usage.free
    needed = min_free_bytes(total, percent, size)
    if available >= needed:
        return None
    return (f"not enough free disk space on {host_state.mount_point(path)}: "
            f"{available / GIB:.1f} GiB free of {total / GIB:.1f} GiB, "
            f"needs {needed / GIB:.1f} GiB (the lower of {percent:g} % and {size / GIB:g} GiB)")
