"""The local stack's state directory, as far as the CLI reads it, and how the
CLI logs the local user in.

`swarming local up` (local/stack.py) writes the directory; the CLI reads it to
reach the local stack without --server or --token. The names live here
because client/ may not import local/. What matters to both:

    stack.json      what runs: `base_url`, the gateway's BASE_URL, and
                    `issuer_url`, the local OIDC issuer (Google's stand-in)
    issuer_secret   the secret for which the issuer mints ID tokens (0600)

The CLI asks the issuer for an ID token of the local user
(`user:<SWARMING_LOCAL_USER or local-user>@localhost`), as it would ask
Google in production: the functions verify it by the one path they have.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

#: Where the state directory is, unless --state-dir or DIR_ENV says otherwise.
DEFAULT_DIR = ".local"
DIR_ENV = "SWARMING_LOCAL_DIR"
STACK_FILE = "stack.json"
ISSUER_SECRET_FILE = "issuer_secret"
#: Who the CLI is on the local stack: `<name>@localhost`.
USER_ENV, DEFAULT_USER = "SWARMING_LOCAL_USER", "local-user"
LOCAL_DOMAIN = "localhost"


def stack_path(state_dir: Path) -> Path:
    return Path(state_dir) / STACK_FILE


def issuer_secret_path(state_dir: Path) -> Path:
    return Path(state_dir) / ISSUER_SECRET_FILE


def read_state(state_dir: Path) -> dict[str, Any] | None:
    """The recorded stack (stack.json), or None when none was started."""
    try:
        return json.loads(stack_path(state_dir).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None


def local_user() -> str:
    """The local user's email."""
    return f"{os.environ.get(USER_ENV) or DEFAULT_USER}@{LOCAL_DOMAIN}"


def id_token(state_dir: Path, email: str, audience: str) -> str:
    """An ID token of `email` for `audience`, from the stack's issuer; OSError
    (with why) when there is no running stack to ask."""
    state = read_state(state_dir)
    if state is None or not state.get("issuer_url"):
        raise FileNotFoundError(f"no local stack runs in {state_dir}")
    secret = issuer_secret_path(state_dir).read_text(encoding="utf-8").strip()
    request = urllib.request.Request(
        state["issuer_url"] + "/token", data=json.dumps({"email": email, "audience": audience}).encode(),
        headers={"Authorization": f"Bearer {secret}", "Content-Type": "application/json"}, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return json.loads(answer.read())["id_token"]
    except (urllib.error.URLError, ValueError, KeyError) as e:
        raise OSError(f"the local stack's issuer did not answer: {e}") from e
