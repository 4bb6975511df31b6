"""Which bot code this process runs: a zip (`swarming_bot.1.zip` or `.2.zip`,
its version the digest of its files, as the server computes it) or the
source tree (version "dev"), and how to start a command of that same code
(seed: "Versioning")."""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import zipfile
from pathlib import Path
from typing import Any

import bot as bot_package
from shared.bot_archive import digest, entries_of

DEV_VERSION = "dev"
CONFIG = "config.json"


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
