"""Errors shared by every part of the system."""

from __future__ import annotations

from typing import NamedTuple


class SwarmingError(Exception):
    """Base of every error raised by our code."""


class ValidationError(SwarmingError):
    """A request field is invalid; the HTTP layer turns it into a 400."""

    def __init__(self, field: str, reason: str):
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


class ConfigProblem(NamedTuple):
    """One problem of the service config: where, and why."""

    #: Relative to the config directory: `bots.toml`, `scripts/lab.py`.
    file: str
    #: 1-based; 0 when the problem is the whole file (a missing one).
    line: int
    #: The key path in the file (`bot_group[1].dimensions[0]`); empty for a file or a script.
    field: str
    reason: str

    def __str__(self) -> str:
        """`bots.toml:12: bot_group[1].dimensions[0]: must be 'key:value'`, without the parts it lacks."""
        where = f"{self.file}:{self.line}" if self.line else self.file
        return ": ".join(part for part in (where, self.field, self.reason) if part)


class ConfigError(SwarmingError):
    """The service config is invalid: every problem found, in file and line order,
    so that one run of `swarming config validate` lists them all."""

    def __init__(self, problems: list[ConfigProblem]):
        self.problems = sorted(problems)
        super().__init__("\n".join(map(str, self.problems)))
