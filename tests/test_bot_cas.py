"""The bot's side of content-addressed files: its cache (cas_cache/), a task's
input tree placed in w/, its outputs uploaded, the signed-URL transport, and
the completion that carries them. An in-memory store stands in for the
server's functions and the bucket; the transport meets a loopback HTTP server."""

import json
import os
import pkgutil
import stat
import subprocess
import sys
import threading
from pathlib import Path
from types import ModuleType
from typing import Any, BinaryIO, Iterator

import pytest

from bot import remote
from bot.cas_cache import INDEX, CasCache, Limits
from bot.errors import TaskError
from bot.hooks import Hooks
from bot.task_files import CasAccess, TaskFiles
from bot.task_runner import TaskRunner, Timings
from shared import cas_transfer
from shared.api_error import ApiError
from shared.bot_api import BotAttributes, Completion, TaskUpdateReply, Update
from shared.cas import Digest, FileEntry, Tree, Verifier
from shared.errors import ValidationError
from shared.manifest import Manifest
from tests.bot_fakes import REPO, FakeServer, ok, served
from tests.test_bot_zip import _oldest_python

BIG = 10 ** 12  # Bytes: a limit that never binds.
ROOMY = Limits(max_bytes=BIG, max_items=10 ** 6, min_free_bytes=0)
FAST = Timings(output_interval=0.1, keepalive=0.3, grace_period=0.5, drain=1.0, tick=0.02)


class MemoryStore:
    """`cas_find_missing`, `cas_urls` and the bucket behind the signed URLs, in memory."""

    def __init__(self) -> None:
        self.blobs: dict[str, bytes] = {}
        self.calls: list[str] = []  # Function calls, in order.
        self.downloads: list[str] = []  # Hashes served.

    def add(self, data: bytes) -> Digest:
        digest = Digest.of_bytes(data)
        self.blobs[digest.hash] = data
        return digest

    def add_tree(self, files: dict[str, bytes], executable: frozenset[str] = frozenset(),
                 symlinks: dict[str, str] | None = None, directories: frozenset[str] = frozenset()) -> Digest:
        entries = {path: FileEntry(self.add(data), path in executable) for path, data in files.items()}
        return self.add(Tree(entries, symlinks or {}, directories).to_bytes())

    # cas_transfer.Service
    def call(self, function: str, body: dict[str, Any]) -> dict[str, Any]:
        self.calls.append(function)
        if function == "cas_find_missing":
            return {"missing": [d for d in body["digests"] if d["hash"] not in self.blobs]}
        assert function == "cas_urls"
        return {kind: [{**d, "url": f"mem:{d['hash']}", "headers": {}} for d in digests]
                for kind, digests in body.items()}

    # cas_transfer.Transport
    def put(self, url: str, headers: Any, source: Any) -> None:
        self.blobs.setdefault(url[4:], source if isinstance(source, bytes) else source.read_bytes())

    def get(self, url: str, sink: BinaryIO, verifier: Verifier) -> bool:
        data = self.blobs.get(url[4:])
        if data is None:
            return False
        self.downloads.append(url[4:])
        sink.write(data)
        verifier.update(data)
        return True


@pytest.fixture
def store() -> MemoryStore:
    return MemoryStore()


def cache_of(tmp_path: Path, limits: Limits = ROOMY, free: int = BIG) -> CasCache:
    return CasCache(tmp_path / "cas_cache", limits, free_space=lambda _: free)


def cached(cache: CasCache, *digests: Digest) -> list[bool]:
    return [cache.path(d).exists() for d in digests]


def access(tmp_path: Path, store: MemoryStore, limits: Limits = ROOMY) -> CasAccess:
    return CasAccess(store, store, tmp_path / "cas_cache", limits)


# The cache.

def test_the_least_recently_used_entry_goes_first_under_the_item_limit(tmp_path: Path, store: MemoryStore) -> None:
    a, b, c, d = (store.add(x) for x in (b"a", b"b", b"c", b"d"))
    cache = cache_of(tmp_path, Limits(max_bytes=BIG, max_items=3, min_free_bytes=0))
    for digest in (a, b, c, a):  # a used again: b is now the oldest.
        cache.fetch([digest], store, store)
        cache.trim()

    stats = cache.fetch([d], store, store)

    assert cached(cache, a, b, c, d) == [True, False, True, True]
    assert (stats.items_cold, stats.bytes_cold, stats.items_hot) == (1, 1, 0)
    assert store.downloads == [a.hash, b.hash, c.hash, d.hash]  # a's second use was a hit.


def test_the_byte_limit_evicts_until_the_new_blobs_fit(tmp_path: Path, store: MemoryStore) -> None:
    a, b, c = (store.add(x * 4) for x in (b"a", b"b", b"c"))
    cache = cache_of(tmp_path, Limits(max_bytes=10, max_items=100, min_free_bytes=0))
    cache.fetch([a, b], store, store)
    cache.trim()

    cache.fetch([c], store, store)

    assert cached(cache, a, b, c) == [False, True, True]
    assert (len(cache), cache.size_bytes) == (2, 8)


def test_the_free_space_floor_evicts_oldest_first(tmp_path: Path, store: MemoryStore) -> None:
    a, b, c = (store.add(x * 10) for x in (b"a", b"b", b"c"))
    free = [BIG]
    cache = CasCache(tmp_path / "cas_cache", Limits(max_bytes=BIG, max_items=100, min_free_bytes=100),
                     free_space=lambda _: free[0])
    for digest in (a, b, c):
        cache.fetch([digest], store, store)
    cache.trim()

    free[0] = 105  # Enough: nothing goes.
    cache.trim()
    kept = cached(cache, a, b, c)
    free[0] = 85  # 15 bytes short: a and b (10 each) go, oldest first.
    cache.trim()

    assert kept == [True, True, True]
    assert cached(cache, a, b, c) == [False, False, True]


def test_entries_in_use_by_the_task_stay_until_its_files_are_placed(tmp_path: Path, store: MemoryStore) -> None:
    a, b = store.add(b"a"), store.add(b"b")
    cache = cache_of(tmp_path, Limits(max_bytes=BIG, max_items=1, min_free_bytes=0))

    cache.fetch([a, b], store, store)  # The task needs more than the limit.
    both = cached(cache, a, b)
    cache.trim()

    assert both == [True, True]
    assert len(cache) == 1


def test_a_tampered_entry_is_detected_and_fetched_again(tmp_path: Path, store: MemoryStore) -> None:
    good = store.add(b"the real content")
    touched = store.add(b"only its mtime changes")
    cache = cache_of(tmp_path)
    cache.fetch([good, touched], store, store)
    path = cache.path(good)
    os.chmod(path, 0o644)  # What a task can do to its hard link.
    path.write_bytes(b"the fake content")  # Same size: only its mtime and its hash tell.
    os.utime(cache.path(touched), ns=(1, 1))

    again = cache_of(tmp_path)  # The next task's runner.
    stats = again.fetch([good, touched], store, store)

    assert path.read_bytes() == b"the real content"
    assert stat.S_IMODE(path.stat().st_mode) == 0o444
    assert (stats.items_cold, stats.items_hot) == (1, 1)  # The merely touched one was verified, and kept.
    assert sorted(store.downloads) == sorted([good.hash, touched.hash, good.hash])


def test_the_index_and_its_order_survive_a_restart(tmp_path: Path, store: MemoryStore) -> None:
    a, b, c = (store.add(x) for x in (b"a", b"b", b"c"))
    first = cache_of(tmp_path)
    for digest in (a, b, a):
        first.fetch([digest], store, store)
    first.trim()
    (tmp_path / "cas_cache" / "stray").write_bytes(b"not in the index")

    second = cache_of(tmp_path, Limits(max_bytes=BIG, max_items=2, min_free_bytes=0))
    hits = second.fetch([a], store, store)
    second.trim()
    second.fetch([c], store, store)

    assert hits.items_hot == 1
    assert cached(second, a, b, c) == [True, False, True]  # b was the least recently used.
    assert sorted(os.listdir(tmp_path / "cas_cache")) == sorted([INDEX, a.hash, c.hash])
    index = json.loads((tmp_path / "cas_cache" / INDEX).read_text())
    assert [row[0] for row in index["entries"]] == [a.hash, c.hash]


def test_a_hit_is_hard_linked_read_only_and_an_executable_is_a_copy(tmp_path: Path, store: MemoryStore) -> None:
    blob = store.add(b"#!/bin/sh\necho hi\n")
    cache = cache_of(tmp_path)
    cache.fetch([blob], store, store)

    cache.place(blob, False, tmp_path / "data")
    cache.place(blob, True, tmp_path / "tool")

    source = cache.path(blob).stat()
    data, tool = (tmp_path / "data").stat(), (tmp_path / "tool").stat()
    assert data.st_ino == source.st_ino and stat.S_IMODE(data.st_mode) == 0o444
    assert tool.st_ino != source.st_ino and stat.S_IMODE(tool.st_mode) == 0o555
    assert stat.S_IMODE(source.st_mode) == 0o444


def test_the_limits_come_from_get_settings_over_the_defaults() -> None:
    hooks = ModuleType("bot_config")
    hooks.get_settings = lambda bot: {"cas_cache": {"max_items": 50, "min_free_gib": 0.5}}  # type: ignore[attr-defined]

    limits = Limits.from_settings(Hooks(hooks).get_settings(None))

    assert limits == Limits(max_bytes=20 * 1024 ** 3, max_items=50, min_free_bytes=1024 ** 3 // 2)
    assert Limits.from_settings({}) == Limits()


# A task's inputs.

def input_tree(store: MemoryStore) -> Digest:
    return store.add_tree({"a/b/c.txt": b"deep", "run.sh": b"#!/bin/sh\necho ran\n", "empty": b"",
                           "same.txt": b"deep"},
                          executable=frozenset({"run.sh"}), symlinks={"a/link": "b/c.txt"},
                          directories=frozenset({"out/empty_dir"}))


def test_the_input_tree_is_placed_read_only(tmp_path: Path, store: MemoryStore) -> None:
    root = input_tree(store)
    dest = tmp_path / "w"
    dest.mkdir()
    files = TaskFiles(access(tmp_path, store), "test")

    files.fetch_inputs(root, dest)

    assert (dest / "a" / "b" / "c.txt").read_bytes() == (dest / "same.txt").read_bytes() == b"deep"
    assert (dest / "empty").read_bytes() == b""
    assert os.readlink(dest / "a" / "link") == "b/c.txt" and (dest / "a" / "link").read_bytes() == b"deep"
    assert (dest / "out" / "empty_dir").is_dir()
    assert subprocess.run([str(dest / "run.sh")], capture_output=True).stdout == b"ran\n"
    modes = {p: stat.S_IMODE((dest / p).stat().st_mode) for p in ("a/b/c.txt", "empty", "run.sh")}
    assert modes == {"a/b/c.txt": 0o444, "empty": 0o444, "run.sh": 0o555}
    assert (dest / "a" / "b").stat().st_mode & stat.S_IWUSR  # Directories stay writable for the task.
    assert files.download.items_cold == 4 and files.download.items_hot == 0  # Manifest + 3 distinct blobs.
    assert files.download.bytes_cold == root.size_bytes + len(b"deep#!/bin/sh\necho ran\n")


def test_a_second_task_finds_its_inputs_in_the_cache(tmp_path: Path, store: MemoryStore) -> None:
    root = input_tree(store)
    for name in ("w1", "w2"):
        (tmp_path / name).mkdir()
    TaskFiles(access(tmp_path, store), "first").fetch_inputs(root, tmp_path / "w1")
    served = len(store.downloads)

    second = TaskFiles(access(tmp_path, store), "second")
    second.fetch_inputs(root, tmp_path / "w2")

    assert len(store.downloads) == served
    assert (second.download.items_hot, second.download.items_cold) == (4, 0)
    assert (tmp_path / "w2" / "a" / "b" / "c.txt").stat().st_ino == (tmp_path / "w1" / "same.txt").stat().st_ino


def test_packed_inputs_come_in_one_download_and_are_cached_one_by_one(tmp_path: Path, store: MemoryStore) -> None:
    source = tmp_path / "source"
    for i in range(20):
        (source / f"d{i % 3}").mkdir(parents=True, exist_ok=True)
        (source / f"d{i % 3}" / f"f{i}").write_text(f"file {i}")
    root = cas_transfer.archive(store, store, source).digest
    (tmp_path / "w").mkdir()

    files = TaskFiles(access(tmp_path, store), "packed")
    files.fetch_inputs(root, tmp_path / "w")

    assert len(store.downloads) == 2  # the manifest and one pack
    assert files.download.items_cold == 21  # the manifest and each file, now each its own cache entry
    assert Tree.from_directory(tmp_path / "w")[0] == Tree.from_directory(source)[0]
    assert len(cache_of(tmp_path)) == 21


@pytest.mark.parametrize("manifest", [
    {"files": {"../evil": {"hash": "0" * 64, "size_bytes": 0, "executable": False}}},
    {"files": {"/tmp/evil": {"hash": "0" * 64, "size_bytes": 0, "executable": False}}},
    {"files": {"a/../../evil": {"hash": "0" * 64, "size_bytes": 0, "executable": False}}},
    {"symlinks": {"link": "../../etc/passwd"}},
    {"symlinks": {"link": "/etc/passwd"}},
    {"files": "not a map"},
])
def test_a_manifest_leaving_the_tree_is_refused_before_anything_is_written(
        tmp_path: Path, store: MemoryStore, manifest: dict) -> None:
    root = store.add(json.dumps({"files": {}, "symlinks": {}, "directories": [], **manifest}).encode())
    dest = tmp_path / "w"
    dest.mkdir()

    with pytest.raises(TaskError) as raised:
        TaskFiles(access(tmp_path, store), "test").fetch_inputs(root, dest)

    assert raised.value.missing_cas == [root]  # CLIENT_ERROR, naming the manifest.
    assert "not a valid tree" in raised.value.message
    assert list(dest.iterdir()) == [] and not (tmp_path / "evil").exists()


def test_missing_inputs_are_a_client_error_naming_them(tmp_path: Path, store: MemoryStore) -> None:
    root = input_tree(store)
    gone = Digest.of_bytes(b"deep")
    del store.blobs[gone.hash]
    dest = tmp_path / "w"
    dest.mkdir()

    with pytest.raises(TaskError) as raised:
        TaskFiles(access(tmp_path, store), "test").fetch_inputs(root, dest)
    with pytest.raises(TaskError) as no_root:
        TaskFiles(access(tmp_path, store), "test").fetch_inputs(Digest.of_bytes(b"nowhere"), dest)

    assert raised.value.missing_cas == [gone]
    assert no_root.value.missing_cas == [Digest.of_bytes(b"nowhere")]
    assert list(dest.iterdir()) == []


def test_a_corrupt_blob_in_the_store_is_a_client_error(tmp_path: Path, store: MemoryStore) -> None:
    root = input_tree(store)
    bad = Digest.of_bytes(b"deep")
    store.blobs[bad.hash] = b"DEEP"
    dest = tmp_path / "w"
    dest.mkdir()

    with pytest.raises(TaskError) as raised:
        TaskFiles(access(tmp_path, store), "test").fetch_inputs(root, dest)

    assert raised.value.missing_cas == [bad]
    assert not (tmp_path / "cas_cache" / bad.hash).exists()
    assert (tmp_path / "cas_cache" / root.hash).exists()  # What did arrive is kept.


# A task's outputs.

def stored_tree(store: MemoryStore, root: Digest) -> dict[str, Any]:
    tree = Tree.from_bytes(store.blobs[root.hash])
    return {**{p: (store.blobs[e.digest.hash], e.executable) for p, e in tree.files.items()},
            **{p: ("->", t) for p, t in tree.symlinks.items()}, **{d: "dir" for d in tree.directories}}


def test_the_outputs_are_isolated_outdir_and_the_outputs_paths(tmp_path: Path, store: MemoryStore) -> None:
    work, out = tmp_path / "w", tmp_path / "io"
    (out / "logs").mkdir(parents=True)
    (out / "logs" / "run.log").write_bytes(b"log")
    (out / "result.json").write_bytes(b"{}")
    (work / "build" / "bin").mkdir(parents=True)
    (work / "build" / "bin" / "tool").write_bytes(b"elf")
    os.chmod(work / "build" / "bin" / "tool", 0o755)
    (work / "build" / "empty").mkdir()
    os.symlink("bin/tool", work / "build" / "latest")
    (work / "report.txt").write_bytes(b"report")
    (work / "result.json").write_bytes(b"not this one")
    outputs = [(p, work / p) for p in ("build", "report.txt", "result.json", "never/made")]
    files = TaskFiles(access(tmp_path, store), "test")

    root = files.upload_outputs(out, outputs)

    assert root is not None
    assert stored_tree(store, root) == {
        "logs/run.log": (b"log", False), "result.json": (b"{}", False),  # ${ISOLATED_OUTDIR} wins a clash.
        "build/bin/tool": (b"elf", True), "build/empty": "dir", "build/latest": ("->", "bin/tool"),
        "report.txt": (b"report", False)}
    assert (files.upload.items, files.upload.items_uploaded) == (5, 5)  # 4 distinct blobs and the manifest.
    assert files.upload.bytes == sum(len(b) for b in (b"log", b"{}", b"elf", b"report")) + root.size_bytes


def test_nothing_to_upload_calls_nothing(tmp_path: Path, store: MemoryStore) -> None:
    (tmp_path / "io").mkdir()

    root = TaskFiles(access(tmp_path, store), "test").upload_outputs(tmp_path / "io", [("x", tmp_path / "x")])

    assert root is None and store.calls == []


# The task runner, with the store.

class Sent:
    """Every update attempt; the first `failures` completions fail, as a server away would."""

    def __init__(self, failures: int = 0):
        self.updates: list[Update] = []
        self._failures = failures

    def __call__(self, update: Update) -> TaskUpdateReply:
        self.updates.append(update)
        if update.completion and self._failures:
            self._failures -= 1
            raise ApiError("bot_task_update", 503, "unavailable", "down")
        return TaskUpdateReply()

    @property
    def completions(self) -> list[Completion]:
        return [u.completion for u in self.updates if u.completion]


def runner(tmp_path: Path, store: MemoryStore, command: list[str], send: Sent, **fields: Any) -> TaskRunner:
    manifest = Manifest(task_id="5f3a1b2c3d4e5f01", bot_id="bot-1", command=tuple(command), env={},
                        hard_timeout=30.0, grace_period=None, **fields)
    return TaskRunner(manifest, tmp_path / "w", send, server="http://127.0.0.1:1",
                      bot_dimensions={"id": ["bot-1"], "pool": ["default"]}, shutdown=threading.Event(),
                      timings=FAST, cas=access(tmp_path, store))


def test_a_task_reads_its_inputs_and_its_outputs_ride_on_the_completion(tmp_path: Path, store: MemoryStore) -> None:
    root = input_tree(store)
    code = ("import os, shutil; data = open('a/b/c.txt').read(); "
            "open(os.path.join(os.environ['ISOLATED_OUTDIR'], 'copy.txt'), 'w').write(data * 2); "
            "os.makedirs('dist'); open('dist/made.txt', 'w').write('made'); raise SystemExit(3)")
    send = Sent(failures=1)

    result = runner(tmp_path, store, [sys.executable, "-c", code], send, cas_input_root=root,
                    outputs=("dist",)).run()

    first, resent = send.completions  # The first one failed; the resent one is the same.
    assert first == resent and result.exit_code == first.exit_code == 3 and result.reported
    assert first.cas_output_root is not None
    assert stored_tree(store, first.cas_output_root) == {"copy.txt": (b"deepdeep", False),
                                                         "dist/made.txt": (b"made", False)}
    stats = first.performance_stats
    assert stats is not None and set(stats) == {"bot_overhead_secs", "cas_download", "cas_upload"}
    assert stats["bot_overhead_secs"] >= stats["cas_download"]["duration_secs"] > 0
    assert set(stats["cas_download"]) == {"duration_secs", "items_cold", "bytes_cold", "items_hot", "bytes_hot"}
    assert (stats["cas_download"]["items_cold"], stats["cas_download"]["items_hot"]) == (4, 0)
    assert {k: v for k, v in stats["cas_upload"].items() if k != "duration_secs"} == {
        "items": 3, "bytes": 12 + first.cas_output_root.size_bytes, "items_uploaded": 3,
        "bytes_uploaded": 12 + first.cas_output_root.size_bytes}
    assert not (tmp_path / "w").exists() and not (tmp_path / "io").exists()


def test_a_missing_input_fails_the_task_before_its_command(tmp_path: Path, store: MemoryStore) -> None:
    root = input_tree(store)
    del store.blobs[Digest.of_bytes(b"").hash]
    marker = tmp_path / "ran"

    with pytest.raises(TaskError) as raised:
        runner(tmp_path, store, ["touch", str(marker)], Sent(), cas_input_root=root).run()

    assert raised.value.missing_cas == [Digest.of_bytes(b"")]
    assert not marker.exists() and not (tmp_path / "w").exists()


def test_a_failed_upload_still_reports_the_exit_code(tmp_path: Path, store: MemoryStore) -> None:
    def broken(function: str, body: dict[str, Any]) -> dict[str, Any]:
        raise ApiError(function, 503, "unavailable", "down")

    store.call = broken  # type: ignore[method-assign]
    code = "import os; open(os.path.join(os.environ['ISOLATED_OUTDIR'], 'x'), 'w').write('x')"
    send = Sent()

    result = runner(tmp_path, store, [sys.executable, "-c", code], send).run()

    [completion] = send.completions
    assert completion.exit_code == result.exit_code == 0 and result.reported
    assert completion.cas_output_root is None and completion.performance_stats is not None


# On the wire.

@pytest.fixture
def fake() -> Iterator[FakeServer]:
    yield from served()


def test_the_completion_carries_the_output_root_and_the_stats(fake: FakeServer) -> None:
    api = remote.Remote(fake.url, "bot-token")
    attributes = BotAttributes({"id": ["bot-1"]}, {}, "dev")
    output_root = Digest.of_bytes(b"{}")
    stats = TaskFiles(None, "test").performance_stats(0.25)

    api.task_update(attributes, "5f3a1b2c3d4e5f01",
                    Update(0, completion=Completion(0, 1.0, cas_output_root=output_root, performance_stats=stats)))
    api.task_update(attributes, "5f3a1b2c3d4e5f01", Update(0, completion=Completion(0, 1.0)))
    api.close()

    with_outputs, without = fake.bodies("bot_task_update")
    assert with_outputs["cas_output_root"] == {"digest": output_root.to_wire()}
    assert with_outputs["performance_stats"] == {
        "bot_overhead_secs": 0.25,
        "cas_download": {"duration_secs": 0.0, "items_cold": 0, "bytes_cold": 0, "items_hot": 0, "bytes_hot": 0},
        "cas_upload": {"duration_secs": 0.0, "items": 0, "bytes": 0, "items_uploaded": 0, "bytes_uploaded": 0}}
    assert "cas_output_root" not in without and "performance_stats" not in without


def test_the_manifest_names_its_input_root_and_outputs() -> None:
    root = Digest.of_bytes(b"tree")
    body = {"task_id": "5f3a1b2c3d4e5f01", "bot_id": "bot-1", "command": ["true"], "hard_timeout": 1,
            "cas_input_root": {"digest": root.to_wire()}, "outputs": ["dist", "a/b.txt"]}

    manifest = Manifest.from_wire(body)

    assert (manifest.cas_input_root, manifest.outputs) == (root, ("dist", "a/b.txt"))
    assert Manifest.from_wire({**body, "cas_input_root": None}).cas_input_root is None
    with pytest.raises(ValidationError, match="manifest.cas_input_root.digest.hash"):
        Manifest.from_wire({**body, "cas_input_root": {"digest": {"hash": "x", "size_bytes": 1}}})


def test_the_bot_service_posts_the_body_as_it_is(fake: FakeServer) -> None:
    fake.script("cas_find_missing", ok({"missing": []}))
    api = remote.Remote(fake.url, "bot-token")

    answer = api.call("cas_find_missing", {"digests": [Digest.of_bytes(b"x").to_wire()]})
    api.close()

    assert answer == {"missing": []}
    assert fake.calls == [("cas_find_missing", {"digests": [Digest.of_bytes(b"x").to_wire()]}, "Bearer bot-token")]


# Python 3.9, the oldest the bot supports.

def test_the_bot_modules_import_on_the_oldest_python(tmp_path: Path) -> None:
    """Imports, not just compiles: annotations evaluated at run time (`X | None`
    outside `from __future__ import annotations`) fail only then."""
    python = _oldest_python()
    vendored = tmp_path / "vendored"  # The pure-Python packages the zip carries.
    vendored.mkdir()
    import certifi, charset_normalizer, idna, requests, urllib3  # noqa: E401
    for package in (certifi, charset_normalizer, idna, requests, urllib3):
        os.symlink(os.path.dirname(package.__file__), vendored / package.__name__)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(vendored)])}

    def imports(modules: str) -> subprocess.CompletedProcess:
        return subprocess.run([python, "-c", f"import {modules}"], env=env, cwd=tmp_path, capture_output=True,
                              text=True)

    done = imports(", ".join(f"bot.{module.name}" for module in pkgutil.iter_modules([str(REPO / "bot")])
                             if module.name != "__main__"))
    assert done.returncode == 0, done.stderr
