"""An idle bot's state changes on every poll (uptime, free disk): that alone
costs no write per poll and records no event, and `bot_get` still shows a
state at most `STATE_REWRITE_SECS` old. What the bot is (its dimensions and
version) and whether it takes tasks (quarantine, maintenance) are events."""

import datetime
from typing import Any

import pytest

from functions.bot_entry import STATE_REWRITE_SECS
from tests.builders import bot_body


def _state(poll: int) -> dict[str, Any]:
    """What a bot's default hooks report, as it changes from poll to poll."""
    return {"uptime": 1000.0 + 60 * poll, "disk": {"/": {"free_mb": 20000.0 - poll, "size_mb": 50000.0}},
            "sleep_streak": poll, "running_time": 60.0 * poll}


def _poll(api, session: str, **fields: Any) -> tuple[str, int]:
    """Polls as bot-1 echoing `session`: (the new session, the writes it cost)."""
    response = api.post("bot_poll", bot_body(session=session, **fields), role="bot")
    assert response.status_code == 200, response.text
    return response.json()["session"], int(response.headers["X-Firestore-Writes"])


def _events(api) -> list[tuple[str, str]]:
    return [(e["event_type"], e["message"]) for e in api.ok("bot_events", {"bot_id": "bot-1"})["items"]]


def test_idle_polls_whose_state_changes_cost_no_write_and_record_no_event(api):
    session = api.ok("bot_handshake", bot_body(state=_state(0)), role="bot")["session"]
    writes = []
    for poll in range(1, 11):
        session, cost = _poll(api, session, state=_state(poll))
        writes.append(cost)
    assert writes == [0] * 10
    assert [kind for kind, _ in _events(api)] == ["bot_connected"]


def test_bot_get_shows_a_changed_state_within_the_state_rewrite_time(api, clock):
    session = api.ok("bot_handshake", bot_body(state=_state(0)), role="bot")["session"]
    session, _ = _poll(api, session, state=_state(1))
    assert api.ok("bot_get", {"bot_id": "bot-1"})["state"] == _state(0)
    clock.offset += datetime.timedelta(seconds=STATE_REWRITE_SECS)
    _, cost = _poll(api, session, state=_state(2))
    assert cost >= 1 and api.ok("bot_get", {"bot_id": "bot-1"})["state"] == _state(2)
    assert [kind for kind, _ in _events(api)] == ["bot_connected"]


@pytest.mark.parametrize("fields,part", [
    ({"dimensions": {"id": ["bot-1"], "pool": ["default"], "os": ["Mac"]}}, "dimensions"),
    ({"version": "v2"}, "version"),
    ({"state": {**_state(1), "quarantined": "disk full"}}, "quarantined"),
    ({"state": {**_state(1), "maintenance": "new drivers"}}, "maintenance_msg"),
], ids=["dimensions", "version", "quarantine", "maintenance"])
def test_a_change_of_what_the_bot_is_or_whether_it_takes_tasks_is_written_at_once_as_an_event(api, fields, part):
    session = api.ok("bot_handshake", bot_body(state=_state(0)), role="bot")["session"]
    _, cost = _poll(api, session, **{"state": _state(1), **fields})
    assert cost >= 2  # the entry and the event
    kind, message = _events(api)[0]
    assert kind == "bot_changed" and part in message.removeprefix("changed: ").split(", ")
    assert "state" not in message.removeprefix("changed: ").split(", ")
