"""`python -m bot [command] ...`: the bot from source (version "dev"); the same
commands as swarming_bot.zip (bot/launcher.py), the bot itself by default."""

import sys

from bot import launcher

sys.exit(launcher.main(sys.argv[1:]))
