"""Starting local service processes, waiting for them, and stopping them with
everything they spawned; writing their private files."""

import json
import os
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any, Callable, NamedTuple

import requests


class StartError(RuntimeError):
    """A local service could not start; the message says what to do."""


def write_private(path: Path, content: dict[str, Any] | str) -> None:
    """Replaces `path` (mode 0600) with `content` (text, or JSON of a dict) in
    one step: a reader sees the old file or the new one. For the local stack's
    secrets."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(content if isinstance(content, str) else json.dumps(content, indent=2))
    os.replace(tmp, path)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def spawn(args: list[str], log_path: Path, env: dict[str, str] | None = None,
          cwd: Path | None = None) -> subprocess.Popen:
    """Starts a process in its own session (process group), so that stopping it
    also stops its children (gunicorn workers, a bot's task)."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        return subprocess.Popen(
            args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env={**os.environ, **(env or {})}, cwd=cwd, start_new_session=True,
        )


def wait_until(ready: Callable[[], bool], process: subprocess.Popen, name: str, log_path: Path,
               timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise StartError(f"{name} exited with code {process.returncode}; see {log_path}")
        if ready():
            return
        time.sleep(0.1)
    stop(process.pid)
    raise StartError(f"{name} did not answer within {timeout:.0f} s; see {log_path}")


def http_ok(url: str, expect: str | None = None) -> Callable[[], bool]:
    def ready() -> bool:
        try:
            response = requests.get(url, timeout=1)
        except requests.RequestException:
            return False
        return response.ok and (expect is None or expect in response.text)

    return ready


def stop(pid: int, grace: float = 5.0) -> None:
    """SIGTERM the process group, then SIGKILL whatever is left after `grace`."""
    try:
        pgid = os.getpgid(pid)
    except ProcessLookupError:
        return
    _signal_group(pgid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and _group_alive(pgid):
        _reap(pid)
        time.sleep(0.05)
    _signal_group(pgid, signal.SIGKILL)
    _reap(pid)


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        pass


def _group_alive(pgid: int) -> bool:
    return bool(group_members(pgid))


def _reap(pid: int) -> None:
    """Collects the exit status when the process is our child, so it leaves no zombie."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


class Stat(NamedTuple):
    state: str
    ppid: int
    pgrp: int
    start_ticks: int


def stat(pid: int) -> Stat | None:
    """The fields of /proc/<pid>/stat used here, or None when no such process."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text.rpartition(")")[2].split()  # the command name, in parentheses, may hold spaces
    return Stat(fields[0], int(fields[1]), int(fields[2]), int(fields[19]))


def all_stats() -> dict[int, Stat]:
    stats = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (found := stat(int(entry.name))) is not None:
            stats[int(entry.name)] = found
    return stats


def group_members(pgid: int) -> list[int]:
    """Live members of a process group; zombies wait only for their reaper."""
    return [pid for pid, found in all_stats().items() if found.pgrp == pgid and found.state != "Z"]
