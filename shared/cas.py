"""Content-addressed trees: blobs named by their SHA-256, and the manifest that
names a directory tree (DESIGN.md section 9).

A manifest is a canonical JSON blob (sorted keys, no spaces, UTF-8):

    {"files": {"a/b.txt": {"hash": <hex>, "size_bytes": 3, "executable": false}},
     "symlinks": {"a/link": "b.txt"},
     "directories": ["empty/dir"]}

`directories` lists only the directories that hold nothing else, so that a tree
round-trips. The same tree always gives the same bytes, hence the same digest.
A manifest read from the store is checked before anything is written from it:
paths are relative and never climb out, and symlinks stay inside the tree.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import posixpath
import re
import stat
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

from shared.errors import ValidationError
from shared.wire import REQUIRED, WireObject

#: Where a blob lives in the bucket: `cas/sha256/<hex>`.
OBJECT_PREFIX = "cas/sha256/"
#: Digests per `cas_find_missing` or `cas_urls` call.
MAX_BATCH = 1000
MAX_TREE_ENTRIES = 1_000_000
_HEX_RE = re.compile(r"[0-9a-f]{64}")
_READ_SIZE = 1024 * 1024


@dataclasses.dataclass(frozen=True, order=True)
class Digest:
    """A blob's SHA-256 and size: its name in the store."""

    hash: str
    size_bytes: int

    @classmethod
    def of_bytes(cls, data: bytes) -> Digest:
        return cls(hashlib.sha256(data).hexdigest(), len(data))

    @classmethod
    def of_file(cls, path: Path) -> Digest:
        h, size = hashlib.sha256(), 0
        with open(path, "rb") as f:
            while chunk := f.read(_READ_SIZE):
                h.update(chunk)
                size += len(chunk)
        return cls(h.hexdigest(), size)

    @classmethod
    def from_wire(cls, body: Any, field: str) -> Digest:
        digest = WireObject(body, field, {"hash", "size_bytes"})
        size = digest.get("size_bytes")
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise ValidationError(digest.field("size_bytes"), "must be a non-negative integer")
        return cls(digest.string("hash", 64, _HEX_RE, default=REQUIRED), size)

    @classmethod
    def parse(cls, text: str) -> Digest:
        """`<hex>/<size>`, as the CLI takes and prints it."""
        hash_, _, size = text.partition("/")
        if not _HEX_RE.fullmatch(hash_) or not size.isdigit():
            raise ValueError(f"{text!r} is not a digest: expected <sha256 hex>/<size in bytes>")
        return cls(hash_, int(size))

    def to_wire(self) -> dict[str, Any]:
        return {"hash": self.hash, "size_bytes": self.size_bytes}

    @property
    def object_name(self) -> str:
        return OBJECT_PREFIX + self.hash

    def __str__(self) -> str:
        return f"{self.hash}/{self.size_bytes}"


def digests_from_wire(body: Any, field: str) -> list[Digest]:
    """A list of at most MAX_BATCH digests, as the CAS endpoints take them."""
    if not isinstance(body, list) or len(body) > MAX_BATCH:
        raise ValidationError(field, f"must be a list of at most {MAX_BATCH} digests")
    return [Digest.from_wire(item, f"{field}[{i}]") for i, item in enumerate(body)]


@dataclasses.dataclass(frozen=True)
class FileEntry:
    digest: Digest
    executable: bool = False


class Verifier:
    """Hashes bytes as they stream past and says whether they are the blob expected."""

    def __init__(self, expected: Digest):
        self.expected = expected
        self._hash = hashlib.sha256()
        self._size = 0

    def update(self, chunk: bytes) -> None:
        self._hash.update(chunk)
        self._size += len(chunk)

    def matches(self) -> bool:
        return Digest(self._hash.hexdigest(), self._size) == self.expected


@dataclasses.dataclass(frozen=True)
class Tree:
    """A directory tree by content: files, symlinks and empty directories."""

    files: Mapping[str, FileEntry] = dataclasses.field(default_factory=dict)
    symlinks: Mapping[str, str] = dataclasses.field(default_factory=dict)
    directories: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        _check(self)

    # The blob.

    def to_bytes(self) -> bytes:
        doc = {
            "files": {path: {**entry.digest.to_wire(), "executable": entry.executable}
                      for path, entry in self.files.items()},
            "symlinks": dict(self.symlinks),
            "directories": sorted(self.directories),
        }
        return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()

    @property
    def digest(self) -> Digest:
        return Digest.of_bytes(self.to_bytes())

    @classmethod
    def from_bytes(cls, data: bytes) -> Tree:
        """A manifest from the store; ValidationError names the bad entry."""
        try:
            doc = json.loads(data.decode())
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ValidationError("manifest", f"not a JSON manifest ({e})") from e
        manifest = WireObject(doc, "manifest", {"files", "symlinks", "directories"})
        files = _object(manifest, "files")
        symlinks = _object(manifest, "symlinks")
        directories = manifest.get("directories", [])
        if not isinstance(directories, list) or not all(isinstance(d, str) for d in directories):
            raise ValidationError("manifest.directories", "must be a list of paths")
        return cls(
            files={path: _file_entry(body, f"manifest.files[{path!r}]") for path, body in files.items()},
            symlinks=symlinks,
            directories=frozenset(directories),
        )

    # The file system.

    @classmethod
    def from_directory(cls, root: Path) -> tuple[Tree, dict[Digest, Path]]:
        """The tree under `root`, and one file to read each distinct blob from.

        Anything but regular files, directories and symlinks staying inside the
        tree is refused (ValidationError naming the path)."""
        files: dict[str, FileEntry] = {}
        symlinks: dict[str, str] = {}
        directories: set[str] = set()
        sources: dict[Digest, Path] = {}
        for relative, entry in _walk(root, ""):
            mode = entry.stat(follow_symlinks=False).st_mode
            if stat.S_ISLNK(mode):
                symlinks[relative] = os.readlink(entry.path)
            elif stat.S_ISDIR(mode):
                if not any(os.scandir(entry.path)):
                    directories.add(relative)
            elif stat.S_ISREG(mode):
                digest = Digest.of_file(Path(entry.path))
                files[relative] = FileEntry(digest, bool(mode & stat.S_IXUSR))
                sources.setdefault(digest, Path(entry.path))
            else:
                raise ValidationError(relative, "is neither a file, a directory nor a symlink")
        return cls(files, symlinks, frozenset(directories)), sources

    def blobs(self) -> set[Digest]:
        return {entry.digest for entry in self.files.values()}

    @property
    def size_bytes(self) -> int:
        """The bytes of all its files, as a checkout would take them."""
        return sum(entry.digest.size_bytes for entry in self.files.values())

    def materialize(self, dest: Path, place: Callable[[str, FileEntry, Path], None]) -> None:
        """Makes the tree under `dest`: directories, then each file by
        `place(relative_path, entry, target)`, which must also set its mode,
        then the symlinks."""
        for directory in sorted(self._parents() | self.directories):
            (dest / directory).mkdir(parents=True, exist_ok=True)
        for path, entry in sorted(self.files.items()):
            place(path, entry, dest / path)
        for path, target in sorted(self.symlinks.items()):
            os.symlink(target, dest / path)

    def _parents(self) -> set[str]:
        parents = set()
        for path in (*self.files, *self.symlinks):
            parent = posixpath.dirname(path)
            while parent:
                parents.add(parent)
                parent = posixpath.dirname(parent)
        return parents


def _walk(root: Path, prefix: str) -> Iterator[tuple[str, os.DirEntry]]:
    with os.scandir(root) as entries:
        for entry in sorted(entries, key=lambda e: e.name):
            relative = f"{prefix}{entry.name}"
            yield relative, entry
            if entry.is_dir(follow_symlinks=False):
                yield from _walk(Path(entry.path), relative + "/")


def _object(manifest: WireObject, key: str) -> dict[str, Any]:
    value = manifest.get(key, {})
    if not isinstance(value, dict):
        raise ValidationError(manifest.field(key), "must be a JSON object")
    return value


def _file_entry(body: Any, field: str) -> FileEntry:
    entry = WireObject(body, field, {"hash", "size_bytes", "executable"})
    digest = Digest.from_wire({k: v for k, v in body.items() if k != "executable"}, field)
    return FileEntry(digest, entry.boolean("executable"))


def _check(tree: Tree) -> None:
    """Paths relative and inside; no path both a file and a directory; no path
    under a symlink; each symlink target inside the tree."""
    paths = [*tree.files, *tree.symlinks, *tree.directories]
    if len(paths) > MAX_TREE_ENTRIES:
        raise ValidationError("manifest", f"more than {MAX_TREE_ENTRIES} entries")
    for path in paths:
        _check_path(path)
    if len(set(paths)) != len(paths):
        raise ValidationError(f"manifest: {_first_duplicate(paths)!r}", "named twice")
    leaves = set(tree.files) | set(tree.symlinks)
    for path in paths:
        parent = posixpath.dirname(path)
        while parent:
            if parent in leaves or parent in tree.directories:
                kind = "an empty directory" if parent in tree.directories else "a file or a symlink"
                raise ValidationError(f"manifest: {path!r}", f"is under {parent!r}, which is {kind}")
            parent = posixpath.dirname(parent)
    for path, target in tree.symlinks.items():
        _check_symlink(path, target)


def _check_path(path: Any) -> None:
    if not isinstance(path, str) or not path or "\0" in path or "\\" in path:
        raise ValidationError(f"manifest: {path!r}", "is not a path")
    if path.startswith("/"):
        raise ValidationError(f"manifest: {path!r}", "must be a relative path")
    if any(part in ("", ".", "..") for part in path.split("/")):
        raise ValidationError(f"manifest: {path!r}", "must not have empty, '.' or '..' components")


def _check_symlink(path: str, target: Any) -> None:
    """A relative target whose `..` all lead (as normpath writes it) and which
    stays in the tree: then no chain of links can lead out, because a link's
    parents are real directories of the tree."""
    field = f"manifest: symlink {path!r}"
    if not isinstance(target, str) or not target or "\0" in target:
        raise ValidationError(field, "has no target")
    if target.startswith("/"):
        raise ValidationError(field, "must point to a relative path")
    if posixpath.normpath(target) != target.rstrip("/") or target.rstrip("/") != target:
        raise ValidationError(field, "target must be normalized ('..' only at its start)")
    resolved = posixpath.normpath(posixpath.join(posixpath.dirname(path), target))
    if resolved == ".." or resolved.startswith("../"):
        raise ValidationError(field, "points outside the tree")


def _first_duplicate(paths: list[str]) -> str:
    seen: set[str] = set()
    for path in paths:
        if path in seen:
            return path
        seen.add(path)
    return ""
