"""Writes per liveness document with many function instances (`make bench-instances`).

Deployed, every instance of the functions that see bots keeps its own
sightings and flushes them every 30 s (functions.bot_liveness), so what one
document takes grows with the instance count. Here, as deployed, each
function is its own process (local.function_processes, from a release built
for this run): `--instances` processes of `bot_poll` behind one proxy that
takes them in turn, and one of `bot_handshake`, with the flush interval cut
to `--flush-secs` to compress time. `--bots` bench bots are admitted with a
bootstrap token, then `--pollers` threads poll them through the proxy for
`--seconds`, each bot echoing its session and bot token as real bots do.

The functions reach Firestore through a pass-through of its gRPC API in this
process that notes the documents each commit writes, as the database sees
them. Over the polling window it prints, for the liveness documents: the
writes per document per second (mean and max over the documents written),
how often each instance flushed (from the writes of each connection), and the
same scaled to production, `--production-instances` instances flushing every
`--production-flush-secs` (default: the four functions that see bots at
infra/terraform's `function_max_instances`, and the default flush); the
busiest other document; the Firestore reads and writes per poll (the
X-Firestore-* headers). Then, through the stack's gateway, what the readers
of liveness read: a `bots_list` page, one `bot_get`, one `cron_sweep`.
Results to bench/results/instances.json. Usage: `python -m bench.instances
[--instances N] [--bots N] [--pollers N] [--seconds S] [--flush-secs S]`.
"""

import argparse
import collections
import concurrent.futures
import logging
import statistics
import tempfile
import threading
from pathlib import Path
from typing import Any, Callable, Iterator

import grpc
from google.cloud.firestore_v1.types import CommitRequest

from bench.results import report
from bench.scheduler import Bot, Tally, call, firestore_client, idle_polls, in_parallel
from bench.task_life import CONFIG_DIR, USER, Api
from local import processes, release
from local import stack as local_stack
from local.function_processes import FunctionProcesses, isolated_python
from shared import local_state

LIVENESS = "bot_liveness/"
#: Firestore's methods that answer a stream; the functions call no other
#: streaming method, and the rest are unary.
STREAMING = {"BatchGetDocuments", "RunQuery", "RunAggregationQuery"}
#: Metadata the pass-through's own channel sets.
OWN_METADATA = {"user-agent", "grpc-accept-encoding", "grpc-timeout"}
#: (connection, document path) → writes.
Writes = collections.Counter[tuple[str, str]]


class WriteCounter:
    """A pass-through to the Firestore emulator at `upstream` (host:port)
    that counts, by connection, the writes each successful commit made to
    each document."""

    def __init__(self, upstream: str):
        self._channel = grpc.insecure_channel(upstream)
        self._lock = threading.Lock()
        self._writes: Writes = collections.Counter()
        self._server = grpc.server(concurrent.futures.ThreadPoolExecutor(max_workers=32))
        self._server.add_generic_rpc_handlers([_Handler(self)])
        self.host = f"127.0.0.1:{self._server.add_insecure_port('127.0.0.1:0')}"

    def start(self) -> None:
        self._server.start()

    def stop(self) -> None:
        self._server.stop(grace=1).wait()
        self._channel.close()

    def take(self) -> Writes:
        """The writes since the last take."""
        with self._lock:
            taken, self._writes = self._writes, collections.Counter()
        return taken

    def unary(self, method: str, request: bytes, context: grpc.ServicerContext) -> bytes:
        answer = self._forward(context, lambda metadata, timeout: self._channel.unary_unary(method)(
            request, metadata=metadata, timeout=timeout))
        if method.endswith("/Commit"):
            self._count(context.peer(), CommitRequest.deserialize(request))
        return answer

    def streaming(self, method: str, request: bytes, context: grpc.ServicerContext) -> Iterator[bytes]:
        yield from self._forward(context, lambda metadata, timeout: self._channel.unary_stream(method)(
            request, metadata=metadata, timeout=timeout))

    @staticmethod
    def _forward(context: grpc.ServicerContext, send: Callable[[list, float | None], Any]) -> Any:
        """The upstream's answer to the same call, or its error passed back."""
        metadata = [(k, v) for k, v in context.invocation_metadata() if k not in OWN_METADATA]
        try:
            return send(metadata, context.time_remaining())
        except grpc.RpcError as error:
            context.abort(error.code(), error.details())

    def _count(self, peer: str, request: CommitRequest) -> None:
        names = [write.update.name or write.delete or write.transform.document for write in request.writes]
        with self._lock:
            for name in names:
                self._writes[peer, name.split("/documents/", 1)[1]] += 1


class _Handler(grpc.GenericRpcHandler):
    def __init__(self, counter: WriteCounter):
        self._counter = counter

    def service(self, details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler:
        method = details.method
        if method.rsplit("/", 1)[1] in STREAMING:
            return grpc.unary_stream_rpc_method_handler(
                lambda request, context: self._counter.streaming(method, request, context))
        return grpc.unary_unary_rpc_method_handler(
            lambda request, context: self._counter.unary(method, request, context))


def start_functions(tmp: Path, stack_env: dict[str, str], firestore_host: str,
                    args: argparse.Namespace) -> tuple[FunctionProcesses, str]:
    """`bot_handshake` and `--instances` processes of `bot_poll`, from a
    release, as deployed; returns them and their proxy's base URL."""
    port = processes.free_port()
    base_url = f"http://127.0.0.1:{port}"
    release.build(tmp / "release", base_url, "bench")
    env = {**stack_env, "FIRESTORE_EMULATOR_HOST": firestore_host, "SWARMING_FUNCTIONS_URL": base_url,
           "SWARMING_BOT_ZIP": release.BOT_ZIP, "SWARMING_TRUSTED_PROXY_HOPS": "1",
           "SWARMING_SIGHTINGS_FLUSH_SECS": str(args.flush_secs)}
    functions = FunctionProcesses(tmp / "release", ["bot_handshake", "bot_poll"], env,
                                  isolated_python(tmp / "venv"), tmp / "logs", copies={"bot_poll": args.instances})
    try:
        functions.start()
        functions.serve_proxy(port)
    except BaseException:
        functions.stop()
        raise
    return functions, base_url


def polls(api: Api, args: argparse.Namespace, counter: WriteCounter) -> tuple[Tally, float, Writes]:
    """Admits the bots, then polls them for `--seconds`: the polls' costs,
    the elapsed time and the writes made meanwhile."""
    bots = [Bot({"id": [f"bench-bot-{n}"], "pool": ["bench"]}) for n in range(args.bots)]
    in_parallel(args.pollers, lambda bot: bot.call(api, "bot_handshake"), bots)
    tally = Tally()
    counter.take()
    secs = idle_polls(api, bots, args.pollers, args.seconds, tally)
    return tally, secs, counter.take()


def liveness_documents(stack: dict[str, Any]) -> int:
    """How many there are: some the polling window may not have written."""
    return sum(1 for _ in firestore_client(stack).collection(LIVENESS.rstrip("/")).stream())


def liveness_rows(writes: Writes, secs: float, documents: int, args: argparse.Namespace) -> list[tuple[str, Any]]:
    """Writes per liveness document per second (the mean over the
    `documents` there are), as measured and as production would have them.
    A connection is an instance; it flushed as often as it wrote to the shard
    it wrote most (a flush writes each shard once). Production makes as many
    flushes as here in a shorter window, over which its max holds."""
    per_doc: collections.Counter[str] = collections.Counter()
    per_shard: collections.Counter[tuple[str, str]] = collections.Counter()
    others: collections.Counter[str] = collections.Counter()
    for (peer, doc), n in writes.items():
        if doc.startswith(LIVENESS):
            per_doc[doc] += n
            per_shard[peer, doc.removeprefix(LIVENESS).split("-")[0]] += n
        else:
            others[doc] += n
    peers = {peer for peer, _ in per_shard}
    flushes = {peer: max(n for (p, _), n in per_shard.items() if p == peer) / secs for peer in peers}
    total, busiest = sum(per_doc.values()) / secs, max(per_doc.values()) / secs
    # Per-document rates grow with instances × flushes per instance.
    scale = (args.production_instances / args.production_flush_secs) / sum(flushes.values())
    return [
        ("liveness documents (written in the window)", f"{documents} ({len(per_doc)})"),
        ("instances writing (connections)", len(peers)),
        ("flushes per instance per s (mean)", statistics.mean(flushes.values())),
        ("writes per flush (documents)", total / sum(flushes.values())),
        ("writes per liveness document per s: mean", total / documents),
        ("writes per liveness document per s: max", busiest),
        ("production: instances, flush s", f"{args.production_instances}, {args.production_flush_secs:g}"),
        ("production: writes per liveness document per s: mean", total / documents * scale),
        ("production: writes per liveness document per s: max", busiest * scale),
        ("production: the window of as many flushes (s)", secs / scale),
        ("production: liveness writes per s in all", total * scale),
        ("busiest other document: writes per s", max(others.values(), default=0) / secs),
    ]


def poll_rows(tally: Tally, secs: float) -> list[tuple[str, Any]]:
    polled = tally.total(list(tally.costs))
    return [("polls", polled.calls), ("polls per s", polled.calls / secs),
            ("poll: Firestore reads", polled.reads / polled.calls),
            ("poll: Firestore writes", polled.writes / polled.calls),
            ("poll: p50 ms", statistics.median(polled.secs) * 1000)]


def reader_rows(api: Api, bot_id: str) -> list[tuple[str, Any]]:
    """The reads of each reader of liveness, through the stack's gateway."""
    listing = call(api, "bots_list", {"limit": 200}, USER)
    one = call(api, "bot_get", {"bot_id": bot_id}, USER)
    swept = call(api, "cron_sweep", {}, USER)
    return [(f"bots_list page of {len(listing.body['items'])}: reads", listing.reads),
            ("bot_get: reads", one.reads), ("cron_sweep (every lane): reads", swept.reads)]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instances", type=int, default=8, help="Processes of bot_poll.")
    parser.add_argument("--bots", type=int, default=200, help="Bots polling.")
    parser.add_argument("--pollers", type=int, default=8, help="Threads polling the bots in turn.")
    parser.add_argument("--seconds", type=float, default=120.0, help="How long the bots poll.")
    parser.add_argument("--flush-secs", type=float, default=1.0, help="The instances' flush interval here.")
    parser.add_argument("--production-instances", type=int, default=400,
                        help="Instances of the functions that see bots, deployed (4 × function_max_instances).")
    parser.add_argument("--production-flush-secs", type=float, default=30.0, help="The flush interval deployed.")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # The proxy's line per request.
    with tempfile.TemporaryDirectory() as tmp:
        state_dir = Path(tmp) / "stack"
        stack = local_stack.up(state_dir, bots=0, config_dir=CONFIG_DIR)
        counter = WriteCounter(f"127.0.0.1:{stack['ports']['firestore']}")
        counter.start()
        try:
            functions, base_url = start_functions(Path(tmp), local_stack.functions_env(state_dir), counter.host, args)
            try:
                gateway = Api.of_stack(state_dir, stack["base_url"])
                user = local_state.id_token(state_dir, local_state.local_user(), base_url)
                tally, secs, writes = polls(Api(base_url, user, gateway.bootstrap_token), args, counter)
            finally:
                functions.stop()
            readers = reader_rows(gateway, "bench-bot-0")
            documents = liveness_documents(stack)
        finally:
            counter.stop()
            local_stack.down(state_dir)
    rows: list[tuple[str, Any]] = [("bot_poll instances", args.instances), ("bots", args.bots),
                                   ("poller threads", args.pollers), ("flush interval (s)", args.flush_secs),
                                   ("polling window (s)", secs)]
    report("instances", rows + poll_rows(tally, secs) + liveness_rows(writes, secs, documents, args) + readers)


if __name__ == "__main__":
    main()
