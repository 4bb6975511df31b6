"""The entry point of swarming_bot.zip: the server stores this file at the
zip's root as `__main__.py`, so `python3 swarming_bot.zip <command>` runs it.

It stays small, and imports the standard library and bot/probation.py only
(which imports nothing of ours), because it is the one part of a new bot
version that must work for the bot to fall back when the rest does not: a
bot that exec'd into new code (`update`) runs "on probation" until its first
handshake; should `start_bot` fail before then (an exception, a non-zero exit),
this restarts the bot from the last known good copy, `swarming_bot.zip`, and
tells it which version failed so it does not take that version again.

Exit codes: 0 done; 1 failed; 2 usage error; 3 the directory cannot be this
bot's (another bot holds it, or it holds foreign files). See bot/commands.py.
"""

import os
import sys
import traceback

from bot.probation import BAD_VERSION_ENV, LKGBC, PROBATION_ENV


def main():
    if sys.version_info < (3, 9):
        sys.stderr.write("swarming_bot.zip needs python3 >= 3.9, not %s\n" % sys.version.split()[0])
        return 1
    try:
        from bot import commands

        code = commands.main(sys.argv[1:])
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    except BaseException:  # A broken version: anything at all.
        traceback.print_exc()
        code = 1
    starting = not sys.argv[1:] or sys.argv[1] == "start_bot" or sys.argv[1].startswith("-")
    if code and starting and os.environ.get(PROBATION_ENV):
        fall_back(code)
    return code


def fall_back(code):
    """Execs the last known good copy in place of this failed start (never
    returns, unless there is no other copy to go back to)."""
    version = os.environ.pop(PROBATION_ENV)
    this_zip = os.path.abspath(sys.argv[0])
    lkgbc = os.path.join(os.path.dirname(this_zip), LKGBC)
    if not os.path.isfile(lkgbc) or os.path.samefile(lkgbc, this_zip):
        sys.stderr.write("version %s failed to start (exit code %s); no other copy to go back to\n"
                         % (version, code))
        return
    sys.stderr.write("version %s failed to start (exit code %s): falling back to %s\n" % (version, code, lkgbc))
    os.environ[BAD_VERSION_ENV] = "%s exit code %s" % (version, code)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, [sys.executable, lkgbc] + sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
