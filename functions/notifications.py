"""A task's end, announced on Pub/Sub (the reference's notifications).

A request with `pubsub_topic` gets one message there when its task ends,
whatever the final state: data `{"task_id", "userdata"}` (JSON), attribute
`auth_token` when the request gave `pubsub_auth_token`.

At least once, never lost, through the outbox rule (DESIGN.md §7): the commit
that ends the task is preceded by the creation of a `timer_notify` Cloud
Task (functions.store calls `arm` for it), so no end commits without its
timer. The timer's handler (`deliver`) re-reads the task and publishes; when
Pub/Sub fails it arms the next attempt with a growing delay, until it
succeeds. A topic that does not exist (or refuses the message) is tried
MISSING_TOPIC_ATTEMPTS times, then the task's result records why in
`notification_error`. A timer that finds the task not ended yet (it came
before the commit, or the commit failed and the task lives on) looks again
a few times: a task that ends later arms its own timer.

The auth token is kept in a document of its own (store.PUBSUB_TOKENS) that
only `deliver` reads; it is never logged nor answered.
"""

import datetime
import json
import logging
from typing import Any

from google.api_core import exceptions as gexc
from google.api_core import retry as retries
from google.pubsub_v1 import PublisherClient, PubsubMessage

from functions import transitions
from functions.context import Context
from functions.timers import Timers

logger = logging.getLogger(__name__)

NOTIFY = "timer_notify"
#: Deliveries that found the topic missing (or refusing the message) before
#: the notification is given up and recorded as an error on the task.
MISSING_TOPIC_ATTEMPTS = 5
#: Deliveries that found the task not ended yet before this chain stops.
NOT_ENDED_ATTEMPTS = 5
#: The delay before attempt n + 1 is 2^n s, at most this.
MAX_DELAY_SECS = 600
#: The most of Pub/Sub's answer kept in `notification_error`.
MAX_REASON = 1000
#: How long one publish may take, its retries within included.
PUBLISH_SECS = 10.0
#: Answers that will not change by retrying soon: the topic or the message is wrong.
_REFUSED = (gexc.NotFound, gexc.PermissionDenied, gexc.InvalidArgument)
_RETRY = retries.Retry(predicate=retries.if_exception_type(gexc.ServiceUnavailable, gexc.DeadlineExceeded),
                       initial=0.2, maximum=2.0, multiplier=2.0, timeout=PUBLISH_SECS)


class Publisher:
    """Publishes one message and waits for Pub/Sub's answer."""

    def __init__(self, client: PublisherClient):
        self._client = client

    def publish(self, topic: str, data: bytes, attributes: dict[str, str]) -> None:
        self._client.publish(topic=topic, messages=[PubsubMessage(data=data, attributes=attributes)],
                             retry=_RETRY, timeout=PUBLISH_SECS)


def arm(timers: Timers, task_id: str, now: datetime.datetime, attempt: int = 0, missing: int = 0,
        delivered: int | None = None) -> int:
    """The notification's attempt `attempt`, due 2^attempt s from now (1 s
    for the first: after the commit it precedes); the second it fires at."""
    due = now + datetime.timedelta(seconds=min(2 ** attempt, MAX_DELAY_SECS))
    return timers.arm(NOTIFY, f"{task_id}:{attempt}", due,
                      {"task_id": task_id, "attempt": attempt, "missing": missing}, delivered)


def message(task_id: str, userdata: str) -> bytes:
    """What the reference sends: the task id and the request's userdata."""
    return json.dumps({"task_id": task_id, "userdata": userdata}).encode()


def deliver(ctx: Context, publisher: Publisher, task_id: str, attempt: int, missing: int,
            now: datetime.datetime, delivered: int | None = None) -> dict[str, Any]:
    """`timer_notify`: publishes the end of the task, or arms the next attempt."""
    found = ctx.store.get_task(task_id)
    if found is None:
        return {"done": "no such task"}
    result, request = found
    if not request.pubsub_topic:
        return {"done": "no notification asked"}
    if not result.state.is_final:
        if attempt + 1 >= NOT_ENDED_ATTEMPTS:
            return {"done": "the task has not ended"}
        arm(ctx.timers, task_id, now, attempt + 1, missing, delivered)
        return {"done": "not ended yet"}
    token = ctx.store.get_pubsub_token(task_id) if result.notify_token else None
    try:
        publisher.publish(request.pubsub_topic, message(task_id, request.pubsub_userdata),
                          {"auth_token": token} if token else {})
    except _REFUSED as e:
        reason = f"{request.pubsub_topic}: {type(e).__name__}: {e.message}"
        return _refused(ctx, task_id, reason.replace(token, "<auth_token>") if token else reason, attempt,
                        missing + 1, now, delivered)
    except (gexc.GoogleAPICallError, gexc.RetryError) as e:
        logger.warning("task %s: publishing its end failed (attempt %d): %s", task_id, attempt, type(e).__name__)
        arm(ctx.timers, task_id, now, attempt + 1, missing, delivered)
        return {"done": "publish failed; retrying"}
    return {"done": "published"}


def _refused(ctx: Context, task_id: str, reason: str, attempt: int, missing: int, now: datetime.datetime,
             delivered: int | None) -> dict[str, Any]:
    """Pub/Sub refused the message (`reason`, never with the token): the
    next attempt, or after the last, the reason on the task's result."""
    reason = reason[:MAX_REASON]
    if missing < MISSING_TOPIC_ATTEMPTS:
        arm(ctx.timers, task_id, now, attempt + 1, missing, delivered)
        return {"done": f"refused ({missing} of {MISSING_TOPIC_ATTEMPTS}); retrying"}
    logger.warning("task %s: its end was not published after %d attempts: %s", task_id, missing, reason)
    batch = ctx.store.batch()
    batch.update_result(task_id, transitions.notification_failed(f"not published after {missing} attempts: {reason}"))
    batch.commit()
    return {"done": "gave up"}
