"""The manifest format and the transfer logic of shared/cas*.py: pure logic,
with an in-memory store standing in for the service and the signed URLs."""

import json
import os
from pathlib import Path
from typing import Any

import pytest

from shared import cas_transfer
from shared.cas import (MAX_BATCH, PACK_MEMBER_MAX, PACK_MIN_MEMBERS, Digest, FileEntry, Pack, Tree, Verifier,
                        digests_from_wire, plan_packs)
from shared.errors import ValidationError

HEX = "0" * 64


class MemoryStore:
    """`cas_find_missing` and `cas_urls` as the server answers them, over a dict."""

    def __init__(self) -> None:
        self.blobs: dict[str, bytes] = {}
        self.calls: list[str] = []

    def call(self, function: str, body: dict[str, Any]) -> dict[str, Any]:
        self.calls.append(function)
        if function == "cas_find_missing":
            assert len(body["digests"]) <= MAX_BATCH
            return {"missing": [d for d in body["digests"] if d["hash"] not in self.blobs]}
        (kind, digests), = body.items()
        return {kind: [{**d, "url": d["hash"], "headers": {}} for d in digests]}

    def put(self, url: str, headers: dict[str, str], source: cas_transfer.Source) -> None:
        self.blobs[url] = source if isinstance(source, bytes) else source.read_bytes()

    def get(self, url: str, sink, verifier: Verifier) -> bool:
        if url not in self.blobs:
            return False
        sink.write(self.blobs[url])
        verifier.update(self.blobs[url])
        return True


def _tree_on_disk(root: Path) -> Path:
    (root / "a" / "b").mkdir(parents=True)
    (root / "a" / "b" / "x.txt").write_text("hello")
    (root / "copy.txt").write_text("hello")  # Same content: one blob.
    (root / "run.sh").write_text("#!/bin/sh\necho hi\n")
    (root / "run.sh").chmod(0o755)
    (root / "empty").write_bytes(b"")
    (root / "nothing" / "here").mkdir(parents=True)
    os.symlink("a/b/x.txt", root / "link")
    return root


def test_digest_parses_and_prints_hash_slash_size():
    digest = Digest.of_bytes(b"abc")
    assert Digest.parse(str(digest)) == digest
    assert digest.object_name == "cas/sha256/" + digest.hash
    for bad in ("abc/3", HEX + "/x", HEX, HEX + "/-1"):
        with pytest.raises(ValueError):
            Digest.parse(bad)


def test_digests_from_wire_name_the_bad_field():
    with pytest.raises(ValidationError) as e:
        digests_from_wire([{"hash": HEX, "size_bytes": 1}, {"hash": "xyz", "size_bytes": 1}], "digests")
    assert e.value.field == "digests[1].hash"
    with pytest.raises(ValidationError) as e:
        digests_from_wire([{"hash": HEX, "size_bytes": -1}], "digests")
    assert e.value.field == "digests[0].size_bytes"
    with pytest.raises(ValidationError) as e:
        digests_from_wire([{"hash": HEX, "size_bytes": 1}] * (MAX_BATCH + 1), "digests")
    assert e.value.field == "digests"


def test_a_directory_gives_files_links_and_empty_directories(tmp_path):
    tree, sources = Tree.from_directory(_tree_on_disk(tmp_path))
    assert set(tree.files) == {"a/b/x.txt", "copy.txt", "run.sh", "empty"}
    assert tree.files["run.sh"].executable and not tree.files["copy.txt"].executable
    assert tree.files["empty"].digest == Digest.of_bytes(b"")
    assert tree.symlinks == {"link": "a/b/x.txt"}
    assert tree.directories == {"nothing/here"}
    assert len(sources) == 3 == len(tree.blobs())  # hello, the script, the empty file
    assert tree.size_bytes == 5 + 5 + 18 + 0


def test_the_manifest_is_canonical_and_round_trips(tmp_path):
    tree, _ = Tree.from_directory(_tree_on_disk(tmp_path))
    data = tree.to_bytes()
    assert Tree.from_bytes(data) == tree
    assert json.dumps(json.loads(data), sort_keys=True, separators=(",", ":")).encode() == data
    rebuilt = Tree(dict(reversed(list(tree.files.items()))), tree.symlinks, tree.directories)
    assert rebuilt.digest == tree.digest  # The order things were found in does not matter.
    changed = Tree({**tree.files, "run.sh": FileEntry(tree.files["run.sh"].digest, False)},
                   tree.symlinks, tree.directories)
    assert changed.digest != tree.digest  # The executable bit is part of it.


@pytest.mark.parametrize("manifest, field, reason", [
    ({"files": {"../x": {"hash": HEX, "size_bytes": 1}}}, "'../x'", "'..' components"),
    ({"files": {"a/../../x": {"hash": HEX, "size_bytes": 1}}}, "'a/../../x'", "'..' components"),
    ({"files": {"/etc/passwd": {"hash": HEX, "size_bytes": 1}}}, "'/etc/passwd'", "relative path"),
    ({"files": {"a//b": {"hash": HEX, "size_bytes": 1}}}, "'a//b'", "empty"),
    ({"files": {"a\\b": {"hash": HEX, "size_bytes": 1}}}, "'a\\\\b'", "not a path"),
    ({"symlinks": {"l": "/etc"}}, "symlink 'l'", "relative path"),
    ({"symlinks": {"l": "../outside"}}, "symlink 'l'", "outside the tree"),
    ({"symlinks": {"d/l": "../../outside"}}, "symlink 'd/l'", "outside the tree"),
    ({"symlinks": {"l": "a/../.."}}, "symlink 'l'", "normalized"),
    ({"symlinks": {"l": "x", "l/f": "y"}}, "'l/f'", "is under 'l'"),
    ({"files": {"f": {"hash": HEX, "size_bytes": 1}}, "directories": ["f"]}, "'f'", "named twice"),
    ({"files": {"f": {"hash": "nope", "size_bytes": 1}}}, "manifest.files['f'].hash", "of 64 characters"),
    ({"files": {"f": {"hash": "g" * 64, "size_bytes": 1}}}, "manifest.files['f'].hash", "must match"),
    ({"files": {"f": {"hash": HEX, "size_bytes": 1, "mode": 7}}}, "manifest.files['f'].mode", "unknown"),
])
def test_a_manifest_that_would_write_outside_or_is_malformed_is_refused(manifest, field, reason):
    with pytest.raises(ValidationError) as e:
        Tree.from_bytes(json.dumps(manifest).encode())
    assert field in str(e.value) and reason in str(e.value)


def test_symlinks_inside_the_tree_are_fine():
    tree = Tree.from_bytes(json.dumps({"symlinks": {"d/l": "../x", "here": ".", "dots": "..x"}}).encode())
    assert tree.symlinks["d/l"] == "../x"


def test_not_json_is_refused():
    with pytest.raises(ValidationError, match="not a JSON manifest"):
        Tree.from_bytes(b"\xff")


def test_archive_uploads_only_what_is_missing_then_downloads_the_same_tree(tmp_path):
    store = MemoryStore()
    source = _tree_on_disk(tmp_path / "in")
    first = cas_transfer.archive(store, store, source)
    assert first.stats.items_moved == 4  # three blobs and the manifest
    again = cas_transfer.archive(store, store, source)
    assert again.digest == first.digest and again.stats.items_moved == 0 and again.stats.url_calls == 0
    tree, _ = cas_transfer.download_tree(store, store, first.digest, tmp_path / "out")
    out = tmp_path / "out"
    assert Tree.from_directory(out)[0] == tree == first.tree
    assert (out / "copy.txt").read_text() == "hello" and os.access(out / "run.sh", os.X_OK)
    assert os.readlink(out / "link") == "a/b/x.txt"
    assert [p.name for p in out.iterdir() if p.name.startswith(".")] == []  # no staging left


def test_find_missing_goes_in_batches_of_a_thousand():
    store = MemoryStore()
    digests = [Digest.of_bytes(str(i).encode()) for i in range(2500)]
    stats = cas_transfer.Stats()
    assert len(cas_transfer.find_missing(store, digests + digests[:10], stats)) == 2500
    assert stats.find_missing_calls == 3


def test_a_missing_blob_names_every_missing_digest_and_leaves_nothing(tmp_path):
    store = MemoryStore()
    wanted = [Digest.of_bytes(b"a"), Digest.of_bytes(b"b")]
    store.blobs[wanted[0].hash] = b"a"
    with pytest.raises(cas_transfer.MissingBlobs) as e:
        cas_transfer.download(store, store, wanted, lambda d: tmp_path / d.hash)
    assert e.value.digests == [wanted[1]]
    assert sorted(p.name for p in tmp_path.iterdir()) == [wanted[0].hash]


def test_a_blob_that_does_not_match_its_digest_is_refused(tmp_path):
    store = MemoryStore()
    digest = Digest.of_bytes(b"good")
    store.blobs[digest.hash] = b"evil"
    with pytest.raises(cas_transfer.CorruptBlob):
        cas_transfer.download(store, store, [digest], lambda d: tmp_path / d.hash)
    assert list(tmp_path.iterdir()) == []


def test_a_source_tree_with_a_link_leading_out_is_refused(tmp_path):
    os.symlink("../elsewhere", tmp_path / "out")
    with pytest.raises(ValidationError, match="outside the tree"):
        Tree.from_directory(tmp_path)


def test_the_first_failure_drops_the_transfers_still_queued(tmp_path):
    store = MemoryStore()
    digests = sorted(Digest.of_bytes(str(i).encode()) for i in range(50))
    for i, digest in enumerate(digests):
        store.blobs[digest.hash] = b"corrupt" if i == 0 else str(i).encode()
    gets = []
    real_get = store.get
    store.get = lambda url, sink, verifier: gets.append(url) or real_get(url, sink, verifier)
    with pytest.raises(cas_transfer.CorruptBlob):
        cas_transfer.download(store, store, digests, lambda d: tmp_path / d.hash, workers=1)
    assert len(gets) < len(digests)


# Packs: many small files in few blobs.

def _small_files(root: Path, count: int) -> Path:
    for i in range(count):
        (root / f"d{i % 7}").mkdir(parents=True, exist_ok=True)
        (root / f"d{i % 7}" / f"f{i}").write_text(f"small file {i}")
    return root


def test_small_blobs_are_grouped_by_hash_prefix_and_large_ones_left_alone():
    small = [Digest.of_bytes(f"{i}".encode()) for i in range(100)]
    large = Digest("f" * 64, PACK_MEMBER_MAX + 1)
    groups = plan_packs([*small, large])
    assert sorted(d for group in groups for d in group) == sorted(small)  # 100 bytes in all: one pack
    assert plan_packs(reversed(small)) == groups
    assert plan_packs(small[:PACK_MIN_MEMBERS - 1]) == []
    many = [Digest(f"{i:064x}"[::-1], 60_000) for i in range(1000)]  # 60 MB: 16 packs of about 3.75 MB
    assert sorted(len({d.hash[0] for d in group}) for group in plan_packs(many)) == [1] * 16


def test_a_tree_of_small_files_moves_in_a_few_packs_and_comes_back_whole(tmp_path):
    store = MemoryStore()
    source = _small_files(tmp_path / "in", 200)
    (source / "big.bin").write_bytes(os.urandom(PACK_MEMBER_MAX + 1))
    first = cas_transfer.archive(store, store, source)
    assert len(first.tree.packs) == 1 and len(first.tree.packed) == 200
    assert first.stats.items_moved == 3  # the pack, the big file, the manifest
    assert len(store.blobs) == 3
    tree, _ = cas_transfer.download_tree(store, store, first.digest, tmp_path / "out")
    assert Tree.from_directory(tmp_path / "out")[0] == Tree.from_directory(source)[0]
    assert Tree.from_bytes(store.blobs[first.digest.hash]) == tree == first.tree

    (source / "d0" / "f0").write_text("changed")
    again = cas_transfer.archive(store, store, source)
    assert again.stats.items_moved == 2  # the pack holding the change, and the manifest


def test_a_pack_member_that_does_not_match_its_digest_is_refused(tmp_path):
    store = MemoryStore()
    members = [Digest.of_bytes(b"a" * 10), Digest.of_bytes(b"b" * 10)]
    forged = b"a" * 10 + b"c" * 10  # A pack true to its own digest, not to its second member.
    pack = Pack(Digest.of_bytes(forged), tuple(members))
    store.blobs[pack.digest.hash] = forged
    packed = {m: pack for m in members}
    with pytest.raises(cas_transfer.CorruptBlob) as e:
        cas_transfer.download(store, store, members, lambda d: tmp_path / d.hash, packed=packed)
    assert e.value.digest == members[1]


@pytest.mark.parametrize("pack, reason", [
    ({"hash": HEX, "size_bytes": 2, "members": ["1" * 64]}, "must list hashes of the manifest's files"),
    ({"hash": HEX, "size_bytes": 3, "members": ["a" * 64]}, "not the sum of its members'"),
    ({"hash": HEX, "size_bytes": 2, "members": ["a" * 64, "a" * 64]}, "more than one pack, or twice"),
])
def test_a_pack_that_does_not_add_up_is_refused(pack, reason):
    manifest = {"files": {"f": {"hash": "a" * 64, "size_bytes": 1}}, "packs": [pack]}
    with pytest.raises(ValidationError, match=reason):
        Tree.from_bytes(json.dumps(manifest).encode())


def test_signed_urls_are_asked_for_a_batch_at_a_time_as_the_transfers_go(tmp_path):
    store = MemoryStore()
    digests = [Digest.of_bytes(str(i).encode()) for i in range(MAX_BATCH + 10)]
    for digest, i in zip(digests, range(len(digests))):
        store.blobs[digest.hash] = str(i).encode()
    events = []
    real_call, real_get = store.call, store.get
    store.call = lambda function, body: events.append(function) or real_call(function, body)
    store.get = lambda url, sink, verifier: events.append("get") or real_get(url, sink, verifier)
    cas_transfer.download(store, store, digests, lambda d: tmp_path / d.hash)
    second = [i for i, event in enumerate(events) if event == "cas_urls"][1]
    assert events[:second].count("get") == MAX_BATCH  # The first batch was done before the next URLs.
