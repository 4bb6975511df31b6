"""Creating a task when a commit's answer is lost: faults the emulator cannot
produce, injected in the Firestore client's gRPC channel. The client retries
a Commit reported UNAVAILABLE; when the first attempt was applied, the retry
meets ALREADY_EXISTS. Exactly one task must come of it."""

import dataclasses
import datetime
from typing import Any, Callable

import grpc
import pytest
from click.testing import CliRunner
from google.cloud import firestore

from client.cli import cli
from functions import tasks
from functions.errors import Unavailable
from functions.store import TASK_RESULTS, Store
from functions.tasks import Requester
from shared.task_request import TaskRequest
from tests.builders import task_body
from tests.grpc_faults import InjectedStatus

USER = Requester("user:someone@example.com")


@dataclasses.dataclass
class CommitFaults(grpc.UnaryUnaryClientInterceptor):
    """Replaces the answers of the next Commits that create a task (that write
    to task_results): each fault says whether the Commit reaches Firestore
    first, and the status reported instead."""

    faults: list[tuple[bool, grpc.StatusCode]]
    commits: int = 0

    def intercept_unary_unary(self, continuation: Callable, details: Any, request: Any) -> Any:
        if not details.method.endswith("/Commit") or not _writes_to(request, TASK_RESULTS):
            return continuation(details, request)
        self.commits += 1
        if not self.faults:
            return continuation(details, request)
        applied, code = self.faults.pop(0)
        if applied:
            continuation(details, request).result()
        return InjectedStatus(code)


def _writes_to(commit: Any, collection: str) -> bool:
    return any(f"/documents/{collection}/" in write.update.name for write in commit.writes)


class _FaultyClient(firestore.Client):
    """A Firestore client of the emulator whose channel goes through `interceptor`."""

    def __init__(self, project: str, interceptor: grpc.UnaryUnaryClientInterceptor):
        super().__init__(project=project)
        self._interceptor = interceptor

    def _emulator_channel(self, transport: Any) -> grpc.Channel:
        return grpc.intercept_channel(super()._emulator_channel(transport), self._interceptor)


def _create(svc, faults: CommitFaults, **top: Any) -> str:
    context = dataclasses.replace(svc.context, store=Store(_FaultyClient(svc.settings.project, faults)))
    now = datetime.datetime.now(datetime.timezone.utc)
    return tasks.new(context, TaskRequest.from_wire(task_body(**top)), USER, now)["task_id"]


def _stored_task_ids(svc) -> list[str]:
    return [doc.get("task_id") for doc in svc.store.db.collection(TASK_RESULTS).stream()]


@pytest.mark.parametrize("top", [{}, {"request_uuid": "build-1"}], ids=["no-request-uuid", "request-uuid"])
def test_a_create_applied_but_reported_unavailable_is_one_task(svc, top):
    faults = CommitFaults([(True, grpc.StatusCode.UNAVAILABLE)])
    task_id = _create(svc, faults, **top)
    assert faults.commits == 2  # the client's retry met ALREADY_EXISTS
    assert _stored_task_ids(svc) == [task_id]


def test_a_create_applied_but_whose_deadline_passed_is_one_task(svc):
    faults = CommitFaults([(True, grpc.StatusCode.DEADLINE_EXCEEDED)])
    task_id = _create(svc, faults)
    assert faults.commits == 1  # not retried by the client: its outcome was unknown, and read
    assert _stored_task_ids(svc) == [task_id]


def test_a_create_that_may_not_have_been_applied_is_a_503_never_a_second_try(svc):
    faults = CommitFaults([(False, grpc.StatusCode.DEADLINE_EXCEEDED)] * 2)
    with pytest.raises(Unavailable, match="request_uuid"):
        _create(svc, faults)
    assert faults.commits == 1 and _stored_task_ids(svc) == []


def test_the_cli_sends_its_own_request_uuid_with_every_task_it_creates(api, base_url, as_user):
    created = []
    for _ in range(2):
        result = CliRunner().invoke(cli, ["trigger", "--server", base_url, "-d", "pool=default",
                                          "--wait-for-capacity", "--", "true"])
        assert result.exit_code == 0, result.output
        created.append(result.output.strip())
    uuids = {api.ok("task_request", {"task_id": task_id})["request_uuid"] for task_id in created}
    assert len(uuids) == 2 and "" not in uuids
