"""`python -m bot [command] ...`: the bot from source (version "dev"); the same
commands as swarming_bot.zip (bot/commands.py), the bot itself by default."""

import sys

from bot import commands

sys.exit(commands.main(sys.argv[1:]))
