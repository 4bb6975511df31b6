"""What the bot knows about its host: default dimensions and state (seed 000,
"Hooks"; PROTOCOL.md, "Bot API").

Every OS-specific probe lives here, behind plain functions that take the
files they read as parameters so that tests can feed them; Linux reads /proc
and /etc/os-release, macOS asks sysctl, and Windows is one more branch in each
function when it comes. Standard library only: it ships in the bot zip and
runs on any python3 >= 3.9.
"""

from __future__ import annotations

import os
import platform
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Iterable

Dimensions = dict[str, list[str]]
#: shutil.disk_usage or a fake: (total, used, free) bytes, free as available to this user.
DiskUsage = Callable[[str], Any]

#: The pool a bot reports when nothing else says; the server's bot config
#: usually enforces its own (it overrides what the bot says).
DEFAULT_POOL = "default"
MIB = 1024 * 1024

_OS_RELEASE_FILES = ("/etc/os-release", "/usr/lib/os-release")
_CPU_TYPES = {"x86_64": "x86", "amd64": "x86", "i386": "x86", "i686": "x86", "x86": "x86",
              "aarch64": "arm64", "arm64": "arm64", "mips64": "mips"}


# Dimensions.

def hostname() -> str:
    return socket.gethostname()


def short_hostname() -> str:
    """The hostname without its domain: the default bot id."""
    return hostname().split(".", 1)[0]


def os_values(system: str | None = None, os_release: Iterable[str] = _OS_RELEASE_FILES,
              mac_version: str | None = None) -> list[str]:
    """`os` values as the reference reports them, sorted: Linux, Ubuntu,
    Ubuntu-22.04 on Linux; Mac, Mac-14, Mac-14.5 on macOS."""
    system = system or platform.system()
    if system == "Linux":
        values = ["Linux"]
        release = read_os_release(os_release)
        distro = release.get("ID", "")
        if distro:
            distro = distro[0].upper() + distro[1:]
            values.append(distro)
            if release.get("VERSION_ID"):
                values.append(f"{distro}-{release['VERSION_ID']}")
        return sorted(set(values))
    if system == "Darwin":
        number = mac_version if mac_version is not None else platform.mac_ver()[0]
        values = ["Mac"]
        if number:
            # '14.5' gives Mac-14 and Mac-14.5; '10.15.7' gives Mac-10.15 and Mac-10.15.7.
            if "." in number:
                values.append(f"Mac-{number.rsplit('.', 1)[0]}")
            values.append(f"Mac-{number}")
        return sorted(set(values))
    if system == "Windows":
        return ["Windows"]  # Versions by marketing name: for the Windows port.
    return [system or sys.platform]


def read_os_release(paths: Iterable[str] = _OS_RELEASE_FILES) -> dict[str, str]:
    """The first readable os-release(5) file as a dict (values unquoted)."""
    for path in paths:
        try:
            text = Path(path).read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        release = {}
        for line in text.splitlines():
            key, sep, value = line.strip().partition("=")
            if sep and key and not key.startswith("#"):
                release[key] = value.strip().strip("\"'")
        return release
    return {}


def cpu_type(machine: str | None = None) -> str:
    """x86, arm64, or the machine name for anything else."""
    machine = (machine if machine is not None else platform.machine()).lower()
    return _CPU_TYPES.get(machine, machine or "unknown")


def cpu_bitness(system: str | None = None, machine: str | None = None,
                maxsize: int = sys.maxsize) -> str:
    """'64' or '32'. On macOS and Windows the kernel's; elsewhere the
    interpreter's, so that a 32-bit userland on a 64-bit kernel says 32, as in
    the reference."""
    system = system or platform.system()
    machine = machine if machine is not None else platform.machine()
    if system in ("Darwin", "Windows") and machine.endswith("64"):
        return "64"
    return "64" if maxsize > 2 ** 32 else "32"


def cpu_values(system: str | None = None, machine: str | None = None,
               maxsize: int = sys.maxsize, cpuinfo: str = "/proc/cpuinfo") -> list[str]:
    """`cpu` values as the reference reports them, sorted: x86, x86-64 (and
    x86-64-avx2 when the CPU has it); arm64, arm64-64, arm, arm-64."""
    kind = cpu_type(machine)
    bits = cpu_bitness(system, machine, maxsize)
    values = [kind, f"{kind}-{bits}"]
    if "avx2" in _cpu_flags(cpuinfo):
        values.append(f"{kind}-{bits}-avx2")
    if kind.startswith("arm") and kind != "arm":
        values += ["arm", f"arm-{bits}"]
    return sorted(set(values))


def _cpu_flags(cpuinfo: str) -> set[str]:
    """The CPU's feature flags from /proc/cpuinfo; empty where there is none."""
    try:
        text = Path(cpuinfo).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return set()
    match = re.search(r"^(?:flags|Features)\s*:(.*)$", text, re.MULTILINE)
    return set(match.group(1).split()) if match else set()


def python_values(version_info: Any = sys.version_info) -> list[str]:
    """3, 3.11, 3.11.7: a task may ask for any precision."""
    major, minor, micro = version_info[:3]
    return [f"{major}", f"{major}.{minor}", f"{major}.{minor}.{micro}"]


def get_dimensions(bot_id: str | None = None, pool: str = DEFAULT_POOL) -> Dimensions:
    """The default dimensions: `id` (the short hostname unless given), `pool`,
    `os`, `cpu`, `cores` and `python`. Dimensions the server enforces for this
    bot (its bot group) override these on the server's side."""
    return {
        "id": [bot_id or short_hostname()],
        "pool": [pool],
        "os": os_values(),
        "cpu": cpu_values(),
        "cores": [str(os.cpu_count() or 1)],
        "python": python_values(),
    }


# State.

def mount_point(path: str) -> str:
    """The mount point of the partition holding `path` (which must exist)."""
    path = os.path.realpath(path)
    while not os.path.ismount(path):
        parent = os.path.dirname(path)
        if parent == path:
            break
        path = parent
    return path


def disk_space(path: str, disk_usage: DiskUsage = shutil.disk_usage) -> dict[str, float]:
    """Free (available to this user) and total MiB of the partition holding `path`."""
    usage = disk_usage(path)
    return {"free_mb": round(usage.free / MIB, 1), "size_mb": round(usage.total / MIB, 1)}


def disks(paths: Iterable[str], disk_usage: DiskUsage = shutil.disk_usage) -> dict[str, dict[str, float]]:
    """Free and total MiB per mount point of the given paths, e.g.
    {"/": {"free_mb": 12000.0, "size_mb": 50000.0}}; missing paths are left out."""
    out: dict[str, dict[str, float]] = {}
    for path in paths:
        try:
            mount = mount_point(path)
            if mount not in out:
                out[mount] = disk_space(path, disk_usage)
        except OSError:
            continue
    return out


def ram_mb(meminfo: str = "/proc/meminfo") -> int:
    """Physical RAM in MiB; 0 when it cannot be told."""
    try:
        text = Path(meminfo).read_text(encoding="utf-8", errors="replace")
        match = re.search(r"^MemTotal:\s+(\d+) kB", text, re.MULTILINE)
        if match:
            return max(1, round(int(match.group(1)) / 1024))
    except OSError:
        pass
    try:  # macOS and other POSIX systems without /proc.
        return round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / MIB)
    except (AttributeError, OSError, ValueError):
        pass
    if platform.system() == "Darwin":
        out = _sysctl("hw.memsize")
        if out and out.isdigit():
            return round(int(out) / MIB)
    return 0


def uptime(proc_uptime: str = "/proc/uptime") -> float:
    """Seconds since the host booted; 0 when it cannot be told."""
    try:
        return round(float(Path(proc_uptime).read_text().split()[0]), 1)
    except (OSError, IndexError, ValueError):
        pass
    if platform.system() == "Darwin":
        # "{ sec = 1700000000, usec = 123 } Tue Nov 14 22:13:20 2023"
        match = re.search(r"sec = (\d+)", _sysctl("kern.boottime") or "")
        if match:
            return round(time.time() - int(match.group(1)), 1)
    return 0.0


def _sysctl(name: str) -> str | None:
    try:
        return subprocess.run(["sysctl", "-n", name], capture_output=True, text=True,
                              timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None


def temp_dir() -> str:
    """TEMP as the tasks see it."""
    return tempfile.gettempdir()


def count_temp_files(path: str | None = None) -> int:
    """Entries directly in TEMP: a steady climb means something leaks."""
    return len(os.listdir(path or temp_dir()))


def get_state(work_dir: str, *, running_time: float = 0.0, sleep_streak: int = 0,
              cost_usd_hour: float | None = None,
              disk_usage: DiskUsage = shutil.disk_usage) -> dict[str, Any]:
    """The default state, sent with every call: the free and total space of
    the partitions that matter (the bot's, TEMP's and /), RAM, uptime, the
    bot's own running time and idle streak, and its cost when known."""
    tmp = temp_dir()
    try:
        nb_files_in_temp: Any = count_temp_files(tmp)
    except OSError:
        nb_files_in_temp = "N/A"
    state: dict[str, Any] = {
        "cwd": os.getcwd(),
        "disk": disks([str(work_dir), tmp, os.path.abspath(os.sep)], disk_usage),
        "hostname": hostname(),
        "nb_files_in_temp": nb_files_in_temp,
        "pid": os.getpid(),
        "python": {"executable": sys.executable, "version": platform.python_version()},
        "ram": ram_mb(),
        "running_time": round(running_time, 1),
        "sleep_streak": sleep_streak,
        "uptime": uptime(),
    }
    if cost_usd_hour is not None:
        state["cost_usd_hour"] = cost_usd_hour
    return state


# Host actions.

def reboot_command(system: str | None = None) -> list[str]:
    """How the host is rebooted: it needs passwordless sudo for the command on
    Linux and macOS, as with the reference."""
    system = system or platform.system()
    if system == "Windows":
        return ["shutdown", "-r", "-f", "-t", "1"]
    return ["sudo", "-n", "shutdown", "-r", "now"]


def reboot(run: Callable[..., Any] = subprocess.run) -> None:
    """Asks the host to reboot; raises OSError or CalledProcessError if it
    refused. The bot then waits for the SIGTERM of the shutdown."""
    run(reboot_command(), check=True, timeout=60, capture_output=True)
