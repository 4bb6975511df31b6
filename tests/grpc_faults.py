"""Faults injected at a Google client's gRPC transport, for what the emulators
never do (an answer lost after the call took effect), and a gRPC server that
stands in for Firestore for what the emulator never does (a query that
never answers, a stream broken midway)."""

import concurrent.futures
import time
from typing import Any, Callable, Iterator

import grpc
from google.cloud.firestore_v1 import types as firestore_types


class InjectedStatus(grpc.RpcError):
    """A failed call as an interceptor hands it on in place of the answer: an
    error with its status code and details, whose result raises it."""

    def __init__(self, code: grpc.StatusCode):
        super().__init__(code.name)
        self._code = code

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return f"{self._code.name} (injected)"

    def trailing_metadata(self) -> tuple:
        return ()

    def result(self, timeout: float | None = None) -> Any:
        raise self


#: A method's answer: its request and the call's context → its responses.
Answer = Callable[[Any, grpc.ServicerContext], Iterator[Any]]


class FirestoreServer:
    """A gRPC server in Firestore's place that answers the server-streaming
    methods it is given (`RunQuery`, `RunAggregationQuery`) with their
    answer functions, and any other with UNIMPLEMENTED: a Firestore whose
    connections are up but whose answers fail as the test says."""

    def __init__(self, answers: dict[str, Answer]):
        self._server = grpc.server(concurrent.futures.ThreadPoolExecutor(4))
        self._server.add_generic_rpc_handlers([_Methods(answers)])
        self.host = f"127.0.0.1:{self._server.add_insecure_port('127.0.0.1:0')}"

    def __enter__(self) -> "FirestoreServer":
        self._server.start()
        return self

    def __exit__(self, *_: Any) -> None:
        self._server.stop(grace=None)


class _Methods(grpc.GenericRpcHandler):
    def __init__(self, answers: dict[str, Answer]):
        self._answers = answers

    def service(self, details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
        name = details.method.rsplit("/", 1)[1]
        if name not in self._answers:
            return None
        types = getattr(firestore_types, f"{name}Request"), getattr(firestore_types, f"{name}Response")
        return grpc.unary_stream_rpc_method_handler(self._answers[name], request_deserializer=types[0].deserialize,
                                                    response_serializer=types[1].serialize)


def hang(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
    """Answers nothing until the caller gives up."""
    while context.is_active():
        time.sleep(0.05)
    yield from ()
