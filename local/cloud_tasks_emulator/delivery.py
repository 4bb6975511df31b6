"""Sending one attempt over HTTP as Cloud Tasks does: its X-CloudTasks-*
headers, an OIDC token when the task asks for one, and the dispatch deadline
as the timeout."""

import dataclasses
import time

import urllib3
from google.rpc import code_pb2

from local.cloud_tasks_emulator import names
from local.cloud_tasks_emulator.model import Dispatch
from local.oidc_issuer import Signer

#: google.rpc.Code recorded on an attempt for each HTTP status, as production maps them.
HTTP_CODES = {
    400: code_pb2.INVALID_ARGUMENT, 401: code_pb2.UNAUTHENTICATED, 403: code_pb2.PERMISSION_DENIED,
    404: code_pb2.NOT_FOUND, 409: code_pb2.ABORTED, 416: code_pb2.OUT_OF_RANGE,
    429: code_pb2.RESOURCE_EXHAUSTED, 499: code_pb2.CANCELLED, 501: code_pb2.UNIMPLEMENTED,
    503: code_pb2.UNAVAILABLE, 504: code_pb2.DEADLINE_EXCEEDED,
}
#: Statuses whose Retry-After header lengthens the backoff.
RETRY_AFTER_STATUSES = {429, 503}
#: Redirects are followed (not counted as attempts); nothing else is retried here.
REDIRECTS_ONLY = urllib3.Retry(total=None, connect=0, read=0, other=0, redirect=10,
                               raise_on_redirect=False, respect_retry_after_header=False)


@dataclasses.dataclass(frozen=True)
class Outcome:
    #: The HTTP status, None when no response came.
    status: int | None
    #: The google.rpc.Code and message recorded on the attempt.
    code: int
    message: str
    retry_after: float | None = None

    @property
    def succeeded(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


def rpc_code(status: int) -> int:
    if 200 <= status < 300:
        return code_pb2.OK
    if status in HTTP_CODES:
        return HTTP_CODES[status]
    if 400 <= status < 500:
        return code_pb2.FAILED_PRECONDITION
    if 500 <= status < 600:
        return code_pb2.INTERNAL
    return code_pb2.UNKNOWN


def request_headers(dispatch: Dispatch, token: str | None) -> dict[str, str]:
    """The task's headers, then those Cloud Tasks sets, which replace any the task gave."""
    ours = {
        "X-CloudTasks-QueueName": names.short_id(dispatch.queue.name),
        "X-CloudTasks-TaskName": names.short_id(dispatch.task.name),
        "X-CloudTasks-TaskRetryCount": str(dispatch.retry_count),
        "X-CloudTasks-TaskExecutionCount": str(dispatch.execution_count),
        "X-CloudTasks-TaskETA": f"{dispatch.eta:.6f}",
    }
    if dispatch.retry_count:
        # Production sends it, empty, on every retry of an HTTP task.
        ours["X-CloudTasks-TaskRetryReason"] = ""
    if dispatch.previous_response is not None:
        ours["X-CloudTasks-TaskPreviousResponse"] = str(dispatch.previous_response)
    if token is not None:
        ours["Authorization"] = f"Bearer {token}"
    replaced = {name.lower() for name in ours}
    kept = {name: value for name, value in dispatch.target.headers.items()
            if name.lower() not in replaced and not name.lower().startswith("x-cloudtasks-")}
    return {**kept, **ours}


class Sender:
    """Thread-safe: the workers share it and its connection pools."""

    def __init__(self, signer: Signer, connections: int) -> None:
        self._signer = signer
        self._http = urllib3.PoolManager(maxsize=connections, retries=REDIRECTS_ONLY)

    def send(self, dispatch: Dispatch) -> Outcome:
        target = dispatch.target
        token = (self._signer.token(target.oidc_email, target.audience, time.time())
                 if target.oidc_email is not None else None)
        started = time.monotonic()
        try:
            response = self._http.request(
                target.method.name, target.url, body=target.body or None,
                headers=request_headers(dispatch, token), timeout=urllib3.Timeout(total=dispatch.deadline),
            )
        except urllib3.exceptions.HTTPError as error:
            return _no_response(error, dispatch.deadline)
        if time.monotonic() - started > dispatch.deadline:
            # The handler kept the connection alive by trickling its answer.
            return _deadline_exceeded(dispatch.deadline)
        return Outcome(response.status, rpc_code(response.status), f"HTTP {response.status}",
                       _retry_after(response))


def _no_response(error: urllib3.exceptions.HTTPError, deadline: float) -> Outcome:
    cause = getattr(error, "reason", None) or error  # MaxRetryError wraps the cause
    if (isinstance(cause, urllib3.exceptions.TimeoutError)
            and not isinstance(cause, urllib3.exceptions.NewConnectionError)):
        return _deadline_exceeded(deadline)
    return Outcome(None, code_pb2.UNAVAILABLE, f"no response: {cause}")


def _deadline_exceeded(deadline: float) -> Outcome:
    return Outcome(None, code_pb2.DEADLINE_EXCEEDED, f"no response within the dispatch deadline ({deadline:g} s)")


def _retry_after(response: urllib3.BaseHTTPResponse) -> float | None:
    value = response.headers.get("Retry-After")
    if response.status not in RETRY_AFTER_STATUSES or not value:
        return None
    try:
        return REDIRECTS_ONLY.parse_retry_after(value)
    except urllib3.exceptions.InvalidHeader:
        return None
