"""Single-flight and non-blocking behaviour of JWKSCache under threads and asyncio tasks (H1, H2, H7)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any

import pytest

from upvest_verify import KeySet
from upvest_verify.jwks import JWKSCache, URLKeySource

from .jwks_support import BOUND, FakeClock, JWKKey, JWKSServer, wait_until


def make_cache(
    server: JWKSServer, clock: FakeClock, caches: list[JWKSCache], **kw: Any
) -> JWKSCache:
    """A cache in front of the test server, on the fake clock."""
    source = URLKeySource(server.url, allow_insecure_loopback=True, timeout=BOUND)
    cache = JWKSCache(source, monotonic=clock, wait_timeout=BOUND, **kw)
    caches.append(cache)
    return cache


def run_threads(n: int, target: Callable[[], object], release: Callable[[], None]) -> list[object]:
    """Start n threads that call target behind a barrier, call release() once all are waiting."""
    results: list[object] = []
    lock = threading.Lock()
    barrier = threading.Barrier(n + 1)

    def work() -> None:
        barrier.wait(BOUND)
        value = target()
        with lock:
            results.append(value)

    threads = [threading.Thread(target=work) for _ in range(n)]
    for t in threads:
        t.start()
    barrier.wait(BOUND)
    release()
    for t in threads:
        t.join(BOUND)
    assert not any(t.is_alive() for t in threads)
    return results


def test_200_threads_asking_for_a_rotated_kid_cause_one_fetch(
    server: JWKSServer, clock: FakeClock, caches: list[JWKSCache], key_a: JWKKey, key_b: JWKKey
) -> None:
    """200 threads hitting refresh_for() with a newly rotated kid share exactly one fetch (F2, H2)."""
    server.rotate(key_a)
    cache = make_cache(server, clock, caches)
    cache.current()
    server.rotate(key_a, key_b)
    clock.advance(31)
    server.gate()

    def release() -> None:
        assert server.arrived.wait(BOUND)
        # Give the other threads a chance to pile up on the flight, then answer.
        wait_until(lambda: False, 0.05)
        server.release()

    results = run_threads(200, lambda: cache.refresh_for("key-b"), release)
    assert len(results) == 200
    assert all(isinstance(r, KeySet) and "key-b" in r for r in results)
    assert server.requests == 2  # the cold start and the one refresh
    assert cache.stats.fetches == 2
    assert cache.stats.unknown_kid_refusals == 0


def test_64_threads_on_a_cold_cache_cause_one_fetch(
    server: JWKSServer, clock: FakeClock, caches: list[JWKSCache], key_a: JWKKey
) -> None:
    """A cold cache hit by 64 threads at once fetches once and every thread gets the keys (H2)."""
    server.rotate(key_a)
    server.gate()
    cache = make_cache(server, clock, caches)

    def release() -> None:
        assert server.arrived.wait(BOUND)
        server.release()

    results = run_threads(64, cache.current, release)
    assert len(results) == 64
    assert len({id(r) for r in results}) == 1
    assert server.requests == 1


def test_1000_tasks_asking_for_a_rotated_kid_cause_one_fetch(
    server: JWKSServer, clock: FakeClock, caches: list[JWKSCache], key_a: JWKKey, key_b: JWKKey
) -> None:
    """1,000 asyncio tasks calling arefresh_for() with a new kid share exactly one fetch (H1)."""
    server.rotate(key_a)
    cache = make_cache(server, clock, caches)

    async def main() -> list[KeySet | None]:
        await cache.acurrent()
        server.rotate(key_a, key_b)
        clock.advance(31)
        return await asyncio.gather(*(cache.arefresh_for("key-b") for _ in range(1000)))

    results = asyncio.run(main())
    assert all(r is not None and "key-b" in r for r in results)
    assert len({id(r) for r in results}) == 1
    assert server.requests == 2


def test_1000_tasks_on_a_cold_cache_cause_one_fetch(
    server: JWKSServer, clock: FakeClock, caches: list[JWKSCache], key_a: JWKKey
) -> None:
    """1,000 concurrent acurrent() calls on a cold cache: exactly one JWKS fetch (H1)."""
    server.rotate(key_a)
    cache = make_cache(server, clock, caches)

    async def main() -> list[KeySet]:
        return await asyncio.gather(*(cache.acurrent() for _ in range(1000)))

    results = asyncio.run(main())
    assert len({id(r) for r in results}) == 1
    assert "key-a" in results[0]
    assert server.requests == 1


def test_threads_and_tasks_of_two_event_loops_share_one_fetch(
    server: JWKSServer, clock: FakeClock, caches: list[JWKSCache], key_a: JWKKey, key_b: JWKKey
) -> None:
    """Tasks on two event loops in two threads plus plain threads share one refresh (H7)."""
    server.rotate(key_a)
    cache = make_cache(server, clock, caches)
    cache.current()
    server.rotate(key_a, key_b)
    clock.advance(31)
    server.gate()
    results: list[object] = []
    lock = threading.Lock()

    def loop_thread() -> None:
        async def main() -> list[KeySet | None]:
            return await asyncio.gather(*(cache.arefresh_for("key-b") for _ in range(100)))

        out = asyncio.run(main())
        with lock:
            results.extend(out)

    def plain_thread() -> None:
        out = cache.refresh_for("key-b")
        with lock:
            results.append(out)

    threads = [threading.Thread(target=loop_thread) for _ in range(2)]
    threads += [threading.Thread(target=plain_thread) for _ in range(20)]
    for t in threads:
        t.start()
    assert server.arrived.wait(BOUND)
    wait_until(lambda: False, 0.05)
    server.release()
    for t in threads:
        t.join(BOUND)
    assert len(results) == 220
    assert all(isinstance(r, KeySet) and "key-b" in r for r in results)
    assert server.requests == 2


def test_known_keys_resolve_while_a_fetch_hangs(
    server: JWKSServer, clock: FakeClock, caches: list[JWKSCache], key_a: JWKKey
) -> None:
    """Lookups of a known kid complete while another thread's refresh is stuck on the endpoint."""
    server.rotate(key_a)
    cache = make_cache(server, clock, caches)
    cache.current()
    clock.advance(31)
    server.gate()
    stuck = threading.Thread(target=cache.refresh_for, args=("key-new",))
    stuck.start()
    assert server.arrived.wait(BOUND)
    for _ in range(10_000):
        assert cache.current().lookup("key-a").kid == "key-a"
    clock.advance(300)  # now expired too: still served (stale) without waiting
    for _ in range(1000):
        assert cache.current().lookup("key-a").kid == "key-a"
    assert stuck.is_alive()
    assert server.requests == 2
    server.release()
    stuck.join(BOUND)


def test_known_keys_resolve_in_async_code_while_a_fetch_hangs(
    server: JWKSServer, clock: FakeClock, caches: list[JWKSCache], key_a: JWKKey
) -> None:
    """Tasks with known kids finish while another task's refresh waits on a stalled endpoint."""
    server.rotate(key_a)
    cache = make_cache(server, clock, caches)

    async def main() -> None:
        await cache.acurrent()
        clock.advance(31)
        server.gate()
        stuck = asyncio.create_task(cache.arefresh_for("key-new"))
        await asyncio.to_thread(server.arrived.wait, BOUND)

        async def lookup() -> str:
            return (await cache.acurrent()).lookup("key-a").kid

        kids = await asyncio.gather(*(lookup() for _ in range(1000)))
        assert kids == ["key-a"] * 1000
        assert not stuck.done()
        server.release()
        assert await stuck is not None

    asyncio.run(main())
    assert server.requests == 2


def test_cancelled_waiter_does_not_cancel_the_shared_fetch(
    server: JWKSServer, clock: FakeClock, caches: list[JWKSCache], key_a: JWKKey
) -> None:
    """A request cancelled while waiting on a cold start leaves the fetch running for the others."""
    server.rotate(key_a)
    server.gate()
    cache = make_cache(server, clock, caches)

    async def main() -> KeySet:
        first = asyncio.create_task(cache.acurrent())
        second = asyncio.create_task(cache.acurrent())
        await asyncio.to_thread(server.arrived.wait, BOUND)
        first.cancel()
        with pytest.raises(asyncio.CancelledError):
            await first
        server.release()
        return await second

    assert "key-a" in asyncio.run(main())
    assert server.requests == 1
    assert cache.stats.failures == 0
