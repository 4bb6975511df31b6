"""Every Cloud Function, thin: parse the call, run one domain function, answer.

`FUNCTIONS` is the registry: `main.py`, the local gateway, Terraform and the
OpenAPI document are all checked against it.
"""

import random
from typing import Any

from functions import bots, runs, scheduler, tasks
from functions.auth import BOTS, USERS
from functions.bots import BotRequest
from functions.http import Call, Function

_rand = random.SystemRandom()


def _bot(call: Call) -> BotRequest:
    return BotRequest.from_body(call.params, call.service.config.bot_dimensions)


def bot_handshake(call: Call) -> dict[str, Any]:
    bot = _bot(call)
    enforced = call.service.config.bot_dimensions.get(bot.bot_id, {})
    return bots.handshake(call.store, bot, enforced, call.service.settings.server_version, call.now)


def bot_poll(call: Call) -> dict[str, Any]:
    return scheduler.poll(call.store, call.service.queue_cache, _bot(call), call.now, _rand)


def bot_claim(call: Call) -> dict[str, Any]:
    return scheduler.claim(
        call.store, _bot(call), task_id=call.string("task_id"),
        slice_index=call.integer("slice", 0), claim_id=call.string("claim_id"), now=call.now,
    )


def bot_task_update(call: Call) -> dict[str, Any]:
    return runs.update(call.store, _bot(call), call.params, call.now)


def tasks_new(call: Call) -> dict[str, Any]:
    return tasks.new(call.store, call.service.queue_cache, call.service.config.lifo_pools, call.params,
                     call.caller, call.now)


def task_result(call: Call) -> dict[str, Any]:
    return tasks.result(call.store, call.string("task_id"))


def task_stdout(call: Call) -> dict[str, Any]:
    return tasks.output(call.store, call.string("task_id"), offset=call.integer("offset", 0),
                        length=call.integer("length"))


FUNCTIONS: list[Function] = [
    Function("bot_handshake", bot_handshake, BOTS, summary="A bot says hello; its registry entry is written"),
    Function("bot_poll", bot_poll, BOTS, summary="A bot asks for work: candidates to claim, or sleep"),
    Function("bot_claim", bot_claim, BOTS, summary="A bot claims one pending task atomically"),
    Function("bot_task_update", bot_task_update, BOTS, summary="Stdout at an offset, heartbeat, completion"),
    Function("tasks_new", tasks_new, USERS, summary="Create a task"),
    Function("task_result", task_result, USERS, ("GET", "POST"), summary="A task's state and outcome"),
    Function("task_stdout", task_stdout, USERS, ("GET", "POST"), summary="A range of a task's stdout"),
]
