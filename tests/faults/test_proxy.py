"""The fault proxy does what each fault says, so that the cases built on it can fail."""

import pytest
import requests

from tests.faults.proxy import RETRY_AFTER_SECS, Fault, FaultProxy


def _get(proxy: FaultProxy, tokens, timeout: float = 30) -> requests.Response:
    return requests.get(f"{proxy.url}/server_details", headers={"Authorization": f"Bearer {tokens['user']}"},
                        timeout=timeout)


@pytest.mark.parametrize("fault, reached", [(Fault.RESET, False), (Fault.LOST_ANSWER, True)])
def test_a_reset_loses_the_connection_before_or_after_the_server(svc, base_url, proxy, tokens, fault, reached):
    proxy.decide = lambda _: fault
    with pytest.raises(requests.ConnectionError):
        _get(proxy, tokens)
    [seen] = proxy.seen
    assert seen.status == (200 if reached else None)


def test_a_503_says_when_to_come_back(svc, base_url, proxy, tokens):
    proxy.decide = lambda _: Fault.UNAVAILABLE
    answer = _get(proxy, tokens)
    assert answer.status_code == 503 and answer.headers["Retry-After"] == str(RETRY_AFTER_SECS)
    assert answer.json()["error"]["code"] == "unavailable" and proxy.seen[0].status is None


def test_a_held_request_times_out_and_a_delayed_one_is_answered(svc, base_url, proxy, tokens):
    proxy.hold_secs = 5
    proxy.decide = lambda _: Fault.HOLD
    with pytest.raises(requests.Timeout):
        _get(proxy, tokens, timeout=0.5)
    proxy.decide = lambda _: Fault.DELAY
    assert _get(proxy, tokens).status_code == 200
    assert [(s.fault, s.status) for s in proxy.seen] == [(Fault.DELAY, 200)]  # The held one still held.
