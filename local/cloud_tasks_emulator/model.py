"""The records the emulator keeps for queues and tasks, built from the
requests' messages and turned back into messages for answers (see messages)."""

import collections
import dataclasses
from typing import Self

from google.cloud import tasks_v2
from google.rpc import status_pb2

from local.cloud_tasks_emulator import config
from local.cloud_tasks_emulator.errors import InvalidArgument, Unimplemented
from local.cloud_tasks_emulator.messages import (AttemptPb, HttpRequestPb, OidcTokenPb, QueuePb, RateLimitsPb,
                                                  TaskPb, duration, timestamp)
from local.cloud_tasks_emulator.retry import RetryPolicy

USER_AGENT = "Google-Cloud-Tasks"
#: Headers that Cloud Tasks computes itself or keeps for Google, whatever the task says.
DROPPED_HEADER_PREFIXES = ("x-google-", "x-appengine-")
DROPPED_HEADERS = {"host", "content-length", "user-agent"}
BODY_METHODS = {tasks_v2.HttpMethod.POST, tasks_v2.HttpMethod.PUT, tasks_v2.HttpMethod.PATCH}

@dataclasses.dataclass(frozen=True)
class RateLimits:
    max_dispatches_per_second: float
    max_concurrent_dispatches: int

    @classmethod
    def from_proto(cls, proto: RateLimitsPb, default_concurrency: int) -> Self:
        if proto.max_dispatches_per_second < 0:
            raise InvalidArgument("RateLimits.maxDispatchesPerSecond cannot be negative.")
        if proto.max_dispatches_per_second > config.MAX_DISPATCHES_PER_SECOND:
            raise InvalidArgument("RateLimits.maxDispatchesPerSecond must be less than or equal to 500.")
        if proto.max_concurrent_dispatches < 0:
            raise InvalidArgument("RateLimits.maxConcurrentDispatches cannot be negative.")
        if proto.max_concurrent_dispatches > config.MAX_CONCURRENT_DISPATCHES:
            raise InvalidArgument("RateLimits.maxConcurrentDispatches must be less than or equal to 5000.")
        return cls(proto.max_dispatches_per_second or config.DEFAULT_MAX_DISPATCHES_PER_SECOND,
                   proto.max_concurrent_dispatches or default_concurrency)

    def to_proto(self) -> RateLimitsPb:
        return RateLimitsPb(max_dispatches_per_second=self.max_dispatches_per_second,
                            max_burst_size=config.DEFAULT_MAX_BURST_SIZE,
                            max_concurrent_dispatches=self.max_concurrent_dispatches)


@dataclasses.dataclass(frozen=True)
class HttpTarget:
    url: str
    method: tasks_v2.HttpMethod
    headers: dict[str, str]
    body: bytes
    oidc_email: str | None
    #: Empty when the task names none: the URL is then the audience, as in production.
    oidc_audience: str

    @classmethod
    def from_proto(cls, proto: HttpRequestPb) -> Self:
        url = proto.url
        if not url:
            raise InvalidArgument("HttpRequest.url is required.")
        if not url.startswith(("http://", "https://")):
            raise InvalidArgument("HttpTarget.url must start with 'http://' or 'https://'.")
        if len(url) > config.MAX_URL_LENGTH:
            raise InvalidArgument(f"HttpRequest.url must be at most {config.MAX_URL_LENGTH} characters.")
        try:
            method = tasks_v2.HttpMethod(proto.http_method or tasks_v2.HttpMethod.POST)
        except ValueError as error:
            raise InvalidArgument(f"HttpRequest.httpMethod {proto.http_method} is not an HTTP method.") from error
        if proto.body and method not in BODY_METHODS:
            raise InvalidArgument(f"HttpRequest.body is not allowed with HTTP method {method.name}.")
        if proto.HasField("oauth_token"):
            raise Unimplemented("OAuth tokens are not emulated; use an OIDC token.")
        oidc = proto.oidc_token if proto.HasField("oidc_token") else None
        if oidc is not None and not oidc.service_account_email:
            raise InvalidArgument("OidcToken.serviceAccountEmail is required.")
        return cls(url, method, stored_headers(dict(proto.headers)), proto.body,
                   oidc.service_account_email if oidc else None, oidc.audience if oidc else "")

    @property
    def audience(self) -> str:
        return self.oidc_audience or self.url

    def to_proto(self, full: bool) -> HttpRequestPb:
        proto = HttpRequestPb(url=self.url, http_method=self.method, headers=self.headers,
                              body=self.body if full else b"")
        if self.oidc_email is not None:
            proto.oidc_token.CopyFrom(OidcTokenPb(service_account_email=self.oidc_email,
                                                  audience=self.oidc_audience))
        return proto


def stored_headers(headers: dict[str, str]) -> dict[str, str]:
    """The headers as production keeps them: the names it computes dropped, its User-Agent added."""
    kept = {name: value for name, value in headers.items()
            if name.lower() not in DROPPED_HEADERS and not name.lower().startswith(DROPPED_HEADER_PREFIXES)}
    return {**kept, "User-Agent": USER_AGENT}


@dataclasses.dataclass
class Attempt:
    schedule_time: float
    dispatch_time: float
    response_time: float | None = None
    #: A google.rpc.Code and message; meaningful once response_time is set.
    code: int = 0
    message: str = ""

    def to_proto(self) -> AttemptPb:
        proto = AttemptPb(schedule_time=timestamp(self.schedule_time), dispatch_time=timestamp(self.dispatch_time))
        if self.response_time is not None:
            proto.response_time.CopyFrom(timestamp(self.response_time))
            proto.response_status.CopyFrom(status_pb2.Status(code=self.code, message=self.message))
        return proto


@dataclasses.dataclass(eq=False)
class TaskRecord:
    name: str
    target: HttpTarget
    schedule_time: float
    create_time: float
    dispatch_deadline: float
    retry: RetryPolicy
    #: Whether the task set its own retry_config, which answers then echo.
    own_retry: bool
    dispatch_count: int = 0
    response_count: int = 0
    #: Responses other than 5xx: X-CloudTasks-TaskExecutionCount, which production counts so.
    execution_count: int = 0
    #: HTTP status of the previous attempt, None when it got no response.
    previous_response: int | None = None
    first_dispatch_time: float | None = None
    last_attempt: Attempt | None = None
    #: The token of the task's live timer; a timer firing with another token is stale.
    timer: int = 0

    def to_proto(self, view: int) -> TaskPb:
        full = view == tasks_v2.Task.View.FULL
        proto = TaskPb(
            name=self.name, http_request=self.target.to_proto(full),
            schedule_time=timestamp(self.schedule_time), create_time=timestamp(self.create_time),
            dispatch_deadline=duration(self.dispatch_deadline), dispatch_count=self.dispatch_count,
            response_count=self.response_count,
            view=tasks_v2.Task.View.FULL if full else tasks_v2.Task.View.BASIC,
        )
        if self.first_dispatch_time is not None:
            proto.first_attempt.dispatch_time.CopyFrom(timestamp(self.first_dispatch_time))
        if self.last_attempt is not None:
            proto.last_attempt.CopyFrom(self.last_attempt.to_proto())
        if self.own_retry:
            proto.retry_config.CopyFrom(self.retry.to_proto())
        return proto


@dataclasses.dataclass(eq=False)
class QueueRecord:
    name: str
    rate_limits: RateLimits
    retry: RetryPolicy
    purge_time: float | None = None
    tasks: dict[str, TaskRecord] = dataclasses.field(default_factory=dict)
    #: Attempts in flight, at most rate_limits.max_concurrent_dispatches.
    running: int = 0
    #: (task name, timer token) of due tasks waiting for a dispatch slot, oldest first.
    waiting: collections.deque[tuple[str, int]] = dataclasses.field(default_factory=collections.deque)

    def to_proto(self) -> QueuePb:
        proto = QueuePb(name=self.name, rate_limits=self.rate_limits.to_proto(),
                        retry_config=self.retry.to_proto(), state=tasks_v2.Queue.State.RUNNING)
        if self.purge_time is not None:
            proto.purge_time.CopyFrom(timestamp(self.purge_time))
        return proto


@dataclasses.dataclass(frozen=True)
class Dispatch:
    """One attempt as a worker sends it, taken under the store's lock so that
    the worker reads nothing the store may change meanwhile."""
    queue: QueueRecord
    task: TaskRecord
    target: HttpTarget
    deadline: float
    eta: float
    retry_count: int
    execution_count: int
    previous_response: int | None
