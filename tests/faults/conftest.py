"""The fault suite's fixtures: tests/conftest.py's, with everything the
service is told its URL is (the bots, the CLI, `api`, the timers' calls)
going through a FaultProxy in front of the gateway; `direct` calls the
gateway itself, for the checks."""

from collections.abc import Iterator

import pytest

from tests.conftest import Api, Tokens
from tests.faults.proxy import FaultProxy, serving


@pytest.fixture
def proxy() -> Iterator[FaultProxy]:
    """Passes everything on until a test says otherwise (`proxy.decide`)."""
    yield from serving()


@pytest.fixture
def base_url(base_url: str, proxy: FaultProxy) -> str:
    """Overrides the gateway's URL with the proxy's in front of it."""
    proxy.upstream = base_url
    return proxy.url


@pytest.fixture
def direct(svc, proxy: FaultProxy, tokens: Tokens) -> Api:
    """`api`, but straight to the gateway."""
    return Api(proxy.upstream, tokens)
