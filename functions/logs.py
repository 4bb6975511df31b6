"""Logs as Cloud Logging reads them: one JSON object per line on stdout, with
`severity`, `message`, and the function, task and bot of the request being
served, so that a task's or a bot's lines can be found with one filter
(`jsonPayload.task_id="..."`). A deployed function logs this way from INFO up;
elsewhere Python's defaults apply."""

import contextlib
import contextvars
import json
import logging
import sys
from typing import Iterator

#: What the request being served is about: set by the HTTP edge.
_labels: contextvars.ContextVar[dict[str, str]] = contextvars.ContextVar("labels", default={})


@contextlib.contextmanager
def labelled(**labels: str | None) -> Iterator[None]:
    """Every line logged within carries the non-empty `labels`."""
    token = _labels.set({**_labels.get(), **{k: v for k, v in labels.items() if v}})
    try:
        yield
    finally:
        _labels.reset(token)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {"severity": record.levelname, "message": record.getMessage(), "logger": record.name,
                 **_labels.get()}
        if record.exc_info:
            # Error Reporting picks a stack trace up from the message.
            entry["message"] += "\n" + self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def use_json(stream=None) -> None:
    """Routes every log line at INFO and above through JsonFormatter."""
    handler = logging.StreamHandler(stream or sys.stdout)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
