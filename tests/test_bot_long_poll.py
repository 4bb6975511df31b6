"""The bot's side of the long poll (bot/bot_main.py, bot/remote.py) against a
loopback fake of the Bot API: it asks for a hold, acts on a held answer, and
a stop does not wait for a held poll."""

import threading
import time
from pathlib import Path
from typing import Iterator

import pytest

from bot import remote
from bot.bot_main import POLL_HOLD_SECS, Bot, Outcome
from bot.task_runner import Timings
from tests.bot_fakes import FakeServer, claim, events_of, run, served, sleep, stalled

TOKEN = "bot-token"
TASK = "5f3a1b2c3d4e5f00"
FAST = Timings(output_interval=0.1, keepalive=0.3, grace_period=1.0, drain=1.0, tick=0.02)


@pytest.fixture
def fake() -> Iterator[FakeServer]:
    yield from served()


@pytest.fixture
def bot(fake: FakeServer, tmp_path: Path) -> Iterator[Bot]:
    yield Bot(remote.Remote(fake.url, TOKEN), tmp_path, "bot-1", shutdown=threading.Event(), sleep=lambda _: None,
              timings=FAST)


def test_the_bot_asks_for_a_hold(fake: FakeServer, bot: Bot) -> None:
    assert POLL_HOLD_SECS > 0
    fake.script("bot_poll", stalled(sleep(0), 1.0))
    assert bot.run_once() is Outcome.SLEPT
    assert fake.bodies("bot_poll")[0]["hold_secs"] == POLL_HOLD_SECS


def test_a_held_poll_answered_with_a_task_runs_it(fake: FakeServer, bot: Bot) -> None:
    fake.script("bot_poll", stalled(claim(TASK), 0.5))
    fake.script("bot_claim", run(TASK, ["true"]))
    bot.run_once()
    assert fake.names()[:3] == ["bot_poll", "bot_claim", "bot_task_update"]


def test_a_stop_does_not_wait_for_a_held_poll(fake: FakeServer, bot: Bot) -> None:
    fake.script("bot_poll", stalled(sleep(0), None))  # Held until the fake shuts down.
    loop = threading.Thread(target=bot.run)
    loop.start()
    fake.wait_for(lambda: "bot_poll" in fake.names())
    started = time.monotonic()
    bot.stop("SIGTERM received")
    loop.join(10)
    assert not loop.is_alive()
    assert time.monotonic() - started < 5  # Far below the hold.
    assert events_of(fake, "bot_shutdown")
