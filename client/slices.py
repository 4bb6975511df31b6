"""A request's task slices from `--optional-dimension`, as the reference CLI makes them.

Each optional dimension is asked for until its expiration (seconds after the
task's creation). Each distinct expiration ends one slice: the first slice asks
for every optional dimension, each next one drops those that expired, and the
last asks for the required dimensions only, for `--expiration` seconds.
"""

from typing import Any

#: (key, value, expiration in seconds) as `--optional-dimension` gives them.
Optional = tuple[str, str, int]


def task_slices(properties: dict[str, Any], expiration: int, wait_for_capacity: bool,
                optional: list[Optional]) -> list[dict[str, Any]]:
    slices, started = [], 0
    for ends in sorted({secs for _, _, secs in optional}):
        extra = [{"key": key, "value": value} for key, value, secs in optional if secs >= ends]
        slices.append(_slice({**properties, "dimensions": [*properties["dimensions"], *extra]}, ends - started,
                             wait_for_capacity))
        started = ends
    return [*slices, _slice(properties, expiration, wait_for_capacity)]


def _slice(properties: dict[str, Any], expiration: int, wait_for_capacity: bool) -> dict[str, Any]:
    return {"properties": properties, "expiration_secs": expiration, "wait_for_capacity": wait_for_capacity}
