"""What differs once deployed, checked without a deployment: the settings a
deployed function refuses to start without, its JSON log lines, and the path
a function sees (its name taken off, by Cloud Functions, the local gateway and
the per-function proxy alike)."""

import io
import json
import logging
import threading
from pathlib import Path
from typing import Callable, Iterable

import pytest
from werkzeug.serving import make_server
from werkzeug.test import Client

from functions import logs, settings
from local.function_processes import proxy_app
from local.gateway import dispatcher

GOOD = {
    "K_SERVICE": "tasks_new", "SWARMING_PROJECT": "p", "SWARMING_BUCKET": "p-swarming",
    "SWARMING_FUNCTIONS_URL": "https://us-central1-p.cloudfunctions.net",
    "SWARMING_TASKS_QUEUE": "projects/p/locations/us-central1/queues/swarming-timers",
    "SWARMING_SERVICE_ACCOUNT": "swarming-timers@p.iam.gserviceaccount.com",
    "SWARMING_TOKEN_SECRET": "s3cret", "SWARMING_BOT_ZIP": "bot_code/swarming_bot.zip",
}


@pytest.fixture
def good(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "bot_code").mkdir()
    (tmp_path / "bot_code" / "swarming_bot.zip").write_bytes(b"PK")
    return dict(GOOD)


def test_a_complete_deployed_environment_passes(good):
    checked = settings.check_deployed(good)
    assert checked.tasks_queue == good["SWARMING_TASKS_QUEUE"] and checked.bot_zip == "bot_code/swarming_bot.zip"
    assert "s3cret" not in repr(checked)


@pytest.mark.parametrize("name, value, reason", [
    ("SWARMING_FUNCTIONS_URL", "us-central1-p.cloudfunctions.net", "is not an http(s) URL"),
    ("SWARMING_TASKS_QUEUE", "swarming-timers", "is not projects/P/locations/L/queues/Q"),
    ("SWARMING_SERVICE_ACCOUNT", "timers@example.com", "is not a service account email"),
    ("SWARMING_BOT_ZIP", "bot_code/other.zip", "no file bot_code/other.zip"),
    ("SWARMING_TRUSTED_PROXY_HOPS", "one", "'one' is not a int"),
])
def test_a_malformed_setting_is_named_with_the_reason(good, name, value, reason):
    with pytest.raises(settings.SettingsError) as e:
        settings.check_deployed({**good, name: value})
    assert name in str(e.value) and reason in str(e.value)


def test_every_missing_setting_is_named_at_once(good):
    missing = settings.DEPLOYED_VARIABLES[:3]
    with pytest.raises(settings.SettingsError) as e:
        settings.check_deployed({k: v for k, v in good.items() if k not in missing})
    assert all(f"{name} is not set" in str(e.value) for name in missing)


def test_the_variables_are_those_settings_reads():
    read = settings.Settings.from_env({name: "7" for name in settings.VARIABLES})
    assert read.bot_death_timeout_secs == 7 and read.sightings_flush_secs == 7.0 and read.project == "7"
    assert set(settings.DEPLOYED_VARIABLES) <= set(settings.VARIABLES)
    assert settings.deployed({"K_SERVICE": "x"}) and not settings.deployed({})


def test_log_lines_are_json_with_severity_and_the_request_s_subjects(monkeypatch):
    out = io.StringIO()
    root = logging.getLogger()
    monkeypatch.setattr(root, "handlers", list(root.handlers))
    monkeypatch.setattr(root, "level", root.level)
    logs.use_json(out)
    log = logging.getLogger("functions.test")
    with logs.labelled(function="bot_claim"), logs.labelled(bot_id="bot-1", task_id=None):
        log.info("claimed %s", "abc")
    try:
        raise ValueError("boom")
    except ValueError:
        log.exception("failed")
    first, second = [json.loads(line) for line in out.getvalue().splitlines()]
    assert first == {"severity": "INFO", "message": "claimed abc", "logger": "functions.test",
                     "function": "bot_claim", "bot_id": "bot-1"}
    assert second["severity"] == "ERROR" and "ValueError: boom" in second["message"] and "bot_id" not in second


def echo(environ: dict, start_response: Callable) -> Iterable[bytes]:
    """Answers the path, script name and forwarded address it was called with."""
    seen = {"path": environ["PATH_INFO"], "script": environ.get("SCRIPT_NAME", ""),
            "query": environ.get("QUERY_STRING", ""), "forwarded": environ.get("HTTP_X_FORWARDED_FOR", "")}
    start_response("200 OK", [("Content-Type", "application/json")])
    return [json.dumps(seen).encode()]


def test_the_gateway_gives_a_function_its_sub_path_without_its_name():
    client = Client(dispatcher({"ui": echo}))
    assert client.get("/ui/task/abc?x=1").json == {"path": "/task/abc", "script": "", "query": "x=1",
                                                  "forwarded": ""}


def test_the_per_function_proxy_does_the_same_and_appends_the_caller():
    server = make_server("127.0.0.1", 0, echo, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        client = Client(proxy_app({"ui": f"http://127.0.0.1:{server.server_port}"}))
        seen = client.get("/ui/task/abc?x=1", headers={"X-Forwarded-For": "10.0.0.1"},
                          environ_base={"REMOTE_ADDR": "10.0.0.2"}).json
        assert seen == {"path": "/task/abc", "script": "", "query": "x=1", "forwarded": "10.0.0.1, 10.0.0.2"}
        assert client.get("/nope/x").status_code == 404
    finally:
        server.shutdown()
