"""Client construction: base URLs, shortcuts, httpx clients, timeouts, context managers."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

httpx = pytest.importorskip("httpx", reason="the management client needs the [client] extra")

from upvest_verify.client import (  # noqa: E402
    AsyncUpvestClient,
    UpvestAuth,
    UpvestClient,
)
from upvest_verify.client._auth import sign_api_request  # noqa: E402
from upvest_verify.errors import ConfigurationError  # noqa: E402
from upvest_verify.signing import SigningKey, sign_upvest_request  # noqa: E402

from .client_support import FakeTenant, ScriptedUpvest, json_response, tenant_kwargs  # noqa: E402

TENANT = FakeTenant()


def _client(**kwargs: Any) -> UpvestClient:
    kwargs.setdefault("base_url", "sandbox")
    return UpvestClient(**{**tenant_kwargs(TENANT), **kwargs})


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("sandbox", "https://sandbox.upvest.co"),
        ("live", "https://api.upvest.co"),
        ("https://sandbox.upvest.co/", "https://sandbox.upvest.co"),
        ("https://proxy.tenant.example/upvest", "https://proxy.tenant.example/upvest"),
        ("http://127.0.0.1:8080", "http://127.0.0.1:8080"),
        ("http://localhost:9000", "http://localhost:9000"),
        ("http://[::1]:9000", "http://[::1]:9000"),
        ("http://127.0.0.9", "http://127.0.0.9"),
    ],
)
def test_base_urls(given: str, expected: str) -> None:
    """Shortcuts, https URLs, and plain http to a loopback host with no extra argument."""
    with _client(base_url=given) as client:
        assert client.base_url == expected


@pytest.mark.parametrize(
    "given",
    [
        "http://sandbox.upvest.co",
        "http://10.0.0.1:8080",
        "http://localhost.tenant.example",
        "ftp://sandbox.upvest.co",
        "sandbox.upvest.co",
        "https://user:pw@sandbox.upvest.co",
        "https://sandbox.upvest.co/?x=1",
        "https://sandbox.upvest.co:99999",
        "staging",
        "",
    ],
)
def test_bad_base_urls(given: str) -> None:
    """Anything but https (or http to loopback) is refused at construction."""
    with pytest.raises(ConfigurationError, match="base_url"):
        _client(base_url=given)


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"client_id": ""}, "client_id"),
        ({"client_secret": ""}, "client_secret"),
        ({"signing_key": "pem"}, "signing_key"),
        ({"signature_ttl": 0}, "signature_ttl"),
        ({"signature_ttl": 301}, "signature_ttl"),
        ({"scopes": []}, "scopes"),
        ({"scopes": "a b", "signature_ttl": True}, "signature_ttl"),
        ({"token_refresh_margin": -1}, "refresh_margin"),
    ],
)
def test_bad_settings(kwargs: dict[str, Any], fragment: str) -> None:
    """Empty credentials, a non-key, windows out of range, no scopes."""
    with pytest.raises(ConfigurationError, match=fragment):
        _client(**kwargs)


def test_repr_shows_no_secret() -> None:
    """repr names the base URL, client id and key id only."""
    with _client() as client:
        text = repr(client)
    assert TENANT.client_id in text
    assert TENANT.signing_key.key_id in text
    assert TENANT.client_secret not in text


def test_own_http_client_is_closed_a_given_one_is_not() -> None:
    """close() closes the pool the client made, never the caller's."""
    with _client() as client:
        own = client._http
    assert own.is_closed
    given = httpx.Client()
    with _client(http_client=given):
        pass
    assert not given.is_closed
    given.close()


def test_async_context_manager_closes_its_own_client() -> None:
    """async with closes the AsyncClient it made, never the caller's."""

    async def main() -> tuple[bool, bool]:
        given = httpx.AsyncClient()
        async with AsyncUpvestClient(base_url="live", **tenant_kwargs(TENANT)) as client:
            own = client._http
        async with AsyncUpvestClient(base_url="live", http_client=given, **tenant_kwargs(TENANT)):
            pass
        given_open = not given.is_closed
        await given.aclose()
        return own.is_closed, given_open

    assert asyncio.run(main()) == (True, True)


def test_timeouts_reach_every_request() -> None:
    """The timeout argument is set on the API request and on the token request."""
    seen: list[dict[str, Any]] = []

    def handler(request: Any) -> Any:
        seen.append(request.extensions["timeout"])
        return ScriptedUpvest(default=lambda r: json_response(200, {"keys": []}))(request)

    with httpx.Client(transport=httpx.MockTransport(handler)) as http:
        client = _client(http_client=http, timeout=httpx.Timeout(3.0, connect=1.0))
        client.fetch_jwks()
    assert len(seen) == 2
    for timeout in seen:
        assert (timeout["connect"], timeout["read"]) == (1.0, 3.0)


def test_default_timeouts_are_short() -> None:
    """Without a timeout: 5 s to connect, 10 s per read (threat-model K3)."""
    with _client() as client:
        timeout = client._http.timeout
    assert (timeout.connect, timeout.read) == (5.0, 10.0)


def test_auth_works_with_any_httpx_client() -> None:
    """UpvestAuth on its own: a plain httpx.Client gets tokens and signatures."""
    server = ScriptedUpvest(default=lambda r: json_response(200, {"ok": True}))
    auth = UpvestAuth(
        client_id=TENANT.client_id,
        client_secret=TENANT.client_secret,
        signing_key=TENANT.signing_key,
        token_url="https://sandbox.upvest.co/auth/token",
    )
    with httpx.Client(transport=httpx.MockTransport(server), auth=auth) as http:
        response = http.get("https://sandbox.upvest.co/users", params={"limit": 1})
    assert response.json() == {"ok": True}
    token, call = server.requests
    assert token.url.path == "/auth/token"
    assert call.headers["authorization"].startswith("Bearer tok-1-")
    assert call.headers["upvest-signature-version"] == "15"
    assert '"@query"' in call.headers["signature-input"]
    assert auth.scope_for("GET") == "webhooks:read"
    assert auth.scope_for("DELETE") == "webhooks:admin"


def test_signing_window_is_the_project_signers() -> None:
    """At 10 s the client signs with sign_upvest_request itself; another window changes expires only."""
    key = SigningKey.generate()
    args: dict[str, Any] = {
        "method": "POST",
        "url": "https://sandbox.upvest.co/webhooks",
        "headers": [("accept", "application/json"), ("content-type", "application/json")],
        "body": b'{"a":1}',
    }
    common: dict[str, Any] = {"key": key, "created": 1_700_000_000, "nonce": "n-1"}
    reference = sign_upvest_request(**args, **common, deterministic=True)
    same = sign_api_request(**args, **common, deterministic=True)
    assert same == reference
    other = sign_api_request(**args, **common, ttl=30, deterministic=True)
    assert other.base == reference.base.replace(b"expires=1700000010", b"expires=1700000030")
    assert other.base != reference.base
    assert [n for n, _ in other.headers] == [n for n, _ in reference.headers]
