"""Faults injected at a Google client's gRPC transport, for what the emulators
never do (an answer lost after the call took effect)."""

from typing import Any

import grpc


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
