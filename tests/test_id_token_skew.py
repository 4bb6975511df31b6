"""ID tokens from a host whose clock is off: the verifier allows
`functions.id_tokens.CLOCK_SKEW_SECS` either side of a token's issue and
expiry times, and no more. The local OIDC issuer mints them at a skewed time."""

import time

import pytest
import requests

from local.oidc_issuer import TOKEN_LIFETIME
from tests.conftest import PEOPLE


@pytest.mark.parametrize("issued_in, refusal", [
    (5, None),  # A clock a little fast.
    (60, "Token used too early"),
    (-TOKEN_LIFETIME - 5, None),  # Expired a moment ago, by the verifier's clock.
    (-TOKEN_LIFETIME - 60, "Token expired"),
])
def test_a_token_is_accepted_within_the_clock_skew_and_refused_past_it(svc, base_url, cloud_tasks, issued_in,
                                                                         refusal):
    token = cloud_tasks.signer.token(PEOPLE["user"], base_url, time.time() + issued_in)
    answer = requests.post(f"{base_url}/cas_find_missing", json={"digests": []},
                           headers={"Authorization": f"Bearer {token}"}, timeout=30)
    if refusal is None:
        assert answer.status_code == 200, answer.text
    else:
        assert answer.status_code == 401 and refusal in answer.json()["error"]["message"], answer.text
