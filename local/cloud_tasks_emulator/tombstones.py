"""Names that cannot be reused for a while after their resource is gone."""

import collections


class Tombstones:
    """Every name lives the same `ttl`, so expiry order is insertion order and
    expired names are dropped from the front as time passes."""

    def __init__(self, ttl: float) -> None:
        self._ttl = ttl
        self._expiry: dict[str, float] = {}
        self._order: collections.deque[tuple[float, str]] = collections.deque()

    def add(self, name: str, now: float) -> None:
        expiry = now + self._ttl
        self._expiry[name] = expiry
        self._order.append((expiry, name))

    def holds(self, name: str, now: float) -> bool:
        self._drop_expired(now)
        return name in self._expiry

    def _drop_expired(self, now: float) -> None:
        while self._order and self._order[0][0] <= now:
            expiry, name = self._order.popleft()
            if self._expiry.get(name) == expiry:  # not re-added since
                del self._expiry[name]
