"""RedisLedger against a real redis-server: key layout, TTLs, round trips, processes."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

pytest.importorskip("redis", reason="redis-py is not installed (extra 'redis')")

import redis
import redis.asyncio
from ledger_support import (
    Target,
    check_each_event_exactly_once,
    check_takeover_after_a_crash,
    free_port,
    make_events,
    wait_until,
)

from upvest_verify.ledger import LedgerUnavailable, RedisLedger


class CountingRedis(redis.Redis):
    """A client that records every command it sends (one command is one round trip)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.sent: list[str] = []

    def execute_command(self, *args: Any, **options: Any) -> Any:
        self.sent.append(str(args[0]))
        return super().execute_command(*args, **options)


class AsyncCountingRedis(redis.asyncio.Redis):
    """The async twin of :class:`CountingRedis`."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.sent: list[str] = []

    async def execute_command(self, *args: Any, **options: Any) -> Any:
        self.sent.append(str(args[0]))
        return await super().execute_command(*args, **options)


@pytest.fixture
def raw(redis_url: str) -> Any:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    yield client
    client.close()


def test_key_layout_and_ttls(redis_url: str, namespace: str, raw: Any) -> None:
    ledger = RedisLedger.from_url(redis_url, namespace=namespace, lease=30, retention=600)
    assert ledger.key("evt-1") == f"{namespace}:event:evt-1"
    claim = ledger.claim("evt-1")
    assert claim is not None
    assert raw.get(f"{namespace}:event:evt-1") == claim.token
    assert 29_000 < raw.pttl(f"{namespace}:event:evt-1") <= 30_000
    claim.complete()
    assert raw.get(f"{namespace}:event:evt-1") == "done"
    assert 599_000 < raw.pttl(f"{namespace}:event:evt-1") <= 600_000
    assert raw.keys(f"{namespace}:*") == [f"{namespace}:event:evt-1"]
    ledger.close()


def test_release_deletes_the_key(redis_url: str, namespace: str, raw: Any) -> None:
    ledger = RedisLedger.from_url(redis_url, namespace=namespace)
    claim = ledger.claim("evt-1")
    assert claim is not None
    claim.release()
    assert raw.exists(f"{namespace}:event:evt-1") == 0
    ledger.close()


def test_completed_key_expires_after_the_retention(
    redis_url: str, namespace: str, raw: Any
) -> None:
    ledger = RedisLedger.from_url(redis_url, namespace=namespace, retention=0.2)
    claim = ledger.claim("evt-1")
    assert claim is not None
    claim.complete()
    assert ledger.purge() == 0  # nothing to do: Redis expires the key itself
    wait_until(lambda: raw.exists(f"{namespace}:event:evt-1") == 0, "key did not expire", 5)
    assert ledger.claim("evt-1") is not None
    ledger.close()


def test_namespaces_are_separate(redis_url: str, namespace: str) -> None:
    one = RedisLedger.from_url(redis_url, namespace=namespace + "-a")
    two = RedisLedger.from_url(redis_url, namespace=namespace + "-b")
    assert one.claim("evt") is not None
    assert two.claim("evt") is not None
    one.close()
    two.close()


def test_one_round_trip_per_claim_and_per_settle(redis_url: str, namespace: str) -> None:
    client = CountingRedis.from_url(redis_url)
    ledger = RedisLedger(client, namespace=namespace)
    warm = ledger.claim("warm-up")
    assert warm is not None
    warm.complete()  # the first script use may load the script
    warm_release = ledger.claim("warm-up-2")
    assert warm_release is not None
    warm_release.release()
    client.sent.clear()

    claim = ledger.claim("evt-1")
    assert client.sent == ["SET"]
    assert ledger.claim("evt-1") is None  # refused: held
    assert client.sent == ["SET", "SET"]
    assert claim is not None
    claim.complete()
    assert client.sent == ["SET", "SET", "EVALSHA"]
    assert ledger.acquire("evt-1") == "done"  # done or held told apart in the same trip
    assert client.sent == ["SET", "SET", "EVALSHA", "SET"]
    other = ledger.claim("evt-2")
    assert other is not None
    client.sent.clear()
    other.release()
    assert client.sent == ["EVALSHA"]

    client.sent.clear()
    events = make_events(10)
    report = ledger.process(events, lambda event: None)
    assert len(report.processed) == 10
    assert client.sent == ["SET", "EVALSHA"] * 10
    client.sent.clear()
    ledger.process(events, lambda event: None)
    assert client.sent == ["SET"] * 10  # a done event costs one round trip
    client.close()


def test_async_round_trips(redis_url: str, namespace: str) -> None:
    async def main() -> list[str]:
        client = AsyncCountingRedis.from_url(redis_url)
        ledger = RedisLedger(async_client=client, namespace=namespace)
        try:
            warm = await ledger.aclaim("warm-up")
            assert warm is not None
            await warm.acomplete()
            client.sent.clear()
            events = make_events(5)

            async def handle(event: Any) -> None:
                await asyncio.sleep(0)

            report = await ledger.aprocess(events, handle)
            assert len(report.processed) == 5
            with pytest.raises(Exception, match="no sync client"):
                ledger.claim("sync")
            return list(client.sent)
        finally:
            await ledger.aclose()

    assert asyncio.run(main()) == ["SET", "EVALSHA"] * 5


def test_a_client_is_required() -> None:
    with pytest.raises(ValueError, match="client"):
        RedisLedger()


def test_unreachable_server_raises_ledger_unavailable(namespace: str) -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    ledger = RedisLedger.from_url(url, namespace=namespace, socket_connect_timeout=0.5, retry=None)
    with pytest.raises(LedgerUnavailable):
        ledger.claim("evt")
    ledger.close()


def test_four_processes_handle_each_event_exactly_once(redis_url: str, namespace: str) -> None:
    check_each_event_exactly_once(Target("redis", redis_url, namespace))


def test_a_dead_workers_event_is_taken_over_after_the_lease(redis_url: str, namespace: str) -> None:
    check_takeover_after_a_crash(Target("redis", redis_url, namespace, lease=0.6))
