"""Every Cloud Function, thin: parse the call, decide whether the caller may
(`Call.authorize`, the one decision: functions.permissions), run one domain
function, answer.

`FUNCTIONS` is the registry: `main.py`, the local gateway, Terraform and the
OpenAPI document are all checked against it. Each entry names the action its
function does, which says who may call it.
"""

import dataclasses
import datetime
import functools
import logging
import random
from typing import Any, Callable, Sequence

import flask

from functions import (bootstrap, bot_auth, bot_death, bot_registry, budget, cancellation, fleet, long_poll,
                       notifications, ops, pending, permissions, runs, scheduler, slices, stdout, sweep, task_query,
                       tasks, termination, timers, ui)
from functions.bot_code import VERSION_RE, BotCodeError
from functions.bot_registry import BotRequest
from functions.errors import BadRequest, NotFound, Unavailable
from functions.fleet import pools_of
from functions.http import Call, Function
from functions.models import TaskResult, iso
from functions.permissions import Action
from functions.signed_tokens import BOOTSTRAP
from functions.store import request_of
from functions.tasks import Requester
from shared import bot_api
from shared import dimensions as dims_lib
from shared import task_id as task_ids
from shared.cas import DIGEST, DIGESTS, MAX_BATCH
from shared.errors import ConfigError, ValidationError
from shared.service_config import BotGroup
from shared.states import State
from shared.task_request import MAX_SLICES, MAX_TAG_LENGTH, REQUEST, TAG_RE, TaskRequest
from shared.wire import MAX_INT64, REQUIRED, Boolean, Choice, Field, Integer, ListOf, MapOf, Schema, Shape, Text

logger = logging.getLogger(__name__)
_rand = random.SystemRandom()
#: What every function may answer, whatever it does: a malformed call, no or
#: bad credentials, a caller without the role, another method, retry later.
COMMON_ERRORS = (400, 401, 403, 405, 503)


@dataclasses.dataclass(frozen=True)
class Contract:
    """What a function reads and answers, which the OpenAPI document says:
    its parameters, its answer's schema (of `media`; a redirect too with
    `redirects`), and the errors it answers besides COMMON_ERRORS."""

    params: Field
    answer: Schema
    errors: tuple[int, ...] = ()
    media: str = "application/json"
    redirects: bool = False


def takes(params: Field, answer: Schema, errors: tuple[int, ...] = (), **media: Any) -> Callable[..., Any]:
    """The handler gets its parameters read by `params` (the one validation:
    a bad one is a ValidationError naming its field) besides the call."""
    def wrap(handler: Callable[[Call, Any], Any]) -> Callable[[Call], Any]:
        @functools.wraps(handler)
        def handle(call: Call) -> Any:
            return handler(call, params.read(call.params, ""))
        handle.contract = Contract(params, answer, errors, **media)  # type: ignore[attr-defined]
        return handle
    return wrap


def contract(function: Function) -> Contract:
    """What the function reads and answers: every handler is declared with `takes`."""
    return function.handler.contract  # type: ignore[attr-defined]


# What the client API answers (the bot API's answers are shared.bot_api's).

def _type(name: str, nullable: bool = False) -> Schema:
    return {"type": [name, "null"]} if nullable else {"type": name}


def _object(required: dict[str, Schema], **optional: Schema) -> Schema:
    return {"type": "object", "properties": {**required, **optional}, "required": list(required)}


def _list(items: Schema) -> Schema:
    return {"type": "array", "items": items}


STRING, INTEGER, BOOLEAN, OBJECT = _type("string"), _type("integer"), _type("boolean"), _type("object")
_TS = _type("string", nullable=True)
_PAIRS = _list(_object({"key": STRING, "value": _list(STRING)}))
TASK_RESULT = _object({
    "task_id": STRING, "run_id": _TS, "name": STRING, "tags": _list(STRING), "user": STRING, "priority": INTEGER,
    "pool": STRING, "authenticated": STRING, "state": {"type": "string", "enum": [state.value for state in State]},
    "created_ts": STRING, "modified_ts": STRING, "started_ts": _TS, "completed_ts": _TS, "abandoned_ts": _TS,
    "expiration_ts": _TS, "current_task_slice": INTEGER, "try_number": INTEGER, "bot_id": _TS,
    "bot_dimensions": _type("object", nullable=True), "exit_code": _type("integer", nullable=True),
    "duration": _type("number", nullable=True), "failure": BOOLEAN, "internal_failure": BOOLEAN,
    "deduped_from": _TS, "parent_task_id": _TS, "bot_ping_tolerance_secs": INTEGER,
    "missing_cas": _type("array", nullable=True), "internal_failure_message": _TS, "canceled_by": _TS,
    "cas_output_root": _type("object", nullable=True), "performance_stats": _type("object", nullable=True),
    "costs_usd": _list(_type("number")), "cost_saved_usd": _type("number", nullable=True),
    "server_cost": {"type": "object", "properties": {name: INTEGER for name in ops.SERVER_COST}},
    "notification_error": _TS,
}, stdout_length=_type("integer", nullable=True))
BOT = _object({
    "bot_id": STRING, "dimensions": _PAIRS, "state": OBJECT, "version": STRING, "task_id": _TS, "is_busy": BOOLEAN,
    "quarantined": BOOLEAN, "maintenance_msg": _TS, "is_dead": BOOLEAN, "first_seen_ts": _TS, "last_seen_ts": STRING,
})
EVENT = _object({"ts": STRING, "event_type": STRING}, message=STRING, task_id=_TS, dimensions=_PAIRS, state=OBJECT,
                version=STRING, quarantined=BOOLEAN, maintenance_msg=_TS)
_PAGE = {"cursor": _TS}
_DIGEST_FIELDS = {"hash": STRING, "size_bytes": INTEGER}
_DIGESTS = _list(_object(_DIGEST_FIELDS))

# The parameters the client API reads.

#: A bot's id is a dimension value: one longer could also be past Firestore's
#: 1,500 bytes for a document id or a filter's value (so could a pool).
BOT_ID = Text(dims_lib.MAX_VALUE_LENGTH, min_length=1, default=REQUIRED)
#: The time the previous page ended at (events, tasks).
TS_CURSOR = Text(64, default=None, nullable=True, description="from the previous page")
ONE_BOT = Shape({"bot_id": BOT_ID})
BOT_PAGE = Shape({"bot_id": BOT_ID, "limit": fleet.LIMIT, "cursor": TS_CURSOR})
ONE_TASK = Shape({"task_id": task_ids.Id(task_ids.EITHER, description="a task id or a run id")})


# The bot API: a bot acts only as itself (functions.bot_auth).

def _bot(call: Call, attributes: bot_api.BotAttributes, run_id: str | None = None) -> tuple[BotRequest, BotGroup]:
    group = bot_auth.check_call(call.config, call.caller, attributes.bot_id, call.remote_ip, run_id)
    return BotRequest.of(attributes, group.dimensions), group


@takes(bot_api.HANDSHAKE, bot_api.HANDSHAKE_REPLY.schema())
def bot_handshake(call: Call, message: bot_api.Handshake) -> dict[str, Any]:
    """Admits the bot under its group of bots.toml, with what the group
    accepts: an ID token of one of its service accounts, a bootstrap token,
    or the bot's own bot token. Registers it (its `bots/<id>` entry, a
    `bot_connected` event) and answers its first `session`, the server's
    version, the dimensions its group enforces (`bot_group_cfg.dimensions`)
    and the group's hooks script (`bot_config`); the answer's
    `X-Swarming-Bot-Token` header is the bot's credential from then on.
    Never hands out work."""
    attributes = message.attributes
    group = bot_auth.accept_handshake(call.config, call.caller, attributes.bot_id, call.remote_ip)
    bot = BotRequest.of(attributes, group.dimensions)
    script = call.config.scripts.get(group.bot_config_script) if group.bot_config_script else None
    reply = bot_registry.handshake(call.service.registry, bot, group, script, call.service.settings.server_version,
                                   call.now)
    ttl = datetime.timedelta(seconds=call.config.settings.bot_session_ttl_secs)
    call.bot_token = (bot.bot_id, group.name, bot_auth.group_version(call.config, group), call.now + ttl)
    return reply.to_wire()


@takes(bot_api.POLL, bot_api.POLL_REPLY.schema())
def bot_poll(call: Call, message: bot_api.Poll) -> dict[str, Any]:
    """Never transacts. Answers `{cmd: bot_restart}` when the bot's group
    changed since its handshake, `{cmd: update, version}` when the bot runs
    other code than the current zip (never a bot reporting `dev` or none: run
    from source), `{cmd: terminate, task_id}` when a termination task waits for
    it (even quarantined or in maintenance), else `{cmd: claim, candidates}`:
    the most urgent pending slices it matches (priority, then oldest first, or
    newest first in a LIFO pool), or `{cmd: sleep, duration}` (1.5^(streak+1)
    s up to 60 s, jittered; also when each slice it matches is offered to
    another bot, then never before the first offer lapses). A quarantined
    bot or one in maintenance only sleeps. `request_uuid` makes a retried
    poll the same poll. With `hold_secs`, a poll with nothing to do is held
    up to that long (at most the server's SWARMING_POLL_HOLD_SECS) and
    answered as soon as a task comes, or `{cmd: sleep, duration: 0}` when none did (a long poll); a bot
    with no queue yet, or one past SWARMING_POLL_HOLDS_PER_QUEUE held polls
    on each of its queues, gets its back-off instead."""
    bot, group = _bot(call, message.attributes)
    if bot_auth.moved(call.config, call.caller, group):
        return bot_api.Restart(f"the bot's group is now {group.name!r} as configured: handshake again").to_wire()
    service = call.service

    def answer(fresh: bool) -> bot_api.PollReply:
        return scheduler.poll(call.store, service.queue_cache, service.heads, service.offers, service.registry, bot,
                              service.clock(), _rand, expected_version=_current_version(call), fresh=fresh)

    def queue_keys() -> list[str]:
        entry = bot.entry(None)
        return scheduler.matching_queues(call.store, service.queue_cache, bot, service.clock(),
                                         only_own=bool(entry.quarantined or entry.maintenance_msg))

    hold = budget.Budget(min(message.hold_secs, service.settings.poll_hold_secs))
    return long_poll.poll(answer, queue_keys, service.pending_watch, hold,
                          service.settings.poll_holds_per_queue).to_wire()


def _current_version(call: Call) -> str | None:
    """None when the bot code cannot be built: bots then keep their code
    rather than every poll failing."""
    try:
        return call.service.bot_code.version(call.server_url)
    except BotCodeError:
        logger.exception("no current bot code")
        return None


@takes(Shape({"version": Text(64, f"({VERSION_RE.pattern.strip('^$')})?", description="none: the current one")}),
       {"type": "string", "format": "binary"}, (404,), media="application/octet-stream", redirects=True)
def bot_code(call: Call, params: dict[str, str]) -> flask.Response:
    """`GET ?version=<digest>` → that `swarming_bot.zip`
    (`application/octet-stream`, cacheable forever), 404 for an unknown
    version, 400 for a malformed one; without `version`, a 302 to the current
    one. Bots, and bootstrap tokens."""
    code = call.service.bot_code
    version = params["version"]
    if not version:
        location = f"{call.server_url}/bot_code?version={code.version(call.server_url)}"
        return flask.Response(status=302, headers={"Location": location})
    data = code.fetch(version, call.server_url)
    if data is None:
        raise NotFound(f"version: no bot code {version}")
    return flask.Response(data, mimetype="application/octet-stream", headers={
        "Content-Disposition": 'attachment; filename="swarming_bot.zip"',
        # A version's bytes never change.
        "Cache-Control": "private, max-age=31536000, immutable",
    })


@takes(Shape({}), STRING, media="text/x-shellscript")
def bot_bootstrap(call: Call, params: dict[str, Any]) -> flask.Response:
    """`GET` with a bootstrap token (`?token=` or the header) → a
    `text/x-shellscript` that downloads the current zip with that token into
    the current directory (curl, else python3) and runs `python3
    swarming_bot.zip start_bot`."""
    script = bootstrap.script(call.server_url, call.service.bot_code.version(call.server_url), call.token)
    return flask.Response(script, mimetype="text/x-shellscript")


@takes(Shape({}), _object({"bootstrap_token": STRING, "expires_ts": STRING}))
def server_token(call: Call, params: dict[str, Any]) -> dict[str, Any]:
    """→ `{bootstrap_token, expires_ts}`: a bootstrap token, valid for
    settings.toml's `bootstrap_token_ttl_secs` (1 h), good for `bot_code`,
    `bot_bootstrap` and the handshake of a bot whose group accepts bootstrap."""
    tokens = call.service.signed_tokens
    if tokens is None:
        raise Unavailable("no token secret: set SWARMING_TOKEN_SECRET")
    expires = call.now + datetime.timedelta(seconds=call.config.settings.bootstrap_token_ttl_secs)
    token = tokens.mint(BOOTSTRAP, {"sub": call.caller.identity}, expires)
    return {"bootstrap_token": token, "expires_ts": iso(expires.replace(microsecond=0))}


@takes(bot_api.CLAIM, bot_api.CLAIM_REPLY.schema())
def bot_claim(call: Call, message: bot_api.ClaimRequest) -> dict[str, Any]:
    """`PENDING` → `RUNNING` in one batch guarded by preconditions (the
    pending slice's delete): one bot wins, the others get `{cmd: skip,
    reason}`. The winner gets `{cmd: run, manifest, run_token}`; the same
    `claim_id` again gets the same manifest. The manifest carries the slice's
    command, env, caches, inputs, outputs, timeouts and secret bytes; the run
    token is the task runner's credential, for this run only. The bot's own
    token, in the answer's header, outlasts the task."""
    bot, _ = _bot(call, message.attributes)
    service = call.service
    reply = scheduler.claim(service.context, service.heads, service.offers, service.registry, bot, message, call.now)
    if isinstance(reply, bot_api.Run):
        hard_timeout = reply.manifest.hard_timeout
        run_token = service.bot_tokens.run_token(call.caller, reply.manifest.task_id, hard_timeout, call.now)
        reply = dataclasses.replace(reply, run_token=run_token)
        ttl = datetime.timedelta(seconds=hard_timeout + call.config.settings.bot_session_ttl_secs)
        caller = call.caller
        call.bot_token = (bot.bot_id, caller.group, caller.group_version, call.now + bot_auth.RUN_TOKEN_MARGIN + ttl)
    return reply.to_wire()


@takes(bot_api.TASK_UPDATE, bot_api.TASK_UPDATE_REPLY.schema(), (404, 409, 413))
def bot_task_update(call: Call, message: bot_api.TaskUpdate) -> dict[str, Any]:
    """Stdout at a byte offset (`output`, base64; idempotent, out of order
    allowed, 100 MiB at most: 413 beyond), a heartbeat, and with `exit_code` +
    `duration` the end: `COMPLETED`, `TIMED_OUT` (with `hard_timeout` or
    `io_timeout`), `KILLED` after a kill; or `canceled` (stopped before the
    command started: `CANCELED`). A completion may carry `cas_output_root` and
    `performance_stats`. Answers `must_stop` when the task was killed or already
    ended. A run the bot does not hold, or a different second completion, is a
    409. The bot's token, or the run's."""
    bot, _ = _bot(call, message.attributes, message.run_id)
    return runs.update(call.service.context, call.service.registry, bot, message, call.now).to_wire()


@takes(bot_api.TASK_ERROR, bot_api.TASK_ERROR_REPLY.schema(), (404, 409))
def bot_task_error(call: Call, message: bot_api.TaskError) -> dict[str, Any]:
    """The bot could not run its task: `client_error.missing_cas` (digests
    of inputs not in the store) ends it `CLIENT_ERROR`, anything else
    `BOT_DIED`, or a retry on another bot while the slice has time (an
    idempotent task, or one whose command never started)."""
    bot, _ = _bot(call, message.attributes)
    return bot_death.task_error(call.service.context, bot, message, call.now).to_wire()


@takes(bot_api.EVENT, bot_api.EVENT_REPLY.schema())
def bot_event(call: Call, message: bot_api.Event) -> dict[str, Any]:
    """Keeps a bot event: `event` is `bot_error`, `bot_log`, `bot_rebooting`
    or `bot_shutdown`, with its `message`."""
    bot, _ = _bot(call, message.attributes)
    return bot_registry.event(call.service.bot_store, call.service.registry, bot, message, call.now).to_wire()


# Tasks: a person's role in the task's pool decides.

def _requester(call: Call) -> Requester:
    return Requester(call.caller.identity, admin=call.config.is_admin(call.caller.identity))


def _reader(call: Call) -> tasks.Check:
    return lambda result: call.authorize(result.pool)


@takes(REQUEST, _object({"task_id": _TS, "request": OBJECT, "task_result": _type("object", nullable=True)}))
def tasks_new(call: Call, request: TaskRequest) -> dict[str, Any]:
    """A NewTaskRequest (the reference's fields, limits and defaults):
    validated (400 naming the field path), automatic tags added (`pool:`,
    `priority:`, `user:`, `name:`, one per dimension value, `parent_task_id:`),
    stored with its first runnable slice pending, in one batch. The caller
    must be a scheduler of the task's pool; the task's `user` is the caller
    (another `user` is for admins only, 403), and so is its `authenticated`.
    Priority below 20 is for admins (403). `evaluate_only` returns the
    normalised request and stores nothing. → `{task_id, request,
    task_result}`, `task_result` set when the task did not simply queue:
    deduplicated, waiting on an identical task, or `NO_RESOURCE` (no live bot
    matches any slice that does not wait for capacity)."""
    call.authorize(request.pool)
    return tasks.new(call.service.context, request, _requester(call), call.now)


@takes(ONE_TASK, TASK_RESULT, (404,))
def task_result(call: Call, params: dict[str, str]) -> dict[str, Any]:
    """`task_id` (or a run id) → state, bot, timestamps (`created_ts`,
    `started_ts`, `completed_ts`, `abandoned_ts`, `modified_ts`), exit code,
    duration, `failure`, `internal_failure`, `try_number`,
    `current_task_slice`, `deduped_from`, `missing_cas`, `cas_output_root`,
    `performance_stats`, `pool`, `authenticated`. Viewers of the task's pool."""
    return tasks.result(call.service.context, params["task_id"], _reader(call))


@takes(ONE_TASK, _object({"name": STRING, "task_slices": _list(OBJECT), "authenticated": STRING}), (404,))
def task_request(call: Call, params: dict[str, str]) -> dict[str, Any]:
    """`task_id` → the stored request, and `authenticated`, who created it;
    its secret bytes never (`has_secret_bytes` only)."""
    return tasks.request(call.service.context, params["task_id"], _reader(call))


@takes(Shape({**ONE_TASK.fields, "offset": Integer(0, stdout.MAX_SIZE - 1, 0, nullable=True, from_text=True),
              "length": Integer(1, MAX_INT64, None, nullable=True, from_text=True)}),
       _object({"task_id": STRING, "state": STRING, "offset": INTEGER, "output": STRING, "next_offset": INTEGER,
                "gap": BOOLEAN}),
       (404,))
def task_stdout(call: Call, params: dict[str, Any]) -> dict[str, Any]:
    """`task_id`, `offset`, `length` (at most 4 MiB a call) → base64
    `output`, `next_offset`, `state`: only bytes stored without a gap from
    `offset`, never made-up ones; `gap` is true when bytes are missing at
    `next_offset` while later ones are stored (a packet still on its way).
    A deduplicated task shows the stdout of the task it took its result from."""
    return tasks.output(call.service.context, params["task_id"], offset=params["offset"], length=params["length"],
                        check=_reader(call))


@takes(ONE_TASK, _object({"task_id": STRING, "state": STRING, "slices": _list(_object({
    "slice": INTEGER, "matching_bots": INTEGER, "partial": BOOLEAN, "position": _type("integer", nullable=True),
    "expiration_ts": _TS, "blocking": _type("object", nullable=True)}))}), (404,))
def task_pending(call: Call, params: dict[str, str]) -> dict[str, Any]:
    """`task_id` → why it is still pending: for each slice it may still run
    (`slices`, empty unless `PENDING`), how many live bots match it now
    (`matching_bots`; `partial` when it has more OR alternatives than are
    counted), when none does the dimension that rules out the most bots
    (`blocking: {dimension, matching_bots}`), how many pending slices of its
    queue bots get first (`position`, on the slice that waits) and when it
    expires. A few count aggregations, whatever the fleet's size. Viewers of
    the task's pool."""
    return pending.explain(call.store, call.service.bot_store, params["task_id"], _reader(call))


@takes(Shape({"task_id": task_ids.Id(task_ids.TASK), "kill_running": Boolean(from_text=True)}),
       _object({"canceled": BOOLEAN, "was_running": BOOLEAN}), (404,))
def task_cancel(call: Call, params: dict[str, Any]) -> dict[str, Any]:
    """`task_id`, `kill_running` → `{canceled, was_running}`: a pending task
    ends `CANCELED` at once; a running one, with `kill_running`, is told to stop
    and ends `KILLED`. Its children are cancelled with it. Admins of the
    task's pool, and its schedulers for the tasks they created."""
    task_id = params["task_id"]
    found = call.store.get_result(task_id)
    if found is None:
        raise NotFound(f"no task {task_id}")
    call.authorize(found.pool, owner=found.authenticated)
    return cancellation.cancel(call.service.context, task_id, params["kill_running"], call.now, call.caller.identity)


#: Tags a bulk cancel may AND.
MAX_CANCEL_TAGS = 64


@takes(Shape({"tags": ListOf(Text(1024, ".*:.*"), MAX_CANCEL_TAGS, min_items=1, description="'key:value' tags"),
              "kill_running": Boolean(from_text=True),
              "limit": Integer(1, cancellation.MAX_BULK, 100, nullable=True),
              "cursor": Text(64, default=None, nullable=True, description="the previous answer's cursor")}),
       _object({"matched": INTEGER, "canceled": INTEGER, "cursor": _TS, "now": STRING}))
def tasks_cancel(call: Call, params: dict[str, Any]) -> dict[str, Any]:
    """`tags` (a task must have every one), `kill_running`, `limit` ≤ 1000
    (100), `cursor` → `{matched, canceled, cursor, now}`: at most `limit`
    tasks, and as many as 20 s allow. Until `cursor` is null, calling again
    with it goes on after the last task looked at: no task twice, none
    skipped. A `pool:<name>` tag names the pool: its admins cancel any of its
    tasks, its schedulers theirs; without one, admins only."""
    tags = params["tags"]
    pool = next((tag.partition(":")[2] for tag in tags if tag.startswith("pool:")), None)
    owner = None
    if call.may(pool):
        call.authorize(pool)
    else:
        call.authorize(pool, owner=call.caller.identity)
        owner = call.caller.identity
    return cancellation.cancel_many(call.service.context, tags, params["kill_running"], params["limit"], call.now,
                                    budget.Budget(budget.REQUEST_SECS), call.caller.identity, cursor=params["cursor"],
                                    owner=owner)


#: Tags a task list ANDs, at most: with several, each costs a count's read.
MAX_QUERY_TAGS = 16
_TIME_PARAM = "RFC 3339, or seconds since the epoch; on the `sort` time"
TASK_SELECTION: dict[str, Field] = {
    "state": Choice(task_query.STATES, "ALL"),
    "tags": ListOf(Text(MAX_TAG_LENGTH, TAG_RE), MAX_QUERY_TAGS, from_text=True, nullable=True,
                   description="'key:value' tags, ANDed"),
    "sort": Choice(task_query.TIMES + tuple(time.upper() for time in task_query.TIMES), "created_ts",
                   description="the time the tasks are ordered by (newest first) and `start`/`end` bound"),
    "start": task_query.Timestamp(None, nullable=True, description=f"from this time on ({_TIME_PARAM})"),
    "end": task_query.Timestamp(None, nullable=True, description=f"before this time ({_TIME_PARAM})"),
}
TASK_PAGE = Shape({**TASK_SELECTION, "limit": fleet.LIMIT,
                   "cursor": Text(1024, default=None, nullable=True, description="the previous page's cursor")})


def _task_query(call: Call, params: dict[str, Any]) -> task_query.Query:
    """The selection, once the caller may read every pool its `pool:` tags
    name; with none, the caller must be allowed every pool (a global admin)."""
    tags = tuple(params["tags"] or ())
    selection = task_query.Selection(params["state"], tags, params["sort"].lower(), params["start"], params["end"])
    for pool in sorted({tag.partition(":")[2] for tag in tags if tag.startswith("pool:")}) or [None]:
        call.authorize(pool)
    return task_query.Query(call.store.db, selection)


def _task_page(call: Call, params: dict[str, Any]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """A page of task documents, and the answer's `cursor` and `now`."""
    query = _task_query(call, params)
    cursor = task_query.Cursor.parse(params["cursor"], params["sort"].lower()) if params["cursor"] else None
    docs, after = query.page(params["limit"] or fleet.DEFAULT_LIMIT, cursor)
    return docs, {"cursor": after.to_text() if after else None, "now": iso(call.now)}


@takes(TASK_PAGE, _object({"items": _list(TASK_RESULT), "now": STRING, **_PAGE}))
def tasks_list(call: Call, params: dict[str, Any]) -> dict[str, Any]:
    """`state` (PENDING, RUNNING, PENDING_RUNNING, COMPLETED,
    COMPLETED_SUCCESS, COMPLETED_FAILURE, EXPIRED, TIMED_OUT, BOT_DIED,
    CANCELED, KILLED, NO_RESOURCE, CLIENT_ERROR, DEDUPED, ALL), `tags` (ANDed),
    `sort` (`created_ts`, `started_ts`, `completed_ts`: newest first, and only
    tasks that have that time), `start`, `end`, `limit` ≤ 1000 (200),
    `cursor` → `{items, cursor, now}`: the task results, `cursor` null on the
    last page. A page may hold fewer than `limit` with a cursor still set
    (with several tags, a call reads at most 1,000 tasks). Viewers of the pool
    the `pool:` tag names; without one, global admins."""
    docs, page = _task_page(call, params)
    return {"items": [TaskResult.from_doc(doc).to_wire() for doc in docs], **page}


@takes(TASK_PAGE, _object({"items": _list(_object({"task_id": STRING, "name": STRING, "task_slices": _list(OBJECT),
                                                     "authenticated": STRING})), "now": STRING, **_PAGE}))
def tasks_requests(call: Call, params: dict[str, Any]) -> dict[str, Any]:
    """The parameters of `tasks_list` → `{items, cursor, now}`: the requests
    of the same tasks (as `task_request` answers them, with `task_id`)."""
    docs, page = _task_page(call, params)
    return {"items": [{"task_id": doc["task_id"], **request_of(doc).to_wire(),
                       "authenticated": doc["authenticated"]} for doc in docs], **page}


@takes(Shape(TASK_SELECTION), _object({"count": INTEGER, "at_least": BOOLEAN, "now": STRING,
                                        "server_cost": _object({name: INTEGER for name in ops.SERVER_COST}),
                                        "cost_saved_usd": _type("number")}))
def tasks_count(call: Call, params: dict[str, Any]) -> dict[str, Any]:
    """The selection of `tasks_list` → `{count, at_least, now, server_cost,
    cost_saved_usd}`: exact up to 10,000 tasks (1,000 with several tags),
    beyond which `at_least` is true and `count` the bound; the sums are over
    the tasks counted: what they cost the service (Firestore reads, writes,
    Cloud Tasks operations) and what deduplication saved. Viewers of the
    pool the `pool:` tag names."""
    counted = _task_query(call, params).count()
    return {"count": counted.count, "at_least": counted.at_least, "now": iso(call.now),
            "server_cost": counted.server_cost, "cost_saved_usd": counted.cost_saved_usd}


#: What every timer's body has (functions.timers): the task, and the second
#: the timer was due (absent from timers armed before they carried it).
_TIMER = {"task_id": task_ids.Id(task_ids.TASK),
          "due": Integer(0, timers.LAST_SECOND, None, nullable=True, description="the timer's second (epoch)")}
TIMER_EXPIRE = Shape({**_TIMER, "slice": Integer(0, MAX_SLICES - 1, 0)})
TIMER_BOT_DIED = Shape({**_TIMER, "try_number": Integer(1, bot_death.MAX_TRIES, 1)})
TIMER_NOTIFY = Shape({**_TIMER, "attempt": Integer(0, MAX_INT64, 0, description="failed attempts before this one"),
                      "missing": Integer(0, notifications.MISSING_TOPIC_ATTEMPTS, 0,
                                         description="attempts that found no topic")})


#: What a timer answers: what it found to do.
_DONE = _object({"done": STRING}, next=STRING)


@takes(TIMER_EXPIRE, _DONE)
def timer_expire(call: Call, params: dict[str, Any]) -> dict[str, Any]:
    """Cloud Tasks' call when a pending slice's expiration is due: the task
    moves to its next runnable slice, or ends `EXPIRED`. Harmless when
    delivered twice, early (it waits again) or late."""
    return slices.expire(call.service.context, params["task_id"], params["slice"], call.now, _due(call, params))


@takes(TIMER_BOT_DIED, _DONE)
def timer_bot_died(call: Call, params: dict[str, Any]) -> dict[str, Any]:
    """Cloud Tasks' call when a running task's ping tolerance is due: a task
    that heartbeat since waits again; one that did not ends `BOT_DIED` (or is
    retried once on another bot)."""
    return bot_death.check(call.service.context, params["task_id"], params["try_number"], call.now,
                           _due(call, params))


@takes(TIMER_NOTIFY, _DONE)
def timer_notify(call: Call, params: dict[str, Any]) -> dict[str, Any]:
    """Cloud Tasks' call after a task whose request named a `pubsub_topic`
    ended: publishes `{"task_id", "userdata"}` there (with the `auth_token`
    attribute when one was given), or arms the next attempt when Pub/Sub
    failed. A topic still missing after 5 attempts is given up, and the
    task's result says why (`notification_error`). At least once: a
    duplicate delivery may publish twice."""
    return notifications.deliver(call.service.context, call.service.publisher, params["task_id"],
                                 params["attempt"], params["missing"], call.now, _due(call, params))


def _due(call: Call, params: dict[str, Any]) -> int | None:
    """The second the timer was due, which an early delivery re-arms at:
    never past what Cloud Tasks can schedule, since no timer was armed there."""
    due = params["due"]
    if due is not None and due > (call.now + timers.HORIZON).timestamp():
        raise ValidationError("due", "is more than 30 days ahead: no timer is armed that far")
    return due


# The fleet: a person's role in the bots' pool decides.

def _filter_pool(params: dict[str, Any]) -> str | None:
    """The pool a listing is filtered on (`pool:<name>` among its dimensions), if any."""
    return next((flag.partition(":")[2] for flag in params["dimensions"] if flag.startswith("pool:")), None)


def _authorize_any(call: Call, pools: Sequence[str]) -> None:
    """The caller may act on a bot when it may in one of the bot's pools."""
    for pool in pools:
        if call.may(pool):
            call.authorize(pool)
            return
    call.authorize(None)


def _bot_pools(call: Call, bot_id: str) -> list[str]:
    return pools_of(call.service.bot_store.get_bot(bot_id))


@takes(Shape({**fleet.FILTERS, "limit": fleet.LIMIT,
              "cursor": Text(dims_lib.MAX_VALUE_LENGTH, default=None, nullable=True, description="the last bot_id")}),
       _object({"items": _list(BOT), "now": STRING, **_PAGE}))
def bots_list(call: Call, params: dict[str, Any]) -> dict[str, Any]:
    """`dimensions` (`["k:v"]` or `[{key, value}]`, ANDed), `quarantined`,
    `in_maintenance`, `is_dead`, `is_busy` (true, false or NONE), `limit` ≤
    1000, `cursor` → `{items, cursor}`; `cursor` is null on the last page.
    Viewers of the pool the dimensions name; without one, admins."""
    call.authorize(_filter_pool(params))
    return call.service.fleet.list_bots(params, params["limit"], params["cursor"], call.now)


@takes(Shape(fleet.FILTERS), _object({name: INTEGER for name in ("count", *fleet.COUNTED)}, now=STRING))
def bots_count(call: Call, params: dict[str, Any]) -> dict[str, Any]:
    """The filters of `bots_list` → `{count, quarantined, maintenance, dead,
    busy}`."""
    call.authorize(_filter_pool(params))
    return call.service.fleet.count(params, call.now)


@takes(Shape({"pool": Text(dims_lib.MAX_VALUE_LENGTH, default=None, nullable=True)}),
       _object({"bots_dimensions": _PAIRS, "ts": STRING}))
def bots_dimensions(call: Call, params: dict[str, Any]) -> dict[str, Any]:
    """`pool` (optional: admins only without one) → every dimension value its
    bots reported lately, `[{key, value: [...]}]`."""
    pool = params["pool"] or None
    call.authorize(pool)
    return call.service.fleet.dimensions(pool, call.now)


@takes(ONE_BOT, BOT, (404,))
def bot_get(call: Call, params: dict[str, str]) -> dict[str, Any]:
    """`bot_id` → `dimensions`, `state`, `version`, `task_id`, `is_busy`,
    `quarantined`, `maintenance_msg`, `is_dead`, `first_seen_ts`,
    `last_seen_ts`. Viewers of one of its pools."""
    return call.service.fleet.get(params["bot_id"], call.now, lambda pools: _authorize_any(call, pools))


@takes(BOT_PAGE, _object({"items": _list(EVENT), **_PAGE}))
def bot_events(call: Call, params: dict[str, Any]) -> dict[str, Any]:
    """`bot_id`, `limit`, `cursor` → its events, newest first (claims and
    completions of its tasks among them)."""
    bot_id = params["bot_id"]
    _authorize_any(call, _bot_pools(call, bot_id))
    return call.service.fleet.events(bot_id, params["limit"], params["cursor"])


@takes(BOT_PAGE, _object({"items": _list(TASK_RESULT), **_PAGE}))
def bot_tasks(call: Call, params: dict[str, Any]) -> dict[str, Any]:
    """`bot_id`, `limit`, `cursor` → the results of the tasks it ran, newest
    first."""
    bot_id = params["bot_id"]
    _authorize_any(call, _bot_pools(call, bot_id))
    return call.service.fleet.tasks(bot_id, params["limit"], params["cursor"])


@takes(ONE_BOT, _object({"deleted": BOOLEAN}), (404,))
def bot_delete(call: Call, params: dict[str, str]) -> dict[str, Any]:
    """Forgets a bot; one still running comes back within the hour. Admins of
    one of its pools."""
    bot_id = params["bot_id"]
    _authorize_any(call, _bot_pools(call, bot_id))
    return call.service.fleet.delete(bot_id, call.now)


@takes(Shape({"bot_id": BOT_ID, "reason": Text(termination.MAX_REASON_LENGTH, default="", nullable=True)}),
       _object({"task_id": STRING}), (404,))
def bot_terminate(call: Call, params: dict[str, str]) -> dict[str, Any]:
    """`bot_id`, `reason` → `{task_id}` of a priority-0 termination task
    (tag `swarming.terminate:1`, aimed at `id:<bot>` in the bot's first pool,
    waiting up to 5 days). The bot's poll answers `terminate`: it finishes its
    current task, completes this one with exit code 0 and exits. Admins of
    one of its pools."""
    bot_id, reason = params["bot_id"], params["reason"]
    pools = _bot_pools(call, bot_id)
    if not pools:
        raise NotFound(f"bot_id: no bot {bot_id!r}")
    _authorize_any(call, pools)
    return termination.terminate(call.service.context, bot_id, pools[0], reason, _requester(call), call.now)


# The web UI.

@takes(Shape({}, lenient=True), STRING, (404,), media="text/html")
def ui_page(call: Call, params: dict[str, Any]) -> flask.Response | dict[str, Any]:
    """The web UI (`text/html`): `GET /ui` and `/ui/tasks` (tasks),
    `/ui/task/<task_id>`, `/ui/bots` (filtered by `pool`, `dimensions`,
    `state`), `/ui/bot/<bot_id>`, `/ui/files/<hash>/<size>` (a tree's files,
    each linked to a short-lived signed URL); `/ui/api/<name>` answers the pages' scripts
    in JSON (`task_stdout`, `task_cancel`, `bot_terminate`, `bot_delete`,
    `retry`). Each page shows what the function of the JSON API answers the
    signed-in person, asked with the same authorization. Sign in at
    `/ui/signin` (an ID token → an HttpOnly session cookie): not signed in,
    a page redirects there."""
    return ui.Pages(call, {f.name: f for f in FUNCTIONS}).serve(flask.request.path)


# The server itself.

@takes(Shape({}), _object({"server_version": STRING, "bot_version": _TS, "config_version": STRING}))
def server_details(call: Call, params: dict[str, Any]) -> dict[str, Any]:
    """→ `server_version`, `bot_version` (the current bot zip's digest) and
    `config_version` (the service configuration's)."""
    return {"server_version": call.service.settings.server_version, "bot_version": _current_version(call),
            "config_version": call.config.version}


@takes(Shape({"task_id": task_ids.Id(task_ids.EITHER, empty=True),
              "bot_id": Text(dims_lib.MAX_VALUE_LENGTH), "pool": Text(dims_lib.MAX_VALUE_LENGTH)}),
       _object({"identity": STRING, "pool": _TS, "permissions": {"type": "object",
                                                               "additionalProperties": BOOLEAN}}), (404,))
def server_permissions(call: Call, params: dict[str, str]) -> dict[str, Any]:
    """`task_id`, `bot_id` or `pool` (one at most) → `{identity, pool,
    permissions: {action: bool}}`: what the caller may do for that task, bot
    or pool (with none, in every pool: what a global admin may). For pages
    that show a button only to whom may press it."""
    given = [name for name in ("task_id", "bot_id", "pool") if params[name]]
    if len(given) > 1:
        raise ValidationError(given[1], f"give one of task_id, bot_id and pool, not {' and '.join(given)}")
    pool, owner = _subject(call, given[0] if given else None, params)
    return {"identity": call.caller.identity, "pool": pool,
            "permissions": permissions.permissions(call.config, call.caller, pool, owner)}


def _subject(call: Call, given: str | None, params: dict[str, str]) -> tuple[str | None, str | None]:
    """The pool (and owner) of what server_permissions is asked about."""
    if given == "task_id":
        found = call.store.get_result(task_ids.summary_id(params["task_id"]))
        if found is None:
            raise NotFound(f"no task {params['task_id']}")
        return found.pool, found.authenticated
    if given == "bot_id":
        pools = _bot_pools(call, params["bot_id"])
        return (pools[0] if pools else None), None
    return params["pool"] or None, None


#: A configuration's files: few, and none larger than a hooks script.
MAX_CONFIG_FILES = 100


@takes(Shape({"files": MapOf(Text(bot_api.MAX_SCRIPT_NAME_LENGTH, min_length=1), Text(bot_api.MAX_SCRIPT_LENGTH),
                             MAX_CONFIG_FILES, default=REQUIRED)}), _object({"version": STRING}))
def config_push(call: Call, params: dict[str, dict[str, str]]) -> dict[str, Any]:
    """`files` (relative name → text: settings.toml, pools.toml, bots.toml,
    scripts/*.py, as `swarming config push DIR` reads them) → `{version}`:
    checked whole (a 400 lists every problem by file, line and field), then
    the current service configuration of every function within a minute."""
    try:
        config = call.service.service_config.push(params["files"])
    except ConfigError as e:
        raise BadRequest("files: " + "; ".join(str(problem) for problem in e.problems)) from e
    logger.info("service configuration %s pushed by %s", config.version, call.caller.identity)
    return {"version": config.version}


@takes(Shape({"digests": DIGESTS}), _object({"missing": _DIGESTS}))
def cas_find_missing(call: Call, params: dict[str, Any]) -> dict[str, Any]:
    """`digests` (≤ 1,000 `{hash, size_bytes}`) → `{missing}`: those the
    content-addressed store lacks."""
    missing = call.service.cas.find_missing(params["digests"])
    return {"missing": [d.to_wire() for d in missing]}


_OPTIONAL_DIGESTS = ListOf(DIGEST, MAX_BATCH, nullable=True)


@takes(Shape({"upload": _OPTIONAL_DIGESTS, "download": _OPTIONAL_DIGESTS}),
       _object({"upload": _list(_object({**_DIGEST_FIELDS, "url": STRING, "headers": OBJECT})),
                "download": _list(_object({**_DIGEST_FIELDS, "url": STRING})), "expires_ts": STRING}))
def cas_urls(call: Call, params: dict[str, Any]) -> dict[str, Any]:
    """`upload`, `download` (≤ 1,000 digests each) → short-lived signed URLs
    (create-only for uploads) and `expires_ts`: bytes never pass through a
    function."""
    return call.service.cas.urls(params["upload"], params["download"], call.now).to_wire()


@takes(Shape({}), _object({"bots": {"type": "object", "additionalProperties": INTEGER},
                           **{name: INTEGER for name in ("expired_slices", "dead_runs", "released_waiters", "failed")},
                           "swept": _list(STRING), "failed_lanes": _list(STRING), "partial": BOOLEAN}))
def cron_sweep(call: Call, params: dict[str, Any]) -> dict[str, Any]:
    """Cloud Scheduler's call, every minute: flags bots dead or alive again
    (`bots`), repairs what lost timers left (`expired_slices`, `dead_runs`)
    and releases the tasks waiting on an identical task whose end did not
    release them (`released_waiters`), shard by shard (`swept`). A task it
    cannot repair now is logged and counted (`failed`), and the next sweep
    tries again; so is a lane whose reads failed (`failed_lanes`: `bots`, a
    shard, `waiters`). It stops after 20 s (`partial: true`) and the next
    sweeps go on: each starts at the next shard in turn. Safe at any time."""
    return sweep.sweep(call.service.context, call.service.fleet, call.now, budget.Budget(budget.REQUEST_SECS))


FUNCTIONS: list[Function] = [
    Function("bot_handshake", bot_handshake, Action.BOT_HANDSHAKE,
             summary="A bot says hello with what its group accepts; it gets its bot token"),
    Function("bot_poll", bot_poll, Action.BOT_CALL, summary="A bot asks for work: candidates to claim, or sleep"),
    Function("bot_claim", bot_claim, Action.BOT_CALL, summary="A bot claims one pending task atomically"),
    Function("bot_task_update", bot_task_update, Action.REPORT_RUN,
             summary="Stdout at an offset, heartbeat, completion"),
    Function("bot_task_error", bot_task_error, Action.BOT_CALL, summary="A bot could not run its task"),
    Function("bot_event", bot_event, Action.BOT_CALL,
             summary="A bot reports an error, a log line, a reboot or shutdown"),
    Function("bot_code", bot_code, Action.GET_BOT_CODE, ("GET",),
             summary="swarming_bot.zip of ?version=<digest>; without a version, a redirect to the current one"),
    Function("bot_bootstrap", bot_bootstrap, Action.BOOTSTRAP, ("GET",), token_param=True,
             summary="A shell script that downloads the bot code with a bootstrap token and starts the bot"),
    Function("tasks_new", tasks_new, Action.CREATE_TASK, summary="Create a task"),
    Function("task_result", task_result, Action.READ_TASK, ("GET", "POST"), summary="A task's state and outcome"),
    Function("task_request", task_request, Action.READ_TASK, ("GET", "POST"),
             summary="A task's request (no secret bytes)"),
    Function("task_stdout", task_stdout, Action.READ_TASK, ("GET", "POST"), summary="A range of a task's stdout"),
    Function("task_pending", task_pending, Action.READ_TASK, ("GET", "POST"),
             summary="Why a task is still pending: matching bots, its place in its queue, its slices' expiry"),
    Function("task_cancel", task_cancel, Action.CANCEL_TASK,
             summary="Cancel a task, and kill it if it runs and asked to"),
    Function("tasks_list", tasks_list, Action.READ_TASK,
             summary="Tasks by state, tags and time, newest first, paged"),
    Function("tasks_requests", tasks_requests, Action.READ_TASK,
             summary="The requests of the tasks tasks_list selects, paged"),
    Function("tasks_count", tasks_count, Action.READ_TASK,
             summary="How many tasks a tasks_list selection has (exact up to a bound)"),
    Function("tasks_cancel", tasks_cancel, Action.CANCEL_TASK, summary="Cancel the tasks having every given tag"),
    Function("bots_list", bots_list, Action.READ_BOTS, ("GET", "POST"), summary="Bots by dimensions and state, paged"),
    Function("bots_count", bots_count, Action.READ_BOTS, ("GET", "POST"),
             summary="How many bots match, and how many are quarantined, in maintenance, dead, busy"),
    Function("bots_dimensions", bots_dimensions, Action.READ_BOTS, ("GET", "POST"),
             summary="Every dimension value the bots of a pool report"),
    Function("bot_get", bot_get, Action.READ_BOTS, ("GET", "POST"), summary="One bot"),
    Function("bot_events", bot_events, Action.READ_BOTS, ("GET", "POST"), summary="A bot's events, newest first"),
    Function("bot_tasks", bot_tasks, Action.READ_BOTS, ("GET", "POST"), summary="The tasks a bot ran, newest first"),
    Function("bot_delete", bot_delete, Action.MANAGE_BOTS, summary="Forget a bot (it comes back if it calls again)"),
    Function("bot_terminate", bot_terminate, Action.MANAGE_BOTS,
             summary="Queue a priority-0 termination task for a bot: it finishes its task, then exits"),
    Function("ui", ui_page, Action.SEE_SERVER, ("GET", "POST"), browser=ui.Browser(),
             summary="The web UI: tasks, a task and its live stdout, bots, a bot"),
    Function("server_details", server_details, Action.SEE_SERVER, ("GET", "POST"),
             summary="The server's, the bot code's and the configuration's versions"),
    Function("server_permissions", server_permissions, Action.SEE_SERVER, ("GET", "POST"),
             summary="What the caller may do for a task, a bot or a pool"),
    Function("server_token", server_token, Action.ADMINISTER, summary="A short-lived bootstrap token for new hosts"),
    Function("config_push", config_push, Action.ADMINISTER,
             summary="Check and store a new service configuration (pools, bot groups, settings)"),
    Function("cas_find_missing", cas_find_missing, Action.USE_CAS,
             summary="Which of up to 1,000 digests the content-addressed store lacks"),
    Function("cas_urls", cas_urls, Action.USE_CAS,
             summary="Short-lived signed URLs: create-only uploads and downloads of up to 1,000 blobs each"),
    Function("timer_expire", timer_expire, Action.RUN_TIMERS, summary="Cloud Tasks: a pending slice's time is up"),
    Function("timer_bot_died", timer_bot_died, Action.RUN_TIMERS,
             summary="Cloud Tasks: has a running task's bot gone silent?"),
    Function("timer_notify", timer_notify, Action.RUN_TIMERS,
             summary="Cloud Tasks: publish a task's end on its Pub/Sub topic"),
    Function("cron_sweep", cron_sweep, Action.RUN_TIMERS,
             summary="Repairs what lost timers left; marks bots dead or alive"),
]
