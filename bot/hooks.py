"""Calls the hooks of `bot_config.py` (seed 000, "Hooks") so that none of them
can stop the bot: an exception, or a result of the wrong type, is logged and
reported as a `bot_error` event, and the call answers what the default
`bot_config.py` (`bot.default_bot_config`) would have.

`BotView` is what the hooks see of the bot; bot_main keeps its fields current.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import json
import logging
import numbers
import os
import time
import traceback
from pathlib import Path
from types import ModuleType
from typing import Any, Callable, Mapping, TypeVar

from bot import credentials, default_bot_config, events, health, host_state
from shared import dimensions as dims_lib
from shared.errors import ValidationError

logger = logging.getLogger(__name__)

T = TypeVar("T")
Report = Callable[[str, str], Any]
#: The module name of the injected hooks, at the root of swarming_bot.zip.
INJECTED = "bot_config"
AUTHORIZATION = "Authorization"


class BotView:
    """The bot as `bot_config.py` hooks see it (the reference's `api/bot.py`).
    bot_main creates one and keeps `dimensions`, `server_dimensions`, `state`
    and `sleep_streak` current; `Hooks` keeps `settings` current."""

    def __init__(self, bot_id: str, base_dir: str | os.PathLike, server: str = "", *,
                 report: Report | None = None, clock: Callable[[], float] = time.monotonic,
                 reboot: Callable[[], Any] = host_state.reboot,
                 restart: Callable[[str], Any] | None = None):
        self.id = bot_id
        self.base_dir = os.fspath(base_dir)  # The bot's directory: w/, c/, logs/ and the zips.
        self.server = server  # The server's URL.
        self.dimensions: dict[str, list[str]] = {}  # As last reported.
        self.server_dimensions: dict[str, list[str]] = {}  # Enforced by the server; set at the handshake.
        self.state: dict[str, Any] = {}  # As last reported.
        self.settings: dict[str, Any] = {}  # The last get_settings(), merged over the defaults.
        self.sleep_streak = 0  # Polls answered "sleep" in a row.
        self._report = report  # Sends a bot event; None: logged only.
        self._clock = clock
        self._started = clock()
        self._reboot = reboot  # Reboots the host, raising if it could not.
        self._restart = restart  # Asks bot_main to restart the bot process.

    @property
    def running_time(self) -> float:
        """Seconds since this bot process started."""
        return round(self._clock() - self._started, 1)

    def post_event(self, event: str, message: str) -> None:
        """Sends a `bot_log` (or another bot event) to the server."""
        if self._report is None:
            logger.info("%s: %s", event, message)
        else:
            self._report(event, message)

    def post_error(self, message: str) -> None:
        self.post_event(events.BOT_ERROR, message)

    def host_reboot(self, message: str) -> None:
        """Reports `bot_rebooting`, then reboots the host (needs passwordless
        sudo on Linux and macOS); raises if the reboot was refused."""
        self.post_event(events.BOT_REBOOTING, message)
        self._reboot()

    def bot_restart(self, message: str) -> None:
        """Asks bot_main to restart the bot process (when and how is bot_main's)."""
        if self._restart is None:
            raise NotImplementedError("this bot cannot restart itself")
        self._restart(message)


class Hooks:
    """The hooks of one `bot_config.py` module, called safely.

    `report(event, message)` sends a bot event (`events.Reporter.report`); a
    hook missing from the module is the default one."""

    def __init__(self, module: ModuleType = default_bot_config, report: Report | None = None,
                 name: str | None = None):
        self.module = module
        self.name = name or getattr(module, "__file__", None) or module.__name__  # For logs.
        self._report = report

    @classmethod
    def load(cls, path: str | os.PathLike | None = None, report: Report | None = None) -> Hooks:
        """The hooks of the `bot_config.py` at `path`; without a path, of the
        one the server injected at the root of the bot's zip (or of the
        checkout, next to `bot/`); else the default ones. A module that fails
        to load is reported and replaced by the default one."""
        try:
            module = _load_file(Path(path)) if path is not None else _injected_module()
        except Exception:
            message = f"bot_config.py ({path or INJECTED}) failed to load; using the default hooks:\n" \
                      f"{traceback.format_exc()}"
            cls(report=report)._failed(message)
            module = None
        if module is None:
            return cls(default_bot_config, report, "default")
        logger.info("hooks from %s", getattr(module, "__file__", module.__name__))
        return cls(module, report)

    # on_*: lifecycle hooks; what they return is ignored.

    def on_bot_startup(self, bot: BotView) -> None:
        """When the bot process starts, before it talks to the server."""
        self._call("on_bot_startup", bot)

    def on_handshake(self, bot: BotView) -> None:
        """After the handshake (bot.server_dimensions set), before the first poll."""
        self._call("on_handshake", bot)

    def on_bot_idle(self, bot: BotView, since_last_action: float) -> None:
        """After each poll answered "sleep"."""
        self._call("on_bot_idle", bot, since_last_action)

    def on_before_task(self, bot: BotView, bot_file: str, runner_cmd: list[str] | None = None,
                       runner_env: dict[str, str] | None = None) -> None:
        """Right before a task starts. A hook written for the reference's four
        arguments gets them all; one taking two gets two."""
        fn = self._hook("on_before_task")
        args = (bot, bot_file, runner_cmd, runner_env)
        self._call("on_before_task", *args[:4 if _accepts(fn, 4) else 2])

    def on_after_task(self, bot: BotView, failure: bool, internal_failure: bool,
                      dimensions: dict[str, list[str]], summary: dict[str, Any]) -> None:
        """Right after a task ended, whatever the outcome."""
        self._call("on_after_task", bot, failure, internal_failure, dimensions, summary)

    def on_bot_shutdown(self, bot: BotView) -> None:
        """Before the bot process exits (terminate, restart, update, reboot)."""
        self._call("on_bot_shutdown", bot)

    # get_*: the bot's attributes.

    def get_dimensions(self, bot: BotView | None) -> dict[str, list[str]]:
        """The hook's dimensions, with `id` (bot.id) and `pool` ("default")
        added when it gives none, sorted and valid as the server wants them."""
        def convert(dims: Any) -> dict[str, list[str]]:
            return _dimensions(dims, bot)
        return self._get("get_dimensions", bot, convert, lambda: convert({}))

    def get_settings(self, bot: BotView | None) -> dict[str, Any]:
        """The hook's settings merged over the defaults; kept in bot.settings.
        When the hook fails, the last good settings stay (the defaults before
        any): a hook failing once does not drop, say, `run_tasks_as`."""
        settings = self._get("get_settings", bot, _settings,
                             lambda: bot.settings if bot is not None and bot.settings else _base_settings(),
                             default=False)
        if bot is not None:
            bot.settings = settings
        return settings

    def get_state(self, bot: BotView | None) -> dict[str, Any]:
        """The state to report: the hook's, with the bot's `running_time` and
        `sleep_streak`, `cost_usd_hour` from the settings, and `quarantined`
        when the hook did not set it but the health check fails. Calls
        get_settings() first."""
        settings = self.get_settings(bot)
        state = self._get("get_state", bot, _state, dict)
        if bot is not None:
            state["running_time"] = bot.running_time
            state["sleep_streak"] = bot.sleep_streak
        if state.get("cost_usd_hour") is None and settings.get("cost_usd_hour") is not None:
            state["cost_usd_hour"] = settings["cost_usd_hour"]
        if not state.get("quarantined"):
            work_dir = bot.base_dir if bot is not None else os.getcwd()
            try:
                reason = health.check(work_dir, settings)
            except Exception as e:  # A bot that cannot check itself should not run tasks.
                logger.exception("the health check failed")
                reason = f"the health check failed: {e!r}"
            if reason:
                state["quarantined"] = reason
        return state

    def get_authentication_headers(self, bot: BotView | None) -> tuple[dict[str, str], float | None]:
        """(headers, Unix time they expire or None); ({}, None): none. An
        `Authorization` among them (spelt so, "Bearer <token>") is the
        handshake's credential (bot/credentials.py); the others go with
        every request."""
        return self._get("get_authentication_headers", bot, _auth, lambda: ({}, None), default=False)

    # setup_bot.

    def setup_bot(self, bot: BotView) -> bool:
        """At start-up and before shutdown; False: the bot should exit. A
        failing hook answers True: a broken hook must not stop the fleet."""
        return self._get("setup_bot", bot, _bool, lambda: True, default=False)

    # The guard.

    def _hook(self, name: str) -> Callable[..., Any]:
        fn = getattr(self.module, name, None)
        return fn if callable(fn) else getattr(default_bot_config, name)

    def _call(self, name: str, *args: Any, convert: Callable[[Any], Any] | None = None) -> Any:
        """The hook's result through `convert`, or _FAILED after reporting why."""
        try:
            result = self._hook(name)(*args)
        except Exception:
            self._failed(f"{name}() in {self.name} raised:\n{traceback.format_exc()}")
            return _FAILED
        if convert is None:
            return result
        try:
            return convert(result)
        except BadResult as e:
            self._failed(f"{name}() in {self.name} returned {_short(result)}: {e}")
            return _FAILED

    def _get(self, name: str, bot: Any, convert: Callable[[Any], T], last_resort: Callable[[], T],
             default: bool = True) -> T:
        """A get_* hook's converted result. When it fails: with `default`, what
        the default hook answers; else, or should even that fail, `last_resort()`."""
        result = self._call(name, bot, convert=convert)
        if result is not _FAILED:
            return result
        if default and self.module is not default_bot_config:
            try:
                return convert(getattr(default_bot_config, name)(bot))
            except Exception:
                logger.exception("the default %s() failed too", name)
        return last_resort()

    def _failed(self, message: str) -> None:
        logger.error("%s", message)
        if self._report is not None:
            try:
                self._report(events.BOT_ERROR, message)
            except Exception:  # Reporting is best effort; the bot must go on.
                logger.exception("the hook error could not be reported")


class BadResult(ValueError):
    """A hook returned something of the wrong type or shape."""


class _Failed:
    def __repr__(self) -> str:
        return "<failed>"


_FAILED: Any = _Failed()


def _accepts(fn: Callable[..., Any], count: int) -> bool:
    """Whether `fn` can be called with `count` positional arguments."""
    try:
        inspect.signature(fn).bind(*range(count))
    except TypeError:
        return False
    except ValueError:  # No signature to inspect (a builtin): try it.
        return True
    return True


def _short(value: Any, limit: int = 300) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def _dimensions(dims: Any, bot: BotView | None) -> dict[str, list[str]]:
    if not isinstance(dims, dict):
        raise BadResult("expected a dict of lists of strings")
    for key, values in dims.items():
        if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
            raise BadResult(f"{key!r}: expected a list of strings")
    out = {"id": [bot.id if bot is not None else host_state.short_hostname()],
           "pool": [host_state.DEFAULT_POOL], **dims}
    try:
        return dims_lib.validate_bot(out, "dimensions")
    except ValidationError as e:
        raise BadResult(str(e)) from e


def _state(state: Any) -> dict[str, Any]:
    if not isinstance(state, dict) or not all(isinstance(k, str) for k in state):
        raise BadResult("expected a dict with string keys")
    try:
        json.dumps(state)
    except (TypeError, ValueError) as e:
        raise BadResult(f"not JSON: {e}") from e
    return dict(state)


def _base_settings() -> dict[str, Any]:
    return default_bot_config.get_settings(None)


def _merge(base: dict[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def _settings(settings: Any) -> dict[str, Any]:
    """`settings` merged over the defaults, the keys the bot reads checked."""
    if not isinstance(settings, dict):
        raise BadResult("expected a dict")
    merged = _merge(_base_settings(), settings)
    free = merged.get("free_partition")
    if not isinstance(free, dict):
        raise BadResult("free_partition: expected a dict")
    if not _is_number(free.get("percent")) or not 0 <= free["percent"] <= 100:
        raise BadResult("free_partition.percent: expected a number from 0 to 100")
    if not _is_number(free.get("size_gib")) or free["size_gib"] < 0:
        raise BadResult("free_partition.size_gib: expected a number, 0 or more")
    if not _is_number(merged.get("max_temp_files")) or merged["max_temp_files"] < 0:
        raise BadResult("max_temp_files: expected a number, 0 or more")
    cas_cache = merged.get("cas_cache")
    if not isinstance(cas_cache, dict):
        raise BadResult("cas_cache: expected a dict")
    for key in ("max_size_gib", "max_items", "min_free_gib"):
        if not _is_number(cas_cache.get(key)) or cas_cache[key] < 0:
            raise BadResult(f"cas_cache.{key}: expected a number, 0 or more")
    cost = merged.get("cost_usd_hour")
    if cost is not None and (not _is_number(cost) or cost < 0):
        raise BadResult("cost_usd_hour: expected a number, 0 or more, or None")
    run_as = merged.get("run_tasks_as")
    if run_as is not None and (not isinstance(run_as, str) or not run_as):
        raise BadResult("run_tasks_as: expected a user name, or None")
    return merged


def _auth(result: Any) -> tuple[dict[str, str], float | None]:
    if not isinstance(result, (tuple, list)) or len(result) != 2:
        raise BadResult("expected (headers, expiry)")
    headers, expiry = result
    if headers is not None and (not isinstance(headers, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in headers.items())):
        raise BadResult("headers: expected a dict of strings, or None")
    if expiry is not None and not _is_number(expiry):
        raise BadResult("expiry: expected a Unix time, or None")
    out = {}
    for key, value in (headers or {}).items():
        if key.lower() == AUTHORIZATION.lower():
            try:
                credentials.bearer_token(value)
            except ValueError as e:
                raise BadResult(f"headers: {key}: {e}") from e
            key = AUTHORIZATION
        out[key] = value
    return out, (None if expiry is None else float(expiry))


def _bool(result: Any) -> bool:
    if not isinstance(result, bool):
        raise BadResult("expected True or False")
    return result


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _load_file(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(INJECTED, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"{path} is not a Python module")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _injected_module() -> ModuleType | None:
    """`bot_config` from the directory (or zip) that holds the `bot` package;
    None when there is none. A `bot_config` elsewhere on sys.path is not ours."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    spec = importlib.util.find_spec(INJECTED)
    if spec is None or not spec.origin or os.path.dirname(os.path.abspath(spec.origin)) != root:
        return None
    return importlib.import_module(INJECTED)
