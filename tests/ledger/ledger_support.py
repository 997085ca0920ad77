"""Helpers for the ledger tests: events, a real redis-server, worker processes.

Imported by the test modules and, under the ``spawn`` start method, by the worker
processes (not a test module itself).
"""

from __future__ import annotations

import multiprocessing
import os
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

# The redis-server helpers live in tests/redis_support.py (the documentation tests start
# one too); re-exported here for the ledger tests.
from redis_support import free_port, run_redis_server  # noqa: F401
from upvest_verify import Event
from upvest_verify.ledger import (
    BaseLedger,
    BaseReplayStore,
    MemoryLedger,
    MemoryReplayStore,
    SQLiteLedger,
    SQLiteReplayStore,
)
from upvest_verify.testing import sample_events

LedgerFactory = Callable[..., BaseLedger]
"""The ``make_ledger`` fixture: builds a ledger of the backend under test."""

ReplayStoreFactory = Callable[..., BaseReplayStore]
"""The ``make_store`` fixture: builds a replay store of the backend under test."""

BOUND = 15.0
"""Seconds any wait in these tests may last; a bound, never a speed assertion."""


def make_events(n: int) -> tuple[Event, ...]:
    """``n`` events with fresh ids, in delivery order."""
    return events_from(sample_events(n)["payload"])


def events_from(payload: list[dict[str, Any]]) -> tuple[Event, ...]:
    """Events from a decoded ``payload`` list."""
    return tuple(Event.from_json(item) for item in payload)


def wait_until(condition: Any, what: str, timeout: float = BOUND) -> None:
    """Poll ``condition()`` every 20 ms; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"{what} within {timeout} s")
        time.sleep(0.02)


# --------------------------------------------------------------------------- worker processes


@dataclass(frozen=True)
class Target:
    """How a worker process opens its ledger (picklable)."""

    kind: str  # "sqlite", "redis", or "memory" (a separate memory per process)
    location: str = ""  # database path or Redis URL
    namespace: str = "upvest"
    lease: float = 30.0


def open_ledger(target: Target) -> BaseLedger:
    """The ledger a worker process uses."""
    if target.kind == "sqlite":
        return SQLiteLedger(target.location, lease=target.lease)
    if target.kind == "redis":
        from upvest_verify.ledger import RedisLedger

        return RedisLedger.from_url(target.location, namespace=target.namespace, lease=target.lease)
    return MemoryLedger(lease=target.lease)


def _worker(
    target: Target,
    index: int,
    payload: list[dict[str, Any]],
    barrier: Any,
    results: Any,
    die_on: str | None,
) -> None:
    ledger = open_ledger(target)
    handled: list[str] = []

    def handle(event: Event) -> None:
        if event.id == die_on:
            results.put(("dying", index, time.time()))
            results.close()
            results.join_thread()  # make sure the parent gets it before the hard exit
            os._exit(17)
        handled.append(event.id)

    barrier.wait(BOUND)
    report = ledger.process(events_from(payload), handle)
    ledger.close()
    results.put(("done", index, handled, report.processed, report.skipped, report.held))


@dataclass(frozen=True)
class Outcome:
    """What the worker processes did."""

    handled: Counter[str]  # handler calls per event id, over all workers
    reports: list[tuple[list[str], list[str], list[str]]]  # processed, skipped, held
    exit_codes: list[int | None]
    died_at: float | None = None


def run_workers(
    target: Target, payload: list[dict[str, Any]], workers: int, die_on: str | None = None
) -> Outcome:
    """Run ``workers`` spawned processes over the same batch; collect what each did."""
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(workers)
    results = ctx.Queue()
    processes = [
        ctx.Process(target=_worker, args=(target, i, payload, barrier, results, die_on))
        for i in range(workers)
    ]
    for process in processes:
        process.start()
    handled: Counter[str] = Counter()
    reports = []
    died_at = None
    try:
        expected = workers
        while expected:
            message = results.get(timeout=BOUND * 2)
            expected -= 1
            if message[0] == "dying":
                died_at = message[2]
                continue
            _, _, calls, processed, skipped, held = message
            handled.update(calls)
            reports.append((list(processed), list(skipped), list(held)))
    finally:
        for process in processes:
            process.join(BOUND)
            if process.is_alive():
                process.kill()
                process.join(BOUND)
        results.close()
        results.join_thread()
    return Outcome(handled, reports, [p.exitcode for p in processes], died_at)


def open_replay_store(
    kind: str, location: str = "", namespace: str = "upvest", **options: Any
) -> BaseReplayStore:
    """A replay store of ``kind`` ("memory", "sqlite" or "redis") at ``location``."""
    if kind == "sqlite":
        return SQLiteReplayStore(location, **options)
    if kind == "redis":
        from upvest_verify.ledger import RedisReplayStore

        return RedisReplayStore.from_url(location, namespace=namespace, **options)
    return MemoryReplayStore(**options)


# --------------------------------------------------------------------------- shared scenarios


def check_each_event_exactly_once(target: Target, workers: int = 4, events: int = 500) -> None:
    """``workers`` processes get the same batch; every event is handled exactly once."""
    payload = sample_events(events)["payload"]
    all_ids = [item["id"] for item in payload]
    outcome = run_workers(target, payload, workers)
    assert outcome.exit_codes == [0] * workers
    assert len(outcome.reports) == workers
    # Handler calls, counted by the handlers themselves: each id exactly once.
    assert sorted(outcome.handled) == sorted(all_ids)
    assert set(outcome.handled.values()) == {1}
    assert sum(outcome.handled.values()) == events
    # Each worker accounted for every event of the batch: processed, skipped or held.
    processed = [i for report in outcome.reports for i in report[0]]
    assert sorted(processed) == sorted(all_ids)
    for report in outcome.reports:
        assert sorted(report[0] + report[1] + report[2]) == sorted(all_ids)
    # And the store agrees: everything is done.
    ledger = open_ledger(target)
    assert {ledger.acquire(i) for i in all_ids} == {"done"}
    ledger.close()


def check_takeover_after_a_crash(target: Target, events: int = 6) -> None:
    """A worker dies inside a handler; its event is taken over once the lease ends."""
    payload = sample_events(events)["payload"]
    all_ids = [item["id"] for item in payload]
    victim = all_ids[2]
    outcome = run_workers(target, payload, 1, die_on=victim)
    assert outcome.exit_codes == [17]  # died by os._exit inside the victim's handler
    assert outcome.died_at is not None
    ledger = open_ledger(target)
    handled: list[str] = []
    report = ledger.process(events_from(payload), lambda event: handled.append(event.id))
    looked_at = time.time()
    # The dead worker completed the first two events; they are not handled again.
    assert report.skipped == tuple(all_ids[:2])
    if looked_at - outcome.died_at < target.lease / 2:  # the lease is certainly still live
        assert report.held == (victim,)
        assert victim not in handled
    # Retry (as Upvest does) until the lease runs out and the victim is taken over.
    deadline = time.monotonic() + target.lease + BOUND
    while victim not in handled:
        assert time.monotonic() < deadline, "the dead worker's event was never taken over"
        time.sleep(0.05)
        report = ledger.process(events_from(payload), lambda event: handled.append(event.id))
    taken_over_at = time.time()
    assert taken_over_at - outcome.died_at >= target.lease - 0.1  # not before the lease ended
    assert sorted(handled) == sorted(all_ids[2:])  # each remaining event exactly once
    assert Counter(handled).most_common(1)[0][1] == 1
    assert {ledger.acquire(i) for i in all_ids} == {"done"}
    ledger.close()


# --------------------------------------------------------------------------- inbox workers


def open_inbox(target: Target) -> Any:
    """The ledger a worker process runs ``work()`` on (an ``InboxLedger``)."""
    from upvest_verify.ledger import InboxLedger

    ledger = open_ledger(target)
    assert isinstance(ledger, InboxLedger)
    return ledger


def _inbox_worker(
    target: Target, log_dir: str, index: int, barrier: Any, die_on: str | None, idle: float
) -> None:
    ledger = open_inbox(target)
    with open(os.path.join(log_dir, f"worker-{index}.log"), "a", buffering=1) as log:

        def handle(event: Event) -> None:
            start = time.time()
            if event.id == die_on:
                log.write(f"dying {event.id} {start}\n")  # line-buffered: written now
                os._exit(17)
            time.sleep(0.001)  # long enough for the workers to interleave
            log.write(f"ran {event.id} {event.webhook_id} {start} {time.time()} {index}\n")

        barrier.wait(BOUND)
        report = ledger.work(handle, idle_timeout=idle)
        ledger.close()
        log.write(f"report {index} {report.handled} {report.failed} {report.lost}\n")


@dataclass(frozen=True)
class InboxRun:
    """What inbox worker processes did, read back from their logs."""

    runs: list[tuple[str, str, float, float, int]]  # event id, webhook id, start, end, worker
    exit_codes: list[int | None]
    died_at: float | None  # wall clock when a worker died inside the handler


def run_inbox_workers(
    target: Target, log_dir: str, workers: int, die_on: str | None = None, idle: float = 1.0
) -> InboxRun:
    """Run ``workers`` spawned processes of ``ledger.work()`` until each is idle for ``idle`` s."""
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(workers)
    processes = [
        ctx.Process(target=_inbox_worker, args=(target, log_dir, i, barrier, die_on, idle))
        for i in range(workers)
    ]
    for process in processes:
        process.start()
    for process in processes:
        process.join(BOUND * 4)
        if process.is_alive():
            process.kill()
            process.join(BOUND)
    runs: list[tuple[str, str, float, float, int]] = []
    died_at = None
    for i in range(workers):
        path = os.path.join(log_dir, f"worker-{i}.log")
        if not os.path.exists(path):
            continue
        with open(path) as log:
            for line in log:
                kind, *fields = line.split()
                if kind == "ran":
                    event_id, webhook_id, start, end, index = fields
                    runs.append((event_id, webhook_id, float(start), float(end), int(index)))
                elif kind == "dying":
                    died_at = float(fields[1])
    return InboxRun(sorted(runs, key=lambda run: run[2]), [p.exitcode for p in processes], died_at)
