"""A task's content-addressed files (seed: "Isolated task"): its input tree
placed in `w/` from the bot's cache before the command, its outputs uploaded as
one tree after it, and what moving them cost, for the completion's
`performance_stats`.

Inputs are read-only: hard links to the cache's entries where possible,
copies otherwise (and always for executables, whose mode a hard link would
share with the cache). A missing or corrupt blob, or a manifest that is not a
valid tree, is the client's fault: the task ends CLIENT_ERROR naming it.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

from bot.cas_cache import CasCache, FetchStats, Limits
from bot.errors import TaskError
from shared import cas_transfer
from shared.api_error import ApiError
from shared.cas import MAX_BATCH, Digest, Pack, Tree
from shared.errors import ValidationError

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class CasAccess:
    """What a task runner needs to move a task's files."""

    service: cas_transfer.Service  # The server's cas_find_missing and cas_urls.
    transport: cas_transfer.Transport  # The signed URLs.
    cache_dir: Path  # The bot's cas_cache/.
    limits: Limits = Limits()


@dataclasses.dataclass
class DownloadStats(FetchStats):
    duration_secs: float = 0.0


@dataclasses.dataclass
class UploadStats:
    duration_secs: float = 0.0
    items: int = 0  # Distinct blobs of the output tree, its manifest included.
    bytes: int = 0
    items_uploaded: int = 0  # Those the store lacked.
    bytes_uploaded: int = 0


class TaskFiles:
    """The files of one task; `access` None: a runner without the store
    (inputs are then an error, outputs are not uploaded)."""

    def __init__(self, access: CasAccess | None, name: str, clock: Callable[[], float] = time.monotonic):
        self._access = access
        self._name = name  # For logs: the task and the bot.
        self._clock = clock
        self._cache: CasCache | None = None  # Opened by the input fetch.
        self.download = DownloadStats()
        self.upload = UploadStats()

    def fetch_inputs(self, root: Digest, dest: Path) -> None:
        """Places the tree `root` names under `dest` (which exists)."""
        access = self._access
        if access is None:
            raise TaskError("cas_input_root: this task runner has no access to the content-addressed store")
        started = self._clock()
        try:
            cache = self._cache = CasCache(access.cache_dir, access.limits)

            def fetch(digests: Iterable[Digest], packed: Mapping[Digest, Pack] | None = None) -> None:
                self.download.add(cache.fetch(digests, access.service, access.transport, packed))

            fetch([root])  # The manifest is a blob of the cache too.
            tree = _tree(cache.path(root), root)
            fetch(tree.blobs(), tree.packed)
            tree.materialize(dest, lambda _path, entry, target: cache.place(entry.digest, entry.executable, target))
            cache.trim()  # The task's entries are placed: they may go now.
        except cas_transfer.MissingBlobs as e:
            raise TaskError(f"inputs missing from the store: {', '.join(map(str, e.digests[:10]))}",
                            missing_cas=e.digests[:MAX_BATCH]) from e  # All the server takes: enough to say.
        except cas_transfer.CorruptBlob as e:
            raise TaskError(f"input {e.digest} in the store does not match its digest",
                            missing_cas=[e.digest]) from e
        except (ApiError, OSError) as e:
            raise TaskError(f"cannot fetch the inputs {root}: {e}") from e
        finally:
            self.download.duration_secs = self._clock() - started
        logger.info("%s: inputs %s placed in %.2f s: %s", self._name, root, self.download.duration_secs,
                    self.download)

    def upload_outputs(self, out_dir: Path, outputs: Sequence[tuple[str, Path]]) -> Digest | None:
        """Uploads `out_dir` (${ISOLATED_OUTDIR}) with each of `outputs`
        ((path in the tree, path on disk), placed into `out_dir` first) as one
        tree; its digest, or None when there was nothing to upload."""
        started = self._clock()
        try:
            for relative, source in outputs:
                _link_into(out_dir, relative, source, self._name)
            if not any(out_dir.iterdir()):
                return None
            if self._access is None:
                logger.warning("%s: outputs not uploaded: this task runner has no access to the store", self._name)
                return None
            archived = cas_transfer.archive(self._access.service, self._access.transport, out_dir)
        finally:
            self.upload.duration_secs = self._clock() - started
        stats = archived.stats
        self.upload.items, self.upload.bytes = stats.items, stats.bytes
        self.upload.items_uploaded, self.upload.bytes_uploaded = stats.items_moved, stats.bytes_moved
        logger.info("%s: outputs %s uploaded in %.2f s: %s", self._name, archived.digest,
                    self.upload.duration_secs, self.upload)
        return archived.digest

    def trim_cache(self) -> None:
        """Keeps the cache within its limits at the end of the task, once w/ is gone."""
        if self._cache is not None:
            self._cache.trim()

    def performance_stats(self, bot_overhead_secs: float) -> dict[str, Any]:
        return {"bot_overhead_secs": bot_overhead_secs, "cas_download": dataclasses.asdict(self.download),
                "cas_upload": dataclasses.asdict(self.upload)}


def _tree(manifest: Path, root: Digest) -> Tree:
    """The input tree, checked before anything is placed (relative paths
    only, no '..', symlinks inside the tree)."""
    try:
        return Tree.from_bytes(manifest.read_bytes())
    except ValidationError as e:
        raise TaskError(f"cas_input_root {root} is not a valid tree: {e}", missing_cas=[root]) from e


def _link_into(out_dir: Path, relative: str, source: Path, name: str) -> None:
    """Puts an `outputs` path (a file, a directory or a symlink) at the same
    relative path in `out_dir`, by hard links where it can; one that does not
    exist is skipped, one ${ISOLATED_OUTDIR} already has is kept as it is."""
    target = out_dir / relative
    if not os.path.lexists(source):
        logger.info("%s: output %s does not exist", name, relative)
        return
    if os.path.lexists(target):
        logger.warning("%s: output %s is already in ${ISOLATED_OUTDIR}; kept from there", name, relative)
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    if source.is_symlink():
        os.symlink(os.readlink(source), target)
    elif source.is_dir():
        shutil.copytree(source, target, symlinks=True, copy_function=_link_or_copy)
    else:
        _link_or_copy(source, target)


def _link_or_copy(source: str | os.PathLike, target: str | os.PathLike) -> None:
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)
