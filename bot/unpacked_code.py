"""The running version unpacked and byte-compiled, `code/<version>/` in the
bot's directory, which every task runner starts from.

zipimport keeps no bytecode: a runner started from the zip compiles every
module it imports, hundreds of milliseconds per task. So the bot unpacks its
version once, compiles it (`compileall`, unchecked-hash pycs: what runs is
what was checked), and starts its runners as `python3 -S code/<version>
run_task`. The copy is built in a temporary directory and renamed into place,
its stamp written last, so that a bot killed half-way leaves no copy that looks
whole. At the bot's start the copy is checked against the version (the zip's
digest of its files, bot_archive.py) and its pycs against the stamp; a copy
that fails is built again. Before each task only the stamp is looked at; after
a runner failed, the next task checks the whole copy again. Each version has a
directory of its own, so an update never touches the copy the old code runs
from, and the bot deletes the other versions' copies once its own is ready.
"""

from __future__ import annotations

import compileall
import hashlib
import json
import logging
import os
import py_compile
import zipfile
from pathlib import Path

from bot import layout as layout_lib
from shared.bot_archive import digest

logger = logging.getLogger(__name__)

#: Written last in a copy: its version and the SHA-256 of each pyc.
STAMP = ".stamp.json"
PYCACHE = "__pycache__"


class UnpackedCode:
    """The copy of one version of the bot code under `root` (`code/`)."""

    def __init__(self, zip_path: Path, version: str, root: Path):
        self.zip_path = zip_path  # The zip the bot runs from: its digest is `version`.
        self.version = version
        self.root = root
        self._checked = False  # The whole copy was checked (or built) by this process, and no runner failed since.

    @property
    def path(self) -> Path:
        return self.root / self.version

    def python_args(self) -> list[str]:
        """`python3 <these> <command>` runs a command of this copy. -S: the
        copy is self-contained, and the site-packages' start-up costs tens of
        milliseconds a runner."""
        return ["-S", str(self.path)]

    def ensure(self) -> Path:
        """The copy, checked (whole once, then by its stamp), built again
        when it fails the check. Raises OSError or zipfile.BadZipFile when it
        cannot be built."""
        if self._checked and (self.path / STAMP).is_file():
            return self.path
        problem = self.problem()
        if problem is not None:
            logger.info("code %s: building %s (%s)", self.version, self.path, problem)
            self._build()
        self._checked = True
        self._prune()
        return self.path

    def suspect(self) -> None:
        """A runner failed: the next `ensure` checks the whole copy again."""
        self._checked = False

    def problem(self) -> str | None:
        """None when the copy holds exactly the version's files and the pycs
        it was built with, else what is wrong."""
        try:
            stamp = json.loads((self.path / STAMP).read_text(encoding="utf-8"))
            files, pycs = _read(self.path)
        except (OSError, ValueError) as e:
            return f"unreadable: {e}"
        if not isinstance(stamp, dict) or stamp.get("version") != self.version:
            return "its stamp names another version"
        if digest(files) != self.version:
            return "its files are not the version's"
        if stamp.get("pycs") != pycs:
            return "its compiled files are not the ones it was built with"
        return None

    def _build(self) -> None:
        self.root.mkdir(exist_ok=True)
        tmp = self.root / f"{self.version}.{os.getpid()}.tmp"
        layout_lib.remove(tmp)
        try:
            with zipfile.ZipFile(self.zip_path) as archive:
                archive.extractall(tmp)
            compileall.compile_dir(str(tmp), quiet=1, workers=1,
                                   invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH)
            files, pycs = _read(tmp)
            if digest(files) != self.version:
                raise OSError(f"{self.zip_path} is not version {self.version}")
            (tmp / STAMP).write_text(json.dumps({"version": self.version, "pycs": pycs}), encoding="utf-8")
            layout_lib.remove(self.path)
            os.replace(tmp, self.path)
        finally:
            layout_lib.remove(tmp)

    def _prune(self) -> None:
        """Deletes the other versions' copies and what a build left."""
        for path in self.root.iterdir():
            if path.name != self.version:
                try:
                    layout_lib.remove(path)
                except OSError as e:
                    logger.warning("code %s: cannot delete %s: %s", self.version, path, e)


def _read(copy: Path) -> tuple[dict[str, bytes], dict[str, str]]:
    """The copy's files as the zip's entries (name → content), and its pycs
    (name → SHA-256), the stamp aside."""
    files: dict[str, bytes] = {}
    pycs: dict[str, str] = {}
    for directory, _, names in os.walk(copy):
        for name in names:
            path = Path(directory, name)
            relative = path.relative_to(copy).as_posix()
            if relative == STAMP:
                continue
            content = path.read_bytes()
            if PYCACHE in path.relative_to(copy).parts:
                pycs[relative] = hashlib.sha256(content).hexdigest()
            else:
                files[relative] = content
    return files, pycs
