"""The default `bot_config.py`: the hooks a server gives its bots when its
config provides none (seed 000, "Hooks"). Copy it to start your own; the server
injects yours at the root of swarming_bot.zip, as `bot_config.py`.

Three kinds of functions, called by the bot at fixed times:
- `get_*()` describe the bot: its dimensions, state, settings and the headers
  to authenticate with. Called often (on every poll for dimensions, state and
  settings): keep them fast.
- `on_*()` are called at points of the bot's life; what they return is ignored.
- `setup_bot()` is the only one expected to change the host.

Every hook takes `bot`, a `bot.hooks.BotView`: `bot.id`, `bot.base_dir`,
`bot.server`, `bot.dimensions` (as last reported), `bot.server_dimensions`
(enforced by the server, known after the handshake), `bot.state`,
`bot.settings`, `bot.running_time`, `bot.sleep_streak`, and
`bot.post_event(event, message)`, `bot.post_error(message)`,
`bot.host_reboot(message)`, `bot.bot_restart(message)`. `get_*()` may be given
None instead, when the bot reports its attributes outside of its loop.

A hook that raises, or returns the wrong type, is reported to the server as a
`bot_error` event and never stops the bot: the bot carries on as if the hook
were this default one. Import only from the standard library and `bot.*`.
"""

from __future__ import annotations

import os
from typing import Any

from bot import cas_cache, gce, health, host_state

# pylint: disable=unused-argument


def get_dimensions(bot: Any) -> dict[str, list[str]]:
    """Returns the bot's dimensions: what tasks select bots by. Each key maps
    to a list of string values.

    The defaults: `id` (the bot id: the short hostname unless the bot was
    given one), `pool` ("default"), `os` (e.g. Linux, Ubuntu, Ubuntu-22.04 or
    Mac, Mac-14, Mac-14.5), `cpu` (e.g. x86, x86-64, x86-64-avx2 or arm64,
    arm64-64, arm, arm-64), `cores` and `python` (3, 3.11, 3.11.7).

    Dimensions the server's config enforces for the bot (its pool, usually)
    override these. A `quarantined` dimension quarantines the bot, but the
    `quarantined` state below is the better place to say why.
    """
    return host_state.get_dimensions(bot.id if bot is not None else None)


def get_state(bot: Any) -> dict[str, Any]:
    """Returns the bot's state: free-form JSON about the bot sent with every
    call, shown on its page. The server acts on a few keys:
    - `quarantined`: a reason; the bot gets no task while it is set. Add your
      own health checks here (device temperature, drivers, ...): the bot's
      default checks (TEMP and free disk space, see `get_settings()`) run after
      this hook, unless it already set `quarantined`.
    - `maintenance`: a message; the bot gets no task while it is set.
    - `running_time` and `sleep_streak` are filled in by the bot itself.

    The default also reports `disk` (free and total MiB of the partitions of
    the bot's directory, TEMP and /), `ram` (MiB), `uptime` (s), `cwd`,
    `python`, `pid`, `hostname`, `nb_files_in_temp`, and `cost_usd_hour` when
    the settings give one.
    """
    if bot is None:
        return host_state.get_state(os.getcwd())
    return host_state.get_state(bot.base_dir, running_time=bot.running_time,
                                sleep_streak=bot.sleep_streak,
                                cost_usd_hour=(bot.settings or {}).get("cost_usd_hour"))


def get_settings(bot: Any) -> dict[str, Any]:
    """Returns the bot's settings. What a custom version returns is merged
    over these defaults, so it needs only the keys it changes.
    """
    return {
        # The bot quarantines itself when a partition that matters (its own
        # directory's, TEMP's, /) has less free space than the lower of
        # `percent` of its size and `size_gib`: on a 20 GiB disk 3 GiB (15 %),
        # on a 100 GiB disk 4 GiB. 0 for either turns the check off.
        "free_partition": {
            "percent": health.DEFAULT_FREE_PERCENT,  # 15
            "size_gib": health.DEFAULT_FREE_SIZE_GIB,  # 4
        },
        # The bot quarantines itself when TEMP holds more entries than this
        # (1024): something leaks temporary files. 0 turns the check off.
        "max_temp_files": health.DEFAULT_MAX_TEMP_FILES,
        # The content cache of task inputs (cas_cache/ in the bot's
        # directory): at most `max_size_gib` or `max_items` entries, whichever
        # comes first, and `min_free_gib` of free disk kept at the start and
        # end of each task; the least recently used entries go first.
        "cas_cache": {
            "max_size_gib": cas_cache.DEFAULT_MAX_SIZE_GIB,  # 20
            "max_items": cas_cache.DEFAULT_MAX_ITEMS,  # 100,000
            "min_free_gib": cas_cache.DEFAULT_MIN_FREE_GIB,  # 2
        },
        # What the host costs, in USD an hour, reported as `cost_usd_hour` in
        # the state, from which the server prices tasks. None: unknown.
        "cost_usd_hour": None,
        # The user whose uid the tasks run under, another than the bot's, so
        # that a task can read neither the bot's files nor its memory. The bot
        # must then run as root. None: tasks run as the bot's own user.
        "run_tasks_as": None,
    }


def get_authentication_headers(bot: Any) -> tuple[dict[str, str] | None, float | None]:
    """Returns (headers, expiry): HTTP headers for the server, and the Unix
    time at which they expire (None: never). The bot calls it again 5 minutes
    before they expire.

    An `Authorization: Bearer <token>` among them is what the bot shows at
    its handshake, ahead of a bootstrap token: an ID token of a service
    account its bot group lists. After the handshake the bot sends the token
    the server gave it instead; the other headers go with every request.

    The default, on Google Compute Engine: the ID token of the VM's service
    account for the server's URL, from the metadata server (valid an hour).
    Elsewhere none: the bot shows its bootstrap token.
    """
    token = gce.id_token(bot.server) if bot is not None else None
    if token is None:
        return {}, None
    return {"Authorization": f"Bearer {token.token}"}, token.expiry


# Hooks of the bot's life.


def on_bot_startup(bot: Any) -> None:
    """Called when the bot process starts, before it talks to the server:
    a place to examine the environment and prepare the first dimensions."""


def on_handshake(bot: Any) -> None:
    """Called after the first contact with the server, before the first poll.
    `bot.server_dimensions` now holds the dimensions the server enforces."""


def on_bot_idle(bot: Any, since_last_action: float) -> None:
    """Called after each poll the server answered with "sleep", while the bot
    has had nothing to do for `since_last_action` seconds. A place for
    cool-down work, or a periodic host reboot with `bot.host_reboot(reason)`:
    only a hook reboots the host."""


def on_before_task(bot: Any, bot_file: str, runner_cmd: list[str] | None = None,
                   runner_env: dict[str, str] | None = None) -> None:
    """Called right before a task starts; it cannot cancel it. `bot_file` is
    the path of a JSON file the task can read (through its environment) to
    learn about the bot: write into it what the task should know.
    `runner_cmd` and `runner_env` are the task runner's command line and
    environment, when the bot passes them, and may be changed in place (with
    care)."""


def on_after_task(bot: Any, failure: bool, internal_failure: bool,
                  dimensions: dict[str, list[str]], summary: dict[str, Any]) -> None:
    """Called right after a task ended: a place for cleanup. `failure` is true
    when the task failed (non-zero exit), `internal_failure` when the bot could
    not run it properly; `dimensions` are those the task asked for and
    `summary` what the bot reported of its end (exit code, duration, ...)."""


def on_bot_shutdown(bot: Any) -> None:
    """Called before the bot process exits (terminated, restarted or updated,
    or before a reboot): a place for cleanup."""


# Setup.


def setup_bot(bot: Any) -> bool:
    """Called when the bot starts and just before it shuts down, to make sure
    the host is set up to run the bot again after a reboot (e.g. a systemd
    unit or a launchd agent). Returns True if the bot can run now; False stops
    it. The default changes nothing."""
    return True
