"""How the bot proves who it is to the server, and keeps its credential out
of its tasks' reach (docs/fleet.md, "How a bot authenticates").

The handshake (`bot_handshake`) is where a bot shows a credential the server
did not sign for it; its answer hands the bot a **bot token**: signed by the
server, bound to the bot id and its group, short-lived. Every later call sends
it, and every answer may renew it (`X-Swarming-Bot-Token`, which the HTTP
client takes: bot/api_client.py). A 401 means it expired or was refused: the
bot drops it and handshakes again (bot/bot_main.py).

What the handshake shows, the first of:
1. the `get_authentication_headers` hook's `Authorization` (a service
   account's ID token: on GCE the default hook's, bot/gce.py);
2. a bootstrap token from the file `bootstrap_token` (the start script writes
   it): read and deleted at start, and kept in memory only until a handshake
   went through or the server refused it;
3. the bot's own bot token, still valid: the one handed over across an exec
   through the file `bot_token` (written just before the exec, read and
   deleted by the new process at start);
4. a token given by `--token` / `SWARMING_TOKEN` (one the handshake takes: a
   bootstrap token), for the hosts that cannot leave a file; the bot's
   command line and environment are readable by its tasks, so the file is
   the better way.

Both files are mode 0600, in the bot's directory, where the start-up
clean-up keeps them only until they are read: while a task runs, neither
exists. The bot's process alone holds the bot token; a task runner holds its
run's token (bot/runner_protocol.py), and no credential reaches an
environment.
"""

from __future__ import annotations

import enum
import logging
from pathlib import Path

from bot import layout as layout_lib

logger = logging.getLogger(__name__)

#: `--token`'s variable (and the CLI's): no process the bot starts gets it.
STATIC_TOKEN_ENV = "SWARMING_TOKEN"


class Source(str, enum.Enum):
    """Where the handshake's credential came from, as the logs say it."""

    HOOK = "the get_authentication_headers hook's Authorization"
    BOOTSTRAP = "the bootstrap token"
    BOT_TOKEN = "the bot's token"
    STATIC = "the token of --token or SWARMING_TOKEN"
    NONE = "no credential"


class Credentials:
    """What the bot may handshake with, but its bot token (which the HTTP
    client holds, renewed by the server's answers)."""

    def __init__(self, bootstrap_file: Path, *, bootstrap: str | None = None, static: str | None = None):
        # Where a bootstrap token is left for the bot: read at start, and again
        # whenever the bot has nothing else to handshake with.
        self.bootstrap_file = bootstrap_file
        self.hook: str | None = None  # The get_authentication_headers hook's bearer token, as last asked.
        self._bootstrap = bootstrap  # Until a handshake went through or the server refused it.
        self._static = static  # --token / SWARMING_TOKEN: never dropped (it may be the one way in).

    def for_handshake(self, bot_token: str | None) -> tuple[Source, str | None]:
        """The bearer token to handshake with, and its source. With nothing
        else, a bootstrap token written to the file since is taken: this is
        how a bot whose credential lapsed comes back."""
        if self.hook:
            return Source.HOOK, self.hook
        if self._bootstrap is None and bot_token is None and self._static is None:
            self._bootstrap = take(self.bootstrap_file)
        for source, token in ((Source.BOOTSTRAP, self._bootstrap), (Source.BOT_TOKEN, bot_token),
                              (Source.STATIC, self._static)):
            if token:
                return source, token
        return Source.NONE, None

    def connected(self) -> None:
        """A handshake went through: the bot token replaces the bootstrap token."""
        self._bootstrap = None

    def refused(self, source: Source) -> None:
        """The server refused the handshake's credential: a bootstrap token is
        dropped (expired, or used elsewhere); the others are asked anew."""
        if source is Source.BOOTSTRAP:
            self._bootstrap = None


def bearer_token(authorization: str) -> str:
    """The token of an `Authorization: Bearer <token>` header's value; raises
    ValueError for any other scheme, which the server would refuse."""
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ValueError("expected 'Bearer <token>'")
    return token.strip()


def take(path: Path) -> str | None:
    """The token in the file `path`, which is deleted at once; None when there
    is none (or it cannot be read, which is logged)."""
    try:
        token = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as e:
        logger.error("cannot read the token file %s: %s", path, e)
        token = ""
    try:
        path.unlink()
    except OSError as e:  # The start-up clean-up gets it next time.
        logger.error("cannot delete the token file %s: %s", path, e)
    if not token:
        return None
    logger.info("took a token from %s, and deleted the file", path)
    return token


def hand_over(path: Path, token: str) -> None:
    """Writes `token` to `path` (mode 0600, created anew) for the process the
    bot execs into, which reads it with `take` at its start."""
    path.unlink(missing_ok=True)  # A leftover is never written into: it may not be ours.
    with layout_lib.create_private(path) as f:
        f.write(token)
