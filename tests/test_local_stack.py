"""`swarming local up|status|down` with the real emulators and gateway, run as
the console script (a detached stack must outlive the command that started it).
Every test stops what it started, even when it fails."""

import json
import os
import signal
import socket
import stat
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest
import requests

from local import processes
from local import stack as local_stack
from shared import local_state, service_config

SWARMING = str(Path(sys.executable).with_name("swarming"))


def swarming(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None,
             timeout: float = 90) -> subprocess.CompletedProcess:
    return subprocess.run([SWARMING, *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})}, cwd=cwd)


def pids_mentioning(text: str) -> list[int]:
    """Processes (other than this one) whose command line contains `text`."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in cmdline:
            found.append(int(entry.name))
    return found


def assert_gone(pids: list[int], state_dir: Path) -> None:
    """Every pid ended: gone, or a zombie waiting for PID 1 to reap it."""
    for pid in pids:
        found = processes.stat(pid)
        assert found is None or found.state == "Z", f"pid {pid} still runs"
        assert processes.group_members(pid) == []
    assert pids_mentioning(str(state_dir)) == []


@pytest.fixture
def state_dir(tmp_path: Path) -> Iterator[Path]:
    state_dir = tmp_path / "local"
    try:
        yield state_dir
    finally:
        local_stack.down(state_dir)
        for pid in pids_mentioning(str(tmp_path)):
            processes.stop(pid, grace=1)


def test_secrets_are_made_once_private_and_kept(tmp_path: Path):
    made = local_stack.ensure_secrets(tmp_path)
    issuer = local_state.issuer_secret_path(tmp_path)
    for path in (tmp_path / local_stack.SECRETS_FILE, issuer):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(made["token_secret"]) >= 40 and len(issuer.read_text()) >= 40
    kept_issuer = issuer.read_text()
    assert local_stack.ensure_secrets(tmp_path) == made and issuer.read_text() == kept_issuer


def test_missing_firestore_jar_fails_in_one_line(state_dir: Path):
    result = swarming("local", "up", "--detach", "--bots", "0", "--state-dir", str(state_dir),
                      env={"SWARMING_FIRESTORE_JAR": str(state_dir / "missing.jar")})
    assert result.returncode == 1, result
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, result.stderr
    assert "SWARMING_FIRESTORE_JAR" in result.stderr
    assert not (state_dir / "stack.json").exists()
    assert pids_mentioning(str(state_dir)) == []


def test_failure_midway_stops_what_had_started(state_dir: Path):
    firestore_port = processes.free_port()
    cloud_tasks_port = processes.free_port()
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        gateway_port = busy.getsockname()[1]
        result = swarming("local", "up", "--detach", "--bots", "0", "--state-dir", str(state_dir),
                          "--port", str(gateway_port), "--firestore-port", str(firestore_port),
                          "--cloud-tasks-port", str(cloud_tasks_port))
    assert result.returncode == 1, result
    assert result.stderr == f"error: port {gateway_port} for gateway is already in use\n"
    assert not (state_dir / "stack.json").exists()
    assert all((state_dir / "logs" / f"{name}.log").exists()
               for name in ("firestore", "pubsub", "storage", "cloud_tasks"))
    assert pids_mentioning(f"--port={firestore_port}") == []
    assert pids_mentioning(f"--port {cloud_tasks_port} ") == []
    assert pids_mentioning(str(state_dir)) == []


def test_detached_stack_answers_refuses_a_second_and_stops_clean(state_dir: Path):
    result = swarming("local", "up", "--detach", "--bots", "0", "--state-dir", str(state_dir))
    assert result.returncode == 0, result.stderr
    state = local_stack.read_state(state_dir)
    assert [line.split()[0] for line in result.stdout.splitlines()[:6]] == [
        "firestore", "pubsub", "storage", "cloud_tasks", "gateway", "cron"]
    assert f"BASE_URL={state['base_url']}" in result.stdout.splitlines()

    status = swarming("local", "status", "--json", "--state-dir", str(state_dir))
    assert status.returncode == 0, status
    shown = json.loads(status.stdout)
    assert shown["running"] and [(p["name"], p["alive"]) for p in shown["processes"]] == [
        ("firestore", True), ("pubsub", True), ("storage", True), ("cloud_tasks", True), ("gateway", True),
        ("cron", True)]
    assert shown["project"] == shown["bucket"] == "swarming-local"
    ports = shown["ports"]
    assert set(ports) == {"firestore", "pubsub", "storage", "cloud_tasks", "cloud_tasks_certs", "gateway"}
    cloud_tasks = next(p for p in shown["processes"] if p["name"] == "cloud_tasks")
    assert cloud_tasks["url"] == f"127.0.0.1:{ports['cloud_tasks']}"
    assert cloud_tasks["log"] == str(state_dir / "logs" / "cloud_tasks.log")
    emulator = pids_mentioning(f"local.cloud_tasks_emulator --port {ports['cloud_tasks']} ")
    assert emulator == [cloud_tasks["pid"]]
    certs = requests.get(f"http://127.0.0.1:{ports['cloud_tasks_certs']}/oauth2/v1/certs", timeout=10)
    assert certs.status_code == 200 and certs.json()

    answer = requests.get(state["base_url"] + "/", timeout=10)
    assert answer.status_code == 200 and "tasks_new" in answer.json()["functions"]
    # The local user logs in through the stack's issuer, and local/config gives it a role.
    assert state["config_dir"] == str(local_stack.CONFIG_DIR)
    token = local_state.id_token(state_dir, local_state.local_user(), state["base_url"])
    answer = requests.get(state["base_url"] + "/task_result", params={"task_id": "1234567890abcde0"},
                          headers={"Authorization": f"Bearer {token}"}, timeout=10)
    assert answer.status_code == 404, answer.text
    someone = local_state.id_token(state_dir, "someone@example.com", state["base_url"])
    answer = requests.get(state["base_url"] + "/task_result", params={"task_id": "1234567890abcde0"},
                          headers={"Authorization": f"Bearer {someone}"}, timeout=10)
    assert answer.status_code == 403, answer.text
    details = requests.get(state["base_url"] + "/server_details", headers={"Authorization": f"Bearer {token}"},
                           timeout=10)
    assert details.json()["config_version"] == service_config.version(service_config.read_dir(local_stack.CONFIG_DIR))

    again = swarming("local", "up", "--detach", "--bots", "0", "--state-dir", str(state_dir))
    assert again.returncode == 1
    assert again.stderr == (f"error: a local stack is already running in {state_dir}; "
                            "run 'swarming local down'\n")

    pids = [p["pid"] for p in state["processes"]]
    stopped = swarming("local", "down", "--state-dir", str(state_dir))
    assert stopped.returncode == 0
    assert stopped.stdout == "stopped: cron, gateway, cloud_tasks, storage, pubsub, firestore\n"
    assert_gone(pids, state_dir)
    assert pids_mentioning(f"local.cloud_tasks_emulator --port {ports['cloud_tasks']} ") == []
    assert swarming("local", "status", "--state-dir", str(state_dir)).returncode == 1
    assert "nothing running" in swarming("local", "down", "--state-dir", str(state_dir)).stdout


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_foreground_stack_stops_on_signal(state_dir: Path, sig: signal.Signals):
    stack = subprocess.Popen([SWARMING, "local", "up", "--bots", "0", "--state-dir", str(state_dir)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        for line in stack.stdout:
            if line.startswith("started in"):
                break
        state = local_stack.read_state(state_dir)
        assert state is not None and all(local_stack.is_alive(p) for p in state["processes"])
        stack.send_signal(sig)
        out, err = stack.communicate(timeout=30)
        assert stack.returncode == 0, err
        assert out.splitlines()[-1] == "stopped: cron, gateway, cloud_tasks, storage, pubsub, firestore"
        assert_gone([p["pid"] for p in state["processes"]], state_dir)
        assert not (state_dir / "stack.json").exists()
    finally:
        if stack.poll() is None:
            stack.kill()
            stack.wait()


def test_down_stops_a_dead_leaders_group_and_spares_a_reused_pid(state_dir: Path):
    leader = processes.spawn(["sh", "-c", "sleep 300 & exit 0"], state_dir / "logs" / "leader.log")
    leader.wait()
    orphans = processes.group_members(leader.pid)
    stranger = processes.spawn(["sleep", "300"], state_dir / "logs" / "stranger.log")
    try:
        assert len(orphans) == 1
        records = [
            {"name": "dead-leader", "kind": "bot", "pid": leader.pid, "start_ticks": 1, "url": None, "log": ""},
            {"name": "reused", "kind": "gateway", "pid": stranger.pid, "start_ticks": 1, "url": None, "log": ""},
        ]
        (state_dir / "stack.json").write_text(json.dumps({"processes": records}))
        assert not any(local_stack.is_alive(r) for r in records)
        assert local_stack.down(state_dir) == ["dead-leader"]
        assert processes.group_members(leader.pid) == []
        assert stranger.poll() is None
        assert not (state_dir / "stack.json").exists()
    finally:
        for pid in [stranger.pid, *orphans]:
            processes.stop(pid, grace=1)
