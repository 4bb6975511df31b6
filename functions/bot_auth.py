"""A bot acts only as itself, from where its group says.

Every bot belongs to one group of bots.toml (`ServiceConfig.bot_group`); a
bot id no group holds is refused. At its handshake a bot shows what its group
accepts: an ID token of one of the group's service accounts, a bootstrap
token (when the group allows bootstrap), or its own unexpired bot token (a
re-handshake after a restart). It gets a bot token, bound to its id, its
group and the group's version, renewed by every answer
(`X-Swarming-Bot-Token`). Every later call must carry that token, for that
bot id: a call for another bot is a 403. A claim also gives the task runner
a run token, good for reporting on that one run and moving its files.

A bot whose group changed since its token was minted (a pushed config moved
it, or changed its group) is told to restart at its next poll: it then
handshakes again under its current group, with the hooks of that group.
"""

import datetime
import hashlib
import ipaddress
import json

from functions.errors import Forbidden, Unavailable
from functions.permissions import Caller, Kind
from functions.signed_tokens import BOT, RUN, SignedTokens
from shared.service_config import BotGroup, ServiceConfig

#: A run token outlives the command's hard timeout by this much: the inputs'
#: download and the outputs' upload, the grace period, the last report.
RUN_TOKEN_MARGIN = datetime.timedelta(hours=2)


def group_version(config: ServiceConfig, group: BotGroup) -> str:
    """Changes whenever anything of the group, or its hooks script, does."""
    script = config.scripts.get(group.bot_config_script, "")
    text = json.dumps([repr(group), script], sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def group_of(config: ServiceConfig, bot_id: str) -> BotGroup:
    group = config.bot_group(bot_id)
    if group is None:
        raise Forbidden(f"no bot group of bots.toml holds bot id {bot_id!r}")
    return group


def accept_handshake(config: ServiceConfig, caller: Caller, bot_id: str, remote_ip: str) -> BotGroup:
    """The bot's group, once the credential is one the group accepts."""
    group = _from_allowed_network(group_of(config, bot_id), remote_ip)
    if caller.kind == Kind.BOOTSTRAP and group.auth.bootstrap:
        return group
    if caller.kind == Kind.BOT and caller.bot_id == bot_id and (caller.group == group.name or group.auth.bootstrap):
        return group
    if caller.kind == Kind.PERSON and caller.identity.startswith("serviceAccount:"):
        email = caller.identity.partition(":")[2].lower()
        if email in (account.lower() for account in group.auth.require_service_account):
            return group
    raise Forbidden(f"bot group {group.name!r} does not accept {caller.identity} for bot {bot_id!r}")


def check_call(config: ServiceConfig, caller: Caller, bot_id: str, remote_ip: str,
               run_id: str | None = None) -> BotGroup:
    """The group of a bot making any call but its handshake, with its own
    token; a task runner's token also only for its own run (`run_id`)."""
    if caller.kind not in (Kind.BOT, Kind.RUN) or caller.bot_id != bot_id:
        raise Forbidden(f"a bot acts only as itself: {caller.identity} may not act as bot {bot_id!r}")
    if caller.kind == Kind.RUN and caller.run_id != run_id:
        raise Forbidden(f"{caller.identity} may report on its own run only, not on {run_id!r}")
    return _from_allowed_network(group_of(config, bot_id), remote_ip)


def moved(config: ServiceConfig, caller: Caller, group: BotGroup) -> bool:
    """The bot's group is not what its token was minted for: it must restart."""
    return caller.group != group.name or caller.group_version != group_version(config, group)


def _from_allowed_network(group: BotGroup, remote_ip: str) -> BotGroup:
    networks = group.auth.ip_allowlist
    if networks:
        try:
            address = ipaddress.ip_address(remote_ip)
        except ValueError:
            raise Forbidden(f"bot group {group.name!r} admits known addresses only, not {remote_ip!r}") from None
        if not any(address in network for network in networks):
            raise Forbidden(f"bot group {group.name!r} does not admit calls from {remote_ip}")
    return group


class BotTokens:
    """Mints the bots' and the runners' tokens (`functions.signed_tokens`)."""

    def __init__(self, tokens: SignedTokens | None):
        self._tokens = tokens

    def _signer(self) -> SignedTokens:
        if self._tokens is None:
            raise Unavailable("the server has no token secret (SWARMING_TOKEN_SECRET): bots cannot be admitted")
        return self._tokens

    def bot_token(self, bot_id: str, group: str, version: str, expires: datetime.datetime) -> str:
        return self._signer().mint(BOT, {"bot": bot_id, "group": group, "gv": version}, expires)

    def run_token(self, caller: Caller, run_id: str, hard_timeout_secs: float,
                  now: datetime.datetime) -> str:
        """For the run `run_id` a bot just claimed, as long as it may take."""
        expires = now + datetime.timedelta(seconds=hard_timeout_secs) + RUN_TOKEN_MARGIN
        claims = {"bot": caller.bot_id, "group": caller.group, "gv": caller.group_version, "run": run_id}
        return self._signer().mint(RUN, claims, expires)
