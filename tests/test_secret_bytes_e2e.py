"""Secret bytes end to end: `swarming run --secret-bytes-path` and a real bot
process on the emulators. The task, and only the task, reads them (through
LUCI_CONTEXT); no reply of any reader, no event and no log of the bot or its
runner shows them."""

import base64
import hashlib
import json
import secrets
import sys
from pathlib import Path

from tests.builders import task_body
from tests.test_end_to_end import finish, server_args, swarming

#: Prints what the task sees: the context file's path and mode, the SHA-256 of
#: its secret bytes (never the bytes), and the rest of its swarming section.
TASK = """
import base64, hashlib, json, os, stat
path = os.environ['LUCI_CONTEXT']
context = json.load(open(path))
swarming = context['swarming']
secret = swarming.pop('secret_bytes', None)
print(json.dumps({'path': path, 'mode': oct(stat.S_IMODE(os.stat(path).st_mode)), 'sections': sorted(context),
                  'sha256': secret and hashlib.sha256(base64.b64decode(secret)).hexdigest(), 'swarming': swarming,
                  'task_id': os.environ['SWARMING_TASK_ID']}))
"""


def _run(base_url: str, *args: str) -> tuple[dict, dict]:
    """The result of a task run with `args`, and what it printed."""
    code, out, err = finish(swarming("run", *server_args(base_url), "-d", "pool=e2e", "--wait-for-capacity",
                                     "--json", *args, "--", sys.executable, "-c", TASK))
    assert code == 0, err
    [result] = json.loads(out)
    return result, json.loads(result["output"])


def test_only_the_task_reads_its_secret_bytes(api, base_url, start_bot, as_user, tmp_path: Path):
    secret = f"s3cr3t-{secrets.token_hex(16)}".encode()
    shown = [secret.decode(), base64.b64encode(secret).decode()]
    (tmp_path / "secret").write_bytes(secret)
    start_bot()

    result, seen = _run(base_url, "--secret-bytes-path", str(tmp_path / "secret"))

    assert result["state"] == "COMPLETED" and seen["sha256"] == hashlib.sha256(secret).hexdigest()
    context = Path(seen["path"])
    assert context.parent == tmp_path / "e2e-bot" / "ctx" and seen["mode"] == "0o600"
    assert not context.exists()  # Gone with the command.
    task_id = result["task_id"]
    assert seen["sections"] == ["swarming"] and seen["swarming"].keys() == {"task"}
    task = seen["swarming"]["task"]
    assert (task["server"], task["task_id"], seen["task_id"]) == (base_url, task_id, result["run_id"])
    assert {"id:e2e-bot", "pool:e2e"} <= set(task["bot_dimensions"])
    assert task["bot_dimensions"] == sorted(task["bot_dimensions"])

    # The next task on the same bot has its own context, without a secret.
    other, other_seen = _run(base_url)
    assert other["bot_id"] == result["bot_id"] and other_seen["sha256"] is None
    assert other_seen["path"] == seen["path"] and not context.exists()

    evaluated = task_body(dimensions={"pool": "e2e"}, evaluate_only=True)
    evaluated["task_slices"][0]["properties"]["secret_bytes"] = shown[1]
    replies = [
        api.ok("tasks_new", evaluated),
        *[api.ok(reader, {"task_id": t}) for reader in ("task_request", "task_result", "task_stdout")
          for t in (task_id, other["task_id"])],
        *[api.ok(reader, {"bot_id": result["bot_id"]}) for reader in ("bot_get", "bot_events", "bot_tasks")],
        api.ok("bots_list", {"dimensions": ["pool:e2e"]}),
    ]
    stdouts = [base64.b64decode(reply["output"]).decode() for reply in replies if "output" in reply]
    logs = [path.read_text(errors="replace") for path in (tmp_path / "e2e-bot" / "logs").iterdir()]
    logs.append((tmp_path / "e2e-bot.log").read_text(errors="replace"))
    assert len(stdouts) == 2 and any(task_id[:-1] in log for log in logs)  # The logs speak of the task...
    for where in [json.dumps(reply) for reply in replies] + stdouts + logs:
        assert not any(s in where for s in shown)  # ...never of its secret.
    assert replies[0]["request"]["task_slices"][0]["properties"]["has_secret_bytes"]
    assert not (tmp_path / "e2e-bot" / "ctx").exists()
