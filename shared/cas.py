"""Content-addressed trees: blobs named by their SHA-256, and the manifest that
names a directory tree (DESIGN.md section 9).

A manifest is a canonical JSON blob (sorted keys, no spaces, UTF-8):

    {"files": {"a/b.txt": {"hash": <hex>, "size_bytes": 3, "executable": false}},
     "symlinks": {"a/link": "b.txt"},
     "directories": ["empty/dir"]}

`directories` lists only the directories that hold nothing else, so that a tree
round-trips. The same tree always gives the same bytes, hence the same digest.

Small files travel in packs, so that a tree of 10,000 tiny files costs a few
requests rather than 10,000 of each kind: a pack is one blob, the
concatenation of its members' bytes in the order listed,

    "packs": [{"hash": <hex>, "size_bytes": 3072, "members": [<hex>, ...]}]

A packed file is stored only inside its pack. Which files share a pack
depends only on the set of small blobs (their hash prefix), so an unchanged
tree gives the same packs, and one changed file re-uploads one pack.
A manifest read from the store is checked before anything is written from it:
paths are relative and never climb out, and symlinks stay inside the tree.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import hashlib
import json
import os
import posixpath
import re
import stat
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping

from shared.errors import ValidationError
from shared.wire import MAX_INT64, REQUIRED, Integer, ListOf, Shape, Text, WireObject

#: Where a blob lives in the bucket: `cas/sha256/<hex>`.
OBJECT_PREFIX = "cas/sha256/"
#: Digests per `cas_find_missing` or `cas_urls` call.
MAX_BATCH = 1000
MAX_TREE_ENTRIES = 1_000_000
#: Files up to this size go in packs...
PACK_MEMBER_MAX = 64 * 1024
#: ...when a tree has at least this many of them...
PACK_MIN_MEMBERS = 8
#: ...in packs of about this size at most.
PACK_TARGET_BYTES = 4 * 1024 * 1024
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
        digest: Digest = DIGEST.read(body, field)
        return digest

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


#: A blob's name on the wire.
DIGEST = Shape({"hash": Text(64, _HEX_RE.pattern, min_length=64, default=REQUIRED),
                "size_bytes": Integer(0, MAX_INT64)},
               build=lambda wire: Digest(wire.read("hash"), wire.read("size_bytes")))
#: At most MAX_BATCH digests, as the CAS endpoints take them.
DIGESTS = ListOf(DIGEST, MAX_BATCH, default=REQUIRED)


def digests_from_wire(body: Any, field: str) -> list[Digest]:
    digests: list[Digest] = DIGESTS.read(body, field)
    return digests


@dataclasses.dataclass(frozen=True)
class FileEntry:
    digest: Digest
    executable: bool = False


@dataclasses.dataclass(frozen=True)
class Pack:
    """One blob holding small files: its members' bytes, concatenated in order."""

    digest: Digest
    members: tuple[Digest, ...]

    def to_wire(self) -> dict[str, Any]:
        return {**self.digest.to_wire(), "members": [m.hash for m in self.members]}


def plan_packs(blobs: Iterable[Digest]) -> list[tuple[Digest, ...]]:
    """Groups the small blobs by the first hex digits of their hash, with as
    few digits as keep each group near PACK_TARGET_BYTES: the groups depend
    on nothing but the set of blobs. A group of one stays a lone blob."""
    small = sorted(d for d in set(blobs) if d.size_bytes <= PACK_MEMBER_MAX)
    if len(small) < PACK_MIN_MEMBERS:
        return []
    total, digits = sum(d.size_bytes for d in small), 0
    while total > PACK_TARGET_BYTES * 16 ** digits:
        digits += 1
    groups: dict[str, list[Digest]] = collections.defaultdict(list)
    for digest in small:
        groups[digest.hash[:digits]].append(digest)
    return [tuple(group) for _, group in sorted(groups.items()) if len(group) > 1]


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
    packs: tuple[Pack, ...] = ()

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
        if self.packs:
            doc["packs"] = [pack.to_wire() for pack in sorted(self.packs, key=lambda p: p.digest)]
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
        manifest = WireObject(doc, "manifest", {"files", "symlinks", "directories", "packs"})
        files = {path: _file_entry(body, f"manifest.files[{path!r}]")
                 for path, body in _object(manifest, "files").items()}
        directories = manifest.get("directories", [])
        if not isinstance(directories, list) or not all(isinstance(d, str) for d in directories):
            raise ValidationError("manifest.directories", "must be a list of paths")
        packs = manifest.get("packs", [])
        if not isinstance(packs, list):
            raise ValidationError("manifest.packs", "must be a list")
        sizes = {entry.digest.hash: entry.digest.size_bytes for entry in files.values()}
        return cls(
            files=files,
            symlinks=_object(manifest, "symlinks"),
            directories=frozenset(directories),
            packs=tuple(_pack(body, f"manifest.packs[{i}]", sizes) for i, body in enumerate(packs)),
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
        """The contents of its files (packed or not)."""
        return {entry.digest for entry in self.files.values()}

    @functools.cached_property
    def packed(self) -> dict[Digest, Pack]:
        """The pack of each packed blob."""
        return {member: pack for pack in self.packs for member in pack.members}

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


def _pack(body: Any, field: str, sizes: Mapping[str, int]) -> Pack:
    """A pack whose members are files of the manifest, adding up to its size."""
    pack = WireObject(body, field, {"hash", "size_bytes", "members"})
    digest = Digest.from_wire({k: v for k, v in body.items() if k != "members"}, field)
    members = pack.get("members")
    if not isinstance(members, list) or not all(isinstance(m, str) and m in sizes for m in members):
        raise ValidationError(pack.field("members"), "must list hashes of the manifest's files")
    return Pack(digest, tuple(Digest(m, sizes[m]) for m in members))


def _check(tree: Tree) -> None:
    """Paths relative and inside; no path both a file and a directory; no path
    under a symlink; each symlink target inside the tree; packs that add up."""
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
    _check_packs(tree)


def _check_packs(tree: Tree) -> None:
    sizes: dict[str, int] = {}
    for path, entry in tree.files.items():
        if sizes.setdefault(entry.digest.hash, entry.digest.size_bytes) != entry.digest.size_bytes:
            raise ValidationError(f"manifest: {path!r}", "has the hash of another file but not its size")
    members = [member for pack in tree.packs for member in pack.members]
    if len(set(members)) != len(members):
        raise ValidationError("manifest.packs", "a blob is in more than one pack, or twice in one")
    for pack in tree.packs:
        if pack.digest.size_bytes != sum(m.size_bytes for m in pack.members):
            raise ValidationError(f"manifest.packs: {pack.digest}", "its size is not the sum of its members'")
        if any(m.hash not in sizes for m in pack.members):
            raise ValidationError(f"manifest.packs: {pack.digest}", "has a member that is no file of the tree")


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
