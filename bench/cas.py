"""Content-addressed files on the local stack (make bench-cas).

For two trees, 10,000 files of 1 KiB (in 100 directories) and one file of
200 MB, prints and writes to bench/results/cas.json:
- `swarming archive`'s work (shared.cas_transfer.archive, the CLI's transport):
  cold (everything uploaded) and warm (nothing to upload), with its
  `cas_find_missing` and `cas_urls` calls, find_missing calls per 1,000
  files, and the Firestore reads and writes of those calls (the store is
  Cloud Storage: none is expected);
- the bot's materialize (bot.task_files, its cache and transport): with a
  cold cache (everything downloaded) and a warm one (all hard links), next to
  a plain `cp -r` of the same tree in the same run;
- one `cas_find_missing` call of 1,000 digests, timed on its own.

Usage: `python -m bench.cas [--small-files N] [--big-mb N]`.
"""

import argparse
import os
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from bench.results import report
from bench.task_life import BOT_ID, CONFIG_DIR, USER, Api, handshake
from bot.cas_transport import SignedUrlTransport
from bot.task_files import CasAccess, TaskFiles
from local import stack as local_stack
from shared import cas_transfer
from shared.cas import Digest


class CountingService:
    """`cas_transfer.Service` over the HTTP API, as one caller, adding up the
    Firestore operations the answers report."""

    def __init__(self, api: Api, caller: str):
        self._api, self._caller = api, caller
        self.calls = self.reads = self.writes = 0

    def call(self, function: str, body: dict[str, Any]) -> dict[str, Any]:
        answer, (reads, writes, _, _) = self._api.call(function, body, self._caller)
        self.calls += 1
        self.reads += reads
        self.writes += writes
        return answer


class CountingTransport(SignedUrlTransport):
    """The bot's and the CLI's transport, counting the requests to Cloud Storage."""

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()  # The transfers run on a pool.
        self.puts = self.gets = 0

    def put(self, url: str, headers: Any, source: Any) -> None:
        with self._lock:
            self.puts += 1
        super().put(url, headers, source)

    def get(self, url: str, sink: Any, verifier: Any) -> bool:
        with self._lock:
            self.gets += 1
        return super().get(url, sink, verifier)


def small_tree(root: Path, files: int) -> Path:
    for i in range(files):
        directory = root / f"d{i % 100:02d}"
        directory.mkdir(parents=True, exist_ok=True)
        (directory / f"f{i}.txt").write_bytes(os.urandom(1024))
    return root


def big_tree(root: Path, megabytes: int) -> Path:
    root.mkdir(parents=True)
    with open(root / "big.bin", "wb") as f:
        for _ in range(megabytes):
            f.write(os.urandom(1024 * 1024))
    return root


def timed(action) -> tuple[Any, float]:
    started = time.perf_counter()
    value = action()
    return value, time.perf_counter() - started


def archive_rows(label: str, api: Api, root: Path, files: int) -> tuple[list[tuple[str, Any]], Digest]:
    rows: list[tuple[str, Any]] = []
    for run in ("cold", "warm"):
        service, transport = CountingService(api, USER), CountingTransport()
        archived, seconds = timed(lambda: cas_transfer.archive(service, transport, root))
        stats = archived.stats
        rows += [
            (f"{label}: archive {run} (s)", seconds),
            (f"{label}: archive {run}, blobs uploaded (PUT requests)", transport.puts),
            (f"{label}: archive {run}, MB uploaded", round(stats.bytes_moved / 1e6, 1)),
            (f"{label}: archive {run}, find_missing calls", stats.find_missing_calls),
            (f"{label}: archive {run}, cas_urls calls", stats.url_calls),
            (f"{label}: archive {run}, Firestore reads / writes", f"{service.reads} / {service.writes}"),
        ]
        if run == "cold" and files >= 1000:
            rows.append((f"{label}: find_missing calls per 1,000 files",
                         round(stats.find_missing_calls / max(files / 1000, 1), 2)))
    return rows, archived.digest


def materialize_rows(label: str, api: Api, digest: Digest, source: Path, scratch: Path) -> list[tuple[str, Any]]:
    transport = CountingTransport()
    access = CasAccess(CountingService(api, BOT_ID), transport, scratch / "cas_cache")
    rows = []
    for run in ("cold cache", "warm cache"):
        dest = scratch / f"w-{run.split()[0]}"
        dest.mkdir()
        files, gets_before = TaskFiles(access, "bench"), transport.gets
        _, seconds = timed(lambda: files.fetch_inputs(digest, dest))
        got = files.download
        rows += [(f"{label}: materialize, {run} (s)", seconds),
                 (f"{label}: materialize, {run}, GET requests", transport.gets - gets_before),
                 (f"{label}: materialize, {run}, cache entries fetched / hit", f"{got.items_cold} / {got.items_hot}")]
    _, seconds = timed(lambda: subprocess.run(["cp", "-r", str(source), str(scratch / "cp")], check=True))
    rows.append((f"{label}: cp -r of the same tree (s)", seconds))
    for directory in scratch.iterdir():  # Inputs are read-only files in writable directories.
        shutil.rmtree(directory)
    return rows


def find_missing_call(api: Api) -> list[tuple[str, Any]]:
    digests = [Digest.of_bytes(os.urandom(16)).to_wire() for _ in range(1000)]
    answer, (reads, writes, _, seconds) = api.call("cas_find_missing", {"digests": digests}, USER)
    assert len(answer["missing"]) == 1000
    return [("one cas_find_missing call of 1,000 digests (s)", seconds),
            ("one cas_find_missing call, Firestore reads / writes", f"{reads} / {writes}")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--small-files", type=int, default=10_000)
    parser.add_argument("--big-mb", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-cas-") as work:
        work_dir = Path(work)
        state_dir = work_dir / "stack"
        stack = local_stack.up(state_dir, bots=0, config_dir=CONFIG_DIR)
        try:
            api = Api.of_stack(state_dir, stack["base_url"])
            handshake(api)
            rows: list[tuple[str, Any]] = []
            trees = [(f"{args.small_files} x 1 KiB", small_tree(work_dir / "small", args.small_files),
                      args.small_files),
                     (f"1 x {args.big_mb} MB", big_tree(work_dir / "big", args.big_mb), 1)]
            for label, root, files in trees:
                archived, digest = archive_rows(label, api, root, files)
                scratch = work_dir / "scratch"
                scratch.mkdir()
                rows += archived + materialize_rows(label, api, digest, root, scratch)
                scratch.rmdir()
            rows += find_missing_call(api)
        finally:
            local_stack.down(state_dir)
    report("cas", rows)


if __name__ == "__main__":
    main()
