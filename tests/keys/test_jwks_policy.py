"""The cache policy as pure functions: freshness, staleness, cooldowns, max-age parsing."""

from __future__ import annotations

import math

import pytest
from _jwks_helpers import jwks, make_key

from upvest_verify import KeySet
from upvest_verify.jwks import (
    FetchResult,
    _Action,
    _background_delay,
    _CachePolicy,
    _CacheState,
    _effective_ttl,
    _is_fresh,
    _is_usable,
    _may_fetch_expired,
    _may_fetch_for_kid,
    _plan_current,
    _plan_refresh,
    _plan_refresh_for,
)

POLICY = _CachePolicy(
    ttl=300, min_ttl=60, max_ttl=3600, max_stale=1000, refresh_cooldown=30, failure_cooldown=10
)
KEYS = KeySet.from_jwks(jwks(make_key("k1")))
COLD = _CacheState()
# Fetched at t=100, fresh until t=400, usable until t=1400.
WARM = _CacheState(keys=KEYS, fetched_at=100, expires_at=400, last_attempt=100)


@pytest.mark.parametrize(
    ("max_age", "expected"),
    [(None, 300), (15, 60), (120, 120), (31536000, 3600), (0, 60), (math.nan, 300)],
    ids=["none->ttl", "below-min", "inside", "above-max", "zero", "nan"],
)
def test_effective_ttl_clamps_max_age(max_age: float | None, expected: float) -> None:
    """A response's max-age is clamped to [min_ttl, max_ttl]; without one the ttl applies (F14)."""
    assert _effective_ttl(max_age, POLICY) == expected


def test_fresh_and_usable_windows() -> None:
    """Keys are fresh before the TTL ends and usable until max_stale after it."""
    assert not _is_fresh(COLD, 0)
    assert not _is_usable(COLD, 0, POLICY)
    assert _is_fresh(WARM, 399.9)
    assert not _is_fresh(WARM, 400)
    assert _is_usable(WARM, 400, POLICY)
    assert _is_usable(WARM, 1399.9, POLICY)
    assert not _is_usable(WARM, 1400, POLICY)


def test_strict_max_stale_zero_means_no_stale_window() -> None:
    """With max_stale=0 expired keys are not usable at all."""
    strict = _CachePolicy(
        ttl=300, min_ttl=60, max_ttl=3600, max_stale=0, refresh_cooldown=30, failure_cooldown=10
    )
    assert not _is_usable(WARM, 400, strict)


def test_failure_cooldown_blocks_expired_fetch() -> None:
    """After a failed fetch, a cold or expired cache waits failure_cooldown before trying again."""
    failed = _CacheState(last_attempt=50, last_failure=51)
    assert _may_fetch_expired(COLD, 0, POLICY)
    assert not _may_fetch_expired(failed, 60.9, POLICY)
    assert _may_fetch_expired(failed, 61, POLICY)


def test_refresh_cooldown_counts_every_attempt() -> None:
    """An unknown kid may refresh only refresh_cooldown after the last attempt, failed or not."""
    assert _may_fetch_for_kid(COLD, 0, POLICY)
    assert not _may_fetch_for_kid(WARM, 129.9, POLICY)
    assert _may_fetch_for_kid(WARM, 130, POLICY)
    failed = _CacheState(
        keys=KEYS, fetched_at=0, expires_at=300, last_attempt=100, last_failure=125
    )
    assert not _may_fetch_for_kid(failed, 130, POLICY)  # the failure cooldown runs to 135
    assert _may_fetch_for_kid(failed, 135, POLICY)


@pytest.mark.parametrize(
    ("state", "now", "in_flight", "expected"),
    [
        (WARM, 200, False, _Action.SERVE),
        (WARM, 200, True, _Action.SERVE),
        (WARM, 500, False, _Action.SERVE_AND_REFRESH),
        (WARM, 500, True, _Action.SERVE),
        (_CacheState(KEYS, 100, 400, 450, 451), 455, False, _Action.SERVE),
        (COLD, 0, False, _Action.FETCH),
        (COLD, 0, True, _Action.JOIN),
        (_CacheState(last_attempt=0, last_failure=1), 5, False, _Action.UNAVAILABLE),
        (_CacheState(last_attempt=0, last_failure=1), 11, False, _Action.FETCH),
        (WARM, 1400, False, _Action.FETCH),
        (WARM, 1400, True, _Action.JOIN),
        (_CacheState(KEYS, 100, 400, 1400, 1401), 1405, False, _Action.UNAVAILABLE),
    ],
    ids=[
        "fresh",
        "fresh-in-flight",
        "expired-refresh-detached",
        "expired-in-flight-serve-stale",
        "expired-failure-cooldown-serve-stale",
        "cold-fetch",
        "cold-join",
        "cold-failure-cooldown",
        "cold-after-cooldown",
        "beyond-max-stale-fetch",
        "beyond-max-stale-join",
        "beyond-max-stale-cooldown",
    ],
)
def test_plan_current(state: _CacheState, now: float, in_flight: bool, expected: _Action) -> None:
    """current() serves fresh or usable keys at once and waits only when nothing usable is cached."""
    assert _plan_current(state, now, POLICY, in_flight) is expected


@pytest.mark.parametrize(
    ("kid", "now", "in_flight", "expected"),
    [
        ("k1", 110, False, _Action.SERVE),
        ("new", 110, False, _Action.REFUSE),
        ("new", 110, True, _Action.JOIN),
        ("new", 130, False, _Action.FETCH),
        ("x" * 257, 130, False, _Action.REFUSE),
        ("x" * 257, 130, True, _Action.REFUSE),
    ],
    ids=["known", "cooldown", "join", "allowed", "overlong-kid", "overlong-kid-in-flight"],
)
def test_plan_refresh_for(kid: str, now: float, in_flight: bool, expected: _Action) -> None:
    """refresh_for() serves a known kid, joins a flight, fetches once per cooldown, else refuses."""
    assert _plan_refresh_for(WARM, kid, now, POLICY, in_flight) is expected


def test_plan_refresh_for_knows_rejected_kids() -> None:
    """A kid the snapshot rejected is answered from the snapshot (unsupported_key), not fetched."""
    keys = KeySet.from_jwks(jwks(make_key("k1"), make_key("bad", crv="P-256")))
    state = _CacheState(keys=keys, fetched_at=0, expires_at=300, last_attempt=0)
    assert "bad" in keys.rejected
    assert _plan_refresh_for(state, "bad", 1000, POLICY, False) is _Action.SERVE


def test_plan_refresh_always_fetches_or_joins() -> None:
    """An explicit refresh ignores TTL and cooldowns but still shares a flight in progress."""
    assert _plan_refresh(WARM, False) is _Action.FETCH
    assert _plan_refresh(WARM, True) is _Action.JOIN


def test_background_delay() -> None:
    """The background refresher fetches at 80% of the TTL, cold at once, after failures later."""
    assert _background_delay(COLD, 0, POLICY) <= 0
    assert _background_delay(WARM, 100, POLICY) == pytest.approx(240)
    assert _background_delay(WARM, 400, POLICY) <= 0
    failed = _CacheState(KEYS, 100, 400, 390, 391)
    assert _background_delay(failed, 395, POLICY) == pytest.approx(6)


@pytest.mark.parametrize(
    ("cache_control", "age", "expected"),
    [
        (None, None, None),
        ("max-age=120", None, 120.0),
        ("public, max-age=600, must-revalidate", None, 600.0),
        ('max-age="90"', None, 90.0),
        ("MAX-AGE=45", None, 45.0),
        ("max-age=100, max-age=5", None, 100.0),
        ("max-age=120", "30", 90.0),
        ("max-age=120", "500", 0.0),
        ("max-age=120", "bogus", 120.0),
        ("no-store", None, 0.0),
        ("max-age=600, no-cache", None, 0.0),
        ('private="a, b", max-age=70', None, 70.0),
        ("max-age=-5", None, None),
        ("max-age=1.5", None, None),
        ("max-age=abc, max-age=80", None, 80.0),
        ("garbage;;, max-age=33", None, 33.0),
        ("max-age=99999999999999999999", None, 2147483648.0),
        ("public", None, None),
        ('max-age=60, "unterminated', None, 60.0),
    ],
)
def test_fetch_result_from_http(
    cache_control: str | None, age: str | None, expected: float | None
) -> None:
    """Cache-Control max-age (RFC 9111 §5.2.2.1) minus Age is parsed leniently but safely."""
    result = FetchResult.from_http(b"{}", cache_control=cache_control, age=age)
    assert result.body == b"{}"
    assert result.max_age == expected
