"""Starting a bot on a new host: the start script.

An admin mints a bootstrap token with `server_token`; `bot_bootstrap?token=...`
answers a shell script that downloads `swarming_bot.zip` with that token,
leaves the token in the bot's directory for the bot's first handshake (which
exchanges it for the bot's own token, when the bot's group allows bootstrap),
and starts the bot. A bootstrap token opens `bot_bootstrap`, `bot_code` and
that handshake only, and expires (functions.signed_tokens).
"""

import shlex

#: Where the script leaves the bootstrap token; the bot reads it at start and
#: deletes it (bot/layout.py names the same file).
TOKEN_FILE = "bootstrap_token"


def script(server_url: str, version: str, token: str) -> str:
    """The start script: POSIX sh, curl or else python3's urllib."""
    url = f"{server_url}/bot_code?version={version}"
    return f"""#!/bin/sh
# Starts a Swarming bot of {server_url} in the current directory:
# downloads swarming_bot.zip (version {version[:16]}...) with a bootstrap token,
# leaves the token in {TOKEN_FILE} (mode 0600) for the bot's first handshake,
# and runs `python3 swarming_bot.zip start_bot`. The directory becomes the
# bot's: it deletes everything else in it at start-up.
#   curl -fsS '{server_url}/bot_bootstrap?token=<bootstrap token>' | sh
# The bootstrap token expires: the bot exchanges it for a token of its own at
# once (when its group allows bootstrap; a bot with a service account shows
# that account's ID token instead, through its hooks).
set -eu
umask 077
URL={shlex.quote(url)}
TOKEN={shlex.quote(token)}
if command -v curl >/dev/null 2>&1; then
  curl -fsSL -H "Authorization: Bearer $TOKEN" -o swarming_bot.zip.part "$URL"
else
  python3 -c 'import sys, urllib.request as u; r = u.Request(sys.argv[1], headers={{"Authorization": "Bearer " + sys.argv[2]}}); open("swarming_bot.zip.part", "wb").write(u.urlopen(r).read())' "$URL" "$TOKEN"
fi
mv swarming_bot.zip.part swarming_bot.zip
printf '%s' "$TOKEN" > {TOKEN_FILE}.part
mv {TOKEN_FILE}.part {TOKEN_FILE}
exec python3 swarming_bot.zip start_bot
"""
