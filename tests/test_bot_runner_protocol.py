"""What the bot and its task runner process tell each other
(bot/runner_protocol.py): the input file and the status lines read back as
they were written, and a bad one is refused by its field."""

import json
import stat
from pathlib import Path

import pytest

from bot.cas_cache import Limits
from bot.runner_protocol import RunnerInput, Status
from bot.task_runner import Result, StopReason, Timings
from shared.bot_api import BotAttributes
from shared.cas import Digest
from shared.errors import ValidationError
from shared.manifest import Manifest
from shared.task_properties import Cache

MANIFEST = Manifest(
    task_id="5f3a1b2c3d4e5f01", bot_id="bot-1", command=("python3", "-c", "pass"), env={"A": "1"},
    hard_timeout=60, grace_period=5, io_timeout=1.5, relative_cwd="src", env_prefixes={"PATH": ("bin",)},
    dimensions={"pool": ["ci"]}, cas_input_root=Digest("ab" * 32, 7), caches=(Cache("git", "g"),),
    outputs=("out",), secret_bytes=b"\x00s3cret", host="https://1-dot-swarming.example.com",
)
GIVEN = RunnerInput(MANIFEST, "https://swarming.example.com",
                    BotAttributes({"id": ["bot-1"], "pool": ["ci"]}, {"sleep_streak": 0}, "dev", session="s-1"),
                    Path("/b/bot"), Timings(output_interval=0.5, max_packet=1000),
                    Limits(max_bytes=10, max_items=2, min_free_bytes=0), run_token="run-token", run_as="nobody")


def test_the_input_reads_back_as_written_and_only_its_user_reads_it(tmp_path: Path) -> None:
    path = tmp_path / "in.json"

    GIVEN.write(path)

    assert RunnerInput.read(path) == GIVEN
    assert RunnerInput.read(path).manifest.secret_bytes == b"\x00s3cret"  # Not compared by ==.
    assert RunnerInput.read(path).run_token == "run-token" and "run-token" not in repr(GIVEN)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    with pytest.raises(FileExistsError):  # Never someone else's file, left in the way.
        GIVEN.write(path)


@pytest.mark.parametrize("change, field", [
    ({"manifest": {**MANIFEST.to_wire(), "command": []}}, "manifest.command"),
    ({"attributes": {"dimensions": {"pool": ["ci"]}, "state": {}, "version": "dev"}}, "attributes.dimensions.id"),
    ({"timings": {"tick": -1}}, "timings.tick"),
    ({"cas_limits": {"max_items": "many"}}, "cas_limits.max_items"),
    ({"bot_dir": None}, "bot_dir"),
    ({"run_token": 7}, "run_token"),
    ({"run_as": ["nobody"]}, "run_as"),
    ({"extra": 1}, "extra"),
])
def test_a_bad_input_is_refused_by_its_field(change: dict, field: str) -> None:
    with pytest.raises(ValidationError) as refused:
        RunnerInput.from_wire(json.loads(json.dumps({**GIVEN.to_wire(), **change})))

    assert refused.value.field == field


@pytest.mark.parametrize("status", [
    Status(started=4242),
    Status(error="inputs missing", missing_cas=(Digest("cd" * 32, 3),)),
    Status(error="the task runner failed"),
    Status(result=Result(0, 1.5, None, reported=True)),
    Status(result=Result(None, 0.0, StopReason.SERVER)),
    Status(result=Result(-15, 2.0, StopReason.IO_TIMEOUT, reported=False)),
])
def test_each_status_line_reads_back_as_written(status: Status) -> None:
    assert Status.from_wire(json.loads(json.dumps(status.to_wire()))) == status


def test_a_result_names_the_stop_as_the_hooks_see_it() -> None:
    assert Result(-15, 2.0, StopReason.HARD_TIMEOUT, True).to_wire() == {
        "exit_code": -15, "duration": 2.0, "stop": "hard timeout", "reported": True}
    with pytest.raises(ValidationError) as refused:
        Status.from_wire({"result": {"exit_code": 0, "duration": 1, "stop": "bored", "reported": True}})
    assert refused.value.field == "result.stop"
