"""Key-endpoint faults during 500 concurrent verifications, and flat memory under load.

threat-model.md §6 group F, bounded: a real JWKS server on 127.0.0.1 is up, refuses
connections, drops them, answers 500, stalls past the source's timeout, answers
garbage, or rotates its keys while 500 webhooks are verified at once, by a thread pool
(``Verifier.verify``) and by asyncio tasks (``Verifier.averify``, the check offloaded to
a worker thread). Every tenth request names an unknown kid. Each scenario asserts that
no valid webhook is rejected (signed with a key the cache had, or with a rotated-in key
once it was published for longer than the refresh cooldown), that every other request
gets its reason code, that no exception but ``VerificationError`` escapes, and that the
fetch attempts stay within what the cache's rules allow (K4-K6), counted by the source
(refused connections included) and by the server.

The memory tests trace allocations (``tracemalloc``) over thousands of verifications
and hostile requests, each distinct and built while tracing, so anything the library
kept from a request shows as growth; ``benchmarks/soak.py`` runs the long versions.
"""

from __future__ import annotations

import pytest
from load_helpers import (
    GARBAGE_BODIES,
    Harness,
    MemoryProbe,
    ScenarioResult,
    Tally,
    counting_verify_primitive,
    distinct_valid_requests,
    hostile_requests,
    load_keys,
    quiet_library_logs,
    run_fault_scenario,
    verify_stream,
)

RUNTIMES = ["threads", "asyncio"]
N = 500


def _held(result: ScenarioResult) -> ScenarioResult:
    assert result.problems() == [], result.summary()
    return result


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_cold_cache_with_the_endpoint_up_fetches_once_for_500_requests(runtime: str) -> None:
    """500 concurrent requests on a cold cache share one fetch; every valid webhook verifies."""
    result = _held(run_fault_scenario("up-cold", runtime, n=N))
    assert result.tally.count("valid", "accepted") == 450
    assert result.tally.count("noise", "unknown_key") == 50
    assert result.http_requests == result.fetches
    assert 1 <= result.fetches <= 2  # the cold fetch, at most one unknown-kid refresh


@pytest.mark.parametrize("runtime", RUNTIMES)
@pytest.mark.parametrize("mode", ["refused", "error"])
def test_failing_refresh_keeps_serving_the_cached_keys(mode: str, runtime: str) -> None:
    """Endpoint refusing or answering 500 after the TTL: stale keys verify all, then it recovers (F4)."""
    result = _held(run_fault_scenario(f"{mode}-warm", runtime, n=N))
    assert result.tally.count("valid", "accepted") == 460
    assert result.tally.count("valid") == 460
    assert result.tally.count("noise", "unknown_key") == 40
    assert result.stats["failures"] == 1
    assert result.stats["stale_serves"] >= 1
    # Warm, one failed refresh (failure cooldown after it), one successful refresh.
    assert 3 <= result.fetches <= 4
    if mode == "refused":
        assert result.http_requests == result.fetches - 1  # the refused one never arrived


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_stalled_refresh_never_delays_requests_with_known_keys(runtime: str) -> None:
    """Endpoint stalling past the source's timeout: stale keys verify all, one attempt (F6)."""
    result = _held(run_fault_scenario("slow-warm", runtime, n=N))
    assert result.tally.count("valid", "accepted") == 455
    assert result.tally.count("noise", "unknown_key") == 45
    assert result.stats["failures"] == 1
    assert 2 <= result.fetches <= 3


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_garbage_documents_never_replace_the_last_good_set(runtime: str) -> None:
    """Non-JSON and wrongly shaped JWKS at every refresh: stale keys verify all (F8, K2, K5)."""
    result = _held(run_fault_scenario("garbage-warm", runtime, n=N))
    shapes = len(GARBAGE_BODIES)
    assert result.tally.count("valid", "accepted") == result.tally.count("valid") > 400
    assert result.stats["failures"] == shapes  # every garbage document is a failed fetch
    assert result.fetches <= 1 + 2 * shapes  # one per failure cooldown, not one per request


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_key_rotation_during_load_has_no_false_rejects(runtime: str) -> None:
    """Key B added and used, key A removed during the load: no valid webhook fails (F2, F10)."""
    result = _held(run_fault_scenario("rotating", runtime, n=N))
    assert result.tally.count("valid", "accepted") == result.tally.count("valid") >= 450
    # Once the fetch that dropped A is in, A is refused (removal is authoritative).
    assert result.tally.count("revoked", "unknown_key") == result.tally.count("revoked") == 25
    assert 3 <= result.fetches <= 6


@pytest.mark.parametrize("runtime", RUNTIMES)
@pytest.mark.parametrize("mode", ["refused", "error", "slow", "garbage"])
def test_cold_cache_with_the_endpoint_down_gives_keys_unavailable_after_one_attempt(
    mode: str, runtime: str
) -> None:
    """Cold cache, endpoint failing: all 500 get keys_unavailable; one fetch attempt (F5, K6)."""
    result = _held(run_fault_scenario(f"{mode}-cold", runtime, n=N))
    assert result.tally.count("valid", "keys_unavailable") == N
    assert result.fetches == 1


# ---- memory ------------------------------------------------------------------------------------

# Growth is measured from a mark taken after a warm-up to the end, after a full
# collection. The requests are built while tracing, one at a time, so any object the
# library keeps from a request is traced growth. With a fixed URL the library's
# bounded memos (compiled signature heads, URL splits, unknown kids) hold a handful of
# entries here; measured growth is about 20 KiB for valid webhooks and 50 KiB for
# hostile requests (interpreter caches, the negative cache of unknown kids).
#
# Valid webhooks: 128 KiB over 5,000 verifications is under 27 bytes a request, less
# than one retained object per request (a request's own headers and body take ~1 KiB).
VALID_GROWTH_BOUND = 128 * 1024
# Hostile requests (500 bytes to 20 KiB each): 1 MiB over 2,000 is under 525 bytes a
# request, less than one retained header value per request; and far below the ~1 MiB
# the negative cache may legitimately hold at its cap (1,024 kids of <= 256 characters)
# plus the compiled-head memo (256 heads of <= 2 KiB), which these inputs never fill.
HOSTILE_GROWTH_BOUND = 1024 * 1024


def test_memory_stays_flat_over_5000_verifications() -> None:
    """5,000 distinct valid webhooks through a JWKS-cached Verifier leave no traced growth."""
    key = load_keys()["a"]
    tally = Tally()
    with (
        quiet_library_logs(),
        Harness([key]) as h,
        counting_verify_primitive(True) as calls,  # no ECDSA: seconds, not minutes
        MemoryProbe() as memory,
    ):
        verify_stream(h.verifier, distinct_valid_requests(300, key=key), tally)
        memory.mark()
        verify_stream(h.verifier, distinct_valid_requests(5000, key=key, start=300), tally)
        growth = memory.growth()
    assert tally.count("valid", "accepted") == 5300
    assert tally.problems() == []
    assert calls.count == 5300
    assert h.source.calls == 1
    assert growth < VALID_GROWTH_BOUND, f"{growth} bytes retained over 5,000 verifications"


def test_memory_stays_flat_over_2000_hostile_requests() -> None:
    """2,000 distinct hostile requests (unknown kids, garbage headers...) leave no traced growth."""
    key = load_keys()["a"]
    tally = Tally()
    with (
        quiet_library_logs(),
        Harness([key]) as h,
        counting_verify_primitive(False) as calls,
        MemoryProbe() as memory,
    ):
        verify_stream(h.verifier, hostile_requests(100, key=key, seed=1), tally)
        memory.mark()
        verify_stream(h.verifier, hostile_requests(2000, key=key, seed=2), tally)
        growth = memory.growth()
    assert tally.problems() == []
    assert tally.count(verdict="accepted") == 0
    assert tally.count("unknown_kid", "unknown_key") > 100
    assert calls.count <= 2 * (tally.count("candidate") + 4 * tally.count("many_labels"))
    assert h.source.calls <= 2  # unknown kids: at most one refresh per cooldown
    assert growth < HOSTILE_GROWTH_BOUND, f"{growth} bytes retained over 2,000 hostile requests"


def test_memory_stays_flat_over_600_huge_distinct_urls() -> None:
    """600 requests, each with its own 16-64 KiB URL, leave no traced growth (URL memo bounded)."""
    key = load_keys()["a"]
    tally = Tally()
    with (
        quiet_library_logs(),
        Harness([key]) as h,
        counting_verify_primitive(False) as calls,
        MemoryProbe() as memory,
    ):
        verify_stream(h.verifier, hostile_requests(50, key=key, seed=3, huge_url=16384), tally)
        memory.mark()
        verify_stream(h.verifier, hostile_requests(600, key=key, seed=4, huge_url=16384), tally)
        growth = memory.growth()
    assert tally.count("huge_url") == 650
    assert tally.problems() == []  # unknown_key, or malformed_header past the covered-size cap
    assert calls.count == 0
    # 600 URLs average 40 KiB (24 MiB in all): keeping one in 24 would exceed this.
    assert growth < HOSTILE_GROWTH_BOUND, f"{growth} bytes retained over 600 huge URLs"
