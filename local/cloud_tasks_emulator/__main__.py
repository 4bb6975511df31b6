"""`python -m local.cloud_tasks_emulator --port N --certs-port M`: runs the
emulator in the foreground until SIGTERM or SIGINT, then exits with 0."""

import logging
import signal
import threading
from pathlib import Path

import click

from local.cloud_tasks_emulator.config import Settings
from local.cloud_tasks_emulator.server import serve

logger = logging.getLogger("local.cloud_tasks_emulator")


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--port", type=int, required=True, help="Port of the Cloud Tasks gRPC API.")
@click.option("--certs-port", type=int, required=True,
              help="Port of the HTTP endpoint serving the OIDC token certificates (/oauth2/v1/certs).")
@click.option("--bind", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--task-tombstone-seconds", type=float, default=Settings.task_tombstone_seconds, show_default=True,
              help="How long a delivered or deleted task's name cannot be reused.")
@click.option("--queue-tombstone-seconds", type=float, default=Settings.queue_tombstone_seconds,
              show_default=True, help="How long a deleted queue's name cannot be reused.")
@click.option("--max-concurrent-dispatches", type=int, default=Settings.max_concurrent_dispatches,
              show_default=True, help="Concurrency of queues created without rate_limits.max_concurrent_dispatches.")
@click.option("--min-dispatch-deadline", type=float, default=Settings.min_dispatch_deadline, show_default=True,
              help="Shortest dispatch_deadline accepted, in seconds (production: 15).")
@click.option("--workers", type=int, default=Settings.workers, show_default=True,
              help="Threads sending HTTP requests, shared by all queues.")
@click.option("--issuer-secret-file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="A file holding the secret for which the local OIDC issuer mints ID tokens at POST /token "
                   "(the local stack's users log in this way); without it, the issuer only signs the timers'.")
def main(port: int, certs_port: int, bind: str, task_tombstone_seconds: float, queue_tombstone_seconds: float,
         max_concurrent_dispatches: int, min_dispatch_deadline: float, workers: int,
         issuer_secret_file: Path | None) -> None:
    """Serve a local emulator of the Google Cloud Tasks v2 API."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    stopping = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stopping.set())
    settings = Settings(task_tombstone_seconds, queue_tombstone_seconds, max_concurrent_dispatches,
                        min_dispatch_deadline, workers)
    secret = issuer_secret_file.read_text(encoding="utf-8").strip() if issuer_secret_file else None
    emulator = serve(port, certs_port, bind=bind, settings=settings, issuer_secret=secret)
    logger.info("serving Cloud Tasks on %s, OIDC certificates at %s", emulator.host, emulator.certs_url)
    stopping.wait()
    emulator.stop()
    logger.info("stopped")


if __name__ == "__main__":
    main()
