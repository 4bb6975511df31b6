"""The task request wire model: limits, defaults, normal form, secrets and the properties hash."""

import base64
import copy
import re
from typing import Any

import pytest

from shared.cas import Digest
from shared.errors import ValidationError
from shared.task_properties import MAX_SECRET_BYTES
from shared.task_request import TaskRequest
from tests.builders import DELETE, with_field

DAY = 24 * 3600
HASH = "ab" * 32
PROPS = ("task_slices", 0, "properties")


def _properties(pool: str = "default", **fields: Any) -> dict[str, Any]:
    return {"command": ["echo", "hi"], "dimensions": [{"key": "pool", "value": pool}], **fields}


def _body(*slices: dict[str, Any], **top: Any) -> dict[str, Any]:
    return {"task_slices": list(slices) or [{"properties": _properties()}], **top}


def _full_body() -> dict[str, Any]:
    """A request that sets every field, most of them away from their defaults."""
    properties = _properties(
        command=["python3", "run.py", "--flag"],
        relative_cwd="src/app",
        env=[{"key": "B", "value": "2"}, {"key": "A", "value": "1"}],
        env_prefixes=[{"key": "PATH", "value": ["bin", "tools/bin"]}, {"key": "LD_PATH", "value": ["lib"]}],
        dimensions=[{"key": "pool", "value": "default"}, {"key": "os", "value": "Linux|Mac"},
                    {"key": "cpu", "value": "x86"}, {"key": "cpu", "value": "arm"}],
        execution_timeout_secs=600,
        io_timeout_secs=0,
        grace_period_secs=10,
        idempotent=True,
        cas_input_root={"digest": {"hash": HASH, "size_bytes": 42}},
        caches=[{"name": "pip", "path": "cache/pip"}, {"name": "git", "path": "cache/git"}],
        outputs=["out/b.txt", "out/a.txt"],
        secret_bytes=base64.b64encode(b"\x00top secret\xff").decode(),
    )
    return _body(
        {"properties": properties, "expiration_secs": 60, "wait_for_capacity": True},
        {"properties": _properties(command=["fallback"]), "expiration_secs": 3600},
        name="full", priority=20, tags=["k:v", "build:1"], user="alice", parent_task_id="5cfcee8008757010",
        request_uuid="0b3c2d1e-7f4a-4e2b-9c1d-5a6b7c8d9e0f", bot_ping_tolerance_secs=600, evaluate_only=True,
        service_account="bot", pubsub_topic="projects/my-project/topics/builds", pubsub_userdata="build 1",
        pubsub_auth_token="t0ken",
    )




def _pairs(count: int) -> list[dict[str, str]]:
    return [{"key": f"K{i}", "value": "v"} for i in range(count)]


@pytest.mark.parametrize("path,value,field", [
    # The request.
    (("bogus",), 1, "bogus"),
    (("name",), "n" * 1025, "name"),
    (("name",), 3, "name"),
    (("priority",), 256, "priority"),
    (("priority",), -1, "priority"),
    (("priority",), "high", "priority"),
    (("priority",), True, "priority"),
    (("tags",), "k:v", "tags"),
    (("tags",), ["k:v"] * 257, "tags"),
    (("tags",), ["k:v", "nocolon"], "tags[1]"),
    (("tags",), [":v"], "tags[0]"),
    (("tags",), ["k:" + "v" * 1023], "tags[0]"),
    (("user",), "u" * 257, "user"),
    (("parent_task_id",), "not-a-task", "parent_task_id"),
    (("parent_task_id",), 12, "parent_task_id"),
    (("request_uuid",), "has space", "request_uuid"),
    (("request_uuid",), "u" * 129, "request_uuid"),
    (("bot_ping_tolerance_secs",), 59, "bot_ping_tolerance_secs"),
    (("bot_ping_tolerance_secs",), 1201, "bot_ping_tolerance_secs"),
    (("evaluate_only",), "yes", "evaluate_only"),
    (("service_account",), "s" * 257, "service_account"),
    (("service_account",), "robot@project.iam.gserviceaccount.com", "service_account"),
    (("service_account",), "robot", "service_account"),
    (("service_account",), "BOT", "service_account"),
    (("pubsub_topic",), 1, "pubsub_topic"),
    (("pubsub_topic",), "projects/p/topics/t", "pubsub_topic"),
    (("pubsub_topic",), "projects/my-project/topics/goog-x", "pubsub_topic"),
    (("pubsub_topic",), "projects/my-project/subscriptions/builds", "pubsub_topic"),
    (("pubsub_topic",), "my-topic", "pubsub_topic"),
    (("pubsub_topic",), "projects/my-project/topics/" + "t" * 256, "pubsub_topic"),
    (("pubsub_userdata",), None, "pubsub_userdata"),
    (("pubsub_userdata",), "opaque", "pubsub_userdata"),
    (("pubsub_userdata",), "u" * 1025, "pubsub_userdata"),
    (("pubsub_auth_token",), "secret", "pubsub_auth_token"),
    (("pubsub_auth_token",), 7, "pubsub_auth_token"),
    (("pubsub_auth_token",), "é" * 513, "pubsub_auth_token"),
    (("task_slices",), [], "task_slices"),
    (("task_slices",), DELETE, "task_slices"),
    (("task_slices",), [1], "task_slices[0]"),
    # A slice.
    (("task_slices", 0, "bogus"), 1, "task_slices[0].bogus"),
    (("task_slices", 0, "properties"), DELETE, "task_slices[0].properties"),
    (("task_slices", 0, "expiration_secs"), 29, "task_slices[0].expiration_secs"),
    (("task_slices", 0, "expiration_secs"), 7 * DAY + 1, "task_slices[0].expiration_secs"),
    (("task_slices", 0, "wait_for_capacity"), 1, "task_slices[0].wait_for_capacity"),
    # Its properties.
    (PROPS + ("bogus",), 1, "task_slices[0].properties.bogus"),
    (PROPS + ("command",), DELETE, "task_slices[0].properties.command"),
    (PROPS + ("command",), [], "task_slices[0].properties.command"),
    (PROPS + ("command",), ["a"] * 129, "task_slices[0].properties.command"),
    (PROPS + ("command",), ["a", 1], "task_slices[0].properties.command[1]"),
    (PROPS + ("relative_cwd",), "/abs", "task_slices[0].properties.relative_cwd"),
    (PROPS + ("relative_cwd",), "C:\\work", "task_slices[0].properties.relative_cwd"),
    (PROPS + ("relative_cwd",), "a/../b", "task_slices[0].properties.relative_cwd"),
    (PROPS + ("relative_cwd",), "a\\..", "task_slices[0].properties.relative_cwd"),
    (PROPS + ("relative_cwd",), "d" * 257, "task_slices[0].properties.relative_cwd"),
    (PROPS + ("env",), {"A": "1"}, "task_slices[0].properties.env"),
    (PROPS + ("env",), _pairs(65), "task_slices[0].properties.env"),
    (PROPS + ("env",), ["A=1"], "task_slices[0].properties.env[0]"),
    (PROPS + ("env",), [{"key": "A", "value": "1", "x": 1}], "task_slices[0].properties.env[0].x"),
    (PROPS + ("env",), _pairs(3) + [{"key": "1BAD", "value": "x"}], "task_slices[0].properties.env[3].key"),
    (PROPS + ("env",), [{"key": "", "value": "x"}], "task_slices[0].properties.env[0].key"),
    (PROPS + ("env",), [{"key": "K" * 65, "value": "x"}], "task_slices[0].properties.env[0].key"),
    (PROPS + ("env",), [{"value": "x"}], "task_slices[0].properties.env[0].key"),
    (PROPS + ("env",), _pairs(2) + [{"key": "K0", "value": "x"}], "task_slices[0].properties.env[2].key"),
    (PROPS + ("env",), [{"key": "A", "value": "v" * 1025}], "task_slices[0].properties.env[0].value"),
    (PROPS + ("env",), [{"key": "A", "value": 1}], "task_slices[0].properties.env[0].value"),
    (PROPS + ("env",), [{"key": "A"}], "task_slices[0].properties.env[0].value"),
    (PROPS + ("env",), _pairs(1) + [{"key": "LUCI_CONTEXT", "value": "/tmp/x"}],
     "task_slices[0].properties.env[1].key"),
    (PROPS + ("env",), [{"key": "SWARMING_TASK_ID", "value": "x"}], "task_slices[0].properties.env[0].key"),
    (PROPS + ("env_prefixes",), [{"key": "ISOLATED_OUTDIR", "value": ["a"]}],
     "task_slices[0].properties.env_prefixes[0].key"),
    (PROPS + ("env_prefixes",), [{"key": "1X", "value": ["a"]}], "task_slices[0].properties.env_prefixes[0].key"),
    (PROPS + ("env_prefixes",), [{"key": "P", "value": ["a"]}] * 2, "task_slices[0].properties.env_prefixes[1].key"),
    (PROPS + ("env_prefixes",), [{"key": f"P{i}", "value": ["a"]} for i in range(65)],
     "task_slices[0].properties.env_prefixes"),
    (PROPS + ("env_prefixes",), [{"key": "P", "value": []}], "task_slices[0].properties.env_prefixes[0].value"),
    (PROPS + ("env_prefixes",), [{"key": "P", "value": "bin"}], "task_slices[0].properties.env_prefixes[0].value"),
    (PROPS + ("env_prefixes",), [{"key": "P", "value": ["bin", "../x"]}],
     "task_slices[0].properties.env_prefixes[0].value[1]"),
    (PROPS + ("env_prefixes",), [{"key": "P", "value": ["/bin"]}],
     "task_slices[0].properties.env_prefixes[0].value[0]"),
    (PROPS + ("dimensions",), DELETE, "task_slices[0].properties.dimensions"),
    (PROPS + ("dimensions",), [{"key": "os", "value": "Linux"}], "task_slices[0].properties.dimensions.pool"),
    (PROPS + ("execution_timeout_secs",), 0, "task_slices[0].properties.execution_timeout_secs"),
    (PROPS + ("execution_timeout_secs",), 7 * DAY + 1, "task_slices[0].properties.execution_timeout_secs"),
    (PROPS + ("io_timeout_secs",), -1, "task_slices[0].properties.io_timeout_secs"),
    (PROPS + ("io_timeout_secs",), 7 * DAY + 1, "task_slices[0].properties.io_timeout_secs"),
    (PROPS + ("grace_period_secs",), -1, "task_slices[0].properties.grace_period_secs"),
    (PROPS + ("grace_period_secs",), 3601, "task_slices[0].properties.grace_period_secs"),
    (PROPS + ("idempotent",), "true", "task_slices[0].properties.idempotent"),
    (PROPS + ("cas_input_root",), {}, "task_slices[0].properties.cas_input_root.digest"),
    (PROPS + ("cas_input_root",), "digest", "task_slices[0].properties.cas_input_root"),
    (PROPS + ("cas_input_root",), {"digest": {"hash": HASH, "size_bytes": 1}, "x": 1},
     "task_slices[0].properties.cas_input_root.x"),
    (PROPS + ("cas_input_root",), {"digest": {"hash": HASH.upper(), "size_bytes": 1}},
     "task_slices[0].properties.cas_input_root.digest.hash"),
    (PROPS + ("cas_input_root",), {"digest": {"hash": HASH[:-1], "size_bytes": 1}},
     "task_slices[0].properties.cas_input_root.digest.hash"),
    (PROPS + ("cas_input_root",), {"digest": {"size_bytes": 1}},
     "task_slices[0].properties.cas_input_root.digest.hash"),
    (PROPS + ("cas_input_root",), {"digest": {"hash": HASH, "size_bytes": -1}},
     "task_slices[0].properties.cas_input_root.digest.size_bytes"),
    (PROPS + ("cas_input_root",), {"digest": {"hash": HASH}},
     "task_slices[0].properties.cas_input_root.digest.size_bytes"),
    (PROPS + ("caches",), [{"name": f"c{i}", "path": f"p{i}"} for i in range(33)],
     "task_slices[0].properties.caches"),
    (PROPS + ("caches",), [{"name": "Pip", "path": "p"}], "task_slices[0].properties.caches[0].name"),
    (PROPS + ("caches",), [{"name": "", "path": "p"}], "task_slices[0].properties.caches[0].name"),
    (PROPS + ("caches",), [{"name": "c" * 129, "path": "p"}], "task_slices[0].properties.caches[0].name"),
    (PROPS + ("caches",), [{"name": "pip", "path": "../p"}], "task_slices[0].properties.caches[0].path"),
    (PROPS + ("caches",), [{"name": "pip", "path": ""}], "task_slices[0].properties.caches[0].path"),
    (PROPS + ("caches",), [{"name": "pip"}], "task_slices[0].properties.caches[0].path"),
    (PROPS + ("caches",), [{"name": "a", "path": "p"}, {"name": "a", "path": "q"}],
     "task_slices[0].properties.caches[1].name"),
    (PROPS + ("caches",), [{"name": "a", "path": "p"}, {"name": "b", "path": "p"}],
     "task_slices[0].properties.caches[1].path"),
    (PROPS + ("outputs",), ["o"] * 513, "task_slices[0].properties.outputs"),
    (PROPS + ("outputs",), ["ok", "/etc/passwd"], "task_slices[0].properties.outputs[1]"),
    (PROPS + ("outputs",), ["out/../../x"], "task_slices[0].properties.outputs[0]"),
    (PROPS + ("outputs",), [""], "task_slices[0].properties.outputs[0]"),
    (PROPS + ("secret_bytes",), "not base64!", "task_slices[0].properties.secret_bytes"),
    (PROPS + ("secret_bytes",), "YQ", "task_slices[0].properties.secret_bytes"),
    (PROPS + ("secret_bytes",), 12, "task_slices[0].properties.secret_bytes"),
    (PROPS + ("secret_bytes",), base64.b64encode(b"x" * (MAX_SECRET_BYTES + 1)).decode(),
     "task_slices[0].properties.secret_bytes"),
    (PROPS + ("has_secret_bytes",), False, "task_slices[0].properties.has_secret_bytes"),
    (PROPS + ("has_secret_bytes",), "yes", "task_slices[0].properties.has_secret_bytes"),
])
def test_each_invalid_field_is_refused_by_its_path(path, value, field):
    body = with_field(_body({"properties": _properties(secret_bytes="c2VjcmV0")}), path, value)
    with pytest.raises(ValidationError) as error:
        TaskRequest.from_wire(body)
    assert error.value.field == field, error.value


@pytest.mark.parametrize("body", [None, [], "request"])
def test_request_must_be_an_object(body):
    with pytest.raises(ValidationError) as error:
        TaskRequest.from_wire(body)
    assert error.value.field == "request"


def test_the_limits_themselves_are_accepted():
    properties = _properties(
        command=["a"] * 128, relative_cwd="d" * 256, env=_pairs(64), execution_timeout_secs=7 * DAY,
        io_timeout_secs=7 * DAY, grace_period_secs=3600, outputs=["o"] * 512,
        caches=[{"name": f"c{i}", "path": f"p{i}"} for i in range(32)],
        secret_bytes=base64.b64encode(b"x" * MAX_SECRET_BYTES).decode(),
    )
    request = TaskRequest.from_wire(_body(
        {"properties": properties, "expiration_secs": 7 * DAY}, name="n" * 1024, priority=255,
        tags=["k:v"] * 256, user="u" * 256, request_uuid="u" * 128, bot_ping_tolerance_secs=60))
    assert len(request.task_slices[0].properties.secret_bytes) == MAX_SECRET_BYTES


def test_defaults_are_filled_in():
    wire = TaskRequest.from_wire(_body()).to_wire()
    assert wire == {
        "name": "", "priority": 200, "tags": [], "user": "", "parent_task_id": "", "request_uuid": "",
        "bot_ping_tolerance_secs": 1200, "evaluate_only": False, "service_account": "", "pubsub_topic": "",
        "pubsub_userdata": "",
        "task_slices": [{
            "expiration_secs": 6 * 3600, "wait_for_capacity": False,
            "properties": {
                "command": ["echo", "hi"], "relative_cwd": "", "env": [], "env_prefixes": [],
                "dimensions": [{"key": "pool", "value": "default"}], "execution_timeout_secs": 3600,
                "io_timeout_secs": 1200, "grace_period_secs": 30, "idempotent": False, "caches": [],
                "outputs": [], "has_secret_bytes": False,
            },
        }],
    }


def test_every_field_is_read():
    request = TaskRequest.from_wire(_full_body())
    assert (request.name, request.priority, request.user, request.bot_ping_tolerance_secs) == ("full", 20, "alice", 600)
    assert request.tags == ["k:v", "build:1"]  # As given.
    assert request.evaluate_only and request.service_account == "bot"
    assert request.task_slices[0].wait_for_capacity and not request.task_slices[1].wait_for_capacity
    props = request.task_slices[0].properties
    assert props.env == {"A": "1", "B": "2"} and list(props.env) == ["A", "B"]
    assert list(props.env_prefixes) == ["LD_PATH", "PATH"] and props.env_prefixes["PATH"] == ["bin", "tools/bin"]
    assert props.dimensions == {"cpu": ["arm", "x86"], "os": ["Linux|Mac"], "pool": ["default"]}
    assert [c.name for c in props.caches] == ["git", "pip"]
    assert props.outputs == ["out/b.txt", "out/a.txt"]  # Kept in order.
    assert props.cas_input_root.digest == Digest(HASH, 42)
    assert props.secret_bytes == b"\x00top secret\xff" and props.has_secret_bytes
    assert (props.io_timeout_secs, props.grace_period_secs, props.idempotent) == (0, 10, True)
    assert (request.pubsub_topic, request.pubsub_userdata) == ("projects/my-project/topics/builds", "build 1")
    assert request.pubsub_auth_token == "t0ken"


@pytest.mark.parametrize("count", [1, 8])
def test_one_to_eight_slices(count):
    request = TaskRequest.from_wire(_body(*[{"properties": _properties(command=[str(i)])} for i in range(count)]))
    assert [s.properties.command for s in request.task_slices] == [[str(i)] for i in range(count)]


@pytest.mark.parametrize("count", [0, 9])
def test_no_slice_or_nine_slices_are_refused(count):
    with pytest.raises(ValidationError) as error:
        TaskRequest.from_wire({"task_slices": [{"properties": _properties()}] * count})
    assert error.value.field == "task_slices"


def test_slices_must_share_their_pool():
    body = _body(*[{"properties": _properties(pool)} for pool in ("a", "a", "b")])
    with pytest.raises(ValidationError) as error:
        TaskRequest.from_wire(body)
    assert error.value.field == "task_slices[2].properties.dimensions.pool"


@pytest.mark.parametrize("account", ["", "none", "bot"])
def test_the_service_accounts_honoured_are_kept_as_given(account):
    assert TaskRequest.from_wire(_body(service_account=account)).service_account == account


def test_slices_giving_secret_bytes_give_the_same_ones():
    same, other = (base64.b64encode(secret).decode() for secret in (b"one", b"two"))
    slices = [{"properties": _properties(**({"secret_bytes": secret} if secret else {}))}
              for secret in (None, same, "", same, other)]
    with pytest.raises(ValidationError) as error:
        TaskRequest.from_wire(_body(*slices))
    assert error.value.field == "task_slices[4].properties.secret_bytes"
    assert "task_slices[1]" in error.value.reason
    request = TaskRequest.from_wire(_body(*slices[:4]))
    assert [s.properties.secret_bytes for s in request.task_slices] == [None, b"one", None, b"one"]


def test_secret_bytes_are_shown_only_when_asked():
    request = TaskRequest.from_wire(_full_body())
    hidden = request.to_wire()["task_slices"][0]["properties"]
    assert "secret_bytes" not in hidden and hidden["has_secret_bytes"] is True
    shown = request.to_wire(include_secrets=True)["task_slices"][0]["properties"]
    assert base64.b64decode(shown["secret_bytes"]) == b"\x00top secret\xff" and shown["has_secret_bytes"] is True
    assert request.to_wire(include_secrets=True)["task_slices"][1]["properties"]["has_secret_bytes"] is False


def test_empty_secret_bytes_are_no_secret():
    props = TaskRequest.from_wire(_body({"properties": _properties(secret_bytes="")})).task_slices[0].properties
    assert props.secret_bytes is None and not props.has_secret_bytes


def test_a_request_read_back_without_its_secret_knows_it_has_one():
    stored = TaskRequest.from_wire(_full_body()).to_wire()
    props = TaskRequest.from_wire(stored).task_slices[0].properties
    assert props.secret_bytes is None and props.secret_withheld and props.has_secret_bytes
    assert TaskRequest.from_wire(stored).to_wire() == stored
    assert "pubsub_auth_token" not in stored and "t0ken" not in str(stored)
    with pytest.raises(ValueError):
        props.properties_hash()


@pytest.mark.parametrize("body", [
    _body(),
    _full_body(),
    _body({"properties": _properties(secret_bytes=base64.b64encode(bytes(range(256))).decode(),
                                     env=[{"key": "Z", "value": ""}], outputs=["a", "a"])}),
    _body(*[{"properties": _properties(command=["c", str(i)], io_timeout_secs=i), "expiration_secs": 30 + i}
            for i in range(8)], tags=["a:", "b:c:d"]),
], ids=["minimal", "full", "binary-secret", "eight-slices"])
def test_wire_round_trip(body):
    request = TaskRequest.from_wire(body)
    wire = request.to_wire(include_secrets=True)
    assert TaskRequest.from_wire(wire) == request
    assert TaskRequest.from_wire(wire).to_wire(include_secrets=True) == wire
    assert TaskRequest.from_wire(copy.deepcopy(wire)) == TaskRequest.from_wire(body)


def _hash(body: dict[str, Any]) -> str:
    return TaskRequest.from_wire(body).task_slices[0].properties.properties_hash()


def test_hash_ignores_the_order_of_env_dimensions_and_caches():
    body = _full_body()
    reordered = copy.deepcopy(body)
    props = reordered["task_slices"][0]["properties"]
    for key in ("env", "env_prefixes", "dimensions", "caches"):
        props[key].reverse()
    assert props != body["task_slices"][0]["properties"]
    assert _hash(reordered) == _hash(body)
    assert re.fullmatch(r"[0-9a-f]{64}", _hash(body))


def test_hash_of_defaults_is_the_hash_of_them_spelled_out():
    spelled = _properties(relative_cwd="", env=[], execution_timeout_secs=3600, io_timeout_secs=1200,
                          grace_period_secs=30, idempotent=False, caches=[], outputs=[])
    assert _hash(_body({"properties": spelled})) == _hash(_body())


@pytest.mark.parametrize("key,value", [
    ("command", ["python3", "run.py"]),
    ("relative_cwd", "src"),
    ("env", [{"key": "A", "value": "1"}, {"key": "B", "value": "3"}]),
    ("env_prefixes", [{"key": "PATH", "value": ["tools/bin", "bin"]}, {"key": "LD_PATH", "value": ["lib"]}]),
    ("dimensions", [{"key": "pool", "value": "default"}, {"key": "os", "value": "Linux|Mac"},
                    {"key": "cpu", "value": "x86"}]),
    ("execution_timeout_secs", 601),
    ("io_timeout_secs", 1),
    ("grace_period_secs", 11),
    ("idempotent", False),
    ("cas_input_root", {"digest": {"hash": HASH, "size_bytes": 43}}),
    ("cas_input_root", {"digest": {"hash": "cd" * 32, "size_bytes": 42}}),
    ("cas_input_root", DELETE),
    ("caches", [{"name": "pip", "path": "cache/pip2"}, {"name": "git", "path": "cache/git"}]),
    ("caches", [{"name": "pip", "path": "cache/pip"}]),
    ("outputs", ["out/a.txt", "out/b.txt"]),
    ("secret_bytes", base64.b64encode(b"\x00top secret\xfe").decode()),
    ("secret_bytes", DELETE),
])
def test_hash_changes_with_each_property(key, value):
    body = _full_body()
    assert _hash(with_field(body, PROPS + (key,), value)) != _hash(body)


def test_hash_ignores_what_is_outside_the_properties():
    changed = with_field(_full_body(), ("task_slices", 0, "expiration_secs"), 999)
    changed.update(name="other", priority=1, tags=[], request_uuid="another")
    assert _hash(changed) == _hash(_full_body())
