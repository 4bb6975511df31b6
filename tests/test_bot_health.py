"""The bot's health self-check and the host facts behind its default
dimensions and state: real directories, a fake disk_usage for the disk sizes."""

import os
import socket
import sys
from collections import namedtuple
from pathlib import Path

import pytest

from bot import health, host_state

GIB = 1024 ** 3
MIB = 1024 ** 2
Usage = namedtuple("Usage", "total used free")  # As shutil.disk_usage answers.


def disk_usage_of(total: float, free: float):
    """A shutil.disk_usage reporting `total` and `free` bytes for every path, recording the paths."""
    def disk_usage(path: str) -> Usage:
        disk_usage.paths.append(path)
        return Usage(int(total), int(total - free), int(free))
    disk_usage.paths = []
    return disk_usage


@pytest.fixture
def temp(tmp_path: Path) -> Path:
    path = tmp_path / "tmp"
    path.mkdir()
    return path


@pytest.fixture
def work(tmp_path: Path) -> Path:
    path = tmp_path / "bot"
    path.mkdir()
    return path


def fill(directory: Path, count: int) -> None:
    for i in range(count):
        (directory / f"f{i}").touch()


def check(work: Path, temp: Path, total: float = 100 * GIB, free: float = 50 * GIB, **settings):
    return health.check(work, settings, temp_dir=str(temp), disk_usage=disk_usage_of(total, free))


# TEMP.

def test_a_healthy_bot_has_no_reason(work: Path, temp: Path) -> None:
    fill(temp, 10)
    assert check(work, temp) is None


def test_more_than_1024_files_in_temp_quarantines(work: Path, temp: Path) -> None:
    fill(temp, 1025)
    reason = check(work, temp)
    assert reason is not None
    assert "TEMP" in reason and "1025 files" in reason and str(temp) in reason


def test_exactly_1024_files_in_temp_is_fine(work: Path, temp: Path) -> None:
    fill(temp, 1024)
    assert check(work, temp) is None


def test_the_temp_limit_comes_from_the_settings(work: Path, temp: Path) -> None:
    fill(temp, 6)
    assert "6 files, more than 5" in check(work, temp, max_temp_files=5)
    fill(temp, 2000)
    assert check(work, temp, max_temp_files=0) is None  # 0: off.


def test_subdirectories_count_as_entries_of_temp(work: Path, temp: Path) -> None:
    for i in range(3):
        (temp / f"d{i}").mkdir()
    assert check(work, temp, max_temp_files=2) is not None


# Free disk space: the lower of 15 % and 4 GiB.

def test_a_large_disk_needs_only_4_gib_free(work: Path, temp: Path) -> None:
    # 100 GiB: 15 % would be 15 GiB; 4 GiB is the lower, so 5 GiB (5 %) is enough.
    assert check(work, temp, total=100 * GIB, free=5 * GIB) is None
    reason = check(work, temp, total=100 * GIB, free=3.9 * GIB)
    assert reason is not None
    assert "not enough free disk space" in reason and "3.9 GiB free of 100.0 GiB" in reason
    assert "needs 4.0 GiB" in reason


def test_a_small_disk_needs_only_15_percent_free(work: Path, temp: Path) -> None:
    # 20 GiB: 4 GiB would be 20 %; 15 % (3 GiB) is the lower, so 3.5 GiB is enough.
    assert check(work, temp, total=20 * GIB, free=3.5 * GIB) is None
    reason = check(work, temp, total=20 * GIB, free=2.9 * GIB)
    assert reason is not None and "needs 3.0 GiB" in reason


def test_the_limit_is_inclusive(work: Path, temp: Path) -> None:
    assert check(work, temp, total=100 * GIB, free=4 * GIB) is None
    assert check(work, temp, total=20 * GIB, free=3 * GIB) is None


def test_the_disk_thresholds_come_from_the_settings(work: Path, temp: Path) -> None:
    assert check(work, temp, total=100 * GIB, free=5 * GIB,
                 free_partition={"percent": 15, "size_gib": 10}) is not None
    assert check(work, temp, total=100 * GIB, free=5 * GIB,
                 free_partition={"percent": 4, "size_gib": 10}) is None
    # 0 for either turns the check off.
    assert check(work, temp, total=100 * GIB, free=0, free_partition={"percent": 0, "size_gib": 4}) is None
    assert check(work, temp, total=100 * GIB, free=0, free_partition={"percent": 15, "size_gib": 0}) is None


def test_min_free_bytes_is_the_lower_of_the_two() -> None:
    assert health.min_free_bytes(100 * GIB, 15, 4 * GIB) == 4 * GIB
    assert health.min_free_bytes(20 * GIB, 15, 4 * GIB) == 3 * GIB


def test_the_partitions_of_the_work_dir_temp_and_root_are_checked(work: Path, temp: Path) -> None:
    disk_usage = disk_usage_of(100 * GIB, 50 * GIB)
    assert health.check(work, {}, temp_dir=str(temp), disk_usage=disk_usage) is None
    assert disk_usage.paths[0] == str(work)
    # One check per partition: paths on the same mount as an earlier one are skipped.
    mounts = [host_state.mount_point(p) for p in disk_usage.paths]
    assert len(mounts) == len(set(mounts))
    assert {host_state.mount_point(p) for p in (str(work), str(temp), "/")} == set(mounts)


def test_both_reasons_are_given_together(work: Path, temp: Path) -> None:
    fill(temp, 3)
    reason = check(work, temp, free=1 * GIB, max_temp_files=2)
    assert "TEMP" in reason and "not enough free disk space" in reason


def test_a_missing_work_dir_raises(tmp_path: Path, temp: Path) -> None:
    with pytest.raises(OSError):
        health.check(tmp_path / "missing", {}, temp_dir=str(temp))


def test_the_real_host_can_be_checked(work: Path, temp: Path) -> None:
    reason = health.check(work, {}, temp_dir=str(temp))
    assert reason is None or "disk space" in reason


# Default dimensions.

def test_os_values_on_linux_from_os_release(tmp_path: Path) -> None:
    release = tmp_path / "os-release"
    release.write_text('NAME="Ubuntu"\nID=ubuntu\nVERSION_ID="22.04"\n# ID=debian\n')
    assert host_state.os_values("Linux", [str(release)]) == ["Linux", "Ubuntu", "Ubuntu-22.04"]
    assert host_state.os_values("Linux", [str(tmp_path / "none")]) == ["Linux"]


def test_os_values_on_mac() -> None:
    assert host_state.os_values("Darwin", mac_version="14.5") == ["Mac", "Mac-14", "Mac-14.5"]
    assert host_state.os_values("Darwin", mac_version="10.15.7") == ["Mac", "Mac-10.15", "Mac-10.15.7"]
    assert host_state.os_values("Darwin", mac_version="") == ["Mac"]


def test_cpu_values_with_bitness(tmp_path: Path) -> None:
    nothing = str(tmp_path / "none")
    assert host_state.cpu_values("Linux", "x86_64", 2 ** 63, nothing) == ["x86", "x86-64"]
    assert host_state.cpu_values("Linux", "x86_64", 2 ** 31, nothing) == ["x86", "x86-32"]
    assert host_state.cpu_values("Linux", "aarch64", 2 ** 63, nothing) == ["arm", "arm-64", "arm64", "arm64-64"]
    assert host_state.cpu_values("Darwin", "arm64", 2 ** 31, nothing) == ["arm", "arm-64", "arm64", "arm64-64"]
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx2\n")
    assert host_state.cpu_values("Linux", "x86_64", 2 ** 63, str(cpuinfo)) == ["x86", "x86-64", "x86-64-avx2"]


def test_python_values() -> None:
    assert host_state.python_values((3, 11, 7)) == ["3", "3.11", "3.11.7"]


def test_default_dimensions(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(socket, "gethostname", lambda: "bot-7.example.com")
    dims = host_state.get_dimensions()
    assert dims["id"] == ["bot-7"]
    assert dims["pool"] == ["default"]
    assert host_state.get_dimensions("given")["id"] == ["given"]
    assert dims["python"] == host_state.python_values(sys.version_info)
    assert {"os", "cpu", "cores"} <= set(dims)
    if sys.platform == "linux":
        assert "Linux" in dims["os"]
    assert all(isinstance(v, str) for values in dims.values() for v in values)


# Default state.

def test_default_state_has_the_well_known_keys(work: Path) -> None:
    state = host_state.get_state(str(work), running_time=12.34, sleep_streak=3,
                                 disk_usage=disk_usage_of(100 * GIB, 30 * GIB))
    assert {"disk", "ram", "uptime", "running_time", "sleep_streak", "cwd", "python", "pid",
            "hostname", "nb_files_in_temp"} <= set(state)
    assert state["running_time"] == 12.3 and state["sleep_streak"] == 3
    assert state["pid"] == os.getpid() and state["cwd"] == os.getcwd()
    assert state["python"]["executable"] == sys.executable
    assert "cost_usd_hour" not in state
    disk = state["disk"][host_state.mount_point(str(work))]
    assert disk == {"free_mb": 30 * 1024.0, "size_mb": 100 * 1024.0}
    assert host_state.get_state(str(work), cost_usd_hour=0.25)["cost_usd_hour"] == 0.25


def test_disks_are_keyed_by_mount_point(work: Path, tmp_path: Path) -> None:
    disk_usage = disk_usage_of(10 * MIB, 4 * MIB)
    out = host_state.disks([str(work), "/", str(tmp_path / "missing")], disk_usage)
    assert out[host_state.mount_point("/")] == {"free_mb": 4.0, "size_mb": 10.0}
    assert set(out) == {host_state.mount_point(str(work)), "/"}


def test_ram_and_uptime_from_proc(tmp_path: Path) -> None:
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:       16384000 kB\nMemFree: 1 kB\n")
    assert host_state.ram_mb(str(meminfo)) == 16000
    proc_uptime = tmp_path / "uptime"
    proc_uptime.write_text("3600.52 7000.00\n")
    assert host_state.uptime(str(proc_uptime)) == 3600.5
    if sys.platform == "linux":
        assert host_state.ram_mb() > 0 and host_state.uptime() > 0


def test_mount_point_of_root_and_a_subdirectory(work: Path) -> None:
    assert host_state.mount_point("/") == "/"
    assert os.path.ismount(host_state.mount_point(str(work)))


def test_reboot_runs_the_os_command() -> None:
    calls = []
    host_state.reboot(run=lambda cmd, **kw: calls.append(cmd))
    assert calls == [host_state.reboot_command()]
    assert host_state.reboot_command("Linux") == ["sudo", "-n", "shutdown", "-r", "now"]
