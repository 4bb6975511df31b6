"""Every Cloud Function, thin: parse the call, decide whether the caller may
(`Call.authorize`, the one decision: functions.permissions), run one domain
function, answer.

`FUNCTIONS` is the registry: `main.py`, the local gateway, Terraform and the
OpenAPI document are all checked against it. Each entry names the action its
function does, which says who may call it.
"""

import dataclasses
import datetime
import logging
import random
from typing import Any, Sequence

import flask

from functions import (bootstrap, bot_auth, bot_death, bot_registry, budget, cancellation, permissions, runs,
                       scheduler, slices, sweep, tasks, termination)
from functions.bot_code import VERSION_RE, BotCodeError
from functions.bot_registry import BotRequest
from functions.errors import BadRequest, NotFound, Unavailable
from functions.fleet import pools_of
from functions.http import Call, Function
from functions.models import iso
from functions.permissions import Action
from functions.signed_tokens import BOOTSTRAP
from functions.tasks import Requester
from shared import bot_api
from shared import task_id as task_ids
from shared.cas import Digest, digests_from_wire
from shared.errors import ConfigError, ValidationError
from shared.service_config import BotGroup
from shared.task_request import TaskRequest

logger = logging.getLogger(__name__)
_rand = random.SystemRandom()


# The bot API: a bot acts only as itself (functions.bot_auth).

def _bot(call: Call, attributes: bot_api.BotAttributes, run_id: str | None = None) -> tuple[BotRequest, BotGroup]:
    group = bot_auth.check_call(call.config, call.caller, attributes.bot_id, call.remote_ip, run_id)
    return BotRequest.of(attributes, group.dimensions), group


def bot_handshake(call: Call) -> dict[str, Any]:
    """Admits the bot under its group of bots.toml, with what the group
    accepts: an ID token of one of its service accounts, a bootstrap token,
    or the bot's own bot token. Registers it (its `bots/<id>` entry, a
    `bot_connected` event) and answers its first `session`, the server's
    version, the dimensions its group enforces (`bot_group_cfg.dimensions`)
    and the group's hooks script (`bot_config`); the answer's
    `X-Swarming-Bot-Token` header is the bot's credential from then on.
    Never hands out work."""
    attributes = bot_api.Handshake.from_wire(call.params).attributes
    group = bot_auth.accept_handshake(call.config, call.caller, attributes.bot_id, call.remote_ip)
    bot = BotRequest.of(attributes, group.dimensions)
    script = call.config.scripts.get(group.bot_config_script) if group.bot_config_script else None
    reply = bot_registry.handshake(call.service.registry, bot, group, script, call.service.settings.server_version,
                                   call.now)
    ttl = datetime.timedelta(seconds=call.config.settings.bot_session_ttl_secs)
    call.bot_token = (bot.bot_id, group.name, bot_auth.group_version(call.config, group), call.now + ttl)
    return reply.to_wire()


def bot_poll(call: Call) -> dict[str, Any]:
    """Never transacts. Answers `{cmd: bot_restart}` when the bot's group
    changed since its handshake, `{cmd: update, version}` when the bot runs
    other code than the current zip (never a bot reporting `dev` or none: run
    from source), `{cmd: terminate, task_id}` when a termination task waits for
    it (even quarantined or in maintenance), else `{cmd: claim, candidates}`:
    the most urgent pending slices it matches (priority, then oldest first, or
    newest first in a LIFO pool), or `{cmd: sleep, duration}` (1.5^(streak+1)
    s up to 60 s, jittered). A quarantined bot or one in maintenance only
    sleeps. `request_uuid` makes a retried poll the same poll."""
    bot, group = _bot(call, bot_api.Poll.from_wire(call.params).attributes)
    if bot_auth.moved(call.config, call.caller, group):
        return bot_api.Restart(f"the bot's group is now {group.name!r} as configured: handshake again").to_wire()
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
    """→ `{bootstrap_token, expires_ts}`: a bootstrap token, valid for
    settings.toml's `bootstrap_token_ttl_secs` (1 h), good for `bot_code`,
    `bot_bootstrap` and the handshake of a bot whose group accepts bootstrap."""
    tokens = call.service.signed_tokens
    if tokens is None:
        raise Unavailable("no token secret: set SWARMING_TOKEN_SECRET")
    expires = call.now + datetime.timedelta(seconds=call.config.settings.bootstrap_token_ttl_secs)
    token = tokens.mint(BOOTSTRAP, {"sub": call.caller.identity}, expires)
    return {"bootstrap_token": token, "expires_ts": iso(expires.replace(microsecond=0))}


def bot_claim(call: Call) -> dict[str, Any]:
    """`PENDING` → `RUNNING` in one batch guarded by preconditions (the
    pending slice's delete): one bot wins, the others get `{cmd: skip,
    reason}`. The winner gets `{cmd: run, manifest, run_token}`; the same
    `claim_id` again gets the same manifest. The manifest carries the slice's
    command, env, caches, inputs, outputs, timeouts and secret bytes; the run
    token is the task runner's credential, for this run only. The bot's own
    token, in the answer's header, outlasts the task."""
    message = bot_api.ClaimRequest.from_wire(call.params)
    bot, _ = _bot(call, message.attributes)
    reply = scheduler.claim(call.service.context, call.service.registry, bot, message, call.now)
    if isinstance(reply, bot_api.Run):
        hard_timeout = reply.manifest.hard_timeout
        run_token = call.service.bot_tokens.run_token(call.caller, reply.manifest.task_id, hard_timeout, call.now)
        reply = dataclasses.replace(reply, run_token=run_token)
        ttl = datetime.timedelta(seconds=hard_timeout + call.config.settings.bot_session_ttl_secs)
        caller = call.caller
        call.bot_token = (bot.bot_id, caller.group, caller.group_version, call.now + bot_auth.RUN_TOKEN_MARGIN + ttl)
    return reply.to_wire()


def bot_task_update(call: Call) -> dict[str, Any]:
    """Stdout at a byte offset (`output`, base64; idempotent, out of order
    allowed, 100 MiB at most: 413 beyond), a heartbeat, and with `exit_code` +
    `duration` the end: `COMPLETED`, `TIMED_OUT` (with `hard_timeout` or
    `io_timeout`), `KILLED` after a kill; or `canceled` (stopped before the
    command started: `CANCELED`). A completion may carry `cas_output_root` and
    `performance_stats`. Answers `must_stop` when the task was killed or already
    ended. A run the bot does not hold, or a different second completion, is a
    409. The bot's token, or the run's."""
    message = bot_api.TaskUpdate.from_wire(call.params)
    bot, _ = _bot(call, message.attributes, message.run_id)
    return runs.update(call.service.context, call.service.registry, bot, message, call.now).to_wire()


def bot_task_error(call: Call) -> dict[str, Any]:
    """The bot could not run its task: `client_error.missing_cas` (digests
    of inputs not in the store) ends it `CLIENT_ERROR`, anything else
    `BOT_DIED`, or a retry on another bot while the slice has time (an
    idempotent task, or one whose command never started)."""
    message = bot_api.TaskError.from_wire(call.params)
    bot, _ = _bot(call, message.attributes)
    return bot_death.task_error(call.service.context, bot, message, call.now).to_wire()


def bot_event(call: Call) -> dict[str, Any]:
    """Keeps a bot event: `event` is `bot_error`, `bot_log`, `bot_rebooting`
    or `bot_shutdown`, with its `message`."""
    message = bot_api.Event.from_wire(call.params)
    bot, _ = _bot(call, message.attributes)
    return bot_registry.event(call.service.bot_store, call.service.registry, bot, message, call.now).to_wire()


# Tasks: a person's role in the task's pool decides.

def _requester(call: Call) -> Requester:
    return Requester(call.caller.identity, admin=call.config.is_admin(call.caller.identity))


def _reader(call: Call) -> tasks.Check:
    return lambda result: call.authorize(result.pool)


def tasks_new(call: Call) -> dict[str, Any]:
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
    request = TaskRequest.from_wire(call.params)
    call.authorize(request.pool)
    return tasks.new(call.service.context, request, _requester(call), call.now)


def task_result(call: Call) -> dict[str, Any]:
    """`task_id` (or a run id) → state, bot, timestamps (`created_ts`,
    `started_ts`, `completed_ts`, `abandoned_ts`, `modified_ts`), exit code,
    duration, `failure`, `internal_failure`, `try_number`,
    `current_task_slice`, `deduped_from`, `missing_cas`, `cas_output_root`,
    `performance_stats`, `pool`, `authenticated`. Viewers of the task's pool."""
    return tasks.result(call.service.context, call.string("task_id"), _reader(call))


def task_request(call: Call) -> dict[str, Any]:
    """`task_id` → the stored request, and `authenticated`, who created it;
    its secret bytes never (`has_secret_bytes` only)."""
    return tasks.request(call.service.context, call.string("task_id"), _reader(call))


def task_stdout(call: Call) -> dict[str, Any]:
    """`task_id`, `offset`, `length` (at most 4 MiB a call) → base64
    `output`, `next_offset`, `state`. A deduplicated task shows the stdout of
    the task it took its result from."""
    return tasks.output(call.service.context, call.string("task_id"), offset=call.integer("offset", 0),
                        length=call.integer("length"), check=_reader(call))


def task_cancel(call: Call) -> dict[str, Any]:
    """`task_id`, `kill_running` → `{canceled, was_running}`: a pending task
    ends `CANCELED` at once; a running one, with `kill_running`, is told to stop
    and ends `KILLED`. Its children are cancelled with it. Admins of the
    task's pool, and its schedulers for the tasks they created."""
    task_id = call.task_id()
    found = call.store.get_result(task_id)
    if found is None:
        raise NotFound(f"no task {task_id}")
    call.authorize(found.pool, owner=found.authenticated)
    return cancellation.cancel(call.service.context, task_id, call.boolean("kill_running"), call.now)


def tasks_cancel(call: Call) -> dict[str, Any]:
    """`tags` (a task must have every one), `kill_running`, `limit` ≤ 1000
    (100), `cursor` → `{matched, canceled, cursor, now}`: at most `limit`
    tasks, and as many as 20 s allow. Until `cursor` is null, calling again
    with it goes on after the last task looked at: no task twice, none
    skipped. A `pool:<name>` tag names the pool: its admins cancel any of its
    tasks, its schedulers theirs; without one, admins only."""
    tags = _tags(call.params.get("tags"))
    pool = next((tag.partition(":")[2] for tag in tags if tag.startswith("pool:")), None)
    owner = None
    if call.may(pool):
        call.authorize(pool)
    else:
        call.authorize(pool, owner=call.caller.identity)
        owner = call.caller.identity
    return cancellation.cancel_many(call.service.context, tags, call.boolean("kill_running"),
                                    call.integer("limit", 100), call.now, budget.Budget(budget.REQUEST_SECS),
                                    cursor=call.params.get("cursor"), owner=owner)


def _tags(value: Any) -> list[str]:
    if not isinstance(value, list) or not value:
        raise ValidationError("tags", "at least one 'key:value' tag is required")
    for i, tag in enumerate(value):
        if not isinstance(tag, str) or ":" not in tag or len(tag) > 1024:
            raise ValidationError(f"tags[{i}]", "must be a 'key:value' string")
    return value


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


# The fleet: a person's role in the bots' pool decides.

def _filter_pool(call: Call) -> str | None:
    """The pool a listing is filtered on (`pool:<name>` among its dimensions), if any."""
    raw = call.params.get("dimensions")
    items = raw if isinstance(raw, list) else [raw] if raw is not None else []
    for item in items:
        flag = f"{item.get('key')}:{item.get('value')}" if isinstance(item, dict) else item
        if isinstance(flag, str) and flag.startswith("pool:"):
            return flag.partition(":")[2]
    return None


def _authorize_any(call: Call, pools: Sequence[str]) -> None:
    """The caller may act on a bot when it may in one of the bot's pools."""
    for pool in pools:
        if call.may(pool):
            call.authorize(pool)
            return
    call.authorize(None)


def _bot_pools(call: Call, bot_id: str) -> list[str]:
    return pools_of(call.service.bot_store.get_bot(bot_id))


def bots_list(call: Call) -> dict[str, Any]:
    """`dimensions` (`["k:v"]` or `[{key, value}]`, ANDed), `quarantined`,
    `in_maintenance`, `is_dead`, `is_busy` (true, false or NONE), `limit` ≤
    1000, `cursor` → `{items, cursor}`; `cursor` is null on the last page.
    Viewers of the pool the dimensions name; without one, admins."""
    call.authorize(_filter_pool(call))
    return call.service.fleet.list_bots(call.params, call.integer("limit"), call.params.get("cursor"), call.now)


def bots_count(call: Call) -> dict[str, Any]:
    """The filters of `bots_list` → `{count, quarantined, maintenance, dead,
    busy}`."""
    call.authorize(_filter_pool(call))
    return call.service.fleet.count(call.params, call.now)


def bots_dimensions(call: Call) -> dict[str, Any]:
    """`pool` (optional: admins only without one) → every dimension value its
    bots reported lately, `[{key, value: [...]}]`."""
    pool = call.params.get("pool") or None
    if pool is not None and not isinstance(pool, str):
        raise ValidationError("pool", "must be a string")
    call.authorize(pool)
    return call.service.fleet.dimensions(pool, call.now)


def bot_get(call: Call) -> dict[str, Any]:
    """`bot_id` → `dimensions`, `state`, `version`, `task_id`, `is_busy`,
    `quarantined`, `maintenance_msg`, `is_dead`, `first_seen_ts`,
    `last_seen_ts`. Viewers of one of its pools."""
    return call.service.fleet.get(call.string("bot_id"), call.now, lambda pools: _authorize_any(call, pools))


def bot_events(call: Call) -> dict[str, Any]:
    """`bot_id`, `limit`, `cursor` → its events, newest first (claims and
    completions of its tasks among them)."""
    bot_id = call.string("bot_id")
    _authorize_any(call, _bot_pools(call, bot_id))
    return call.service.fleet.events(bot_id, call.integer("limit"), call.params.get("cursor"))


def bot_tasks(call: Call) -> dict[str, Any]:
    """`bot_id`, `limit`, `cursor` → the results of the tasks it ran, newest
    first."""
    bot_id = call.string("bot_id")
    _authorize_any(call, _bot_pools(call, bot_id))
    return call.service.fleet.tasks(bot_id, call.integer("limit"), call.params.get("cursor"))


def bot_delete(call: Call) -> dict[str, Any]:
    """Forgets a bot; one still running comes back within the hour. Admins of
    one of its pools."""
    bot_id = call.string("bot_id")
    _authorize_any(call, _bot_pools(call, bot_id))
    return call.service.fleet.delete(bot_id, call.now)


def bot_terminate(call: Call) -> dict[str, Any]:
    """`bot_id`, `reason` → `{task_id}` of a priority-0 termination task
    (tag `swarming.terminate:1`, aimed at `id:<bot>` in the bot's first pool,
    waiting up to 5 days). The bot's poll answers `terminate`: it finishes its
    current task, completes this one with exit code 0 and exits. Admins of
    one of its pools."""
    reason = call.params.get("reason") or ""
    if not isinstance(reason, str):
        raise ValidationError("reason", "must be a string")
    bot_id = call.string("bot_id")
    pools = _bot_pools(call, bot_id)
    if not pools:
        raise NotFound(f"bot_id: no bot {bot_id!r}")
    _authorize_any(call, pools)
    return termination.terminate(call.service.context, bot_id, pools[0], reason, _requester(call), call.now)


# The server itself.

def server_details(call: Call) -> dict[str, Any]:
    """→ `server_version`, `bot_version` (the current bot zip's digest) and
    `config_version` (the service configuration's)."""
    return {"server_version": call.service.settings.server_version, "bot_version": _current_version(call),
            "config_version": call.config.version}


def server_permissions(call: Call) -> dict[str, Any]:
    """`task_id`, `bot_id` or `pool` (one at most) → `{identity, pool,
    permissions: {action: bool}}`: what the caller may do for that task, bot
    or pool (with none, in every pool: what a global admin may). For pages
    that show a button only to whom may press it."""
    given = [name for name in ("task_id", "bot_id", "pool") if call.params.get(name)]
    if len(given) > 1:
        raise ValidationError(given[1], f"give one of task_id, bot_id and pool, not {' and '.join(given)}")
    pool, owner = _subject(call, given[0] if given else None)
    return {"identity": call.caller.identity, "pool": pool,
            "permissions": permissions.permissions(call.config, call.caller, pool, owner)}


def _subject(call: Call, given: str | None) -> tuple[str | None, str | None]:
    """The pool (and owner) of what server_permissions is asked about."""
    if given == "task_id":
        task_id = task_ids.parse(call.params["task_id"], "task_id")
        found = call.store.get_result(task_ids.summary_id(task_id))
        if found is None:
            raise NotFound(f"no task {task_id}")
        return found.pool, found.authenticated
    if given == "bot_id":
        pools = _bot_pools(call, call.string("bot_id"))
        return (pools[0] if pools else None), None
    if given == "pool":
        return call.string("pool"), None
    return None, None


def config_push(call: Call) -> dict[str, Any]:
    """`files` (relative name → text: settings.toml, pools.toml, bots.toml,
    scripts/*.py, as `swarming config push DIR` reads them) → `{version}`:
    checked whole (a 400 lists every problem by file, line and field), then
    the current service configuration of every function within a minute."""
    files = call.params.get("files")
    if not isinstance(files, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in files.items()):
        raise ValidationError("files", "must map file names to their text")
    try:
        config = call.service.service_config.push(files)
    except ConfigError as e:
        raise BadRequest("files: " + "; ".join(str(problem) for problem in e.problems)) from e
    logger.info("service configuration %s pushed by %s", config.version, call.caller.identity)
    return {"version": config.version}


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
    """Cloud Scheduler's call, every minute: flags bots dead or alive again
    (`bots`), repairs what lost timers left (`expired_slices`, `dead_runs`)
    and releases the tasks waiting on an identical task whose end did not
    release them (`released_waiters`), shard by shard (`swept`). It stops
    after 20 s (`partial: true`) and the next sweeps go on: each starts at
    the next shard in turn. Safe at any time."""
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
    Function("task_cancel", task_cancel, Action.CANCEL_TASK,
             summary="Cancel a task, and kill it if it runs and asked to"),
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
    Function("cron_sweep", cron_sweep, Action.RUN_TIMERS,
             summary="Repairs what lost timers left; marks bots dead or alive"),
]
