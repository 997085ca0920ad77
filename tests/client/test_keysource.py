"""``client.key_source()`` behind a JWKSCache: rotation, Cache-Control, outages, sync and async."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

httpx = pytest.importorskip("httpx", reason="the management client needs the [client] extra")
pytest.importorskip("starlette", reason="the emulator needs the [sandbox] extra")
pytest.importorskip("uvicorn", reason="the emulator needs the [sandbox] extra")

from upvest_verify import KeySet, KeySetUnavailable, Verifier  # noqa: E402
from upvest_verify.errors import ConfigurationError, JWKSError  # noqa: E402
from upvest_verify.jwks import FetchResult, JWKSCache  # noqa: E402
from upvest_verify.testing import sign_webhook  # noqa: E402
from upvest_verify.types import AsyncKeySource, KeySource  # noqa: E402

from .client_support import (  # noqa: E402
    Driver,
    FakeClock,
    Recorder,
    ScriptedUpvest,
    async_client,
    json_response,
    problem,
    scripted_client,
    sync_client,
)

# The example of GET /auth/verify_keys in Upvest's OpenAPI 1.9.0 (upvest-protocol.md §2.1).
OPENAPI_JWKS = {
    "keys": [
        {
            "kid": "9ed77463-c18e-4794-ab5c-17423f9b801a",
            "kty": "EC",
            "crv": "P-521",
            "x": "AcYAf5Ou0UvtehpeRvyhnvvrUQvjI4B3VCxfSmxK4gqKJGxO_jTB-nTdrHbBfmZpwmwYR86DppMg43E579K5MQ54",
            "y": "ALkrId77iD0Ye2vBS5bTkLqPH-bo8urTpTXiNc6Ub-VOFbXfJrR0tQ8COvVXXu58BTu8jWV-1mtbjfJpDl3ISbcK",
        }
    ]
}


def _webhook(sandbox: Any) -> Any:
    """A webhook signed with the emulator's current key, as it would deliver one."""
    return sign_webhook({"payload": []}, key=sandbox.signing_key)


def test_verify_keys_returns_the_key_set(driver: Driver, sandbox: Any, tenant: Any) -> None:
    """verify_keys() is the emulator's published JWKS, fetched with a read token."""
    recorder = Recorder()
    with driver.client(sandbox.base_url, tenant, recorder) as client:
        keys = driver.run(client.verify_keys())
    assert isinstance(keys, KeySet)
    assert set(keys) == {k["kid"] for k in sandbox.jwks()["keys"]}
    assert recorder.token_requests()[0].form["scope"] == ["webhooks:read"]
    assert recorder.api_requests()[0].path == "/auth/verify_keys"


def test_rotation_seen_by_a_sync_cache(sandbox: Any, tenant: Any) -> None:
    """A webhook signed with a freshly rotated key verifies: the cache refetches through the client."""
    clock = FakeClock()
    recorder = Recorder()
    with sync_client(sandbox.base_url, tenant, recorder) as client:
        source = client.key_source()
        assert isinstance(source, KeySource)
        assert isinstance(source, AsyncKeySource)
        cache = JWKSCache(source, monotonic=clock)
        verifier = Verifier(cache)
        before = _webhook(sandbox)
        verifier.verify(before.method, before.url, before.headers, before.body)
        old = set(cache.current())
        new_key = sandbox.rotate_keys()
        clock.advance(2)  # past the cache's 1 s coalescing gap after a fetch
        after = _webhook(sandbox)
        verified = verifier.verify(after.method, after.url, after.headers, after.body)
    assert verified.key_id == new_key.key_id
    assert new_key.key_id not in old
    assert set(cache.current()) == old | {new_key.key_id}
    assert [s.path for s in recorder.api_requests()] == ["/auth/verify_keys"] * 2


def test_rotation_seen_by_an_async_cache(sandbox: Any, tenant: Any) -> None:
    """The same with AsyncUpvestClient's source and the cache's async methods."""
    clock = FakeClock()
    recorder = Recorder()

    async def main() -> tuple[str, str]:
        async with async_client(sandbox.base_url, tenant, recorder) as client:
            cache = JWKSCache(client.key_source(), monotonic=clock)
            verifier = Verifier(cache)
            before = _webhook(sandbox)
            await verifier.averify(before.method, before.url, before.headers, before.body)
            new_key = sandbox.rotate_keys()
            clock.advance(2)
            after = _webhook(sandbox)
            verified = await verifier.averify(after.method, after.url, after.headers, after.body)
            return verified.key_id, new_key.key_id

    got, expected = asyncio.run(main())
    assert got == expected
    assert len(recorder.api_requests()) == 2


def test_sync_clients_source_serves_async_callers(sandbox: Any, tenant: Any) -> None:
    """UpvestClient's source fetches from a worker thread for asyncio code."""
    with sync_client(sandbox.base_url, tenant) as client:
        cache = JWKSCache(client.key_source())
        keys = asyncio.run(cache.acurrent())
    assert set(keys) == {k["kid"] for k in sandbox.jwks()["keys"]}


def test_async_clients_source_refuses_blocking_fetch(sandbox: Any, tenant: Any) -> None:
    """An AsyncUpvestClient's source cannot serve synchronous verification, and says so."""

    async def main() -> None:
        async with async_client(sandbox.base_url, tenant) as client:
            with pytest.raises(ConfigurationError, match="UpvestClient"):
                client.key_source().fetch()

    asyncio.run(main())


def _jwks_reply(**headers: str) -> Any:
    return lambda request: json_response(200, OPENAPI_JWKS, headers)


def test_upvest_endpoint_shape_and_cache_control(driver: Driver) -> None:
    """Upvest's documented JWKS parses; Cache-Control max-age (minus Age) sets the lifetime."""
    server = ScriptedUpvest(default=_jwks_reply(**{"cache-control": "max-age=600", "age": "100"}))
    with driver.scripted(server) as client:
        result = driver.run(client.fetch_jwks())
        keys = driver.run(client.verify_keys())
    assert isinstance(result, FetchResult)
    assert result.max_age == 500
    assert json.loads(result.body) == OPENAPI_JWKS
    assert list(keys) == ["9ed77463-c18e-4794-ab5c-17423f9b801a"]


def test_cache_honours_cache_control() -> None:
    """max-age=120 (the emulator sends none): fresh at 100 s, expired at 130 s."""
    server = ScriptedUpvest(default=_jwks_reply(**{"cache-control": "public, max-age=120"}))
    clock = FakeClock()
    with scripted_client(server) as client:
        cache = JWKSCache(client.key_source(), monotonic=clock)  # ttl 300 without max-age
        cache.current()
        clock.advance(100)
        cache.current()
        assert (cache.stats.fetches, cache.stats.stale_serves) == (1, 0)
        clock.advance(30)
        cache.current()  # expired: served at once, refreshed in the background
        assert (cache.stats.fetches, cache.stats.stale_serves) == (2, 1)
        cache.refresh()  # joins that refresh, so it ends before the client closes
    assert len(server.api_requests()) >= 2


@pytest.mark.parametrize(
    ("reply", "error", "fragment"),
    [
        (lambda: problem(503, "Service Unavailable"), OSError, "HTTP 503"),
        (lambda: problem(403, "lacks the scope"), OSError, "HTTP 403"),
        (lambda: httpx.ConnectError("refused"), OSError, "ConnectError"),
        (lambda: httpx.Response(200, content=b"<html>"), JWKSError, "not JSON"),
        (lambda: json_response(200, ["keys"]), JWKSError, "not a JSON object"),
    ],
)
def test_failures_map_to_the_cache_error_types(
    driver: Driver, reply: Any, error: type[Exception], fragment: str
) -> None:
    """Upvest or network failures are OSError, unusable documents JWKSError."""
    server = ScriptedUpvest(default=lambda request: _raise_or_return(reply()))
    with driver.scripted(server, retry=None) as client:
        source = client.key_source()
        run = driver.run if driver.is_async else asyncio.run
        with pytest.raises(error, match=fragment):
            run(source.afetch())
        if not driver.is_async:
            with pytest.raises(error, match=fragment):
                source.fetch()


def _raise_or_return(reply: Any) -> Any:
    if isinstance(reply, Exception):
        raise reply
    return reply


def test_stale_keys_are_served_during_an_outage(driver: Driver) -> None:
    """The first fetch works, then Upvest is down: the cache keeps serving its keys."""
    replies = [json_response(200, OPENAPI_JWKS)]
    server = ScriptedUpvest(
        default=lambda request: replies.pop(0) if replies else problem(503, "down")
    )
    clock = FakeClock()
    with driver.scripted(server, retry=None) as client:
        cache = JWKSCache(client.key_source(), monotonic=clock, ttl=60)
        first = driver.run(cache.acurrent()) if driver.is_async else cache.current()
        clock.advance(3600)  # expired an hour ago; max_stale is a day
        with pytest.raises(KeySetUnavailable):
            driver.run(cache.arefresh()) if driver.is_async else cache.refresh()
        later = driver.run(cache.acurrent()) if driver.is_async else cache.current()
    assert list(later) == list(first) == ["9ed77463-c18e-4794-ab5c-17423f9b801a"]
    assert cache.stats.failures == 1
    assert cache.stats.stale_serves >= 1
    assert len(server.api_requests()) == 2
