"""The local stand-in for Cloud Scheduler: calls the cron functions on a period.

    python -m local.cron --server URL --state-dir DIR --account EMAIL [--every SECS] FUNCTION...

Each call carries, as Cloud Scheduler's does, an ID token of the service's own
account (`--account`) for the URL called, from the local stack's OIDC issuer
(the stack in `--state-dir`). A failed call is logged and tried again at the
next period, as Cloud Scheduler would.
"""

import argparse
import logging
import signal
import threading
from pathlib import Path
from typing import Callable

import requests

from shared import local_state

log = logging.getLogger("local_cron")


def run(server: str, token_for: Callable[[str], str], functions: list[str], every: float,
        stop: threading.Event) -> None:
    """`token_for(url)`: a bearer token for a call to `url`."""
    session = requests.Session()
    while not stop.wait(every):
        for name in functions:
            url = f"{server.rstrip('/')}/{name}"
            try:
                response = session.post(url, json={}, timeout=60,
                                        headers={"Authorization": f"Bearer {token_for(url)}"})
                log.info("%s: %s %s", name, response.status_code, response.text.strip()[:500])
            except (requests.RequestException, OSError) as e:
                log.warning("%s: %s", name, e)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server", required=True, help="The gateway's base URL.")
    parser.add_argument("--state-dir", required=True, type=Path, help="The local stack's state directory.")
    parser.add_argument("--account", required=True, help="The service account the calls are made as.")
    parser.add_argument("--every", type=float, default=60.0, help="Seconds between calls (default 60).")
    parser.add_argument("functions", nargs="+", help="The functions to call, e.g. cron_sweep.")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        run(args.server, lambda url: local_state.id_token(args.state_dir, args.account, url), args.functions,
            args.every, stop)
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
