"""The local stand-in for Cloud Scheduler: calls the cron functions on a period.

    python -m local.cron --server URL [--every SECS] FUNCTION...

The admin token comes from SWARMING_TOKEN. A failed call is logged and tried
again at the next period, as Cloud Scheduler would.
"""

import argparse
import logging
import os
import signal
import threading

import requests

log = logging.getLogger("local_cron")


def run(server: str, token: str, functions: list[str], every: float, stop: threading.Event) -> None:
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {token}"
    while not stop.wait(every):
        for name in functions:
            try:
                response = session.post(f"{server.rstrip('/')}/{name}", json={}, timeout=60)
                log.info("%s: %s %s", name, response.status_code, response.text.strip()[:500])
            except requests.RequestException as e:
                log.warning("%s: %s", name, e)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server", required=True, help="The gateway's base URL.")
    parser.add_argument("--every", type=float, default=60.0, help="Seconds between calls (default 60).")
    parser.add_argument("functions", nargs="+", help="The functions to call, e.g. cron_sweep.")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        run(args.server, os.environ["SWARMING_TOKEN"], args.functions, args.every, stop)
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
