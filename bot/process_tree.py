"""Every process of a task, so that none outlives it.

The command starts in a process group of its own, which one signal reaches
whole; but a descendant may leave the group (`setsid`, a daemon's double
fork), and then outlives every group kill. So on Linux the task runner makes
itself a child subreaper (PR_SET_CHILD_SUBREAPER): an orphaned descendant is
re-parented to the runner instead of init, and stays in its tree. The stops
signal the group and every process of that tree (found in /proc), and the end
of the task kills them until none is left. The runner starts nothing but the
command, so its whole tree is the task's.

Where the runner is no subreaper, the tree is the command's: what left it
while the command lived is found, what was orphaned is lost. Where there is
no /proc (macOS), only the group is signalled. A process the task had
another service start (systemd, a container daemon) is out of reach
everywhere.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import logging
import os
import signal
import sys
import time

from bot import os_platform

logger = logging.getLogger(__name__)

PR_SET_CHILD_SUBREAPER = 36  # linux/prctl.h
#: How long `kill` goes on killing what it finds: a task may fork as fast as it is killed.
KILL_PATIENCE_SECS = 5.0
_PROC = "/proc"
_KILL_ROUND_SECS = 0.01  # Between rounds of `kill`: killed processes become zombies, orphans move.


def become_subreaper() -> bool:
    """Makes this process the child subreaper of its descendants (Linux);
    False where it cannot be one."""
    if not sys.platform.startswith("linux"):
        return False
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        logger.warning("cannot become a child subreaper: %s", os.strerror(ctypes.get_errno()))
        return False
    return True


@dataclasses.dataclass(frozen=True)
class _Process:
    pid: int
    ppid: int
    pgid: int


class Tree:
    """The processes of a command: its process group `group` (the command's
    pid), and every descendant of `root`: the command itself, or a process
    whose descendants are all the task's (the task runner, a subreaper)."""

    def __init__(self, group: int, root: int):
        self.group = group
        self.root = root

    @classmethod
    def of_runner(cls, command: int, subreaper: bool) -> Tree:
        """The tree of the runner's `command`: all of this process's
        descendants when it is a subreaper, else the command's."""
        return cls(command, os.getpid() if subreaper else command)

    def terminate(self) -> None:
        """The polite half of the dance: SIGTERM to the group, and to each
        process of the tree outside it (once: a second SIGTERM may mean
        "now" to a task)."""
        members = self.members()  # First: a process signalled first could orphan its children.
        os_platform.terminate_group(self.group)
        for process in members:
            if process.pgid != self.group:
                _signal(process.pid, signal.SIGTERM)

    def kill(self, patience: float = KILL_PATIENCE_SECS) -> list[int]:
        """SIGKILLs the group and the tree until nothing of it is left, or
        `patience` passed; the pids still there then (which this user may not
        kill, or stuck in the kernel)."""
        give_up = time.monotonic() + patience
        while True:
            left = [process.pid for process in self.members()]  # First, as in `terminate`.
            os_platform.kill_group(self.group)
            for pid in left:
                _signal(pid, signal.SIGKILL)
            self.reap()
            if not left or time.monotonic() >= give_up:
                if left:
                    logger.error("command %d: processes %s survive SIGKILL", self.group, left)
                return left
            time.sleep(_KILL_ROUND_SECS)

    def reap(self) -> None:
        """Collects the orphans re-parented to this subreaper (the root) that
        exited, which would stay zombies; never the command, which Popen
        collects."""
        if self.root != os.getpid():
            return
        while True:
            try:
                exited = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
            except ChildProcessError:  # No child at all.
                return
            if exited is None or exited.si_pid == self.group:
                return
            with contextlib.suppress(ChildProcessError):
                os.waitpid(exited.si_pid, 0)

    def members(self) -> list[_Process]:
        """The live processes of the tree (zombies are dead already)."""
        if not os.path.isdir(_PROC) or self._childless_subreaper():
            return []
        processes = _live_processes()
        children: dict[int, list[_Process]] = {}
        for process in processes:
            children.setdefault(process.ppid, []).append(process)
        found: list[_Process] = []
        parents = [self.root]
        while parents:
            for child in children.get(parents.pop(), ()):
                found.append(child)
                parents.append(child.pid)
        return found

    def _childless_subreaper(self) -> bool:
        """The root is this subreaper and has no child at all, so no
        descendant either: every orphan of the task is re-parented to it.
        The common end of a task, told without reading a file per process
        of the host."""
        if self.root != os.getpid():
            return False
        try:
            os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:
            return True
        return False


def _live_processes() -> list[_Process]:
    processes = []
    for name in os.listdir(_PROC):
        if not name.isdigit():
            continue
        try:
            with open(os.path.join(_PROC, name, "stat"), "rb") as stat:
                fields = stat.read().rpartition(b")")[2].split()  # After the command's name, which may hold anything.
        except OSError:  # Gone meanwhile.
            continue
        if len(fields) >= 3 and fields[0] not in (b"Z", b"X"):  # Zombies and the dead are gone already.
            processes.append(_Process(int(name), int(fields[1]), int(fields[2])))
    return processes


def _signal(pid: int, sig: int) -> None:
    # Gone meanwhile; or another user's (a setuid program), which `kill` reports if it stays.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, sig)
