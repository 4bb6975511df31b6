"""swarming_bot.zip's commands, and the bot code's own life: which code runs
(a zip and its digest, or the source tree, "dev"), the self-copy of
`start_bot`, `update` into the other of `.1`/`.2` and the last known good
copy (seed: "Control flow", "update", "LKGBC").

    start_bot   run the bot (the default); from a zip not named .1/.2, copy
                it to swarming_bot.1.zip and exec that copy
    config      print the zip's config.json
    version     print the zip's digest ("dev" from source)
    is_fine     exit 0 if this code imports and its config is readable
    attributes  print the bot's dimensions, state and version as JSON
    run_task    internal: run one task (bot/runner_process.py)

Exit codes: see ExitCode; `run_task` has its own (runner_process.py).
"""

from __future__ import annotations

import argparse
import dataclasses
import enum
import filecmp
import functools
import importlib
import importlib.util
import json
import logging
import os
import pkgutil
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
import zipfile
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Sequence

import bot as bot_package
from bot import layout as layout_lib
from bot import os_platform
from bot.zip_main import BAD_VERSION_ENV, PROBATION_ENV
from shared.bot_archive import digest, entries_of
from shared.errors import SwarmingError

logger = logging.getLogger(__name__)

DEV_VERSION = "dev"
CONFIG = "config.json"
BOT_CONFIG = "bot_config"  # The hooks module the server injects at the zip's root.
#: The LKGBC is replaced by the running code, even without a task, once this old.
LKGBC_MAX_AGE_SECS = 7 * 24 * 3600
IS_FINE_TIMEOUT_SECS = 60.0
#: Modules of the bot package `is_fine` does not import: they run the bot.
_ENTRY_MODULES = ("__main__", "zip_main")

ExecPython = Callable[[Sequence[str], Optional[Mapping[str, str]]], None]


class ExitCode(enum.IntEnum):
    OK = 0
    ERROR = 1
    USAGE = 2  # argparse's.
    NOT_OURS = 3  # The directory is another bot's, or holds files no bot made.


class UpdateError(SwarmingError):
    """The bot could not switch to a version; `bad` when the version itself is
    at fault (wrong digest, not fine), so that it is not tried again."""

    def __init__(self, version: str, message: str, bad: bool):
        super().__init__(f"update to {version}: {message}")
        self.version = version
        self.message = message
        self.bad = bad


def zip_digest(path: Path | str) -> str:
    """The bot code's version: the digest of the zip's files as the server
    computes it (shared/bot_archive.py; directory entries are not files)."""
    return digest(entries_of(Path(path)))


@dataclasses.dataclass(frozen=True)
class Code:
    """The code this process runs."""

    zip_path: Path | None  # None: the source tree.
    version: str  # The zip's digest, or "dev".
    source_root: Path | None = None  # The directory holding `bot/`, from source.

    def python_args(self, *args: str) -> list[str]:
        """`python3 <these> <args>` runs a command of this code."""
        if self.zip_path is not None:
            return [str(self.zip_path), *args]
        return ["-m", "bot", *args]

    def config(self) -> dict[str, Any]:
        """The zip's config.json ({} from source). Raises OSError, KeyError or
        ValueError when it is missing or unreadable."""
        if self.zip_path is None:
            return {}
        with zipfile.ZipFile(self.zip_path) as archive:
            config = json.loads(archive.read(CONFIG).decode("utf-8"))
        if not isinstance(config, dict):
            raise ValueError(f"{CONFIG} is not a JSON object")
        return config


@functools.lru_cache(maxsize=None)
def current_code() -> Code:
    container = Path(os.path.abspath(bot_package.__file__)).parent.parent
    if container.is_file():
        return Code(container, zip_digest(container))
    return Code(None, DEV_VERSION, container)


def environ_without_bot_vars() -> dict[str, str]:
    """This process's environment without the variables of the bot's own
    life (probation, the version it fell back from): for any process it
    starts, which must not mistake them for its own."""
    return {k: v for k, v in os.environ.items() if k not in (PROBATION_ENV, BAD_VERSION_ENV)}


def take_bad_version() -> tuple[str, str] | None:
    """(version, why) when this bot was started as the fallback from a
    version that failed to start (zip_main.py); read once."""
    value = os.environ.pop(BAD_VERSION_ENV, "")
    version, _, why = value.partition(" ")
    return (version, why) if version else None


class Updater:
    """Switches the running bot to other code: `update` (download, check,
    exec), `restart` (exec the same code), and keeps the last known good copy
    (LKGBC, `swarming_bot.zip`) current."""

    def __init__(self, code: Code, layout: layout_lib.Layout, bot_args: Sequence[str], *,
                 exec_python: ExecPython = os_platform.exec_python,
                 is_fine_timeout: float = IS_FINE_TIMEOUT_SECS, now: Callable[[], float] = time.time,
                 bad_versions: Mapping[str, str] | None = None):
        self.code = code
        self._layout = layout
        self._bot_args = list(bot_args)  # Given again to `start_bot` on every exec.
        self._exec_python = exec_python
        self._is_fine_timeout = is_fine_timeout
        self._now = now
        #: Versions not to take again (version -> why): they failed the checks or to start.
        self.bad_versions: dict[str, str] = dict(bad_versions or {})
        #: Exec'd into new code and not yet connected: a failed start falls back (zip_main.py).
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
        self._exec_python([str(target), "start_bot", *self._bot_args], env)

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
        self._exec_python(self.code.python_args("start_bot", *self._bot_args), environ_without_bot_vars())

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


# The commands.

def main(argv: Sequence[str]) -> int:
    argv = list(argv)
    if not argv or argv[0].startswith("-"):
        command, args = "start_bot", argv
    else:
        command, args = argv[0], argv[1:]
    handler = COMMANDS.get(command)
    if handler is None:
        sys.stderr.write(f"unknown command {command!r}; the commands: {', '.join(COMMANDS)}\n")
        return ExitCode.USAGE
    return handler(args)


def start_bot(args: Sequence[str]) -> int:
    code = current_code()
    if code.zip_path is not None and code.zip_path.name not in layout_lib.RUNNING_ZIPS:
        return _self_copy(code, args)
    from bot import bot_main

    return bot_main.main(args, code=code)


def _self_copy(code: Code, args: Sequence[str], exec_python: ExecPython = os_platform.exec_python) -> int:
    """Copies the zip to swarming_bot.1.zip and execs that copy: the bot only
    ever runs from .1 or .2, so swarming_bot.zip stays the last known good."""
    assert code.zip_path is not None
    layout = layout_lib.Layout(code.zip_path.parent)
    # Overwriting the copy another bot runs from would break it: check first.
    probe = os_platform.DirectoryLock(layout.lock)
    if layout.lock.exists():
        if not probe.acquire():
            sys.stderr.write(f"swarming bot: another bot is running in {layout.root} "
                             f"(it holds {layout.lock}); run one bot per directory\n")
            return ExitCode.NOT_OURS
        probe.release()
    target = layout.root / layout_lib.RUNNING_ZIPS[0]
    sys.stderr.write(f"swarming bot: copying {code.zip_path} to {target} and running it (pid {os.getpid()})\n")
    copy_atomically(code.zip_path, target)
    exec_python([str(target), "start_bot", *args], None)
    return ExitCode.OK


def config(args: Sequence[str]) -> int:
    argparse.ArgumentParser(prog="config", description="Prints the zip's config.json.").parse_args(args)
    code = current_code()
    if code.zip_path is None:
        sys.stderr.write("running from source: there is no config.json\n")
        return ExitCode.ERROR
    print(json.dumps(code.config(), indent=2, sort_keys=True))
    return ExitCode.OK


def version(args: Sequence[str]) -> int:
    argparse.ArgumentParser(prog="version", description="Prints the bot code's digest.").parse_args(args)
    print(current_code().version)
    return ExitCode.OK


def is_fine(args: Sequence[str]) -> int:
    """Imports every module of the bot and the hooks, and reads the config:
    the check a new version passes before the bot execs into it."""
    argparse.ArgumentParser(prog="is_fine", description="Checks this code can run.").parse_args(args)
    try:
        for module in pkgutil.iter_modules(bot_package.__path__):
            if module.name not in _ENTRY_MODULES:
                importlib.import_module(f"bot.{module.name}")
        code = current_code()
        if code.zip_path is not None:
            server = code.config().get("server")
            if not isinstance(server, str) or not server:
                raise ValueError(f"{CONFIG} has no server URL")
            if importlib.util.find_spec(BOT_CONFIG) is not None:
                importlib.import_module(BOT_CONFIG)
    except Exception:
        traceback.print_exc()
        return ExitCode.ERROR
    print("fine")
    return ExitCode.OK


def attributes(args: Sequence[str]) -> int:
    from bot import bot_main

    parser = argparse.ArgumentParser(prog="attributes", description="Prints the bot's attributes as JSON.")
    parser.add_argument("--id", help="the bot id (default: $SWARMING_BOT_ID, else the short hostname)")
    options = parser.parse_args(args)
    code = current_code()
    work_dir = code.zip_path.parent if code.zip_path is not None else Path.cwd()
    attrs = bot_main.initial_attributes(bot_main.bot_id_from(options.id), code.version, work_dir)
    print(json.dumps(attrs.to_json(), indent=2, sort_keys=True))
    return ExitCode.OK


def run_task(args: Sequence[str]) -> int:
    from bot import runner_process

    return runner_process.child_main(args)


COMMANDS: dict[str, Callable[[Sequence[str]], int]] = {
    "start_bot": start_bot, "config": config, "version": version, "is_fine": is_fine,
    "attributes": attributes, "run_task": run_task,
}
