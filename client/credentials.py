"""Where the CLI's bearer token comes from, renewed before it expires: Google
ID tokens last an hour, and `swarming collect` may wait longer.

- `--token`/SWARMING_TOKEN: that token, as given (the caller renews it);
- the local stack: an ID token of the local user from the stack's own OIDC
  issuer (shared/local_state.py);
- otherwise: `gcloud auth print-identity-token`, the person's (or the CI
  service account's) Google identity.
"""

import shutil
import subprocess
import threading
import time
from pathlib import Path
from typing import Callable

from shared import local_state

#: A token is asked again this long after it was got (ID tokens last an hour).
RENEW_SECS = 45 * 60
GCLOUD_TIMEOUT_SECS = 60

TokenSource = Callable[[], str]


class CredentialsError(Exception):
    """No token could be had: says why, and what to do."""


class Renewed:
    """A token from `fetch`, fetched again once RENEW_SECS old."""

    def __init__(self, fetch: Callable[[], str], clock: Callable[[], float] = time.monotonic):
        self._fetch = fetch
        self._clock = clock
        self._lock = threading.Lock()
        self._token: tuple[float, str] | None = None

    def __call__(self) -> str:
        with self._lock:
            if self._token is None or self._clock() - self._token[0] >= RENEW_SECS:
                try:
                    self._token = (self._clock(), self._fetch())
                except (OSError, subprocess.SubprocessError) as e:
                    raise CredentialsError(f"no token: {e}") from e
            return self._token[1]


def local_user(state_dir: Path, audience: str) -> TokenSource:
    return Renewed(lambda: local_state.id_token(state_dir, local_state.local_user(), audience))


def gcloud() -> TokenSource:
    """The identity gcloud is logged in as; CredentialsError when gcloud is missing."""
    path = shutil.which("gcloud")
    if path is None:
        raise CredentialsError("no token: pass --token (or SWARMING_TOKEN), or log in with "
                               "'gcloud auth login' to use your Google identity")

    def fetch() -> str:
        done = subprocess.run([path, "auth", "print-identity-token"], capture_output=True, text=True,
                              timeout=GCLOUD_TIMEOUT_SECS)
        if done.returncode != 0:
            raise CredentialsError(f"gcloud auth print-identity-token failed: {done.stderr.strip()[:300]}")
        return done.stdout.strip()

    return Renewed(fetch)
