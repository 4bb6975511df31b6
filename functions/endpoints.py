"""Every Cloud Function, thin: parse the call, run one domain function, answer.

`FUNCTIONS` is the registry: `main.py`, the local gateway, Terraform and the
OpenAPI document are all checked against it.
"""

import logging
import random
from typing import Any

import flask

from functions import (bootstrap, bot_death, bot_registry, cancellation, runs, scheduler, slices, sweep, tasks,
                       termination)
from functions.auth import ADMINS, BOOTSTRAP, BOT_CODE, BOTS, CAS, INTERNAL, USERS
from functions.bot_code import VERSION_RE, BotCodeError
from functions.bot_registry import BotRequest
from functions.errors import BadRequest, NotFound
from functions.http import Call, Function
from functions.models import iso
from shared import bot_api
from shared.cas import Digest, digests_from_wire

logger = logging.getLogger(__name__)
_rand = random.SystemRandom()


def _bot(call: Call, attributes: bot_api.BotAttributes) -> BotRequest:
    return BotRequest.of(attributes, call.service.config.bot_dimensions)


def bot_handshake(call: Call) -> dict[str, Any]:
    """Registers the bot (its `bots/<id>` entry, a `bot_connected` event) and
    answers its first `session`, the server's version, and the dimensions its
    bot group enforces (`bot_group_cfg.dimensions`). Never hands out work."""
    bot = _bot(call, bot_api.Handshake.from_wire(call.params).attributes)
    enforced = call.service.config.bot_dimensions.get(bot.bot_id, {})
    return bot_registry.handshake(call.service.registry, bot, enforced, call.service.settings.server_version,
                                  call.now).to_wire()


def bot_poll(call: Call) -> dict[str, Any]:
    """Never transacts. Answers `{cmd: update, version}` when the bot runs
    other code than the current zip (never a bot reporting `dev` or none: run
    from source), `{cmd: terminate, task_id}` when a termination task waits for
    it (even quarantined or in maintenance), else `{cmd: claim, candidates}`:
    the most urgent pending slices it matches (priority, then oldest first, or
    newest first in a LIFO pool), or `{cmd: sleep, duration}` (1.5^(streak+1)
    s up to 60 s, jittered). A quarantined bot or one in maintenance only
    sleeps. `request_uuid` makes a retried poll the same poll."""
    bot = _bot(call, bot_api.Poll.from_wire(call.params).attributes)
    return scheduler.poll(call.store, call.service.queue_cache, call.service.registry, bot, call.now, _rand,
                          expected_version=_current_version(call)).to_wire()


def _current_version(call: Call) -> str | None:
    """None when the bot code cannot be built: bots then keep their code
    rather than every poll failing."""
    try:
        return call.service.bot_code.version(call.server_url)
    except BotCodeError:
        logger.exception("no current bot code")
        return None


def bot_code(call: Call) -> flask.Response:
    """`GET ?version=<digest>` → that `swarming_bot.zip`
    (`application/octet-stream`, cacheable forever), 404 for an unknown
    version, 400 for a malformed one; without `version`, a 302 to the current
    one. Bots, and bootstrap tokens."""
    code = call.service.bot_code
    version = call.params.get("version")
    if not version:
        location = f"{call.server_url}/bot_code?version={code.version(call.server_url)}"
        return flask.Response(status=302, headers={"Location": location})
    if not isinstance(version, str) or not VERSION_RE.match(version):
        raise BadRequest("version: must be a SHA-256 digest (64 lowercase hex digits)")
    data = code.fetch(version, call.server_url)
    if data is None:
        raise NotFound(f"version: no bot code {version}")
    return flask.Response(data, mimetype="application/octet-stream", headers={
        "Content-Disposition": 'attachment; filename="swarming_bot.zip"',
        # A version's bytes never change.
        "Cache-Control": "private, max-age=31536000, immutable",
    })


def bot_bootstrap(call: Call) -> flask.Response:
    """`GET` with a bootstrap token (`?token=` or the header) → a
    `text/x-shellscript` that downloads the current zip with that token into
    the current directory (curl, else python3) and runs `python3
    swarming_bot.zip start_bot`."""
    script = bootstrap.script(call.server_url, call.service.bot_code.version(call.server_url), call.token)
    return flask.Response(script, mimetype="text/x-shellscript")


def server_token(call: Call) -> dict[str, Any]:
    """→ `{bootstrap_token, expires_ts}`: a bootstrap token, valid 1 h
    (`SWARMING_BOOTSTRAP_TOKEN_TTL_SECS`), good for `bot_bootstrap` and
    `bot_code` only."""
    tokens = call.service.bootstrap_tokens
    if tokens is None:
        raise bootstrap.NotConfigured(
            "no bootstrap secret: set SWARMING_BOOTSTRAP_SECRET or the config file's 'bootstrap_secret'")
    token, expires = tokens.mint(call.caller.name, call.now, call.service.settings.bootstrap_token_ttl_secs)
    return {"bootstrap_token": token, "expires_ts": iso(expires)}


def bot_terminate(call: Call) -> dict[str, Any]:
    """`bot_id`, `reason` → `{task_id}` of a priority-0 termination task
    (tag `swarming.terminate:1`, aimed at `id:<bot>` in the bot's first pool,
    waiting up to 5 days). The bot's poll answers `terminate`: it finishes its
    current task, completes this one with exit code 0 and exits."""
    reason = call.params.get("reason") or ""
    if not isinstance(reason, str):
        raise BadRequest("reason: must be a string")
    return termination.terminate(call.service.context, call.service.bot_store, call.string("bot_id"), reason,
                                 call.caller, call.now)


def bot_claim(call: Call) -> dict[str, Any]:
    """`PENDING` → `RUNNING` in one batch guarded by preconditions (the
    pending slice's delete): one bot wins, the others get `{cmd: skip,
    reason}`. The winner gets `{cmd: run, manifest}`; the same `claim_id`
    again gets the same manifest. The manifest carries the slice's command,
    env, caches, inputs, outputs, timeouts and secret bytes."""
    message = bot_api.ClaimRequest.from_wire(call.params)
    return scheduler.claim(call.service.context, call.service.registry, _bot(call, message.attributes), message,
                           call.now).to_wire()


def bot_task_update(call: Call) -> dict[str, Any]:
    """Stdout at a byte offset (`output`, base64; idempotent, out of order
    allowed, 100 MiB at most: 413 beyond), a heartbeat, and with `exit_code` +
    `duration` the end: `COMPLETED`, `TIMED_OUT` (with `hard_timeout` or
    `io_timeout`), `KILLED` after a kill; or `canceled` (stopped before the
    command started: `CANCELED`). A completion may carry `cas_output_root` and
    `performance_stats`. Answers `must_stop` when the task was killed or already
    ended. A run the bot does not hold, or a different second completion, is a
    409."""
    message = bot_api.TaskUpdate.from_wire(call.params)
    return runs.update(call.service.context, call.service.registry, _bot(call, message.attributes), message,
                       call.now).to_wire()


def bot_task_error(call: Call) -> dict[str, Any]:
    """The bot could not run its task: `client_error.missing_cas` (digests
    of inputs not in the store) ends it `CLIENT_ERROR`, anything else
    `BOT_DIED`, or a retry on another bot while the slice has time (an
    idempotent task, or one whose command never started)."""
    message = bot_api.TaskError.from_wire(call.params)
    return bot_death.task_error(call.service.context, _bot(call, message.attributes), message, call.now).to_wire()


def bot_event(call: Call) -> dict[str, Any]:
    """Keeps a bot event: `event` is `bot_error`, `bot_log`, `bot_rebooting`
    or `bot_shutdown`, with its `message`."""
    message = bot_api.Event.from_wire(call.params)
    return bot_registry.event(call.service.bot_store, call.service.registry, _bot(call, message.attributes),
                              message, call.now).to_wire()


def tasks_new(call: Call) -> dict[str, Any]:
    """A NewTaskRequest (the reference's fields, limits and defaults):
    validated (400 naming the field path), automatic tags added (`pool:`,
    `priority:`, `user:`, `name:`, one per dimension value, `parent_task_id:`),
    stored with its first runnable slice pending, in one batch. Priority below
    20 is for admins (403). `evaluate_only` returns the normalised request and
    stores nothing. → `{task_id, request, task_result}`, `task_result` set when
    the task did not simply queue: deduplicated, waiting on an identical task,
    or `NO_RESOURCE` (no live bot matches any slice that does not wait for
    capacity)."""
    return tasks.new(call.service.context, call.params, call.caller, call.now)


def task_result(call: Call) -> dict[str, Any]:
    """`task_id` (or a run id) → state, bot, timestamps (`created_ts`,
    `started_ts`, `completed_ts`, `abandoned_ts`, `modified_ts`), exit code,
    duration, `failure`, `internal_failure`, `try_number`,
    `current_task_slice`, `deduped_from`, `missing_cas`, `cas_output_root`,
    `performance_stats`."""
    return tasks.result(call.service.context, call.string("task_id"))


def task_request(call: Call) -> dict[str, Any]:
    """`task_id` → the stored request; its secret bytes never
    (`has_secret_bytes` only)."""
    return tasks.request(call.service.context, call.string("task_id"))


def task_stdout(call: Call) -> dict[str, Any]:
    """`task_id`, `offset`, `length` (at most 4 MiB a call) → base64
    `output`, `next_offset`, `state`. A deduplicated task shows the stdout of
    the task it took its result from."""
    return tasks.output(call.service.context, call.string("task_id"), offset=call.integer("offset", 0),
                        length=call.integer("length"))


def task_cancel(call: Call) -> dict[str, Any]:
    """`task_id`, `kill_running` → `{canceled, was_running}`: a pending task
    ends `CANCELED` at once; a running one, with `kill_running`, is told to stop
    and ends `KILLED`. Its children are cancelled with it."""
    return cancellation.cancel(call.service.context, call.task_id(), call.boolean("kill_running"),
                               call.now)


def tasks_cancel(call: Call) -> dict[str, Any]:
    """`tags` (a task must have every one), `kill_running`, `limit` ≤ 1000 →
    `{matched, canceled}`."""
    return cancellation.cancel_many(call.service.context, call.params.get("tags") or [],
                                    call.boolean("kill_running"), call.integer("limit", 100), call.now)


def timer_expire(call: Call) -> dict[str, Any]:
    """Cloud Tasks' call when a pending slice's expiration is due: the task
    moves to its next runnable slice, or ends `EXPIRED`. Harmless when
    delivered twice, early (it waits again) or late."""
    return slices.expire(call.service.context, call.task_id(), call.integer("slice", 0), call.now)


def timer_bot_died(call: Call) -> dict[str, Any]:
    """Cloud Tasks' call when a running task's ping tolerance is due: a task
    that heartbeat since waits again; one that did not ends `BOT_DIED` (or is
    retried once on another bot)."""
    return bot_death.check(call.service.context, call.task_id(), call.integer("try_number", 1), call.now)


def bots_list(call: Call) -> dict[str, Any]:
    """`dimensions` (`["k:v"]` or `[{key, value}]`, ANDed), `quarantined`,
    `in_maintenance`, `is_dead`, `is_busy` (true, false or NONE), `limit` ≤
    1000, `cursor` → `{items, cursor}`; `cursor` is null on the last page."""
    return call.service.fleet.list_bots(call.params, call.integer("limit"), call.params.get("cursor"), call.now)


def bots_count(call: Call) -> dict[str, Any]:
    """The filters of `bots_list` → `{count, quarantined, maintenance, dead,
    busy}`."""
    return call.service.fleet.count(call.params, call.now)


def bots_dimensions(call: Call) -> dict[str, Any]:
    """`pool` (optional) → every dimension value its bots reported lately,
    `[{key, value: [...]}]`."""
    return call.service.fleet.dimensions(call.params.get("pool") or None, call.now)


def bot_get(call: Call) -> dict[str, Any]:
    """`bot_id` → `dimensions`, `state`, `version`, `task_id`, `is_busy`,
    `quarantined`, `maintenance_msg`, `is_dead`, `first_seen_ts`,
    `last_seen_ts`."""
    return call.service.fleet.get(call.string("bot_id"), call.now)


def bot_events(call: Call) -> dict[str, Any]:
    """`bot_id`, `limit`, `cursor` → its events, newest first (claims and
    completions of its tasks among them)."""
    return call.service.fleet.events(call.string("bot_id"), call.integer("limit"), call.params.get("cursor"))


def bot_tasks(call: Call) -> dict[str, Any]:
    """`bot_id`, `limit`, `cursor` → the results of the tasks it ran, newest
    first."""
    return call.service.fleet.tasks(call.string("bot_id"), call.integer("limit"), call.params.get("cursor"))


def bot_delete(call: Call) -> dict[str, Any]:
    """Forgets a bot; one still running comes back within the hour."""
    return call.service.fleet.delete(call.string("bot_id"), call.now)


def cas_find_missing(call: Call) -> dict[str, Any]:
    """`digests` (≤ 1,000 `{hash, size_bytes}`) → `{missing}`: those the
    content-addressed store lacks."""
    missing = call.service.cas.find_missing(digests_from_wire(call.params.get("digests"), "digests"))
    return {"missing": [d.to_wire() for d in missing]}


def cas_urls(call: Call) -> dict[str, Any]:
    """`upload`, `download` (≤ 1,000 digests each) → short-lived signed URLs
    (create-only for uploads) and `expires_ts`: bytes never pass through a
    function."""
    return call.service.cas.urls(_digests(call, "upload"), _digests(call, "download"), call.now).to_wire()


def _digests(call: Call, name: str) -> list[Digest]:
    """An optional list of digests (absent or null: none)."""
    body = call.params.get(name)
    return [] if body is None else digests_from_wire(body, name)


def cron_sweep(call: Call) -> dict[str, Any]:
    """Cloud Scheduler's call, every few minutes: repairs what lost timers
    left (expired pending slices, silent runs), releases the tasks waiting on
    an identical task whose end did not release them, and flags bots dead or
    alive again. Safe at any time."""
    return sweep.sweep(call.service.context, call.service.fleet, call.now)


FUNCTIONS: list[Function] = [
    Function("bot_handshake", bot_handshake, BOTS, summary="A bot says hello; its registry entry is written"),
    Function("bot_poll", bot_poll, BOTS, summary="A bot asks for work: candidates to claim, or sleep"),
    Function("bot_claim", bot_claim, BOTS, summary="A bot claims one pending task atomically"),
    Function("bot_task_update", bot_task_update, BOTS, summary="Stdout at an offset, heartbeat, completion"),
    Function("bot_task_error", bot_task_error, BOTS, summary="A bot could not run its task"),
    Function("bot_event", bot_event, BOTS, summary="A bot reports an error, a log line, a reboot or shutdown"),
    Function("bot_code", bot_code, BOT_CODE, ("GET",),
             summary="swarming_bot.zip of ?version=<digest>; without a version, a redirect to the current one"),
    Function("bot_bootstrap", bot_bootstrap, BOOTSTRAP, ("GET",), token_param=True,
             summary="A shell script that downloads the bot code with a bootstrap token and starts the bot"),
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
    Function("bot_terminate", bot_terminate, ADMINS,
             summary="Queue a priority-0 termination task for a bot: it finishes its task, then exits"),
    Function("server_token", server_token, ADMINS, summary="A short-lived bootstrap token for bot_bootstrap"),
    Function("cas_find_missing", cas_find_missing, CAS,
             summary="Which of up to 1,000 digests the content-addressed store lacks"),
    Function("cas_urls", cas_urls, CAS,
             summary="Short-lived signed URLs: create-only uploads and downloads of up to 1,000 blobs each"),
    Function("timer_expire", timer_expire, INTERNAL, summary="Cloud Tasks: a pending slice's time is up"),
    Function("timer_bot_died", timer_bot_died, INTERNAL, summary="Cloud Tasks: has a running task's bot gone silent?"),
    Function("cron_sweep", cron_sweep, INTERNAL, summary="Repairs what lost timers left; marks bots dead or alive"),
]
