"""The hooks of the lab's bots: bots.toml names this file as the
`bot_config_script` of their group, and the server hands it to them with
their handshake; they load it in place of the zip's default hooks.

A hook this file leaves out is the default one: bot/default_bot_config.py
documents every hook (copy from there). Every hook takes `bot`, a
`bot.hooks.BotView` (`bot.id`, `bot.base_dir`, `bot.server_dimensions`, ...);
`get_*()` may be given None instead. A hook that raises, or returns the
wrong type, is reported as a `bot_error` event and the default one answers.
Import only from the standard library and `bot.*`.
"""

from __future__ import annotations

from typing import Any

from bot import default_bot_config

#: The building the lab's machines are in, for tasks to select them by.
BUILDING = "b41"


def get_dimensions(bot: Any) -> dict[str, list[str]]:
    """The default dimensions, and `building`. The server's enforced ones
    (the group's pool and os) override these."""
    dimensions = default_bot_config.get_dimensions(bot)
    dimensions["building"] = [BUILDING]
    return dimensions
