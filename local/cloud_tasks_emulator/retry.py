"""When a failed attempt is retried, and when retrying stops: a queue's (or
a task's own) RetryConfig, with production's defaults for what it leaves unset."""

import dataclasses
from typing import Self

from local.cloud_tasks_emulator import config
from local.cloud_tasks_emulator.errors import InvalidArgument
from local.cloud_tasks_emulator.messages import RetryConfigPb, duration, seconds


@dataclasses.dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int  # -1: unlimited
    max_retry_duration: float  # 0: unlimited
    min_backoff: float
    max_backoff: float
    max_doublings: int

    @classmethod
    def from_proto(cls, proto: RetryConfigPb, defaults: Self) -> Self:
        """Fields left unset (or 0, which proto3 cannot tell apart) take `defaults`."""
        def span(field: str, default: float) -> float:
            return seconds(getattr(proto, field)) if proto.HasField(field) else default

        policy = cls(
            max_attempts=proto.max_attempts or defaults.max_attempts,
            max_retry_duration=span("max_retry_duration", defaults.max_retry_duration),
            min_backoff=span("min_backoff", defaults.min_backoff),
            max_backoff=span("max_backoff", defaults.max_backoff),
            max_doublings=proto.max_doublings or defaults.max_doublings,
        )
        policy.validate()
        return policy

    def validate(self) -> None:
        if self.max_attempts < -1:
            raise InvalidArgument("RetryConfig.maxAttempts must be greater or equal to -1.")
        if self.max_doublings < 0:
            raise InvalidArgument("RetryConfig.maxDoublings cannot be negative.")
        if self.min_backoff < 0:
            raise InvalidArgument("RetryConfig.minBackoff cannot be negative.")
        if self.max_retry_duration < 0:
            raise InvalidArgument("RetryConfig.maxRetryDuration cannot be negative.")
        if self.min_backoff > self.max_backoff:
            raise InvalidArgument("RetryConfig.minBackoff must be less than or equal to RetryConfig.maxBackoff.")

    def backoff(self, retry: int) -> float:
        """Delay before retry number `retry` (1 for the first): doubling from
        min_backoff `max_doublings` times, then growing linearly by the last
        doubled interval, capped at max_backoff (the documented 10 s, 20 s,
        40 s, 80 s, 160 s, 240 s, 300 s, 300 s for 10 s / 300 s / 3)."""
        steps = retry - 1
        if steps <= self.max_doublings:
            delay = self.min_backoff * 2 ** steps
        else:
            delay = self.min_backoff * 2 ** self.max_doublings * (steps - self.max_doublings + 1)
        return min(delay, self.max_backoff)

    def exhausted(self, attempts: int, first_attempt: float, now: float) -> bool:
        """Production stops only when every limit that is set has been reached."""
        limits = []
        if self.max_attempts != -1:
            limits.append(attempts >= self.max_attempts)
        if self.max_retry_duration > 0:
            limits.append(now - first_attempt >= self.max_retry_duration)
        return bool(limits) and all(limits)

    def to_proto(self) -> RetryConfigPb:
        return RetryConfigPb(
            max_attempts=self.max_attempts, max_retry_duration=duration(self.max_retry_duration),
            min_backoff=duration(self.min_backoff), max_backoff=duration(self.max_backoff),
            max_doublings=self.max_doublings,
        )


PRODUCTION_RETRY = RetryPolicy(config.DEFAULT_MAX_ATTEMPTS, 0.0, config.DEFAULT_MIN_BACKOFF,
                               config.DEFAULT_MAX_BACKOFF, config.DEFAULT_MAX_DOUBLINGS)
