"""Timers on the local stack: `swarming local up` starts the Cloud Tasks
emulator with the timers' queue, the gateway schedules its timers there, and a
task the emulator delivers with an OIDC token of the timers' service account is
accepted, while one of any other account is refused."""

import time
from pathlib import Path
from typing import Callable, Iterator

import pytest
from google.api_core import exceptions as gexc
from google.cloud import tasks_v2
from google.rpc import code_pb2

from local import processes
from local import stack as local_stack
from local.cloud_tasks_emulator import client_for
from tests.test_local_stack import pids_mentioning, swarming

DELIVERY_SECS = 10.0


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, dict]]:
    """A detached stack without bots, shared by these tests (each uses task
    names of its own) and stopped after them whatever happens."""
    tmp_path = tmp_path_factory.mktemp("timers")
    state_dir = tmp_path / "local"
    try:
        result = swarming("local", "up", "--detach", "--bots", "0", "--state-dir", str(state_dir))
        assert result.returncode == 0, result.stderr
        yield state_dir, local_stack.read_state(state_dir)
    finally:
        local_stack.down(state_dir)
        for pid in pids_mentioning(str(tmp_path)):
            processes.stop(pid, grace=1)


def wait_for(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + DELIVERY_SECS
    while not condition():
        assert time.monotonic() < deadline, f"not within {DELIVERY_SECS:g} s: {what}"
        time.sleep(0.1)


def http_task(name: str, url: str, service_account: str, audience: str) -> tasks_v2.Task:
    return tasks_v2.Task(
        name=f"{local_stack.TIMERS_QUEUE}/tasks/{name}",
        http_request=tasks_v2.HttpRequest(
            http_method=tasks_v2.HttpMethod.POST, url=url, headers={"Content-Type": "application/json"}, body=b"{}",
            oidc_token=tasks_v2.OidcToken(service_account_email=service_account, audience=audience)),
    )


def test_timers_fire_through_the_emulator_and_only_the_timers_account_is_accepted(stack):
    state_dir, state = stack
    client = client_for(f"127.0.0.1:{state['ports']['cloud_tasks']}")
    queue = client.get_queue(name=local_stack.TIMERS_QUEUE)
    assert queue.retry_config.max_attempts == local_stack.TIMERS_MAX_ATTEMPTS
    assert queue.retry_config.min_backoff.seconds == local_stack.TIMERS_MIN_BACKOFF_SECS
    assert queue.retry_config.max_backoff.seconds == local_stack.TIMERS_MAX_BACKOFF_SECS

    url = state["base_url"] + "/cron_sweep"
    other = f"intruder@{local_stack.PROJECT}.iam.gserviceaccount.com"
    good = client.create_task(parent=local_stack.TIMERS_QUEUE,
                              task=http_task("good", url, local_stack.SERVICE_ACCOUNT, url))
    intruder = client.create_task(parent=local_stack.TIMERS_QUEUE, task=http_task("intruder", url, other, url))
    elsewhere = client.create_task(parent=local_stack.TIMERS_QUEUE, task=http_task(
        "elsewhere", url, local_stack.SERVICE_ACCOUNT, state["base_url"] + "/timer_expire"))

    def delivered(task: tasks_v2.Task) -> bool:
        try:
            client.get_task(name=task.name)
        except gexc.NotFound:
            return True  # delivered tasks are removed
        return False

    def refused(task: tasks_v2.Task, code: int) -> bool:
        try:
            attempt = client.get_task(name=task.name).last_attempt
        except gexc.NotFound:
            pytest.fail(f"{task.name} was delivered")
        return attempt.response_status.code == code  # 0 (OK) until an attempt has answered

    wait_for(lambda: delivered(good), "the task of the timers' account delivered")
    # Another account's token is forbidden; a token for another function's URL is not one at all.
    wait_for(lambda: refused(intruder, code_pb2.PERMISSION_DENIED), "another account's task refused with 403")
    wait_for(lambda: refused(elsewhere, code_pb2.UNAUTHENTICATED), "a task for another audience refused with 401")
    assert client.get_task(name=intruder.name).last_attempt.response_status.message == "HTTP 403"
    for task in (intruder, elsewhere):
        client.delete_task(name=task.name)  # or the emulator retries them until the stack stops

    access = (state_dir / "logs" / "gateway.log").read_text()
    from_tasks = [line for line in access.splitlines()
                  if '"POST /cron_sweep HTTP/1.1"' in line and "Google-Cloud-Tasks" in line]
    assert any('" 200 ' in line for line in from_tasks), access
    assert any('" 403 ' in line for line in from_tasks), access


def test_the_gateway_schedules_its_timers_on_the_stack_queue(stack):
    state_dir, state = stack
    trigger = swarming("trigger", "--state-dir", str(state_dir), "-d", "pool=nobody", "--wait-for-capacity",
                       "--expiration", "600", "--", "true")
    assert trigger.returncode == 0, trigger.stderr
    client = client_for(f"127.0.0.1:{state['ports']['cloud_tasks']}")
    listed = client.list_tasks(request=tasks_v2.ListTasksRequest(parent=local_stack.TIMERS_QUEUE,
                                                                 response_view=tasks_v2.Task.View.FULL))
    timers = [t for t in listed if t.name.rpartition("/")[2].startswith("timer_expire-")]
    assert len(timers) == 1, timers
    request = timers[0].http_request
    assert request.url == state["base_url"] + "/timer_expire"
    assert request.oidc_token.service_account_email == local_stack.SERVICE_ACCOUNT
    assert request.oidc_token.audience == request.url
    due = timers[0].schedule_time.timestamp() - time.time()
    assert 590 < due <= 601  # at the whole second after the expiration (functions.timers.due_second)
