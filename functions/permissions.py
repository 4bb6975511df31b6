"""Who may do what: the one function every endpoint decides with, over the
caller, the action and, where it has one, the pool (and the task's owner).

Roles come from the service configuration (`shared.service_config`):
settings.toml's global `admins`, and per pool in pools.toml its `viewers`
(read its tasks and bots), `schedulers` (also create tasks in it and cancel
their own) and `admins` (also cancel any of its tasks, terminate and delete
its bots). Each role includes the ones before it. A pool the configuration
does not name has no roles: only global admins may use it.

Bots, task runners and bootstrap tokens are callers of their own kinds, each
held to its few actions; what a bot may do as itself (its own id, its own
run) the bot API checks (`functions.bot_auth`).
"""

import dataclasses
import enum

from functions.errors import Forbidden
from shared.service_config import ServiceConfig


class Kind(str, enum.Enum):
    """What credential a caller showed."""

    PERSON = "person"  # A Google ID token: a user, or a service account (CI).
    INTERNAL = "internal"  # The ID token of the timers' and cron's own service account.
    BOT = "bot"  # A bot token, from a handshake.
    RUN = "run"  # A run token: one task runner, for one run.
    BOOTSTRAP = "bootstrap"  # A bootstrap token: a new host.


@dataclasses.dataclass(frozen=True)
class Caller:
    kind: Kind
    #: `user:<email>`, `serviceAccount:<email>`, `bot:<id>`, `run:<run id>` or `bootstrap:<minter>`.
    identity: str
    #: A bot's and a runner's: the bot's id, its group, and that group's version when the token was minted.
    bot_id: str | None = None
    group: str | None = None
    group_version: str | None = None
    #: A runner's: the one run it may report on.
    run_id: str | None = None


class Action(str, enum.Enum):
    """What a function does; the registry gives each function one."""

    CREATE_TASK = "create_task"
    READ_TASK = "read_task"
    CANCEL_TASK = "cancel_task"
    READ_BOTS = "read_bots"
    MANAGE_BOTS = "manage_bots"
    USE_CAS = "use_cas"
    ADMINISTER = "administer"
    RUN_TIMERS = "run_timers"
    SEE_SERVER = "see_server"
    BOT_HANDSHAKE = "bot_handshake"
    BOT_CALL = "bot_call"
    REPORT_RUN = "report_run"
    GET_BOT_CODE = "get_bot_code"
    BOOTSTRAP = "bootstrap"

    @property
    def pool_scoped(self) -> bool:
        """Decided only once the handler knows the pool (and the owner)."""
        return self in _POOL_ROLES

    @property
    def who(self) -> str:
        """Who may, in words (the OpenAPI document's)."""
        return _WHO[self]


#: The pool roles that allow each pool-scoped action to a person, from the least.
_POOL_ROLES: dict[Action, tuple[str, ...]] = {
    Action.READ_TASK: ("viewers", "schedulers", "admins"),
    Action.READ_BOTS: ("viewers", "schedulers", "admins"),
    Action.CREATE_TASK: ("schedulers", "admins"),
    Action.CANCEL_TASK: ("admins",),  # And schedulers, for their own tasks.
    Action.MANAGE_BOTS: ("admins",),
}
#: The kinds of callers each action admits at all (admins are persons).
_KINDS: dict[Action, frozenset[Kind]] = {
    **{action: frozenset({Kind.PERSON}) for action in _POOL_ROLES},
    Action.USE_CAS: frozenset({Kind.PERSON, Kind.BOT, Kind.RUN}),
    Action.ADMINISTER: frozenset({Kind.PERSON}),
    Action.RUN_TIMERS: frozenset({Kind.INTERNAL, Kind.PERSON}),
    Action.SEE_SERVER: frozenset({Kind.PERSON}),
    Action.BOT_HANDSHAKE: frozenset({Kind.BOT, Kind.BOOTSTRAP, Kind.PERSON}),
    Action.BOT_CALL: frozenset({Kind.BOT}),
    Action.REPORT_RUN: frozenset({Kind.BOT, Kind.RUN}),
    Action.GET_BOT_CODE: frozenset({Kind.BOT, Kind.BOOTSTRAP, Kind.PERSON}),
    Action.BOOTSTRAP: frozenset({Kind.BOOTSTRAP}),
}


_WHO = {
    Action.CREATE_TASK: "schedulers of the task's pool",
    Action.READ_TASK: "viewers of the task's pool",
    Action.CANCEL_TASK: "admins of the task's pool, and its schedulers for the tasks they created",
    Action.READ_BOTS: "viewers of the bots' pool (of every pool: global admins)",
    Action.MANAGE_BOTS: "admins of the bot's pool",
    Action.USE_CAS: "anyone with a role in a pool, bots, task runners",
    Action.ADMINISTER: "global admins",
    Action.RUN_TIMERS: "Cloud Tasks and Cloud Scheduler (the service's own account), global admins",
    Action.SEE_SERVER: "anyone with a role in a pool",
    Action.BOT_HANDSHAKE: "a bot, with what its group accepts (a service account's ID token, a bootstrap token, "
                          "its bot token)",
    Action.BOT_CALL: "a bot, as itself (its bot token)",
    Action.REPORT_RUN: "the bot holding the run, or its task runner (the run token)",
    Action.GET_BOT_CODE: "bots, bootstrap tokens, global admins",
    Action.BOOTSTRAP: "bootstrap tokens",
}


def check_kind(config: ServiceConfig, caller: Caller, action: Action) -> None:
    """Raises Forbidden when no caller of this kind may ever do `action`, or
    when the caller is a person the configuration gives no role at all: what
    the edge decides before a handler knows the pool (so that an outsider
    cannot even learn which tasks exist)."""
    reason = _wrong_kind(caller, action) if caller.kind not in _KINDS[action] else None
    if reason is None and caller.kind == Kind.PERSON:
        reason = refusal(config, caller, Action.SEE_SERVER)
    if reason is not None:
        raise Forbidden(reason)


def refusal(config: ServiceConfig, caller: Caller, action: Action, pool: str | None = None,
            owner: str | None = None) -> str | None:
    """Why `caller` may not do `action` (in `pool`, on a task of `owner`); None when it may.
    A pool-scoped action with no pool asks whether the caller may in every
    pool (a listing of all bots): only global admins may."""
    if caller.kind not in _KINDS[action]:
        return _wrong_kind(caller, action)
    if caller.kind != Kind.PERSON or action == Action.BOT_HANDSHAKE:
        return None  # Held to its own id or run by the bot API.
    if config.is_admin(caller.identity):
        return None
    if action in (Action.ADMINISTER, Action.RUN_TIMERS, Action.GET_BOT_CODE):
        return f"{caller.identity} is not an admin"
    if action in (Action.USE_CAS, Action.SEE_SERVER):
        known = any(_roles(config, caller, name) for name in config.pools)
        return None if known else f"{caller.identity} has no role in any pool"
    if pool is None:
        return f"{caller.identity} may {_verb(action)} only in the pools it has a role in: name one"
    roles = _roles(config, caller, pool)
    if roles & set(_POOL_ROLES[action]):
        return None
    if action == Action.CANCEL_TASK and "schedulers" in roles and owner == caller.identity:
        return None
    return f"{caller.identity} may not {_verb(action)} in pool {pool!r}"


def authorize(config: ServiceConfig, caller: Caller, action: Action, pool: str | None = None,
              owner: str | None = None) -> None:
    """Raises Forbidden, saying why, unless `caller` may."""
    reason = refusal(config, caller, action, pool, owner)
    if reason is not None:
        raise Forbidden(reason)


def permissions(config: ServiceConfig, caller: Caller, pool: str | None, owner: str | None = None) -> dict[str, bool]:
    """What the caller may do for a task or a bot of `pool` (`server_permissions`)."""
    return {action.value: refusal(config, caller, action, pool, owner) is None
            for action in (Action.READ_TASK, Action.CREATE_TASK, Action.CANCEL_TASK, Action.READ_BOTS,
                           Action.MANAGE_BOTS, Action.ADMINISTER)}


def _roles(config: ServiceConfig, caller: Caller, pool: str) -> set[str]:
    found = config.pool(pool)
    if found is None:
        return set()
    return {name for name in ("viewers", "schedulers", "admins")
            if config.matches(caller.identity, getattr(found, name))}


def _wrong_kind(caller: Caller, action: Action) -> str:
    return f"a {caller.kind.value} credential may not {_verb(action)}"


def _verb(action: Action) -> str:
    return action.value.replace("_", " ")
