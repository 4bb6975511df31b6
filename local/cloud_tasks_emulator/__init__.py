"""A local emulator of the Google Cloud Tasks v2 API, served over gRPC to the
official client (`google.cloud.tasks_v2.CloudTasksClient`) unchanged.

What it reproduces of production: queue and task names, validated, and not
reusable for a while once deleted (tombstones); HTTP tasks delivered at their
schedule_time, in parallel up to each queue's max_concurrent_dispatches, cut at
their dispatch_deadline, retried with the queue's backoff up to its limits;
the X-CloudTasks-* request headers; OIDC tokens signed with a local key whose
certificate is served like Google's certs endpoint.

    emulator = serve(port, certs_port)      # or: python -m local.cloud_tasks_emulator --port N --certs-port M
    client = client_for(emulator.host)
    ...
    emulator.stop()

The process is ready once its certificates URL (emulator.certs_url,
http://HOST:CERTS_PORT/oauth2/v1/certs) answers; it exits with 0 on SIGTERM.
"""

from local.cloud_tasks_emulator.config import Settings
from local.cloud_tasks_emulator.server import Emulator, client_for, serve

__all__ = ["Emulator", "Settings", "client_for", "serve"]
