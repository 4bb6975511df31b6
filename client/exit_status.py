"""Exit codes of the `swarming` tool.

A completed task's own exit code passes through (0..255; a task killed by
signal N gives 128 + N). The other outcomes have codes of their own, above the
range tasks commonly use and away from 2 (click's usage errors) and 130 (Ctrl-C).
"""

import enum

from shared.states import State


class ExitStatus(enum.IntEnum):
    SUCCESS = 0
    ERROR = 1  # The tool failed: bad flags, the server refused, no server.
    TIMED_OUT = 81
    EXPIRED = 82
    BOT_DIED = 83
    CANCELED = 84
    KILLED = 85
    NO_RESOURCE = 86
    CLIENT_ERROR = 87
    WAIT_TIMEOUT = 88  # `collect --timeout` elapsed before the task ended.
    INTERRUPTED = 130


def for_result(result: dict) -> int:
    state = State(result["state"])
    if state == State.COMPLETED:
        return for_exit_code(result.get("exit_code") or 0)
    return ExitStatus[state.name]


def for_exit_code(code: int) -> int:
    """A process's exit code as ours: a signal N (negative) gives 128 + N."""
    return code if 0 <= code <= 255 else (128 - code if code < 0 else 255)
