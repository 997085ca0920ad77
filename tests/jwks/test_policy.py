"""The cache policy as pure functions: freshness, staleness, cooldowns, plans, transitions."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from upvest_verify import ConfigurationError, JWKSError, KeySet, KeySetUnavailable, Reason
from upvest_verify.jwks import FetchResult
from upvest_verify.jwks._policy import (
    NEVER,
    Action,
    CachePolicy,
    CacheState,
    background_delay,
    check_key_types,
    effective_ttl,
    is_fresh,
    is_usable,
    kid_for_log,
    knows,
    load,
    may_fetch_expired,
    may_fetch_for_kid,
    plan_current,
    plan_refresh,
    plan_refresh_for,
    record_attempt,
    record_failure,
    record_success,
    refusal_cause,
    refusal_expiry,
    unavailable,
    usable_keys,
)

from .jwks_support import jwks, make_key

POLICY = CachePolicy(
    ttl=300, min_ttl=60, max_ttl=3600, max_stale=1000, refresh_cooldown=30, failure_cooldown=10
)
STRICT = CachePolicy(
    ttl=300, min_ttl=60, max_ttl=3600, max_stale=0, refresh_cooldown=30, failure_cooldown=10
)
KEYS = KeySet.from_jwks(jwks(make_key("k1")))
COLD = CacheState()
# Fetched at t=100 (an ordinary fetch), fresh until t=400, usable until t=1400.
WARM = CacheState(keys=KEYS, fetched_at=100, expires_at=400, last_attempt=100)
# The same, but the fetch at t=100 was a refresh for an unknown kid.
KID_REFRESHED = replace(WARM, last_kid_refresh=100)

SETTINGS = {
    "ttl": 300,
    "min_ttl": 60,
    "max_ttl": 3600,
    "max_stale": 86400,
    "refresh_cooldown": 30,
    "failure_cooldown": 10,
}


# ---- settings ------------------------------------------------------------------------------


def test_from_settings_builds_a_float_policy() -> None:
    """Valid settings become a policy of floats, field for field."""
    policy = CachePolicy.from_settings(**SETTINGS)
    assert policy == CachePolicy(300.0, 60.0, 3600.0, 86400.0, 30.0, 10.0)
    assert all(isinstance(v, float) for v in (policy.ttl, policy.max_stale))


@pytest.mark.parametrize(
    "change",
    [
        {"min_ttl": 300, "max_ttl": 300},
        {"min_ttl": 0.001, "ttl": 0.001},
        {"max_stale": 0},
        {"refresh_cooldown": 1e-9, "failure_cooldown": 1e-9},
    ],
    ids=["ttl-clamp-closed", "tiny-ttl", "strict", "tiny-cooldowns"],
)
def test_from_settings_accepts_the_boundaries(change: dict[str, float]) -> None:
    """min_ttl == ttl == max_ttl, max_stale=0 and tiny positive cooldowns are all allowed."""
    policy = CachePolicy.from_settings(**{**SETTINGS, **change})
    for name, value in change.items():
        assert getattr(policy, name) == value


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"refresh_cooldown": 0}, "refresh_cooldown"),
        ({"refresh_cooldown": math.inf}, "refresh_cooldown"),
        ({"failure_cooldown": 0}, "failure_cooldown"),
        ({"failure_cooldown": math.inf}, "failure_cooldown"),
        ({"min_ttl": 0, "ttl": 0}, "min_ttl"),
        ({"min_ttl": 301}, "min_ttl"),
        ({"max_ttl": 299}, "max_ttl"),
        ({"max_ttl": math.inf}, "max_ttl"),
        ({"max_stale": -0.5}, "max_stale"),
        ({"ttl": math.nan}, "ttl"),
        ({"ttl": "300"}, "ttl"),
    ],
    ids=[
        "no-kid-limit",
        "infinite-kid-cooldown",
        "no-failure-cooldown",
        "infinite-failure-cooldown",
        "zero-ttl",
        "min-above-ttl",
        "max-below-ttl",
        "infinite-max-ttl",
        "negative-stale",
        "nan",
        "string",
    ],
)
def test_from_settings_refuses_out_of_range(change: dict[str, object], match: str) -> None:
    """Each setting outside its range is a ConfigurationError naming the setting."""
    with pytest.raises(ConfigurationError, match=match):
        CachePolicy.from_settings(**{**SETTINGS, **change})  # type: ignore[arg-type]


def test_check_key_types() -> None:
    """Key types are a non-empty collection of known types, returned as a tuple."""
    assert check_key_types(["P-521", "P-256"]) == ("P-521", "P-256")
    for bad in ("P-521", (), ("RSA",)):
        with pytest.raises(ConfigurationError, match="key_types"):
            check_key_types(bad)  # type: ignore[arg-type]


# ---- TTL, freshness and staleness -------------------------------------------------------------


@pytest.mark.parametrize(
    ("max_age", "expected"),
    [
        (None, 300),
        (15, 60),
        (120, 120),
        (31536000, 3600),
        (0, 60),
        (math.nan, 300),
        (59.999, 60),
        (60, 60),
        (3600, 3600),
        (3600.001, 3600),
        (math.inf, 3600),
    ],
    ids=[
        "none->ttl",
        "below-min",
        "inside",
        "above-max",
        "zero",
        "nan",
        "just-below-min",
        "at-min",
        "at-max",
        "just-above-max",
        "infinite",
    ],
)
def test_effective_ttl_clamps_max_age(max_age: float | None, expected: float) -> None:
    """A response's max-age is clamped to [min_ttl, max_ttl]; without one the ttl applies (F14)."""
    assert effective_ttl(max_age, POLICY) == expected


def test_fresh_and_usable_windows() -> None:
    """Keys are fresh before the TTL ends and usable until max_stale after it."""
    assert not is_fresh(COLD, 0)
    assert not is_usable(COLD, 0, POLICY)
    assert is_fresh(WARM, 399.9)
    assert not is_fresh(WARM, 400)
    assert is_usable(WARM, 400, POLICY)
    assert is_usable(WARM, 1399.9, POLICY)
    assert not is_usable(WARM, 1400, POLICY)


def test_strict_max_stale_zero_means_no_stale_window() -> None:
    """With max_stale=0 expired keys are not usable at all."""
    assert not is_usable(WARM, 400, STRICT)
    assert is_usable(WARM, 399.9, STRICT)


def test_failure_cooldown_blocks_expired_fetch() -> None:
    """After a failed fetch, a cold or expired cache waits failure_cooldown before trying again."""
    failed = CacheState(last_attempt=50, last_failure=51)
    assert may_fetch_expired(COLD, 0, POLICY)
    assert not may_fetch_expired(failed, 60.9, POLICY)
    assert may_fetch_expired(failed, 61, POLICY)


def test_refresh_cooldown_counts_every_refresh_for_an_unknown_kid() -> None:
    """After a refresh for an unknown kid, the next one waits refresh_cooldown, failed or not."""
    assert may_fetch_for_kid(COLD, 0, POLICY)
    assert not may_fetch_for_kid(KID_REFRESHED, 129.9, POLICY)
    assert may_fetch_for_kid(KID_REFRESHED, 130, POLICY)
    failed = record_failure(record_attempt(WARM, 200, for_kid=True), 201, "OSError: down")
    assert not may_fetch_for_kid(failed, 229.9, POLICY)  # a failed attempt counts (K4)
    assert may_fetch_for_kid(failed, 230, POLICY)


def test_an_ordinary_fetch_holds_kid_refreshes_off_for_the_gap_only() -> None:
    """A cold, TTL, background or explicit fetch leaves the budget alone: 1 s of coalescing."""
    assert POLICY.refresh_gap == 1.0
    assert not may_fetch_for_kid(WARM, 100.9, POLICY)
    assert may_fetch_for_kid(WARM, 101, POLICY)
    assert plan_refresh_for(WARM, "rotated", 102, POLICY, False) is Action.FETCH
    # An ordinary fetch during the cooldown never extends it beyond the gap.
    ordinary_later = record_attempt(KID_REFRESHED, 129.5)
    assert not may_fetch_for_kid(ordinary_later, 130, POLICY)
    assert may_fetch_for_kid(ordinary_later, 130.5, POLICY)
    ordinary_early = record_attempt(KID_REFRESHED, 110)
    assert not may_fetch_for_kid(ordinary_early, 129.9, POLICY)
    assert may_fetch_for_kid(ordinary_early, 130, POLICY)


def test_a_failed_ordinary_fetch_holds_kid_refreshes_off_for_the_failure_cooldown() -> None:
    """While the key endpoint fails, refreshes for unknown kids wait failure_cooldown too (K6)."""
    failed = record_failure(record_attempt(WARM, 120), 125, "OSError: down")
    assert not may_fetch_for_kid(failed, 134.9, POLICY)
    assert may_fetch_for_kid(failed, 135, POLICY)


def test_knows_keys_and_rejected_kids() -> None:
    """A snapshot knows its usable kids and the kids it rejected; nothing is known while cold."""
    keys = KeySet.from_jwks(jwks(make_key("k1"), make_key("bad", crv="P-256")))
    assert knows(keys, "k1")
    assert knows(keys, "bad")
    assert not knows(keys, "other")
    assert not knows(None, "k1")


# ---- plans ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("state", "now", "in_flight", "expected"),
    [
        (WARM, 200, False, Action.SERVE),
        (WARM, 200, True, Action.SERVE),
        (WARM, 500, False, Action.SERVE_AND_REFRESH),
        (WARM, 500, True, Action.SERVE),
        (CacheState(KEYS, 100, 400, 450, 451), 455, False, Action.SERVE),
        (COLD, 0, False, Action.FETCH),
        (COLD, 0, True, Action.JOIN),
        (CacheState(last_attempt=0, last_failure=1), 5, False, Action.UNAVAILABLE),
        (CacheState(last_attempt=0, last_failure=1), 11, False, Action.FETCH),
        (WARM, 1400, False, Action.FETCH),
        (WARM, 1400, True, Action.JOIN),
        (CacheState(KEYS, 100, 400, 1400, 1401), 1405, False, Action.UNAVAILABLE),
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
def test_plan_current(state: CacheState, now: float, in_flight: bool, expected: Action) -> None:
    """current() serves fresh or usable keys at once and waits only when nothing usable is cached."""
    assert plan_current(state, now, POLICY, in_flight) is expected


@pytest.mark.parametrize(
    ("now", "expected"),
    [(399.9, Action.SERVE), (400, Action.SERVE_AND_REFRESH), (1399.9, Action.SERVE_AND_REFRESH)],
    ids=["last-fresh-instant", "ttl-ends", "last-stale-instant"],
)
def test_plan_current_at_the_ttl_and_stale_edges(now: float, expected: Action) -> None:
    """The TTL ends exactly at expires_at; the stale window ends exactly max_stale later."""
    assert plan_current(WARM, now, POLICY, False) is expected


def test_plan_current_strict_waits_at_the_ttl() -> None:
    """With max_stale=0 the first instant past the TTL fetches inline instead of serving stale."""
    assert plan_current(WARM, 399.9, STRICT, False) is Action.SERVE
    assert plan_current(WARM, 400, STRICT, False) is Action.FETCH
    assert plan_current(WARM, 400, STRICT, True) is Action.JOIN


@pytest.mark.parametrize(
    ("state", "kid", "now", "in_flight", "expected"),
    [
        (KID_REFRESHED, "k1", 110, False, Action.SERVE),
        (KID_REFRESHED, "k1", 110, True, Action.SERVE),
        (KID_REFRESHED, "new", 110, False, Action.REFUSE),
        (KID_REFRESHED, "new", 110, True, Action.JOIN),
        (KID_REFRESHED, "new", 130, False, Action.FETCH),
        (WARM, "new", 100.5, False, Action.REFUSE),
        (WARM, "new", 100.5, True, Action.JOIN),
        (WARM, "new", 101, False, Action.FETCH),
        (KID_REFRESHED, "x" * 256, 130, False, Action.FETCH),
        (KID_REFRESHED, "x" * 257, 130, False, Action.REFUSE),
        (KID_REFRESHED, "x" * 257, 130, True, Action.REFUSE),
    ],
    ids=[
        "known",
        "known-in-flight",
        "cooldown",
        "join",
        "allowed",
        "gap-after-ordinary-fetch",
        "gap-join",
        "after-the-gap",
        "longest-kid",
        "overlong-kid",
        "overlong-kid-in-flight",
    ],
)
def test_plan_refresh_for(
    state: CacheState, kid: str, now: float, in_flight: bool, expected: Action
) -> None:
    """refresh_for() serves a known kid, joins a flight, fetches when no limit holds, else refuses."""
    assert plan_refresh_for(state, kid, now, POLICY, in_flight) is expected


def test_plan_refresh_for_knows_rejected_kids() -> None:
    """A kid the snapshot rejected is answered from the snapshot (unsupported_key), not fetched."""
    keys = KeySet.from_jwks(jwks(make_key("k1"), make_key("bad", crv="P-256")))
    state = CacheState(keys=keys, fetched_at=0, expires_at=300, last_attempt=0)
    assert "bad" in keys.rejected
    assert plan_refresh_for(state, "bad", 1000, POLICY, False) is Action.SERVE


def test_plan_refresh_always_fetches_or_joins() -> None:
    """An explicit refresh ignores TTL and cooldowns but still shares a flight in progress."""
    assert plan_refresh(False) is Action.FETCH
    assert plan_refresh(True) is Action.JOIN


def test_background_delay() -> None:
    """The background refresher fetches at 80% of the TTL, cold at once, after failures later."""
    assert background_delay(COLD, 0, POLICY) <= 0
    assert background_delay(WARM, 100, POLICY) == pytest.approx(240)
    assert background_delay(WARM, 340, POLICY) == pytest.approx(0)
    assert background_delay(WARM, 400, POLICY) <= 0
    failed = CacheState(KEYS, 100, 400, 390, 391)
    assert background_delay(failed, 395, POLICY) == pytest.approx(6)
    cold_failed = CacheState(last_attempt=0, last_failure=1)
    assert background_delay(cold_failed, 5, POLICY) == pytest.approx(6)


def test_refusal_expiry_is_the_latest_limit_and_names_it() -> None:
    """A refused kid stays refused until every limit ran out; the log names the last one."""
    assert refusal_expiry(COLD, POLICY) == NEVER
    assert refusal_expiry(WARM, POLICY) == 101
    assert refusal_cause(WARM, POLICY) == "a fetch has just started"
    assert refusal_expiry(KID_REFRESHED, POLICY) == 130
    assert refusal_cause(KID_REFRESHED, POLICY) == "unknown-kid refresh cooldown"
    failed = replace(KID_REFRESHED, last_failure=125)
    assert refusal_expiry(failed, POLICY) == 135
    assert refusal_cause(failed, POLICY) == "failure cooldown"


def test_kid_for_log_escapes_and_truncates() -> None:
    """An attacker's kid is logged repr-escaped (no raw control characters) and cut to ~80."""
    assert kid_for_log("new-key") == "'new-key'"
    escaped = kid_for_log("a\nb\x1b[31m\u202e'\"")
    assert escaped.isprintable()
    assert "\n" not in escaped
    assert "\\n" in escaped
    long = kid_for_log("k" * 200)
    assert long == repr("k" * 77) + "..."
    assert kid_for_log("k" * 80) == repr("k" * 80)


def test_refresh_gap_settings() -> None:
    """refresh_gap defaults to 1 s, may be 0, never exceeds refresh_cooldown, and is checked."""
    assert CachePolicy.from_settings(**SETTINGS).refresh_gap == 1.0
    assert CachePolicy.from_settings(**SETTINGS, refresh_gap=0).refresh_gap == 0.0
    small = CachePolicy.from_settings(**{**SETTINGS, "refresh_cooldown": 0.25})
    assert small.refresh_gap == 0.25
    for bad in (-1, math.nan, "1"):
        with pytest.raises(ConfigurationError, match="refresh_gap"):
            CachePolicy.from_settings(**SETTINGS, refresh_gap=bad)  # type: ignore[arg-type]


# (seconds since the previous event, what happens): a fetch of the cache's own
# (cold, TTL, background, explicit), a failed one, or a lookup of an unknown kid.
_EVENTS = st.lists(
    st.tuples(
        st.floats(min_value=0, max_value=20, allow_nan=False),
        st.sampled_from(["ordinary", "ordinary-failed", "kid"]),
    ),
    max_size=60,
)


@settings(max_examples=300, deadline=None)
@given(_EVENTS)
def test_the_refresh_budget_holds_for_any_history(events: list[tuple[float, str]]) -> None:
    """Kid refreshes start >= refresh_cooldown apart and >= refresh_gap after any fetch;
    a kid lookup is refused only while one of the three limits holds (K4)."""
    state, now = WARM, 100.0
    kid_refreshes: list[float] = []
    for delta, event in events:
        now += delta
        if event != "kid":
            state = record_attempt(state, now)
            if event == "ordinary-failed":
                state = record_failure(state, now, "OSError: down")
            continue
        before = state
        action = plan_refresh_for(state, "unknown", now, POLICY, False)
        holds = (
            now < before.last_kid_refresh + 30
            or now < before.last_attempt + 1
            or now < before.last_failure + 10
        )
        assert (action is Action.REFUSE) is holds
        if action is Action.FETCH:
            assert all(now - t >= 30 for t in kid_refreshes)
            kid_refreshes.append(now)
            state = record_attempt(state, now, for_kid=True)
        else:
            assert refusal_expiry(before, POLICY) > now


# ---- transitions and outcomes ---------------------------------------------------------------


def test_record_attempt_uses_the_budget_only_for_an_unknown_kid() -> None:
    """Every fetch moves last_attempt; only a fetch for an unknown kid moves last_kid_refresh."""
    state = record_attempt(WARM, 200)
    assert state.last_attempt == 200
    assert state.last_kid_refresh == NEVER
    assert (state.keys, state.fetched_at, state.expires_at) == (KEYS, 100, 400)
    assert may_fetch_for_kid(state, 201, POLICY)
    state = record_attempt(WARM, 200, for_kid=True)
    assert (state.last_attempt, state.last_kid_refresh) == (200, 200)
    assert not may_fetch_for_kid(state, 229.9, POLICY)
    assert may_fetch_for_kid(state, 230, POLICY)


def test_record_success_swaps_the_snapshot_and_forgets_failures() -> None:
    """A successful fetch sets keys, TTL from its start, and clears the failure and its cooldown."""
    failed = record_failure(WARM, 450, "OSError: down")
    new = KeySet.from_jwks(jwks(make_key("k2")))
    state = record_success(failed, new, 460, 300)
    assert state.keys is new
    assert (state.fetched_at, state.expires_at) == (460, 760)
    assert state.last_failure == NEVER
    assert state.error == ""
    assert may_fetch_expired(state, 460, POLICY)


def test_record_success_of_an_older_fetch_changes_nothing() -> None:
    """A fetch started before the current snapshot's fetch never replaces it (K5: no revival)."""
    old = KeySet.from_jwks(jwks(make_key("k-old")))
    assert record_success(WARM, old, 99.9, 300) is WARM
    assert record_success(WARM, old, 100, 300).keys is old  # same start: the later result wins


def test_record_failure_keeps_the_snapshot() -> None:
    """A failed fetch keeps the last good keys and starts the failure cooldown."""
    state = record_failure(WARM, 450, "TimeoutError: slow")
    assert state.keys is KEYS
    assert state.last_failure == 450
    assert state.error == "TimeoutError: slow"
    assert plan_current(state, 455, POLICY, False) is Action.SERVE
    assert plan_current(state, 460, POLICY, False) is Action.SERVE_AND_REFRESH


def test_usable_keys_refuses_a_set_without_usable_keys() -> None:
    """A JWKS whose keys are all unusable is a failed fetch naming why; one usable key suffices."""
    mixed = json.dumps(jwks(make_key("k1"), make_key("p256", crv="P-256"))).encode()
    assert list(usable_keys(mixed, ("P-521",))) == ["k1"]
    with pytest.raises(JWKSError, match=r"no usable key \(empty\)"):
        usable_keys(b'{"keys": []}', ("P-521",))
    only_p256 = json.dumps(jwks(make_key("p256", crv="P-256"))).encode()
    with pytest.raises(JWKSError, match="p256"):
        usable_keys(only_p256, ("P-521",))
    assert "p256" in usable_keys(only_p256, ("P-256",))


def test_load_checks_the_result_type_and_clamps_the_ttl() -> None:
    """A source's result becomes (snapshot, clamped TTL); anything but a FetchResult is a TypeError."""
    body = json.dumps(jwks(make_key("k1"))).encode()
    keys, ttl = load(FetchResult(body, max_age=15), ("P-521",), POLICY)
    assert list(keys) == ["k1"]
    assert ttl == 60
    assert load(FetchResult(body), ("P-521",), POLICY)[1] == 300
    with pytest.raises(TypeError, match="not FetchResult"):
        load(body, ("P-521",), POLICY)  # type: ignore[arg-type]


def test_unavailable_names_the_cause() -> None:
    """keys_unavailable (503) says whether nothing was ever fetched or the cache went stale."""
    cold = unavailable(COLD)
    assert isinstance(cold, KeySetUnavailable)
    assert cold.reason is Reason.KEYS_UNAVAILABLE
    assert cold.status_code == 503
    assert "no key set fetched yet" in str(cold)
    stale = unavailable(record_failure(WARM, 1500, "OSError: down"))
    assert "stale beyond max_stale" in str(stale)
    assert "OSError: down" in str(stale)
