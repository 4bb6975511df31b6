"""The task's LUCI_CONTEXT, through the task runner with real child
processes: what the command reads there, the file's mode and life, the merge
over the bot's own LUCI_CONTEXT."""

import base64
import json
import logging
from pathlib import Path

import pytest

from bot.task_runner import StopReason, TaskError
from shared.api_error import ApiError
from shared.bot_api import Update
from shared.task_properties import BOT_ENV
from tests.test_task_runner import RUN_ID, SERVER, Recorder, python, run_task

SECRET = b"\x00s3cr3t-bytes\xff"
SECRET_B64 = base64.b64encode(SECRET).decode()
#: Prints the path LUCI_CONTEXT names, the file's mode and what it holds.
SHOW_CONTEXT = ("import json, os, stat; path = os.environ['LUCI_CONTEXT']; "
                "print(json.dumps([path, oct(stat.S_IMODE(os.stat(path).st_mode)), json.load(open(path))]))")


def shown(output: bytes) -> tuple[Path, str, dict]:
    path, mode, context = json.loads(output)
    return Path(path), mode, context


def test_the_command_reads_its_secret_bytes_in_a_private_file_gone_after_it(tmp_path: Path) -> None:
    result, sent = run_task(tmp_path, python(SHOW_CONTEXT), secret_bytes=SECRET)

    path, mode, context = shown(sent.output())
    assert result.exit_code == 0
    assert path == tmp_path / "ctx" / "luci_context.json" and mode == "0o600"
    assert context == {"swarming": {
        "secret_bytes": SECRET_B64,
        "task": {"server": SERVER, "task_id": RUN_ID[:-1] + "0",  # The task's id, as the reference.
                 "bot_dimensions": ["id:bot-1", "os:Linux", "os:Ubuntu", "pool:default"]},
    }}
    assert base64.b64decode(context["swarming"]["secret_bytes"]) == SECRET
    assert not path.exists() and not (tmp_path / "ctx").exists()


def test_a_task_without_secret_bytes_still_has_its_context(tmp_path: Path) -> None:
    _, sent = run_task(tmp_path, python(SHOW_CONTEXT))

    _, _, context = shown(sent.output())
    assert context["swarming"].keys() == {"task"}
    assert context["swarming"]["task"]["task_id"] == RUN_ID[:-1] + "0"


def test_ctx_is_made_afresh_and_private_whatever_an_earlier_runner_left(tmp_path: Path) -> None:
    (tmp_path / "ctx").mkdir()
    (tmp_path / "ctx" / "luci_context.json").write_text("left by a runner that died")
    code = "import os; print(oct(os.stat(os.path.dirname(os.environ['LUCI_CONTEXT'])).st_mode & 0o777))"

    _, sent = run_task(tmp_path, python(code), secret_bytes=SECRET)

    assert sent.output() == b"0o700\n"  # The leftover did not stop the exclusive create.
    assert not (tmp_path / "ctx").exists()


def test_the_bot_s_own_context_is_merged_under_the_task_s(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    parent = tmp_path / "parent.json"
    sections = {
        "realm": {"name": "infra:ci"},
        "deadline": {"soft_deadline": 1e10, "grace_period": 30},
        "local_auth": {"rpc_port": 1234, "secret": "Ym90LWNyZWRlbnRpYWw=", "default_account_id": "system"},
        "swarming": {"secret_bytes": "cGFyZW50", "task": {"task_id": "parent"}},
    }
    parent.write_text(json.dumps(sections))
    monkeypatch.setenv("LUCI_CONTEXT", str(parent))

    _, sent = run_task(tmp_path, python(SHOW_CONTEXT), secret_bytes=SECRET)

    path, _, context = shown(sent.output())
    assert path != parent and json.loads(parent.read_text()) == sections  # The parent's file is left as it was.
    assert context.keys() == {"realm", "deadline", "swarming"}  # local_auth would be the bot's credential.
    assert (context["realm"], context["deadline"]) == (sections["realm"], sections["deadline"])
    assert context["swarming"]["secret_bytes"] == SECRET_B64
    assert context["swarming"]["task"]["task_id"] == RUN_ID[:-1] + "0"


@pytest.mark.parametrize("content", [None, "{not json", "[1, 2]"], ids=["missing", "not-json", "not-an-object"])
def test_an_unusable_parent_context_fails_the_task_before_it_starts(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, content: str | None) -> None:
    parent = tmp_path / "parent.json"
    if content is not None:
        parent.write_text(content)
    monkeypatch.setenv("LUCI_CONTEXT", str(parent))
    send = Recorder()

    with pytest.raises(TaskError, match=f"the bot's LUCI_CONTEXT {parent} is"):
        run_task(tmp_path, ["true"], send=send, secret_bytes=SECRET)

    assert send.updates == [] and not (tmp_path / "ctx").exists()


@pytest.mark.parametrize("command,stop", [
    (["sh", "-c", 'cat "$LUCI_CONTEXT" >/dev/null && echo "$LUCI_CONTEXT" && sleep 60'], StopReason.HARD_TIMEOUT),
    (python("import os, signal; print(os.environ['LUCI_CONTEXT'], flush=True); os.kill(os.getpid(), signal.SIGKILL)"),
     None),
    (["sh", "-c", 'echo "$LUCI_CONTEXT"; rm "$LUCI_CONTEXT"'], None),
], ids=["hard-timeout", "command-crashed", "deleted-by-the-task"])
def test_the_file_is_gone_however_the_command_ends(tmp_path: Path, command: list[str], stop: StopReason) -> None:
    result, sent = run_task(tmp_path, command, secret_bytes=SECRET, hard_timeout=1.0, grace_period=0.2)

    path = Path(sent.output().decode().strip())
    assert path.name == "luci_context.json" and result.stop is stop and result.reported
    assert not path.exists() and not path.parent.exists()


def test_the_file_is_gone_after_a_runner_error_while_the_command_runs(tmp_path: Path) -> None:
    printed = []

    def answer(n: int, update: Update) -> None:
        if printed:  # The next update after the one carrying the path.
            raise RuntimeError("a bug of the runner's")
        if update.output:
            printed.append(update.output)

    send = Recorder(answer)

    with pytest.raises(RuntimeError):
        run_task(tmp_path, ["sh", "-c", 'echo "$LUCI_CONTEXT"; sleep 60'], send=send, secret_bytes=SECRET)

    path = Path(send.output().decode().strip())
    assert path.name == "luci_context.json"
    assert not path.exists() and not path.parent.exists()


def test_the_bot_sets_every_variable_a_request_may_not(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in BOT_ENV:
        monkeypatch.setenv(name, "inherited from the bot's environment")
    (tmp_path / "parent.json").write_text("{}")
    monkeypatch.setenv("LUCI_CONTEXT", str(tmp_path / "parent.json"))
    code = f"import json, os; print(json.dumps({{name: os.environ[name] for name in {BOT_ENV!r}}}))"

    _, sent = run_task(tmp_path, python(code))

    seen = json.loads(sent.output())
    assert seen == {"ISOLATED_OUTDIR": str(tmp_path / "io"),
                    "LUCI_CONTEXT": str(tmp_path / "ctx" / "luci_context.json"),
                    "SWARMING_BOT_ID": "bot-1", "SWARMING_SERVER": SERVER, "SWARMING_TASK_ID": RUN_ID}


def test_the_runner_never_logs_the_secret(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    failing = Recorder(lambda n, update: _fail_once(n))

    run_task(tmp_path, ["sh", "-c", 'cat "$LUCI_CONTEXT" >/dev/null; exit 3'], send=failing, secret_bytes=SECRET)

    assert "started pid" in caplog.text and "will resend" in caplog.text  # It did log, a failure too.
    assert SECRET_B64 not in caplog.text and "s3cr3t" not in caplog.text


def _fail_once(n: int) -> None:
    """The second update fails (and is logged, then resent)."""
    if n == 2:
        raise ApiError("bot_task_update", 503, "unavailable", "down")
