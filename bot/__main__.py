import sys

from bot import bot_main

sys.exit(bot_main.main())
