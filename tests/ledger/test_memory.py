"""MemoryLedger: leases on an injected clock, bounded purge, threads."""

from __future__ import annotations

import threading
from collections import Counter

import pytest
from ledger_support import BOUND, Target, make_events, run_workers

from upvest_verify import Event
from upvest_verify.ledger import ClaimLost, MemoryLedger
from upvest_verify.testing import ManualClock as FakeClock
from upvest_verify.testing import sample_events


def test_lease_expires_on_the_clock() -> None:
    clock = FakeClock()
    ledger = MemoryLedger(lease=5, clock=clock)
    first = ledger.claim("evt")
    assert first is not None
    clock.now += 4.999
    assert ledger.acquire("evt") == "held"
    clock.now += 0.001
    second = ledger.claim("evt")
    assert second is not None
    with pytest.raises(ClaimLost):
        first.complete()
    second.complete()
    assert ledger.acquire("evt") == "done"


def test_retention_and_bounded_purge() -> None:
    clock = FakeClock()
    ledger = MemoryLedger(retention=100, clock=clock)
    for i in range(2500):
        claim = ledger.claim(f"evt-{i}")
        assert claim is not None
        claim.complete()
    assert len(ledger) == 2500
    clock.now += 99
    assert ledger.purge() == 0
    assert ledger.acquire("evt-0") == "done"
    clock.now += 1
    fresh = ledger.claim("new")  # each claim drops at most 1000 old ids
    assert fresh is not None
    assert len(ledger) == 1500 + 1
    assert ledger.purge() == 1500
    assert len(ledger) == 1
    assert ledger.claim("evt-0") is not None  # forgotten


def test_threads_share_one_ledger() -> None:
    ledger = MemoryLedger()
    events = make_events(300)
    calls: Counter[str] = Counter()
    lock = threading.Lock()
    barrier = threading.Barrier(4)

    def handle(event: Event) -> None:
        with lock:
            calls[event.id] += 1

    def work() -> None:
        barrier.wait(BOUND)
        ledger.process(events, handle)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(BOUND)
    assert not any(thread.is_alive() for thread in threads)
    assert calls == Counter({event.id: 1 for event in events})


def test_separate_memories_do_not_coordinate() -> None:
    """The multi-process check can fail: one memory per process handles every event 4 times."""
    payload = sample_events(20)["payload"]
    outcome = run_workers(Target("memory"), payload, 4)
    assert outcome.exit_codes == [0] * 4
    assert set(outcome.handled.values()) == {4}
