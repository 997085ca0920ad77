"""The framework-free admission, processing and settling of every adapter (``adapters/_delivery``)."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from adapter_support import SIGNING_KEY

from upvest_verify import ConfigurationError, Event, VerifiedWebhook, Verifier
from upvest_verify.adapters._delivery import (
    Answer,
    Delivery,
    aadmit,
    admit,
    afinish,
    aqueue,
    check_ledger,
    finish,
    queue,
)
from upvest_verify.adapters._reject import Rejection, rejection_for
from upvest_verify.ledger import (
    Acquired,
    BaseLedger,
    Claim,
    ClaimLost,
    LedgerUnavailable,
    MemoryLedger,
    MemoryReplayStore,
)
from upvest_verify.testing import ManualClock, make_key_set, sample_events, sign_webhook

URL = "https://hooks.example.com/webhooks/upvest"


def verified(body: Any = None, verifier: Verifier | None = None) -> VerifiedWebhook:
    """A webhook verified for real (fresh events unless ``body`` is given)."""
    verifier = verifier or Verifier(make_key_set(SIGNING_KEY))
    signed = sign_webhook(sample_events(3) if body is None else body, key=SIGNING_KEY, url=URL)
    return verifier.verify(signed.method, signed.url, signed.headers, signed.body)


def ids(webhook: VerifiedWebhook) -> list[str]:
    """The event ids of ``webhook``, in order."""
    return [event.id for event in webhook.events]


def free(ledger: BaseLedger, event_id: str) -> bool:
    """Whether ``event_id`` can be claimed right now (the claim is given back)."""
    outcome = ledger.acquire(event_id)
    if isinstance(outcome, Claim):
        outcome.release()
        return True
    return False


class Failing(MemoryLedger):
    """A memory ledger whose storage fails on the n-th acquire."""

    def __init__(self, fail_at: int) -> None:
        super().__init__()
        self.fail_at = fail_at
        self.acquired = 0

    def acquire(self, event_id: str) -> Acquired:
        self.acquired += 1
        if self.acquired == self.fail_at:
            raise LedgerUnavailable("storage down")
        return super().acquire(event_id)


@pytest.fixture
def delivery_log(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """Records of ``upvest_verify.delivery`` from INFO up."""
    with caplog.at_level(logging.INFO, logger="upvest_verify.delivery"):
        yield caplog


def document(answer: Delivery | Answer) -> tuple[int, dict[str, Any], dict[str, str]]:
    """An answer's status, decoded body and headers."""
    assert isinstance(answer, Answer)
    return answer.status, json.loads(answer.body), dict(answer.headers)


# --------------------------------------------------------------------------- admission


def test_claims_every_event_in_order() -> None:
    """Fresh events are claimed in batch order and stay pending for the view."""
    ledger, webhook = MemoryLedger(), verified()
    delivery = admit(ledger, webhook)
    assert isinstance(delivery, Delivery)
    assert [e.id for e in delivery.events] == ids(webhook)
    assert delivery.pending == tuple(ids(webhook))
    assert delivery.skipped == ()
    assert delivery.webhook is webhook
    assert not any(free(ledger, i) for i in ids(webhook))  # held by this delivery


def test_repeated_id_in_one_batch_is_handled_once() -> None:
    """An id repeated within the batch is claimed once and listed as skipped."""
    payload = sample_events(2)["payload"]
    webhook = verified({"payload": [payload[0], payload[1], payload[0]]})
    delivery = admit(MemoryLedger(), webhook)
    assert isinstance(delivery, Delivery)
    assert [e.id for e in delivery.events] == [payload[0]["id"], payload[1]["id"]]
    assert delivery.skipped == (payload[0]["id"],)


def test_done_events_are_left_out_and_all_done_answers_at_once(
    delivery_log: pytest.LogCaptureFixture,
) -> None:
    """Done events are skipped; when all are done the answer is 200 already_processed."""
    ledger, webhook = MemoryLedger(), verified()
    first = ids(webhook)[0]
    claim = ledger.acquire(first)
    assert isinstance(claim, Claim)
    claim.complete()
    delivery = admit(ledger, webhook)
    assert isinstance(delivery, Delivery)
    assert delivery.skipped == (first,)
    assert [e.id for e in delivery.events] == ids(webhook)[1:]
    delivery.settle(done=True)
    status, body, headers = document(admit(ledger, webhook))
    assert (status, body) == (200, {"status": "already_processed"})
    assert headers["content-type"] == "application/json"
    assert "already processed" in delivery_log.records[-1].getMessage()
    assert delivery_log.records[-1].levelno == logging.INFO


def test_empty_payload_reaches_the_view() -> None:
    """A delivery without events is no duplicate: the view gets an empty Delivery."""
    delivery = admit(MemoryLedger(), verified({"payload": []}))
    assert isinstance(delivery, Delivery)
    assert delivery.events == ()


def test_held_event_answers_503_and_gives_the_claims_back(
    delivery_log: pytest.LogCaptureFixture,
) -> None:
    """A held event stops admission: 503 in_progress with Retry-After, earlier claims released."""
    ledger, webhook = MemoryLedger(), verified()
    a, b, c = ids(webhook)
    other = ledger.acquire(b)
    assert isinstance(other, Claim)
    status, body, headers = document(admit(ledger, webhook))
    assert (status, body["detail"], headers["retry-after"]) == (503, "in_progress", "5")
    assert headers["content-type"] == "application/problem+json"
    assert free(ledger, a)
    assert free(ledger, c)
    [record] = delivery_log.records
    assert record.levelno == logging.WARNING
    assert "in_progress" in record.getMessage()
    assert repr(b) in record.getMessage()


def test_ledger_failure_answers_503_and_gives_the_claims_back(
    delivery_log: pytest.LogCaptureFixture,
) -> None:
    """LedgerUnavailable mid-batch: 503 ledger_unavailable, claims taken so far released."""
    ledger, webhook = Failing(fail_at=2), verified()
    status, body, headers = document(admit(ledger, webhook))
    assert (status, body["detail"], headers["retry-after"]) == (503, "ledger_unavailable", "5")
    assert free(ledger, ids(webhook)[0])
    assert delivery_log.records[0].levelno == logging.ERROR
    assert "storage down" in delivery_log.records[0].getMessage()


@pytest.mark.parametrize(
    "body",
    [{"hello": "world"}, {"payload": [{"id": "bad\nid", "type": "X.Y"}]}],
    ids=["no-envelope", "bad-id"],
)
def test_events_that_cannot_key_the_ledger(body: Any) -> None:
    """A body without events, or an id the ledger refuses: 400 invalid_payload."""
    if "payload" in body:  # a complete event whose id holds a control character
        event = sample_events(1)["payload"][0]
        body = {"payload": [sample_events(1)["payload"][0], {**event, "id": "bad\nid"}]}
    ledger, webhook = MemoryLedger(), verified(body)
    status, document_, headers = document(admit(ledger, webhook))
    assert (status, document_["detail"]) == (400, "invalid_payload")
    assert "retry-after" not in headers
    if "payload" in body:
        assert free(ledger, body["payload"][0]["id"])  # the first claim was given back


def test_async_admission_matches() -> None:
    """aadmit, with async or blocking ledger calls, admits like admit."""
    for blocking in (False, True):
        ledger, webhook = MemoryLedger(), verified()
        delivery = asyncio.run(aadmit(ledger, webhook, blocking=blocking))
        assert isinstance(delivery, Delivery)
        assert delivery.pending == tuple(ids(webhook))


# --------------------------------------------------------------------------- processing


def admitted(ledger: BaseLedger | None = None) -> tuple[BaseLedger, Delivery]:
    """A ledger and a fresh three-event delivery admitted through it."""
    ledger = MemoryLedger() if ledger is None else ledger
    delivery = admit(ledger, verified())
    assert isinstance(delivery, Delivery)
    return ledger, delivery


def test_process_completes_each_event_as_it_goes() -> None:
    """process() completes every claim right after its handler; a second call does nothing."""
    ledger, delivery = admitted()
    seen: list[str] = []

    def handle(event: Event) -> None:
        assert ledger.acquire(event.id) == "held"  # still ours while handled
        seen.append(event.id)

    report = delivery.process(handle)
    assert report.processed == tuple(seen) == tuple(e.id for e in delivery.events)
    assert delivery.pending == ()
    assert {ledger.acquire(i) for i in seen} == {"done"}
    assert delivery.process(handle).processed == ()


def test_handler_error_releases_this_and_later_events() -> None:
    """A handler error: earlier events stay done, this one and later ones go back, it propagates."""
    ledger, delivery = admitted()
    a, b, c = (e.id for e in delivery.events)

    def handle(event: Event) -> None:
        if event.id == b:
            raise RuntimeError("handler failed")

    with pytest.raises(RuntimeError, match="handler failed"):
        delivery.process(handle)
    assert ledger.acquire(a) == "done"
    assert free(ledger, b)
    assert free(ledger, c)
    assert delivery.pending == ()


def test_lost_lease_while_completing_propagates_and_releases_the_rest() -> None:
    """ClaimLost on completion propagates; the events after it are released."""
    clock = ManualClock()
    ledger, delivery = admitted(MemoryLedger(lease=10, clock=clock))
    a, b, c = (e.id for e in delivery.events)
    rival: list[Claim] = []

    def handle(event: Event) -> None:
        if event.id == b:
            clock.advance(11)  # every lease ran out while this handler worked
            taken = ledger.acquire(b)  # and another worker took the event over
            assert isinstance(taken, Claim)
            rival.append(taken)

    with pytest.raises(ClaimLost):
        delivery.process(handle)
    assert ledger.acquire(a) == "done"
    assert ledger.acquire(b) == "held"  # the rival's
    assert free(ledger, c)


def test_aprocess_with_async_and_blocking_calls() -> None:
    """aprocess completes per event through the async or the blocking ledger calls."""
    for blocking in (False, True):
        ledger = MemoryLedger()
        delivery = asyncio.run(aadmit(ledger, verified(), blocking=blocking))
        assert isinstance(delivery, Delivery)
        seen: list[str] = []

        async def handle(event: Event, seen: list[str] = seen) -> None:
            seen.append(event.id)

        report = asyncio.run(delivery.aprocess(handle))
        assert report.processed == tuple(seen)
        assert {ledger.acquire(i) for i in seen} == {"done"}


def test_settle_logs_a_lost_claim_and_settles_the_others(
    delivery_log: pytest.LogCaptureFixture,
) -> None:
    """settle() never raises: a lost claim is logged at ERROR, the other claims still settle."""
    clock = ManualClock()
    ledger, delivery = admitted(MemoryLedger(lease=10, clock=clock))
    a, b, _ = (e.id for e in delivery.events)
    clock.advance(11)
    rival = ledger.acquire(a)  # the lease of ``a`` ran out and another worker took it
    assert isinstance(rival, Claim)
    delivery.settle(done=True)
    lost = [r for r in delivery_log.records if "claim lost" in r.getMessage()]
    assert len(lost) == 3  # all three leases ended; none is recorded as done
    assert all(r.levelno == logging.ERROR for r in lost)
    assert ledger.acquire(a) == "held"
    assert free(ledger, b)


def test_repr_names_the_ids() -> None:
    """A delivery's repr lists its event, skipped and pending ids (no bodies)."""
    _, delivery = admitted()
    text = repr(delivery)
    assert all(e.id in text for e in delivery.events)
    assert "pending=" in text


# --------------------------------------------------------------------------- finishing


def test_finish_settles_by_status_and_records_on_2xx_only() -> None:
    """finish(): 2xx completes and records the signature; non-2xx or no answer releases only."""
    store = MemoryReplayStore()
    verifier = Verifier(make_key_set(SIGNING_KEY), replay_store=store)
    for status, done in ((500, False), (None, False), (204, True)):
        ledger = MemoryLedger()
        webhook = verified(verifier=verifier)
        delivery = admit(ledger, webhook)
        assert isinstance(delivery, Delivery)
        finish(verifier, webhook, delivery, status)
        assert delivery.pending == ()
        assert store.seen(webhook) is done
        assert {free(ledger, i) for i in ids(webhook)} == {not done}


def test_finish_without_ledger_and_a_failing_store(
    delivery_log: pytest.LogCaptureFixture,
) -> None:
    """Without a delivery only the signature is recorded; a store failure is logged, not raised."""

    class Broken(MemoryReplayStore):
        async def arecord(self, webhook: VerifiedWebhook, *, until: float) -> None:
            raise LedgerUnavailable("replay store down")

    verifier = Verifier(make_key_set(SIGNING_KEY), replay_store=Broken())
    webhook = verified(verifier=verifier)
    asyncio.run(afinish(verifier, webhook, None, 200))
    assert "replay store down" in delivery_log.records[-1].getMessage()
    finish(verifier, webhook, None, 200)  # the sync path records
    assert verifier.replay_store is not None
    assert verifier.replay_store.seen(webhook)


# --------------------------------------------------------------------------- inbox


def test_queue_stores_the_events_once() -> None:
    """queue() enqueues the events: 200 queued with the number of new ones."""
    ledger, webhook = MemoryLedger(), verified()
    assert document(queue(ledger, webhook))[:2] == (200, {"status": "queued", "new": 3})
    again = asyncio.run(aqueue(ledger, webhook))
    assert document(again)[:2] == (200, {"status": "queued", "new": 0})
    assert ledger.pending() == 3


def test_queue_failures() -> None:
    """A body without events is 400, a failing store 503, a ledger without a queue 500."""

    class Down(MemoryLedger):
        def enqueue(self, events: Any) -> int:
            raise LedgerUnavailable("queue down")

    assert document(queue(MemoryLedger(), verified({"x": 1})))[1]["detail"] == "invalid_payload"
    assert document(queue(Down(), verified()))[:2][0] == 503

    class NoQueue(BaseLedger):
        retention = 60.0
        acquire = aacquire = settle = asettle = None  # type: ignore[assignment]

    assert document(queue(NoQueue(), verified()))[0] == 500


def test_check_ledger() -> None:
    """Only ledgers are accepted; inbox needs a bool and a ledger with a queue."""
    ledger = MemoryLedger()
    assert check_ledger(None) is None
    assert check_ledger(ledger, True) is ledger
    for bad, inbox, message in (
        ("memory://", False, "ledger must be"),
        (ledger, "yes", "inbox must be True or False"),
        (None, True, "needs a ledger"),
    ):
        with pytest.raises(ConfigurationError, match=message):
            check_ledger(bad, inbox)


def test_rejections_carry_retry_after() -> None:
    """A replay store failing inside verify() is 503 ledger_unavailable with Retry-After."""
    rejection = rejection_for(LedgerUnavailable("down"))
    assert rejection == Rejection(503, "ledger_unavailable", 5)
    assert ("retry-after", "5") in rejection.headers()
    assert all(name != "retry-after" for name, _ in Rejection(401, "bad_signature").headers())
