"""Replay stores (memory, SQLite, Redis) on their own and behind a Verifier."""

from __future__ import annotations

import asyncio
import base64
import logging
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)
from ledger_support import ReplayStoreFactory, free_port, open_replay_store, wait_until

from upvest_verify import KeySet, Policy, Reason, VerificationError, VerifiedWebhook, Verifier
from upvest_verify._result import Dialect
from upvest_verify.ledger import (
    BaseReplayStore,
    LedgerError,
    LedgerUnavailable,
    MemoryLedger,
    MemoryReplayStore,
    SQLiteReplayStore,
    replay_key,
)
from upvest_verify.testing import ManualClock, SignedWebhook, SigningKey, sign_webhook
from upvest_verify.types import ReplayStore

NOW = 1_700_000_000
SKEW = Policy().skew
N521 = int(
    "01FF" + "FFFFFFFF" * 7 + "FFFFFFFA"
    "51868783BF2F966B7FCC0148F709A5D03BB5C9B8899C47AEBB6FB71E91386409",
    16,
)
SHORT = 0.3
"""Seconds a signature is remembered in the real-time expiry tests."""


@pytest.fixture
def make_store(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest, namespace: str
) -> Iterator[ReplayStoreFactory]:
    """Build replay stores of the parametrised backend (SQLite and Redis ones share a store)."""
    made: list[BaseReplayStore] = []
    location = {"memory": "", "sqlite": str(tmp_path / "replay.sqlite3")}.get(backend, "")
    if backend == "redis":
        location = request.getfixturevalue("redis_url")

    def factory(**options: Any) -> BaseReplayStore:
        store = open_replay_store(backend, location, namespace, **options)
        made.append(store)
        return store

    yield factory
    for store in made:
        store.close()


def webhook(
    nonce: str | None = "n-1",
    *,
    kid: str = "k1",
    body: bytes = b"{}",
    created: int | None = NOW,
    expires: int | None = NOW + 60,
) -> VerifiedWebhook:
    """A verified webhook as a verifier would return it."""
    return VerifiedWebhook(
        kid, "sig1", ('"@method"',), created, expires, nonce, Dialect("rfc9421", "der", None), body
    )


def signed(key: SigningKey, **kwargs: Any) -> SignedWebhook:
    """A webhook signed at NOW, valid for 60 s."""
    kwargs.setdefault("created", NOW)
    return sign_webhook({"payload": []}, key=key, **kwargs)


def run(verifier: Verifier, s: SignedWebhook, headers: Any = None) -> VerifiedWebhook:
    """verifier.verify() on a signed webhook."""
    return verifier.verify(s.method, s.url, s.headers if headers is None else headers, s.body)


def refusal(verifier: Verifier, s: SignedWebhook, headers: Any = None) -> VerificationError:
    """The error verifier.verify() raises for a signed webhook."""
    with pytest.raises(VerificationError) as info:
        run(verifier, s, headers)
    return info.value


def with_signature(s: SignedWebhook, signature: bytes) -> list[tuple[str, str]]:
    """The webhook's headers with another ``sig1`` signature."""
    others = [(k, v) for k, v in s.headers if k.lower() != "signature"]
    return [*others, ("signature", f"sig1=:{base64.b64encode(signature).decode()}:")]


class FailingStore(BaseReplayStore):
    """A store whose storage is down."""

    def seen_key(self, key: str) -> bool:
        raise LedgerUnavailable("down")

    async def aseen_key(self, key: str) -> bool:
        raise LedgerUnavailable("down")

    def record_key(self, key: str, until: float) -> None:
        raise LedgerUnavailable("down")

    async def arecord_key(self, key: str, until: float) -> None:
        raise LedgerUnavailable("down")


# --- replay_key -------------------------------------------------------------------------------


def test_replay_key_is_keyid_and_nonce() -> None:
    """With a nonce, only (keyid, nonce) matter, as 64 hex digits."""
    key = replay_key(webhook())
    assert len(key) == 64
    assert int(key, 16) >= 0
    assert replay_key(webhook(body=b"other", created=NOW - 5, expires=NOW + 5)) == key
    assert replay_key(webhook("n-2")) != key
    assert replay_key(webhook(kid="k2")) != key
    # No confusion between a keyid/nonce split at another place.
    assert replay_key(webhook("b:c", kid="a")) != replay_key(webhook("c", kid="a:b"))


def test_replay_key_without_nonce_covers_what_was_signed() -> None:
    """Without a nonce, keyid, times, covered components and the body decide."""
    key = replay_key(webhook(None))
    assert key != replay_key(webhook("n-1"))
    assert replay_key(webhook(None)) == key
    for other in (
        webhook(None, kid="k2"),
        webhook(None, body=b"[]"),
        webhook(None, created=NOW + 1),
        webhook(None, expires=NOW + 61),
    ):
        assert replay_key(other) != key


# --- the store contract -----------------------------------------------------------------------


def test_implements_the_protocol(make_store: ReplayStoreFactory) -> None:
    """Every store is a BaseReplayStore and satisfies types.ReplayStore."""
    store = make_store()
    assert isinstance(store, BaseReplayStore)
    assert isinstance(store, ReplayStore)


def test_record_then_seen(make_store: ReplayStoreFactory) -> None:
    """A recorded signature is seen; other nonces and keys are not."""
    store = make_store()
    assert not store.seen(webhook())
    store.record(webhook(), until=time.time() + 60)
    assert store.seen(webhook())
    assert not store.seen(webhook("n-2"))
    assert not store.seen(webhook(kid="k2"))
    assert store.seen_key(replay_key(webhook()))


def test_forgotten_after_until(make_store: ReplayStoreFactory) -> None:
    """A signature is forgotten once its until passed."""
    store = make_store()
    store.record(webhook(), until=time.time() + SHORT)
    assert store.seen(webhook())
    wait_until(lambda: not store.seen(webhook()), "the signature was forgotten")


def test_until_in_the_past_records_nothing(make_store: ReplayStoreFactory) -> None:
    """Recording with an until already past is a no-op."""
    store = make_store()
    store.record(webhook(), until=time.time() - 1)
    assert not store.seen(webhook())


@pytest.mark.parametrize("until", [float("nan"), float("inf"), "soon", True, None])
def test_until_must_be_a_finite_number(make_store: ReplayStoreFactory, until: Any) -> None:
    """A non-finite or non-numeric until is a ValueError."""
    store = make_store()
    with pytest.raises(ValueError, match="until"):
        store.record(webhook(), until=until)
    with pytest.raises(ValueError, match="until"):
        asyncio.run(store.arecord(webhook(), until=until))


def test_the_later_until_wins(make_store: ReplayStoreFactory) -> None:
    """Recording again extends the memory; a shorter until never shortens it."""
    store = make_store()
    store.record(webhook(), until=time.time() + SHORT)
    store.record(webhook(), until=time.time() + 60)
    store.record(webhook(), until=time.time() + SHORT)
    time.sleep(SHORT * 2)
    assert store.seen(webhook())


def test_async_twins(make_store: ReplayStoreFactory) -> None:
    """aseen/arecord behave like seen/record and share the same memory."""
    store = make_store()

    async def scenario() -> tuple[bool, bool, bool, bool]:
        before = await store.aseen(webhook())
        await store.arecord(webhook(), until=time.time() + 60)
        after = await store.aseen(webhook())
        other = await store.aseen(webhook("n-2"))
        await store.aclose()
        return before, after, other, store.seen(webhook())

    assert asyncio.run(scenario()) == (False, True, False, True)


@pytest.mark.parametrize("backend", ["sqlite", "redis"], indirect=True)
def test_stores_on_one_location_share_memory(make_store: ReplayStoreFactory) -> None:
    """Two SQLite or Redis stores on one location see each other's records."""
    first, second = make_store(), make_store()
    first.record(webhook(), until=time.time() + 60)
    assert second.seen(webhook())


def test_growth_is_bounded_by_the_window(
    make_store: ReplayStoreFactory, request: pytest.FixtureRequest
) -> None:
    """Hundreds of unique signatures are all gone once their window passed."""
    store = make_store()
    until = time.time() + SHORT
    for i in range(300):
        store.record(webhook(f"flood-{i}"), until=until)
    assert store.seen(webhook("flood-0"))
    if isinstance(store, (MemoryReplayStore, SQLiteReplayStore)):
        assert len(store) == 300
    wait_until(lambda: not store.seen(webhook("flood-299")), "the flood was forgotten")
    if isinstance(store, (MemoryReplayStore, SQLiteReplayStore)):
        store.purge()  # the memory store already dropped them while answering seen()
        assert len(store) == 0
    else:
        redis = pytest.importorskip("redis")
        client = redis.Redis.from_url(request.getfixturevalue("redis_url"))
        pattern = f"{request.getfixturevalue('namespace')}:replay:*"
        wait_until(lambda: not list(client.scan_iter(match=pattern)), "the keys expired")
        client.close()


# --- behind a Verifier ------------------------------------------------------------------------


@pytest.fixture
def clock() -> ManualClock:
    """The wall clock of the verifier and its store, at NOW."""
    return ManualClock(NOW)


def test_replay_within_the_window_is_refused(
    make_store: ReplayStoreFactory, clock: ManualClock, p521_key: SigningKey, key_set: KeySet
) -> None:
    """Once recorded, the same delivery is replayed until its window ends, then expired."""
    verifier = Verifier(key_set, clock=clock, replay_store=make_store(clock=clock))
    s = signed(p521_key)
    first = run(verifier, s)
    verifier.record(first)
    error = refusal(verifier, s)
    assert error.reason is Reason.REPLAYED
    assert error.status_code == 401
    assert error.key_id == p521_key.kid
    assert first.nonce is not None
    assert first.nonce in error.message
    clock.now = NOW + 60 + SKEW  # the last instant the window accepts
    assert refusal(verifier, s).reason is Reason.REPLAYED
    clock.advance(1)
    assert refusal(verifier, s).reason is Reason.EXPIRED
    # Another signature of the same content is a new delivery.
    clock.now = NOW
    assert run(verifier, signed(p521_key)).nonce != first.nonce


def test_unrecorded_delivery_is_accepted_again(
    make_store: ReplayStoreFactory, clock: ManualClock, p521_key: SigningKey, key_set: KeySet
) -> None:
    """A delivery whose handler failed (never recorded) is accepted on every retry (E10)."""
    verifier = Verifier(key_set, clock=clock, replay_store=make_store(clock=clock))
    s = signed(p521_key)
    results = [run(verifier, s) for _ in range(3)]
    assert len({r.nonce for r in results}) == 1
    verifier.record(results[-1])  # the handler finally succeeded
    assert refusal(verifier, s).reason is Reason.REPLAYED


def test_reencoded_or_malleated_signature_is_still_a_replay(
    make_store: ReplayStoreFactory, clock: ManualClock, p521_key: SigningKey, key_set: KeySet
) -> None:
    """(r, n - s) and the raw form of the same signature are refused too (C4)."""
    verifier = Verifier(key_set, clock=clock, replay_store=make_store(clock=clock))
    s = signed(p521_key, encoding="der")
    verifier.record(run(verifier, s))
    encoded = {k.lower(): v for k, v in s.headers}["signature"]
    r, sv = decode_dss_signature(base64.b64decode(encoded.removeprefix("sig1=:")[:-1]))
    malleated = encode_dss_signature(r, N521 - sv)
    raw = r.to_bytes(66, "big") + sv.to_bytes(66, "big")
    for twin in (malleated, raw):
        plain = Verifier(key_set, clock=clock)
        assert run(plain, s, with_signature(s, twin)).nonce == run(plain, s).nonce
        assert refusal(verifier, s, with_signature(s, twin)).reason is Reason.REPLAYED


def test_signature_without_nonce(
    make_store: ReplayStoreFactory, clock: ManualClock, p521_key: SigningKey, key_set: KeySet
) -> None:
    """Without a nonce the signed content is the identity: a replay is refused."""
    verifier = Verifier(key_set, clock=clock, replay_store=make_store(clock=clock))
    s = signed(p521_key, with_nonce=False)
    result = run(verifier, s)
    assert result.nonce is None
    verifier.record(result)
    error = refusal(verifier, s)
    assert error.reason is Reason.REPLAYED
    assert "signature of key" in error.message
    assert run(verifier, signed(p521_key, with_nonce=False, created=NOW + 1)).nonce is None


def test_async_verify_and_record(
    make_store: ReplayStoreFactory, clock: ManualClock, p521_key: SigningKey, key_set: KeySet
) -> None:
    """averify checks with aseen; arecord records; both never touch the sync path."""
    store = make_store(clock=clock)
    verifier = Verifier(key_set, clock=clock, replay_store=store)
    s = signed(p521_key)

    async def scenario() -> Reason:
        first = await verifier.averify(s.method, s.url, s.headers, s.body)
        again = await verifier.averify(s.method, s.url, s.headers, s.body)
        assert again.nonce == first.nonce  # not recorded yet
        await verifier.arecord(first)
        try:
            await verifier.averify(s.method, s.url, s.headers, s.body)
        except VerificationError as e:
            return e.reason
        finally:
            await store.aclose()
        raise AssertionError("the replay was accepted")

    assert asyncio.run(scenario()) is Reason.REPLAYED
    assert store.seen(run(Verifier(key_set, clock=clock), s))


def test_record_keeps_the_signature_until_its_window_ends(
    clock: ManualClock, p521_key: SigningKey, key_set: KeySet
) -> None:
    """record() passes one second past expires + skew (or created + max_age + skew)."""
    verifier = Verifier(key_set, clock=clock, replay_store=MemoryReplayStore(clock=clock))
    with_expires = run(verifier, signed(p521_key))
    without = run(verifier, signed(p521_key, ttl=None))
    assert verifier.replay_until(with_expires) == NOW + 60 + SKEW + 1
    assert verifier.replay_until(without) == NOW + Policy().max_age + SKEW + 1
    loose = Verifier(key_set, clock=clock, policy=Policy(require_created=False))
    timeless = webhook(created=None, expires=None)
    assert loose.replay_until(timeless) == NOW + Policy().max_age + SKEW + 1


def test_record_without_a_store_or_for_a_late_webhook_does_nothing(
    clock: ManualClock, p521_key: SigningKey, key_set: KeySet
) -> None:
    """record() is a no-op without a store, and for a webhook whose window ended."""
    result = run(Verifier(key_set, clock=clock), signed(p521_key))
    Verifier(key_set, clock=clock).record(result)
    asyncio.run(Verifier(key_set, clock=clock).arecord(result))
    store = MemoryReplayStore(clock=clock)
    verifier = Verifier(key_set, clock=clock, replay_store=store)
    clock.advance(3600)
    verifier.record(result)
    asyncio.run(verifier.arecord(result))
    assert len(store) == 0
    with pytest.raises(TypeError, match="VerifiedWebhook"):
        verifier.record("not a webhook")  # type: ignore[arg-type]


def test_bad_replay_store_is_a_configuration_error(key_set: KeySet) -> None:
    """A replay_store without seen/record/aseen/arecord is refused at construction."""
    from upvest_verify import ConfigurationError

    with pytest.raises(ConfigurationError, match="replay_store"):
        Verifier(key_set, replay_store=MemoryLedger())  # type: ignore[arg-type]
    store = MemoryReplayStore()
    verifier = Verifier(key_set, replay_store=store)
    assert verifier.replay_store is store
    assert "replay_store=MemoryReplayStore" in repr(verifier)
    assert Verifier(key_set).replay_store is None


# --- failures fail closed ---------------------------------------------------------------------


def test_store_failure_fails_closed(
    clock: ManualClock, p521_key: SigningKey, key_set: KeySet
) -> None:
    """A store that cannot answer raises LedgerUnavailable from verify/averify/record."""
    verifier = Verifier(key_set, clock=clock, replay_store=FailingStore())
    s = signed(p521_key)
    with pytest.raises(LedgerUnavailable):
        run(verifier, s)
    with pytest.raises(LedgerUnavailable):
        asyncio.run(verifier.averify(s.method, s.url, s.headers, s.body))
    result = run(Verifier(key_set, clock=clock), s)
    with pytest.raises(LedgerUnavailable):
        verifier.record(result)
    with pytest.raises(LedgerUnavailable):
        asyncio.run(verifier.arecord(result))


def test_sqlite_failure_fails_closed(
    tmp_path: Path, clock: ManualClock, p521_key: SigningKey, key_set: KeySet
) -> None:
    """An SQLite file that cannot be opened makes verify raise LedgerUnavailable."""
    store = SQLiteReplayStore(tmp_path, clock=clock)  # a directory, not a database file
    verifier = Verifier(key_set, clock=clock, replay_store=store)
    with pytest.raises(LedgerUnavailable, match="SQLite replay store"):
        run(verifier, signed(p521_key))
    with pytest.raises(LedgerUnavailable):
        asyncio.run(store.aseen(webhook()))


def test_redis_failure_fails_closed(
    clock: ManualClock, p521_key: SigningKey, key_set: KeySet
) -> None:
    """A Redis server that does not answer makes verify/averify raise LedgerUnavailable."""
    pytest.importorskip("redis", reason="redis-py is not installed (extra 'redis')")
    from upvest_verify.ledger import RedisReplayStore

    url = f"redis://127.0.0.1:{free_port()}/0"
    store = RedisReplayStore.from_url(url, clock=clock, socket_connect_timeout=1)
    verifier = Verifier(key_set, clock=clock, replay_store=store)
    s = signed(p521_key)
    with pytest.raises(LedgerUnavailable, match="Redis replay store"):
        run(verifier, s)
    with pytest.raises(LedgerUnavailable):
        asyncio.run(verifier.averify(s.method, s.url, s.headers, s.body))
    with pytest.raises(LedgerUnavailable):
        store.record(webhook(), until=NOW + 60)
    with pytest.raises(LedgerUnavailable):
        asyncio.run(store.arecord(webhook(), until=NOW + 60))
    store.close()


# --- backend details --------------------------------------------------------------------------


def test_memory_cap_drops_the_soonest_expiring(caplog: pytest.LogCaptureFixture) -> None:
    """At max_entries, recording drops the signature closest to expiry, with a warning."""
    clock = ManualClock(NOW)
    store = MemoryReplayStore(max_entries=3, clock=clock)
    for i, ttl in enumerate([30, 10, 20]):
        store.record(webhook(f"n{i}"), until=NOW + ttl)
    with caplog.at_level(logging.WARNING, logger="upvest_verify"):
        store.record(webhook("n3"), until=NOW + 40)
    assert "replay store full" in caplog.text
    assert len(store) == 3
    assert [store.seen(webhook(f"n{i}")) for i in range(4)] == [True, False, True, True]
    store.record(webhook("n0"), until=NOW + 50)  # already held: no eviction
    assert len(store) == 3
    clock.advance(35)
    assert store.purge() == 1  # n2 (20 s); n0 moved to 50 s, its stale 30 s entry skipped
    assert len(store) == 2
    assert [store.seen(webhook(f"n{i}")) for i in range(4)] == [True, False, False, True]
    with pytest.raises(ValueError, match="max_entries"):
        MemoryReplayStore(max_entries=0)
    assert repr(store) == "MemoryReplayStore(max_entries=3)"


def test_memory_purge_on_use_is_bounded() -> None:
    """Each call drops at most a batch of expired signatures; purge() drops the rest."""
    clock = ManualClock(NOW)
    store = MemoryReplayStore(clock=clock)
    for i in range(2500):
        store.record(webhook(f"n{i}"), until=NOW + 10)
    clock.advance(11)
    assert not store.seen(webhook("x"))
    assert len(store) == 1500
    assert store.purge() == 1500
    assert len(store) == 0


def test_memory_expired_entries_beyond_the_purge_batch_are_not_seen() -> None:
    """An expired signature still held (the purge batch ran out) does not count as seen."""
    clock = ManualClock(NOW)
    store = MemoryReplayStore(clock=clock)
    for i in range(1500):
        store.record(webhook(f"n{i}"), until=NOW + 5)
    store.record(webhook(), until=NOW + 10)
    clock.advance(20)
    assert not store.seen(webhook())
    assert len(store) == 501  # one batch of 1,000 dropped; the rest waits for the next call


def test_sqlite_table_wal_and_purge_interval(tmp_path: Path) -> None:
    """One WAL table of (replay_key, expires_at); expired rows go at most once per interval."""
    clock = ManualClock(NOW)
    path = tmp_path / "r.sqlite3"
    store = SQLiteReplayStore(path, table="replay", purge_interval=50, clock=clock)
    assert store.path == str(path)
    assert repr(store) == f"SQLiteReplayStore({str(path)!r})"
    store.record(webhook(), until=NOW + 10)
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        assert conn.execute("SELECT replay_key, expires_at FROM replay").fetchall() == [
            (replay_key(webhook()), NOW + 10)
        ]
    clock.advance(20)
    store.record(webhook("n-2"), until=NOW + 100)  # interval not over: nothing purged
    assert len(store) == 2
    assert not store.seen(webhook())
    clock.advance(40)
    store.record(webhook("n-3"), until=NOW + 100)  # interval over: the expired row goes
    assert len(store) == 2
    store.close()
    store.close()
    with pytest.raises(ValueError, match="table name"):
        SQLiteReplayStore(path, table="x; DROP TABLE y")


def test_redis_layout_ttl_and_round_trips(redis_url: str, namespace: str) -> None:
    """One key per signature with a PX expiry; seen and record are one round trip each."""
    redis = pytest.importorskip("redis")
    from upvest_verify.ledger import RedisReplayStore

    sends: list[object] = []

    class Counting(redis.Connection):  # type: ignore[misc, name-defined]
        def send_packed_command(self, command: Any, check_health: bool = True) -> None:
            sends.append(command)
            super().send_packed_command(command, check_health)

    pool = redis.ConnectionPool.from_url(redis_url, connection_class=Counting)
    client = redis.Redis(connection_pool=pool)
    client.ping()  # connect (the handshake is not the store's)
    raw = redis.Redis.from_url(redis_url, decode_responses=True)
    clock = ManualClock(NOW)
    store = RedisReplayStore(client, namespace=namespace, clock=clock)
    sends.clear()
    store.record(webhook(), until=NOW + 90.5)
    assert len(sends) == 1
    assert store.seen(webhook())
    assert len(sends) == 2
    name = store.redis_key(replay_key(webhook()))
    assert name == f"{namespace}:replay:{replay_key(webhook())}"
    assert raw.get(name) == "1"
    assert 90_000 < raw.pttl(name) <= 90_500
    store.record(webhook(), until=NOW + 10)  # shorter: the key keeps its 90 s
    assert raw.pttl(name) > 80_000
    store.record(webhook(), until=NOW + 200)  # longer: extended
    assert raw.pttl(name) > 190_000
    store.record(webhook("n-2"), until=NOW)  # nothing left to keep: no round trip
    assert len(sends) == 4
    assert raw.exists(store.redis_key(replay_key(webhook("n-2")))) == 0
    store.close()
    raw.close()


def test_redis_clients_and_validation(redis_url: str, namespace: str) -> None:
    """A store needs a client; a missing sync or async client is a LedgerError when used."""
    redis = pytest.importorskip("redis")
    aioredis = pytest.importorskip("redis.asyncio")
    from upvest_verify.ledger import RedisReplayStore

    with pytest.raises(ValueError, match="client"):
        RedisReplayStore()
    with pytest.raises(ValueError, match="namespace"):
        RedisReplayStore(redis.Redis.from_url(redis_url), namespace="")
    async_only = RedisReplayStore(
        async_client=aioredis.Redis.from_url(redis_url), namespace=namespace
    )
    with pytest.raises(LedgerError, match="no sync client"):
        async_only.seen(webhook())

    async def use() -> bool:
        await async_only.arecord(webhook(), until=time.time() + 60)
        seen = await async_only.aseen(webhook())
        await async_only.aclose()
        return seen

    assert asyncio.run(use())
    sync_only = RedisReplayStore(redis.Redis.from_url(redis_url), namespace=namespace)
    assert sync_only.seen(webhook())
    assert repr(sync_only) == f"RedisReplayStore(namespace={namespace!r})"
    with pytest.raises(LedgerError, match="no async client"):
        asyncio.run(sync_only.aseen(webhook()))
    sync_only.close()
