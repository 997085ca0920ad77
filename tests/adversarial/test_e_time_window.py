"""Threat model §6 group E: the time window, clocks and re-delivery."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest
from adversarial_helpers import (
    DIALECTS,
    REFERENCE_NOW,
    accept,
    header,
    no_swallowed_errors,
    reason,
    resign,
    sign,
    signature_params_of,
)

from upvest_verify import KeySet, Policy, VerificationError, VerifiedWebhook, Verifier
from upvest_verify.jwks import FetchResult, JWKSCache
from upvest_verify.ledger import MemoryReplayStore
from upvest_verify.testing import ManualClock, SignedWebhook, SigningKey, generate_key, make_jwks

SKEW = Policy().skew
MAX_AGE = Policy().max_age
MAX_WINDOW = Policy().max_window
assert MAX_WINDOW is not None


# --- E1-E3 ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("dialect", "digest"), DIALECTS)
def test_e1_fresh_webhook(p521_key: SigningKey, key_set: KeySet, dialect: str, digest: str) -> None:
    """created = now, expires = now + 60 verifies and reports both."""
    result = accept(sign(p521_key, dialect, expires=REFERENCE_NOW + 60), key_set)
    assert (result.created, result.expires) == (REFERENCE_NOW, REFERENCE_NOW + 60)


@pytest.mark.parametrize("skew", [0, 5, 60])
@pytest.mark.parametrize(
    ("offset", "verdict"),
    [(-1, "accept"), (0, "accept"), (1, "expired"), (3600, "expired")],
    ids=["before-boundary", "boundary", "one-past", "hour-past"],
)
def test_e2_expires_and_its_boundary(
    p521_key: SigningKey, key_set: KeySet, skew: int, offset: int, verdict: str
) -> None:
    """now == expires + skew is accepted (the defined boundary); one second later is expired."""
    created = REFERENCE_NOW - 100
    s = sign(p521_key, created=created, expires=created + 60)
    now = created + 60 + skew + offset
    policy = Policy(skew=skew)
    if verdict == "accept":
        assert accept(s, key_set, now=now, policy=policy).expires == created + 60
    else:
        assert reason(s, key_set, now=now, policy=policy) == verdict


@pytest.mark.parametrize(
    ("created_offset", "verdict"),
    [
        (300, "created_in_future"),
        (SKEW + 1, "created_in_future"),
        (SKEW, "accept"),
        (SKEW - 1, "accept"),
        (-1, "accept"),
    ],
    ids=["five-minutes", "skew-plus-one", "skew", "skew-minus-one", "past"],
)
def test_e3_created_in_the_future(
    p521_key: SigningKey, key_set: KeySet, created_offset: float, verdict: str
) -> None:
    """created beyond now + skew is created_in_future; up to the skew it is accepted."""
    s = sign(p521_key, created=int(REFERENCE_NOW + created_offset))
    if verdict == "accept":
        assert accept(s, key_set).created == int(REFERENCE_NOW + created_offset)
    else:
        assert reason(s, key_set) == verdict


# --- E4-E7: parameters ----------------------------------------------------------------------


@pytest.mark.parametrize(("dialect", "digest"), DIALECTS)
def test_e4_created_missing(
    p521_key: SigningKey, key_set: KeySet, dialect: str, digest: str
) -> None:
    """A correctly signed signature without created is malformed_header."""
    s = sign(p521_key, dialect)
    params = signature_params_of(s).replace(f";created={REFERENCE_NOW}", "")
    assert "created" not in params
    headers = resign(p521_key, s, params, layout=dialect)
    assert reason(s, key_set, headers=headers) == "malformed_header"


@pytest.mark.parametrize(
    ("age", "verdict"),
    [(0, "accept"), (MAX_AGE, "accept"), (MAX_AGE + 1, "expired"), (86400, "expired")],
    ids=["fresh", "max-age", "max-age-plus-one", "a-day"],
)
def test_e4_expires_missing_uses_max_age(
    p521_key: SigningKey, key_set: KeySet, age: float, verdict: str
) -> None:
    """Without expires, created may be at most max_age old."""
    s = sign(p521_key, ttl=None)
    assert "expires" not in header(s.headers, "signature-input")
    if verdict == "accept":
        assert accept(s, key_set, now=REFERENCE_NOW + age).expires is None
    else:
        assert reason(s, key_set, now=REFERENCE_NOW + age) == verdict


@pytest.mark.parametrize("delta", [0, -1, -3600], ids=["equal", "one-before", "hour-before"])
def test_e5_expires_not_after_created(p521_key: SigningKey, key_set: KeySet, delta: int) -> None:
    """expires <= created is expired, even while now is inside both."""
    s = sign(p521_key, created=REFERENCE_NOW, expires=REFERENCE_NOW + delta)
    assert reason(s, key_set) == "expired"


@pytest.mark.parametrize(
    ("window", "verdict"),
    [(MAX_WINDOW, "accept"), (MAX_WINDOW + 1, "expired"), (365 * 86400, "expired")],
    ids=["max-window", "max-window-plus-one", "one-year"],
)
def test_e6_window_cap(p521_key: SigningKey, key_set: KeySet, window: float, verdict: str) -> None:
    """expires - created above max_window is expired (a year-long capture is no good)."""
    s = sign(p521_key, expires=int(REFERENCE_NOW + window))
    if verdict == "accept":
        assert accept(s, key_set).expires == int(REFERENCE_NOW + window)
    else:
        assert reason(s, key_set) == verdict


def test_e6_max_age_bounds_created_only_without_expires(
    p521_key: SigningKey, key_set: KeySet
) -> None:
    """now - created > max_age is expired without expires; with expires, expires and the
    window cap decide (Policy.max_age: "without expires, the oldest acceptable created")."""
    created = int(REFERENCE_NOW - MAX_AGE - 1)
    without = sign(p521_key, created=created, ttl=None)
    assert reason(without, key_set) == "expired"
    within_window = sign(p521_key, created=created, expires=REFERENCE_NOW + 60)
    assert REFERENCE_NOW + 60 - created <= MAX_WINDOW
    assert accept(within_window, key_set).created == created


@pytest.mark.parametrize(("dialect", "digest"), DIALECTS)
@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("created=C", "created=C.5"),
        ("created=C", 'created="C"'),
        ("created=C", "created"),
        ("created=C", "created=?1"),
        ("created=C", "created=-5"),
        ("created=C", "created=1" + "0" * 15),
        ("created=C", "created=:AAAA:"),
        ("expires=E", "expires=?0"),
        ("expires=E", "expires=?1"),
        ("expires=E", 'expires="E"'),
        ("expires=E", "expires=E.0"),
        ("expires=E", "expires=-1"),
    ],
    ids=[
        "created-decimal",
        "created-string",
        "created-bare",
        "created-true",
        "created-negative",
        "created-16-digits",
        "created-bytes",
        "expires-false",
        "expires-true",
        "expires-string",
        "expires-decimal",
        "expires-negative",
    ],
)
def test_e7_ill_typed_time_parameters(
    p521_key: SigningKey, key_set: KeySet, dialect: str, digest: str, old: str, new: str
) -> None:
    """created/expires must be plain non-negative integers of at most 15 digits."""
    s = sign(p521_key, dialect)
    values = {"C": str(REFERENCE_NOW), "E": str(REFERENCE_NOW + 60)}
    old = old[:-1] + values[old[-1]]
    new = new.replace("C", values["C"]).replace("E", values["E"])
    params = signature_params_of(s)
    assert old in params
    headers = resign(p521_key, s, params.replace(old, new), layout=dialect)
    assert reason(s, key_set, headers=headers) == "malformed_header"


# --- E8: no dependence on the machine's clock or time zone -------------------------------------


@pytest.fixture
def time_zones(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Time zones to switch between (POSIX tzset); the original is restored afterwards."""
    if not hasattr(time, "tzset"):
        pytest.skip("time.tzset is POSIX only")
    zones = ["UTC", "America/Los_Angeles", "Asia/Kolkata", "Pacific/Kiritimati", "Etc/GMT+12"]
    yield zones
    monkeypatch.undo()
    time.tzset()


def _verdicts(key: SigningKey, keys: KeySet) -> list[str]:
    cases: list[tuple[SignedWebhook, float]] = [
        (sign(key, deterministic=True, nonce="n"), REFERENCE_NOW),
        (sign(key, deterministic=True, nonce="n"), REFERENCE_NOW + 60 + SKEW + 1),
        (sign(key, deterministic=True, nonce="n", created=REFERENCE_NOW + 120), REFERENCE_NOW),
        (sign(key, deterministic=True, nonce="n", ttl=None), REFERENCE_NOW + MAX_AGE + 1),
    ]
    out = []
    for s, now in cases:
        verifier = Verifier(keys, clock=lambda now=now: now)
        with no_swallowed_errors():
            try:
                result: VerifiedWebhook = verifier.verify(s.method, s.url, s.headers, s.body)
                out.append(f"accept:{result.created}")
            except VerificationError as e:
                out.append(e.reason.value)
    return out


def test_e8_results_do_not_depend_on_time_zone_or_system_clock(
    p521_key: SigningKey,
    key_set: KeySet,
    monkeypatch: pytest.MonkeyPatch,
    time_zones: list[str],
) -> None:
    """At a fixed reference_now, every time zone and any system clock give the same verdicts."""
    expected = ["accept:1700000000", "expired", "created_in_future", "expired"]
    for zone in time_zones:
        monkeypatch.setenv("TZ", zone)
        time.tzset()
        for system_now in (0.0, REFERENCE_NOW - 86400 * 365, 4_000_000_000.0):
            monkeypatch.setattr(time, "time", lambda system_now=system_now: system_now)
            assert _verdicts(p521_key, key_set) == expected, (zone, system_now)


# --- E9-E11: re-delivery and replay ----------------------------------------------------------


@pytest.mark.parametrize(("dialect", "digest"), DIALECTS)
def test_e9_replay_identity_is_keyid_and_nonce(
    p521_key: SigningKey, key_set: KeySet, dialect: str, digest: str
) -> None:
    """Each delivery reports (keyid, nonce): equal for a re-delivery, distinct for a new signature."""
    s = sign(p521_key, dialect)
    first, second = accept(s, key_set), accept(s, key_set)
    assert first.nonce is not None
    assert (first.key_id, first.nonce) == (second.key_id, second.nonce)
    fresh = accept(sign(p521_key, dialect), key_set)
    assert (fresh.key_id, fresh.nonce) != (first.key_id, first.nonce)


@pytest.mark.parametrize(("dialect", "digest"), DIALECTS)
def test_e9_replay_cache_refuses_the_second_delivery(
    p521_key: SigningKey, key_set: KeySet, dialect: str, digest: str
) -> None:
    """With a replay store, a handled request sent again inside its window is replayed."""
    clock = ManualClock(REFERENCE_NOW + 30)
    verifier = Verifier(key_set, clock=clock, replay_store=MemoryReplayStore(clock=clock))
    s = sign(p521_key, dialect)
    with no_swallowed_errors():
        first = verifier.verify(s.method, s.url, s.headers, s.body)
        verifier.record(first)  # the handler answered 2xx
        with pytest.raises(VerificationError) as info:
            verifier.verify(s.method, s.url, s.headers, s.body)
        assert info.value.reason.value == "replayed"
        assert info.value.status_code == 401
        # The key is (keyid, nonce): a new signature of the same request is a new delivery.
        fresh = sign(p521_key, dialect)
        assert verifier.verify(fresh.method, fresh.url, fresh.headers, fresh.body).nonce != (
            first.nonce
        )


@pytest.mark.parametrize(("dialect", "digest"), DIALECTS)
def test_e10_redelivery_after_a_failed_handler_with_a_replay_cache(
    p521_key: SigningKey, key_set: KeySet, dialect: str, digest: str
) -> None:
    """With the replay store on, a delivery whose handler failed (not recorded) is accepted again."""
    clock = ManualClock(REFERENCE_NOW + 30)
    verifier = Verifier(key_set, clock=clock, replay_store=MemoryReplayStore(clock=clock))
    s = sign(p521_key, dialect)
    with no_swallowed_errors():
        results = [verifier.verify(s.method, s.url, s.headers, s.body) for _ in range(3)]
    assert len({(r.key_id, r.nonce) for r in results}) == 1


@pytest.mark.parametrize(("dialect", "digest"), DIALECTS)
def test_e10_redelivery_is_accepted_without_a_replay_cache(
    p521_key: SigningKey, key_set: KeySet, dialect: str, digest: str
) -> None:
    """The same webhook delivered again (after a failed handler) is accepted: no cache by default."""
    s = sign(p521_key, dialect)
    verifier = Verifier(key_set, clock=lambda: REFERENCE_NOW + 30)
    with no_swallowed_errors():
        results = [verifier.verify(s.method, s.url, s.headers, s.body) for _ in range(3)]
    assert {(r.key_id, r.nonce) for r in results} == {(p521_key.kid, results[0].nonce)}
    assert accept(s, key_set, now=REFERENCE_NOW + 59).nonce == results[0].nonce


def _container_sizes() -> dict[str, int]:
    """Lengths of the module-level containers of every loaded upvest_verify module."""
    sizes = {}
    for name, module in list(sys.modules.items()):
        if name != "upvest_verify" and not name.startswith("upvest_verify."):
            continue
        for attr, value in vars(module).items():
            if isinstance(value, (dict, list, set)) and not attr.startswith("__"):
                sizes[f"{name}.{attr}"] = len(value)
    return sizes


def test_e11_unique_nonces_leave_no_state(p521_key: SigningKey, key_set: KeySet) -> None:
    """A flood of unique nonces is accepted and grows no container inside the library."""
    verifier = Verifier(key_set, clock=lambda: REFERENCE_NOW)
    webhooks = [sign(p521_key, nonce=f"flood-{i:05d}") for i in range(150)]
    with no_swallowed_errors():
        for s in webhooks[:5]:
            verifier.verify(s.method, s.url, s.headers, s.body)
        before = _container_sizes()
        nonces = {verifier.verify(s.method, s.url, s.headers, s.body).nonce for s in webhooks[5:]}
    after = _container_sizes()
    assert len(nonces) == 145
    grown = {k: (before.get(k, 0), n) for k, n in after.items() if n > before.get(k, 0)}
    assert not grown
    assert not any(isinstance(getattr(verifier, slot), (dict, set)) for slot in Verifier.__slots__)


# --- E12: the wall clock steps back -----------------------------------------------------------


class _CountingSource:
    """A key source serving a fixed JWKS and counting its fetches."""

    def __init__(self, jwks: dict[str, Any]) -> None:
        self.body = json.dumps(jwks).encode()
        self.fetches = 0

    def fetch(self) -> FetchResult:
        self.fetches += 1
        return FetchResult(self.body)


def test_e12_wall_clock_steps_back(p521_key: SigningKey, monkeypatch: pytest.MonkeyPatch) -> None:
    """Window checks follow the wall clock back; the key cache's TTL and cooldown do not."""
    wall = [float(REFERENCE_NOW)]
    mono = [1000.0]
    source = _CountingSource(make_jwks(p521_key))
    cache = JWKSCache(source, ttl=300, refresh_cooldown=30, monotonic=lambda: mono[0])
    verifier = Verifier(cache, clock=lambda: wall[0])
    now_webhook = sign(p521_key)
    hour_ago_webhook = sign(p521_key, created=REFERENCE_NOW - 3600)
    stranger = sign(generate_key(kid="not-published"))
    other_stranger = sign(generate_key(kid="not-published-2"), created=REFERENCE_NOW - 3600)

    def verdict(s: SignedWebhook) -> str:
        with no_swallowed_errors():
            try:
                verifier.verify(s.method, s.url, s.headers, s.body)
            except VerificationError as e:
                return e.reason.value
        return "accept"

    assert verdict(now_webhook) == "accept"
    assert source.fetches == 1
    mono[0] += 2
    assert verdict(stranger) == "unknown_key"
    assert source.fetches == 2  # the one refresh an unknown kid may cause

    # The wall clock (and time.time) jumps back an hour; the monotonic clock moves on.
    wall[0] -= 3600
    monkeypatch.setattr(time, "time", lambda: wall[0])
    mono[0] += 10
    assert verdict(now_webhook) == "created_in_future"
    assert verdict(hour_ago_webhook) == "accept"
    assert verdict(stranger) == "created_in_future"
    assert verdict(other_stranger) == "unknown_key"
    assert source.fetches == 2  # still inside the cooldown: no refetch
    mono[0] += 30
    assert verdict(other_stranger) == "unknown_key"
    assert source.fetches == 3  # cooldown over on the monotonic clock
    assert verdict(hour_ago_webhook) == "accept"
    assert source.fetches == 3  # TTL (300 s monotonic) not reached
