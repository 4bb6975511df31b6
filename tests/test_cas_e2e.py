"""Files end to end: the `swarming` CLI archives inputs, a real bot process
places them from its cache, runs the task and uploads its outputs, and
`collect --output-dir` brings them back; all over signed URLs to the Cloud
Storage emulator."""

import filecmp
import json
import os
import sys
from pathlib import Path

import pytest

from bot.cas_transport import SignedUrlTransport
from client.api import Client
from shared import cas_transfer
from shared.cas import Digest, FileEntry, Tree
from tests.test_end_to_end import finish, server_args, swarming

# Copies the inputs to ${ISOLATED_OUTDIR}, adds what it saw, and leaves a file
# named in `outputs` in its working directory.
TASK = """
import os, shutil, sys
out = sys.argv[1]
shutil.copytree('data', os.path.join(out, 'data'), symlinks=True)
with open(os.path.join(out, 'seen.txt'), 'w') as f:
    f.write(open('data/nested/hello.txt').read() + oct(os.stat('tool.sh').st_mode & 0o777) + oct(os.stat('data/nested/hello.txt').st_mode & 0o777))
open('report.txt', 'w').write('from the working directory')
"""

#: The CLI calls as the tests' user (SWARMING_TOKEN).
pytestmark = pytest.mark.usefixtures("as_user")


def _inputs(root: Path) -> Path:
    (root / "data" / "nested").mkdir(parents=True)
    (root / "data" / "nested" / "hello.txt").write_text("hello ")
    (root / "data" / "blob.bin").write_bytes(os.urandom(3 * 1024 * 1024))
    (root / "data" / "empty").write_bytes(b"")
    os.symlink("nested/hello.txt", root / "data" / "link")
    (root / "tool.sh").write_text("#!/bin/sh\necho tool\n")
    (root / "tool.sh").chmod(0o755)
    return root


def _new_task(api, inputs: Digest, command: list[str], **properties) -> str:
    body = {"name": "files", "priority": 100, "task_slices": [{"expiration_secs": 600, "wait_for_capacity": True,
            "properties": {"command": command, "dimensions": [{"key": "pool", "value": "e2e"}],
                           "execution_timeout_secs": 120,
                           "cas_input_root": {"digest": inputs.to_wire()}, **properties}}]}
    return api.ok("tasks_new", body)["task_id"]


def _result(base_url: str, task_id: str, *args: str) -> dict:
    code, out, err = finish(swarming("collect", *server_args(base_url), "--timeout", "90", "--json", *args, task_id))
    assert code == 0, err
    return json.loads(out)[0]


def test_inputs_reach_the_task_and_its_outputs_come_back_byte_for_byte(api, base_url, start_bot, tmp_path):
    inputs = _inputs(tmp_path / "in")
    code, out, err = finish(swarming("trigger", *server_args(base_url), "-d", "pool=e2e", "--wait-for-capacity",
                                     "--cas-dir", str(inputs), "--", sys.executable, "-c", TASK,
                                     "${ISOLATED_OUTDIR}"))
    assert code == 0, err
    task_id = out.strip()
    start_bot()
    summary = tmp_path / "summary.json"
    result = _result(base_url, task_id, "--output-dir", str(tmp_path / "out"), "--task-summary-json", str(summary))
    assert (result["state"], result["exit_code"]) == ("COMPLETED", 0), result

    got = tmp_path / "out" / task_id
    assert (got / "seen.txt").read_text() == "hello 0o5550o444"  # executable kept, inputs read-only
    comparison = filecmp.dircmp(inputs / "data", got / "data")
    assert not (comparison.left_only or comparison.right_only or comparison.diff_files)
    assert filecmp.cmp(inputs / "data" / "blob.bin", got / "data" / "blob.bin", shallow=False)
    assert os.readlink(got / "data" / "link") == "nested/hello.txt"
    stats = result["performance_stats"]
    assert stats["cas_download"]["items_cold"] >= 4 and stats["cas_download"]["items_hot"] == 0
    assert stats["cas_upload"]["items_uploaded"] >= 1
    assert json.loads(summary.read_text())["shards"][0]["cas_output_root"] == result["cas_output_root"]

    # The same inputs again, with an `outputs` path: all from the bot's cache.
    again = _new_task(api, Tree.from_directory(inputs)[0].digest, [sys.executable, "-c", TASK, "${ISOLATED_OUTDIR}"],
                      outputs=["report.txt"])
    second = _result(base_url, again, "--output-dir", str(tmp_path / "out"))
    assert second["performance_stats"]["cas_download"]["items_cold"] == 0
    assert second["performance_stats"]["cas_download"]["items_hot"] >= 4
    assert (tmp_path / "out" / again / "report.txt").read_text() == "from the working directory"


def test_an_input_missing_from_the_store_ends_client_error(api, base_url, start_bot, tokens):
    never_uploaded = Digest.of_bytes(b"never uploaded " + os.urandom(8))
    tree = Tree({"missing.txt": FileEntry(never_uploaded)})
    manifest = tree.to_bytes()
    client = Client(base_url, tokens["user"])
    cas_transfer.upload(client, SignedUrlTransport(), {Digest.of_bytes(manifest): manifest})
    task_id = _new_task(api, tree.digest, ["true"])
    start_bot()
    code, out, err = finish(swarming("collect", *server_args(base_url), "--timeout", "60", "--json", task_id))
    result = json.loads(out)[0]
    assert result["state"] == "CLIENT_ERROR", (result, err)
    assert result["missing_cas"] == [never_uploaded.to_wire()]


def test_a_deduped_task_returns_the_outputs_of_the_original(api, base_url, start_bot, tmp_path, tokens):
    inputs = _inputs(tmp_path / "in")
    archived = cas_transfer.archive(Client(base_url, tokens["user"]), SignedUrlTransport(), inputs)
    command = [sys.executable, "-c", TASK, "${ISOLATED_OUTDIR}"]
    first = _new_task(api, archived.digest, command, idempotent=True)
    start_bot()
    original = _result(base_url, first)
    deduped = _result(base_url, _new_task(api, archived.digest, command, idempotent=True),
                      "--output-dir", str(tmp_path / "out"))
    assert deduped["deduped_from"] == first and deduped["try_number"] == 0
    assert deduped["cas_output_root"] == original["cas_output_root"] is not None
    assert (tmp_path / "out" / deduped["task_id"] / "seen.txt").read_text() == "hello 0o5550o444"
