"""Every Cloud Function, thin: parse the call, run one domain function, answer.

`FUNCTIONS` is the registry: `main.py`, the local gateway, Terraform and the
OpenAPI document are all checked against it.
"""

import random
from typing import Any

from functions import bot_death, bots, cancellation, runs, scheduler, slices, sweep, tasks
from functions.auth import ADMINS, BOTS, INTERNAL, USERS
from functions.bots import BotRequest
from functions.http import Call, Function

_rand = random.SystemRandom()


def _bot(call: Call) -> BotRequest:
    return BotRequest.from_body(call.params, call.service.config.bot_dimensions)


def bot_handshake(call: Call) -> dict[str, Any]:
    bot = _bot(call)
    enforced = call.service.config.bot_dimensions.get(bot.bot_id, {})
    return bots.handshake(call.service.registry, bot, enforced, call.service.settings.server_version, call.now)


def bot_poll(call: Call) -> dict[str, Any]:
    return scheduler.poll(call.store, call.service.queue_cache, call.service.registry, _bot(call), call.now, _rand)


def bot_claim(call: Call) -> dict[str, Any]:
    return scheduler.claim(
        call.service.context, call.service.registry, _bot(call), task_id=call.string("task_id"),
        slice_index=call.integer("slice", 0), claim_id=call.string("claim_id"), now=call.now,
    )


def bot_task_update(call: Call) -> dict[str, Any]:
    return runs.update(call.service.context, call.service.registry, _bot(call), call.params, call.now)


def bot_task_error(call: Call) -> dict[str, Any]:
    return bot_death.task_error(call.service.context, _bot(call), call.params, call.now)


def bot_event(call: Call) -> dict[str, Any]:
    return bots.event(call.service.bot_store, call.service.registry, _bot(call), call.params, call.now)


def tasks_new(call: Call) -> dict[str, Any]:
    return tasks.new(call.service.context, call.params, call.caller, call.now)


def task_result(call: Call) -> dict[str, Any]:
    return tasks.result(call.service.context, call.string("task_id"))


def task_request(call: Call) -> dict[str, Any]:
    return tasks.request(call.service.context, call.string("task_id"))


def task_stdout(call: Call) -> dict[str, Any]:
    return tasks.output(call.service.context, call.string("task_id"), offset=call.integer("offset", 0),
                        length=call.integer("length"))


def task_cancel(call: Call) -> dict[str, Any]:
    return cancellation.cancel(call.service.context, call.string("task_id"), call.boolean("kill_running"),
                               call.now)


def tasks_cancel(call: Call) -> dict[str, Any]:
    return cancellation.cancel_many(call.service.context, call.params.get("tags") or [],
                                    call.boolean("kill_running"), call.integer("limit", 100), call.now)


def timer_expire(call: Call) -> dict[str, Any]:
    return slices.expire(call.service.context, call.string("task_id"), call.integer("slice", 0), call.now)


def timer_bot_died(call: Call) -> dict[str, Any]:
    return bot_death.check(call.service.context, call.string("task_id"), call.integer("try_number", 1), call.now)


def bots_list(call: Call) -> dict[str, Any]:
    return call.service.fleet.list_bots(call.params, call.integer("limit"), call.params.get("cursor"), call.now)


def bots_count(call: Call) -> dict[str, Any]:
    return call.service.fleet.count(call.params, call.now)


def bots_dimensions(call: Call) -> dict[str, Any]:
    return call.service.fleet.dimensions(call.params.get("pool") or None, call.now)


def bot_get(call: Call) -> dict[str, Any]:
    return call.service.fleet.get(call.string("bot_id"), call.now)


def bot_events(call: Call) -> dict[str, Any]:
    return call.service.fleet.events(call.string("bot_id"), call.integer("limit"), call.params.get("cursor"))


def bot_tasks(call: Call) -> dict[str, Any]:
    return call.service.fleet.tasks(call.string("bot_id"), call.integer("limit"), call.params.get("cursor"))


def bot_delete(call: Call) -> dict[str, Any]:
    return call.service.fleet.delete(call.string("bot_id"), call.now)


def cron_sweep(call: Call) -> dict[str, Any]:
    return sweep.sweep(call.service.context, call.service.fleet, call.now)


FUNCTIONS: list[Function] = [
    Function("bot_handshake", bot_handshake, BOTS, summary="A bot says hello; its registry entry is written"),
    Function("bot_poll", bot_poll, BOTS, summary="A bot asks for work: candidates to claim, or sleep"),
    Function("bot_claim", bot_claim, BOTS, summary="A bot claims one pending task atomically"),
    Function("bot_task_update", bot_task_update, BOTS, summary="Stdout at an offset, heartbeat, completion"),
    Function("bot_task_error", bot_task_error, BOTS, summary="A bot could not run its task"),
    Function("bot_event", bot_event, BOTS, summary="A bot reports an error, a log line, a reboot or shutdown"),
    Function("tasks_new", tasks_new, USERS, summary="Create a task"),
    Function("task_result", task_result, USERS, ("GET", "POST"), summary="A task's state and outcome"),
    Function("task_request", task_request, USERS, ("GET", "POST"), summary="A task's request (no secret bytes)"),
    Function("task_stdout", task_stdout, USERS, ("GET", "POST"), summary="A range of a task's stdout"),
    Function("task_cancel", task_cancel, USERS, summary="Cancel a task, and kill it if it runs and asked to"),
    Function("tasks_cancel", tasks_cancel, USERS, summary="Cancel the tasks having every given tag"),
    Function("bots_list", bots_list, USERS, ("GET", "POST"), summary="Bots by dimensions and state, paged"),
    Function("bots_count", bots_count, USERS, ("GET", "POST"),
             summary="How many bots match, and how many are quarantined, in maintenance, dead, busy"),
    Function("bots_dimensions", bots_dimensions, USERS, ("GET", "POST"),
             summary="Every dimension value the bots of a pool report"),
    Function("bot_get", bot_get, USERS, ("GET", "POST"), summary="One bot"),
    Function("bot_events", bot_events, USERS, ("GET", "POST"), summary="A bot's events, newest first"),
    Function("bot_tasks", bot_tasks, USERS, ("GET", "POST"), summary="The tasks a bot ran, newest first"),
    Function("bot_delete", bot_delete, ADMINS, summary="Forget a bot (it comes back if it calls again)"),
    Function("timer_expire", timer_expire, INTERNAL, summary="Cloud Tasks: a pending slice's time is up"),
    Function("timer_bot_died", timer_bot_died, INTERNAL, summary="Cloud Tasks: has a running task's bot gone silent?"),
    Function("cron_sweep", cron_sweep, INTERNAL, summary="Repairs what lost timers left; marks bots dead or alive"),
]
