"""Per-task timers on Cloud Tasks: one HTTP task calls a `timer_*` function at
a given time with a small JSON body, authenticated by an OIDC token.

The outbox rule (DESIGN.md §7): a timer is created *before* the Firestore
commit it guards, under a deterministic name, so a retried request creates it
once (`ALREADY_EXISTS` is success), and its handler re-reads the documents and
does nothing when the state moved on.

A timer is named by what it is for and its due second: (handler, task, try or
slice, second). So a task has at most one timer per kind and due second, however
many deliveries or requests arm it; its body carries that second (`due`), so a
delivery that finds it came early arms the next second, never its own name
(which is taken until an hour after it is delivered).
"""

import dataclasses
import datetime
import hashlib
import json
import logging
import math
from typing import Any

from google.api_core import exceptions as gexc
from google.api_core import retry as retries
from google.cloud import tasks_v2
from google.protobuf import timestamp_pb2

from functions import ops
from functions.errors import Unavailable

logger = logging.getLogger(__name__)

#: A create's calls to Cloud Tasks take CALL_SECS at most (the client's default
#: is 20 s), and none starts after CREATE_SECS: an unreachable Cloud Tasks is a
#: 503 within CREATE_SECS + CALL_SECS, never a request hung for its whole timeout.
CALL_SECS = 2.0
CREATE_SECS = 4.0
#: The last second a timer's body may say it was due: a Timestamp's last
#: (9999-12-31T23:59:59), less the one an early delivery adds.
LAST_SECOND = 253_402_300_798
#: Cloud Tasks schedules a task at most 30 days ahead.
HORIZON = datetime.timedelta(days=30)
#: A create is retried when its answer may have been lost: its name makes the
#: retry harmless, and ALREADY_EXISTS then means the first try created it.
_RETRY = retries.Retry(predicate=retries.if_exception_type(gexc.DeadlineExceeded, gexc.ServiceUnavailable),
                       initial=0.2, maximum=1.0, multiplier=2.0, timeout=CREATE_SECS)


@dataclasses.dataclass(frozen=True)
class TimerSettings:
    #: projects/P/locations/L/queues/Q
    queue: str
    #: The base URL the functions are reached at (`BASE_URL`).
    functions_url: str
    #: The identity the OIDC tokens are minted for; `timer_*` accept only it.
    service_account: str
    #: host:port of a local Cloud Tasks emulator; empty in production.
    emulator_host: str = ""


def make_client(settings: TimerSettings) -> tasks_v2.CloudTasksClient:
    if not settings.emulator_host:
        return tasks_v2.CloudTasksClient()
    import grpc  # Only the emulator needs a hand-made channel.
    from google.cloud.tasks_v2.services.cloud_tasks.transports import CloudTasksGrpcTransport

    channel = grpc.insecure_channel(settings.emulator_host)
    return tasks_v2.CloudTasksClient(transport=CloudTasksGrpcTransport(channel=channel))


def timer_name(handler: str, key: str) -> str:
    """A task id from what the timer is for: the same key, the same name. A
    hash, as Cloud Tasks is slow on ids with sequential prefixes (task ids follow time)."""
    return f"{handler}-{hashlib.sha256(key.encode()).hexdigest()[:40]}"


def due_second(due: datetime.datetime, delivered: int | None = None) -> int:
    """The second a timer for `due` fires at: `due` rounded up, so it never
    fires before; after `delivered`, the second of the timer being delivered
    when that one came early."""
    second = math.ceil(due.timestamp())
    return second if delivered is None else max(second, delivered + 1)


class Timers:
    def __init__(self, client: tasks_v2.CloudTasksClient, settings: TimerSettings):
        self._client = client
        self.settings = settings

    def arm(self, handler: str, subject: str, due: datetime.datetime, body: dict[str, Any],
            delivered: int | None = None) -> int:
        """Asks for `handler` to be called with `body` (and `due`) at `due`'s
        second (`due_second`), once per `subject` (a task and its try or slice)
        and second; returns that second."""
        second = due_second(due, delivered)
        self._create(handler, f"{subject}:{second}", second, {**body, "due": second})
        return second

    def _create(self, handler: str, key: str, second: int, body: dict[str, Any]) -> None:
        """Creates the timer; ALREADY_EXISTS (a request or a try before this
        one created it) is success. Unavailable (503) when Cloud Tasks did not
        answer in time."""
        url = f"{self.settings.functions_url.rstrip('/')}/{handler}"
        task = tasks_v2.Task(
            name=f"{self.settings.queue}/tasks/{timer_name(handler, key)}",
            schedule_time=timestamp_pb2.Timestamp(seconds=second),
            http_request=tasks_v2.HttpRequest(
                http_method=tasks_v2.HttpMethod.POST, url=url,
                headers={"Content-Type": "application/json"}, body=json.dumps(body).encode(),
                oidc_token=tasks_v2.OidcToken(service_account_email=self.settings.service_account, audience=url),
            ),
        )
        ops.cloud_task()
        try:
            self._client.create_task(parent=self.settings.queue, task=task, retry=_RETRY, timeout=CALL_SECS)
        except gexc.AlreadyExists:
            pass
        except gexc.RetryError as e:  # Every try timed out or found it unavailable.
            # The cause (addresses, gRPC's text) goes to the log, not to the caller.
            logger.warning("timer %s %s not armed: %s", handler, key, e)
            raise Unavailable(f"Cloud Tasks did not answer: timer {handler} not armed") from e
