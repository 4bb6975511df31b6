"""The running version unpacked and byte-compiled (bot/unpacked_code.py):
built once per version from a real zip, checked against the zip's digest and
built again when damaged or partial, and what task runners start from, with
a real bot and real runner processes against a loopback fake server."""

import base64
import shutil
import sys
import threading
from pathlib import Path
from typing import Iterator

import pytest

from bot import remote
from bot.bot_main import Bot, Outcome
from bot.running_code import Code
from bot.task_runner import Timings
from bot.unpacked_code import STAMP, UnpackedCode
from shared import bot_archive
from tests.bot_fakes import FakeServer, bot_zip_entries, claim, events_of, run, served, sleep, write_zip

SERVER = "https://swarming.example.com"
TASK_A, TASK_B = "5f3a1b2c3d4e5f00", "5f3a1b2c3d4e6000"
FAST = Timings(output_interval=0.1, keepalive=0.3, grace_period=1.0, drain=1.0, tick=0.02)
#: A task's command printing its parent's command line: the task runner's.
PRINT_RUNNER_ARGS = "import os; print(open(f'/proc/{os.getppid()}/cmdline').read().replace(chr(0), ' '))"


def make_zip(path: Path, server_version: str = "test") -> str:
    entries = bot_zip_entries(SERVER, server_version=server_version)
    write_zip(path, entries)
    return bot_archive.digest(entries)


@pytest.fixture
def bot_dir(tmp_path: Path) -> Path:
    return tmp_path / "bot"


@pytest.fixture
def copy(bot_dir: Path) -> UnpackedCode:
    version = make_zip(bot_dir / "swarming_bot.1.zip")
    return UnpackedCode(bot_dir / "swarming_bot.1.zip", version, bot_dir / "code")


def identity(path: Path) -> int:
    return (path / STAMP).stat().st_ino


def test_a_version_is_unpacked_and_compiled_once(copy: UnpackedCode) -> None:
    path = copy.ensure()

    assert path == copy.root / copy.version and copy.problem() is None
    assert (path / "bot" / "__pycache__").is_dir() and (path / "requests" / "__pycache__").is_dir()
    built = identity(path)
    # Another process of the same version (the bot after a restart) takes it as it is.
    again = UnpackedCode(copy.zip_path, copy.version, copy.root)
    assert again.ensure() == path and identity(path) == built
    assert [p.name for p in copy.root.iterdir()] == [copy.version]


@pytest.mark.parametrize("damage", [
    pytest.param(lambda p: (p / "bot" / "task_runner.py").write_text("raise SystemExit(9)\n"), id="a-changed-module"),
    pytest.param(lambda p: (p / "bot" / "runner_main.py").unlink(), id="a-missing-module"),
    pytest.param(lambda p: (p / "bot" / "extra.py").write_text("x = 1\n"), id="a-foreign-file"),
    pytest.param(lambda p: next((p / "bot" / "__pycache__").glob("runner_main.*.pyc")).write_bytes(b"junk"),
                 id="a-corrupt-pyc"),
    pytest.param(lambda p: (p / STAMP).unlink(), id="no-stamp-a-partial-copy"),
    pytest.param(lambda p: (p / STAMP).write_text('{"version": "other", "pycs": {}}'), id="another-version-s-stamp"),
])
def test_a_damaged_copy_is_built_again_at_the_bot_s_start(copy: UnpackedCode, damage) -> None:
    path = copy.ensure()
    damage(path)
    assert copy.problem() is not None

    UnpackedCode(copy.zip_path, copy.version, copy.root).ensure()

    assert copy.problem() is None


def test_before_each_task_only_the_stamp_is_looked_at_until_a_runner_fails(copy: UnpackedCode) -> None:
    path = copy.ensure()
    (path / "bot" / "extra.py").write_text("x = 1\n")

    copy.ensure()
    assert copy.problem() is not None  # Not checked whole: a task's start costs no hashing.
    copy.suspect()
    copy.ensure()
    assert copy.problem() is None


def test_a_build_cut_short_leaves_no_copy_that_looks_whole_and_is_cleared(copy: UnpackedCode) -> None:
    partial = copy.root / f"{copy.version}.12345.tmp"
    (partial / "bot").mkdir(parents=True)
    (partial / "bot" / "__init__.py").write_text("")

    path = copy.ensure()

    assert copy.problem() is None and [p.name for p in copy.root.iterdir()] == [path.name]


def test_a_zip_that_is_not_its_version_is_not_unpacked(copy: UnpackedCode) -> None:
    wrong = UnpackedCode(copy.zip_path, "0" * 64, copy.root)

    with pytest.raises(OSError, match="is not version"):
        wrong.ensure()
    assert not copy.root.exists() or not any(copy.root.iterdir())


def test_a_new_version_has_its_own_copy_and_the_old_one_goes(copy: UnpackedCode, bot_dir: Path) -> None:
    old = copy.ensure()
    new_version = make_zip(bot_dir / "swarming_bot.2.zip", server_version="v2")
    new = UnpackedCode(bot_dir / "swarming_bot.2.zip", new_version, copy.root)

    path = new.ensure()

    assert path != old and new.problem() is None
    assert [p.name for p in copy.root.iterdir()] == [new_version]


# A bot from a zip, in process: its runners are real processes.

@pytest.fixture
def fake() -> Iterator[FakeServer]:
    yield from served()


def zip_bot(fake: FakeServer, bot_dir: Path, version: str | None = None) -> Bot:
    zip_path = bot_dir / "swarming_bot.1.zip"
    entries = bot_zip_entries(fake.url)
    write_zip(zip_path, entries)
    code = Code(zip_path, version or bot_archive.digest(entries))
    return Bot(remote.Remote(fake.url, "bot-token"), bot_dir, "bot-1", shutdown=threading.Event(),
               sleep=lambda _: None, timings=FAST, code=code)


def runner_args(fake: FakeServer) -> list[str]:
    """The task runner's command line, as the last task printed it."""
    [*_, final] = fake.bodies("bot_task_update")
    printed = b"".join(base64.b64decode(u.get("output") or "") for u in fake.bodies("bot_task_update")
                       if u["task_id"] == final["task_id"])
    return printed.decode().split()


def test_a_copy_damaged_under_the_running_bot_is_built_again_before_the_next_task(
        fake: FakeServer, bot_dir: Path) -> None:
    bot = zip_bot(fake, bot_dir)
    fake.script("bot_poll", claim(TASK_A), claim(TASK_B))
    fake.script("bot_claim", run(TASK_A, ["true"]), run(TASK_B, [sys.executable, "-c", PRINT_RUNNER_ARGS]))
    copy = bot_dir / "code" / bot.attributes().version
    try:
        assert bot.run_once() is Outcome.RAN
        shutil.rmtree(copy)  # A task may delete anything of the bot's.

        assert bot.run_once() is Outcome.RAN
    finally:
        bot.close()

    assert fake.bodies("bot_task_update")[-1]["exit_code"] == 0
    assert runner_args(fake)[1:3] == ["-S", str(copy)]
    assert UnpackedCode(bot_dir / "swarming_bot.1.zip", copy.name, copy.parent).problem() is None


def test_a_copy_that_cannot_be_built_is_reported_and_runners_start_from_the_zip(
        fake: FakeServer, bot_dir: Path) -> None:
    bot = zip_bot(fake, bot_dir, version="0" * 64)  # The zip is not that version: never unpacked.
    fake.script("bot_poll", claim(TASK_A), sleep(1.0))
    fake.script("bot_claim", run(TASK_A, [sys.executable, "-c", PRINT_RUNNER_ARGS]))

    try:
        assert bot.run_once() is Outcome.RAN
    finally:
        bot.close()

    assert runner_args(fake)[1:3] == [str(bot_dir / "swarming_bot.1.zip"), "run_task"]
    assert fake.bodies("bot_task_update")[-1]["exit_code"] == 0
    assert any("cannot unpack version" in m for m in events_of(fake, "bot_error"))
