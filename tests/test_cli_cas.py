"""Files from the CLI: the progress bar over an in-memory store, then
`archive`, `download`, `trigger --cas-dir/--cas-digest` and `collect
--output-dir` against the real gateway and Cloud Storage emulator. The
signed-URL transport has its own tests (tests/test_cas_transport.py)."""

import contextlib
import filecmp
import io
import json
import os
import stat
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner, Result

from client import transfers
from client.cli import cli
from shared.cas import Digest, Tree
from tests.builders import bot_body, task_body
from tests.test_cas_tree import MemoryStore

MIB = 1024 * 1024
UNKNOWN = Digest("f" * 64, 123)

#: The CLI calls as the tests' user (SWARMING_TOKEN).
pytestmark = pytest.mark.usefixtures("as_user")


# The progress bar, over an in-memory store.

class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_on_a_terminal_the_bar_counts_the_bytes_to_move_and_ends_full(tmp_path, monkeypatch):
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "a").write_bytes(b"a" * MIB)
    (tmp_path / "src" / "b").write_bytes(b"b" * MIB)
    store, terminal = MemoryStore(), _Terminal()
    monkeypatch.setattr(click, "get_text_stream", lambda name: terminal)
    monkeypatch.setattr(transfers, "SignedUrlTransport", lambda: contextlib.nullcontext(store))

    def last_line() -> str:
        line = terminal.getvalue().rsplit("\r", 1)[-1]
        terminal.seek(0)
        terminal.truncate()
        return line

    archived = transfers.archive(store, tmp_path / "src")
    assert "#]  100%  2.0/2.0 MiB" in last_line()
    transfers.archive(store, tmp_path / "src")
    assert "100%  0.0/0.0 MiB" in last_line()  # Nothing to upload.
    transfers.download(store, archived.digest, tmp_path / "out")
    assert "100%  2.0/2.0 MiB" in last_line()


def test_ctrl_c_in_a_transfer_exits_130(tmp_path, monkeypatch):
    store = MemoryStore()
    monkeypatch.setattr(transfers, "SignedUrlTransport", lambda: contextlib.nullcontext(store))
    (tmp_path / "file").write_text("x")

    def interrupted(*args: Any) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(store, "put", interrupted)
    with pytest.raises(transfers.TransferError) as raised:
        transfers.archive(store, tmp_path)
    assert raised.value.exit_code == 130 and raised.value.format_message() == "interrupted"


# The commands, against the real gateway and Cloud Storage emulator.

def _swarming(base_url: str, *args: str) -> Result:
    return CliRunner().invoke(cli, [args[0], "--server", base_url, *args[1:]])


def _tree(root: Path, big: bool = False) -> Path:
    """Nested directories, an executable, an empty file, an empty directory, a
    symlink and, if `big`, a 50 MB file."""
    (root / "a" / "b").mkdir(parents=True)
    (root / "a" / "b" / "deep.txt").write_text("deep\n")
    (root / "run.sh").write_text("#!/bin/sh\necho hi\n")
    (root / "run.sh").chmod(0o755)
    (root / "empty").touch()
    (root / "void").mkdir()
    os.symlink("a/b/deep.txt", root / "link")
    if big:
        (root / "big.bin").write_bytes(os.urandom(50 * MIB))
    return root


def _snapshot(root: Path) -> dict[str, tuple]:
    """Each entry: a file's digest and executable bit, a link's target, a directory."""
    entries: dict[str, tuple] = {}
    for path in sorted(root.rglob("*")):
        mode = path.lstat().st_mode
        if stat.S_ISLNK(mode):
            entry: tuple = ("link", os.readlink(path))
        elif stat.S_ISDIR(mode):
            entry = ("dir",)
        else:
            entry = ("file", Digest.of_file(path), bool(mode & stat.S_IXUSR))
        entries[path.relative_to(root).as_posix()] = entry
    return entries


def test_archive_then_download_gives_the_tree_back_and_a_second_archive_uploads_nothing(api, base_url, tmp_path):
    source = _tree(tmp_path / "source", big=True)
    tree, _ = Tree.from_directory(source)
    first = _swarming(base_url, "archive", str(source), "--json")
    assert first.exit_code == 0, first.output
    assert first.stderr == ""  # No progress bar when stderr is not a terminal.
    assert json.loads(first.stdout) == {
        "digest": tree.digest.to_wire(), "size_bytes": tree.size_bytes, "files": 4,
        "uploaded": len(tree.blobs()) + 1,  # And the manifest.
        "bytes_uploaded": sum(d.size_bytes for d in tree.blobs()) + tree.digest.size_bytes,
    }
    again = _swarming(base_url, "archive", str(source), "--json")
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout) == {**json.loads(first.stdout), "uploaded": 0, "bytes_uploaded": 0}

    out = tmp_path / "out"
    downloaded = _swarming(base_url, "download", str(tree.digest), str(out))
    assert downloaded.exit_code == 0, downloaded.output
    assert _snapshot(out) == _snapshot(source)
    assert filecmp.cmp(source / "big.bin", out / "big.bin", shallow=False)
    assert _snapshot(out)["run.sh"][2] and not _snapshot(out)["empty"][2]


def test_trigger_archives_cas_dir_or_takes_cas_digest(api, base_url, tmp_path):
    source = _tree(tmp_path / "source")
    archived = _swarming(base_url, "archive", str(source))
    assert archived.exit_code == 0, archived.output
    digest = Digest.parse(archived.stdout.strip())
    for inputs in (["--cas-dir", str(source)], ["--cas-digest", str(digest)]):
        triggered = _swarming(base_url, "trigger", "-d", "pool=default", "--wait-for-capacity", *inputs,
                              "--", "cat", "a/b/deep.txt")
        assert triggered.exit_code == 0, triggered.output
        request = api.ok("task_request", {"task_id": triggered.stdout.strip()})
        assert request["task_slices"][0]["properties"]["cas_input_root"] == {"digest": digest.to_wire()}


@pytest.mark.parametrize("inputs, message", [
    (["--cas-digest", "abc/12"], "is not a digest"),
    (["--cas-digest", "0" * 64], "is not a digest"),
    (["--cas-dir", ".", "--cas-digest", f"{'0' * 64}/1"], "give --cas-dir or --cas-digest, not both"),
])
def test_bad_inputs_are_usage_errors(inputs, message):
    result = CliRunner().invoke(cli, ["trigger", "--server", "http://127.0.0.1:9", "--token", "t",
                                      "-d", "pool=default", *inputs, "--", "true"])
    assert result.exit_code == 2 and message in result.output


def test_download_of_an_unknown_or_malformed_digest_fails_clearly(api, base_url, tmp_path):
    unknown = _swarming(base_url, "download", str(UNKNOWN), str(tmp_path / "out"))
    assert unknown.exit_code == 1 and unknown.stderr == f"error: no tree {UNKNOWN} in the store\n"
    malformed = _swarming(base_url, "download", "nothex/1", str(tmp_path / "out"))
    assert malformed.exit_code == 2 and "is not a digest" in malformed.output


def test_download_of_a_tampered_blob_fails_and_leaves_no_file(svc, api, base_url, tmp_path):
    source = _tree(tmp_path / "source")
    digest = _swarming(base_url, "archive", str(source)).stdout.strip()
    svc.bucket.blob(Digest.of_file(source / "run.sh").object_name).upload_from_string(b"#!/bin/sh\necho ho\n")
    out = tmp_path / "out"
    tampered = _swarming(base_url, "download", digest, str(out))
    assert tampered.exit_code == 1 and "does not match its digest" in tampered.stderr
    assert not (out / "run.sh").exists()


def _completed_task(api, bot_id: str, exit_code: int, outputs: Digest | None = None) -> str:
    """A task a bot of our own claimed and ended with `exit_code` and `outputs`."""
    api.ok("bot_handshake", bot_body(bot_id), role="bot")
    task_id = api.ok("tasks_new", task_body())["task_id"]
    claim = api.ok("bot_claim", bot_body(bot_id, task_id=task_id, slice=0, claim_id="c"), role="bot")
    end = {"exit_code": exit_code, "duration": 0.1}
    if outputs:
        end["cas_output_root"] = {"digest": outputs.to_wire()}
    api.ok("bot_task_update", bot_body(bot_id, task_id=claim["manifest"]["task_id"], **end), role="bot")
    return task_id


def test_collect_downloads_outputs_writes_the_summary_and_exits_with_the_task_code(api, base_url, tmp_path):
    outputs = _tree(tmp_path / "outputs")
    digest = Digest.parse(_swarming(base_url, "archive", str(outputs)).stdout.strip())
    with_outputs = _completed_task(api, "bot-1", exit_code=3, outputs=digest)
    without = _completed_task(api, "bot-2", exit_code=0)

    out, summary = tmp_path / "out", tmp_path / "summary.json"
    collected = _swarming(base_url, "collect", with_outputs, without, "--output-dir", str(out),
                          "--task-summary-json", str(summary))
    assert collected.exit_code == 3, collected.output
    assert _snapshot(out / with_outputs) == _snapshot(outputs)
    assert not (out / without).exists()
    shards = json.loads(summary.read_text())["shards"]
    assert [(s["task_id"], s["state"], s["exit_code"]) for s in shards] == [
        (with_outputs, "COMPLETED", 3), (without, "COMPLETED", 0)]


def test_a_collect_that_times_out_writes_null_for_the_pending_task(api, base_url, tmp_path):
    task_id = api.ok("tasks_new", task_body())["task_id"]
    summary = tmp_path / "summary.json"
    collected = _swarming(base_url, "collect", task_id, "--timeout", "0.1", "--task-summary-json", str(summary))
    assert collected.exit_code == 88  # ExitStatus.WAIT_TIMEOUT
    assert json.loads(summary.read_text()) == {"shards": [None]}
