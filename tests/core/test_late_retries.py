"""Verifier(late_retries=ledger): authentic webhooks that are only too old are accepted."""

from __future__ import annotations

import asyncio
import base64
import logging
import pickle
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from core_helpers import REFERENCE_NOW, no_swallowed_errors, signature_headers, with_headers

from upvest_verify import (
    ConfigurationError,
    KeySet,
    Policy,
    Reason,
    VerificationError,
    VerifiedWebhook,
    Verifier,
)
from upvest_verify.ledger import MemoryLedger, MemoryReplayStore, SQLiteLedger
from upvest_verify.testing import ManualClock, SignedWebhook, SigningKey, sign_webhook

NOW = REFERENCE_NOW
POLICY = Policy()
SKEW = POLICY.skew
MAX_AGE = POLICY.max_age
RETENTION = 7 * 86400
BODY = {"payload": [{"id": "evt-1", "type": "ORDER.FILLED"}]}


def signed(key: SigningKey, **kwargs: Any) -> SignedWebhook:
    """A webhook signed at NOW (expires NOW + 60 unless told otherwise)."""
    kwargs.setdefault("created", NOW)
    return sign_webhook(BODY, key=key, **kwargs)


def late_verifier(
    keys: Any, clock: ManualClock, retention: float = RETENTION, **kwargs: Any
) -> Verifier:
    """A verifier that accepts late retries through a MemoryLedger with ``retention``."""
    return Verifier(keys, clock=clock, late_retries=MemoryLedger(retention=retention), **kwargs)


def run(verifier: Verifier, s: SignedWebhook, **parts: Any) -> VerifiedWebhook:
    """verifier.verify() on the webhook, with parts replaced, failing on swallowed errors."""
    with no_swallowed_errors():
        return verifier.verify(
            parts.get("method", s.method),
            parts.get("url", s.url),
            parts.get("headers", s.headers),
            parts.get("body", s.body),
        )


def reason(verifier: Verifier, s: SignedWebhook, **parts: Any) -> str:
    """The reason code verifier.verify() rejects the webhook with."""
    with pytest.raises(VerificationError) as info:
        run(verifier, s, **parts)
    return info.value.reason.value


def tampered_signature(s: SignedWebhook, label: str = "sig1") -> list[tuple[str, str]]:
    """The headers with one bit of the signature flipped."""
    value = {k.lower(): v for k, v in s.headers}["signature"]
    raw = bytearray(base64.b64decode(value.removeprefix(f"{label}=:")[:-1]))
    raw[-1] ^= 1
    return with_headers(s, signature=f"{label}=:{base64.b64encode(bytes(raw)).decode()}:")


@pytest.fixture
def clock() -> ManualClock:
    """The verifier's wall clock, at NOW."""
    return ManualClock(NOW)


# --- without opt-in -----------------------------------------------------------------------------


def test_without_a_ledger_an_old_webhook_is_expired(
    p521_key: SigningKey, key_set: KeySet, clock: ManualClock
) -> None:
    """By default a webhook past its window is expired, and the error names its signing instant."""
    s = signed(p521_key)
    clock.advance(600)
    with pytest.raises(VerificationError) as info:
        run(Verifier(key_set, clock=clock), s)
    assert info.value.reason is Reason.EXPIRED
    assert info.value.signed_at == NOW
    assert info.value.message == (
        f"expired 540 s ago (expires={NOW + 60}, now={NOW + 600}, skew={SKEW:g} s)"
    )


# --- accepted late ------------------------------------------------------------------------------


@pytest.mark.parametrize(("dialect", "encoding"), [("upvest-v6", "der"), ("rfc9421", "raw")])
def test_an_old_authentic_webhook_is_accepted_late(
    p521_key: SigningKey,
    key_set: KeySet,
    clock: ManualClock,
    caplog: pytest.LogCaptureFixture,
    dialect: str,
    encoding: str,
) -> None:
    """Past its window but within the retention: accepted, marked late, a warning logged."""
    verifier = late_verifier(key_set, clock)
    s = signed(p521_key, dialect=dialect, encoding=encoding)
    fresh = run(verifier, s)
    assert fresh.late is False
    clock.advance(600)
    with caplog.at_level(logging.WARNING, logger="upvest_verify"):
        result = run(verifier, s)
    assert result.late is True
    assert (result.key_id, result.nonce, result.created) == (p521_key.kid, fresh.nonce, NOW)
    assert result.body == fresh.body
    assert result.json() == BODY
    (record,) = [r for r in caplog.records if r.name == "upvest_verify"]
    assert record.levelno == logging.WARNING
    message = record.getMessage()
    assert p521_key.kid in message
    assert "600 s ago" in message
    assert "'sig1'" in message


def test_old_webhook_without_expires_is_accepted_late(
    p521_key: SigningKey, key_set: KeySet, clock: ManualClock
) -> None:
    """created older than max_age (no expires) is an age fault too."""
    s = signed(p521_key, ttl=None)
    clock.advance(MAX_AGE + 1)
    assert reason(Verifier(key_set, clock=clock), s) == "expired"
    assert run(late_verifier(key_set, clock), s).late is True


def test_age_is_bounded_by_the_ledger_retention(
    p521_key: SigningKey, key_set: KeySet, clock: ManualClock
) -> None:
    """Signed exactly retention seconds ago is accepted; one second more is expired."""
    verifier = late_verifier(key_set, clock, retention=3600)
    s = signed(p521_key)
    clock.now = NOW + 3600
    assert run(verifier, s).late is True
    clock.now = NOW + 3601
    assert reason(verifier, s) == "expired"


def test_every_ledger_backend_exposes_its_retention(tmp_path: Path, key_set: KeySet) -> None:
    """MemoryLedger and SQLiteLedger (and RedisLedger) report retention in seconds."""
    assert MemoryLedger(retention=12).retention == 12.0
    sqlite_ledger = SQLiteLedger(tmp_path / "l.sqlite3", retention=34.5)
    assert sqlite_ledger.retention == 34.5
    verifier = Verifier(key_set, late_retries=sqlite_ledger)
    assert verifier.late_retries is sqlite_ledger
    assert "late_retries=SQLiteLedger" in repr(verifier)
    pytest.importorskip("redis", reason="redis-py is not installed (extra 'redis')")
    from upvest_verify.ledger import RedisLedger

    assert RedisLedger.from_url("redis://127.0.0.1:1/0", retention=5.25).retention == 5.25


def test_the_signature_that_verified_decides_the_age(
    p521_key: SigningKey, key_set: KeySet, clock: ManualClock
) -> None:
    """A recent but broken signature cannot vouch for an older valid one beyond the retention."""
    components = ["@method", "@path", "content-type", "content-length", "digest"]
    recent = signed(p521_key, label="a", components=components)
    older = signed(p521_key, label="b", components=components, created=NOW - 3400, ttl=3600)
    broken = dict(tampered_signature(recent, "a"))
    fields = {k.lower(): v for k, v in older.headers}
    headers = [
        *with_headers(recent, signature_input=None, signature=None),
        ("signature-input", f"{broken['signature-input']}, {fields['signature-input']}"),
        ("signature", f"{broken['signature']}, {fields['signature']}"),
    ]
    clock.advance(600)  # both windows passed; "a" (signed 600 s ago) is tried first
    assert reason(Verifier(key_set, clock=clock), recent, headers=headers) == "expired"
    # As of "a"'s signing instant, "a" is bad_signature and "b" (signed 4000 s ago) verifies.
    assert reason(late_verifier(key_set, clock, retention=3000), recent, headers=headers) == (
        "expired"
    )
    result = run(late_verifier(key_set, clock, retention=5000), recent, headers=headers)
    assert (result.label, result.created, result.late) == ("b", NOW - 3400, True)


def test_signed_at_survives_pickling() -> None:
    """VerificationError keeps signed_at through pickle, as it keeps key_id."""
    error = VerificationError(Reason.EXPIRED, "old", key_id="k", signed_at=NOW)
    back = pickle.loads(pickle.dumps(error))  # noqa: S301 - our own bytes
    assert (back.reason, back.message, back.key_id, back.signed_at) == (
        Reason.EXPIRED,
        "old",
        "k",
        NOW,
    )
    assert VerificationError(Reason.EXPIRED).signed_at is None


# --- never accepted late ------------------------------------------------------------------------


def test_tampered_body_that_is_also_old_keeps_its_own_reason(
    p521_key: SigningKey, key_set: KeySet, clock: ManualClock
) -> None:
    """An old webhook with a changed body is digest_mismatch, never accepted late."""
    s = signed(p521_key)
    clock.advance(600)
    body = s.body.replace(b"evt-1", b"evt-2")
    assert reason(Verifier(key_set, clock=clock), s, body=body) == "expired"
    assert reason(late_verifier(key_set, clock), s, body=body) == "digest_mismatch"


def test_tampered_signature_that_is_also_old_keeps_its_own_reason(
    p521_key: SigningKey, key_set: KeySet, clock: ManualClock
) -> None:
    """An old webhook with a broken signature is bad_signature, never accepted late."""
    s = signed(p521_key)
    clock.advance(600)
    headers = tampered_signature(s)
    assert reason(Verifier(key_set, clock=clock), s, headers=headers) == "expired"
    assert reason(late_verifier(key_set, clock), s, headers=headers) == "bad_signature"


def test_old_webhook_from_an_unknown_key_is_refused(
    attacker: SigningKey, key_set: KeySet, clock: ManualClock
) -> None:
    """An old webhook signed by a key outside the key set is unknown_key."""
    s = signed(attacker)
    clock.advance(600)
    assert reason(late_verifier(key_set, clock), s) == "unknown_key"


def test_old_webhook_with_another_path_is_refused(
    p521_key: SigningKey, key_set: KeySet, clock: ManualClock
) -> None:
    """Coverage is checked as for a fresh webhook: another @path is bad_signature."""
    s = signed(p521_key)
    clock.advance(600)
    url = s.url.replace("/webhooks/upvest", "/webhooks/other")
    assert reason(late_verifier(key_set, clock), s, url=url) == "bad_signature"


@pytest.mark.parametrize("created_offset", [SKEW + 1, 3600])
def test_created_in_the_future_is_never_accepted(
    p521_key: SigningKey, key_set: KeySet, clock: ManualClock, created_offset: float
) -> None:
    """created beyond now + skew stays created_in_future with a ledger."""
    s = signed(p521_key, created=int(NOW + created_offset))
    assert reason(late_verifier(key_set, clock), s) == "created_in_future"


@pytest.mark.parametrize(
    "times",
    [(NOW, NOW), (NOW, NOW - 10), (NOW, NOW + 3601), (NOW, NOW + 365 * 86400)],
    ids=["expires-equals-created", "expires-before-created", "window-cap-plus-one", "one-year"],
)
def test_malformed_windows_are_never_accepted(
    p521_key: SigningKey, key_set: KeySet, clock: ManualClock, times: tuple[int, int]
) -> None:
    """expires <= created or a window above max_window stays expired, at any age."""
    created, expires = times
    s = signed(p521_key, created=created, expires=expires)
    for offset in (0, 86400 * 2):
        clock.now = NOW + offset
        with pytest.raises(VerificationError) as info:
            run(late_verifier(key_set, clock), s)
        assert info.value.reason is Reason.EXPIRED
        assert info.value.signed_at is None


def test_without_created_there_is_no_late_acceptance(
    p521_key: SigningKey, key_set: KeySet, clock: ManualClock
) -> None:
    """expires alone (require_created=False) gives no signing instant: expired."""
    policy = Policy(require_created=False)
    s = signed(p521_key, dialect="rfc9421")
    params = {k.lower(): v for k, v in s.headers}["signature-input"].removeprefix("sig1=")
    headers = with_headers(s, signature_input=None, signature=None) + signature_headers(
        p521_key,
        params.replace(f";created={NOW}", ""),
        s.base.decode().replace(f";created={NOW}", ""),
    )
    verifier = late_verifier(key_set, clock, policy=policy)
    assert run(verifier, s, headers=headers).created is None
    clock.advance(600)
    assert reason(verifier, s, headers=headers) == "expired"


# --- with a key provider, asynchronously, with a replay store ---------------------------------


class Provider:
    """A key provider serving one key set; counts refreshes."""

    def __init__(self, keys: KeySet) -> None:
        self.keys = keys
        self.refreshes = 0

    def current(self) -> KeySet:
        return self.keys

    def refresh_for(self, kid: str) -> KeySet | None:
        self.refreshes += 1
        return None

    async def acurrent(self) -> KeySet:
        return self.keys

    async def arefresh_for(self, kid: str) -> KeySet | None:
        return self.refresh_for(kid)


def test_late_with_a_key_provider(
    p521_key: SigningKey, attacker: SigningKey, key_set: KeySet, clock: ManualClock
) -> None:
    """Through a key provider the late re-check looks keys up (and refreshes) as usual."""
    provider = Provider(key_set)
    verifier = late_verifier(provider, clock)
    clock.advance(600)
    assert run(verifier, signed(p521_key)).late is True
    assert provider.refreshes == 0
    assert reason(verifier, signed(attacker)) == "unknown_key"
    assert provider.refreshes == 1


def _offload(fn: Callable[[], VerifiedWebhook]) -> Awaitable[VerifiedWebhook]:
    return asyncio.to_thread(fn)


@pytest.mark.parametrize("run_sync", [None, _offload], ids=["inline", "run-sync"])
@pytest.mark.parametrize("through_provider", [False, True], ids=["key-set", "provider"])
def test_averify_accepts_late_too(
    p521_key: SigningKey,
    key_set: KeySet,
    clock: ManualClock,
    run_sync: Any,
    through_provider: bool,
) -> None:
    """averify applies the same late rules as verify."""
    verifier = late_verifier(Provider(key_set) if through_provider else key_set, clock)
    s = signed(p521_key)
    clock.advance(600)
    body = s.body.replace(b"evt-1", b"evt-2")

    async def scenario() -> tuple[bool, str]:
        result = await verifier.averify(s.method, s.url, s.headers, s.body, run_sync=run_sync)
        try:
            await verifier.averify(s.method, s.url, s.headers, body, run_sync=run_sync)
        except VerificationError as e:
            return result.late, e.reason.value
        raise AssertionError("a tampered old webhook was accepted")

    assert asyncio.run(scenario()) == (True, "digest_mismatch")
    clock.advance(RETENTION)

    async def too_old() -> str:
        try:
            await verifier.averify(s.method, s.url, s.headers, s.body, run_sync=run_sync)
        except VerificationError as e:
            return e.reason.value
        raise AssertionError("a webhook older than the retention was accepted")

    assert asyncio.run(too_old()) == "expired"


def test_late_webhooks_and_the_replay_store(
    p521_key: SigningKey, key_set: KeySet, clock: ManualClock
) -> None:
    """A recorded signature is replayed within its window, and a late retry once it ended."""
    store = MemoryReplayStore(clock=clock)
    verifier = late_verifier(key_set, clock, replay_store=store)
    s = signed(p521_key)
    verifier.record(run(verifier, s))
    assert reason(verifier, s) == "replayed"
    clock.advance(600)  # the window ended: the store forgot it; the ledger deduplicates
    late = run(verifier, s)
    assert late.late is True
    verifier.record(late)
    assert len(store) == 0
    assert run(verifier, s).late is True


# --- configuration ------------------------------------------------------------------------------


class NoRetention:
    """Looks like a ledger, but says nothing about how long it remembers."""

    def claim(self, event_id: str) -> None:
        return None

    def process(self, events: Any, handle: Any) -> None:
        return None


@pytest.mark.parametrize("ledger", ["ledger", MemoryReplayStore(), NoRetention()])
def test_late_retries_needs_a_ledger_with_a_retention(key_set: KeySet, ledger: object) -> None:
    """Anything but an event ledger with a finite positive retention is refused."""
    with pytest.raises(ConfigurationError, match="late_retries"):
        Verifier(key_set, late_retries=ledger)  # type: ignore[arg-type]
    assert Verifier(key_set).late_retries is None


@pytest.fixture(scope="session")
def attacker() -> SigningKey:
    """A P-521 key the verifier does not trust."""
    from upvest_verify.testing import generate_key

    return generate_key(kid="attacker-0000-4000-8000-000000000000")
