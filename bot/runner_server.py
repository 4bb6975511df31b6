"""Task runners forked from a server that imported them once (Linux).

Even compiled (bot/unpacked_code.py), a new `python3` takes about a tenth of
a second of CPU to import the task runner's modules (requests above all), on
every task. So the bot starts, from its unpacked copy, one `runner_server`
process that imports them once, then forks a runner per task. Each runner is
still a process of its own (seed: "run"): a task that crashes or hangs its
runner costs that task, never the bot; it gets the command line, descriptors,
environment and directory a spawned runner would, and the bot watches,
signals and kills it by its pid as before (bot/runner_supervisor.py). The
server forks only: it runs no task code, and holds no descriptor of the bot's
but the ones of the runner it is forking.

The bot and the server speak over a Unix SOCK_SEQPACKET pair, one JSON object
a packet:

    bot → server   {"argv": [...], "cwd": ..., "env": {...}, "fds": [n, ...]} (argv: run_task's), with
                   the descriptors [stdout, *fds] attached: the runner gets stdout as
                   its stdout and stderr, /dev/null as its stdin, the others at the
                   numbers `fds` names (the bot's own numbers, which its argv names)
    server → bot   {"pid": n} once forked, or {"error": "..."};
                   {"exited": n, "returncode": n} when a runner ended

The server ends at the end of file on its socket: when the bot closes it,
execs (the socket is close-on-exec) or dies. Until then it ignores SIGINT and
SIGTERM (a Ctrl-C reaches the whole process group): the bot must learn how its
runners ended. A runner gets the default handlers back.
"""

from __future__ import annotations

import fcntl
import gc
import json
import logging
import os
import queue
import select
import signal
import socket
import subprocess
import sys
import threading
import traceback
from pathlib import Path
from typing import Any, Callable, Mapping, NoReturn, Sequence

logger = logging.getLogger(__name__)

#: Largest packet: the runner's environment is most of it.
MAX_PACKET = 1 << 20
MAX_FDS = 16
#: How long the bot waits for a fork, the server's imports included (its first).
START_TIMEOUT_SECS = 60.0
#: A runner whose exit the server could not report (it died) is looked for this often.
LOST_POLL_SECS = 0.05
#: Received descriptors are moved above this before they take their numbers.
_HIGH_FD = 64


class ForkedRunner:
    """A runner the server forked: what runner_supervisor needs of a Popen."""

    def __init__(self, pid: int, args: Sequence[str]):
        self.pid = pid
        self.args = list(args)
        self.returncode: int | None = None
        self._ended = threading.Event()
        self._lost = False  # The server died first: its exit code is lost.

    def wait(self, timeout: float | None = None) -> int:
        if self._lost:
            return self._wait_lost(timeout)
        if not self._ended.wait(timeout):
            raise subprocess.TimeoutExpired(self.args, timeout)
        assert self.returncode is not None
        return self.returncode

    def ended(self, returncode: int) -> None:
        """The server reaped it."""
        self.returncode = returncode
        self._ended.set()

    def orphaned(self) -> None:
        """The server died before it: init reaps it, and its exit code is lost."""
        self._lost = True

    def _wait_lost(self, timeout: float | None) -> int:
        """The server died: its runners went to init (or a subreaper)."""
        waited = 0.0
        while _exists(self.pid):
            if timeout is not None and waited >= timeout:
                raise subprocess.TimeoutExpired(self.args, timeout)
            self._ended.wait(LOST_POLL_SECS)
            waited += LOST_POLL_SECS
        if self.returncode is None:
            logger.error("task runner pid %d ended after the runner server died: its exit code is lost", self.pid)
            self.returncode = 1
        return self.returncode


class RunnerServer:
    """In the bot's process: the server it started, and the runners it forked."""

    def __init__(self, python_args: Sequence[str], *, env: Mapping[str, str], stdout: Path,
                 start_timeout: float = START_TIMEOUT_SECS):
        self.python_args = tuple(python_args)  # `python3 <these> runner_server` is the server.
        self._start_timeout = start_timeout
        self._sock, server_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            with open(stdout, "ab") as out:
                self._process = subprocess.Popen(
                    [sys.executable, *python_args, "runner_server", "--socket-fd", str(server_end.fileno())],
                    env=dict(env), stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                    pass_fds=(server_end.fileno(),))
        except OSError:
            self._sock.close()
            raise
        finally:
            server_end.close()
        self._lock = threading.Lock()  # One fork at a time.
        self._forks: queue.Queue[ForkedRunner | str] = queue.Queue()  # The replies to forks, in order.
        self._runners: dict[int, ForkedRunner] = {}  # Forked and not ended, by pid.
        self._gone = threading.Event()  # The socket read its end: the server is dead or closed.
        self._closing = False  # close() was called: the reader's error is ours.
        threading.Thread(target=self._read, name="runner-server", daemon=True).start()
        logger.info("runner server pid %d: %s", self._process.pid, " ".join(self.python_args))

    @property
    def alive(self) -> bool:
        return not self._gone.is_set() and self._process.poll() is None

    def popen(self, args: Sequence[str], *, cwd: Path | None, env: Mapping[str, str], stdout: Any,
              pass_fds: Sequence[int] = (), **_popen_args: Any) -> ForkedRunner:
        """Forks a runner of `args` (those of `run_task`). Raises OSError when
        the server cannot: the caller spawns."""
        message = {"argv": list(args), "cwd": str(cwd) if cwd else None, "env": dict(env), "fds": list(pass_fds)}
        with self._lock:
            if not self.alive:
                raise OSError("the runner server is gone")
            socket.send_fds(self._sock, [json.dumps(message).encode()], [stdout.fileno(), *pass_fds])
            try:
                reply = self._forks.get(timeout=self._start_timeout)
            except queue.Empty:
                self.close()
                raise OSError(f"the runner server did not fork within {self._start_timeout:g} s") from None
        if isinstance(reply, str):
            raise OSError(f"the runner server could not fork: {reply}")
        reply.args = list(args)
        return reply

    def close(self, timeout: float = 5.0) -> None:
        """Ends the server (its runners live on) and reaps it."""
        self._closing = True
        try:
            self._sock.shutdown(socket.SHUT_RDWR)  # The end of file for the server, and for our reader.
        except OSError:  # Already gone.
            pass
        self._sock.close()
        try:
            self._process.wait(timeout)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()

    def _read(self) -> None:
        try:
            while True:
                data = self._sock.recv(MAX_PACKET)
                if not data:
                    break
                self._take(json.loads(data))
        except (OSError, ValueError) as e:
            if not self._closing:
                logger.error("runner server: %s", e)
        finally:
            if not self._closing:
                logger.error("runner server pid %d is gone: the next task starts another", self._process.pid)
            self._gone.set()
            self._forks.put("the runner server is gone")
            for runner in list(self._runners.values()):
                runner.orphaned()

    def _take(self, message: dict[str, Any]) -> None:
        if "pid" in message:
            runner = ForkedRunner(message["pid"], ())
            self._runners[runner.pid] = runner
            self._forks.put(runner)
        elif "error" in message:
            self._forks.put(str(message["error"]))
        elif "exited" in message:
            runner = self._runners.pop(message["exited"], None)
            if runner is not None:
                runner.ended(message["returncode"])


def _exists(pid: int) -> bool:
    """Alive, not a zombie: a container's init may never reap an orphan."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            state = stat.read().rpartition(b")")[2].split()[:1]
    except OSError:
        return False
    return state not in ([b"Z"], [b"X"])


# In the server's process.

def serve(sock_fd: int) -> int:
    """The server's loop: forks a runner per request, reports each exit; ends
    at the end of file on its socket."""
    run_task = _imported_runner()

    sock = socket.socket(fileno=sock_fd)
    wake_r, wake_w = os.pipe()
    for fd in (wake_r, wake_w):
        os.set_blocking(fd, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, signal.SIG_IGN)
    while True:
        ready, _, _ = select.select([sock, wake_r], [], [])
        if wake_r in ready:
            while _drain(wake_r):
                pass
        _reap(sock)
        if sock in ready:
            data, fds, _, _ = socket.recv_fds(sock, MAX_PACKET, MAX_FDS)
            if not data:
                return 0
            _send(sock, _fork(json.loads(data), fds, (sock.fileno(), wake_r, wake_w), run_task))


def _imported_runner() -> Callable[[Sequence[str]], int]:
    """The runner's main, imported once, with every object of the server
    frozen out of the garbage collector's reach: a runner's collections
    then never write to the server's objects, whose pages stay shared
    instead of being copied into each runner (14% fewer page faults per
    task, docs/benchmarks.md)."""
    from bot import runner_main

    gc.collect()
    gc.freeze()
    return runner_main.main


def _drain(fd: int) -> bool:
    try:
        return bool(os.read(fd, 4096))
    except BlockingIOError:
        return False


def _reap(sock: socket.socket) -> None:
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        _send(sock, {"exited": pid, "returncode": os.waitstatus_to_exitcode(status)})


def _send(sock: socket.socket, message: dict[str, Any]) -> None:
    try:
        sock.send(json.dumps(message).encode())
    except OSError:  # The bot is gone: the next read says so.
        pass


def _fork(message: dict[str, Any], fds: list[int], close_in_child: Sequence[int],
          run_task: Callable[[Sequence[str]], int]) -> dict[str, Any]:
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        pid = os.fork()
    except OSError as e:
        return {"error": str(e)}
    if pid == 0:
        _become_runner(message, fds, close_in_child, run_task)
    for fd in fds:
        os.close(fd)
    return {"pid": pid}


def _become_runner(message: dict[str, Any], fds: list[int], close_in_child: Sequence[int],
                   run_task: Callable[[Sequence[str]], int]) -> NoReturn:
    """In the forked child: takes the runner's descriptors, directory and
    environment, runs `run_task`, and exits; never returns to the loop."""
    code = 1
    try:
        signal.set_wakeup_fd(-1)
        for signum in (signal.SIGCHLD, signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, signal.SIG_DFL)
        for fd in close_in_child:
            os.close(fd)
        _place(fds[0], fds[1:], message["fds"])
        if message["cwd"]:
            os.chdir(message["cwd"])
        os.environ.clear()
        os.environ.update(message["env"])
        sys.argv = ["run_task", *message["argv"]]
        code = run_task(message["argv"])
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    except BaseException:  # Anything at all: this process must end here.
        traceback.print_exc()
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


def _place(stdout: int, received: Sequence[int], numbers: Sequence[int]) -> None:
    """stdin from /dev/null, stdout and stderr to `stdout`, and each received
    descriptor at its number, inheritable, as Popen's pass_fds would."""
    high = [fcntl.fcntl(fd, fcntl.F_DUPFD, _HIGH_FD + max([*numbers, *received, stdout])) for fd in received]
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.dup2(stdout, 1)
    os.dup2(stdout, 2)
    for fd in {null, stdout, *received} - {0, 1, 2}:
        os.close(fd)
    for fd, number in zip(high, numbers):
        os.dup2(fd, number)
        os.close(fd)
