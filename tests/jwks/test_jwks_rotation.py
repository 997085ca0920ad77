"""Key rotation end to end: Verifier + JWKSCache + a loopback JWKS server + signed webhooks."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import pytest

from upvest_verify import KeyNotFound, KeySetUnavailable, Reason, VerifiedWebhook, Verifier
from upvest_verify.jwks import JWKSCache, URLKeySource
from upvest_verify.testing import (
    SignedWebhook,
    SigningKey,
    generate_key,
    make_jwks,
    sample_events,
    sign_webhook,
)

from ._jwks_helpers import FakeClock, JWKSServer, wait_until


@pytest.fixture
def old_key() -> SigningKey:
    """The key Upvest signs with before the rotation."""
    return generate_key(kid="old-key")


@pytest.fixture
def new_key() -> SigningKey:
    """The key Upvest rotates to."""
    return generate_key(kid="new-key")


def publish(server: JWKSServer, *keys: SigningKey) -> None:
    """Serve exactly these keys at /auth/verify_keys."""
    server.document = make_jwks(*keys)


def make_cache(
    server: JWKSServer, clock: FakeClock, caches: list[JWKSCache], **kw: Any
) -> JWKSCache:
    """A cache in front of the test server, on the fake monotonic clock."""
    source = URLKeySource(server.url, allow_insecure_loopback=True, timeout=5.0)
    cache = JWKSCache(source, monotonic=clock, **kw)
    caches.append(cache)
    return cache


def signed(key: SigningKey) -> SignedWebhook:
    """A webhook signed now with ``key``."""
    return sign_webhook(sample_events(1), key=key)


def check(verifier: Verifier, webhook: SignedWebhook) -> VerifiedWebhook:
    """Verify a signed webhook synchronously."""
    return verifier.verify(webhook.method, webhook.url, webhook.headers, webhook.body)


def rejected(verifier: Verifier, webhook: SignedWebhook) -> Reason:
    """The reason a webhook is rejected with."""
    with pytest.raises((KeyNotFound, KeySetUnavailable)) as info:
        check(verifier, webhook)
    return info.value.reason


def settle(cache: JWKSCache) -> None:
    """Wait (bounded) until no fetch is in flight."""
    assert wait_until(lambda: cache._flight is None)


def test_rotation_end_to_end(
    server: JWKSServer,
    clock: FakeClock,
    caches: list[JWKSCache],
    old_key: SigningKey,
    new_key: SigningKey,
) -> None:
    """A new key is picked up on first use, and the old key is rejected once Upvest removes it."""
    publish(server, old_key)
    cache = make_cache(server, clock, caches)
    verifier = Verifier(cache)
    assert check(verifier, signed(old_key)).key_id == "old-key"

    # Upvest publishes the new key and signs with it: one refresh-on-miss, accepted.
    publish(server, old_key, new_key)
    clock.advance(31)
    assert check(verifier, signed(new_key)).key_id == "new-key"
    assert check(verifier, signed(old_key)).key_id == "old-key"
    assert server.requests == 2

    # Upvest removes the old key; after the TTL the automatic refresh drops it.
    publish(server, new_key)
    clock.advance(301)
    assert check(verifier, signed(new_key)).key_id == "new-key"  # stale set, refresh detached
    settle(cache)
    assert server.requests == 3
    assert rejected(verifier, signed(old_key)) is Reason.UNKNOWN_KEY
    assert check(verifier, signed(new_key)).key_id == "new-key"


def test_key_published_before_use_is_found_by_the_ttl_refresh(
    server: JWKSServer,
    clock: FakeClock,
    caches: list[JWKSCache],
    old_key: SigningKey,
    new_key: SigningKey,
) -> None:
    """A key published ahead of use arrives with the automatic TTL refresh; no refresh-on-miss needed."""
    publish(server, old_key)
    cache = make_cache(server, clock, caches)
    verifier = Verifier(cache)
    check(verifier, signed(old_key))
    publish(server, old_key, new_key)
    clock.advance(301)
    check(verifier, signed(old_key))  # served stale, triggers the refresh
    settle(cache)
    assert check(verifier, signed(new_key)).key_id == "new-key"
    assert server.requests == 2
    assert cache.stats.unknown_kid_refusals == 0


def test_async_rotation_end_to_end(
    server: JWKSServer,
    clock: FakeClock,
    caches: list[JWKSCache],
    old_key: SigningKey,
    new_key: SigningKey,
) -> None:
    """averify() picks up a rotated key through the async cache and rejects a removed one."""
    publish(server, old_key)
    cache = make_cache(server, clock, caches)
    verifier = Verifier(cache)

    async def averify(webhook: SignedWebhook) -> VerifiedWebhook:
        return await verifier.averify(
            webhook.method, webhook.url, webhook.headers, webhook.body, run_sync=asyncio.to_thread
        )

    async def main() -> None:
        assert (await averify(signed(old_key))).key_id == "old-key"
        publish(server, old_key, new_key)
        clock.advance(31)
        results = await asyncio.gather(*(averify(signed(new_key)) for _ in range(50)))
        assert {r.key_id for r in results} == {"new-key"}
        publish(server, new_key)
        clock.advance(301)
        await averify(signed(new_key))
        await asyncio.to_thread(settle, cache)
        with pytest.raises(KeyNotFound) as info:
            await averify(signed(old_key))
        assert info.value.reason is Reason.UNKNOWN_KEY

    asyncio.run(main())
    assert server.requests == 3


def test_forged_kids_through_the_verifier_are_rate_limited(
    server: JWKSServer, clock: FakeClock, caches: list[JWKSCache], old_key: SigningKey
) -> None:
    """1,000 webhooks signed under random unknown kids are all unknown_key, with at most one fetch per cooldown."""
    publish(server, old_key)
    cache = make_cache(server, clock, caches)
    verifier = Verifier(cache)
    check(verifier, signed(old_key))
    rng = random.Random(7)
    attacker = generate_key()
    template = signed(attacker)
    for _ in range(1000):
        clock.advance(0.1)  # 100 s of attack
        kid = f"forged-{rng.getrandbits(64):016x}"
        headers = [
            (name, value.replace(attacker.kid, kid) if name.lower() == "signature-input" else value)
            for name, value in template.headers
        ]
        forged = SignedWebhook(template.method, template.url, headers, template.body, template.base)
        assert rejected(verifier, forged) is Reason.UNKNOWN_KEY
    assert 2 <= server.requests <= 1 + 4  # initial fetch + one per 30 s cooldown over 100 s
    assert cache.stats.unknown_kid_refusals >= 1000 - 4
    assert check(verifier, signed(old_key)).key_id == "old-key"


def test_outage_longer_than_ttl_keeps_verifying_until_max_stale(
    server: JWKSServer, clock: FakeClock, caches: list[JWKSCache], old_key: SigningKey
) -> None:
    """With the key endpoint down past the TTL, valid webhooks still verify; past max_stale they get 503."""
    publish(server, old_key)
    cache = make_cache(server, clock, caches, max_stale=1800)
    verifier = Verifier(cache)
    check(verifier, signed(old_key))
    server.mode = "error"
    for _ in range(10):
        clock.advance(120)
        assert check(verifier, signed(old_key)).key_id == "old-key"
        settle(cache)
    assert cache.stats.failures >= 1
    assert cache.stats.stale_serves >= 1
    clock.advance(300 + 1800 - 1200)
    with pytest.raises(KeySetUnavailable) as info:
        check(verifier, signed(old_key))
    assert info.value.reason is Reason.KEYS_UNAVAILABLE
    assert info.value.status_code == 503
    # The endpoint recovers: after the failure cooldown the next request fetches again.
    server.mode = "ok"
    clock.advance(10)
    assert check(verifier, signed(old_key)).key_id == "old-key"
