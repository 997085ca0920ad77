"""Threat model §6 group H: load and concurrency, on loopback and bounded.

Every case runs real verifications against a real JWKS server on 127.0.0.1, with the
cache on a fake monotonic clock (K11), so TTLs and cooldowns pass without sleeping.
Assertions are structural: verdicts, fetch counts (at the server and at the key
source), which thread ran the ECDSA primitive, traced memory growth. Latency and
event-loop lag figures come from ``benchmarks/soak.py``, never from here.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import threading

import pytest
from load_helpers import (
    BOUND,
    CHEAP_HOSTILE_KINDS,
    HOSTILE_KINDS,
    REFRESH_COOLDOWN,
    TTL,
    Harness,
    LagProbe,
    Request,
    Step,
    Tally,
    counting_verify_primitive,
    cycle,
    hostile_requests,
    interleave,
    load_keys,
    quiet_library_logs,
    run_load,
    run_soak,
    signed_pool,
    unknown_kid_noise,
    wait_until,
)

from upvest_verify import KeySet, Policy, VerificationError

RUNTIMES = ["threads", "asyncio"]


def test_h1_1000_async_verifications_on_a_cold_cache_cause_one_fetch() -> None:
    """1,000 concurrent averify() calls on a cold cache: exactly one JWKS fetch, all verify."""
    key = load_keys()["a"]
    with quiet_library_logs(), Harness([key]) as h:
        tally = run_load(h.verifier, cycle(signed_pool(key), 1000), "asyncio", source=h.source)
        assert tally.count("valid", "accepted") == 1000
        assert tally.problems() == []
        assert h.server.requests == 1
        assert h.source.calls == 1
        assert h.cache.stats.fetches == 1


def test_h2_64_threads_on_a_cold_cache_cause_one_fetch() -> None:
    """64 threads verifying at once on a cold cache: one fetch, no deadlock, one key set seen."""
    key = load_keys()["a"]
    pool = signed_pool(key)
    with quiet_library_logs(), Harness([key]) as h:
        h.server.gate()
        barrier = threading.Barrier(65)
        lock = threading.Lock()
        tally = Tally()
        seen: list[KeySet] = []

        def worker(request: Request) -> None:
            barrier.wait(BOUND)
            try:
                h.verifier.verify(request.method, request.url, request.headers, request.body)
                verdict = "accepted"
            except VerificationError as e:
                verdict = e.reason.value
            snapshot = h.cache.current()
            with lock:
                tally.add(request, verdict)
                seen.append(snapshot)

        threads = [threading.Thread(target=worker, args=(r,)) for r in cycle(pool, 64)]
        for t in threads:
            t.start()
        barrier.wait(BOUND)
        assert h.server.arrived.wait(BOUND)
        wait_until(lambda: False, 0.05)  # let the other 63 pile up on the fetch in flight
        h.server.release()
        for t in threads:
            t.join(BOUND)
        assert not any(t.is_alive() for t in threads), "deadlock"
        assert tally.count("valid", "accepted") == 64
        assert len({id(s) for s in seen}) == 1  # one snapshot, swapped in whole
        assert h.server.requests == 1
        assert h.source.calls == 1
        assert h.server.gate_expired == 0


def test_h3_offloaded_verification_runs_off_the_event_loop_thread() -> None:
    """500 averify() calls with run_sync: every ECDSA verify runs off the loop, which keeps ticking."""
    key = load_keys()["a"]
    sequence = itertools.count()
    with quiet_library_logs(), Harness([key]) as h:
        h.cache.refresh()
        requests = cycle(signed_pool(key), 500)

        async def main() -> tuple[list[object], LagProbe]:
            probe = LagProbe(interval=0.001, sequence=sequence)
            probe.start()
            await asyncio.sleep(0)
            results = await asyncio.gather(
                *(
                    h.verifier.averify(
                        r.method, r.url, r.headers, r.body, run_sync=asyncio.to_thread
                    )
                    for r in requests
                )
            )
            await probe.stop()
            return list(results), probe

        with counting_verify_primitive(None, sequence) as calls:
            results, probe = asyncio.run(main())
    assert len(results) == 500
    assert calls.count >= 500
    assert probe.thread_id not in calls.thread_ids  # never on the event loop's thread
    first, last = min(calls.order), max(calls.order)
    assert any(first < tick < last for tick in probe.ticks)  # the loop ran meanwhile
    assert h.source.calls == 1


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_h4_ttl_expiry_under_load_serves_stale_keys_while_one_refresh_runs(runtime: str) -> None:
    """TTL runs out under load: one refresh; every request verifies while that refresh is held."""
    key = load_keys()["a"]
    pool = signed_pool(key)
    with quiet_library_logs(), Harness([key]) as h:
        h.cache.refresh()
        old = h.cache.current()
        h.server.gate()
        h.advance(TTL + 1)
        held: dict[str, int] = {}

        def check_then_release() -> None:
            # Every request of the first burst has its verdict, the refresh still held.
            held.update(requests=h.server.requests, expired=h.server.gate_expired)
            h.server.release()

        plan = [
            *cycle(pool, 500),
            Step(
                check_then_release,
                drain=True,
                wait=h.server.arrived.is_set,  # polled without blocking an event loop
                keys_until=lambda ks: ks is not old,
            ),
            *cycle(pool, 100),
        ]
        tally = run_load(h.verifier, plan, runtime, source=h.source)
        assert tally.count("valid", "accepted") == 600
        assert tally.problems() == []
        assert held == {"requests": 2, "expired": 0}  # warm + the one refresh, never released early
        assert h.cache.stats.stale_serves >= 1
        assert h.server.requests == 2  # the second burst hit the refreshed set
        assert h.source.calls == 2


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_h5_rotation_under_load_has_no_false_rejects(runtime: str) -> None:
    """Two rotations under load (new key seconds after a fetch, old gone TTL + cooldown later)."""
    keys = load_keys()
    order = [keys["a"], keys["b"], keys["c"]]
    delta = TTL + REFRESH_COOLDOWN  # threat-model.md H5: refresh interval + cooldown
    with quiet_library_logs(), Harness(order[:1]) as h:
        h.cache.refresh()
        plan: list[Request | Step] = []
        for old, new in itertools.pairwise(order):
            old_pool, new_pool = signed_pool(old), signed_pool(new)
            # The old set expires: a TTL refresh runs under load.
            plan.append(Step(lambda: h.advance(TTL + 1), drain=True, settle=True))
            plan.extend(cycle(old_pool, 60))

            def publish(old=old, new=new) -> None:  # type: ignore[no-untyped-def]
                h.advance(2)  # published two seconds after that TTL refresh started
                h.server.publish(old, new)
                h.advance(3)  # and signed with a few seconds later

            plan.append(Step(publish, drain=True, settle=True))
            plan.extend(interleave(cycle(old_pool, 60), cycle(new_pool, 60)))
            plan.extend(unknown_kid_noise(new_pool[0], 10))

            def remove(new=new) -> None:  # type: ignore[no-untyped-def]
                h.server.publish(new)  # the old key stopped signing before this
                h.advance(delta)

            plan.append(Step(remove, drain=True, settle=True))
            plan.extend(cycle(new_pool, 60))
            plan.append(
                Step(drain=True, settle=True, keys_until=lambda ks, old=old: old.key_id not in ks)
            )
            plan.extend(
                Request("revoked", r.method, r.url, r.headers, r.body, frozenset({"unknown_key"}))
                for r in cycle(old_pool, 10)
            )
        tally = run_load(h.verifier, plan, runtime, source=h.source)
        assert tally.problems() == []
        assert tally.count("valid", "accepted") == tally.count("valid") == 2 * 240
        assert tally.count("revoked", "unknown_key") == 20
        assert tally.count("noise", "unknown_key") == 20
        # Per rotation: the TTL refresh, the refresh for the new kid, the TTL refresh
        # that drops the old one, and at most one unknown-kid refresh for the revoked
        # key; plus the warm-up.
        assert 1 + 2 * 3 <= h.source.calls <= 1 + 2 * 4
        assert h.cache.stats.kid_refreshes >= 2


def test_h6_garbage_requests_cost_no_more_ecdsa_than_well_formed_candidates() -> None:
    """10,000 hostile requests with valid-looking labels: ECDSA verifies <= policy-passing candidates."""
    key = load_keys()["a"]
    policy = Policy()
    weights = [1.0] * len(CHEAP_HOSTILE_KINDS) + [0.2, 0.03]
    kinds = [*CHEAP_HOSTILE_KINDS, "candidate", "many_labels"]
    assert set(kinds) == set(HOSTILE_KINDS)
    requests = list(hostile_requests(10_000, key=key, seed=6, kinds=kinds, weights=weights))
    budget = sum(r.candidates for r in requests)
    candidate_requests = sum(1 for r in requests if r.candidates)
    with quiet_library_logs(), Harness([key]) as h, counting_verify_primitive() as calls:
        h.cache.refresh()
        tally = run_load(h.verifier, requests, "threads", source=h.source, workers=4)
    assert tally.problems() == []
    assert tally.count(verdict="accepted") == 0
    assert candidate_requests > 100
    # Each candidate signature: at most policy.max_signatures labels x 2 base layouts.
    assert policy.max_signatures == 4
    assert candidate_requests <= calls.count <= budget
    # Unknown kids among them: at most one refresh per cooldown (the clock stands still).
    assert h.source.calls <= 2


@pytest.mark.parametrize("scenario", ["restart", "two-loops"])
def test_h7_the_cache_works_across_event_loops(scenario: str) -> None:
    """Loop restarts (with a refresh cancelled by a closing loop), or two loops at once, share one cache."""
    key = load_keys()["a"]
    pool = signed_pool(key)
    with quiet_library_logs(), Harness([key], fetch_timeout=5.0) as h:
        tally = Tally()
        if scenario == "restart":
            tally.merge(run_load(h.verifier, cycle(pool, 100), "asyncio", source=h.source))
            h.advance(TTL + 1)  # refreshed by a task of the second loop
            tally.merge(run_load(h.verifier, cycle(pool, 100), "asyncio", source=h.source))
            h.advance(TTL + 1)
            h.server.slow_seconds = 0.5
            h.server.mode = "slow"  # the third loop closes with its refresh still running
            tally.merge(run_load(h.verifier, cycle(pool, 100), "asyncio"))
            assert wait_until(h.source.idle)
            h.server.mode = "up"
            tally.merge(run_load(h.verifier, cycle(pool, 100), "asyncio", source=h.source))
            tally.merge(run_load(h.verifier, cycle(pool, 20), "threads", source=h.source))
            assert tally.count("valid", "accepted") == 420
            assert h.source.calls == 4  # cold, TTL, the cancelled one, its replacement
        else:
            h.server.gate()
            results: list[Tally] = []
            lock = threading.Lock()

            def run(runtime: str, n: int) -> None:
                out = run_load(h.verifier, cycle(pool, n), runtime, workers=4)
                with lock:
                    results.append(out)

            threads = [threading.Thread(target=run, args=("asyncio", 100)) for _ in range(2)]
            threads += [threading.Thread(target=run, args=("threads", 25)) for _ in range(4)]
            for t in threads:
                t.start()
            assert h.server.arrived.wait(BOUND)
            wait_until(lambda: False, 0.05)  # both loops and the threads join the flight
            h.server.release()
            for t in threads:
                t.join(BOUND)
            assert not any(t.is_alive() for t in threads)
            for out in results:
                tally.merge(out)
            assert tally.count("valid", "accepted") == 300
            assert h.source.calls == 1
        assert tally.problems() == []  # no "attached to a different loop", nothing escaped


# Growth of a bounded soak, from the end of its first cycle to the end: the negative
# cache (a few dozen unknown kids of ~30 characters), the compiled-head and URL memos
# (one URL, one signature head), the cache's snapshots (replaced, never accumulated).
# Measured: 17-40 KiB. 128 KiB over the 360 requests of the second cycle is under
# 370 bytes a request: less than one retained request (its headers alone are ~700
# bytes), and far less than the per-round state a leak in the rotation, refresh or
# event-loop handling would keep.
SOAK_GROWTH_BOUND = 128 * 1024


def test_h8_bounded_soak_keeps_memory_flat_and_fetches_bounded() -> None:
    """Two simulated 5-minute cycles of endpoint faults, rotation and kid noise: flat memory."""
    result = run_soak(rounds=60, segment=30.0, round_step=10.0, burst=12)
    assert result.problems() == []
    assert result.rounds == 60  # it stopped by itself
    assert result.rotations == 2
    valid = result.tally.count("valid")
    assert result.tally.count("valid", "accepted") == valid == 60 * 8
    assert result.tally.count("noise", "unknown_key") == 60 * 2
    assert result.fetches <= result.max_fetches
    assert result.stats["failures"] >= 4  # error, garbage, slow, refused and dropped segments
    assert result.growth < SOAK_GROWTH_BOUND, result.samples


class _CountingHandler(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.records += 1


def test_h8_unknown_kid_noise_keeps_the_log_volume_bounded() -> None:
    """2,000 requests with distinct forged kids log a bounded number of warnings (H8: logs bounded)."""
    key = load_keys()["a"]
    logger = logging.getLogger("upvest_verify")
    handler = _CountingHandler()
    with quiet_library_logs(), Harness([key]) as h:
        h.cache.refresh()
        logger.addHandler(handler)
        try:
            noise = unknown_kid_noise(signed_pool(key)[0], 2000)
            tally = run_load(h.verifier, noise, "threads", source=h.source, workers=4)
        finally:
            logger.removeHandler(handler)
    assert tally.count("noise", "unknown_key") == 2000
    # A line per fetch attempt, and a handful per cooldown window for the refusals (the
    # clock stands still: one window), whatever the number of forged kids.
    assert 1 <= handler.records <= h.source.calls + 10
