"""Moving blobs and trees between a machine and the store, for the CLI and the bot alike.

The service is asked which blobs are missing (`cas_find_missing`, in batches
of MAX_BATCH) and for signed URLs (`cas_urls`); the bytes then go straight to
Cloud Storage over those URLs, several at a time, never through a function.
Every blob downloaded is checked against its digest while it is written, and
each file taken out of a pack against its own.

Standard library only: the caller brings the HTTP (a `Service` for function
calls, a `Transport` for the signed URLs: bot/cas_transport.py, which the CLI
uses too).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import os
import shutil
import stat
import tempfile
import time
from pathlib import Path
from typing import Any, BinaryIO, Callable, Iterable, Iterator, Mapping, Optional, Protocol, Sequence, TypeVar, Union

from shared.cas import MAX_BATCH, Digest, FileEntry, Pack, Tree, Verifier, plan_packs

#: What a blob is uploaded from: its bytes, or a file holding them.
Source = Union[bytes, Path]
#: Told the bytes of each blob moved, as it ends.
Progress = Callable[[int], None]
WORKERS = 16
T = TypeVar("T")


class Service(Protocol):
    def call(self, function: str, body: dict[str, Any]) -> dict[str, Any]:
        """Calls a Cloud Function with a JSON body; raises on any error."""


class Transport(Protocol):
    def put(self, url: str, headers: Mapping[str, str], source: Source) -> None:
        """Uploads to a signed URL; "already exists" (412) is success. Raises on failure."""

    def get(self, url: str, sink: BinaryIO, verifier: Verifier) -> bool:
        """Downloads from a signed URL into `sink`, feeding the verifier;
        False when there is no such object (404). Raises on other failures."""


class MissingBlobs(Exception):
    """Blobs a tree names that the store does not have."""

    def __init__(self, digests: Sequence[Digest]):
        super().__init__(f"{len(digests)} blob(s) missing from the store, e.g. {digests[0]}")
        self.digests = list(digests)


class CorruptBlob(Exception):
    def __init__(self, digest: Digest):
        super().__init__(f"blob {digest} does not match its digest")
        self.digest = digest


@dataclasses.dataclass
class Stats:
    """What a transfer did, for the CLI's --json and the bot's performance stats."""

    items: int = 0  # Distinct blobs concerned.
    bytes: int = 0
    items_moved: int = 0  # Uploaded or downloaded; the rest were there already.
    bytes_moved: int = 0
    find_missing_calls: int = 0
    url_calls: int = 0
    seconds: float = 0.0

    def add(self, other: Stats) -> None:
        for field in dataclasses.fields(self):
            setattr(self, field.name, getattr(self, field.name) + getattr(other, field.name))


def _batches(items: Sequence[Digest]) -> Iterable[Sequence[Digest]]:
    for start in range(0, len(items), MAX_BATCH):
        yield items[start:start + MAX_BATCH]


def _wire(digests: Iterable[Digest]) -> list[dict[str, Any]]:
    return [d.to_wire() for d in digests]


def find_missing(service: Service, digests: Iterable[Digest], stats: Stats) -> list[Digest]:
    missing: list[Digest] = []
    for batch in _batches(sorted(set(digests))):
        stats.find_missing_calls += 1
        answer = service.call("cas_find_missing", {"digests": _wire(batch)})
        missing.extend(Digest(d["hash"], d["size_bytes"]) for d in answer["missing"])
    return missing


@contextlib.contextmanager
def _pool(workers: int) -> Iterator[concurrent.futures.ThreadPoolExecutor]:
    """A thread pool whose queued transfers are dropped on the first error
    (or Ctrl-C) rather than all run before it surfaces."""
    pool = concurrent.futures.ThreadPoolExecutor(workers)
    try:
        yield pool
    except BaseException:
        pool.shutdown(cancel_futures=True)
        raise
    pool.shutdown()


def _each_transfer(service: Service, kind: str, digests: Sequence[Digest], stats: Stats, workers: int,
                   work: Callable[[Digest, dict], T]) -> Iterator[tuple[Digest, T]]:
    """Runs `work(digest, signed)` for each digest on a pool, as each ends.
    A batch's signed URLs are asked for once the batch before is done, so
    none waits in the queue long enough to expire."""
    with _pool(workers) as pool:
        for batch in _batches(digests):
            stats.url_calls += 1
            answer = service.call("cas_urls", {kind: _wire(batch)})
            futures = {pool.submit(work, digest, signed): digest for digest, signed in zip(batch, answer[kind])}
            for future in concurrent.futures.as_completed(futures):
                yield futures[future], future.result()


def upload(service: Service, transport: Transport, blobs: Mapping[Digest, Source],
           progress: Optional[Progress] = None, workers: int = WORKERS) -> Stats:
    """Uploads those of `blobs` the store lacks."""
    started = time.monotonic()
    stats = Stats(items=len(blobs), bytes=sum(d.size_bytes for d in blobs))
    missing = find_missing(service, blobs, stats)
    def put(digest: Digest, signed: dict) -> None:
        transport.put(signed["url"], signed.get("headers") or {}, blobs[digest])

    for digest, _ in _each_transfer(service, "upload", missing, stats, workers, put):
        stats.items_moved += 1
        stats.bytes_moved += digest.size_bytes
        if progress:
            progress(digest.size_bytes)
    stats.seconds = time.monotonic() - started
    return stats


def download(service: Service, transport: Transport, digests: Iterable[Digest],
             path_for: Callable[[Digest], Path], progress: Optional[Progress] = None,
             workers: int = WORKERS, packed: Optional[Mapping[Digest, Pack]] = None) -> Stats:
    """Downloads each blob to `path_for(digest)` (written whole, then renamed
    into place); a blob `packed` names comes out of its pack, downloaded
    once beside it. Raises MissingBlobs naming every blob (or pack) the store
    lacks, or CorruptBlob; nothing is left at the path of a blob that failed."""
    wanted = sorted(set(digests))
    packed = packed or {}
    packs = sorted({packed[d] for d in wanted if d in packed}, key=lambda p: p.digest)
    if not packs:
        return _download(service, transport, wanted, path_for, progress, workers)
    with tempfile.TemporaryDirectory(dir=path_for(wanted[0]).parent, prefix=".packs-") as scratch:
        in_scratch = {pack.digest: Path(scratch) / pack.digest.hash for pack in packs}
        loose = [d for d in wanted if d not in packed]
        stats = _download(service, transport, [*loose, *in_scratch],
                          lambda d: in_scratch.get(d) or path_for(d), progress, workers)
        for pack in packs:
            _unpack(in_scratch[pack.digest], pack, set(wanted), path_for)
    return stats


def _unpack(path: Path, pack: Pack, wanted: set[Digest], path_for: Callable[[Digest], Path]) -> None:
    """Writes the members of a downloaded pack that are wanted, each checked:
    a pack matching its own digest may still hold a member that does not."""
    with open(path, "rb") as f:
        for member in pack.members:
            data = f.read(member.size_bytes)
            if member not in wanted:
                continue
            if Digest.of_bytes(data) != member:
                raise CorruptBlob(member)
            target = path_for(member)
            partial = target.with_name(f".{member.hash[:16]}.part")
            partial.write_bytes(data)
            os.replace(partial, target)


def _download(service: Service, transport: Transport, wanted: Sequence[Digest],
              path_for: Callable[[Digest], Path], progress: Optional[Progress], workers: int) -> Stats:
    started = time.monotonic()
    stats = Stats(items=len(wanted), bytes=sum(d.size_bytes for d in wanted))
    missing: list[Digest] = []
    def get(digest: Digest, signed: dict) -> bool:
        return _fetch(transport, signed["url"], digest, path_for(digest))

    for digest, found in _each_transfer(service, "download", wanted, stats, workers, get):
        if not found:
            missing.append(digest)
            continue
        stats.items_moved += 1
        stats.bytes_moved += digest.size_bytes
        if progress:
            progress(digest.size_bytes)
    stats.seconds = time.monotonic() - started
    if missing:
        raise MissingBlobs(sorted(missing))
    return stats


def _fetch(transport: Transport, url: str, digest: Digest, path: Path) -> bool:
    verifier = Verifier(digest)
    fd, partial = tempfile.mkstemp(dir=path.parent, prefix=f".{digest.hash[:16]}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as sink:
            if not transport.get(url, sink, verifier):
                return False
        if not verifier.matches():
            raise CorruptBlob(digest)
        os.replace(partial, path)
        return True
    finally:
        if os.path.exists(partial):
            os.unlink(partial)


def fetch_manifest(service: Service, transport: Transport, digest: Digest) -> tuple[Tree, Stats]:
    """The tree a manifest digest names, checked (ValidationError when it is not a valid manifest)."""
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "manifest"
        stats = download(service, transport, [digest], lambda _: path)
        return Tree.from_bytes(path.read_bytes()), stats


@dataclasses.dataclass(frozen=True)
class Archived:
    digest: Digest  # The manifest's.
    tree: Tree
    stats: Stats


def archive(service: Service, transport: Transport, root: Path,
            progress: Optional[Progress] = None, workers: int = WORKERS) -> Archived:
    """Uploads the tree under `root` (only the blobs the store lacks, small
    files in packs) and its manifest."""
    tree, sources = Tree.from_directory(root)
    with tempfile.TemporaryDirectory(prefix="cas-packs-") as scratch:
        packs = [_pack(members, sources, Path(scratch)) for members in plan_packs(sources)]
        tree = dataclasses.replace(tree, packs=tuple(packs))
        manifest = tree.to_bytes()
        blobs: dict[Digest, Source] = {d: path for d, path in sources.items() if d not in tree.packed}
        blobs.update({pack.digest: Path(scratch) / pack.digest.hash for pack in packs})
        blobs[Digest.of_bytes(manifest)] = manifest
        return Archived(tree.digest, tree, upload(service, transport, blobs, progress, workers))


def _pack(members: Sequence[Digest], sources: Mapping[Digest, Path], scratch: Path) -> Pack:
    """Writes a pack of `members` under `scratch`, named by its digest."""
    data = b"".join(sources[member].read_bytes() for member in members)
    pack = Pack(Digest.of_bytes(data), tuple(members))
    (scratch / pack.digest.hash).write_bytes(data)
    return pack


def download_tree(service: Service, transport: Transport, digest: Digest, dest: Path,
                  progress: Optional[Progress] = None, workers: int = WORKERS) -> tuple[Tree, Stats]:
    """Writes the tree a manifest names under `dest` (made if needed; files
    already there with the tree's paths are replaced). Each distinct blob is
    downloaded once; the other paths with the same content get copies."""
    tree, stats = fetch_manifest(service, transport, digest)
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest, prefix=".cas-") as scratch:
        staged = {d: Path(scratch) / d.hash for d in tree.blobs()}
        stats.add(download(service, transport, staged, staged.__getitem__, progress, workers, tree.packed))

        placed: dict[Digest, Path] = {}

        def place(_path: str, entry: FileEntry, target: Path) -> None:
            if entry.digest in placed:
                shutil.copyfile(placed[entry.digest], target)
            else:  # The first path with this content takes the download itself.
                os.replace(staged[entry.digest], target)
                placed[entry.digest] = target
            set_mode(target, entry.executable, read_only=False)

        tree.materialize(dest, place)
    return tree, stats


def set_mode(path: Path, executable: bool, read_only: bool) -> None:
    mode = stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH
    if executable:
        mode |= stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH
    if not read_only:
        mode |= stat.S_IWUSR
    os.chmod(path, mode)
