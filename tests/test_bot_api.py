"""The bot API's messages (shared/bot_api.py): every one round-trips through
its wire form, and each required field, left out or malformed, is refused
with its path."""

import base64
import copy

import pytest

from shared import bot_api
from shared.bot_api import (
    BotAttributes, Candidate, Claim, ClaimRequest, Completion, Event, EventReply, Handshake, HandshakeReply,
    Poll, Restart, Run, Skip, Sleep, TaskError, TaskErrorReply, TaskUpdate, TaskUpdateReply, Terminate,
    Update, UpdateCode,
)
from shared.cas import Digest
from shared.errors import ValidationError
from shared.manifest import Manifest
from shared.task_properties import Cache, TaskProperties

TASK = "6a1f2b3c4d5e6f70"
RUN = TASK[:-1] + "1"
DIGEST = Digest("ab" * 32, 123)
ATTRS = BotAttributes({"id": ["bot-1"], "os": ["Linux", "Ubuntu"], "pool": ["ci"]},
                      {"sleep_streak": 3, "disk": {"free": 1}}, "f" * 64, session="opaque")
MANIFEST = Manifest(
    task_id=RUN, bot_id="bot-1", command=("python3", "-c", "print(1)"), env={"A": "1", "B": ""},
    hard_timeout=3600, grace_period=30, io_timeout=0.5, relative_cwd="src/x",
    env_prefixes={"PATH": ("bin", "tools/bin")}, dimensions={"pool": ["ci"], "os": ["Linux|Mac"]},
    cas_input_root=DIGEST, caches=(Cache("git", "cache/git"), Cache("pip", "cache/pip")),
    outputs=("out/a.txt", "logs"), secret_bytes=b"\x00secret", host="https://elsewhere.example",
)
STATS = {"bot_overhead_secs": 0.2, "cas_download": {"duration_secs": 1, "items_cold": 2},
         "cas_upload": {"items": 0}}

REQUESTS = [
    Handshake(ATTRS),
    Handshake(BotAttributes({"id": ["b"], "pool": ["p"]}, {}, "")),
    Poll(ATTRS, "0b7c9f1e-uuid"),
    ClaimRequest(ATTRS, TASK, "claim-1", slice=3),
    TaskUpdate(ATTRS, RUN, Update()),
    TaskUpdate(ATTRS, RUN, Update(offset=250_000, output=b"\xffbytes\n")),
    TaskUpdate(ATTRS, RUN, Update(offset=9, completion=Completion(0, 1.5))),
    TaskUpdate(ATTRS, RUN, Update(offset=9, output=b"x", completion=Completion(
        -9, 60.0, hard_timeout=True, io_timeout=False, cas_output_root=DIGEST, performance_stats=STATS))),
    TaskUpdate(ATTRS, RUN, Update(offset=0, canceled=True)),
    TaskError(ATTRS, RUN, "it broke"),
    TaskError(ATTRS, RUN, "inputs missing", missing_cas=(DIGEST, Digest("cd" * 32, 0))),
    Event(ATTRS, "bot_log", "hello"),
]


@pytest.mark.parametrize("message", REQUESTS, ids=lambda m: type(m).__name__)
def test_every_request_round_trips(message):
    assert type(message).from_wire(copy.deepcopy(message.to_wire())) == message


REPLIES = [
    (bot_api.poll_reply, Sleep(12.5, session="s")),
    (bot_api.poll_reply, Claim((Candidate(TASK, 0), Candidate("6a1f2b3c4d5e6f80", 2)), session="s")),
    (bot_api.poll_reply, UpdateCode("e" * 64, session="s")),
    (bot_api.poll_reply, Restart("config changed")),
    (bot_api.poll_reply, Restart("reboot please", host=True, session="s")),
    (bot_api.poll_reply, Terminate(TASK, session="s")),
    (bot_api.claim_reply, Run(MANIFEST, session="s", run_token="swrt1.x.y")),
    (bot_api.claim_reply, Run(Manifest(RUN, "bot-1", ("true",), {}, 60), run_token="t")),
    (bot_api.claim_reply, Skip("another bot claimed the task")),
    (HandshakeReply.from_wire, HandshakeReply("s", "dev", "v1", {"pool": ["secure"]})),
    (HandshakeReply.from_wire, HandshakeReply("s", "dev", "v1", {"pool": ["lab"]}, "def get_state(bot): ...\n",
                                              "lab.py")),
    (HandshakeReply.from_wire, HandshakeReply()),
    (TaskUpdateReply.from_wire, TaskUpdateReply(True, "KILLED", session="s")),
    (TaskUpdateReply.from_wire, TaskUpdateReply()),
    (TaskErrorReply.from_wire, TaskErrorReply("BOT_DIED")),
    (EventReply.from_wire, EventReply()),
]


@pytest.mark.parametrize("read, message", REPLIES, ids=lambda m: type(m).__name__)
def test_every_reply_round_trips(read, message):
    assert read(copy.deepcopy(message.to_wire())) == message


def test_a_reply_passes_over_fields_a_newer_server_adds():
    wire = {**Sleep(1.0).to_wire(), "jitter": 0.3}
    assert bot_api.poll_reply(wire) == Sleep(1.0)
    manifest = {**MANIFEST.to_wire(), "service_accounts": {}}
    assert bot_api.claim_reply({"cmd": "run", "manifest": manifest, "run_token": "t"}) == Run(MANIFEST, run_token="t")


def test_a_request_refuses_a_field_it_does_not_know():
    with pytest.raises(ValidationError) as e:
        Poll.from_wire({**Poll(ATTRS).to_wire(), "bogus": 1})
    assert e.value.field == "bogus"


def _without(wire, path):
    """`wire` with the field at dotted `path` removed."""
    wire = copy.deepcopy(wire)
    *parents, last = path.split(".")
    holder = wire
    for key in parents:
        holder = holder[key]
    del holder[last]
    return wire


def _refused(read, wire, field):
    with pytest.raises(ValidationError) as e:
        read(wire)
    assert e.value.field == field, e.value
    return e.value


REQUIRED = [
    (Handshake.from_wire, Handshake(ATTRS), "dimensions", "dimensions"),
    (Handshake.from_wire, Handshake(ATTRS), "dimensions.id", "dimensions.id"),
    (Poll.from_wire, Poll(ATTRS), "dimensions", "dimensions"),
    (ClaimRequest.from_wire, REQUESTS[3], "task_id", "task_id"),
    (ClaimRequest.from_wire, REQUESTS[3], "claim_id", "claim_id"),
    (ClaimRequest.from_wire, REQUESTS[3], "dimensions.id", "dimensions.id"),
    (TaskUpdate.from_wire, REQUESTS[6], "task_id", "task_id"),
    (TaskUpdate.from_wire, REQUESTS[6], "duration", "exit_code"),
    (TaskUpdate.from_wire, REQUESTS[6], "exit_code", "exit_code"),
    (TaskError.from_wire, REQUESTS[9], "task_id", "task_id"),
    (Event.from_wire, REQUESTS[11], "event", "event"),
]


@pytest.mark.parametrize("read, message, removed, field", REQUIRED, ids=lambda v: v if isinstance(v, str) else "")
def test_each_required_request_field_is_named_when_missing(read, message, removed, field):
    _refused(read, _without(message.to_wire(), removed), field)


REQUIRED_IN_REPLIES = [
    (bot_api.poll_reply, Sleep(1.0).to_wire(), "cmd", "cmd"),
    (bot_api.poll_reply, Sleep(1.0).to_wire(), "duration", "duration"),
    (bot_api.poll_reply, Claim((Candidate(TASK),)).to_wire(), "candidates", "candidates"),
    (bot_api.poll_reply, UpdateCode("e" * 64).to_wire(), "version", "version"),
    (bot_api.poll_reply, Terminate(TASK).to_wire(), "task_id", "task_id"),
    (bot_api.claim_reply, Run(MANIFEST, run_token="t").to_wire(), "cmd", "cmd"),
    (bot_api.claim_reply, Run(MANIFEST, run_token="t").to_wire(), "manifest", "manifest"),
    (bot_api.claim_reply, Run(MANIFEST, run_token="t").to_wire(), "run_token", "run_token"),
    (bot_api.claim_reply, Run(MANIFEST, run_token="t").to_wire(), "manifest.task_id", "manifest.task_id"),
    (bot_api.claim_reply, Run(MANIFEST, run_token="t").to_wire(), "manifest.bot_id", "manifest.bot_id"),
    (bot_api.claim_reply, Run(MANIFEST, run_token="t").to_wire(), "manifest.command", "manifest.command"),
    (bot_api.claim_reply, Run(MANIFEST, run_token="t").to_wire(), "manifest.hard_timeout", "manifest.hard_timeout"),
    (TaskErrorReply.from_wire, TaskErrorReply("BOT_DIED").to_wire(), "state", "state"),
]


@pytest.mark.parametrize("read, wire, removed, field", REQUIRED_IN_REPLIES,
                         ids=lambda v: v if isinstance(v, str) else "")
def test_each_required_reply_field_is_named_when_missing(read, wire, removed, field):
    _refused(read, _without(wire, removed), field)


@pytest.mark.parametrize("change, field", [
    ({"dimensions": {"id": ["a/b"], "pool": ["p"]}}, "dimensions.id"),
    ({"dimensions": {"id": ["a", "b"], "pool": ["p"]}}, "dimensions.id"),
    ({"dimensions": {"id": ["a"], "os": [["nested"]]}}, "dimensions.os"),
    ({"state": []}, "state"),
    ({"version": 3}, "version"),
    ({"session": 7}, "session"),
    ({"task_id": TASK}, "task_id"),  # A task id where the run id belongs.
    ({"output": "not base64!"}, "output"),
    ({"output": "é"}, "output"),
    ({"output_chunk_start": -1}, "output_chunk_start"),
    ({"exit_code": 1.5, "duration": 1}, "exit_code"),
    ({"exit_code": 2**63, "duration": 1}, "exit_code"),
    ({"exit_code": 0, "duration": -1}, "duration"),
    ({"exit_code": 0, "duration": float("nan")}, "duration"),
    ({"exit_code": 0, "duration": 1, "hard_timeout": "yes"}, "hard_timeout"),
    ({"exit_code": 0, "duration": 1, "canceled": True}, "canceled"),
    ({"cas_output_root": {"digest": DIGEST.to_wire()}}, "cas_output_root"),
    ({"exit_code": 0, "duration": 1, "cas_output_root": {"digest": {"hash": "x", "size_bytes": 1}}},
     "cas_output_root.digest.hash"),
    ({"exit_code": 0, "duration": 1, "performance_stats": {"cas_upload": {"items": -1}}},
     "performance_stats.cas_upload.items"),
    ({"exit_code": 0, "duration": 1, "performance_stats": {"bogus": 1}}, "performance_stats.bogus"),
])
def test_bad_task_updates_are_refused_by_field(change, field):
    _refused(TaskUpdate.from_wire, {**TaskUpdate(ATTRS, RUN, Update()).to_wire(), **change}, field)


@pytest.mark.parametrize("message, change, field", [
    (REQUESTS[3], {"task_id": RUN}, "task_id"),  # A run id where the task id belongs.
    (REQUESTS[3], {"slice": 8}, "slice"),
    (REQUESTS[3], {"claim_id": "no spaces"}, "claim_id"),
    (REQUESTS[9], {"message": 5}, "message"),
    (REQUESTS[9], {"client_error": {"missing_cas": [{"hash": "ab", "size_bytes": 1}]}},
     "client_error.missing_cas[0].hash"),
    (REQUESTS[9], {"client_error": {"other": 1}}, "client_error.other"),
    (REQUESTS[11], {"event": "bot_connected"}, "event"),
], ids=lambda v: v if isinstance(v, str) else "")
def test_bad_requests_are_refused_by_field(message, change, field):
    _refused(type(message).from_wire, {**message.to_wire(), **change}, field)


@pytest.mark.parametrize("change, field", [
    ({"command": []}, "manifest.command"),
    ({"command": ["ok", 1]}, "manifest.command[1]"),
    ({"env": {"1BAD": "x"}}, "manifest.env.1BAD"),
    ({"env": {"A": 1}}, "manifest.env.A"),
    ({"env_prefixes": {"PATH": ["../out"]}}, "manifest.env_prefixes.PATH[0]"),
    ({"relative_cwd": "/abs"}, "manifest.relative_cwd"),
    ({"io_timeout": "soon"}, "manifest.io_timeout"),
    ({"caches": [{"name": "a", "path": "x"}, {"name": "a", "path": "y"}]}, "manifest.caches[1].name"),
    ({"caches": [{"name": "BAD", "path": "x"}]}, "manifest.caches[0].name"),
    ({"outputs": ["/etc/passwd"]}, "manifest.outputs[0]"),
    ({"secret_bytes": "%%%"}, "manifest.secret_bytes"),
    ({"cas_input_root": {"digest": {"hash": "ab" * 32}}}, "manifest.cas_input_root.digest.size_bytes"),
    ({"io_timeout": -1}, "manifest.io_timeout"),
    ({"io_timeout": True}, "manifest.io_timeout"),
    ({"grace_period": "30"}, "manifest.grace_period"),
    ({"hard_timeout": None}, "manifest.hard_timeout"),
    ({"relative_cwd": 3}, "manifest.relative_cwd"),
    ({"env_prefixes": {"PATH": "bin"}}, "manifest.env_prefixes.PATH"),
    ({"env_prefixes": {"PATH": [1]}}, "manifest.env_prefixes.PATH[0]"),
    ({"env_prefixes": [{"key": "PATH", "value": ["bin"]}]}, "manifest.env_prefixes"),  # The request's shape.
    ({"env": [{"key": "A", "value": "1"}]}, "manifest.env"),
    ({"command": "true"}, "manifest.command"),
    ({"caches": [{"name": "../up", "path": "x"}]}, "manifest.caches[0].name"),
    ({"caches": [{"name": "a", "path": 1}]}, "manifest.caches[0].path"),
])
def test_a_bad_manifest_is_refused_by_field_and_its_run_is_still_known(change, field):
    reply = {"cmd": "run", "manifest": {**MANIFEST.to_wire(), **change}}
    _refused(bot_api.claim_reply, reply, field)
    assert bot_api.claimed_run_id(reply) == RUN


def test_a_manifest_of_the_required_fields_has_the_defaults():
    wire = {"task_id": RUN, "bot_id": "bot-1", "command": ["true"], "hard_timeout": 60}

    manifest = Manifest.from_wire(wire)

    assert manifest == Manifest(RUN, "bot-1", ("true",), {}, 60)
    assert (manifest.grace_period, manifest.io_timeout, manifest.relative_cwd, manifest.env_prefixes,
            manifest.caches, manifest.cas_input_root, manifest.outputs, manifest.host) == (
        None, 0.0, "", {}, (), None, (), "")


def test_no_run_is_claimed_without_a_run_id():
    assert bot_api.claimed_run_id({"cmd": "run", "manifest": {"task_id": TASK}}) is None
    assert bot_api.claimed_run_id({"cmd": "skip"}) is None
    assert bot_api.claimed_run_id("nonsense") is None


def test_the_manifest_of_a_slice_carries_every_property():
    props = TaskProperties.from_wire({
        "command": ["run.sh", "--fast"], "dimensions": [{"key": "pool", "value": "ci"}],
        "env": [{"key": "B", "value": "2"}], "env_prefixes": [{"key": "PATH", "value": ["bin"]}],
        "relative_cwd": "src", "execution_timeout_secs": 600, "io_timeout_secs": 60, "grace_period_secs": 5,
        "cas_input_root": {"digest": DIGEST.to_wire()}, "caches": [{"name": "git", "path": "git"}],
        "outputs": ["out"], "secret_bytes": base64.b64encode(b"s3").decode(),
    }, "properties")
    manifest = Manifest.for_run(props, RUN, "bot-1", secret_bytes=b"s3")
    assert manifest == Manifest(
        task_id=RUN, bot_id="bot-1", command=("run.sh", "--fast"), env={"B": "2"}, hard_timeout=600,
        grace_period=5, io_timeout=60, relative_cwd="src", env_prefixes={"PATH": ("bin",)},
        dimensions={"pool": ["ci"]}, cas_input_root=DIGEST, caches=(Cache("git", "git"),), outputs=("out",),
        secret_bytes=b"s3")
    assert "s3" not in repr(manifest) and "secret_bytes" not in repr(manifest)
