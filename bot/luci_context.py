"""The task's LUCI_CONTEXT: the one way a task reads its secret bytes, as
tasks written for the reference expect (PROTOCOL.md, "What the task sees").

`LUCI_CONTEXT` names a JSON file of sections. The task's file holds the
sections of the context the bot was started in, if any, with its own
`swarming` section in place of the parent's:

    {"swarming": {"secret_bytes": "<base64>",    (only when the task has some)
                  "task": {"server": URL, "task_id": TASK_ID,
                           "bot_dimensions": ["key:value", ...]}}}

As the reference: `task_id` is the task's id (ending in 0), not the run's
(`SWARMING_TASK_ID` is the run's); `bot_dimensions` are the bot's own, as
sorted `key:value` strings. Unlike the reference, the parent's `local_auth`
is dropped, never passed on: it would serve the credentials of whatever
started the bot, and a task never gets a bot credential; this bot has no
auth server of its own to put in its place. Every other section of the
parent (`deadline`, `realm`, `resultdb`, ...) passes unchanged.

The file is created exclusively, mode 0600, in the bot's `ctx/` (neither the
task's `w/` nor its `io/`, so it is never uploaded), just before the command
starts, and deleted as soon as the command has ended, whatever ended it; the
runner and the bot both wipe `ctx/` after the task too. Nothing logs it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from pathlib import Path
from typing import Any, Dict, Iterator, Optional

from bot import layout
from bot.errors import TaskError
from shared import dimensions as dims_lib
from shared import task_id as task_ids
from shared.wire import to_base64

logger = logging.getLogger(__name__)

ENV = "LUCI_CONTEXT"
FILE_NAME = "luci_context.json"
#: The parent's section that would hand the task the bot's credentials.
DROPPED = "local_auth"

Context = Dict[str, Any]


def for_task(*, run_id: str, server: str, bot_dimensions: dims_lib.Dimensions, secret_bytes: Optional[bytes],
             parent: Optional[str]) -> Context:
    """The task's context over the parent's (the file `parent` names, the
    bot's own LUCI_CONTEXT; None: none). Raises TaskError when the parent
    cannot be read: running the task without the sections it was meant to
    see would be silently wrong."""
    context = _read(parent) if parent else {}
    context.pop(DROPPED, None)
    swarming: Dict[str, Any] = {"task": {
        "server": server,
        "task_id": task_ids.summary_id(run_id),
        "bot_dimensions": sorted(f"{key}:{value}" for key, values in bot_dimensions.items() for value in values),
    }}
    if secret_bytes is not None:
        swarming["secret_bytes"] = to_base64(secret_bytes)
    context["swarming"] = swarming
    return context


def _read(path: str) -> Context:
    try:
        with open(path, encoding="utf-8") as f:
            context = json.load(f)
    except (OSError, ValueError) as e:  # The message never quotes the file: it may hold secrets too.
        raise TaskError(f"the bot's {ENV} {path} is unusable: {e}") from e
    if not isinstance(context, dict):
        raise TaskError(f"the bot's {ENV} {path} is not a JSON object")
    return context


@contextlib.contextmanager
def written(path: Path, context: Context) -> Iterator[None]:
    """`context` in the file at `path` for the time of the block, then gone,
    whatever ends the block. Raises TaskError when it cannot be written."""
    try:
        layout.write_private(path, context)
    except OSError as e:
        raise TaskError(f"cannot write the task's {ENV} {path}: {e}") from e
    try:
        yield
    finally:
        try:
            os.unlink(path)
        except FileNotFoundError:  # The task deleted it itself.
            pass
        except OSError as e:  # ctx/ is wiped after the task anyway.
            logger.error("cannot delete the task's %s %s: %s", ENV, path, e)
