"""The bot's directory: what start-up keeps and deletes, one bot per
directory, the logs and their rotation."""

import logging
import logging.handlers
import os
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest

from bot import layout
from bot.layout import Layout, LayoutError
from tests.bot_fakes import REPO, FakeServer, served, sleep

TOKEN = "bot-token"


@pytest.fixture
def fake() -> Iterator[FakeServer]:
    yield from served()


def test_start_up_keeps_the_seed_s_entries_and_deletes_everything_else(tmp_path: Path) -> None:
    kept = ["c/cache_a/f", "cas_cache/ab/cd", "logs/swarming_bot.log", "swarming_bot.zip",
            "swarming_bot.1.zip", "swarming_bot.2.zip", "README.md", "roots-cacert.pem",
            "bootstrap_token", "bot_token"]  # Until the bot reads them, right after.
    gone = ["w/left/by/a/task", "io/out", "ctx/luci_context.json", "stray.txt", "swarming_bot.2.zip.x1y2.tmp",
            "old_dir/sub/f", "hooks/bot_config_lab.py"]
    for name in kept + gone:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(name)
    (tmp_path / "w" / "left").chmod(0o500)  # Read-only parts go too.
    (tmp_path / "swarming.lck").touch()  # A bot ran here before.

    lock = layout.take(Layout(tmp_path))

    remaining = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file())
    assert remaining == sorted(kept + ["swarming.lck"])
    lock.release()


def test_start_up_makes_the_directories(tmp_path: Path) -> None:
    bot_dir = tmp_path / "new"

    layout.take(Layout(bot_dir)).release()

    assert sorted(p.name for p in bot_dir.iterdir()) == ["c", "cas_cache", "logs", "swarming.lck"]


def test_a_first_start_among_foreign_files_is_refused_and_deletes_nothing(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    (tmp_path / "project").mkdir()

    with pytest.raises(LayoutError, match="holds files no bot made .*notes.txt, project"):
        layout.take(Layout(tmp_path))

    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt", "project"]


def test_a_first_start_clears_what_only_a_bot_makes(tmp_path: Path) -> None:
    for name in ("w/f", "io/f", "ctx/luci_context.json", "swarming_bot.1.zip.abc.tmp", "hooks/bot_config_lab.py",
                 "swarming_bot.zip", "bootstrap_token"):  # The start script leaves the last two.
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(name)

    layout.take(Layout(tmp_path)).release()

    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "bootstrap_token", "c", "cas_cache", "logs", "swarming.lck", "swarming_bot.zip"]


def test_one_bot_per_directory(tmp_path: Path) -> None:
    first = layout.take(Layout(tmp_path))
    (tmp_path / "w").mkdir()

    with pytest.raises(LayoutError, match="another bot is running"):
        layout.take(Layout(tmp_path))

    assert (tmp_path / "w").exists()  # The running bot's task is left alone.
    first.release()
    layout.take(Layout(tmp_path)).release()


def test_a_second_bot_process_in_the_same_directory_exits_with_a_clear_message(
        fake: FakeServer, tmp_path: Path) -> None:
    fake.script("bot_poll", sleep(60))
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("SWARMING_")}, "SWARMING_TOKEN": TOKEN}
    args = [sys.executable, "-m", "bot", "--server", fake.url, "--work-dir", str(tmp_path / "bot")]
    first = subprocess.Popen([*args, "--id", "first"], cwd=REPO, env=env, stderr=subprocess.DEVNULL)
    try:
        fake.wait_for(lambda: "bot_poll" in fake.names(), timeout=30)

        second = subprocess.run([*args, "--id", "second"], cwd=REPO, env=env, capture_output=True, text=True,
                                timeout=30)
    finally:
        first.terminate()
        first.wait(timeout=30)

    assert second.returncode == 3
    assert "another bot is running in" in second.stderr and "swarming.lck" in second.stderr
    assert {b["dimensions"]["id"][0] for b in fake.bodies("bot_handshake")} == {"first"}


def test_the_bot_log_rotates(tmp_path: Path) -> None:
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        layout.log_to(tmp_path / "logs" / "swarming_bot.log")
        [handler] = root.handlers
        assert isinstance(handler, logging.handlers.RotatingFileHandler)
        assert (handler.maxBytes, handler.backupCount) == (layout.LOG_BYTES, layout.LOG_BACKUPS)
        logging.getLogger("bot.test").info("a line for the log")
        assert "a line for the log" in (tmp_path / "logs" / "swarming_bot.log").read_text()
    finally:
        for handler in root.handlers:
            handler.close()
        root.handlers[:], root.level = saved[0], saved[1]


def test_roll_shifts_a_full_log_and_keeps_a_bounded_number(tmp_path: Path) -> None:
    log = tmp_path / "task_runner_stdout.log"
    for i in range(5):
        log.write_text(f"run {i}\n" * 10)
        layout.roll(log, max_bytes=50, backups=3)
    log.write_text("small")
    layout.roll(log, max_bytes=50, backups=3)

    assert log.read_text() == "small"
    assert [(tmp_path / f"{log.name}.{i}").read_text().split()[1] for i in (1, 2, 3)] == ["4", "3", "2"]
    assert not (tmp_path / f"{log.name}.4").exists()


def test_updates_alternate_between_the_two_copies(tmp_path: Path) -> None:
    bot = Layout(tmp_path)

    assert bot.other_zip(tmp_path / "swarming_bot.1.zip").name == "swarming_bot.2.zip"
    assert bot.other_zip(tmp_path / "swarming_bot.2.zip").name == "swarming_bot.1.zip"
    assert bot.other_zip(None).name == "swarming_bot.1.zip"
