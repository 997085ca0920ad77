"""The auth flow driven step by step: one token request in flight, shared, failed or abandoned.

``UpvestAuth._steps`` is the generator both httpx drivers run; driving it by hand
puts two requests at exactly the interleavings that threads and tasks only reach
by chance.
"""

from __future__ import annotations

from typing import Any

import pytest

httpx = pytest.importorskip("httpx", reason="the management client needs the [client] extra")

from upvest_verify.client import (  # noqa: E402
    Unauthorised,
    UnexpectedResponse,
    UpvestAuth,
    UpvestConnectionError,
)
from upvest_verify.client._auth import parse_token  # noqa: E402

from .client_support import FakeTenant, json_response, problem  # noqa: E402

TENANT = FakeTenant()
TOKEN_URL = "https://sandbox.upvest.co/auth/token"


def _auth(**kwargs: Any) -> UpvestAuth:
    return UpvestAuth(
        client_id=TENANT.client_id,
        client_secret=TENANT.client_secret,
        signing_key=TENANT.signing_key,
        token_url=TOKEN_URL,
        **kwargs,
    )


def _get() -> Any:
    return httpx.Request("GET", "https://sandbox.upvest.co/webhooks")


def _token(value: str = "tok-1", expires_in: int = 1799) -> Any:
    doc = {"access_token": value, "expires_in": expires_in, "token_type": "bearer", "scope": "s"}
    return json_response(200, doc)


def test_a_waiter_uses_the_leaders_token() -> None:
    """The second request waits for the first one's token request and sends no other."""
    auth = _auth()
    leader, waiter = auth._steps(_get()), auth._steps(_get())
    token_request = next(leader)
    assert token_request.url == TOKEN_URL
    wait = next(waiter)
    assert type(wait).__name__ == "_Wait"
    api_request = leader.send(_token("tok-1"))
    assert api_request.headers["authorization"] == "Bearer tok-1"
    resumed = waiter.send(None)
    assert resumed.headers["authorization"] == "Bearer tok-1"
    assert resumed.url.path == "/webhooks"


def test_a_waiter_gets_the_leaders_error() -> None:
    """Bad credentials answered to the leader are raised in every waiter (a copy each)."""
    auth = _auth()
    leader, waiter = auth._steps(_get()), auth._steps(_get())
    next(leader)
    next(waiter)
    with pytest.raises(Unauthorised) as first:
        leader.send(problem(401, "Invalid client credentials"))
    with pytest.raises(Unauthorised) as second:
        waiter.send(None)
    assert first.value is not second.value
    assert str(first.value) == str(second.value)
    assert second.value.detail == "Invalid client credentials"
    # nothing is cached and nothing stays in flight: the next request leads a new one
    assert next(auth._steps(_get())).url == TOKEN_URL


def test_an_abandoned_token_request_hands_over_to_a_waiter() -> None:
    """The leader goes away mid-request (connection lost, task cancelled): a waiter leads."""
    auth = _auth()
    leader, waiter = auth._steps(_get()), auth._steps(_get())
    next(leader)
    next(waiter)
    leader.close()
    again = waiter.send(None)
    assert again.url == TOKEN_URL
    assert waiter.send(_token("tok-2")).headers["authorization"] == "Bearer tok-2"


def test_a_waiter_gives_up_when_the_flight_does_not_end() -> None:
    """Resumed before the leader finished (the driver's wait timed out): a connection error."""
    auth = _auth(token_wait=0.01)
    leader, waiter = auth._steps(_get()), auth._steps(_get())
    next(leader)
    next(waiter)
    with pytest.raises(UpvestConnectionError, match="no access token"):
        waiter.send(None)
    leader.close()


def test_401_retries_once_with_a_new_token() -> None:
    """A 401 drops the token and yields the request once more, newly signed."""
    auth = _auth()
    flow = auth._steps(_get())
    next(flow)
    first = flow.send(_token("tok-1"))
    nonce = first.headers["signature-input"]
    token_request = flow.send(problem(401, "Access token is invalid or has expired"))
    assert token_request.url == TOKEN_URL
    second = flow.send(_token("tok-2"))
    assert second.headers["authorization"] == "Bearer tok-2"
    assert second.headers["signature-input"] != nonce
    with pytest.raises(StopIteration):
        flow.send(problem(401, "still"))


def test_an_unusable_token_answer() -> None:
    """A 200 without a token raises UnexpectedResponse and frees the flight."""
    auth = _auth()
    flow = auth._steps(_get())
    next(flow)
    with pytest.raises(UnexpectedResponse, match="expires_in"):
        flow.send(json_response(200, {"access_token": "t", "token_type": "bearer"}))
    assert next(auth._steps(_get())).url == TOKEN_URL


@pytest.mark.parametrize(
    ("expires_in", "margin", "refresh_after"),
    [(1799, 5, 1794), (60, 10, 50), (8, 5, 4), (2, 5, 1), (0, 5, 0)],
)
def test_refresh_margin(expires_in: int, margin: float, refresh_after: float) -> None:
    """Refresh margin seconds early, but never before half the lifetime."""
    body = _token(expires_in=expires_in).content
    token = parse_token(body, scope="s", obtained=100.0, margin=margin)
    assert token.refresh_at == 100.0 + refresh_after
    assert token.expires_at == 100.0 + expires_in
    assert "tok-1" not in repr(token)
