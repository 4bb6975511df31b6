"""The bot's directory (seed: "Directory layout"). The bot owns it whole:
everything it does not know is deleted at start-up.

    c/                       named caches
    cas_cache/               the content-addressed input cache
    logs/                    swarming_bot.log, task_runner.log, task_runner_stdout.log (rotated)
    swarming.lck             one bot per directory
    swarming_bot.zip         the last known good bot code (LKGBC)
    swarming_bot.1.zip       the two copies the bot runs from, alternately
    swarming_bot.2.zip
    code/<version>/          the running version unpacked and byte-compiled, which task runners
                             start from (bot/unpacked_code.py); other versions' copies are deleted
    w/                       the task's working directory, wiped before and after each task
    io/                      the task's ISOLATED_OUTDIR, beside w/ and wiped with it
    ctx/                     the task's LUCI_CONTEXT file (its secret bytes; bot/luci_context.py),
                             mode 0700, apart from w/ and io/ (never uploaded); wiped with them
    hooks/                   the bot group's hooks script from the last handshake; deleted at start-up
    bootstrap_token          a bootstrap token the start script left (mode 0600); read and deleted at start
    bot_token                the bot token handed to the next process across an exec (mode 0600);
                             read and deleted at start (bot/credentials.py)
"""

from __future__ import annotations

import dataclasses
import json
import logging
import logging.handlers
import os
import shutil
import stat
import sys
from pathlib import Path
from typing import IO, Any, Callable

from bot import os_platform
from bot.probation import LKGBC
from shared.errors import SwarmingError

logger = logging.getLogger(__name__)

RUNNING_ZIPS = ("swarming_bot.1.zip", "swarming_bot.2.zip")
LOCK = "swarming.lck"
#: The unpacked copies of the bot code (bot/unpacked_code.py).
CODE = "code"
#: Credentials in files, kept by the start-up clean-up only until the bot reads them (bot/credentials.py).
BOOTSTRAP_TOKEN, BOT_TOKEN = "bootstrap_token", "bot_token"
#: The bot group's hooks script (the handshake's `bot_config`): the next handshake gives it again.
HOOKS = "hooks"
#: What lives for one task only: made for it, wiped before and after it, and at start-up.
TASK_DIRS = ("w", "io", "ctx")
#: Kept at start-up; TASK_DIRS are not.
KEPT = frozenset({"c", "cas_cache", "logs", LOCK, CODE, LKGBC, *RUNNING_ZIPS, BOOTSTRAP_TOKEN, BOT_TOKEN,
                  "README.md"})  # README.md: the seed lets on_bot_startup drop one in.
KEPT_SUFFIX = "-cacert.pem"  # TLS roots some libraries insist on reading from a file.
#: Each log rolls over at this size, keeping this many older files.
LOG_BYTES, LOG_BACKUPS = 10 * 1024 * 1024, 5
LOG_FORMAT = "%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s"


class LayoutError(SwarmingError):
    """The directory cannot be the bot's: another bot holds it, or it holds
    files no bot made (deleting them would not be ours to do)."""


@dataclasses.dataclass(frozen=True)
class Layout:
    root: Path

    @property
    def named_caches(self) -> Path:
        return self.root / "c"

    @property
    def cas_cache(self) -> Path:
        return self.root / "cas_cache"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def lock(self) -> Path:
        return self.root / LOCK

    @property
    def lkgbc(self) -> Path:
        return self.root / LKGBC

    @property
    def code(self) -> Path:
        return self.root / CODE

    @property
    def work(self) -> Path:
        return self.root / "w"

    @property
    def out(self) -> Path:
        return self.root / "io"

    @property
    def context(self) -> Path:
        return self.root / "ctx"

    @property
    def hooks(self) -> Path:
        return self.root / HOOKS

    @property
    def bootstrap_token(self) -> Path:
        return self.root / BOOTSTRAP_TOKEN

    @property
    def bot_token(self) -> Path:
        return self.root / BOT_TOKEN

    @property
    def task_dirs(self) -> tuple[Path, ...]:
        return tuple(self.root / name for name in TASK_DIRS)

    @property
    def bot_log(self) -> Path:
        return self.logs / "swarming_bot.log"

    @property
    def runner_log(self) -> Path:
        return self.logs / "task_runner.log"

    @property
    def runner_stdout(self) -> Path:
        return self.logs / "task_runner_stdout.log"

    def other_zip(self, running: Path | None) -> Path:
        """The copy to update into: the one of .1/.2 the bot is not running from."""
        first, second = (self.root / name for name in RUNNING_ZIPS)
        return second if running is not None and running.name == first.name else first


def take(layout: Layout) -> os_platform.DirectoryLock:
    """Locks the directory for this bot, then clears it: everything not in
    KEPT is deleted, TASK_DIRS too, and the kept directories are made. Refuses a
    directory another bot holds, and a first start (no `swarming.lck` yet) in
    a directory holding files no bot made: the seed's clean-up would delete
    them, and a mistaken --work-dir (a home, a checkout) must not cost them."""
    layout.root.mkdir(parents=True, exist_ok=True)
    first_start = not layout.lock.exists()
    deleted = sorted(p.name for p in layout.root.iterdir() if not _kept(p.name))
    foreign = [name for name in deleted if not _bot_made(name)]
    if first_start and foreign:
        shown = ", ".join(foreign[:5]) + (", ..." if len(foreign) > 5 else "")
        raise LayoutError(
            f"{layout.root} holds files no bot made ({shown}); a bot deletes everything it does not "
            f"know in its directory at start-up: give it a directory of its own")
    lock = os_platform.DirectoryLock(layout.lock)
    if not lock.acquire():
        raise LayoutError(f"another bot is running in {layout.root} (it holds {layout.lock}); "
                          "run one bot per directory")
    for name in deleted:
        logger.info("start-up: deleting %s", layout.root / name)
        remove(layout.root / name)
    for path in (layout.named_caches, layout.cas_cache, layout.logs):
        path.mkdir(exist_ok=True)
    return lock


def _kept(name: str) -> bool:
    return name in KEPT or name.endswith(KEPT_SUFFIX)


def _bot_made(name: str) -> bool:
    """Made by a bot, if not kept: a task's directories, the hooks script, a partial copy."""
    return _kept(name) or name in (*TASK_DIRS, HOOKS) or (name.startswith("swarming_bot.") and name.endswith(".tmp"))


def remove(path: Path) -> None:
    """Deletes a file or a whole tree, read-only parts included: one left
    behind would fail every later task."""

    def make_writable_and_retry(function: Callable[[str], Any], failed: str, _exc: Any) -> None:
        for target in (os.path.dirname(failed), failed):
            try:
                os.chmod(target, stat.S_IRWXU)
            except OSError:
                pass
        function(failed)

    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.exists():
        shutil.rmtree(path, onerror=make_writable_and_retry)


def write_private(path: Path, body: Any) -> None:
    """Creates `path` holding `body` as JSON, readable by this user only (see
    `create_private`)."""
    with create_private(path) as f:
        json.dump(body, f)


def create_private(path: Path) -> IO[str]:
    """Creates `path` for writing text, readable by this user only; one
    already there is an error (someone else's file, or a copy another process
    may still read): what these files hold may be a task's secret or a
    credential."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    return os.fdopen(fd, "w", encoding="utf-8")


def log_to(path: Path, *, stderr: bool = False, level: int = logging.INFO) -> None:
    """Sends the process's logging to a rotated file (and stderr)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handlers: list[logging.Handler] = [
        logging.handlers.RotatingFileHandler(path, maxBytes=LOG_BYTES, backupCount=LOG_BACKUPS,
                                             encoding="utf-8")]
    if stderr:
        handlers.append(logging.StreamHandler(sys.stderr))
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
        handler.close()
    for handler in handlers:
        handler.setFormatter(logging.Formatter(LOG_FORMAT))
        root.addHandler(handler)
    root.setLevel(level)


def roll(path: Path, max_bytes: int = LOG_BYTES, backups: int = LOG_BACKUPS) -> None:
    """Rotates a log that others write to through a file descriptor (the
    runner's stdout), as RotatingFileHandler names them: path.1 is the newest."""
    try:
        if path.stat().st_size < max_bytes:
            return
    except FileNotFoundError:
        return
    for i in range(backups - 1, 0, -1):
        older = path.with_name(f"{path.name}.{i}")
        if older.exists():
            os.replace(older, path.with_name(f"{path.name}.{i + 1}"))
    os.replace(path, path.with_name(f"{path.name}.1"))
