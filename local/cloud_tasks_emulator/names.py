"""Resource names: `projects/P/locations/L` (a location),
`projects/P/locations/L/queues/Q` and `.../queues/Q/tasks/T`."""

import re
import secrets

from local.cloud_tasks_emulator.errors import InvalidArgument

_LOCATION = r"projects/[A-Za-z0-9.:-]+/locations/[A-Za-z0-9-]+"
_QUEUE = _LOCATION + r"/queues/[A-Za-z0-9-]{1,100}"
LOCATION_RE = re.compile(_LOCATION)
QUEUE_RE = re.compile(_QUEUE)
TASK_ID_RE = re.compile(r"[A-Za-z0-9_-]{1,500}")

QUEUE_FORMAT = 'Queue name must be formatted: "projects/<PROJECT_ID>/locations/<LOCATION_ID>/queues/<QUEUE_ID>".'


def check_location(name: str) -> str:
    if not LOCATION_RE.fullmatch(name):
        raise InvalidArgument(f'Parent must be formatted: "projects/<PROJECT_ID>/locations/<LOCATION_ID>", '
                              f'got "{name}".')
    return name


def check_queue(name: str) -> str:
    if not QUEUE_RE.fullmatch(name):
        raise InvalidArgument(QUEUE_FORMAT)
    return name


def split_task(name: str) -> tuple[str, str]:
    """(queue name, task id) of a task name."""
    queue, sep, task_id = name.rpartition("/tasks/")
    if not sep:
        raise InvalidArgument('Task name must be formatted: '
                              '"projects/<PROJECT_ID>/locations/<LOCATION_ID>/queues/<QUEUE_ID>/tasks/<TASK_ID>".')
    check_queue(queue)
    if not TASK_ID_RE.fullmatch(task_id):
        raise InvalidArgument(f'Task ID "{task_id}" can contain only letters ([A-Za-z]), numbers ([0-9]), '
                              "hyphens (-), or underscores (_). Task ID must between 1 and 500 characters.")
    return queue, task_id


def short_id(name: str) -> str:
    """The last part of a queue or task name (QUEUE_ID, TASK_ID)."""
    return name.rpartition("/")[2]


def new_task_id() -> str:
    """A decimal id like those production generates for unnamed tasks."""
    return str(secrets.randbits(63))
