"""Task ids in Swarming's shape.

A request id packs the milliseconds since 2010-01-01 in its high bits, 16
random bits below them and a 4-bit version. The task (summary) id is its hex
form followed by "0"; the id of try N of the task is the same hex followed by N.
"""

from __future__ import annotations

import datetime
import random
import re
from typing import Any

from shared.errors import ValidationError
from shared.wire import REQUIRED, Field, Schema

EPOCH = datetime.datetime(2010, 1, 1, tzinfo=datetime.timezone.utc)
_VERSION = 1
_TASK_ID_RE = re.compile(r"^[0-9a-f]{8,20}[0-9]$")
#: What ends each kind of id: a task id proper, the id of one run, either.
TASK, RUN, EITHER = "0", "[1-9]", "[0-9]"


def new_request_id(now: datetime.datetime, rand: random.Random | None = None) -> int:
    millis = int((now - EPOCH).total_seconds() * 1000)
    suffix = (rand or random.SystemRandom()).getrandbits(16)
    return (millis << 20) | (suffix << 4) | _VERSION


def task_id(request_id: int) -> str:
    return f"{request_id:x}0"


def run_id(task_or_run_id: str, try_number: int = 1) -> str:
    return task_or_run_id[:-1] + str(try_number)


def is_valid(task_or_run_id: str) -> bool:
    return bool(_TASK_ID_RE.fullmatch(task_or_run_id))


def is_run_id(task_or_run_id: str) -> bool:
    return is_valid(task_or_run_id) and not task_or_run_id.endswith("0")


def parse(value: Any, field: str) -> str:
    """A task id or a run id, as the readers of a task take either."""
    if not isinstance(value, str) or not is_valid(value):
        raise ValidationError(field, "must be a task id")
    return value


def parse_task_id(value: Any, field: str) -> str:
    """A task id proper (ending in 0), not one of its runs."""
    if not isinstance(value, str) or not is_valid(value) or is_run_id(value):
        raise ValidationError(field, "must be a task id (ending in 0), not a run id")
    return value


def parse_run_id(value: Any, field: str) -> str:
    """The id of one run (try) of a task, as a manifest names it."""
    if not isinstance(value, str) or not is_run_id(value):
        raise ValidationError(field, "must be the run id from the manifest")
    return value


class Id(Field):
    """A task id (`TASK`), a run id (`RUN`) or either (`EITHER`); with `empty`, "" too."""

    def __init__(self, kind: str, empty: bool = False, description: str = ""):
        super().__init__("" if empty else REQUIRED, description=description)
        self.kind, self.empty = kind, empty

    def read(self, value: Any, path: str) -> str:
        if self.empty and value == "":
            return value
        return {TASK: parse_task_id, RUN: parse_run_id, EITHER: parse}[self.kind](value, path)

    def schema(self) -> Schema:
        pattern = f"[0-9a-f]{{8,20}}{self.kind}"
        return {"type": "string", "pattern": f"^(?:{pattern}){'?' if self.empty else ''}$", "maxLength": 21}


def summary_id(task_or_run_id: str) -> str:
    """The task id behind a task id or a run id."""
    return task_or_run_id[:-1] + "0"


def created_at(task_or_run_id: str) -> datetime.datetime:
    millis = int(task_or_run_id[:-1], 16) >> 20
    return EPOCH + datetime.timedelta(milliseconds=millis)
