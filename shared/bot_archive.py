"""The bot zip's version: one definition for the server that builds the zip
and the bot that checks what it downloaded and reports what it runs.

SHA-256 over the entries sorted by name, each fed as its name's length, the
name (UTF-8), its content's length, the content; the lengths as 8-byte
big-endian unsigned integers. Directory entries are not entries. So the
version depends on names and contents only, never on timestamps or
compression.
"""

from __future__ import annotations

import hashlib
import io
import struct
import zipfile
from pathlib import Path
from typing import Mapping


def digest(entries: Mapping[str, bytes]) -> str:
    h = hashlib.sha256()
    for name in sorted(entries):
        raw = name.encode()
        content = entries[name]
        h.update(struct.pack(">Q", len(raw)))
        h.update(raw)
        h.update(struct.pack(">Q", len(content)))
        h.update(content)
    return h.hexdigest()


def entries_of(zip_file: bytes | Path) -> dict[str, bytes]:
    """The entries of a zip (its bytes, or its path), as `digest()` takes them."""
    source = io.BytesIO(zip_file) if isinstance(zip_file, bytes) else zip_file
    with zipfile.ZipFile(source) as z:
        return {info.filename: z.read(info) for info in z.infolist() if not info.is_dir()}
