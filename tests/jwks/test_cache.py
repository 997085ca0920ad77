"""JWKSCache behaviour against a real loopback JWKS server, driven by a fake monotonic clock."""

from __future__ import annotations

import asyncio
import logging
import math
import os
import random
import threading
import warnings
from typing import Any

import pytest

from upvest_verify import (
    AsyncKeyProvider,
    ConfigurationError,
    KeyNotFound,
    KeyProvider,
    KeySet,
    KeySetUnavailable,
    Reason,
)
from upvest_verify.jwks import CacheStats, FetchResult, JWKSCache, StaticKeySource, URLKeySource

from .jwks_support import BOUND, FakeClock, JWKKey, JWKSServer, jwks, make_key, wait_until


def make_cache(
    server: JWKSServer,
    clock: FakeClock,
    caches: list[JWKSCache],
    *,
    timeout: float = 5.0,
    **kw: Any,
) -> JWKSCache:
    """A cache in front of the test server, on the fake clock."""
    source = URLKeySource(server.url, allow_insecure_loopback=True, timeout=timeout)
    cache = JWKSCache(source, monotonic=clock, **kw)
    caches.append(cache)
    return cache


def settle(cache: JWKSCache) -> None:
    """Wait (bounded) until no fetch is in flight."""
    assert wait_until(lambda: cache._flight is None), "fetch still in flight"


def unknown(keys: KeySet, kid: str) -> Reason:
    """The reason a lookup of ``kid`` fails with."""
    with pytest.raises(KeyNotFound) as info:
        keys.lookup(kid)
    return info.value.reason


# ---- configuration ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [
        {"refresh_cooldown": 0},
        {"refresh_cooldown": -1},
        {"refresh_cooldown": math.inf},
        {"refresh_cooldown": math.nan},
        {"failure_cooldown": 0},
        {"failure_cooldown": math.inf},
        {"ttl": 30},
        {"ttl": 7200},
        {"min_ttl": 0, "ttl": 0},
        {"max_ttl": math.inf},
        {"max_stale": -1},
        {"wait_timeout": 0},
        {"key_types": "P-521"},
        {"key_types": ()},
        {"key_types": ("RSA",)},
    ],
    ids=lambda kw: ",".join(f"{k}={v!r}" for k, v in kw.items()),
)
def test_constructor_refuses_bad_settings(kwargs: dict[str, Any], key_a: JWKKey) -> None:
    """Refresh-on-miss without a limit, or any out-of-range setting, is a ConfigurationError."""
    with pytest.raises(ConfigurationError):
        JWKSCache(StaticKeySource(jwks(key_a)), **kwargs)


def test_constructor_refuses_a_source_without_fetch() -> None:
    """The source must have a fetch() method."""
    with pytest.raises(ConfigurationError):
        JWKSCache(object())  # type: ignore[arg-type]


def test_cache_implements_both_provider_protocols(key_a: JWKKey) -> None:
    """JWKSCache satisfies KeyProvider and AsyncKeyProvider from upvest_verify.types."""
    cache = JWKSCache(StaticKeySource(jwks(key_a)))
    assert isinstance(cache, KeyProvider)
    assert isinstance(cache, AsyncKeyProvider)
    assert "key-a" in cache.current()
    assert "key-a" in repr(cache)


# ---- F1: cold start, TTL ----------------------------------------------------------------


def test_cold_start_fetches_once_and_not_again_until_ttl(
    server: JWKSServer,
    clock: FakeClock,
    caches: list[JWKSCache],
    key_a: JWKKey,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The first lookup fetches once; hits take no fetch until the TTL ends (F1)."""
    server.rotate(key_a)
    cache = make_cache(server, clock, caches)
    keys = cache.current()
    assert keys.lookup("key-a").kid == "key-a"
    for _ in range(100):
        clock.advance(2.9)  # 290 s < ttl
        assert cache.current() is keys
    assert server.requests == 1
    assert cache.stats.fetches == 1
    assert cache.stats.failures == 0
    assert any("JWKS fetched" in r.getMessage() for r in caplog.records)


def test_expired_snapshot_is_served_while_one_detached_refresh_runs(
    server: JWKSServer, clock: FakeClock, caches: list[JWKSCache], key_a: JWKKey, key_b: JWKKey
) -> None:
    """After the TTL the stale set is returned at once and a single background fetch replaces it."""
    server.rotate(key_a)
    cache = make_cache(server, clock, caches)
    old = cache.current()
    server.rotate(key_a, key_b)
    server.gate()
    clock.advance(301)
    for _ in range(50):
        assert cache.current() is old  # never waits for the held fetch
    assert server.arrived.wait(BOUND)
    server.release()
    settle(cache)
    new = cache.current()
    assert new is not old
    assert "key-b" in new
    assert server.requests == 2
    assert cache.stats.fetches == 2
    assert cache.stats.stale_serves == 50


def test_max_age_is_clamped_to_min_ttl(
    server: JWKSServer, clock: FakeClock, caches: list[JWKSCache], key_a: JWKKey
) -> None:
    """Cache-Control: max-age=15 counts as min_ttl (60 s) (F14)."""
    server.rotate(key_a)
    server.cache_control = "max-age=15"
    cache = make_cache(server, clock, caches)
    keys = cache.current()
    clock.advance(59)
    assert cache.current() is keys
    assert server.requests == 1
    clock.advance(2)
    cache.current()
    settle(cache)
    assert server.requests == 2


def test_max_age_is_clamped_to_max_ttl(
    server: JWKSServer, clock: FakeClock, caches: list[JWKSCache], key_a: JWKKey
) -> None:
    """Cache-Control: max-age=31536000 counts as max_ttl (3600 s) (F14)."""
    server.rotate(key_a)
    server.cache_control = "public, max-age=31536000"
    cache = make_cache(server, clock, caches)
    keys = cache.current()
    clock.advance(3599)
    assert cache.current() is keys
    assert server.requests == 1
    clock.advance(2)
    cache.current()
    settle(cache)
    assert server.requests == 2


def test_strict_mode_refreshes_inline_after_ttl(
    server: JWKSServer, clock: FakeClock, caches: list[JWKSCache], key_a: JWKKey
) -> None:
    """With max_stale=0, an expired set is never served: the caller waits and 503s on failure."""
    server.rotate(key_a)
    cache = make_cache(server, clock, caches, max_stale=0)
    cache.current()
    clock.advance(301)
    server.mode = "error"
    with pytest.raises(KeySetUnavailable) as info:
        cache.current()
    assert info.value.reason is Reason.KEYS_UNAVAILABLE
    assert cache.stats.stale_serves == 0
    server.mode = "ok"
    clock.advance(10)
    assert "key-a" in cache.current()


# ---- F2/F3: unknown kids ----------------------------------------------------------------


def test_new_kid_triggers_one_refresh(
    server: JWKSServer, clock: FakeClock, caches: list[JWKSCache], key_a: JWKKey, key_b: JWKKey
) -> None:
    """A kid missing from a warm set causes one refresh that brings it in (F2)."""
    server.rotate(key_a)
    cache = make_cache(server, clock, caches)
    old = cache.current()
    clock.advance(31)
    server.rotate(key_a, key_b)
    new = cache.refresh_for("key-b")
    assert new is not None
    assert new is not old
    assert new.lookup("key-b").kid == "key-b"
    assert cache.current() is new
    assert cache.refresh_for("key-b") is new  # already known: no fetch
    assert server.requests == 2


def test_unknown_kid_within_cooldown_is_refused(
    server: JWKSServer,
    clock: FakeClock,
    caches: list[JWKSCache],
    key_a: JWKKey,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Within the cooldown of a refresh for an unknown kid, refresh_for() refuses (None) and logs why."""
    server.rotate(key_a)
    cache = make_cache(server, clock, caches)
    cache.current()
    clock.advance(2)
    assert cache.refresh_for("forged-1") is not None  # the cold start left the budget alone
    clock.advance(27)
    caplog.clear()
    assert cache.refresh_for("forged-2") is None
    assert cache.refresh_for("forged-2") is None  # negative cache, lock-free
    assert server.requests == 2
    assert cache.stats.kid_refreshes == 1
    assert cache.stats.unknown_kid_refusals == 2
    refusals = [r for r in caplog.records if "refused" in r.getMessage()]
    assert [r.levelno for r in refusals] == [logging.WARNING]  # a kid once per cooldown
    assert {r.getMessage() for r in refusals} == {
        "JWKS refresh for unknown kid 'forged-2' refused (unknown-kid refresh cooldown): "
        "3.0 s of cooldown left"
    }


def test_refresh_without_the_kid_negative_caches_it(
    server: JWKSServer, clock: FakeClock, caches: list[JWKSCache], key_a: JWKKey
) -> None:
    """A refresh that does not bring the kid in returns the new set; the kid is then refused."""
    server.rotate(key_a)
    cache = make_cache(server, clock, caches)
    cache.current()
    clock.advance(31)
    keys = cache.refresh_for("forged")
    assert keys is not None
    assert unknown(keys, "forged") is Reason.UNKNOWN_KEY
    assert cache.refresh_for("forged") is None
    assert cache._negative.get("forged") is not None
    clock.advance(30)
    assert cache.refresh_for("forged") is not None  # the entry expired with the cooldown
    assert server.requests == 3


def test_random_unknown_kids_fetch_at_most_once_per_cooldown(
    server: JWKSServer, clock: FakeClock, caches: list[JWKSCache], key_a: JWKKey
) -> None:
    """10,000 requests with random unknown kids over 200 s cause at most one fetch per 30 s (F3)."""
    server.rotate(key_a)
    cache = make_cache(server, clock, caches, ttl=300)
    cache.current()
    rng = random.Random(1)
    refused = 0
    for _ in range(10_000):
        clock.advance(0.02)
        kid = f"forged-{rng.getrandbits(64):016x}"
        keys = cache.current()
        assert unknown(keys, kid) is Reason.UNKNOWN_KEY
        fresh = cache.refresh_for(kid)
        if fresh is None:
            refused += 1
        else:
            assert unknown(fresh, kid) is Reason.UNKNOWN_KEY
    # 200 s of traffic: the initial fetch plus at most one per started cooldown.
    assert 2 <= server.requests <= 1 + math.ceil(200 / 30)
    assert cache.stats.unknown_kid_refusals == refused == 10_000 - (server.requests - 1)
    assert len(cache._negative) <= 1024


def test_overlong_kid_never_fetches(
    server: JWKSServer, clock: FakeClock, caches: list[JWKSCache], key_a: JWKKey
) -> None:
    """A kid longer than any usable kid (256 characters) is refused without a fetch."""
    server.rotate(key_a)
    cache = make_cache(server, clock, caches)
    cache.current()
    clock.advance(1000)
    assert cache.refresh_for("x" * 257) is None
    assert server.requests == 1


def test_failed_refresh_counts_toward_cooldown(
    server: JWKSServer, clock: FakeClock, caches: list[JWKSCache], key_a: JWKKey
) -> None:
    """A failed refresh-on-miss still starts the cooldown; the next one waits for it."""
    server.rotate(key_a)
    cache = make_cache(server, clock, caches)
    cache.current()
    clock.advance(31)
    server.mode = "error"
    assert cache.refresh_for("new-1") is None
    assert cache.refresh_for("new-2") is None
    clock.advance(29)
    assert cache.refresh_for("new-3") is None
    assert server.requests == 2
    server.mode = "ok"
    clock.advance(1)
    assert cache.refresh_for("new-4") is not None
    assert server.requests == 3
    assert cache.stats.failures == 1


# ---- F4/F5: outages ----------------------------------------------------------------------


@pytest.mark.parametrize("failure", ["error", "hang", "garbage", "oversized", "down"])
def test_outage_serves_stale_keys_until_max_stale(
    server: JWKSServer,
    clock: FakeClock,
    caches: list[JWKSCache],
    key_a: JWKKey,
    failure: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Refreshes failing for longer than the TTL keep the last good set until max_stale (F4, F7, F8)."""
    server.rotate(key_a)
    server.hang_seconds = 3.0
    # Only the stalling endpoint needs a short timeout; keep the others generous.
    timeout = 0.5 if failure == "hang" else 5.0
    cache = make_cache(server, clock, caches, timeout=timeout, max_stale=3600)
    keys = cache.current()
    if failure == "down":
        server.stop()
    else:
        server.mode = failure
    # 20 minutes of outage in 5-minute steps, past the 5-minute TTL: each step serves
    # the stale set at once and tries one refresh in the background.
    for _ in range(4):
        clock.advance(300)
        assert cache.current().lookup("key-a").kid == "key-a"
        settle(cache)
    assert cache.current() is keys  # the failure cooldown holds: no fetch
    assert cache.stats.fetches == 1 + 4
    assert cache.stats.failures == 4
    assert cache.stats.stale_serves == 4 + 1
    assert any(
        "JWKS fetch failed" in r.getMessage() and r.levelno == logging.WARNING
        for r in caplog.records
    )
    # Past TTL + max_stale the set is no longer served.
    clock.advance(300 + 3600 - 20 * 60)
    with pytest.raises(KeySetUnavailable) as info:
        cache.current()
    assert info.value.reason is Reason.KEYS_UNAVAILABLE
    assert info.value.status_code == 503


def test_cold_start_with_endpoint_down_is_unavailable_with_failure_cooldown(
    server: JWKSServer, clock: FakeClock, caches: list[JWKSCache], key_a: JWKKey
) -> None:
    """Cold cache and a failing endpoint: keys_unavailable after one attempt, no fetch per request (F5)."""
    server.rotate(key_a)
    server.mode = "error"
    cache = make_cache(server, clock, caches, failure_cooldown=10)
    for _ in range(100):
        with pytest.raises(KeySetUnavailable) as info:
            cache.current()
        assert info.value.reason is Reason.KEYS_UNAVAILABLE
        assert cache.refresh_for("key-a") is None
    assert server.requests == 1
    clock.advance(10)
    with pytest.raises(KeySetUnavailable):
        cache.current()
    assert server.requests == 2
    server.mode = "ok"
    clock.advance(10)
    assert "key-a" in cache.current()
    assert server.requests == 3
    assert cache.stats.failures == 2


def test_garbage_cold_start_is_unavailable(
    server: JWKSServer, clock: FakeClock, caches: list[JWKSCache]
) -> None:
    """A non-JSON response on a cold cache is keys_unavailable, with the cause in the message."""
    server.mode = "garbage"
    cache = make_cache(server, clock, caches)
    with pytest.raises(KeySetUnavailable, match="JWKSError"):
        cache.current()


# ---- F9/F10: key content -----------------------------------------------------------------


def test_mixed_set_keeps_only_usable_keys(
    server: JWKSServer, clock: FakeClock, caches: list[JWKSCache], key_a: JWKKey
) -> None:
    """Wrong-curve, RSA and private keys are skipped; the P-521 key stays usable (F9)."""
    p256 = make_key("p256", crv="P-256")
    private = make_key("private")
    private_jwk = dict(private.jwk, d="AAAA")
    server.document = {
        "keys": [
            key_a.jwk,
            p256.jwk,
            {"kid": "rsa", "kty": "RSA", "n": "AQAB", "e": "AQAB"},
            private_jwk,
        ]
    }
    cache = make_cache(server, clock, caches)
    keys = cache.current()
    assert list(keys) == ["key-a"]
    for kid in ("p256", "rsa", "private"):
        assert unknown(keys, kid) is Reason.UNSUPPORTED_KEY
        assert cache.refresh_for(kid) is keys  # answered from the snapshot, no fetch
    assert server.requests == 1


def test_a_set_without_usable_keys_is_a_failed_refresh(
    server: JWKSServer, clock: FakeClock, caches: list[JWKSCache], key_a: JWKKey
) -> None:
    """A response with only wrong-curve keys keeps the last good set (it would reject everything)."""
    server.rotate(key_a)
    cache = make_cache(server, clock, caches)
    keys = cache.current()
    server.rotate(make_key("p256", crv="P-256"))
    clock.advance(31)
    assert cache.refresh_for("p256") is None
    assert cache.current() is keys
    assert cache.stats.failures == 1


def test_removed_key_is_rejected_after_refresh_and_never_revived(
    server: JWKSServer, clock: FakeClock, caches: list[JWKSCache], key_a: JWKKey, key_b: JWKKey
) -> None:
    """A kid missing from a successful fetch is unknown at once; stale mode never brings it back (F10)."""
    server.rotate(key_a, key_b)
    cache = make_cache(server, clock, caches)
    cache.current().lookup("key-a")
    server.rotate(key_b)
    clock.advance(301)
    cache.current()
    settle(cache)
    keys = cache.current()
    assert unknown(keys, "key-a") is Reason.UNKNOWN_KEY
    server.mode = "error"
    clock.advance(301)
    cache.current()
    settle(cache)
    assert unknown(cache.current(), "key-a") is Reason.UNKNOWN_KEY
    clock.advance(31)
    assert cache.refresh_for("key-a") is None  # failed refresh
    assert unknown(cache.current(), "key-a") is Reason.UNKNOWN_KEY


# ---- explicit refresh, waiting, stats ------------------------------------------------------


def test_explicit_refresh(
    server: JWKSServer, clock: FakeClock, caches: list[JWKSCache], key_a: JWKKey
) -> None:
    """refresh() fetches regardless of TTL and raises keys_unavailable when it fails."""
    server.rotate(key_a)
    cache = make_cache(server, clock, caches)
    first = cache.refresh()
    second = cache.refresh()
    assert first == second
    assert first is not second
    server.mode = "error"
    with pytest.raises(KeySetUnavailable):
        cache.refresh()
    assert cache.current() is second
    server.mode = "ok"
    assert "key-a" in asyncio.run(cache.arefresh())
    server.mode = "error"
    with pytest.raises(KeySetUnavailable):
        asyncio.run(cache.arefresh())
    assert server.requests == 5


def test_waiter_gives_up_after_wait_timeout(
    server: JWKSServer, clock: FakeClock, caches: list[JWKSCache], key_a: JWKKey
) -> None:
    """A caller waiting for someone else's cold-start fetch stops after wait_timeout."""
    server.rotate(key_a)
    server.gate()
    cache = make_cache(server, clock, caches, wait_timeout=0.2)
    leader = threading.Thread(target=cache.current)
    leader.start()
    assert server.arrived.wait(BOUND)
    with pytest.raises(KeySetUnavailable):
        cache.current()
    server.release()
    leader.join(BOUND)
    assert "key-a" in cache.current()
    assert server.requests == 1


def test_stats_object() -> None:
    """CacheStats counts with thread-safe increments and reports as a dict."""
    stats = CacheStats()

    def bump() -> None:
        for _ in range(1000):
            stats._add("fetches")

    threads = [threading.Thread(target=bump) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(BOUND)
    assert stats.fetches == 8000
    assert stats.as_dict() == {
        "fetches": 8000,
        "failures": 0,
        "stale_serves": 0,
        "unknown_kid_refusals": 0,
        "kid_refreshes": 0,
    }
    assert "fetches=8000" in repr(stats)


class _WeirdSource:
    """A source returning something that is not a FetchResult."""

    def fetch(self) -> Any:
        return b'{"keys": []}'


def test_source_returning_wrong_type_is_a_failure() -> None:
    """A misbehaving custom source is a failed fetch, never a foreign exception."""
    cache = JWKSCache(_WeirdSource())
    with pytest.raises(KeySetUnavailable, match="TypeError"):
        cache.current()
    assert cache.stats.failures == 1


class _SyncOnlySource:
    """A source with only a blocking fetch()."""

    def __init__(self, body: bytes) -> None:
        self.body = body
        self.threads: list[int] = []

    def fetch(self) -> FetchResult:
        self.threads.append(threading.get_ident())
        return FetchResult(self.body)


def test_async_path_runs_a_sync_only_source_in_a_thread(key_a: JWKKey) -> None:
    """acurrent() runs a source without afetch() in a worker thread, off the event loop."""
    import json

    source = _SyncOnlySource(json.dumps(jwks(key_a)).encode())
    cache = JWKSCache(source)

    async def main() -> int:
        keys = await cache.acurrent()
        assert "key-a" in keys
        return threading.get_ident()

    loop_thread = asyncio.run(main())
    assert source.threads
    assert source.threads[0] != loop_thread


# ---- background refresh --------------------------------------------------------------------


def test_background_thread_refreshes_before_expiry_and_stops_on_close(
    server: JWKSServer,
    clock: FakeClock,
    caches: list[JWKSCache],
    key_a: JWKKey,
    key_b: JWKKey,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With background_refresh the daemon thread fetches at 80% of the TTL; close() stops it."""
    monkeypatch.setattr(JWKSCache, "_BACKGROUND_TICK", 0.01)
    server.rotate(key_a)
    cache = make_cache(server, clock, caches, background_refresh=True)
    with cache:
        first = cache.current()
        worker = cache._worker
        assert isinstance(worker, threading.Thread)
        assert worker.is_alive()
        server.rotate(key_a, key_b)
        clock.advance(241)  # 80% of 300 s
        assert wait_until(lambda: "key-b" in cache.current())
        assert cache.current() is not first
        assert cache.stats.stale_serves == 0  # refreshed before it ever expired
    assert not worker.is_alive()
    requests = server.requests
    clock.advance(1000)
    assert cache.current() is not None  # still works on demand after close()
    settle(cache)
    assert server.requests == requests + 1


def test_background_task_refreshes_and_stops_on_aclose(
    server: JWKSServer,
    clock: FakeClock,
    caches: list[JWKSCache],
    key_a: JWKKey,
    key_b: JWKKey,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """From async code the refresher is a task on the loop; aclose() cancels and awaits it."""
    monkeypatch.setattr(JWKSCache, "_BACKGROUND_TICK", 0.01)
    server.rotate(key_a)
    cache = make_cache(server, clock, caches, background_refresh=True)

    async def main() -> asyncio.Task[None]:
        async with cache:
            await cache.acurrent()
            worker = cache._worker
            assert isinstance(worker, asyncio.Task)
            server.rotate(key_a, key_b)
            clock.advance(241)
            for _ in range(int(BOUND / 0.01)):
                if "key-b" in await cache.acurrent():
                    break
                await asyncio.sleep(0.01)
            assert "key-b" in await cache.acurrent()
        return worker

    worker = asyncio.run(main())
    assert worker.done()
    assert server.requests == 2


def test_background_task_restarts_in_a_new_event_loop(
    server: JWKSServer,
    clock: FakeClock,
    caches: list[JWKSCache],
    key_a: JWKKey,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A refresher task that ended with its loop is started again by the next loop (H7)."""
    monkeypatch.setattr(JWKSCache, "_BACKGROUND_TICK", 0.01)
    server.rotate(key_a)
    cache = make_cache(server, clock, caches, background_refresh=True)
    tasks: list[object] = []

    async def use() -> None:
        await cache.acurrent()
        tasks.append(cache._worker)

    asyncio.run(use())
    asyncio.run(use())
    assert len(tasks) == 2
    assert tasks[0] is not tasks[1]
    assert all(isinstance(t, asyncio.Task) for t in tasks)


# ---- event loops and forks ------------------------------------------------------------------


def test_loop_restart_and_abandoned_flight(
    server: JWKSServer, clock: FakeClock, caches: list[JWKSCache], key_a: JWKKey, key_b: JWKKey
) -> None:
    """A refresh task cut off by its loop closing never wedges the cache for the next loop (H7)."""
    server.rotate(key_a)
    cache = make_cache(server, clock, caches)
    assert "key-a" in asyncio.run(cache.acurrent())
    server.gate()
    clock.advance(301)

    async def start_refresh_then_exit() -> None:
        await cache.acurrent()  # stale: starts a detached refresh task, returns at once
        await asyncio.to_thread(server.arrived.wait, BOUND)

    asyncio.run(start_refresh_then_exit())  # the loop ends; its refresh task is cancelled
    server.release()
    server.rotate(key_a, key_b)
    clock.advance(31)
    keys = asyncio.run(cache.arefresh_for("key-b"))
    assert keys is not None
    assert "key-b" in keys


def test_sync_call_on_the_loop_running_the_fetch_does_not_deadlock(
    server: JWKSServer, clock: FakeClock, caches: list[JWKSCache], key_a: JWKKey
) -> None:
    """A sync current() on the event loop that must run the fetch fails fast instead of hanging."""
    server.rotate(key_a)
    server.gate()
    cache = make_cache(server, clock, caches, wait_timeout=BOUND)

    async def main() -> None:
        waiter = asyncio.create_task(cache.acurrent())
        await asyncio.sleep(0)
        with pytest.raises(KeySetUnavailable):
            cache.current()  # misuse: would deadlock if it waited
        server.release()
        assert "key-a" in await waiter

    asyncio.run(main())
    assert server.requests == 1


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_forked_child_recreates_locks_and_in_flight_state(
    server: JWKSServer, clock: FakeClock, caches: list[JWKSCache], key_a: JWKKey, key_b: JWKKey
) -> None:
    """A child forked while the lock is held and a fetch is in flight still works (F15)."""
    server.rotate(key_a)
    cache = make_cache(server, clock, caches, wait_timeout=BOUND)
    cache.current()
    server.rotate(key_a, key_b)
    server.gate()
    clock.advance(31)
    parent_refresh = threading.Thread(target=cache.refresh_for, args=("key-b",))
    parent_refresh.start()
    assert server.arrived.wait(BOUND)
    assert cache._flight is not None
    cache._lock.acquire()  # as if another thread held it at fork time
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # 3.12+: fork with threads
            pid = os.fork()
        if pid == 0:  # pragma: no cover - runs in the child
            code = 1
            try:
                clock.advance(31)
                server.release()  # the child's copy: does not affect the parent's handler
                keys = cache.refresh_for("key-b")
                code = 0 if keys is not None and "key-b" in keys else 2
            finally:
                os._exit(code)
    finally:
        cache._lock.release()
    # The parent's gated request waits for release; the child's request is gated too
    # (the gate flag was copied), so open the gate for both.
    server.release()
    status = 0
    for _ in range(int(BOUND / 0.01)):
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        threading.Event().wait(0.01)
    else:  # pragma: no cover - the child hung
        os.kill(pid, 9)
        os.waitpid(pid, 0)
        pytest.fail("forked child hung")
    parent_refresh.join(BOUND)
    assert os.waitstatus_to_exitcode(status) == 0


# ---- async paths ------------------------------------------------------------------------------


def test_async_cold_start_with_endpoint_down(
    server: JWKSServer, clock: FakeClock, caches: list[JWKSCache], key_a: JWKKey
) -> None:
    """acurrent() on a cold cache with a failing endpoint: 503 after one attempt, then cooldown (F5)."""
    server.rotate(key_a)
    server.mode = "error"
    cache = make_cache(server, clock, caches)

    async def main() -> None:
        for _ in range(10):
            with pytest.raises(KeySetUnavailable) as info:
                await cache.acurrent()
            assert info.value.reason is Reason.KEYS_UNAVAILABLE
            assert await cache.arefresh_for("key-a") is None
        assert server.requests == 1
        server.mode = "ok"
        clock.advance(10)
        assert "key-a" in await cache.acurrent()

    asyncio.run(main())
    assert server.requests == 2


def test_async_refresh_for_known_refused_and_negative(
    server: JWKSServer, clock: FakeClock, caches: list[JWKSCache], key_a: JWKKey
) -> None:
    """arefresh_for() answers known kids from the snapshot and refuses within the cooldown."""
    server.rotate(key_a)
    cache = make_cache(server, clock, caches)

    async def main() -> None:
        keys = await cache.acurrent()
        assert await cache.arefresh_for("key-a") is keys
        assert await cache.arefresh_for("forged") is None  # cooldown
        assert await cache.arefresh_for("forged") is None  # negative cache
        clock.advance(30)
        fresh = await cache.arefresh_for("forged")
        assert fresh is not None
        assert unknown(fresh, "forged") is Reason.UNKNOWN_KEY

    asyncio.run(main())
    assert server.requests == 2
    assert cache.stats.unknown_kid_refusals == 2


def test_async_waiters_give_up_after_wait_timeout(
    server: JWKSServer, clock: FakeClock, caches: list[JWKSCache], key_a: JWKKey
) -> None:
    """A stalled cold-start fetch costs each waiting task at most wait_timeout; the fetch goes on."""
    server.rotate(key_a)
    server.gate()
    cache = make_cache(server, clock, caches, wait_timeout=0.2)

    async def main() -> None:
        results = await asyncio.gather(
            *(cache.acurrent() for _ in range(10)), return_exceptions=True
        )
        assert all(isinstance(r, KeySetUnavailable) for r in results)
        server.release()
        await asyncio.to_thread(settle, cache)
        assert "key-a" in await cache.acurrent()

    asyncio.run(main())
    assert server.requests == 1


def test_explicit_refresh_joins_the_flight_in_progress(
    server: JWKSServer, clock: FakeClock, caches: list[JWKSCache], key_a: JWKKey
) -> None:
    """refresh() during another fetch waits for that one instead of starting a second."""
    server.rotate(key_a)
    server.gate()
    cache = make_cache(server, clock, caches)
    leader = threading.Thread(target=cache.refresh)
    leader.start()
    assert server.arrived.wait(BOUND)
    releaser = threading.Timer(0.05, server.release)
    releaser.start()
    assert "key-a" in cache.refresh()
    leader.join(BOUND)
    releaser.join(BOUND)
    assert server.requests == 1


class _NeverAsyncSource:
    """An async source whose fetch never finishes (its loop will be closed under it)."""

    def __init__(self, body: bytes) -> None:
        self.body = body
        self.calls = 0

    def fetch(self) -> FetchResult:
        self.calls += 1
        return FetchResult(self.body)

    async def afetch(self) -> FetchResult:
        self.calls += 1
        if self.calls > 1:
            await asyncio.sleep(3600)
        return FetchResult(self.body)


def test_flight_of_a_closed_event_loop_is_abandoned(key_a: JWKKey) -> None:
    """A fetch task whose loop was closed without finishing it does not block later callers (H7)."""
    import json

    clock = FakeClock()
    source = _NeverAsyncSource(json.dumps(jwks(key_a)).encode())
    cache = JWKSCache(source, monotonic=clock)
    loop = asyncio.new_event_loop()
    try:
        keys = loop.run_until_complete(cache.acurrent())
        clock.advance(301)

        async def start_refresh() -> None:
            assert await cache.acurrent() is keys  # stale; refresh task left pending
            await asyncio.sleep(0)

        loop.run_until_complete(start_refresh())
        assert cache._flight is not None
    finally:
        loop.close()  # the pending fetch task never finishes
    # The sync path sees the dead loop, drops its flight and fetches itself.
    clock.advance(10)
    assert cache.current() is keys  # stale serve while the new (thread) refresh runs
    settle(cache)
    assert cache.current() is not keys
    assert source.calls == 3


def test_close_from_another_thread_cancels_the_refresher_task(
    server: JWKSServer,
    clock: FakeClock,
    caches: list[JWKSCache],
    key_a: JWKKey,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """close() called outside the refresher's event loop cancels its task thread-safely."""
    monkeypatch.setattr(JWKSCache, "_BACKGROUND_TICK", 0.01)
    server.rotate(key_a)
    cache = make_cache(server, clock, caches, background_refresh=True)
    started = threading.Event()
    worker: list[object] = []

    async def main() -> None:
        await cache.acurrent()
        task = cache._worker
        assert isinstance(task, asyncio.Task)
        worker.append(task)
        started.set()
        await asyncio.wait([task], timeout=BOUND)

    runner = threading.Thread(target=asyncio.run, args=(main(),))
    runner.start()
    assert started.wait(BOUND)
    cache.close()
    runner.join(BOUND)
    assert not runner.is_alive()
    task = worker[0]
    assert isinstance(task, asyncio.Task)
    assert task.cancelled()


def test_aclose_stops_a_refresher_thread(
    server: JWKSServer,
    clock: FakeClock,
    caches: list[JWKSCache],
    key_a: JWKKey,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """aclose() also stops a refresher thread started from sync code, without blocking the loop."""
    monkeypatch.setattr(JWKSCache, "_BACKGROUND_TICK", 0.01)
    server.rotate(key_a)
    cache = make_cache(server, clock, caches, background_refresh=True)
    cache.refresh_for("key-a")  # any first use starts the refresher
    worker = cache._worker
    assert isinstance(worker, threading.Thread)
    assert worker.is_alive()
    asyncio.run(cache.aclose())
    assert not worker.is_alive()
