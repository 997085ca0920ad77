"""Key rotation end to end: Verifier + JWKSCache + a loopback JWKS server + signed webhooks."""

from __future__ import annotations

import asyncio
import logging
import random
import threading
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

from .jwks_support import BOUND, FakeClock, JWKSServer, wait_until


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


def forge(template: SignedWebhook, kid: str) -> SignedWebhook:
    """``template`` with its keyid replaced by ``kid`` (a key nobody publishes)."""
    old = next(v for k, v in template.headers if k.lower() == "signature-input")
    start = old.index('keyid="') + len('keyid="')
    original = old[start : old.index('"', start)]
    headers = [
        (k, v.replace(original, kid) if k.lower() == "signature-input" else v)
        for k, v in template.headers
    ]
    return SignedWebhook(template.method, template.url, headers, template.body, template.base)


def refusals(caplog: pytest.LogCaptureFixture) -> list[str]:
    """The refused-refresh log lines (each must be a WARNING)."""
    lines = [r for r in caplog.records if "refresh for unknown kid" in r.getMessage()]
    assert all(r.levelno == logging.WARNING for r in lines)
    return [r.getMessage() for r in lines]


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


# ---- rotation right after a fetch (K4: ordinary fetches leave the budget alone) -------------


@pytest.mark.parametrize("fetch", ["cold start", "ttl refresh", "background", "explicit"])
def test_key_published_two_seconds_after_any_fetch_is_accepted_on_first_use(
    server: JWKSServer,
    clock: FakeClock,
    caches: list[JWKSCache],
    old_key: SigningKey,
    new_key: SigningKey,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    fetch: str,
) -> None:
    """A key Upvest publishes 2 s after the cache's last fetch verifies on the first webhook naming it."""
    monkeypatch.setattr(JWKSCache, "_BACKGROUND_TICK", 0.01)
    publish(server, old_key)
    cache = make_cache(server, clock, caches, background_refresh=fetch == "background")
    verifier = Verifier(cache)
    assert check(verifier, signed(old_key)).key_id == "old-key"  # the cold start
    if fetch == "ttl refresh":
        clock.advance(301)
        check(verifier, signed(old_key))  # served stale; the refresh runs detached
        settle(cache)
    elif fetch == "background":
        clock.advance(241)  # 80% of the TTL: the refresher thread fetches
        assert wait_until(lambda: server.requests == 2)
        settle(cache)
    elif fetch == "explicit":
        clock.advance(5)
        cache.refresh()
    fetches = server.requests
    publish(server, old_key, new_key)
    clock.advance(2)
    assert check(verifier, signed(new_key)).key_id == "new-key"
    assert server.requests == fetches + 1
    assert cache.stats.kid_refreshes == 1
    assert cache.stats.unknown_kid_refusals == 0
    assert refusals(caplog) == []


@pytest.mark.parametrize("fetch", ["cold start", "ttl refresh"])
def test_async_key_published_two_seconds_after_a_fetch_is_accepted_on_first_use(
    server: JWKSServer,
    clock: FakeClock,
    caches: list[JWKSCache],
    old_key: SigningKey,
    new_key: SigningKey,
    fetch: str,
) -> None:
    """averify() picks a key published 2 s after a fetch up on its first webhook, once for 50 tasks."""
    publish(server, old_key)
    cache = make_cache(server, clock, caches)
    verifier = Verifier(cache)

    async def averify(webhook: SignedWebhook) -> VerifiedWebhook:
        return await verifier.averify(webhook.method, webhook.url, webhook.headers, webhook.body)

    async def main() -> None:
        assert (await averify(signed(old_key))).key_id == "old-key"
        if fetch == "ttl refresh":
            clock.advance(301)
            await averify(signed(old_key))
            await asyncio.to_thread(settle, cache)
        publish(server, old_key, new_key)
        clock.advance(2)
        results = await asyncio.gather(*(averify(signed(new_key)) for _ in range(50)))
        assert {r.key_id for r in results} == {"new-key"}

    asyncio.run(main())
    assert server.requests == (3 if fetch == "ttl refresh" else 2)
    assert cache.stats.kid_refreshes == 1
    assert cache.stats.unknown_kid_refusals == 0


def test_key_named_within_the_gap_is_refused_with_a_warning_then_accepted(
    server: JWKSServer,
    clock: FakeClock,
    caches: list[JWKSCache],
    old_key: SigningKey,
    new_key: SigningKey,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Within 1 s of a fetch's start a new kid is refused (logged with the time left); then fetched."""
    publish(server, old_key)
    cache = make_cache(server, clock, caches)
    verifier = Verifier(cache)
    check(verifier, signed(old_key))
    publish(server, old_key, new_key)
    clock.advance(0.5)
    assert rejected(verifier, signed(new_key)) is Reason.UNKNOWN_KEY
    assert rejected(verifier, signed(new_key)) is Reason.UNKNOWN_KEY  # negative cache
    assert refusals(caplog) == [  # logged once: the same kid again in the window is counted
        "JWKS refresh for unknown kid 'new-key' refused (a fetch has just started): "
        "0.5 s of cooldown left"
    ]
    assert server.requests == 1
    clock.advance(0.5)
    assert check(verifier, signed(new_key)).key_id == "new-key"
    assert server.requests == 2


def test_refreshes_for_unknown_kids_share_one_cooldown(
    server: JWKSServer,
    clock: FakeClock,
    caches: list[JWKSCache],
    old_key: SigningKey,
    new_key: SigningKey,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A forged kid's refresh uses the budget: a key published after it waits for the cooldown."""
    publish(server, old_key)
    cache = make_cache(server, clock, caches)
    verifier = Verifier(cache)
    check(verifier, signed(old_key))
    clock.advance(2)
    # keyid="forged\"xxx..." (an sf-string escape): the kid is 'forged"' and 100 x.
    attacker = forge(signed(generate_key()), 'forged\\"' + "x" * 100)
    assert rejected(verifier, attacker) is Reason.UNKNOWN_KEY  # one refresh, without it
    assert server.requests == 2
    publish(server, old_key, new_key)
    clock.advance(1)
    assert rejected(verifier, signed(new_key)) is Reason.UNKNOWN_KEY
    assert rejected(verifier, attacker) is Reason.UNKNOWN_KEY
    lines = refusals(caplog)
    assert lines[0] == (
        "JWKS refresh for unknown kid 'new-key' refused (unknown-kid refresh cooldown): "
        "29.0 s of cooldown left"
    )
    # The forged kid is logged through repr() and cut short.
    assert lines[1].startswith("JWKS refresh for unknown kid 'forged\"xxx")
    assert "xxx'... refused (unknown-kid refresh cooldown): 29.0 s" in lines[1]
    # A fetch of the cache's own in between neither extends nor spends the cooldown.
    clock.advance(10)
    cache.refresh()
    clock.advance(19)
    assert check(verifier, signed(new_key)).key_id == "new-key"  # from the explicit refresh
    assert server.requests == 3
    assert cache.stats.kid_refreshes == 1


def test_joining_an_ordinary_fetch_that_predates_the_key_does_not_cost_a_cooldown(
    server: JWKSServer,
    clock: FakeClock,
    caches: list[JWKSCache],
    old_key: SigningKey,
    new_key: SigningKey,
) -> None:
    """A new kid that joins a TTL refresh started before the key was published refreshes right after."""
    publish(server, old_key)
    cache = make_cache(server, clock, caches)
    verifier = Verifier(cache)
    check(verifier, signed(old_key))
    clock.advance(301)
    server.gate()
    check(verifier, signed(old_key))  # stale; the detached refresh waits at the server
    assert server.arrived.wait(BOUND)
    publish(server, old_key, new_key)  # too late for the refresh in flight
    clock.advance(2)
    releaser = threading.Timer(0.2, server.release)  # after this thread joined the flight
    releaser.start()
    try:
        assert check(verifier, signed(new_key)).key_id == "new-key"
    finally:
        releaser.join(BOUND)
    assert server.requests == 3
    assert cache.stats.kid_refreshes == 1
    assert cache.stats.unknown_kid_refusals == 0


def _flood_kids(seed: int, n: int) -> list[str]:
    rng = random.Random(seed)
    return [f"forged-{rng.getrandbits(64):016x}" for _ in range(n)]


def test_2000_random_kids_from_threads_cause_one_refresh_per_cooldown(
    server: JWKSServer, clock: FakeClock, caches: list[JWKSCache], old_key: SigningKey
) -> None:
    """16 threads verifying 2,000 forged kids 2 s after a fetch: one refresh per cooldown (F3)."""
    publish(server, old_key)
    cache = make_cache(server, clock, caches)
    verifier = Verifier(cache)
    check(verifier, signed(old_key))
    template = signed(generate_key())

    def flood(kids: list[str]) -> set[Reason]:
        reasons: list[Reason] = []
        lock = threading.Lock()

        def work(chunk: list[str]) -> None:
            for kid in chunk:
                reason = rejected(verifier, forge(template, kid))
                with lock:
                    reasons.append(reason)

        threads = [threading.Thread(target=work, args=(kids[i::16],)) for i in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(BOUND)
        assert not any(t.is_alive() for t in threads)
        assert len(reasons) == len(kids)
        return set(reasons)

    clock.advance(2)
    assert flood(_flood_kids(1, 2000)) == {Reason.UNKNOWN_KEY}
    assert server.requests == 2
    clock.advance(29)
    assert flood(_flood_kids(2, 2000)) == {Reason.UNKNOWN_KEY}
    assert server.requests == 2
    clock.advance(1)
    assert flood(_flood_kids(3, 2000)) == {Reason.UNKNOWN_KEY}
    assert server.requests == 3
    assert cache.stats.kid_refreshes == 2
    assert check(verifier, signed(old_key)).key_id == "old-key"


def test_2000_random_kids_from_tasks_cause_one_refresh_per_cooldown(
    server: JWKSServer, clock: FakeClock, caches: list[JWKSCache], old_key: SigningKey
) -> None:
    """2,000 asyncio tasks verifying forged kids 2 s after a fetch: one refresh per cooldown (F3)."""
    publish(server, old_key)
    cache = make_cache(server, clock, caches)
    verifier = Verifier(cache)
    template = signed(generate_key())

    async def reason(kid: str) -> Reason:
        webhook = forge(template, kid)
        with pytest.raises(KeyNotFound) as info:
            await verifier.averify(webhook.method, webhook.url, webhook.headers, webhook.body)
        return info.value.reason

    async def flood(seed: int) -> set[Reason]:
        return set(await asyncio.gather(*(reason(k) for k in _flood_kids(seed, 2000))))

    async def main() -> None:
        await cache.acurrent()
        clock.advance(2)
        assert await flood(4) == {Reason.UNKNOWN_KEY}
        assert server.requests == 2
        clock.advance(29)
        assert await flood(5) == {Reason.UNKNOWN_KEY}
        assert server.requests == 2
        clock.advance(1)
        assert await flood(6) == {Reason.UNKNOWN_KEY}

    asyncio.run(main())
    assert server.requests == 3
    assert cache.stats.kid_refreshes == 2
