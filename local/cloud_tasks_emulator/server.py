"""Starting and stopping the emulator, and the official client pointed at it."""

import concurrent.futures

import grpc
from google.cloud import tasks_v2
from google.cloud.tasks_v2.services.cloud_tasks.transports import CloudTasksGrpcTransport

from local.cloud_tasks_emulator.config import Settings
from local.cloud_tasks_emulator.delivery import Sender
from local.cloud_tasks_emulator.dispatcher import Dispatcher, WorkerPool
from local.cloud_tasks_emulator.service import CloudTasksService, generic_handler
from local.cloud_tasks_emulator.store import Store
from local.cloud_tasks_emulator.timers import Timers
from local.oidc_issuer import IssuerServer, Signer

#: Threads answering RPCs; they only touch memory, so a few suffice.
RPC_THREADS = 8


class Emulator:
    """A running emulator: the Cloud Tasks API at `host` (host:port, for
    client_for), and the local OIDC issuer that signs its tokens, its
    certificates at `certs_url`."""

    def __init__(self, rpc: grpc.Server, port: int, issuer: IssuerServer, signer: Signer, timers: Timers,
                 pool: WorkerPool, bind: str) -> None:
        self._rpc = rpc
        self._issuer = issuer
        self._timers = timers
        self._pool = pool
        self.port = port
        self.host = f"{bind}:{port}"
        #: Signs the timers' tokens; tests in the same process mint theirs with it.
        self.signer = signer
        self.certs_port = issuer.port
        self.certs_url = issuer.certs_url
        self.issuer_url = issuer.url

    def stop(self, grace: float = 1.0) -> None:
        """Stops answering and dispatching. Requests in flight are abandoned."""
        self._rpc.stop(grace).wait()
        self._issuer.stop()
        self._timers.stop()
        self._pool.stop()


def serve(port: int = 0, certs_port: int = 0, *, bind: str = "127.0.0.1",
          settings: Settings = Settings(), issuer_secret: str | None = None) -> Emulator:
    """Starts the emulator in background threads and returns once it answers.
    Port 0 picks a free port (see Emulator.port and Emulator.certs_port).
    With `issuer_secret`, the issuer also mints tokens for who presents it."""
    signer = Signer()
    timers = Timers()
    store = Store(settings, timers.schedule)
    pool = WorkerPool(settings.workers)
    dispatcher = Dispatcher(store, Sender(signer, settings.workers), pool)
    certs = IssuerServer(bind, certs_port, signer, issuer_secret)
    # Without SO_REUSEPORT, a port another emulator holds fails here instead of sharing its traffic.
    rpc = grpc.server(concurrent.futures.ThreadPoolExecutor(max_workers=RPC_THREADS, thread_name_prefix="rpc"),
                      options=[("grpc.so_reuseport", 0)])
    rpc.add_generic_rpc_handlers((generic_handler(CloudTasksService(store)),))
    try:
        bound = rpc.add_insecure_port(f"{bind}:{port}")
    except RuntimeError:
        certs.stop()
        raise
    timers.start(dispatcher.on_due)
    rpc.start()
    certs.start()  # last: once the certificates answer, everything does (the local stack's readiness check)
    return Emulator(rpc, bound, certs, signer, timers, pool, bind)


def client_for(host: str) -> tasks_v2.CloudTasksClient:
    """The official client on an insecure channel to `host` (host:port): the
    only way it reaches an emulator, as client options still try TLS."""
    channel = grpc.insecure_channel(host)
    return tasks_v2.CloudTasksClient(transport=CloudTasksGrpcTransport(channel=channel))
