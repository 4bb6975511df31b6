"""swarming_bot.zip: its digest (bot/running_code.py), its commands
(bot/commands.py), start_bot's self-copy, the self-update into .1/.2 with the
last known good copy (LKGBC, bot/updater.py) and the fallback to it
(bot/zip_main.py, bot/probation.py), with real zips and real processes
against a loopback fake server."""

import base64
import glob
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path
from typing import Any, Iterator

import pytest

from bot import layout, probation, remote
from bot.running_code import Code, zip_digest
from bot.updater import Updater, UpdateError
from shared import bot_archive
from shared.api_error import ApiError
from shared.bot_api import HandshakeReply, UpdateCode
from tests.bot_fakes import REPO, FakeServer, bot_zip_entries, claim, ok, renewing, run, served, write_zip

TOKEN = "bot-token"
TASK_A = "5f3a1b2c3d4e5f00"
WEEK = 7 * 24 * 3600


@pytest.fixture
def fake() -> Iterator[FakeServer]:
    yield from served()


def make_zip(path: Path, server: str, **kwargs: Any) -> tuple[bytes, str]:
    entries = bot_zip_entries(server, **kwargs)
    return write_zip(path, entries), bot_archive.digest(entries)


def broken(module: str, code: str) -> dict[str, bytes]:
    """A bot module with `code` appended."""
    return {module: (REPO / module).read_bytes() + b"\n\n" + code.encode() + b"\n"}


def run_zip(zip_path: Path, *args: str, python: str = sys.executable) -> subprocess.CompletedProcess:
    return subprocess.run([python, str(zip_path), *args], capture_output=True, text=True, timeout=60,
                          cwd=zip_path.parent, env=_env())


def start_zip_bot(zip_path: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(zip_path), "start_bot", "--id", "bot-1", *args],
                            cwd=zip_path.parent, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def run_until_it_polls_again(fake: FakeServer, zip_path: Path) -> bytes:
    """Runs a bot from `zip_path` until it polled twice, then stops it
    (SIGTERM); its stderr, once it exited 0."""
    bot_process = start_zip_bot(zip_path)
    try:
        fake.wait_for(lambda: len(fake.bodies("bot_poll")) >= 2, timeout=60)
    finally:
        bot_process.send_signal(signal.SIGTERM)
        _, stderr = bot_process.communicate(timeout=30)
    assert bot_process.returncode == 0, stderr.decode()
    return stderr


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SWARMING_") and k != "PYTHONPATH"}
    return {**env, "SWARMING_TOKEN": TOKEN}


#: A task's command printing its parent's command line: the task runner's.
PRINT_RUNNER_ARGS = "import os; print(open(f'/proc/{os.getppid()}/cmdline').read().replace(chr(0), ' '))"


def task_output(fake: FakeServer) -> str:
    return b"".join(base64.b64decode(u.get("output") or "") for u in fake.bodies("bot_task_update")).decode()


def versions(fake: FakeServer, call: str) -> list[str]:
    return [body["version"] for body in fake.bodies(call)]


# The digest.

def test_the_version_is_the_protocol_s_digest_of_the_zip(tmp_path: Path) -> None:
    def length(n: int) -> bytes:
        return n.to_bytes(8, "big")

    expected = hashlib.sha256(length(5) + b"a.txt" + length(3) + b"abc"
                              + length(7) + b"b/\xc3\xa9.py" + length(0)).hexdigest()
    entries = {"b/é.py": b"", "a.txt": b"abc"}
    write_zip(tmp_path / "bot.zip", entries)

    assert zip_digest(tmp_path / "bot.zip") == expected == bot_archive.digest(entries)


def test_the_digest_ignores_order_timestamps_compression_and_directory_entries(tmp_path: Path) -> None:
    entries = {"z.py": b"last", "a/b.py": b"x" * 1000, "config.json": b"{}"}
    write_zip(tmp_path / "one.zip", entries, compression=zipfile.ZIP_DEFLATED, date_time=(2020, 1, 1, 0, 0, 0))
    write_zip(tmp_path / "two.zip", dict(reversed(list(entries.items()))), compression=zipfile.ZIP_STORED,
              date_time=(2024, 6, 1, 12, 0, 0))
    with zipfile.ZipFile(tmp_path / "two.zip", "a") as archive:
        archive.writestr("a/", b"")  # A directory entry.
    write_zip(tmp_path / "three.zip", {**entries, "z.py": b"Last"})

    one, two, three = (zip_digest(tmp_path / f"{n}.zip") for n in ("one", "two", "three"))

    assert one == two == bot_archive.digest(entries)
    assert three != one and len(one) == 64


# The commands.

def test_version_config_and_is_fine_from_a_zip(tmp_path: Path) -> None:
    zip_path = tmp_path / "swarming_bot.zip"
    _, digest = make_zip(zip_path, "https://swarming.example.com", server_version="v7")

    version, config, fine = (run_zip(zip_path, command) for command in ("version", "config", "is_fine"))

    assert (version.returncode, version.stdout) == (0, digest + "\n")
    assert zip_digest(zip_path) == digest
    assert config.returncode == 0
    assert json.loads(config.stdout) == {"server": "https://swarming.example.com", "server_version": "v7"}
    assert (fine.returncode, fine.stdout) == (0, "fine\n"), fine.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["swarming_bot.zip"]  # No self-copy for these.


@pytest.mark.parametrize("replace, why", [
    (broken("bot/task_runner.py", "def oops(:"), "SyntaxError"),
    (broken("bot/layout.py", "raise ImportError('no such thing')"), "no such thing"),
    ({"config.json": b'{"server_version": "v7"}'}, "no server URL"),
    ({"config.json": b"not json"}, "JSONDecodeError"),
    ({"bot_config.py": b"import nonexistent_module_for_the_test\n"}, "nonexistent_module_for_the_test"),
])
def test_is_fine_fails_for_code_that_cannot_run(tmp_path: Path, replace: dict[str, bytes], why: str) -> None:
    zip_path = tmp_path / "swarming_bot.zip"
    make_zip(zip_path, "https://swarming.example.com", replace=replace)

    checked = run_zip(zip_path, "is_fine")

    assert checked.returncode == 1 and why in checked.stderr


def test_from_source_the_version_is_dev_and_attributes_are_json(monkeypatch: pytest.MonkeyPatch) -> None:
    def source(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "bot", *args], capture_output=True, text=True, cwd=REPO,
                              timeout=60, env=_env())

    version, attributes, unknown, config = (
        source("version"), source("attributes", "--id", "probe-1"), source("nope"), source("config"))

    assert (version.returncode, version.stdout) == (0, "dev\n")
    assert attributes.returncode == 0
    attrs = json.loads(attributes.stdout)
    assert attrs["dimensions"]["id"] == ["probe-1"] and attrs["version"] == "dev"
    assert {"os", "cpu", "python", "pool"} <= attrs["dimensions"].keys()
    # The default hooks' state, as the bot's first handshake would send it.
    assert {"disk", "ram", "uptime"} <= attrs["state"].keys()
    assert attrs["state"]["sleep_streak"] == 0 and 0 <= attrs["state"]["running_time"] < 30  # Just started.
    assert unknown.returncode == 2 and "start_bot" in unknown.stderr
    assert config.returncode == 1 and "source" in config.stderr


def _oldest_python() -> str:
    """Python 3.9, the oldest the bot supports, where this machine has it
    (pyenv's copy here); else the system's python3, so the test never skips."""
    candidates = sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.9*/bin/python3.9")))
    for candidate in [*candidates, shutil.which("python3.9")]:
        if candidate and subprocess.run([candidate, "-c", "pass"], capture_output=True).returncode == 0:
            return candidate
    return shutil.which("python3") or sys.executable


def test_the_zip_runs_with_the_oldest_python(tmp_path: Path) -> None:
    """The commands that need no vendored library run, and every module of
    the bot compiles."""
    python = _oldest_python()
    zip_path = tmp_path / "swarming_bot.zip"
    _, digest = make_zip(zip_path, "https://swarming.example.com")

    version, config = run_zip(zip_path, "version", python=python), run_zip(zip_path, "config", python=python)
    compiled = subprocess.run([python, "-m", "compileall", "-q", "-d", "x", "bot", "shared"], cwd=tmp_path,
                              capture_output=True, text=True) if _copy_sources(tmp_path) else None

    assert (version.returncode, version.stdout) == (0, digest + "\n"), version.stderr
    assert config.returncode == 0, config.stderr
    assert compiled is not None and compiled.returncode == 0, compiled.stdout + compiled.stderr


def _copy_sources(dest: Path) -> bool:
    for package in ("bot", "shared"):
        shutil.copytree(REPO / package, dest / package, ignore=shutil.ignore_patterns("__pycache__"))
    return True


# start_bot, update, fallback: real processes.

def test_start_bot_copies_the_zip_to_1_and_runs_tasks_from_it(fake: FakeServer, tmp_path: Path) -> None:
    zip_path = tmp_path / "bot" / "swarming_bot.zip"
    data, digest = make_zip(zip_path, fake.url)
    fake.script("bot_poll", claim(TASK_A))
    fake.script("bot_claim", run(TASK_A, [sys.executable, "-c", PRINT_RUNNER_ARGS]))

    bot_process = start_zip_bot(zip_path, "--once")
    _, stderr = bot_process.communicate(timeout=60)

    assert bot_process.returncode == 0, stderr.decode()
    assert b"swarming_bot.1.zip" in stderr
    assert (zip_path.parent / "swarming_bot.1.zip").read_bytes() == data
    assert set(versions(fake, "bot_handshake") + versions(fake, "bot_poll")) == {digest}
    final = fake.bodies("bot_task_update")[-1]
    assert final["exit_code"] == 0 and final["version"] == digest
    assert sorted(p.name for p in zip_path.parent.iterdir()) == [
        "c", "cas_cache", "code", "logs", "swarming.lck", "swarming_bot.1.zip", "swarming_bot.zip"]
    # The task runner was forked from the runner server of the version's unpacked copy, not the zip.
    assert [p.name for p in (zip_path.parent / "code").iterdir()] == [digest]
    runner_args = task_output(fake).split()
    assert runner_args[1:4] == ["-S", str(zip_path.parent / "code" / digest), "runner_server"]


def test_update_execs_the_new_version_and_a_task_makes_it_the_last_known_good(
        fake: FakeServer, tmp_path: Path) -> None:
    zip_path = tmp_path / "bot" / "swarming_bot.zip"
    old, old_version = make_zip(zip_path, fake.url)
    new, new_version = make_zip(tmp_path / "new.zip", fake.url, server_version="v2")
    fake.zips[new_version] = new
    fake.script("bot_poll", ok(UpdateCode(new_version).to_wire()), claim(TASK_A))
    fake.script("bot_claim", run(TASK_A, ["true"]))

    bot_process = start_zip_bot(zip_path, "--once")
    _, stderr = bot_process.communicate(timeout=90)

    assert bot_process.returncode == 0, stderr.decode()
    assert versions(fake, "bot_handshake") == [old_version, new_version]
    assert versions(fake, "bot_poll") == [old_version, new_version]
    [(_, fetched, auth)] = [call for call in fake.calls if call[0] == "bot_code"]
    assert fetched == {"version": new_version} and auth == f"Bearer {TOKEN}"
    bot_dir = zip_path.parent
    assert (bot_dir / "swarming_bot.1.zip").read_bytes() == old
    assert (bot_dir / "swarming_bot.2.zip").read_bytes() == new
    assert fake.bodies("bot_task_update")[-1]["exit_code"] == 0
    assert (bot_dir / "swarming_bot.zip").read_bytes() == new  # The task made it the LKGBC.
    # The new version unpacked a copy of its own for its runners; the old one's is gone.
    assert [p.name for p in (bot_dir / "code").iterdir()] == [new_version]


def test_a_version_that_fails_to_start_falls_back_to_the_last_known_good(
        fake: FakeServer, tmp_path: Path) -> None:
    zip_path = tmp_path / "bot" / "swarming_bot.zip"
    good, good_version = make_zip(zip_path, fake.url)
    # Fine to import (is_fine passes), dead on start.
    bad, bad_version = make_zip(tmp_path / "bad.zip", fake.url, replace=broken(
        "bot/commands.py", "def run_bot(argv, code):\n    raise RuntimeError('broken on purpose')"))
    fake.zips[bad_version] = bad
    fake.script("bot_poll", ok(UpdateCode(bad_version).to_wire()))

    stderr = run_until_it_polls_again(fake, zip_path)

    assert b"broken on purpose" in stderr and b"falling back" in stderr
    assert versions(fake, "bot_handshake") == [good_version, good_version]
    assert set(versions(fake, "bot_poll")) == {good_version}
    [error] = [e for e in fake.bodies("bot_event") if e["event"] == "bot_error"]  # Once, though the server
    assert bad_version in error["message"] and "failed to start" in error["message"]  # still says "update".
    assert [e["message"] for e in fake.bodies("bot_event") if e["event"] == "bot_shutdown"] == [
        f"updating to version {bad_version}", "SIGTERM received"]
    assert len([c for c in fake.calls if c[0] == "bot_code"]) == 1  # Not fetched again.
    assert (zip_path.parent / "swarming_bot.1.zip").read_bytes() == good
    assert zip_path.read_bytes() == good


def test_a_version_that_fails_after_taking_the_bot_token_hands_it_to_the_last_known_good(
        fake: FakeServer, tmp_path: Path) -> None:
    zip_path = tmp_path / "bot" / "swarming_bot.zip"
    make_zip(zip_path, fake.url)
    # Fine to import; fails at its handshake, once it took the bot token handed over by the update.
    bad, bad_version = make_zip(tmp_path / "bad.zip", fake.url, replace=broken(
        "bot/bot_main.py", "Bot.handshake = lambda self: 1 / 0"))
    fake.zips[bad_version] = bad
    handshake = ok(HandshakeReply(bot_version="dev", server_version="fake").to_wire())
    fake.script("bot_handshake", renewing(handshake, "bot-token-1"), renewing(handshake, "bot-token-2"))
    fake.script("bot_poll", ok(UpdateCode(bad_version).to_wire()))

    stderr = run_until_it_polls_again(fake, zip_path)

    assert b"ZeroDivisionError" in stderr and b"falling back" in stderr
    assert fake.authorizations("bot_handshake") == [f"Bearer {TOKEN}", "Bearer bot-token-1"]
    assert not (zip_path.parent / "bot_token").exists()


def test_the_zip_the_server_builds_runs_a_task(fake: FakeServer, tmp_path: Path) -> None:
    """The server's build (functions/bot_code.py, vendored requests included):
    the bot reports the server's digest for it and runs tasks from it."""
    from functions import bot_code

    entries = bot_code.Sources().entries(fake.url, "server-built")
    zip_path = tmp_path / "bot" / "swarming_bot.zip"
    zip_path.parent.mkdir()
    zip_path.write_bytes(bot_code.write_zip(entries))
    fake.script("bot_poll", claim(TASK_A))
    fake.script("bot_claim", run(TASK_A, ["sh", "-c", "echo $SWARMING_TASK_ID"]))

    version, fine = run_zip(zip_path, "version"), run_zip(zip_path, "is_fine")
    bot_process = start_zip_bot(zip_path, "--once")
    _, stderr = bot_process.communicate(timeout=60)

    assert version.stdout.strip() == bot_archive.digest(entries) == zip_digest(zip_path)
    assert fine.returncode == 0, fine.stderr
    assert bot_process.returncode == 0, stderr.decode()
    assert versions(fake, "bot_poll") == [bot_archive.digest(entries)]
    assert fake.bodies("bot_task_update")[-1]["exit_code"] == 0


# The Updater in process: the checks before an exec, and the LKGBC.

class Execs(list):
    def __call__(self, args: Any, env: Any) -> None:
        self.append((list(args), dict(env or {})))


@pytest.fixture
def running(tmp_path: Path) -> tuple[Code, layout.Layout]:
    """A bot directory running from swarming_bot.1.zip."""
    bot_dir = tmp_path / "bot"
    _, digest = make_zip(bot_dir / "swarming_bot.1.zip", "https://swarming.example.com")
    return Code(bot_dir / "swarming_bot.1.zip", digest), layout.Layout(bot_dir)


def test_an_update_checks_the_new_code_then_execs_it_on_probation(
        running: tuple[Code, layout.Layout], tmp_path: Path) -> None:
    code, bot_layout = running
    new, new_version = make_zip(tmp_path / "new.zip", "https://swarming.example.com", server_version="v2")
    execs = Execs()
    updater = Updater(code, bot_layout, ["--id", "b"], exec_python=execs)

    updater.update(lambda version, path: path.write_bytes(new), new_version,
                   before_exec=lambda: execs.append("the shutdown hooks"))

    target = bot_layout.root / "swarming_bot.2.zip"
    [hooks, (args, env)] = execs
    assert hooks == "the shutdown hooks"
    assert args == [str(target), "start_bot", "--id", "b"] and target.read_bytes() == new
    assert env[probation.PROBATION_ENV] == new_version


@pytest.mark.parametrize("served, why", [
    ("not fine", "not fine"),
    ("other version", "the download has digest"),
    ("not a zip", "not a bot zip"),
])
def test_an_update_to_bad_code_is_refused_and_never_fetched_again(
        running: tuple[Code, layout.Layout], tmp_path: Path, served: str, why: str) -> None:
    code, bot_layout = running
    not_fine, not_fine_version = make_zip(tmp_path / "bad.zip", "https://swarming.example.com",
                                          replace=broken("bot/remote.py", "1 / 0"))
    other, _ = make_zip(tmp_path / "other.zip", "https://swarming.example.com", server_version="other")
    data = {"not fine": not_fine, "other version": other, "not a zip": b"<html>oops</html>"}[served]
    execs, fetches = Execs(), []
    updater = Updater(code, bot_layout, [], exec_python=execs)

    def fetch(version: str, path: Path) -> None:
        fetches.append(version)
        path.write_bytes(data)

    for _ in range(2):
        with pytest.raises(UpdateError) as refused:
            updater.update(fetch, not_fine_version, before_exec=lambda: execs.append("the shutdown hooks"))
        assert refused.value.bad

    assert why in updater.bad_versions[not_fine_version]
    assert fetches == [not_fine_version] and execs == []
    assert not (bot_layout.root / "swarming_bot.2.zip").exists()


def test_a_failed_download_is_retried_later(running: tuple[Code, layout.Layout]) -> None:
    code, bot_layout = running
    updater = Updater(code, bot_layout, [], exec_python=Execs())

    def fetch(version: str, path: Path) -> None:
        raise ApiError("bot_code", 503, "unavailable", "later")

    with pytest.raises(UpdateError) as failed:
        updater.update(fetch, "ab" * 32)

    assert not failed.value.bad and updater.bad_versions == {}


@pytest.mark.parametrize("answer", [
    # Promises the whole zip, sends part of it, and hangs up.
    b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: 100000\r\n\r\n" + b"PK" * 2000,
    b"HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}",
], ids=["cut short", "404"])
def test_a_download_cut_short_or_refused_is_retried_later_and_leaves_no_part(
        running: tuple[Code, layout.Layout], answer: bytes) -> None:
    """Through the real Remote.bot_code: a broken download is the network's
    fault, not the version's, so the version is not refused for it; and the
    copy the bot would update into is replaced whole or not at all."""
    code, bot_layout = running
    target = bot_layout.root / "swarming_bot.2.zip"
    target.write_bytes(b"the previous copy")
    listener = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        with listener:
            connection, _ = listener.accept()
            with connection:
                connection.recv(65536)
                connection.sendall(answer)

    threading.Thread(target=serve, daemon=True).start()
    api = remote.Remote(f"http://127.0.0.1:{listener.getsockname()[1]}", TOKEN)
    updater = Updater(code, bot_layout, [], exec_python=Execs())
    try:
        with pytest.raises(UpdateError) as failed:
            updater.update(api.bot_code, "ab" * 32)
    finally:
        api.close()

    assert not failed.value.bad and updater.bad_versions == {}
    assert target.read_bytes() == b"the previous copy"
    assert sorted(p.name for p in bot_layout.root.iterdir()) == ["swarming_bot.1.zip", "swarming_bot.2.zip"]


def test_the_lkgbc_is_made_at_the_first_connection_and_probation_ends(
        running: tuple[Code, layout.Layout], monkeypatch: pytest.MonkeyPatch) -> None:
    code, bot_layout = running
    monkeypatch.setenv(probation.PROBATION_ENV, code.version)
    updater = Updater(code, bot_layout, [])
    assert updater.on_probation and not bot_layout.lkgbc.exists()

    updater.connected()

    assert not updater.on_probation and probation.PROBATION_ENV not in os.environ
    assert bot_layout.lkgbc.read_bytes() == code.zip_path.read_bytes()


def test_the_lkgbc_follows_a_successful_task_or_a_week(
        running: tuple[Code, layout.Layout], tmp_path: Path) -> None:
    code, bot_layout = running
    old, _ = make_zip(bot_layout.lkgbc, "https://swarming.example.com", server_version="old")
    now = [time.time()]
    updater = Updater(code, bot_layout, [], now=lambda: now[0])

    updater.idle()
    assert bot_layout.lkgbc.read_bytes() == old  # Days old only: kept.
    now[0] += WEEK + 60
    updater.idle()
    assert bot_layout.lkgbc.read_bytes() == code.zip_path.read_bytes()  # A week old: replaced.

    bot_layout.lkgbc.write_bytes(old)
    updater.task_succeeded()
    assert bot_layout.lkgbc.read_bytes() == code.zip_path.read_bytes()
    mtime = bot_layout.lkgbc.stat().st_mtime_ns
    updater.task_succeeded()
    assert bot_layout.lkgbc.stat().st_mtime_ns == mtime  # Already the running code: untouched.


def test_from_source_there_is_no_lkgbc(tmp_path: Path) -> None:
    updater = Updater(Code(None, "dev", REPO), layout.Layout(tmp_path), [])

    updater.connected()
    updater.task_succeeded()
    updater.idle()

    assert list(tmp_path.iterdir()) == []
