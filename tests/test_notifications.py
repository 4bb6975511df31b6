"""A task's end on Pub/Sub (functions/notifications.py), on the real stack:
the Firestore, Cloud Tasks and Pub/Sub emulators, timers delivered by the
Cloud Tasks emulator, and the messages received through a subscription on
the Pub/Sub emulator."""

import base64
import datetime
import json
import logging
import os
import time
import uuid
from typing import Any

import grpc
import pytest
from google.api_core import exceptions as gexc
from google.cloud import pubsub_v1
from google.pubsub_v1 import PublisherClient
from google.pubsub_v1.services.publisher.transports import PublisherGrpcTransport

from functions import notifications
from tests.builders import bot_body, task_body
from tests.grpc_faults import InjectedStatus
from tests.test_lifecycle import _claim, _result, _slice, _update, _wait_state
from tests.test_timer_faults import faults  # noqa: F401 (the fixture: Cloud Tasks refusing creates)

SECOND = datetime.timedelta(seconds=1)
TOKEN = "the-secret-auth-token"
#: Generous: a message comes about a second after the end.
RECEIVE_SECS = 30


class Topic:
    """A topic of the test's project on the Pub/Sub emulator, with a
    subscription that receives what is published there."""

    def __init__(self, project: str, name: str, create: bool = True):
        self.name = f"projects/{project}/topics/{name}"
        self._subscription = f"projects/{project}/subscriptions/{name}-{uuid.uuid4().hex[:8]}"
        self._subscriber = pubsub_v1.SubscriberClient()
        if create:
            self.create()

    def create(self) -> None:
        pubsub_v1.PublisherClient().create_topic(name=self.name)
        self._subscriber.create_subscription(name=self._subscription, topic=self.name)

    def pull(self, count: int, timeout: float = RECEIVE_SECS) -> list[tuple[dict[str, Any], dict[str, str]]]:
        """`count` messages (data, attributes), and then no other for 2 s."""
        received: list[Any] = []
        deadline = time.monotonic() + timeout
        while len(received) < count and time.monotonic() < deadline:
            received += self._pull()
        assert len(received) == count, received
        time.sleep(2)
        assert self._pull() == [], "more messages than tasks ended"
        return received

    def _pull(self) -> list[tuple[dict[str, Any], dict[str, str]]]:
        try:
            answer = self._subscriber.pull(subscription=self._subscription, max_messages=100, timeout=5)
        except gexc.DeadlineExceeded:
            return []
        if answer.received_messages:
            self._subscriber.acknowledge(subscription=self._subscription,
                                         ack_ids=[m.ack_id for m in answer.received_messages])
        return [(json.loads(m.message.data), dict(m.message.attributes)) for m in answer.received_messages]


@pytest.fixture
def topic(svc) -> Topic:
    return Topic(svc.settings.project, "task-ends")


@pytest.fixture
def fast_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every attempt after the first a second apart, not 2^n s."""
    monkeypatch.setattr(notifications, "MAX_DELAY_SECS", 1)


def _notified(topic: Topic, userdata: str = "", token: str = TOKEN, **fields: Any) -> dict[str, Any]:
    extra = {"pubsub_auth_token": token} if token else {}
    return task_body(pubsub_topic=topic.name, pubsub_userdata=userdata, **extra, **fields)


def _complete(api, task_id: str, exit_code: int = 0) -> dict[str, Any]:
    run_id = _claim(api, task_id)["task_id"]
    assert _update(api, run_id, exit_code=exit_code, duration=0.5).status_code == 200
    return _wait_state(api, task_id, {"COMPLETED"})


def test_a_completed_task_is_published_once_with_its_userdata_and_token(api, topic, caplog):
    caplog.set_level(logging.DEBUG)
    created = api.ok("tasks_new", _notified(topic, userdata='{"build": 42}'))
    task_id = created["task_id"]
    ended = _complete(api, task_id)
    [(data, attributes)] = topic.pull(1)
    assert data == {"task_id": task_id, "userdata": '{"build": 42}'}
    assert attributes == {"auth_token": TOKEN}
    request = api.ok("task_request", {"task_id": task_id})
    assert request["pubsub_topic"] == topic.name and request["pubsub_userdata"] == '{"build": 42}'
    # The token is the message's alone: never in a reply, a result or a log.
    for shown in (created, request, ended, api.ok("task_result", {"task_id": task_id})):
        assert TOKEN not in json.dumps(shown)
    assert TOKEN not in caplog.text
    assert ended["notification_error"] is None


def test_each_way_to_end_is_published_once(api, svc, clock, topic):
    canceled = api.ok("tasks_new", _notified(topic, userdata="canceled"))["task_id"]
    assert api.ok("task_cancel", {"task_id": canceled})["canceled"]
    no_resource = api.ok("tasks_new", _notified(topic, userdata="no resource", task_slices=[
        _slice({"pool": "nobody"}, wait=False)]))
    assert no_resource["task_result"]["state"] == "NO_RESOURCE"
    clock.offset = -29 * SECOND  # created 29 s "ago": its 30 s expiration falls due in about 1 s
    expired = api.ok("tasks_new", _notified(topic, userdata="expired", token="", task_slices=[
        _slice({"pool": "p"}, expiration=30)]))["task_id"]
    clock.offset = datetime.timedelta()
    _wait_state(api, expired, {"EXPIRED"})
    received = topic.pull(3)
    assert sorted((data["userdata"], data["task_id"], attributes) for data, attributes in received) == [
        ("canceled", canceled, {"auth_token": TOKEN}), ("expired", expired, {}),
        ("no resource", no_resource["task_id"], {"auth_token": TOKEN})]


def test_a_run_killed_lost_or_timed_out_is_published_once(api, topic):
    killed = api.ok("tasks_new", _notified(topic, userdata="killed"))["task_id"]
    killed_run = _claim(api, killed)["task_id"]
    assert _update(api, killed_run).status_code == 200
    assert api.ok("task_cancel", {"task_id": killed, "kill_running": True})["canceled"]
    assert _update(api, killed_run, exit_code=-15, duration=2.0).status_code == 200
    died = api.ok("tasks_new", _notified(topic, userdata="bot died"))["task_id"]
    died_run = _claim(api, died, bot_id="bot-2")["task_id"]
    assert _update(api, died_run, bot_id="bot-2", output=base64.b64encode(b"x").decode()).status_code == 200
    assert api.ok("bot_task_error", bot_body("bot-2", task_id=died_run, message="disk on fire"),
                  role="bot")["state"] == "BOT_DIED"
    timed_out = api.ok("tasks_new", _notified(topic, userdata="timed out"))["task_id"]
    timed_out_run = _claim(api, timed_out, bot_id="bot-3")["task_id"]
    assert _update(api, timed_out_run, bot_id="bot-3", exit_code=-9, duration=60.0,
                   hard_timeout=True).status_code == 200
    assert [_result(api, t)["state"] for t in (killed, died, timed_out)] == ["KILLED", "BOT_DIED", "TIMED_OUT"]
    received = topic.pull(3)
    assert sorted((data["userdata"], data["task_id"]) for data, _ in received) == [
        ("bot died", died), ("killed", killed), ("timed out", timed_out)]


def test_a_deduplicated_task_is_published_and_saved_what_its_owner_cost(api, topic):
    body = _notified(topic, userdata="owner")
    body["task_slices"][0]["properties"]["idempotent"] = True
    owner = api.ok("tasks_new", body)["task_id"]
    run_id = _claim(api, owner)["task_id"]
    assert _update(api, run_id, exit_code=0, duration=0.5).status_code == 200
    body["pubsub_userdata"] = "deduped"
    deduped = api.ok("tasks_new", body)
    assert deduped["task_result"]["state"] == "COMPLETED" and deduped["task_result"]["deduped_from"] == owner
    received = topic.pull(2)
    assert sorted(data["userdata"] for data, _ in received) == ["deduped", "owner"]
    assert {data["task_id"] for data, _ in received} == {owner, deduped["task_id"]}


class PublishFaults(grpc.UnaryUnaryClientInterceptor):
    """Between the service's publisher and the emulator: the next `refuse`
    publishes never reach it (UNAVAILABLE)."""

    def __init__(self) -> None:
        self.refuse = 0
        self.outcomes: list[str] = []

    def intercept_unary_unary(self, continuation, details, request):
        if details.method.endswith("/Publish") and self.refuse:
            self.refuse -= 1
            self.outcomes.append("refused")
            return InjectedStatus(grpc.StatusCode.UNAVAILABLE)
        outcome = continuation(details, request)
        self.outcomes.append(outcome.code().name)
        return outcome


def test_a_publish_that_failed_is_retried_until_it_succeeds(api, svc, topic, monkeypatch, fast_retries):
    refusals = PublishFaults()
    channel = grpc.intercept_channel(grpc.insecure_channel(os.environ["PUBSUB_EMULATOR_HOST"]), refusals)
    client = PublisherClient(transport=PublisherGrpcTransport(channel=channel))
    monkeypatch.setattr(svc, "publisher", notifications.Publisher(client))
    refusals.refuse = 30  # More than one publish's own retries (10 s): its next attempt, a timer, succeeds.
    task_id = api.ok("tasks_new", _notified(topic, userdata="retried"))["task_id"]
    assert api.ok("task_cancel", {"task_id": task_id})["canceled"]
    [(data, attributes)] = topic.pull(1, timeout=60)
    assert data == {"task_id": task_id, "userdata": "retried"} and attributes == {"auth_token": TOKEN}
    assert refusals.outcomes[-1] == "OK" and "refused" in refusals.outcomes


def test_a_topic_created_after_the_first_attempt_gets_the_message(api, svc, fast_retries):
    late = Topic(svc.settings.project, "late-topic", create=False)
    task_id = api.ok("tasks_new", _notified(late, userdata="late"))["task_id"]
    assert api.ok("task_cancel", {"task_id": task_id})["canceled"]
    time.sleep(2.5)  # The first attempt (a second after the end) finds no topic.
    late.create()
    [(data, _)] = late.pull(1)
    assert data == {"task_id": task_id, "userdata": "late"}
    assert _result(api, task_id)["notification_error"] is None


def test_a_topic_that_never_exists_ends_in_an_error_on_the_task(api, svc, fast_retries):
    missing = Topic(svc.settings.project, "never-created", create=False)
    task_id = api.ok("tasks_new", _notified(missing))["task_id"]
    assert api.ok("task_cancel", {"task_id": task_id})["canceled"]
    deadline = time.monotonic() + 30
    while (error := _result(api, task_id)["notification_error"]) is None:
        assert time.monotonic() < deadline, "no notification_error"
        time.sleep(0.2)
    assert error.startswith(f"not published after {notifications.MISSING_TOPIC_ATTEMPTS} attempts: "
                            f"{missing.name}: NotFound")
    assert TOKEN not in error
    assert _result(api, task_id)["state"] == "CANCELED"


def test_an_end_whose_timer_cannot_be_made_is_not_committed(api, topic, faults):  # noqa: F811 (the fixture)
    task_id = api.ok("tasks_new", _notified(topic, userdata="outbox"))["task_id"]
    faults.refuse = True  # Cloud Tasks refuses every create: no notification timer can be armed.
    refused = api.post("task_cancel", {"task_id": task_id})
    assert refused.status_code == 503, refused.text
    assert _result(api, task_id)["state"] == "PENDING"  # No end without its notification.
    faults.refuse = False
    assert api.ok("task_cancel", {"task_id": task_id})["canceled"]
    [(data, _)] = topic.pull(1)
    assert data == {"task_id": task_id, "userdata": "outbox"}


def test_a_timer_before_the_end_looks_again_and_publishes_after_it(api, topic):
    task_id = api.ok("tasks_new", _notified(topic, userdata="early"))["task_id"]
    assert api.ok("timer_notify", {"task_id": task_id}, role="admin") == {"done": "not ended yet"}
    assert api.ok("task_cancel", {"task_id": task_id})["canceled"]
    # The end's own timer, and the early one's next look: at least once, here twice.
    received = topic.pull(2)
    assert [data for data, _ in received] == [{"task_id": task_id, "userdata": "early"}] * 2


@pytest.mark.parametrize("body,field", [
    ({"task_id": "nope"}, "task_id"),
    ({"task_id": "5cfcee8008757010", "attempt": -1}, "attempt"),
    ({"task_id": "5cfcee8008757010", "missing": notifications.MISSING_TOPIC_ATTEMPTS + 1}, "missing"),
    ({"task_id": "5cfcee8008757010", "bogus": 1}, "bogus"),
])
def test_a_malformed_notify_timer_is_400_naming_the_field(api, body, field):
    response = api.post("timer_notify", body, role="admin")
    assert response.status_code == 400, response.text
    assert response.json()["error"]["field"] == field


def test_only_the_timers_may_call_it(api):
    response = api.post("timer_notify", {"task_id": "5cfcee8008757010"}, role="user")
    assert response.status_code == 403, response.text


def test_a_timer_of_an_unknown_or_unnotified_task_does_nothing(api):
    assert api.ok("timer_notify", {"task_id": "5cfcee8008757010"}, role="admin") == {"done": "no such task"}
    plain = api.ok("tasks_new", task_body())["task_id"]
    assert api.ok("timer_notify", {"task_id": plain}, role="admin") == {"done": "no notification asked"}
