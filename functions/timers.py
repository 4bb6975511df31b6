"""Per-task timers on Cloud Tasks: one HTTP task calls a `timer_*` function at
a given time with a small JSON body, authenticated by an OIDC token.

The outbox rule (DESIGN.md §7): a timer is created *before* the Firestore
commit it guards, under a deterministic name (a hash of what it is for), so a
retried request creates it once (`ALREADY_EXISTS` is success), and its handler
re-reads the documents and does nothing when the state moved on.
"""

import dataclasses
import datetime
import hashlib
import json
from typing import Any

from google.api_core import exceptions as gexc
from google.cloud import tasks_v2
from google.protobuf import timestamp_pb2

from functions import ops


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
    """A task id from what the timer is for: the same key, the same name."""
    return f"{handler}-{hashlib.sha256(key.encode()).hexdigest()[:40]}"


class Timers:
    def __init__(self, client: tasks_v2.CloudTasksClient, settings: TimerSettings):
        self._client = client
        self._settings = settings

    def schedule(self, handler: str, key: str, at: datetime.datetime, body: dict[str, Any]) -> None:
        """Asks for `handler` to be called with `body` at `at`, once per `key`."""
        url = f"{self._settings.functions_url.rstrip('/')}/{handler}"
        schedule_time = timestamp_pb2.Timestamp()
        schedule_time.FromDatetime(at)
        task = tasks_v2.Task(
            name=f"{self._settings.queue}/tasks/{timer_name(handler, key)}",
            schedule_time=schedule_time,
            http_request=tasks_v2.HttpRequest(
                http_method=tasks_v2.HttpMethod.POST, url=url,
                headers={"Content-Type": "application/json"}, body=json.dumps(body).encode(),
                oidc_token=tasks_v2.OidcToken(service_account_email=self._settings.service_account,
                                              audience=url),
            ),
        )
        ops.cloud_task()
        try:
            self._client.create_task(parent=self._settings.queue, task=task)
        except gexc.AlreadyExists:
            pass  # Created by an earlier try of the same request.
