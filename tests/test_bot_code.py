"""The bot code: the zip's content and digest, `bot_code` and its Cloud
Storage cache, bootstrap tokens and the start script, `update` and
`terminate` in polls."""

import concurrent.futures
import dataclasses
import datetime
import hashlib
import io
import json
import os
import shutil
import stat
import struct
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import requests
from google.cloud import storage

from functions import bot_code, service
from functions.bot_code import Sources, write_zip
from shared.bot_archive import digest, entries_of
from tests.builders import bot_body, task_body
from tests.conftest import REPO, bot_token

#: bot-1's token (its group of tests/config/), good for any test's service.
BOT = bot_token()
URL = "http://swarming.example.com"
OLD_VERSION = "0" * 64


@pytest.fixture
def src(tmp_path: Path) -> Path:
    """A copy of bot/ and shared/ (the real ones change under other people's edits)."""
    root = tmp_path / "src"
    for package in ("bot", "shared"):
        shutil.copytree(REPO / package, root / package, ignore=shutil.ignore_patterns("__pycache__"))
    return root


@pytest.fixture
def code_svc(svc, src, clock):
    """The test's service, with the copied sources."""
    settings = dataclasses.replace(svc.settings, bot_source_dir=str(src), bot_code_recheck_secs=0)
    with service.use(service.Service(settings, clock=clock)) as current:
        yield current


def _get(base_url, function, bearer=None, **params):
    headers = {"Authorization": f"Bearer {bearer}"} if bearer else {}
    return requests.get(f"{base_url}/{function}", params=params, headers=headers, timeout=60,
                        allow_redirects=False)


def _current(base_url, token=BOT):
    answer = _get(base_url, "bot_code", token)
    assert answer.status_code == 302, answer.text
    location = answer.headers["Location"]
    assert location.startswith(f"{base_url}/bot_code?version=")
    return location.rsplit("=", 1)[1]


def _bootstrap_token(api):
    return api.ok("server_token", {}, role="admin")["bootstrap_token"]


# The zip and its digest.


def test_digest_is_sha256_of_sorted_length_prefixed_entries():
    expected = hashlib.sha256()
    for name, content in [("a.py", b"x"), ("b/c.py", b"")]:
        expected.update(struct.pack(">Q", len(name)) + name.encode() + struct.pack(">Q", len(content)) + content)
    assert digest({"b/c.py": b"", "a.py": b"x"}) == expected.hexdigest()


def test_same_inputs_same_digest_and_same_bytes(src):
    first = Sources(root=src).entries(URL, "v1")
    (src / "shared" / "errors.py").touch()  # A newer time, the same content.
    os.utime(src / "bot" / "bot_main.py", (0, 0))
    second = Sources(root=src).entries(URL, "v1")
    assert digest(first) == digest(second)
    assert write_zip(first) == write_zip(second)
    # Neither dates nor compression are part of the version.
    stored = io.BytesIO()
    with zipfile.ZipFile(stored, "w", zipfile.ZIP_STORED) as z:
        for name in reversed(sorted(first)):
            z.writestr(zipfile.ZipInfo(name, (2020, 5, 17, 1, 2, 4)), first[name])
    assert digest(entries_of(stored.getvalue())) == digest(first)


def test_a_changed_input_changes_the_digest(src):
    sources = Sources(root=src)
    before = digest(sources.entries(URL, "v1"))
    assert digest(sources.entries(URL + ":443", "v1")) != before  # The seed: the URL is in the zip.
    assert digest(sources.entries(URL, "v2")) != before
    with open(src / "shared" / "errors.py", "a") as f:
        f.write("# changed\n")
    assert digest(sources.entries(URL, "v1")) != before
    changed = digest(sources.entries(URL, "v1"))
    with open(src / "bot" / "default_bot_config.py", "a") as f:
        f.write("# changed\n")
    assert digest(sources.entries(URL, "v1")) != changed


def test_zip_layout(src):
    entries = entries_of(write_zip(Sources(root=src).entries(URL, "v7")))
    assert json.loads(entries["config.json"]) == {"server": URL, "server_version": "v7"}
    assert entries["__main__.py"] == (src / "bot" / "zip_main.py").read_bytes()
    assert entries["bot_config.py"] == (src / "bot" / "default_bot_config.py").read_bytes()
    for module in ("bot/__init__.py", "bot/bot_main.py", "bot/remote.py", "bot/task_runner.py",
                   "shared/__init__.py", "shared/task_request.py", "requests/__init__.py",
                   "urllib3/__init__.py", "idna/__init__.py", "certifi/cacert.pem",
                   "charset_normalizer/__init__.py", "charset_normalizer/md.py"):
        assert module in entries, module
    assert not [n for n in entries if n.endswith((".so", ".pyd", ".pyc")) or "__pycache__" in n
                or "/tests/" in n or n.rsplit("/", 1)[-1].startswith("test_")]
    assert {n.split("/")[0] for n in entries if "/" in n} == {
        "bot", "shared", "requests", "urllib3", "idna", "certifi", "charset_normalizer"}
    # Stand-ins until bot/zip_main.py and the default hooks exist.
    (src / "bot" / "zip_main.py").unlink()
    (src / "bot" / "default_bot_config.py").unlink()
    entries = Sources(root=src).entries(URL, "v7")
    assert entries["__main__.py"] == bot_code.STAND_IN_MAIN.encode()
    assert entries["bot_config.py"] == bot_code.EMPTY_BOT_CONFIG.encode()


def test_zip_imports_requests_without_site_packages(src, tmp_path):
    path = tmp_path / "swarming_bot.zip"
    path.write_bytes(write_zip(Sources(root=src).entries(URL, "dev")))
    program = (
        "import sys, os; sys.path.insert(0, sys.argv[1]); import requests, urllib3, idna, certifi, "
        "charset_normalizer, shared.task_request;"
        "assert requests.__file__.startswith(sys.argv[1]), requests.__file__;"
        "assert os.path.getsize(requests.certs.where()) > 10000; print('ok')"
    )
    out = subprocess.run([sys.executable, "-S", "-E", "-c", program, str(path)], capture_output=True, text=True,
                         timeout=60, cwd=tmp_path)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


# bot_code.


def test_bot_code_serves_the_current_version(code_svc, base_url):
    version = _current(base_url)
    answer = _get(base_url, "bot_code", BOT, version=version)
    assert answer.status_code == 200 and answer.headers["Content-Type"] == "application/octet-stream"
    entries = entries_of(answer.content)
    assert digest(entries) == version
    assert json.loads(entries["config.json"])["server"] == base_url
    again = _get(base_url, "bot_code", BOT, version=version)
    assert again.content == answer.content and code_svc.bot_code.built == [version]
    assert answer.headers["X-Firestore-Reads"] == "0"


def test_the_zip_names_the_configured_url_else_the_one_called(code_svc, base_url, clock):
    for functions_url, headers, expected in [
        ("https://swarming.example.com/", {}, "https://swarming.example.com"),
        ("", {}, base_url),
        ("", {"X-Forwarded-Proto": "https"}, base_url.replace("http:", "https:")),
    ]:
        settings = dataclasses.replace(code_svc.settings, functions_url=functions_url)
        with service.use(service.Service(settings, clock=clock)):
            answer = requests.get(f"{base_url}/bot_code", headers={"Authorization": f"Bearer {BOT}",
                                  **headers}, allow_redirects=False, timeout=10)
            location = answer.headers["Location"]
            assert location.startswith(f"{expected}/bot_code?version="), location
            version = location.rsplit("=", 1)[1]
            data = requests.get(f"{base_url}/bot_code", params={"version": version}, timeout=10, headers={
                "Authorization": f"Bearer {BOT}", **headers}).content
            assert json.loads(entries_of(data)["config.json"])["server"] == expected


def test_bot_code_refuses_unknown_versions_and_callers(code_svc, base_url, tokens):
    assert _get(base_url, "bot_code", BOT, version="a" * 64).status_code == 404
    assert _get(base_url, "bot_code", BOT, version="nope").status_code == 400
    assert _get(base_url, "bot_code", version="a" * 64).status_code == 401
    assert _get(base_url, "bot_code").status_code == 401
    assert _get(base_url, "bot_code", tokens["user"]).status_code == 403
    assert requests.post(f"{base_url}/bot_code", headers={"Authorization": f"Bearer {BOT}"},
                         timeout=10).status_code == 405


def test_bot_code_is_built_once_stored_once_and_served_from_the_bucket(code_svc, base_url, clock):
    version = _current(base_url)
    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        answers = list(pool.map(lambda _: _get(base_url, "bot_code", BOT, version=version), range(6)))
    assert {a.status_code for a in answers} == {200} and len({a.content for a in answers}) == 1
    assert code_svc.bot_code.built == [version]
    bucket = storage.Client(project=code_svc.settings.project).bucket(code_svc.settings.bucket)
    blob = bucket.get_blob(f"bot_code/{version}.zip")
    assert blob is not None and blob.download_as_bytes() == answers[0].content
    # Another instance: served from the bucket, not built.
    with service.use(service.Service(code_svc.settings, clock=clock)) as other:
        answer = _get(base_url, "bot_code", BOT, version=version)
        assert answer.status_code == 200 and answer.content == answers[0].content
        assert other.bot_code.built == [] and other.bot_code.downloaded == [version]
        # An old version no instance would build any more is still served.
        (Path(other.settings.bot_source_dir) / "shared" / "errors.py").write_text("# new\n", "utf-8")
        assert _current(base_url) != version
        assert _get(base_url, "bot_code", BOT, version=version).status_code == 200


def test_a_second_upload_of_a_version_is_harmless(code_svc, base_url):
    version = _current(base_url)
    data = _get(base_url, "bot_code", BOT, version=version).content
    code_svc.bot_code._store(version, b"other bytes")  # 412 from the create-only upload: fine.
    bucket = storage.Client(project=code_svc.settings.project).bucket(code_svc.settings.bucket)
    assert bucket.get_blob(f"bot_code/{version}.zip").download_as_bytes() == data


def test_the_zip_carries_the_default_hooks_whatever_the_configuration(code_svc, src, base_url):
    """A bot group's hooks come with the handshake: the zip, and its version,
    do not depend on the service configuration."""
    version = _current(base_url)
    data = _get(base_url, "bot_code", BOT, version=version).content
    assert entries_of(data)["bot_config.py"] == (src / "bot" / "default_bot_config.py").read_bytes()


# Bootstrap tokens and the start script.


def test_bootstrap_token_fetches_the_zip(api, code_svc, base_url):
    answer = api.ok("server_token", {}, role="admin")
    token = answer["bootstrap_token"]
    assert answer["expires_ts"].endswith("Z")
    version = _current(base_url, token)
    response = _get(base_url, "bot_code", token, version=version)
    assert response.status_code == 200 and digest(entries_of(response.content)) == version
    # It opens nothing else but a handshake.
    assert _get(base_url, "bot_get", token, bot_id="x").status_code == 403
    assert api.post("bot_poll", bot_body(), role=None).status_code == 401
    poll = requests.post(f"{base_url}/bot_poll", json=bot_body(), headers={"Authorization": f"Bearer {token}"},
                         timeout=10)
    assert poll.status_code == 403


def test_server_token_is_for_admins(api, code_svc):
    assert api.post("server_token", {}, role="user").status_code == 403
    assert api.post("server_token", {}, role="bot").status_code == 403
    assert api.post("server_token", {}, role=None).status_code == 401


def test_server_token_without_a_secret_says_so(api, svc, clock):
    with service.use(service.Service(dataclasses.replace(svc.settings, token_secret=""), clock=clock)):
        answer = api.post("server_token", {}, role="admin")
    assert answer.status_code == 503 and "SWARMING_TOKEN_SECRET" in answer.json()["error"]["message"]


def test_expired_or_tampered_bootstrap_tokens_are_refused(api, code_svc, base_url, clock):
    token = _bootstrap_token(api)
    prefix, payload, signature = token.split(".")
    tampered = f"{prefix}.{payload[:-2]}{'A' if payload[-2] != 'A' else 'B'}{payload[-1]}.{signature}"
    assert _get(base_url, "bot_code", tampered).status_code == 401
    assert _get(base_url, "bot_code", f"{prefix}.{payload}.{signature[::-1]}").status_code == 401
    assert _get(base_url, "bot_code", token + "x").status_code == 401
    clock.offset += datetime.timedelta(seconds=code_svc.service_config.get().settings.bootstrap_token_ttl_secs + 1)
    answer = _get(base_url, "bot_code", token)
    assert answer.status_code == 401 and "expired" in answer.json()["error"]["message"]


def test_a_token_of_another_secret_is_refused(api, code_svc, base_url, clock):
    token = _bootstrap_token(api)
    settings = dataclasses.replace(code_svc.settings, token_secret="another secret")
    with service.use(service.Service(settings, clock=clock)):
        assert _get(base_url, "bot_code", token).status_code == 401


def test_bot_bootstrap_script_downloads_the_zip_and_starts_it(api, code_svc, base_url, tmp_path):
    token = _bootstrap_token(api)
    version = _current(base_url)
    answer = _get(base_url, "bot_bootstrap", token=token)
    assert answer.status_code == 200, answer.text
    assert answer.headers["Content-Type"].startswith("text/x-shellscript")
    script = answer.text
    assert f"{base_url}/bot_code?version={version}" in script and token in script
    assert "bootstrap_token" in script and "start_bot" in script
    assert _get(base_url, "bot_bootstrap", token).text == script  # The header works too.
    assert _get(base_url, "bot_bootstrap").status_code == 401
    assert _get(base_url, "bot_bootstrap", BOT).status_code == 403
    # Run it, with a python3 that only says how it was called.
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    fake = fake_bin / "python3"
    fake.write_text('#!/bin/sh\necho "python3 $*" > started\n')
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    work = tmp_path / "bot"
    work.mkdir()
    env = {**os.environ, "PATH": f"{fake_bin}:{os.environ['PATH']}"}
    run = subprocess.run(["sh", "-c", script], cwd=work, env=env, capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert digest(entries_of((work / "swarming_bot.zip").read_bytes())) == version
    assert (work / "started").read_text().strip() == "python3 swarming_bot.zip start_bot"
    assert sorted(p.name for p in work.iterdir()) == ["bootstrap_token", "started", "swarming_bot.zip"]
    token_file = work / "bootstrap_token"
    assert token_file.read_text() == token and token_file.stat().st_mode & 0o777 == 0o600


# Polls: update and terminate.


def test_poll_tells_a_bot_on_other_code_to_update(api, code_svc, base_url):
    version = _current(base_url)
    answer = api.post("bot_poll", bot_body(version=OLD_VERSION), role="bot")
    assert answer.json()["cmd"] == "update" and answer.json()["version"] == version
    assert answer.headers["X-Firestore-Reads"] == "0"
    assert api.ok("bot_poll", bot_body(version="dev"), role="bot")["cmd"] == "sleep"
    assert api.ok("bot_poll", bot_body(version=version), role="bot")["cmd"] == "sleep"
    # New code on the server: the same bot is told again.
    (Path(code_svc.settings.bot_source_dir) / "bot" / "zip_main.py").write_text("# new\n", "utf-8")
    answer = api.ok("bot_poll", bot_body(version=version), role="bot")
    assert answer["cmd"] == "update" and answer["version"] != version


def test_a_bot_that_refused_the_current_version_gets_tasks_instead(api, code_svc, base_url):
    version = _current(base_url)
    api.ok("tasks_new", task_body())
    refused = bot_body(version=OLD_VERSION, state={"refused_versions": [version]})
    assert api.ok("bot_poll", refused, role="bot")["cmd"] == "claim"


def test_poll_costs_no_build(api, code_svc, base_url):
    api.ok("bot_poll", bot_body(version=OLD_VERSION), role="bot")
    assert code_svc.bot_code.built == []


def test_bot_terminate_queues_a_termination_task_the_bot_is_told_of(api, code_svc):
    api.ok("bot_handshake", bot_body("nightly-9", pool="nightly"), role="bot")
    task_id = api.ok("bot_terminate", {"bot_id": "nightly-9", "reason": "host retired"}, role="admin")["task_id"]
    request = api.ok("task_request", {"task_id": task_id})
    assert request["priority"] == 0 and "swarming.terminate:1" in request["tags"]
    assert "host retired" in request["name"]
    props = request["task_slices"][0]["properties"]
    assert {"key": "id", "value": "nightly-9"} in props["dimensions"]
    assert {"key": "pool", "value": "nightly"} in props["dimensions"]
    # Other bots of the pool never see it; the bot is told even quarantined.
    assert api.ok("bot_poll", bot_body("nightly-1", pool="nightly"), role="bot")["cmd"] == "sleep"
    quarantined = bot_body("nightly-9", pool="nightly", state={"quarantined": "disk full"})
    answer = api.ok("bot_poll", quarantined, role="bot")
    assert answer["cmd"] == "terminate" and answer["task_id"] == task_id
    answer = api.ok("bot_poll", bot_body("nightly-9", pool="nightly"), role="bot")
    assert answer["cmd"] == "terminate" and answer["task_id"] == task_id
    # The bot claims it, completes it with exit code 0, and exits.
    claim = api.ok("bot_claim", bot_body("nightly-9", pool="nightly", task_id=task_id, slice=0, claim_id="c"),
                   role="bot")
    assert claim["cmd"] == "run" and claim["manifest"]["command"] == ["terminate"]
    run_id = claim["manifest"]["task_id"]
    api.ok("bot_task_update", bot_body("nightly-9", pool="nightly", task_id=run_id, exit_code=0, duration=0.1),
           role="bot")
    result = api.ok("task_result", {"task_id": task_id})
    assert result["state"] == "COMPLETED" and result["exit_code"] == 0 and result["bot_id"] == "nightly-9"


def test_a_user_task_aimed_at_a_bot_is_not_a_termination(api, code_svc):
    api.ok("bot_handshake", bot_body("bot-9"), role="bot")
    body = {"name": "t", "priority": 0, "task_slices": [{"properties": {
        "command": ["true"], "dimensions": [{"key": "pool", "value": "default"}, {"key": "id", "value": "bot-9"}],
        "execution_timeout_secs": 60}, "expiration_secs": 600, "wait_for_capacity": True}]}
    task_id = api.ok("tasks_new", body, role="admin")["task_id"]
    answer = api.ok("bot_poll", bot_body("bot-9"), role="bot")
    assert answer["cmd"] == "claim" and answer["candidates"][0]["task_id"] == task_id


def test_bot_terminate_is_for_the_pools_admins_and_known_bots(api, code_svc):
    api.ok("bot_handshake", bot_body("bot-9"), role="bot")
    assert api.post("bot_terminate", {"bot_id": "bot-9"}, role="viewer").status_code == 403
    assert api.post("bot_terminate", {"bot_id": "nobody"}, role="admin").status_code == 404
    assert api.post("bot_terminate", {}, role="admin").status_code == 400
