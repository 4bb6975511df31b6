"""bots.toml: the bot groups, our bots.cfg.

A group says which bots it holds (exact ids, id prefixes, fnmatch globs, or
none of these: the default group, for every bot no other group holds), how
they authenticate, the dimensions the server enforces on them over what they
report (their pool, at least) and their hooks script. Between groups, as in
the reference: an exact id is in one group at most, the prefixes of two
groups are never prefixes of one another, and there is one default group at
most, so that every bot id has one group or none (`ServiceConfig.bot_group`).
"""

from __future__ import annotations

import dataclasses
import ipaddress
from typing import Any, Collection, Union

from shared import dimensions
from shared.bot_api import is_bot_id
from shared.errors import ValidationError
from shared.identity_patterns import email_problem
from shared.toml_file import TomlFile, values
from shared.toml_lines import Path

SCRIPTS_DIR = "scripts"
GROUP_KEYS = ("name", "bot_id", "bot_id_prefix", "bot_id_pattern", "auth", "dimensions", "bot_config_script",
              "owners")
AUTH_KEYS = ("require_service_account", "bootstrap", "ip_allowlist")
#: The dimensions a group may not enforce: the bot's own.
BOTS_OWN_KEYS = ("id",)
Network = Union[ipaddress.IPv4Network, ipaddress.IPv6Network]


@dataclasses.dataclass(frozen=True)
class BotAuth:
    """How the bots of a group prove who they are: an ID token of one of the
    service accounts, or a bootstrap token; from one of the networks, when
    any is given."""

    #: Emails of the service accounts whose ID tokens the bots may present.
    require_service_account: tuple[str, ...] = ()
    #: The bots may exchange a bootstrap token for a session at their handshake.
    bootstrap: bool = False
    #: The bots must call from these networks; empty: from anywhere.
    ip_allowlist: tuple[Network, ...] = ()


@dataclasses.dataclass(frozen=True)
class BotGroup:
    """A `[[bot_group]]`: which bots, how they authenticate, what the server enforces on them."""

    #: Names the group in logs and errors.
    name: str
    #: Exact bot ids.
    bot_id: tuple[str, ...] = ()
    bot_id_prefix: tuple[str, ...] = ()
    #: fnmatch globs, matched with case.
    bot_id_pattern: tuple[str, ...] = ()
    auth: BotAuth = BotAuth()
    #: Enforced over what the bots report; holds exactly one `pool`.
    dimensions: dict[str, list[str]] = dataclasses.field(default_factory=dict)
    #: A file name under scripts/: the bots' bot_config.py; empty: the default hooks.
    bot_config_script: str = ""
    #: Emails of whom to ask about these bots; grants nothing.
    owners: tuple[str, ...] = ()

    @property
    def is_default(self) -> bool:
        """The group of the bots that no other group names."""
        return not (self.bot_id or self.bot_id_prefix or self.bot_id_pattern)


def read(f: TomlFile, pools: Collection[str], scripts: Collection[str]) -> tuple[BotGroup, ...]:
    """The groups of bots.toml, in file order; `pools` and `scripts` are the names they may refer to."""
    f.known(f.data, (), ("bot_group",))
    groups, names, exact_ids, prefixes, default = [], {}, {}, [], None
    for index, table in enumerate(f.value(f.data, (), "bot_group", [])):
        path: Path = ("bot_group", index)
        if not isinstance(table, dict):
            f.problem(path, "must be a table")
            continue
        group, ids, group_prefixes = _group(f, table, path, pools, scripts)
        groups.append(group)
        # The rules between groups, each problem on the group that breaks it second.
        if group.name:
            _once(f, names, group.name, index, path + ("name",), "bot group name")
        for item, bot_id in ids:
            _once(f, exact_ids, bot_id, index, item, "bot id")
        for item, prefix in group_prefixes:
            for other_index, other in prefixes:
                if prefix.startswith(other) or other.startswith(prefix):
                    f.problem(item, f"{prefix!r} and the prefix {other!r} of bot_group[{other_index}]: "
                                    "one is a prefix of the other")
        prefixes += [(index, prefix) for _, prefix in group_prefixes]
        if group.is_default and default is not None:
            f.problem(path, f"a second default group (no bot_id, bot_id_prefix or bot_id_pattern), "
                            f"after bot_group[{default}]")
        elif group.is_default:
            default = index
    return tuple(groups)


def _group(f: TomlFile, table: dict[str, Any], path: Path, pools: Collection[str], scripts: Collection[str],
           ) -> tuple[BotGroup, list[tuple[Path, str]], list[tuple[Path, str]]]:
    """One group, with its exact ids and prefixes by path for the rules between groups."""
    f.known(table, path, GROUP_KEYS)
    ids = f.strings(table, path, "bot_id", _bot_id_problem)
    prefixes = f.strings(table, path, "bot_id_prefix", _not_empty)
    script = f.value(table, path, "bot_config_script", "")
    if script and script not in scripts:
        f.problem(path + ("bot_config_script",), f"no file {SCRIPTS_DIR}/{script}")
    group = BotGroup(
        name=f.value(table, path, "name", "", required=True), bot_id=values(ids), bot_id_prefix=values(prefixes),
        bot_id_pattern=values(f.strings(table, path, "bot_id_pattern", _not_empty)), auth=_auth(f, table, path),
        dimensions=_dimensions(f, table, path, pools), bot_config_script=script,
        owners=values(f.strings(table, path, "owners", email_problem)))
    return group, ids, prefixes


def _once(f: TomlFile, seen: dict[str, int], value: str, index: int, path: Path, what: str) -> None:
    """Notes that group `index` has `value`, a problem when a group has it already."""
    if value in seen:
        f.problem(path, f"{what} {value!r} is already in bot_group[{seen[value]}]")
    seen.setdefault(value, index)


def _bot_id_problem(bot_id: str) -> str | None:
    return None if is_bot_id(bot_id) else "not a bot id (no '/', not '.' or '..', not __reserved__)"


def _not_empty(value: str) -> str | None:
    return None if value else "must not be empty"


def _auth(f: TomlFile, group: dict[str, Any], path: Path) -> BotAuth:
    table = f.known(f.value(group, path, "auth", {}, required=True), path + ("auth",), AUTH_KEYS)
    path += ("auth",)
    accounts = values(f.strings(table, path, "require_service_account", email_problem))
    bootstrap = f.value(table, path, "bootstrap", False)
    if isinstance(group.get("auth"), dict) and not (accounts or bootstrap):
        f.problem(path, "sets neither require_service_account nor bootstrap = true: no bot could authenticate")
    networks = []
    for item, network in f.strings(table, path, "ip_allowlist"):
        try:
            networks.append(ipaddress.ip_network(network))
        except ValueError as e:
            f.problem(item, f"not a network in CIDR notation: {e}")
    return BotAuth(require_service_account=accounts, bootstrap=bootstrap, ip_allowlist=tuple(networks))


def _dimensions(f: TomlFile, group: dict[str, Any], path: Path, pools: Collection[str]) -> dict[str, list[str]]:
    """The group's `"key:value"` strings as dimensions, valid as a bot's, with one pool of pools.toml."""
    dims: dict[str, list[str]] = {}
    first: dict[str, Path] = {}  # Where each key is first given.
    for item, pair in f.strings(group, path, "dimensions"):
        key, colon, value = pair.partition(":")
        try:
            if not colon:
                raise ValidationError(key, "must be 'key:value'")
            if key in BOTS_OWN_KEYS:
                raise ValidationError(key, f"the {key!r} dimension is the bot's own")
            if key == "pool" and key in dims:
                raise ValidationError(key, "a second pool: a bot group is in one pool")
            dimensions.validate_bot({key: [value]}, key)
        except ValidationError as e:
            f.problem(item, e.reason)
            continue
        dims.setdefault(key, []).append(value)
        first.setdefault(key, item)
    try:  # What no single value shows: repeated values, too many of them.
        dimensions.validate_bot(dims, "")
    except ValidationError as e:
        f.problem(first.get(e.field.lstrip("."), path + ("dimensions",)), e.reason)
    if "pool" not in dims:
        f.problem(path + ("dimensions",), "must hold one 'pool:<name>'")
    elif dims["pool"][0] not in pools:
        f.problem(first["pool"], f"no pool {dims['pool'][0]!r} in pools.toml")
    return {key: sorted(dims[key]) for key in sorted(dims)}
