"""A new version on probation, and the fallback from it (seed: "update",
"LKGBC"): a bot that exec'd into new code (bot/updater.py) runs on probation
until its first handshake; should it fail to start before then, the zip's
`__main__.py` (bot/zip_main.py) execs the last known good copy in its place
and names the version that failed, for the fallback not to take it again.

The names both sides agree on live here, and nothing else: zip_main imports
this module, and must work when the rest of a version does not. Standard
library only, importing nothing of ours; and importable by any python3 (no
`from __future__ import annotations`), so that zip_main's check of the
Python version is what an old one prints.
"""

import os
from typing import Dict, Optional, Tuple

#: Set by a bot exec'ing into new code (the version); removed at its first handshake.
PROBATION_ENV = "SWARMING_BOT_PROBATION"
#: "<version> <why>": set when falling back, for the fallback bot to refuse that version.
BAD_VERSION_ENV = "SWARMING_BOT_BAD_VERSION"
#: The last known good copy of the bot code, in the bot's directory.
LKGBC = "swarming_bot.zip"


def environ_without_bot_vars() -> Dict[str, str]:
    """This process's environment without the variables of the bot's own
    life (probation, the version it fell back from): for any process it
    starts, which must not mistake them for its own."""
    return {k: v for k, v in os.environ.items() if k not in (PROBATION_ENV, BAD_VERSION_ENV)}


def take_bad_version() -> Optional[Tuple[str, str]]:
    """(version, why) when this bot was started as the fallback from a
    version that failed to start; read once."""
    value = os.environ.pop(BAD_VERSION_ENV, "")
    version, _, why = value.partition(" ")
    return (version, why) if version else None
