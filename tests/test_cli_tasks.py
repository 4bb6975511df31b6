"""`swarming trigger` and `run`'s --secret-bytes-path, in process with click's
runner: its usage errors before any call, and its bytes in the request."""

import base64
from pathlib import Path

import pytest
from click.testing import CliRunner

from client.cli import cli
from shared.task_properties import MAX_SECRET_BYTES
from tests.builders import bot_body

#: Nothing listens there: a command that called the server would fail with 1, not 2.
NOWHERE = "http://127.0.0.1:9"

#: The CLI calls as the tests' user (SWARMING_TOKEN).
pytestmark = pytest.mark.usefixtures("as_user")


def _swarming(server: str, command: str, *args: str):
    return CliRunner().invoke(cli, [command, "--server", server, *args])


@pytest.mark.parametrize("command", ["trigger", "run"])
@pytest.mark.parametrize("make,problem", [
    (lambda path: None, "No such file"),
    (lambda path: path.mkdir(), "Is a directory"),
    (lambda path: path.write_bytes(b"x" * (MAX_SECRET_BYTES + 1)), f"larger than {MAX_SECRET_BYTES} bytes"),
], ids=["missing", "a-directory", "too-large"])
def test_an_unusable_secret_file_is_a_usage_error_naming_the_flag(tmp_path: Path, command, make, problem):
    path = tmp_path / "secret"
    make(path)

    result = _swarming(NOWHERE, command, "-d", "pool=default", "--secret-bytes-path", str(path), "--", "true")

    assert result.exit_code == 2, result.output
    assert "Invalid value for '--secret-bytes-path'" in result.output and problem in result.output


def test_the_file_s_bytes_reach_the_bot_that_runs_the_task_and_only_it(api, base_url, tmp_path: Path):
    secret = bytes(range(256)) * (MAX_SECRET_BYTES // 256)  # Binary, and the largest allowed.
    (tmp_path / "secret").write_bytes(secret)

    result = _swarming(base_url, "trigger", "-d", "pool=default", "--wait-for-capacity",
                       "--secret-bytes-path", str(tmp_path / "secret"), "--", "true")

    assert result.exit_code == 0, result.output
    task_id = result.output.strip()
    request = api.ok("task_request", {"task_id": task_id})
    assert request["task_slices"][0]["properties"]["has_secret_bytes"]
    assert "secret_bytes" not in request["task_slices"][0]["properties"]
    api.ok("bot_handshake", bot_body(), role="bot")
    claimed = api.ok("bot_claim", bot_body(task_id=task_id, slice=0, claim_id="c"), role="bot")
    assert base64.b64decode(claimed["manifest"]["secret_bytes"]) == secret
