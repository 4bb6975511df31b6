"""The bot switching to other code (seed: "update", "LKGBC"): `update`
downloads a version into the other of `swarming_bot.1.zip`/`.2.zip`, checks
its digest and that it is fine, and execs it on probation (bot/probation.py);
`restart` execs the same code anew; and the last known good copy,
`swarming_bot.zip`, follows the running code once it proved itself. The bot
token crosses every exec in the file `bot_token` (bot/credentials.py).
"""

from __future__ import annotations

import filecmp
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Callable, Mapping, Optional, Sequence

from bot import credentials, layout as layout_lib
from bot import os_platform
from bot.probation import PROBATION_ENV, environ_without_bot_vars
from bot.running_code import Code, zip_digest
from shared.errors import SwarmingError

logger = logging.getLogger(__name__)

#: The LKGBC is replaced by the running code, even without a task, once this old.
LKGBC_MAX_AGE_SECS = 7 * 24 * 3600
IS_FINE_TIMEOUT_SECS = 60.0

#: Runs `python3 <args>` in place of this process, with this environment (None: the same).
ExecPython = Callable[[Sequence[str], Optional[Mapping[str, str]]], None]


class UpdateError(SwarmingError):
    """The bot could not switch to a version; `bad` when the version itself is
    at fault (wrong digest, not fine), so that it is not tried again."""

    def __init__(self, version: str, message: str, bad: bool):
        super().__init__(f"update to {version}: {message}")
        self.version = version
        self.message = message
        self.bad = bad


class Updater:
    """Switches the running bot to other code: `update` (download, check,
    exec), `restart` (exec the same code), and keeps the last known good copy
    (LKGBC, `swarming_bot.zip`) current."""

    def __init__(self, code: Code, layout: layout_lib.Layout, bot_args: Sequence[str], *,
                 exec_python: ExecPython = os_platform.exec_python,
                 is_fine_timeout: float = IS_FINE_TIMEOUT_SECS, now: Callable[[], float] = time.time,
                 bot_token: Callable[[], str | None] = lambda: None):
        self.code = code
        self._layout = layout
        self._bot_args = list(bot_args)  # Given again to `start_bot` on every exec.
        self._exec_python = exec_python
        self._bot_token = bot_token  # The bot's current token, handed over to the process it execs into.
        self._is_fine_timeout = is_fine_timeout
        self._now = now
        #: Versions not to take again (version -> why): they failed the checks or to start.
        self.bad_versions: dict[str, str] = {}
        #: Exec'd into new code and not yet connected: a failed start falls back (bot/zip_main.py).
        self.on_probation = bool(os.environ.get(PROBATION_ENV))

    def update(self, fetch: Callable[[str, Path], None], version: str,
               before_exec: Callable[[], None] = lambda: None) -> None:
        """Downloads `version` (with `fetch(version, path)`) into the other
        copy, checks its digest and that it is fine, then calls `before_exec`
        (the bot's shutdown hooks) and execs it; returns only if the exec
        does (a test's). Raises UpdateError."""
        if self.code.zip_path is None:
            raise UpdateError(version, "running from source: there is no zip to update", bad=True)
        if version in self.bad_versions:
            raise UpdateError(version, f"refused: {self.bad_versions[version]}", bad=True)
        target = self._layout.other_zip(self.code.zip_path)
        logger.info("updating from %s to %s in %s", self.code.version, version, target)
        try:
            fetch(version, target)
        except SwarmingError as e:
            raise UpdateError(version, f"download failed: {e}", bad=False) from e
        try:
            got = zip_digest(target)
        except (OSError, zipfile.BadZipFile, ValueError) as e:
            self._refuse(version, target, f"the download is not a bot zip: {e}")
        if got != version:
            self._refuse(version, target, f"the download has digest {got}")
        problem = self.is_fine(target)
        if problem:
            self._refuse(version, target, f"the new code is not fine: {problem}")
        env = {**environ_without_bot_vars(), PROBATION_ENV: version}
        before_exec()
        self._exec([str(target), "start_bot", *self._bot_args], env)

    def _refuse(self, version: str, target: Path, why: str) -> None:
        self.bad_versions[version] = why
        try:
            target.unlink()
        except OSError:
            pass
        raise UpdateError(version, why, bad=True)

    def is_fine(self, zip_path: Path) -> str | None:
        """None when `python3 <zip> is_fine` exits 0 in time, else what went wrong."""
        env = environ_without_bot_vars()
        try:
            checked = subprocess.run([sys.executable, str(zip_path), "is_fine"], cwd=self._layout.root,
                                     env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, timeout=self._is_fine_timeout)
        except subprocess.TimeoutExpired:
            return f"is_fine did not end within {self._is_fine_timeout:g} s"
        except OSError as e:
            return f"is_fine could not start: {e}"
        if checked.returncode:
            tail = checked.stdout.decode("utf-8", "replace")[-2000:]
            return f"is_fine: {os_platform.describe_exit(checked.returncode)}: {tail}"
        return None

    def restart(self, message: str) -> None:
        """Execs the same code anew; returns only if the exec does (a test's)."""
        logger.info("restarting: %s", message)
        self._exec(self.code.python_args("start_bot", *self._bot_args), environ_without_bot_vars())

    def hand_over(self) -> None:
        """Writes the bot's token for the next process of this bot, which
        takes it at its start: the one it execs into, or the last known good
        copy zip_main falls back to when this one failed on probation."""
        token = self._bot_token()
        if token is not None:
            credentials.hand_over(self._layout.bot_token, token)

    def _exec(self, args: Sequence[str], env: Mapping[str, str]) -> None:
        """Runs the bot anew in this process: the last thing it does, when no
        task runs and no other call can renew the token."""
        self.hand_over()
        try:
            self._exec_python(args, env)
        except BaseException:  # Still this process: the token stays in its memory only.
            self._layout.bot_token.unlink(missing_ok=True)
            raise

    def connected(self) -> None:
        """The first handshake went through: this code works well enough to
        stay, and the LKGBC is made if there is none (seed: LKGBC)."""
        if self.on_probation:
            logger.info("version %s connected: off probation", self.code.version)
            os.environ.pop(PROBATION_ENV, None)
            self.on_probation = False
        if self.code.zip_path is not None and not self._layout.lkgbc.exists():
            self._replace_lkgbc("there was none")

    def task_succeeded(self) -> None:
        """A task ran end to end: the running code becomes the LKGBC."""
        if self._lkgbc_differs():
            self._replace_lkgbc("a task ran")

    def idle(self) -> None:
        """The LKGBC is replaced by the running code once it is a week old."""
        if self.code.zip_path is None:
            return
        try:
            age = self._now() - self._layout.lkgbc.stat().st_mtime
        except FileNotFoundError:
            age = float("inf")
        if age >= LKGBC_MAX_AGE_SECS and self._lkgbc_differs():
            self._replace_lkgbc(f"it was {age / 86400:.0f} days old")

    def _lkgbc_differs(self) -> bool:
        if self.code.zip_path is None:
            return False
        try:
            return not filecmp.cmp(self.code.zip_path, self._layout.lkgbc, shallow=False)
        except OSError:
            return True

    def _replace_lkgbc(self, why: str) -> None:
        assert self.code.zip_path is not None
        try:
            copy_atomically(self.code.zip_path, self._layout.lkgbc)
        except OSError as e:
            logger.error("cannot make %s the last known good code: %s", self.code.zip_path, e)
            return
        logger.info("%s (%s) is now the last known good code: %s", self._layout.lkgbc, self.code.version, why)


def copy_atomically(source: Path, dest: Path) -> None:
    """Copies so that `dest` is the old file or the new one, never a part."""
    fd, tmp = tempfile.mkstemp(prefix=dest.name + ".", suffix=".tmp", dir=dest.parent)
    os.close(fd)
    try:
        shutil.copyfile(source, tmp)
        os.replace(tmp, dest)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
