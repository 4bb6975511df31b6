"""Tasks run as another user than the bot (the settings' `run_tasks_as`):
real processes, as root (as the tests run) starting tasks as `nobody`."""

import base64
import os
import pwd
import shutil
import tempfile
import threading
from pathlib import Path
from typing import Iterator

import pytest

from bot import remote
from bot.bot_main import Bot
from bot.errors import TaskError
from bot.task_runner import TaskRunner
from bot.task_user import TaskUser
from shared.manifest import Manifest
from shared.task_properties import Cache
from tests.bot_fakes import FakeServer, claim, config, run, served
from tests.test_task_runner import BOT_DIMENSIONS, BOT_ID, FAST, RUN_ID, SERVER, Recorder

NOBODY = pwd.getpwnam("nobody")

#: What a task tries, one line each: who it is, what it may write, and what
#: of the bot's it may read (a 0600 file of the bot's directory, its parent
#: process's environment, where the runner keeps its credential).
PROBE = """
id -u
cat "$LUCI_CONTEXT" > /dev/null && echo context-read
echo out > "$ISOLATED_OUTDIR/out.txt" && echo outdir-written
mkdir -p made/deep && echo x > made/deep/f && echo workdir-written
echo x > cache/c1/entry && echo cache-written
cat "$BOT_DIR/bot_token" 2> /dev/null || echo bot-file-refused
cat /proc/$PPID/environ > /dev/null 2>&1 || echo parent-environ-refused
echo "$HOME $USER"
"""
EXPECTED = (f"{NOBODY.pw_uid}\ncontext-read\noutdir-written\nworkdir-written\ncache-written\n"
            f"bot-file-refused\nparent-environ-refused\n{NOBODY.pw_dir} nobody\n")


@pytest.fixture
def bot_dir() -> Iterator[Path]:
    """A bot's directory that `nobody` may walk through (pytest's tmp_path is
    its owner's only), holding a credential of the bot's, mode 0600."""
    base = Path(tempfile.mkdtemp(prefix="task-user-"))
    base.chmod(0o755)
    (base / "bot").mkdir()
    token = base / "bot" / "bot_token"
    token.touch(mode=0o600)
    token.write_text("the bot's own")
    yield base / "bot"
    shutil.rmtree(base)


def test_the_command_runs_as_the_user_with_its_run_s_directories_only(bot_dir: Path) -> None:
    manifest = Manifest(task_id=RUN_ID, bot_id=BOT_ID, command=("sh", "-c", PROBE), env={"BOT_DIR": str(bot_dir)},
                        hard_timeout=30.0, caches=(Cache("c1", "cache/c1"),), secret_bytes=b"s3cret")
    sent = Recorder()
    runner = TaskRunner(manifest, bot_dir / "w", sent, server=SERVER, bot_dimensions=BOT_DIMENSIONS,
                        shutdown=threading.Event(), timings=FAST, run_as="nobody")

    result = runner.run()

    assert result.exit_code == 0, sent.output()
    assert sent.output().decode() == EXPECTED
    entry = bot_dir / "c" / "c1" / "entry"  # The named cache went back to c/, the task's file in it.
    assert entry.stat().st_uid == NOBODY.pw_uid and (bot_dir / "bot_token").stat().st_uid == 0
    assert not (bot_dir / "w").exists() and not (bot_dir / "ctx").exists()


def test_without_the_setting_the_command_runs_as_the_bot(tmp_path: Path) -> None:
    manifest = Manifest(task_id=RUN_ID, bot_id=BOT_ID, command=("id", "-u"), env={}, hard_timeout=30.0)
    sent = Recorder()

    TaskRunner(manifest, tmp_path / "w", sent, server=SERVER, bot_dimensions=BOT_DIMENSIONS,
               shutdown=threading.Event(), timings=FAST).run()

    assert sent.output() == f"{os.geteuid()}\n".encode()


@pytest.mark.parametrize("name, reason", [
    ("no-such-user-here", "no user 'no-such-user-here'"),
    ("root", "is root"),
])
def test_a_user_the_bot_cannot_run_tasks_as_is_the_bot_s_error(name: str, reason: str) -> None:
    with pytest.raises(TaskError) as refused:
        TaskUser.named(name)

    assert refused.value.message.startswith("run_tasks_as: ") and reason in refused.value.message


def test_a_bot_that_is_not_root_cannot_switch_users(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)

    with pytest.raises(TaskError, match="the bot runs as uid 1000, not root"):
        TaskUser.named("nobody")


def test_a_task_the_runner_cannot_run_as_the_user_never_starts(tmp_path: Path) -> None:
    manifest = Manifest(task_id=RUN_ID, bot_id=BOT_ID, command=("touch", str(tmp_path / "ran")), env={},
                        hard_timeout=30.0)
    sent = Recorder()
    runner = TaskRunner(manifest, tmp_path / "w", sent, server=SERVER, bot_dimensions=BOT_DIMENSIONS,
                        shutdown=threading.Event(), timings=FAST, run_as="no-such-user-here")

    with pytest.raises(TaskError, match="no user"):
        runner.run()

    assert sent.updates == [] and not (tmp_path / "ran").exists()


RUN_AS_NOBODY = """
def get_settings(bot):
    return {"run_tasks_as": "nobody"}
"""


@pytest.fixture
def fake() -> Iterator[FakeServer]:
    yield from served()


def test_the_bot_runs_its_tasks_as_the_user_its_settings_name(fake: FakeServer, bot_dir: Path) -> None:
    """The whole way: the hooks' settings, the bot, its task runner process, the command."""
    fake.script("bot_poll", claim("7a1e2b3c4d5e6f00"))
    fake.script("bot_claim", run("7a1e2b3c4d5e6f00", ["sh", "-c", "id -u; id -un"]))
    api = remote.Remote(fake.url, "bot-token")
    try:
        Bot(api, bot_dir, "bot-1", shutdown=threading.Event(), sleep=lambda _: None, timings=FAST,
            bot_config=config(RUN_AS_NOBODY)).run(once=True)
    finally:
        api.close()

    output = b"".join(base64.b64decode(u["output"]) for u in fake.bodies("bot_task_update"))
    assert output == f"{NOBODY.pw_uid}\nnobody\n".encode()
