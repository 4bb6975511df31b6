"""Errors shared by every part of the system."""

from __future__ import annotations


class SwarmingError(Exception):
    """Base of every error raised by our code."""


class ValidationError(SwarmingError):
    """A request field is invalid; the HTTP layer turns it into a 400."""

    def __init__(self, field: str, reason: str):
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason
