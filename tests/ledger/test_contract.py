"""The ledger contract, run against every backend (memory, SQLite, Redis)."""

from __future__ import annotations

import asyncio
import time
from collections import Counter

import pytest
from ledger_support import LedgerFactory, make_events

from upvest_verify import Event
from upvest_verify.ledger import (
    MAX_EVENT_ID_LENGTH,
    BaseLedger,
    Claim,
    ClaimLost,
    InvalidEventId,
    LedgerError,
    ProcessReport,
)
from upvest_verify.types import AsyncLedger, Ledger

SHORT_LEASE = 0.25
"""Seconds; the expiry tests sleep a little longer than this."""


class Boom(Exception):
    """The error a failing handler raises."""


def ids(events: tuple[Event, ...]) -> tuple[str, ...]:
    return tuple(event.id for event in events)


def test_implements_both_protocols(make_ledger: LedgerFactory) -> None:
    ledger = make_ledger()
    assert isinstance(ledger, Ledger)
    assert isinstance(ledger, AsyncLedger)


def test_claim_complete_then_done(make_ledger: LedgerFactory) -> None:
    ledger = make_ledger()
    claim = ledger.claim("evt-1")
    assert isinstance(claim, Claim)
    assert claim.event_id == "evt-1"
    assert ledger.acquire("evt-1") == "held"
    assert ledger.claim("evt-1") is None
    claim.complete()
    assert ledger.acquire("evt-1") == "done"
    assert ledger.claim("evt-1") is None
    assert ledger.claim("evt-2") is not None  # other ids are independent


def test_release_lets_the_event_be_claimed_again(make_ledger: LedgerFactory) -> None:
    ledger = make_ledger()
    first = ledger.claim("evt-1")
    assert first is not None
    first.release()
    second = ledger.claim("evt-1")
    assert second is not None
    assert second.token != first.token
    second.complete()
    assert ledger.acquire("evt-1") == "done"


def test_second_complete_or_release_raises(make_ledger: LedgerFactory) -> None:
    ledger = make_ledger()
    claim = ledger.claim("evt-1")
    assert claim is not None
    claim.complete()
    with pytest.raises(ClaimLost):
        claim.complete()
    with pytest.raises(ClaimLost):
        claim.release()
    assert ledger.acquire("evt-1") == "done"  # the failed release changed nothing


def test_foreign_claim_cannot_complete_or_release(make_ledger: LedgerFactory) -> None:
    ledger = make_ledger()
    owner = ledger.claim("evt-1")
    assert owner is not None
    forged = Claim("evt-1", "0" * 32, ledger)
    with pytest.raises(ClaimLost):
        forged.complete()
    with pytest.raises(ClaimLost):
        forged.release()
    assert ledger.acquire("evt-1") == "held"  # the owner's lease is untouched
    owner.complete()
    assert ledger.acquire("evt-1") == "done"


def test_expired_claim_is_taken_over_and_cannot_settle(make_ledger: LedgerFactory) -> None:
    ledger = make_ledger(lease=SHORT_LEASE)
    stale = ledger.claim("evt-1")
    assert stale is not None
    time.sleep(SHORT_LEASE + 0.1)
    with pytest.raises(ClaimLost):
        stale.complete()  # expired, nobody took over yet: still refused
    fresh = ledger.claim("evt-1")
    assert fresh is not None
    with pytest.raises(ClaimLost):
        stale.release()
    with pytest.raises(LedgerError):  # ClaimLost is a LedgerError
        stale.complete()
    fresh.complete()
    assert ledger.acquire("evt-1") == "done"


@pytest.mark.parametrize(
    "bad",
    ["", "x" * (MAX_EVENT_ID_LENGTH + 1), "a\nb", "nul\x00", 42, None, b"bytes"],
)
def test_invalid_event_ids_are_refused(make_ledger: LedgerFactory, bad: object) -> None:
    ledger = make_ledger()
    with pytest.raises(InvalidEventId) as info:
        ledger.claim(bad)  # type: ignore[arg-type]
    assert isinstance(info.value, ValueError)


def test_longest_event_id_is_accepted(make_ledger: LedgerFactory) -> None:
    ledger = make_ledger()
    claim = ledger.claim("é" * MAX_EVENT_ID_LENGTH)
    assert claim is not None
    claim.complete()


def test_process_handles_each_event_once_in_order(make_ledger: LedgerFactory) -> None:
    ledger = make_ledger()
    events = make_events(5)
    seen: list[str] = []
    report = ledger.process(events, lambda event: seen.append(event.id))
    assert seen == list(ids(events))
    assert report == ProcessReport(processed=ids(events))
    assert report.finished
    again = ledger.process(events, lambda event: seen.append(event.id))
    assert seen == list(ids(events))  # nothing handled twice
    assert again == ProcessReport(skipped=ids(events))


def test_failing_handler_releases_and_the_retry_resumes(make_ledger: LedgerFactory) -> None:
    ledger = make_ledger()
    events = make_events(4)
    calls: Counter[str] = Counter()
    failing = events[1].id

    def handle(event: Event) -> None:
        calls[event.id] += 1
        if event.id == failing and calls[event.id] == 1:
            raise Boom(event.id)

    with pytest.raises(Boom):
        ledger.process(events, handle)
    assert calls == Counter({events[0].id: 1, failing: 1})
    assert ledger.acquire(events[0].id) == "done"
    # Upvest retries the whole batch: only the unfinished events run again.
    report = ledger.process(events, handle)
    assert report == ProcessReport(processed=ids(events[1:]), skipped=(events[0].id,))
    assert calls == Counter({events[0].id: 1, failing: 2, events[2].id: 1, events[3].id: 1})


def test_events_held_elsewhere_are_reported_not_handled(make_ledger: LedgerFactory) -> None:
    ledger = make_ledger()
    events = make_events(3)
    other_worker = ledger.claim(events[1].id)
    assert other_worker is not None
    seen: list[str] = []
    report = ledger.process(events, lambda event: seen.append(event.id))
    assert seen == [events[0].id, events[2].id]
    assert report == ProcessReport(processed=(events[0].id, events[2].id), held=(events[1].id,))
    assert not report.finished
    other_worker.complete()
    assert ledger.process(events, lambda event: seen.append(event.id)).finished


def test_duplicate_event_in_one_batch_runs_once(make_ledger: LedgerFactory) -> None:
    ledger = make_ledger()
    (event,) = make_events(1)
    seen: list[str] = []
    report = ledger.process((event, event), lambda e: seen.append(e.id))
    assert seen == [event.id]
    assert report == ProcessReport(processed=(event.id,), skipped=(event.id,))


def test_claim_is_held_while_the_handler_runs(make_ledger: LedgerFactory) -> None:
    ledger = make_ledger()
    (event,) = make_events(1)
    states: list[object] = []
    ledger.process([event], lambda e: states.append(ledger.acquire(e.id)))
    assert states == ["held"]
    assert ledger.acquire(event.id) == "done"


def test_lease_lost_during_the_handler_raises(make_ledger: LedgerFactory) -> None:
    ledger = make_ledger(lease=SHORT_LEASE)
    (event,) = make_events(1)
    with pytest.raises(ClaimLost):
        ledger.process([event], lambda e: time.sleep(SHORT_LEASE + 0.1))
    assert ledger.claim(event.id) is not None  # not recorded as done


def test_handler_error_wins_over_a_lost_lease(make_ledger: LedgerFactory) -> None:
    ledger = make_ledger(lease=SHORT_LEASE)
    (event,) = make_events(1)

    def handle(e: Event) -> None:
        time.sleep(SHORT_LEASE + 0.1)
        raise Boom(e.id)

    with pytest.raises(Boom):
        ledger.process([event], handle)


def test_completed_ids_are_forgotten_after_the_retention(make_ledger: LedgerFactory) -> None:
    ledger = make_ledger(retention=0.3)
    claim = ledger.claim("evt-1")
    assert claim is not None
    claim.complete()
    assert ledger.acquire("evt-1") == "done"
    time.sleep(0.4)
    assert ledger.claim("evt-1") is not None


def test_bad_durations_are_refused(make_ledger: LedgerFactory) -> None:
    for bad in (0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="lease"):
            make_ledger(lease=bad)
        with pytest.raises(ValueError, match="retention"):
            make_ledger(retention=bad)


# --------------------------------------------------------------------------- async twin


def run(ledger: BaseLedger, scenario: object) -> None:
    """Run a coroutine, then close the ledger's async resources in the same loop."""

    async def main() -> None:
        try:
            await scenario  # type: ignore[misc]
        finally:
            await ledger.aclose()

    asyncio.run(main())


def test_aprocess_resumes_after_a_failure(make_ledger: LedgerFactory) -> None:
    ledger = make_ledger()
    events = make_events(3)
    calls: Counter[str] = Counter()

    async def handle(event: Event) -> None:
        await asyncio.sleep(0)
        calls[event.id] += 1
        if event.id == events[1].id and calls[event.id] == 1:
            raise Boom(event.id)

    async def scenario() -> None:
        with pytest.raises(Boom):
            await ledger.aprocess(events, handle)
        report = await ledger.aprocess(events, handle)
        assert report == ProcessReport(processed=ids(events[1:]), skipped=(events[0].id,))
        again = await ledger.aprocess(events, handle)
        assert again == ProcessReport(skipped=ids(events))

    run(ledger, scenario())
    assert calls == Counter({events[0].id: 1, events[1].id: 2, events[2].id: 1})


def test_aclaim_and_async_settle(make_ledger: LedgerFactory) -> None:
    ledger = make_ledger()

    async def scenario() -> None:
        claim = await ledger.aclaim("evt-1")
        assert claim is not None
        assert await ledger.aclaim("evt-1") is None
        assert await ledger.aacquire("evt-1") == "held"
        await claim.arelease()
        claim = await ledger.aclaim("evt-1")
        assert claim is not None
        await claim.acomplete()
        assert await ledger.aacquire("evt-1") == "done"
        with pytest.raises(ClaimLost):
            await claim.acomplete()
        with pytest.raises(ClaimLost):
            await claim.arelease()

    run(ledger, scenario())
    assert ledger.acquire("evt-1") == "done"  # the sync side sees the same store


def test_aprocess_reports_held_events(make_ledger: LedgerFactory) -> None:
    ledger = make_ledger()
    events = make_events(2)
    holder = ledger.claim(events[0].id)
    assert holder is not None
    seen: list[str] = []

    async def handle(event: Event) -> None:
        seen.append(event.id)

    async def scenario() -> None:
        report = await ledger.aprocess(events, handle)
        assert report == ProcessReport(processed=(events[1].id,), held=(events[0].id,))

    run(ledger, scenario())
    assert seen == [events[1].id]
