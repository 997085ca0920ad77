"""The inbox (``enqueue``/``work``) on every backend: once, in order per webhook, retried."""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from ledger_support import (
    BOUND,
    LedgerFactory,
    Target,
    events_from,
    make_events,
    open_inbox,
    run_inbox_workers,
)

from upvest_verify import Event
from upvest_verify.ledger import (
    Backoff,
    FailedEvent,
    InboxLedger,
    InvalidEventId,
    MemoryLedger,
    SQLiteLedger,
    WorkReport,
)
from upvest_verify.ledger._inbox_store import HELD_RECHECK, Taken
from upvest_verify.testing import ManualClock, sample_events

QUICK = Backoff(initial=0.3, cap=0.6)
"""A backoff short enough to wait for in a test."""


class Boom(Exception):
    """The error a failing handler raises."""


def inbox(make_ledger: LedgerFactory, **options: float) -> InboxLedger:
    ledger = make_ledger(**options)
    assert isinstance(ledger, InboxLedger)
    return ledger


def two_webhooks(a: int, b: int) -> tuple[tuple[Event, ...], tuple[Event, ...], list[Event]]:
    """``a`` events of webhook A and ``b`` of webhook B, and both interleaved as delivered."""
    first = events_from(sample_events(a, webhook_id="webhook-a")["payload"])
    second = events_from(sample_events(b, webhook_id="webhook-b")["payload"])
    mixed = [e for pair in zip(first, second, strict=False) for e in pair]
    mixed += list(first[len(second) :]) + list(second[len(first) :])
    return first, second, mixed


def ids(events: Any) -> list[str]:
    return [event.id for event in events]


class Recorder:
    """A handler that records each call (id, wall time) and fails chosen ids a few times."""

    def __init__(self, failures: dict[str, int] | None = None) -> None:
        self.calls: list[tuple[str, float]] = []
        self.failures = dict(failures or {})

    def __call__(self, event: Event) -> None:
        self.calls.append((event.id, time.time()))
        if self.failures.get(event.id, 0) > 0:
            self.failures[event.id] -= 1
            raise Boom(f"cannot handle {event.id}")

    async def ahandle(self, event: Event) -> None:
        await asyncio.sleep(0)
        self(event)

    @property
    def order(self) -> list[str]:
        return [event_id for event_id, _ in self.calls]

    def when(self, event_id: str, nth: int = 0) -> float:
        return [at for i, at in self.calls if i == event_id][nth]


# --------------------------------------------------------------------------- contract


def test_enqueue_stores_each_event_once(make_ledger: LedgerFactory) -> None:
    """Enqueueing the same delivery twice stores its events once; duplicates in a batch too."""
    ledger = inbox(make_ledger)
    events = make_events(4)
    assert ledger.enqueue(events) == 4
    assert ledger.enqueue(events) == 0
    assert ledger.enqueue([events[0], *make_events(1), events[0]]) == 1
    assert ledger.enqueue([]) == 0
    assert ledger.pending() == 5
    assert ledger.failed() == ()


def test_work_handles_each_event_once_in_order_per_webhook(make_ledger: LedgerFactory) -> None:
    """Every queued event runs once, each webhook's in enqueue order, and ends done."""
    ledger = inbox(make_ledger)
    first, second, mixed = two_webhooks(4, 3)
    assert ledger.enqueue(mixed) == 7
    handler = Recorder()
    report = ledger.work(handler, idle_timeout=0)
    assert report == WorkReport(handled=7, reason="idle_timeout")
    assert Counter(handler.order) == Counter(ids(mixed))
    assert [i for i in handler.order if i in ids(first)] == ids(first)
    assert [i for i in handler.order if i in ids(second)] == ids(second)
    assert ledger.pending() == 0
    assert {ledger.acquire(i) for i in ids(mixed)} == {"done"}  # done for claim() too
    assert ledger.enqueue(mixed) == 0  # and for a later enqueue
    assert ledger.work(handler, idle_timeout=0).handled == 0


def test_a_failing_event_is_retried_with_backoff_and_holds_back_its_webhook(
    make_ledger: LedgerFactory,
) -> None:
    """A failure is retried after the backoff; later events of its webhook wait, others go on."""
    ledger = inbox(make_ledger)
    first, second, mixed = two_webhooks(3, 2)
    failing = first[1].id
    ledger.enqueue(mixed)
    handler = Recorder({failing: 1})
    report = ledger.work(handler, idle_timeout=0, backoff=QUICK)
    assert report == WorkReport(handled=3, failed=1, reason="idle_timeout")
    assert first[2].id not in handler.order  # waits behind the failed event
    assert set(ids(second)) <= set(handler.order)  # the other webhook went on
    (failure,) = ledger.failed()
    assert failure.event_id == failing
    assert failure.webhook_id == "webhook-a"
    assert failure.attempts == 1
    assert failure.error == f"Boom: cannot handle {failing}"
    assert 0 < failure.retry_in <= QUICK.initial
    assert ledger.pending() == 2
    report = ledger.work(handler, idle_timeout=BOUND, max_events=2, backoff=QUICK)
    assert report == WorkReport(handled=2, reason="max_events")
    assert handler.order[-2:] == [failing, first[2].id]
    assert handler.when(failing, 1) - handler.when(failing, 0) >= QUICK.initial - 0.05
    assert ledger.pending() == 0
    assert ledger.failed() == ()


def test_each_failure_is_logged(
    make_ledger: LedgerFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """A handler error is logged with the event id, attempt and traceback on the ledger logger."""
    ledger = inbox(make_ledger)
    (event,) = make_events(1)
    ledger.enqueue([event])
    with caplog.at_level(logging.WARNING, logger="upvest_verify.ledger"):
        ledger.work(Recorder({event.id: 1}), idle_timeout=0, backoff=QUICK)
    (record,) = [r for r in caplog.records if r.name == "upvest_verify.ledger"]
    assert record.levelno == logging.WARNING
    assert event.id in record.getMessage()
    assert "attempt 1" in record.getMessage()
    assert record.exc_info is not None
    assert record.exc_info[0] is Boom


def test_an_event_done_through_process_is_not_run_again(make_ledger: LedgerFactory) -> None:
    """The inbox and process() share one done-ledger, before and after the enqueue."""
    ledger = inbox(make_ledger)
    events = make_events(3)
    ledger.process(events[:1], lambda event: None)
    assert ledger.enqueue(events) == 2  # the processed one is not queued
    ledger.process(events[1:2], lambda event: None)  # queued, then processed elsewhere
    handler = Recorder()
    report = ledger.work(handler, idle_timeout=0)
    assert handler.order == [events[2].id]
    assert report.handled == 1
    assert ledger.pending() == 0


def test_an_event_held_on_another_path_holds_back_its_webhook(make_ledger: LedgerFactory) -> None:
    """While process() holds a queued head, nothing of its webhook runs; once done, it is skipped."""
    ledger = inbox(make_ledger)
    events = make_events(2)
    ledger.enqueue(events)
    elsewhere = ledger.claim(events[0].id)
    assert elsewhere is not None
    handler = Recorder()
    assert ledger.work(handler, idle_timeout=0).handled == 0
    assert handler.order == []
    elsewhere.complete()
    report = ledger.work(handler, idle_timeout=HELD_RECHECK + BOUND, max_events=1)
    assert report == WorkReport(handled=1, reason="max_events")
    assert handler.order == [events[1].id]  # the head was dropped as done, not run
    assert ledger.pending() == 0


def test_an_interrupted_handler_gives_its_event_back(make_ledger: LedgerFactory) -> None:
    """KeyboardInterrupt in the handler propagates; the event stays queued, with no failure."""
    ledger = inbox(make_ledger)
    (event,) = make_events(1)
    ledger.enqueue([event])

    def interrupted(event: Event) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        ledger.work(interrupted, idle_timeout=0)
    assert ledger.pending() == 1
    assert ledger.failed() == ()
    handler = Recorder()
    assert ledger.work(handler, idle_timeout=0).handled == 1
    assert handler.order == [event.id]


def test_a_lease_lost_during_the_handler_leaves_the_event_queued(
    make_ledger: LedgerFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """A handler slower than the lease cannot complete; the event runs again."""
    ledger = inbox(make_ledger, lease=0.25)
    (event,) = make_events(1)
    ledger.enqueue([event])
    with caplog.at_level(logging.ERROR, logger="upvest_verify.ledger"):
        report = ledger.work(lambda e: time.sleep(0.35), max_events=1)
    assert report == WorkReport(lost=1, reason="max_events")
    assert "lease ended" in caplog.text
    assert ledger.pending() == 1
    assert ledger.work(lambda e: None, idle_timeout=0).handled == 1
    assert ledger.pending() == 0


def test_stop_and_max_events_end_the_run(make_ledger: LedgerFactory) -> None:
    """A set stop event ends the run before the next event; max_events counts attempts."""
    ledger = inbox(make_ledger)
    events = make_events(6)
    ledger.enqueue(events)
    stopped = threading.Event()
    stopped.set()
    handler = Recorder()
    assert ledger.work(handler, stop=stopped) == WorkReport(reason="stop")
    assert handler.order == []
    assert ledger.work(handler, stop=lambda: len(handler.calls) >= 2) == WorkReport(2, 0, 0, "stop")
    report = ledger.work(handler, max_events=3, backoff=QUICK)
    assert report == WorkReport(handled=3, reason="max_events")
    assert handler.order == ids(events[:5])
    assert ledger.pending() == 1


def test_an_idle_worker_wakes_up_for_new_events(make_ledger: LedgerFactory) -> None:
    """A worker waiting on an empty inbox handles what is enqueued afterwards."""
    ledger = inbox(make_ledger)
    events = make_events(2)
    handler = Recorder()
    reports: list[WorkReport] = []
    worker = threading.Thread(
        target=lambda: reports.append(ledger.work(handler, max_events=2, idle_timeout=BOUND))
    )
    worker.start()
    time.sleep(0.1)
    ledger.enqueue(events)
    worker.join(BOUND + 5)
    assert not worker.is_alive()
    assert reports == [WorkReport(handled=2, reason="max_events")]
    assert handler.order == ids(events)


def test_bad_arguments_are_refused(make_ledger: LedgerFactory) -> None:
    """Out-of-range settings and unusable events fail before anything is stored or run."""
    ledger = inbox(make_ledger)
    for bad in ({"max_events": 0}, {"idle_timeout": -1.0}, {"poll": 0}, {"stop": 3}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            ledger.work(lambda e: None, **bad)  # type: ignore[arg-type]
    events = make_events(2)
    broken = Event(
        "", events[1].type, events[1].created_at, events[1].webhook_id, {}, events[1].raw
    )
    with pytest.raises(InvalidEventId):
        ledger.enqueue([events[0], broken])
    unserialisable = Event("evt-x", events[1].type, events[1].created_at, "w", {}, {"when": time})
    with pytest.raises(ValueError, match="cannot be queued"):
        ledger.enqueue([unserialisable])
    assert ledger.pending() == 0  # all or nothing


def test_stored_events_survive_a_restart(make_ledger: LedgerFactory, backend: str) -> None:
    """Events enqueued through one ledger object are worked by a new one on the same store."""
    if backend == "memory":
        pytest.skip("a memory ledger keeps nothing across a restart by design")
    first, _, mixed = two_webhooks(3, 2)
    before = inbox(make_ledger)
    before.enqueue(mixed)
    before.work(Recorder({first[0].id: 1}), idle_timeout=0, backoff=QUICK)  # B ran, A0 failed
    before.close()
    after = inbox(make_ledger)
    assert after.pending() == 3
    assert [f.event_id for f in after.failed()] == [first[0].id]
    handler = Recorder()
    report = after.work(handler, idle_timeout=BOUND, max_events=3, backoff=QUICK)
    assert report.handled == 3
    assert handler.order == ids(first)
    assert after.pending() == 0


def test_async_twins(make_ledger: LedgerFactory) -> None:
    """aenqueue, awork, apending and afailed behave as their sync twins."""
    ledger = inbox(make_ledger)
    first, _, mixed = two_webhooks(2, 2)
    handler = Recorder({first[0].id: 1})

    async def scenario() -> None:
        try:
            assert await ledger.aenqueue(mixed) == 4
            assert await ledger.aenqueue(mixed) == 0
            report = await ledger.awork(handler.ahandle, idle_timeout=0, backoff=QUICK)
            assert report == WorkReport(handled=2, failed=1, reason="idle_timeout")
            assert await ledger.apending() == 2
            (failure,) = await ledger.afailed()
            assert (failure.event_id, failure.attempts) == (first[0].id, 1)
            report = await ledger.awork(handler.ahandle, idle_timeout=BOUND, max_events=2)
            assert report == WorkReport(handled=2, reason="max_events")
            stop = asyncio.Event()
            stop.set()
            assert await ledger.awork(handler.ahandle, stop=stop) == WorkReport(reason="stop")
            assert await ledger.apending() == 0
        finally:
            await ledger.aclose()

    asyncio.run(scenario())
    assert [i for i in handler.order if i in ids(first)] == [first[0].id, *ids(first)]
    assert ledger.failed() == ()


def test_a_cancelled_async_worker_gives_its_event_back(make_ledger: LedgerFactory) -> None:
    """Cancelling awork mid-event releases the event for the next worker."""
    ledger = inbox(make_ledger)
    (event,) = make_events(1)

    async def scenario() -> None:
        try:
            await ledger.aenqueue([event])
            running = asyncio.Event()

            async def slow(e: Event) -> None:
                running.set()
                await asyncio.sleep(BOUND)

            task = asyncio.create_task(ledger.awork(slow))
            await asyncio.wait_for(running.wait(), BOUND)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert await ledger.apending() == 1
            seen: list[str] = []

            async def quick(e: Event) -> None:
                seen.append(e.id)

            assert (await ledger.awork(quick, idle_timeout=0)).handled == 1
            assert seen == [event.id]
        finally:
            await ledger.aclose()

    asyncio.run(scenario())


# --------------------------------------------------------------------------- clocks by hand


@pytest.fixture(params=["memory", "sqlite"])
def clocked(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[tuple[InboxLedger, ManualClock]]:
    """A ledger on a hand-moved clock, with a 10 s lease."""
    clock = ManualClock(1000)
    ledger: InboxLedger
    if request.param == "memory":
        ledger = MemoryLedger(lease=10, clock=clock)
    else:
        ledger = SQLiteLedger(tmp_path / "l.sqlite3", lease=10, clock=clock)
    yield ledger, clock
    ledger.close()


def test_backoff_doubles_to_the_cap_and_never_gives_up(
    clocked: tuple[InboxLedger, ManualClock],
) -> None:
    """Waits are 1, 2, 4, 4, 4 s; attempts are counted; the event is never dropped."""
    ledger, clock = clocked
    (event,) = make_events(1)
    ledger.enqueue([event])
    handler = Recorder({event.id: 5})
    backoff = Backoff(initial=1, factor=2, cap=4)
    for attempt, wait in enumerate([1, 2, 4, 4, 4], start=1):
        assert ledger.work(handler, idle_timeout=0, backoff=backoff).failed == 1
        (failure,) = ledger.failed()
        assert failure.attempts == attempt
        assert failure.retry_in == pytest.approx(wait)
        clock.advance(wait - 0.001)
        assert ledger.work(handler, idle_timeout=0, backoff=backoff).failed == 0  # not yet
        clock.advance(0.001)
    assert ledger.work(handler, idle_timeout=0, backoff=backoff).handled == 1
    assert len(handler.calls) == 6
    assert ledger.pending() == 0


def test_an_abandoned_event_is_taken_over_when_its_lease_ends(
    clocked: tuple[InboxLedger, ManualClock],
) -> None:
    """A worker that took an event and vanished holds it, and its webhook, for the lease."""
    ledger, clock = clocked
    events = make_events(2)
    ledger.enqueue(events)
    taken = ledger._inbox().take()  # a worker takes the head, then dies
    assert isinstance(taken, Taken)
    assert taken.claim.event_id == events[0].id
    handler = Recorder()
    clock.advance(9.999)
    assert ledger.work(handler, idle_timeout=0).handled == 0
    clock.advance(0.001)
    assert ledger.work(handler, idle_timeout=0).handled == 2
    assert handler.order == ids(events)
    assert ledger._inbox().finish(taken, None, None) is False  # the late worker is refused


def test_backoff_values() -> None:
    """Backoff doubles from initial up to the cap, even after very many attempts."""
    backoff = Backoff(initial=0.5, factor=3, cap=10)
    assert [backoff.delay(n) for n in range(1, 6)] == [0.5, 1.5, 4.5, 10, 10]
    assert backoff.delay(10**9) == 10
    assert Backoff(initial=2, factor=1, cap=5).delay(50) == 2
    for bad in ({"initial": 0}, {"cap": -1}, {"factor": 0.5}, {"initial": 5, "cap": 1}):
        with pytest.raises(ValueError, match=r"initial|cap|factor"):
            Backoff(**bad)  # type: ignore[arg-type]


def test_failed_event_fields() -> None:
    """FailedEvent is a frozen value."""
    failure = FailedEvent("e", "w", 2, "Boom: x", 1.5)
    with pytest.raises(AttributeError):
        failure.attempts = 3  # type: ignore[misc]


# --------------------------------------------------------------------------- processes


def _check_runs(runs: Any, queued: dict[str, list[str]]) -> None:
    """Each queued event ran exactly once and each webhook's events one after another."""
    assert Counter(run[0] for run in runs) == Counter(i for q in queued.values() for i in q)
    for webhook_id, order in queued.items():
        mine = [run for run in runs if run[1] == webhook_id]
        assert [run[0] for run in mine] == order
        for before, after in itertools.pairwise(mine):
            assert before[3] <= after[2], "a later event started before the earlier finished"


@pytest.mark.parametrize("kind", ["sqlite", "redis"])
def test_four_worker_processes_handle_300_events_exactly_once(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest, namespace: str
) -> None:
    """Four processes share one inbox: every event once, each webhook in order."""
    location = (
        str(tmp_path / "inbox.sqlite3")
        if kind == "sqlite"
        else request.getfixturevalue("redis_url")
    )
    target = Target(kind, location, namespace)
    ledger = open_inbox(target)
    by_webhook = {
        f"webhook-{n}": events_from(sample_events(30, webhook_id=f"webhook-{n}")["payload"])
        for n in range(10)
    }
    for start in range(0, 30, 5):  # deliveries of five events, the webhooks interleaved
        for events in by_webhook.values():
            assert ledger.enqueue(events[start : start + 5]) == 5
    assert ledger.pending() == 300
    logs = tmp_path / "logs"
    logs.mkdir()
    outcome = run_inbox_workers(target, str(logs), workers=4)
    assert outcome.exit_codes == [0] * 4
    _check_runs(outcome.runs, {webhook: ids(events) for webhook, events in by_webhook.items()})
    assert len({run[4] for run in outcome.runs}) > 1  # the work was shared
    assert ledger.pending() == 0
    ledger.close()


@pytest.mark.parametrize("kind", ["sqlite", "redis"])
def test_a_dead_workers_event_is_taken_over_after_the_lease(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest, namespace: str
) -> None:
    """A worker killed mid-event: its webhook waits for the lease, the other one goes on."""
    location = (
        str(tmp_path / "inbox.sqlite3")
        if kind == "sqlite"
        else request.getfixturevalue("redis_url")
    )
    target = Target(kind, location, namespace, lease=1.0)
    first, second, mixed = two_webhooks(5, 4)
    victim = first[2].id
    ledger = open_inbox(target)
    ledger.enqueue(mixed)
    logs = tmp_path / "logs"
    logs.mkdir()
    outcome = run_inbox_workers(target, str(logs), workers=1, die_on=victim)
    assert outcome.exit_codes == [17]
    assert outcome.died_at is not None
    done_before = [run[0] for run in outcome.runs]
    assert set(ids(first[:2])) <= set(done_before)  # the dead worker completed these
    assert set(done_before) <= set(ids(first[:2]) + ids(second))
    left = [e.id for e in mixed if e.id not in done_before]
    handler = Recorder()
    report = ledger.work(handler, idle_timeout=BOUND, max_events=len(left))
    assert report == WorkReport(handled=len(left), reason="max_events")
    assert Counter(handler.order) == Counter(left)  # nothing done before runs again
    rest_of_b = [i for i in handler.order if i in ids(second)]
    assert handler.order[: len(rest_of_b)] == rest_of_b  # the other webhook did not wait
    assert [i for i in handler.order if i in ids(first)] == ids(first[2:])
    assert handler.when(victim) - outcome.died_at >= target.lease - 0.1  # not before the lease
    assert ledger.pending() == 0
    ledger.close()


# --------------------------------------------------------------------------- storage layouts


def test_sqlite_inbox_tables_are_created_on_first_use(tmp_path: Path) -> None:
    """A claim-only ledger file has no inbox tables; the first enqueue adds them."""
    path = tmp_path / "l.sqlite3"
    ledger = SQLiteLedger(path)
    assert ledger.claim("evt") is not None

    def tables() -> list[str]:
        with sqlite3.connect(path) as conn:
            query = "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name"
            return [row[0] for row in conn.execute(query)]

    assert tables() == ["upvest_events"]
    (event,) = make_events(1)
    ledger.enqueue([event])
    assert tables() == ["upvest_events", "upvest_events_inbox", "upvest_events_inbox_due"]
    with sqlite3.connect(path) as conn:
        row = conn.execute("SELECT event_id, webhook_id, raw, attempts FROM upvest_events_inbox")
        assert row.fetchall() == [
            (event.id, event.webhook_id, json.dumps(event.raw, separators=(",", ":")), 0)
        ]
    ledger.close()


def test_redis_inbox_keys_and_round_trips(redis_url: str, namespace: str) -> None:
    """The documented keys hold a queued event; enqueue costs one trip, an event two."""
    redis = pytest.importorskip("redis")

    class Counting(redis.Redis):  # type: ignore[misc, name-defined]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.sent: list[str] = []

        def execute_command(self, *args: Any, **options: Any) -> Any:
            self.sent.append(str(args[0]))
            return super().execute_command(*args, **options)

    from upvest_verify.ledger import RedisLedger

    client = Counting.from_url(redis_url, decode_responses=True)
    ledger = RedisLedger(client, namespace=namespace, lease=30)
    ledger.enqueue(make_events(1))  # the first use of each script may load it
    ledger.work(lambda e: None, idle_timeout=0)
    client.sent.clear()

    events = make_events(3)
    assert ledger.enqueue(events) == 3
    assert client.sent == ["EVALSHA"]
    key = f"{namespace}:inbox:"
    item = client.hgetall(key + f"item:{events[0].id}")
    assert item == {
        "raw": json.dumps(events[0].raw, separators=(",", ":")),
        "webhook": events[0].webhook_id,
        "attempts": "0",
    }
    assert client.lrange(key + f"webhook:{events[0].webhook_id}", 0, -1) == ids(events)
    assert client.zrange(key + "due", 0, -1) == [events[0].webhook_id]
    assert client.get(key + "count") == "3"
    assert client.ttl(key + f"item:{events[0].id}") == -1  # queued events never expire
    assert 0 < client.pttl(key + "wake") <= 60_000

    client.sent.clear()
    assert ledger.work(lambda e: None, max_events=3).handled == 3
    assert client.sent == ["EVALSHA", "EVALSHA"] * 3  # take, complete
    assert sorted(client.keys(key + "*")) in ([key + "count", key + "wake"], [key + "count"])
    assert client.get(key + "count") == "0"
    assert client.get(f"{namespace}:event:{events[0].id}") == "done"
    client.close()
