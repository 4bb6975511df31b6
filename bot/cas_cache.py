"""The bot's content cache, `cas_cache/` (seed: "Isolated cache", "Disk space
usage"): blobs named by their SHA-256, kept read-only across tasks, bot
restarts and updates, so that a task's inputs are mostly hard links to what an
earlier task fetched.

    cas_cache/<sha256>    one read-only file per blob
    cas_cache/index.json  {"version": 1, "entries": [[sha256, size, mtime_ns], ...]}, least recently used first

The index is the truth: at open, files it does not name are deleted (a
download cut short, a runner killed before it saved the index) and entries
whose file is gone are forgotten. An entry whose size and mtime are still those
recorded when it was added is trusted; any other is hashed again and dropped
when its content changed (a task may chmod its hard link and write to it).

One task runner at a time uses the cache (the bot runs one task at a time).
"""

from __future__ import annotations

import collections
import dataclasses
import json
import logging
import os
import shutil
import stat
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

from bot import layout
from shared import cas_transfer
from shared.cas import Digest, Pack

logger = logging.getLogger(__name__)

GIB = 1024 ** 3
#: The seed's defaults: 20 GB or 100,000 items, whichever comes first, and
#: 2 GB of free disk kept at the start and end of a task.
DEFAULT_MAX_SIZE_GIB = 20
DEFAULT_MAX_ITEMS = 100_000
DEFAULT_MIN_FREE_GIB = 2
INDEX = "index.json"
_INDEX_VERSION = 1
READ_ONLY = 0o444

#: Free bytes on the file system holding a path.
FreeSpace = Callable[[Path], int]


def disk_free(path: Path) -> int:
    return shutil.disk_usage(path).free


@dataclasses.dataclass(frozen=True)
class Limits:
    max_bytes: int = DEFAULT_MAX_SIZE_GIB * GIB
    max_items: int = DEFAULT_MAX_ITEMS
    min_free_bytes: int = DEFAULT_MIN_FREE_GIB * GIB  # Free disk kept where the cache lives.

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any]) -> Limits:
        """From get_settings()'s `cas_cache` (validated by bot/hooks.py), the defaults for what it lacks."""
        given = settings.get("cas_cache") or {}
        return cls(max_bytes=int(given.get("max_size_gib", DEFAULT_MAX_SIZE_GIB) * GIB),
                   max_items=int(given.get("max_items", DEFAULT_MAX_ITEMS)),
                   min_free_bytes=int(given.get("min_free_gib", DEFAULT_MIN_FREE_GIB) * GIB))


@dataclasses.dataclass
class FetchStats:
    """Distinct blobs found in the cache (hot) and downloaded (cold)."""

    items_hot: int = 0
    bytes_hot: int = 0
    items_cold: int = 0
    bytes_cold: int = 0

    def add(self, other: FetchStats) -> None:
        for field in dataclasses.fields(FetchStats):
            setattr(self, field.name, getattr(self, field.name) + getattr(other, field.name))


@dataclasses.dataclass
class _Entry:
    size: int
    mtime_ns: int  # As stat'ed when the entry was added or last verified.


class CasCache:
    """The blobs of `root`, within `limits`. Entries a task fetched or found
    are pinned until `trim()`: none is evicted before its files are placed."""

    def __init__(self, root: Path, limits: Limits = Limits(), free_space: FreeSpace = disk_free):
        self.root = root
        self.limits = limits
        self._free_space = free_space
        self._entries: collections.OrderedDict[str, _Entry] = collections.OrderedDict()  # Oldest use first.
        self._bytes = 0  # Sum of the entries' sizes.
        self._pinned: set[str] = set()
        self._dirty = False  # The index on disk is behind: entries or their order changed.
        root.mkdir(parents=True, exist_ok=True)
        self._load()

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def size_bytes(self) -> int:
        return self._bytes

    def path(self, digest: Digest) -> Path:
        return self.root / digest.hash

    def get(self, digest: Digest) -> Path | None:
        """The blob's file, now the most recently used and pinned; None when
        the cache does not hold it (a tampered entry is dropped)."""
        entry = self._entries.get(digest.hash)
        if entry is None or entry.size != digest.size_bytes:
            return None
        path = self.path(digest)
        try:
            st = os.stat(path)
            if (st.st_size, st.st_mtime_ns) != (entry.size, entry.mtime_ns):
                if Digest.of_file(path) != digest:
                    logger.warning("cas cache: %s was modified; dropped, to be fetched again", digest)
                    self._drop(digest.hash)
                    return None
                entry.mtime_ns = st.st_mtime_ns
            if stat.S_IMODE(st.st_mode) != READ_ONLY:  # A task chmod'ed its hard link: the same inode.
                os.chmod(path, READ_ONLY)
        except OSError as e:
            logger.warning("cas cache: %s is unreadable (%s); dropped", digest, e)
            self._drop(digest.hash)
            return None
        self._entries.move_to_end(digest.hash)
        self._pinned.add(digest.hash)
        self._dirty = True
        return path

    def fetch(self, digests: Iterable[Digest], service: cas_transfer.Service,
              transport: cas_transfer.Transport, packed: Mapping[Digest, Pack] | None = None) -> FetchStats:
        """Makes sure the cache holds every blob of `digests`, downloading
        those it lacks after making room for them. Raises what
        `cas_transfer.download` raises (MissingBlobs, CorruptBlob, the
        service's and the transport's errors), keeping what did arrive."""
        stats = FetchStats()
        missing = []
        for digest in sorted(set(digests)):
            if self.get(digest) is not None:
                stats.items_hot += 1
                stats.bytes_hot += digest.size_bytes
            else:
                missing.append(digest)
        if not missing:
            return stats
        self._make_room(len(missing), sum(d.size_bytes for d in missing))
        try:
            cas_transfer.download(service, transport, missing, self.path, packed=packed)
        finally:
            for digest in missing:
                self._adopt(digest)
            self._save()
        stats.items_cold = len(missing)
        stats.bytes_cold = sum(d.size_bytes for d in missing)
        return stats

    def place(self, digest: Digest, executable: bool, target: Path) -> None:
        """Puts a cached blob at `target`, read-only: a hard link when it can
        (the entry's inode, already read-only), else a copy. An executable
        always gets a copy, since a hard link shares the entry's mode."""
        source = self.path(digest)
        if not executable:
            try:
                os.link(source, target)
                return
            except OSError as e:  # Another file system, too many links: copy.
                logger.debug("cas cache: cannot hard link %s (%s); copying", digest, e)
        shutil.copyfile(source, target)
        cas_transfer.set_mode(target, executable, read_only=True)

    def trim(self) -> None:
        """Unpins every entry, then evicts the least recently used ones until
        the cache is within its limits and the disk has its free space."""
        self._pinned.clear()
        self._make_room(0, 0)
        if self._dirty:
            self._save()

    def _make_room(self, items: int, size: int) -> None:
        """Evicts unpinned entries, least recently used first, until `items`
        more entries of `size` bytes fit within the limits."""
        free = self._free_space(self.root)

        def over() -> bool:
            return (len(self._entries) + items > self.limits.max_items
                    or self._bytes + size > self.limits.max_bytes
                    or free - size < self.limits.min_free_bytes)

        evicted = 0
        for hash_ in [h for h in self._entries if h not in self._pinned]:
            if not over():
                break
            free += self._drop(hash_)
            evicted += 1
        if evicted:
            logger.info("cas cache: evicted %d entries; %d left, %d bytes", evicted, len(self._entries), self._bytes)
        if over():
            logger.warning("cas cache: over its limits %s with %d more entries of %d bytes (%d in use, %d free)",
                           self.limits, items, size, len(self._pinned), free)

    def _adopt(self, digest: Digest) -> None:
        """Adds a blob the download put in place (and checked); one that did not come is skipped."""
        path = self.path(digest)
        try:
            os.chmod(path, READ_ONLY)
            st = os.stat(path)
        except FileNotFoundError:
            return
        if st.st_size != digest.size_bytes or digest.hash in self._entries:  # Not this digest's file.
            return
        self._entries[digest.hash] = _Entry(st.st_size, st.st_mtime_ns)
        self._bytes += st.st_size
        self._pinned.add(digest.hash)
        self._dirty = True

    def _drop(self, hash_: str) -> int:
        """Forgets an entry and deletes its file; the bytes this freed on disk."""
        entry = self._entries.pop(hash_)
        self._bytes -= entry.size
        self._pinned.discard(hash_)
        self._dirty = True
        path = self.root / hash_
        try:
            st = os.lstat(path)
            path.unlink()
        except FileNotFoundError:
            return 0
        return st.st_size if st.st_nlink == 1 else 0  # Still linked from w/: nothing freed yet.

    def _load(self) -> None:
        index = self.root / INDEX
        try:
            doc = json.loads(index.read_text(encoding="utf-8"))
            if doc.get("version") != _INDEX_VERSION:
                raise ValueError(f"version {doc.get('version')!r}")
            rows = [(str(h), int(size), int(mtime)) for h, size, mtime in doc["entries"]]
        except FileNotFoundError:
            rows = []
        except (OSError, ValueError, TypeError, KeyError, AttributeError) as e:
            logger.warning("cas cache: %s is unusable (%r); starting empty", index, e)
            rows = []
        present = {name for name in os.listdir(self.root) if name != INDEX}
        for hash_, size, mtime_ns in rows:
            if hash_ in present and hash_ not in self._entries:
                self._entries[hash_] = _Entry(size, mtime_ns)
                self._bytes += size
        self._dirty = len(self._entries) != len(rows)
        for name in sorted(present - set(self._entries)):
            logger.info("cas cache: deleting %s, which the index does not name", name)
            layout.remove(self.root / name)

    def _save(self) -> None:
        """Writes the index whole, then renames it over the old one."""
        doc = {"version": _INDEX_VERSION,
               "entries": [[h, e.size, e.mtime_ns] for h, e in self._entries.items()]}
        fd, tmp = tempfile.mkstemp(dir=self.root, prefix=f".{INDEX}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(json.dumps(doc, separators=(",", ":")))  # At once: json.dump writes piece by piece.
            os.replace(tmp, self.root / INDEX)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        self._dirty = False
