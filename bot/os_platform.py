"""What differs between operating systems, in one place: process groups and
their signals, the directory lock, restarting the bot in place, the stack dump
signal, handing a pipe to a child. POSIX (Linux, macOS) today; Windows goes
here too (CTRL_BREAK_EVENT and TerminateProcess for the dance, msvcrt locking,
a child process instead of exec, a handle instead of a file descriptor)."""

from __future__ import annotations

import contextlib
import faulthandler
import logging
import os
import signal
import sys
import threading
import traceback
from typing import IO, Any, Callable, Mapping, Sequence

logger = logging.getLogger(__name__)

#: Popen arguments that start a child in a process group of its own, so that
#: signals sent to the group reach all its descendants.
NEW_GROUP: dict[str, Any] = {"start_new_session": True}


def terminate_group(pgid: int) -> None:
    """The polite half of the dance: SIGTERM to the whole group."""
    _signal_group(pgid, signal.SIGTERM)


def kill_group(pgid: int) -> None:
    _signal_group(pgid, signal.SIGKILL)


def terminate(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)


def kill(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def _signal_group(pgid: int, sig: int) -> None:
    # The group is already gone; or none of it is this user's to signal (a setuid leader).
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def describe_exit(returncode: int) -> str:
    """'exit code 3' or 'killed by SIGKILL', for messages."""
    if returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exit code {returncode}"


class DirectoryLock:
    """An exclusive lock on a file (`swarming.lck`), held while the process
    lives: the kernel drops it when the process dies or execs, so a crashed
    bot never leaves a stale lock behind."""

    def __init__(self, path: os.PathLike[str] | str):
        self.path = path
        self._file: IO[bytes] | None = None

    def acquire(self) -> bool:
        import fcntl

        handle = open(self.path, "ab")  # Close-on-exec: an exec'd bot takes it anew.
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            return False
        self._file = handle
        return True

    def release(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def exec_python(args: Sequence[str], env: Mapping[str, str] | None = None) -> None:
    """Replaces this process with `python3 *args`, same pid: a supervisor
    (systemd, launchd) sees one process throughout. Never returns."""
    argv = [sys.executable, *args]
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    logging.shutdown()
    os.execve(sys.executable, argv, dict(os.environ if env is None else env))


def on_stop_signals(handler: Callable[[int], None]) -> None:
    """Calls `handler(signum)` on SIGTERM and SIGINT, from a thread of its own:
    the signal interrupts the main thread anywhere, possibly holding a lock
    the handler needs (an Event's, logging's)."""

    def handle(signum: int, _frame: object) -> None:
        threading.Thread(target=handler, args=(signum,), name="stop-signal", daemon=True).start()

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, handle)


def on_stack_dump_signal(log: logging.Logger) -> None:
    """SIGUSR1 logs the stack of every thread (seed: "Signal handling")."""

    def handle(_signum: int, _frame: object) -> None:
        threading.Thread(target=log_stacks, args=(log,), name="stack-dump", daemon=True).start()

    if hasattr(signal, "SIGUSR1"):
        signal.signal(signal.SIGUSR1, handle)
    faulthandler.enable()  # A fatal error in C still leaves its stacks on stderr.


def log_stacks(log: logging.Logger) -> None:
    names = {thread.ident: thread.name for thread in threading.enumerate()}
    dump = []
    for ident, frame in sys._current_frames().items():
        if names.get(ident) == "stack-dump":
            continue
        dump.append(f"Thread {names.get(ident, '?')} ({ident}):\n{''.join(traceback.format_stack(frame))}")
    log.warning("SIGUSR1: the stacks of %d threads:\n%s", len(dump), "\n".join(dump))


def child_pipe() -> tuple[int, int]:
    """A pipe (read end, write end) of which a child inherits one end (see
    `pass_fds`), and no other child either: both are close-on-exec here."""
    read_fd, write_fd = os.pipe()
    return read_fd, write_fd


def wait_for_end_of_file(fd: int) -> None:
    """Blocks until the pipe `fd` reads at its end: every writer closed it,
    or died (a lifeline: the process holding its write end is gone)."""
    with open(fd, "rb", buffering=0) as pipe:
        while pipe.read(1):
            pass


def pass_fds(*fds: int) -> dict[str, Any]:
    """Popen arguments that let the child inherit these descriptors."""
    return {"pass_fds": fds}
