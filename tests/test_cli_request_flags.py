"""`trigger`/`run` take every field of the request: the flags reach the stored
request through the real gateway, `--optional-dimension` makes slices as the
reference CLI does, `--json-input` sends a whole NewTaskRequest."""

import datetime
import json
import time

import pytest
from click.testing import CliRunner

from client.cli import cli
from client.slices import task_slices
from tests.builders import task_body

#: The CLI calls as the tests' user (SWARMING_TOKEN).
pytestmark = pytest.mark.usefixtures("as_user")
#: Nothing listens there: a command that called the server would fail with 1, not 2.
NOWHERE = "http://127.0.0.1:9"


def _swarming(server, *args, **kwargs):
    return CliRunner().invoke(cli, [*args[:1], "--server", server, *args[1:]], **kwargs)


def _request(api, result):
    assert result.exit_code == 0, result.output
    return api.ok("task_request", {"task_id": result.stdout.strip()})


def test_every_flag_reaches_the_request(api, base_url):
    parent = api.ok("tasks_new", task_body())["task_id"]
    result = _swarming(base_url, "trigger", "-d", "pool=default", "--wait-for-capacity", "--relative-cwd", "src/app",
                       "--env-prefix", "PATH", "bin", "--env-prefix", "PYTHONPATH", "lib", "--env-prefix", "PATH",
                       "tools/bin", "--named-cache", "git", "cache/git", "--named-cache", "pip", "cache/pip",
                       "--output", "out/report.txt", "--output", "log.txt", "--service-account", "bot",
                       "--parent-task-id", parent, "--bot-ping-tolerance", "300", "--", "make", "all")
    request = _request(api, result)
    properties = request["task_slices"][0]["properties"]
    assert properties["relative_cwd"] == "src/app" and properties["command"] == ["make", "all"]
    assert properties["env_prefixes"] == [{"key": "PATH", "value": ["bin", "tools/bin"]},
                                          {"key": "PYTHONPATH", "value": ["lib"]}]
    assert properties["caches"] == [{"name": "git", "path": "cache/git"}, {"name": "pip", "path": "cache/pip"}]
    assert properties["outputs"] == ["out/report.txt", "log.txt"]
    assert request["service_account"] == "bot" and request["parent_task_id"] == parent
    assert request["bot_ping_tolerance_secs"] == 300 and len(request["task_slices"]) == 1


def test_the_pubsub_flags_reach_the_request_and_the_token_comes_from_the_environment(api, base_url, monkeypatch):
    monkeypatch.setenv("SWARMING_PUBSUB_AUTH_TOKEN", "s3cret-token")
    result = _swarming(base_url, "trigger", "-d", "pool=default", "--wait-for-capacity", "--pubsub-topic",
                       "projects/my-ci-project/topics/builds", "--pubsub-userdata", "build 7", "--", "true")
    request = _request(api, result)
    assert (request["pubsub_topic"], request["pubsub_userdata"]) == ("projects/my-ci-project/topics/builds", "build 7")
    assert "s3cret-token" not in json.dumps(request)  # Kept for the publisher alone.
    refused = _swarming(base_url, "trigger", "-d", "pool=default", "--pubsub-topic", "builds", "--", "true")
    assert refused.exit_code == 1 and "pubsub_topic" in refused.output


def test_parent_task_id_defaults_to_the_task_the_cli_runs_in(api, base_url, monkeypatch):
    parent = api.ok("tasks_new", task_body())["task_id"]
    monkeypatch.setenv("SWARMING_TASK_ID", parent)
    request = _request(api, _swarming(base_url, "trigger", "-d", "pool=default", "--wait-for-capacity", "--", "true"))
    assert request["parent_task_id"] == parent


def test_optional_dimensions_make_one_slice_per_expiration_then_the_required_only(api, base_url):
    result = _swarming(base_url, "trigger", "-d", "pool=default", "--expiration", "600", "--wait-for-capacity",
                       "--optional-dimension", "os", "Mac", "120", "--optional-dimension", "gpu", "nv", "60",
                       "--optional-dimension", "cpu", "arm", "60", "--", "true")
    request = _request(api, result)
    dims = [{d["key"]: d["value"] for d in s["properties"]["dimensions"]} for s in request["task_slices"]]
    assert dims == [{"pool": "default", "os": "Mac", "gpu": "nv", "cpu": "arm"},
                    {"pool": "default", "os": "Mac"},
                    {"pool": "default"}]
    assert [s["expiration_secs"] for s in request["task_slices"]] == [60, 60, 600]
    assert all(s["wait_for_capacity"] for s in request["task_slices"])


def test_a_task_falls_back_to_the_slice_without_the_optional_dimension(api, base_url, clock):
    clock.offset = -datetime.timedelta(seconds=29)  # Its 30 s first slice ends in about 1 s.
    task_id = _swarming(base_url, "trigger", "-d", "pool=p", "--wait-for-capacity",
                        "--optional-dimension", "os", "Mac", "30", "--", "true").stdout.strip()
    clock.offset = datetime.timedelta()
    deadline = time.monotonic() + 30
    while api.ok("task_result", {"task_id": task_id})["current_task_slice"] != 1:
        assert time.monotonic() < deadline, "the first slice never expired"
        time.sleep(0.2)
    assert api.ok("task_result", {"task_id": task_id})["state"] == "PENDING"


def test_slices_in_pure_logic():
    props = {"command": ["true"], "dimensions": [{"key": "pool", "value": "p"}]}
    assert task_slices(props, 300, False, []) == [
        {"properties": props, "expiration_secs": 300, "wait_for_capacity": False}]
    made = task_slices(props, 300, True, [("a", "1", 40), ("b", "2", 100)])
    assert [[d["key"] for d in s["properties"]["dimensions"]] for s in made] == [["pool", "a", "b"], ["pool", "b"],
                                                                                 ["pool"]]
    assert [s["expiration_secs"] for s in made] == [40, 60, 300]
    assert props["dimensions"] == [{"key": "pool", "value": "p"}]  # Not changed in place.


def test_json_input_sends_the_whole_request(api, base_url, tmp_path):
    body = task_body(name="from-json", tags=["ci:json"])
    body["task_slices"][0]["properties"]["relative_cwd"] = "w"
    (tmp_path / "request.json").write_text(json.dumps(body))
    request = _request(api, _swarming(base_url, "trigger", "--json-input", str(tmp_path / "request.json")))
    assert request["name"] == "from-json" and "ci:json" in request["tags"]
    assert request["task_slices"][0]["properties"]["relative_cwd"] == "w"
    (tmp_path / "inputs").mkdir()
    (tmp_path / "inputs" / "a.txt").write_text("a")
    from_stdin = _request(api, _swarming(base_url, "trigger", "--json-input", "-", "--cas-dir",
                                         str(tmp_path / "inputs"), input=json.dumps(body)))
    assert from_stdin["name"] == "from-json" and from_stdin["task_slices"][0]["properties"]["cas_input_root"]


def test_json_input_refused_by_the_server_names_the_field(base_url, tmp_path):
    body = task_body()
    body["task_slices"][0]["properties"]["caches"] = [{"name": "Bad Name", "path": "c"}]
    (tmp_path / "request.json").write_text(json.dumps(body))
    result = _swarming(base_url, "trigger", "--json-input", str(tmp_path / "request.json"))
    assert result.exit_code == 1 and "(task_slices[0].properties.caches[0].name)" in result.stderr


@pytest.mark.parametrize("args,content,message", [
    (("-d", "pool=default"), "{}", "--json-input is the whole request: drop --dimension"),
    (("--", "true"), "{}", "drop the command"),
    ((), "[1]", "not a JSON object"),
    ((), "{nope", "not JSON"),
])
def test_json_input_with_flags_or_not_an_object_is_a_usage_error(tmp_path, args, content, message):
    (tmp_path / "request.json").write_text(content)
    result = _swarming(NOWHERE, "run", "--token", "t", "--json-input", str(tmp_path / "request.json"), *args)
    assert result.exit_code == 2 and message in result.stderr, result.output


@pytest.mark.parametrize("args,message", [
    (("--optional-dimension", "os", "Mac"), "requires 3 arguments"),
    (("--optional-dimension", "os", "Mac", "soon"), "'soon' is not a valid integer"),
    (("--optional-dimension", "os", "Mac", "0"), "0 is not in the range x>=1"),
    (("--named-cache", "git"), "requires 2 arguments"),
    ((), "give the command after '--'"),
])
def test_bad_request_flags_are_usage_errors(args, message):
    result = _swarming(NOWHERE, "trigger", "--token", "t", "-d", "pool=default", *args)
    assert result.exit_code == 2 and message in result.stderr, result.output
