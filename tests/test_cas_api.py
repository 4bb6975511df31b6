"""The content-addressed store through the real gateway and the Cloud Storage
emulator: find_missing, signed URLs the bytes travel over, who may call; and
what a task's end reports of its files (output root, performance stats)."""

import base64
import datetime
import uuid

import pytest
import requests

from functions import cas
from functions.settings import SettingsError
from shared.cas import MAX_BATCH, Digest
from tests.builders import bot_body, task_body


def _put(api, data: bytes, role: str = "user") -> Digest:
    """Stores `data` as a blob over the upload URL the service signs."""
    digest = Digest.of_bytes(data)
    [signed] = api.ok("cas_urls", {"upload": [digest.to_wire()]}, role=role)["upload"]
    answer = requests.put(signed["url"], data=data, headers=signed["headers"], timeout=10)
    assert answer.status_code == 200, answer.text
    return digest


def _missing(api, digests, role: str = "user") -> list[Digest]:
    answer = api.ok("cas_find_missing", {"digests": [d.to_wire() for d in digests]}, role=role)
    return [Digest(d["hash"], d["size_bytes"]) for d in answer["missing"]]


def _error_field(response: requests.Response) -> str:
    assert response.status_code == 400, response.text
    return response.json()["error"]["field"]


# The store.

def test_a_blob_is_missing_until_uploaded_through_its_signed_url(api):
    stored, absent = Digest.of_bytes(b"stored"), Digest.of_bytes(b"absent")
    assert _missing(api, [stored, absent]) == [stored, absent]
    _put(api, b"stored")
    assert _missing(api, [stored, absent, stored]) == [absent]  # in the order asked, each once


def test_a_stored_object_of_another_size_counts_as_missing(api):
    digest = _put(api, b"twelve bytes")
    assert _missing(api, [Digest(digest.hash, digest.size_bytes + 1)]) == [Digest(digest.hash, 13)]
    assert _missing(api, [digest]) == []


def test_upload_urls_are_create_only_puts_and_download_urls_return_the_bytes(api, svc, clock):
    clock.offset = datetime.timedelta(hours=1)
    digest = Digest.of_bytes(b"content")
    answer = api.ok("cas_urls", {"upload": [digest.to_wire()], "download": [digest.to_wire()]})
    [upload], [download] = answer["upload"], answer["download"]
    headers = dict(upload["headers"])
    custom_time = datetime.datetime.strptime(headers.pop("x-goog-custom-time"), "%Y-%m-%dT%H:%M:%S%z")
    assert abs(custom_time - clock()) < datetime.timedelta(seconds=5)  # The blob's, when it is uploaded.
    assert headers == {"content-type": "application/octet-stream", "x-goog-if-generation-match": "0"}
    assert {upload["hash"], download["hash"]} == {digest.hash} and download["size_bytes"] == 7
    assert "X-Goog-Signature=" in upload["url"] and "X-Goog-Algorithm=GOOG4-RSA-SHA256" in download["url"]
    assert upload["url"].startswith(f"{svc.settings.storage_url}/{svc.settings.bucket}/cas/sha256/{digest.hash}?")
    signed = ["content-type", "host", "x-goog-custom-time", "x-goog-if-generation-match"]
    assert f"X-Goog-SignedHeaders={'%3B'.join(signed)}&" in upload["url"]
    assert "X-Goog-Expires=1800&" in upload["url"] and "X-Goog-Expires=1800&" in download["url"]
    expires = datetime.datetime.fromisoformat(answer["expires_ts"].replace("Z", "+00:00"))
    assert abs(expires - clock() - datetime.timedelta(minutes=30)) < datetime.timedelta(seconds=5)
    assert requests.get(download["url"], timeout=10).status_code == 404  # not stored yet
    assert requests.put(upload["url"], data=b"content", headers=upload["headers"], timeout=10).ok
    fetched = requests.get(download["url"], timeout=10)
    assert fetched.status_code == 200 and fetched.content == b"content"


def _stored(svc, data: bytes, custom_time: datetime.datetime | None = None) -> Digest:
    """A blob put straight into the bucket, with a customTime or none (stored before they were kept)."""
    digest = Digest.of_bytes(data)
    blob = svc.bucket.blob(digest.object_name)
    if custom_time:
        blob.custom_time = custom_time
    blob.upload_from_string(data)
    return digest


def _custom_times(svc, digests: list[Digest]) -> list[datetime.datetime | None]:
    return [svc.bucket.get_blob(d.object_name).custom_time for d in digests]


def _near(a: datetime.datetime | None, b: datetime.datetime) -> bool:
    return a is not None and abs(a - b) < datetime.timedelta(seconds=5)


def test_find_missing_keeps_the_custom_time_of_stored_blobs_within_a_day(api, svc, clock):
    hour_ago = clock() - datetime.timedelta(hours=1)
    blobs = [_stored(svc, b"none"), _stored(svc, b"old", clock() - datetime.timedelta(days=3)),
             _stored(svc, b"recent", hour_ago)]
    assert _missing(api, blobs) == []
    touched, moved, untouched = _custom_times(svc, blobs)
    assert _near(touched, clock()) and _near(moved, clock()) and _near(untouched, hour_ago)
    clock.offset = datetime.timedelta(hours=23, minutes=30)  # The recent one is a day old, the others not yet.
    assert _missing(api, blobs) == []
    later = _custom_times(svc, blobs)
    assert later[:2] == [touched, moved] and _near(later[2], clock())
    clock.offset = datetime.timedelta(hours=25)
    assert _missing(api, blobs) == []
    last = _custom_times(svc, blobs)
    assert _near(last[0], clock()) and _near(last[1], clock()) and last[2] == later[2]


def test_urls_come_in_the_order_asked_and_either_list_may_be_absent(api):
    digests = [Digest.of_bytes(str(i).encode()) for i in range(5)]
    answer = api.ok("cas_urls", {"download": [d.to_wire() for d in digests]})
    assert answer["upload"] == [] and [d["hash"] for d in answer["download"]] == [d.hash for d in digests]
    assert all(d.hash in entry["url"] for d, entry in zip(digests, answer["download"]))
    assert api.ok("cas_urls", {})["download"] == []


@pytest.mark.parametrize("function, body, field", [
    ("cas_find_missing", {"digests": [Digest.of_bytes(b"x").to_wire()] * (MAX_BATCH + 1)}, "digests"),
    ("cas_find_missing", {}, "digests"),
    ("cas_find_missing", {"digests": [{"hash": "ABC", "size_bytes": 1}]}, "digests[0].hash"),
    ("cas_find_missing", {"digests": [{"hash": "a" * 64, "size_bytes": -1}]}, "digests[0].size_bytes"),
    ("cas_find_missing", {"digests": [{"hash": "a" * 64, "size_bytes": 1, "x": 1}]}, "digests[0].x"),
    ("cas_urls", {"upload": [{"hash": "a" * 64}]}, "upload[0].size_bytes"),
    ("cas_urls", {"download": [Digest.of_bytes(b"x").to_wire()] * (MAX_BATCH + 1)}, "download"),
    ("cas_urls", {"download": "a" * 64}, "download"),
])
def test_bad_digests_are_refused_naming_the_field(api, function, body, field):
    assert _error_field(api.post(function, body)) == field


def test_a_full_batch_of_lookups_answers(api):
    digests = [Digest.of_bytes(str(i).encode()) for i in range(MAX_BATCH)]
    _put(api, b"7")
    missing = _missing(api, digests)
    assert len(missing) == MAX_BATCH - 1 and Digest.of_bytes(b"7") not in missing


@pytest.mark.parametrize("role", ["bot", "user", "admin"])
def test_bots_users_and_admins_may_call(api, role):
    digest = _put(api, f"by {role}".encode(), role=role)
    assert _missing(api, [digest], role=role) == []
    assert api.ok("cas_urls", {"download": [digest.to_wire()]}, role=role)["download"][0]["url"]


@pytest.mark.parametrize("function", ["cas_find_missing", "cas_urls"])
def test_an_anonymous_caller_may_not(api, function):
    answer = api.post(function, {"digests": [], "upload": []}, role=None)
    assert answer.status_code == 401


# What a task's end reports of its files.

ROOT = {"digest": {"hash": "b" * 64, "size_bytes": 321}}
STATS = {
    "bot_overhead_secs": 0.25,
    "cas_download": {"duration_secs": 1.5, "items_cold": 3, "bytes_cold": 300, "items_hot": 7, "bytes_hot": 700},
    "cas_upload": {"duration_secs": 0.5, "items": 4, "bytes": 40, "items_uploaded": 1, "bytes_uploaded": 10},
}


def _running(api, body=None) -> tuple[str, str]:
    """A task claimed by bot-1: (task id, run id)."""
    task_id = api.ok("tasks_new", body or task_body())["task_id"]
    claim = api.ok("bot_claim", bot_body(task_id=task_id, slice=0, claim_id=uuid.uuid4().hex), role="bot")
    assert claim["cmd"] == "run", claim
    return task_id, claim["manifest"]["task_id"]


def _complete(api, run_id, **fields) -> requests.Response:
    return api.post("bot_task_update", bot_body(task_id=run_id, exit_code=0, duration=2.0, **fields), role="bot")


def test_a_completion_stores_its_output_root_and_performance_stats(api):
    task_id, run_id = _running(api)
    assert _complete(api, run_id, cas_output_root=ROOT, performance_stats=STATS).status_code == 200
    result = api.ok("task_result", {"task_id": task_id})
    assert result["state"] == "COMPLETED" and result["cas_output_root"] == ROOT
    assert result["performance_stats"] == STATS
    resent = _complete(api, run_id, cas_output_root=ROOT, performance_stats=STATS)
    assert resent.status_code == 200 and resent.json()["must_stop"] is False
    other_root = {"digest": {**ROOT["digest"], "size_bytes": 1}}
    assert _complete(api, run_id, cas_output_root=other_root).status_code == 409


def test_stats_are_optional_key_by_key_and_a_completion_may_carry_none(api):
    partial_id, partial_run = _running(api)
    assert _complete(api, partial_run, performance_stats={"cas_upload": {"items": 2}}).status_code == 200
    partial = api.ok("task_result", {"task_id": partial_id})
    assert partial["performance_stats"] == {"cas_upload": {"items": 2}} and partial["cas_output_root"] is None
    bare_id, bare_run = _running(api)
    assert _complete(api, bare_run).status_code == 200
    bare = api.ok("task_result", {"task_id": bare_id})
    assert bare["cas_output_root"] is None and bare["performance_stats"] is None


@pytest.mark.parametrize("fields, field", [
    ({"performance_stats": "fast"}, "performance_stats"),
    ({"performance_stats": {"isolated_download": {}}}, "performance_stats.isolated_download"),
    ({"performance_stats": {"bot_overhead_secs": -1}}, "performance_stats.bot_overhead_secs"),
    ({"performance_stats": {"bot_overhead_secs": True}}, "performance_stats.bot_overhead_secs"),
    ({"performance_stats": {"cas_download": {"items_cold": "3"}}}, "performance_stats.cas_download.items_cold"),
    ({"performance_stats": {"cas_upload": {"items": 1, "files": 1}}}, "performance_stats.cas_upload.files"),
    ({"performance_stats": {"cas_upload": 3}}, "performance_stats.cas_upload"),
    ({"cas_output_root": {"digest": {"hash": "B" * 64, "size_bytes": 1}}}, "cas_output_root.digest.hash"),
    ({"cas_output_root": {"hash": "b" * 64, "size_bytes": 1}}, "cas_output_root.hash"),
])
def test_bad_files_of_a_completion_are_refused_naming_the_field(api, fields, field):
    task_id, run_id = _running(api)
    assert _error_field(_complete(api, run_id, **fields)) == field
    assert api.ok("task_result", {"task_id": task_id})["state"] == "RUNNING"


def test_files_come_only_with_the_end_of_the_run(api):
    task_id, run_id = _running(api)
    update = api.post("bot_task_update", bot_body(task_id=run_id, cas_output_root=ROOT), role="bot")
    assert _error_field(update) == "cas_output_root"
    output = base64.b64encode(b"x").decode()
    update = api.post("bot_task_update", bot_body(task_id=run_id, output=output, performance_stats={}), role="bot")
    assert _error_field(update) == "performance_stats"


def test_a_deduped_task_gets_the_originals_output_root(api):
    body = task_body(command=["echo", "same"])
    body["task_slices"][0]["properties"]["idempotent"] = True
    first, run_id = _running(api, body)
    assert _complete(api, run_id, cas_output_root=ROOT, performance_stats=STATS).status_code == 200
    deduped = api.ok("tasks_new", body)["task_result"]
    assert deduped["deduped_from"] == first and deduped["state"] == "COMPLETED"
    assert deduped["cas_output_root"] == ROOT and deduped["performance_stats"] is None
    assert api.ok("task_result", {"task_id": deduped["task_id"]})["cas_output_root"] == ROOT


def test_missing_inputs_are_checked_as_digests(api):
    task_id, run_id = _running(api)
    bad = {"missing_cas": [{"hash": "a" * 64, "size_bytes": 1}, {"hash": "zz", "size_bytes": 1}]}
    refused = api.post("bot_task_error", bot_body(task_id=run_id, message="inputs", client_error=bad), role="bot")
    assert _error_field(refused) == "client_error.missing_cas[1].hash"
    not_a_list = {"missing_cas": {"hash": "a" * 64}}
    refused = api.post("bot_task_error", bot_body(task_id=run_id, client_error=not_a_list), role="bot")
    assert _error_field(refused) == "client_error.missing_cas"
    missing = [{"hash": "c" * 64, "size_bytes": 5}]
    api.ok("bot_task_error", bot_body(task_id=run_id, message="inputs", client_error={"missing_cas": missing}),
           role="bot")
    result = api.ok("task_result", {"task_id": task_id})
    assert result["state"] == "CLIENT_ERROR" and result["missing_cas"] == missing


def test_an_unreadable_signing_key_file_fails_naming_the_variable(tmp_path):
    (tmp_path / "key.json").write_text("{}")
    for path in (tmp_path / "key.json", tmp_path / "absent.json"):
        with pytest.raises(SettingsError, match="SWARMING_SIGNING_KEY_FILE"):
            cas.signer(str(path), "https://iamcredentials.googleapis.com")
