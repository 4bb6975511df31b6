"""The bot side of the thin path through HTTP: poll, claim, updates."""

import base64
import concurrent.futures
import uuid

from functions import stdout
from tests.builders import bot_body, task_body


def _claim(api, task_id, bot_id="bot-1", claim_id=None, **dims):
    body = bot_body(bot_id, task_id=task_id, slice=0, claim_id=claim_id or uuid.uuid4().hex)
    body["dimensions"].update(dims)
    return api.ok("bot_claim", body, role="bot")


def _update(api, run_id, bot_id="bot-1", data=b"", offset=0, **fields):
    body = bot_body(bot_id, task_id=run_id, output=base64.b64encode(data).decode(),
                    output_chunk_start=offset, **fields)
    return api.post("bot_task_update", body, role="bot")


def _stdout(api, task_id, **params):
    answer = api.ok("task_stdout", {"task_id": task_id, **params})
    return base64.b64decode(answer["output"])


def test_handshake_registers_the_bot(api, svc):
    answer = api.ok("bot_handshake", bot_body("bot-7"), role="bot")
    assert answer["server_version"] == "dev"
    bot = api.ok("bot_get", {"bot_id": "bot-7"})
    assert {"key": "pool", "value": ["default"]} in bot["dimensions"]
    assert bot["first_seen_ts"] == bot["last_seen_ts"] and not bot["is_dead"] and not bot["is_busy"]


def test_idle_poll_sleeps_with_backoff(api):
    answer = api.ok("bot_poll", bot_body(state={"sleep_streak": 20}), role="bot")
    assert answer["cmd"] == "sleep"
    assert answer["duration"] in (1.0,) or 54 <= answer["duration"] <= 66


def test_poll_offers_only_matching_tasks_in_priority_order(api):
    low = api.ok("tasks_new", task_body(priority=200))["task_id"]
    high = api.ok("tasks_new", task_body(priority=10), role="admin")["task_id"]
    gpu = api.ok("tasks_new", task_body(dimensions={"pool": "default", "gpu": "nvidia"}))["task_id"]
    other_pool = api.ok("tasks_new", task_body(dimensions={"pool": "other"}))["task_id"]
    answer = api.ok("bot_poll", bot_body(), role="bot")
    assert answer["cmd"] == "claim"
    assert [c["task_id"] for c in answer["candidates"]] == [high, low]
    assert gpu not in str(answer) and other_pool not in str(answer)


def test_claim_runs_once_and_marks_running(api):
    task_id = api.ok("tasks_new", task_body(command=["echo", "x"]))["task_id"]
    answer = _claim(api, task_id)
    assert answer["cmd"] == "run"
    manifest = answer["manifest"]
    assert manifest["task_id"] == task_id[:-1] + "1"
    assert manifest["command"] == ["echo", "x"] and manifest["hard_timeout"] == 60
    result = api.ok("task_result", {"task_id": task_id})
    assert result["state"] == "RUNNING" and result["bot_id"] == "bot-1" and result["try_number"] == 1
    assert api.ok("bot_poll", bot_body("bot-2"), role="bot")["cmd"] == "sleep"


def test_claim_race_has_exactly_one_winner(api):
    task_id = api.ok("tasks_new", task_body())["task_id"]
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda i: _claim(api, task_id, f"bot-{i}"), range(8)))
    assert sorted(a["cmd"] for a in answers) == ["run"] + ["skip"] * 7
    winner = next(a for a in answers if a["cmd"] == "run")["manifest"]["bot_id"]
    assert api.ok("task_result", {"task_id": task_id})["bot_id"] == winner


def test_retried_claim_gets_the_same_manifest_others_skip(api):
    task_id = api.ok("tasks_new", task_body())["task_id"]
    first = _claim(api, task_id, claim_id="c-1")
    retry = api.post("bot_claim", bot_body(task_id=task_id, slice=0, claim_id="c-1", session=first["session"]),
                     role="bot")
    assert retry.json()["manifest"] == first["manifest"] and first["cmd"] == "run"
    assert int(retry.headers["X-Firestore-Reads"]) <= 3 and retry.headers["X-Firestore-Writes"] == "0"
    assert _claim(api, task_id, claim_id="c-2")["cmd"] == "skip"
    assert _claim(api, task_id, bot_id="bot-2", claim_id="c-1")["cmd"] == "skip"


def test_bot_cannot_claim_a_task_it_does_not_match(api):
    task_id = api.ok("tasks_new", task_body(dimensions={"pool": "default", "gpu": "nvidia"}))["task_id"]
    answer = _claim(api, task_id)
    assert answer["cmd"] == "skip" and "dimensions" in answer["reason"]
    assert api.ok("task_result", {"task_id": task_id})["state"] == "PENDING"
    assert _claim(api, task_id, gpu=["nvidia"])["cmd"] == "run"


def test_claim_costs_at_most_three_reads_and_writes(api):
    task_id = api.ok("tasks_new", task_body())["task_id"]
    session = api.ok("bot_handshake", bot_body(), role="bot")["session"]
    response = api.post("bot_claim", bot_body(task_id=task_id, slice=0, claim_id="c", session=session), role="bot")
    assert response.json()["cmd"] == "run"
    # The pending slice and the request; the slice deleted, the result and the bot's entry.
    assert response.headers["X-Firestore-Reads"] == "2" and response.headers["X-Firestore-Writes"] == "3"


def _running(api):
    task_id = api.ok("tasks_new", task_body())["task_id"]
    return task_id, _claim(api, task_id)["manifest"]["task_id"]


def test_stdout_resent_and_out_of_order_is_stored_exactly(api):
    task_id, run_id = _running(api)
    assert _update(api, run_id, data=b"line 2\n", offset=7).status_code == 200
    assert _update(api, run_id, data=b"line 1\n", offset=0).status_code == 200
    assert _update(api, run_id, data=b"line 1\n", offset=0).status_code == 200
    assert _update(api, run_id, data=b"line 3\n", offset=14).status_code == 200
    assert _update(api, run_id, data=b"line 2\n", offset=7).status_code == 200
    assert _stdout(api, task_id) == b"line 1\nline 2\nline 3\n"
    assert _stdout(api, task_id, offset=7, length=6) == b"line 2"


def test_stdout_across_chunk_boundaries(api):
    task_id, run_id = _running(api)
    data = bytes(range(256)) * (stdout.CHUNK_SIZE * 2 // 256 + 10)
    half = len(data) // 2
    assert _update(api, run_id, data=data[:half]).status_code == 200
    assert _update(api, run_id, data=data[half:], offset=half).status_code == 200
    assert _stdout(api, task_id) == data
    assert _stdout(api, task_id, offset=stdout.CHUNK_SIZE - 5, length=10) == data[stdout.CHUNK_SIZE - 5:][:10]


def test_completion_and_duplicate_completion(api):
    task_id, run_id = _running(api)
    response = _update(api, run_id, data=b"bye\n", exit_code=3, duration=1.5)
    assert response.status_code == 200 and response.json()["must_stop"] is False
    result = api.ok("task_result", {"task_id": task_id})
    assert (result["state"], result["exit_code"], result["duration"], result["failure"]) == ("COMPLETED", 3, 1.5, True)
    assert result["completed_ts"]
    again = _update(api, run_id, data=b"bye\n", exit_code=3, duration=1.5)
    assert again.status_code == 200
    assert api.ok("task_result", {"task_id": task_id})["completed_ts"] == result["completed_ts"]
    late = _update(api, run_id, data=b"more", offset=4)
    assert late.status_code == 409  # past the 4 bytes the end said the stdout has
    assert _stdout(api, task_id) == b"bye\n"


def test_hard_timeout_is_timed_out(api):
    task_id, run_id = _running(api)
    assert _update(api, run_id, exit_code=-15, duration=60, hard_timeout=True).status_code == 200
    assert api.ok("task_result", {"task_id": task_id})["state"] == "TIMED_OUT"


def test_update_from_another_bot_is_409(api):
    task_id, run_id = _running(api)
    response = _update(api, run_id, bot_id="intruder", data=b"evil")
    assert response.status_code == 409
    assert _stdout(api, task_id) == b""


def test_update_of_an_unknown_run_is_404(api):
    response = _update(api, "5a5a5a5a5a5a5a51", data=b"x")
    assert response.status_code == 404 and "no task 5a5a5a5a5a5a5a50" in response.json()["error"]["message"]


def test_bad_updates_are_400(api):
    task_id, run_id = _running(api)
    assert _update(api, run_id, exit_code=0).status_code == 400
    assert _update(api, task_id).status_code == 400
    assert _update(api, run_id, offset=-1).status_code == 400
    body = bot_body(task_id=run_id, output="***")
    assert api.post("bot_task_update", body, role="bot").status_code == 400
    assert api.post("bot_poll", {"dimensions": {"pool": ["x"]}}, role="bot").json()["error"]["field"] == "dimensions.id"


def test_malformed_claims_and_stdout_reads_are_400(api):
    task_id = api.ok("tasks_new", task_body())["task_id"]
    for fields, field in [({"task_id": "nope"}, "task_id"), ({"task_id": task_id[:-1] + "1"}, "task_id"),
                          ({"task_id": task_id, "slice": -1}, "slice"), ({"task_id": task_id, "slice": "x"}, "slice"),
                          ({"task_id": task_id, "claim_id": ""}, "claim_id")]:
        body = bot_body(**{"slice": 0, "claim_id": "c", **fields})
        response = api.post("bot_claim", body, role="bot")
        assert response.status_code == 400, fields
        assert response.json()["error"]["message"].startswith(field)
    for params in [{"offset": -1}, {"offset": "x"}, {"length": 0}]:
        assert api.post("task_stdout", {"task_id": task_id, **params}).status_code == 400, params
    assert api.ok("task_result", {"task_id": task_id})["state"] == "PENDING"  # nothing was claimed


def test_each_bot_gets_exactly_what_it_matches_most_urgent_first(api):
    def task(priority, **dims):
        body = task_body(priority=priority, dimensions={"pool": "default", **dims})
        return api.ok("tasks_new", body, role="admin")["task_id"]

    linux_only, linux_or_mac, gpu = task(10, os="Linux"), task(20, os="Linux|Mac"), task(30, gpu="nvidia")
    anyone, mac_only, windows = task(40), task(50, os="Mac"), task(5, os="Windows")
    bots = {"linux": {"os": ["Linux"]}, "mac": {"os": ["Mac"]}, "gpu": {"os": ["Linux"], "gpu": ["nvidia"]}}
    got: dict[str, list[str]] = {name: [] for name in bots}
    for _ in range(3):  # rounds: each bot in turn takes its most urgent candidate and finishes it
        for name, dims in bots.items():
            body = bot_body(name)
            body["dimensions"].update(dims)
            answer = api.ok("bot_poll", body, role="bot")
            if answer["cmd"] == "sleep":
                continue
            claim = api.ok("bot_claim", {**body, **answer["candidates"][0], "claim_id": name}, role="bot")
            got[name].append(answer["candidates"][0]["task_id"])
            api.ok("bot_task_update", {**body, "task_id": claim["manifest"]["task_id"], "exit_code": 0,
                                       "duration": 0.1}, role="bot")
    assert got == {"linux": [linux_only, anyone], "mac": [linux_or_mac, mac_only], "gpu": [gpu]}
    assert api.ok("task_result", {"task_id": windows})["state"] == "PENDING"
