"""The service configuration: who may do what, and which bots may connect
how. Our pools.cfg, bots.cfg and settings.cfg, as TOML files in infra/config/
(docs/fleet.md describes every field).

A config is a set of files, relative name -> text: `settings.toml`,
`pools.toml`, `bots.toml` and the bots' hooks, `scripts/*.py`. The CLI
(`swarming config validate`) and the functions (loading the config pushed to
Cloud Storage) both read it with `parse`, which checks everything and raises
one ConfigError listing every problem by file, line and field: a CI check
wants them all at once. Unknown keys are problems, never passed over: a
misspelt field would otherwise silently grant or deny nothing.

The version is a digest of the files, so the same files are the same version
wherever they are read; `to_wire` makes of them the one JSON document that is
stored, so that no reader ever sees a mix of two versions' files.

Standard library only, and importable on the bot's Python 3.9 (shared/ ships
in the bot zip), though only 3.11 parses: tomllib is imported where used.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import functools
import os
import pathlib
import re
from typing import Any, Mapping, Sequence

from shared import bot_archive, bot_groups, dimensions, identity_patterns
from shared.bot_groups import SCRIPTS_DIR, BotAuth, BotGroup
from shared.errors import ConfigError, ConfigProblem, ValidationError
from shared.toml_file import TomlFile, values
from shared.toml_lines import Path
from shared.wire import WireObject

SETTINGS, POOLS, BOTS = "settings.toml", "pools.toml", "bots.toml"
TOML_FILES = (SETTINGS, POOLS, BOTS)
_SCRIPT_RE = re.compile(rf"{SCRIPTS_DIR}/([A-Za-z0-9_.-]+\.py)")
SETTINGS_KEYS = ("admins", "groups", "id_token_audience", "bot_session_ttl_secs", "bootstrap_token_ttl_secs")
POOL_KEYS = ("viewers", "schedulers", "admins", "owners", "lifo")
#: The lists of patterns of a pool, each a role in it.
POOL_ROLES = ("viewers", "schedulers", "admins")
#: Bounds of the token lifetimes of settings.toml.
MIN_TTL_SECS, MAX_TTL_SECS = 60, 24 * 3600
#: The model includes what bot_groups.py reads, and the error what errors.py defines.
__all__ = ["BotAuth", "BotGroup", "ConfigError", "ConfigProblem", "Pool", "ServiceConfig", "Settings", "from_wire",
           "parse", "read_dir", "to_wire", "version"]


@dataclasses.dataclass(frozen=True)
class Settings:
    """settings.toml: the global admins, the groups that patterns may name, the tokens' audience and lifetimes."""

    #: Patterns of the global admins.
    admins: tuple[str, ...] = ()
    #: Group name -> its members' patterns. No group in a group: membership is one lookup.
    groups: dict[str, tuple[str, ...]] = dataclasses.field(default_factory=dict)
    #: The audience that ID tokens must carry; empty: the URL of the function called.
    id_token_audience: str = ""
    #: How long the session token a bot gets at its handshake lasts.
    bot_session_ttl_secs: int = 3600
    #: How long a bootstrap token (for a new bot host) lasts.
    bootstrap_token_ttl_secs: int = 3600


@dataclasses.dataclass(frozen=True)
class Pool:
    """A pool of pools.toml: who may see its tasks and bots, schedule in it, administer it."""

    #: The value of the `pool` dimension of its tasks and bots.
    name: str
    viewers: tuple[str, ...] = ()
    schedulers: tuple[str, ...] = ()
    #: Pool admins (cancel anyone's task, terminate its bots), beside the global ones.
    admins: tuple[str, ...] = ()
    #: Emails of whom to ask about the pool; grants nothing.
    owners: tuple[str, ...] = ()
    #: Serve the newest pending task first (a pool of tasks superseded by the next).
    lifo: bool = False


@dataclasses.dataclass(frozen=True)
class ServiceConfig:
    """A whole config, checked: what the server decides access and bot groups by."""

    settings: Settings
    pools: dict[str, Pool]
    #: In file order, which decides between patterns.
    bot_groups: tuple[BotGroup, ...]
    #: Name under scripts/ -> source.
    scripts: dict[str, str]
    #: `version()` of the files it was parsed from.
    version: str

    def bot_group(self, bot_id: str) -> BotGroup | None:
        """The group of `bot_id`: the one naming it exactly, else the one with
        its longest prefix, else the first in file order with a pattern it
        matches, else the default group. None: no group, the bot is refused."""
        if bot_id in self._by_exact_id:
            return self._by_exact_id[bot_id]
        prefixed = [(len(prefix), group) for group in self.bot_groups for prefix in group.bot_id_prefix
                    if bot_id.startswith(prefix)]
        if prefixed:
            return max(prefixed, key=lambda found: found[0])[1]
        patterned = (group for group in self.bot_groups
                     if any(fnmatch.fnmatchcase(bot_id, pattern) for pattern in group.bot_id_pattern))
        return next(patterned, next((group for group in self.bot_groups if group.is_default), None))

    def matches(self, identity: str, patterns: Sequence[str]) -> bool:
        """Whether `identity` (`user:<email>`, `serviceAccount:<email>`) is one
        of the config's `patterns`, directly, by its domain's wildcard or
        through a group."""
        found = identity_patterns.candidates(identity)
        return any(pattern in found or not found.isdisjoint(self._members.get(pattern, ())) for pattern in patterns)

    def is_admin(self, identity: str) -> bool:
        return self.matches(identity, self.settings.admins)

    def pool(self, name: str) -> Pool | None:
        return self.pools.get(name)

    @functools.cached_property
    def _by_exact_id(self) -> dict[str, BotGroup]:
        return {bot_id: group for group in self.bot_groups for bot_id in group.bot_id}

    @functools.cached_property
    def _members(self) -> dict[str, frozenset[str]]:
        """`group:<name>` -> its members, for one lookup per pattern."""
        return {f"{identity_patterns.GROUP}:{name}": frozenset(members)
                for name, members in self.settings.groups.items()}


def parse(files: Mapping[str, str]) -> ServiceConfig:
    """Reads and checks a whole config, relative file name -> text; raises
    ConfigError with every problem.

    Syntax first: while a TOML file is missing or does not parse, its problem
    (and the scripts') is all that is reported, since what the others mean
    depends on it (the groups that patterns name, the pools of bot groups).
    """
    problems = [ConfigProblem(name, 0, "", f"unknown file: a config holds {', '.join(TOML_FILES)} and "
                                           f"{SCRIPTS_DIR}/*.py")
                for name in sorted(files) if name not in TOML_FILES and not _SCRIPT_RE.fullmatch(name)]
    scripts = {}
    for name in sorted(files):
        script = _SCRIPT_RE.fullmatch(name)
        if script:
            scripts[script[1]] = files[name]
            problems += _script_problems(name, files[name])
    parsed = {}
    for name in TOML_FILES:
        if name not in files:
            problems.append(ConfigProblem(name, 0, "", "is missing"))
        else:
            parsed[name] = TomlFile.load(name, files[name], problems)
    if None in parsed.values() or len(parsed) < len(TOML_FILES):
        raise ConfigError(problems)
    settings = _settings(parsed[SETTINGS])
    pools = _pools(parsed[POOLS], settings.groups)
    groups = bot_groups.read(parsed[BOTS], pools, scripts)
    if problems:
        raise ConfigError(problems)
    return ServiceConfig(settings=settings, pools=pools, bot_groups=groups, scripts=scripts, version=version(files))


def read_dir(path: str | os.PathLike[str]) -> dict[str, str]:
    """The config files of a directory by relative name: the TOML files and
    scripts/*.py there (nothing else), byte for byte as text."""
    root = pathlib.Path(path)
    files, problems = {}, []
    for file in [*(root / name for name in TOML_FILES), *sorted((root / SCRIPTS_DIR).glob("*.py"))]:
        if not file.is_file():
            continue  # parse() says which is missing.
        name = file.relative_to(root).as_posix()
        try:
            files[name] = file.read_bytes().decode("utf-8")
        except UnicodeDecodeError:
            problems.append(ConfigProblem(name, 0, "", "is not UTF-8 text"))
    if problems:
        raise ConfigError(problems)
    return files


def version(files: Mapping[str, str]) -> str:
    """SHA-256 hex over the files sorted by name, as the bot zip's version is
    over its entries: names and contents only."""
    return bot_archive.digest({name: text.encode("utf-8") for name, text in files.items()})


def to_wire(files: Mapping[str, str]) -> dict[str, Any]:
    """The one JSON document that stores a config: `{"files": {...}, "version": ...}`."""
    return {"files": dict(sorted(files.items())), "version": version(files)}


def from_wire(body: Any) -> dict[str, str]:
    """The files of a `to_wire` document, refused (ValidationError) unless its version is theirs."""
    wire = WireObject(body, "", ("files", "version"))
    files = wire.get("files")
    if not isinstance(files, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in files.items()):
        raise ValidationError("files", "must map file names to their text")
    if wire.get("version") != version(files):
        raise ValidationError("version", "is not the version of the files")
    return files


def _script_problems(name: str, source: str) -> list[ConfigProblem]:
    """A hooks script's syntax error, at its line: the bots would fail to import it."""
    try:
        compile(source, name, "exec", dont_inherit=True)
    except SyntaxError as e:  # A NUL byte too, with no line.
        return [ConfigProblem(name, e.lineno or 0, "", f"invalid Python: {e.msg}")]
    return []


def _settings(f: TomlFile) -> Settings:
    data = f.known(f.data, (), SETTINGS_KEYS)
    table, groups = f.value(data, (), "groups", {}), {}
    for name in table:
        if not identity_patterns.GROUP_NAME_RE.fullmatch(name):
            f.problem(("groups", name), "a group name is 1 to 100 of A-Z a-z 0-9 _ . @ -")
        groups[name] = _patterns(f, table, ("groups",), name, groups=None)
    ttls = {}
    for key in ("bot_session_ttl_secs", "bootstrap_token_ttl_secs"):
        ttls[key] = f.value(data, (), key, getattr(Settings, key))
        if not MIN_TTL_SECS <= ttls[key] <= MAX_TTL_SECS:
            f.problem((key,), f"must be between {MIN_TTL_SECS} and {MAX_TTL_SECS}")
    return Settings(admins=_patterns(f, data, (), "admins", groups), groups=groups,
                    id_token_audience=f.value(data, (), "id_token_audience", ""), **ttls)


def _pools(f: TomlFile, groups: Mapping[str, Any]) -> dict[str, Pool]:
    f.known(f.data, (), ("pools",))
    raw, pools = f.value(f.data, (), "pools", {}), {}
    for name in raw:
        path: Path = ("pools", name)
        try:
            dimensions.validate_task({"pool": [name]}, "pool")
        except ValidationError as e:
            f.problem(path, f"not a pool name: {e.reason}")
        table = f.known(f.value(raw, ("pools",), name, {}), path, POOL_KEYS)
        pools[name] = Pool(name=name, **{role: _patterns(f, table, path, role, groups) for role in POOL_ROLES},
                           owners=values(f.strings(table, path, "owners", identity_patterns.email_problem)),
                           lifo=f.value(table, path, "lifo", False))
    return pools


def _patterns(f: TomlFile, table: dict[str, Any], path: Path, key: str,
              groups: Mapping[str, Any] | None) -> tuple[str, ...]:
    """The identity patterns of the list table[key], in their normal form;
    `groups`: those they may name, None for the members of a group."""
    def problem_of(pattern: str) -> str | None:
        if groups is None and pattern.startswith(f"{identity_patterns.GROUP}:"):
            return f"{pattern!r}: a group may not hold a group"
        return identity_patterns.pattern_problem(pattern, groups or {})

    return tuple(identity_patterns.normal(pattern) for pattern in values(f.strings(table, path, key, problem_of)))
