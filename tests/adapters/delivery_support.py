"""Receivers with an event ledger, and the scenarios every adapter must pass (not a test module).

Each ``test_ledger_<framework>.py`` serves its framework's views on a real loopback
server with a ledger, and runs the ``check_*`` scenarios here against it through a
:class:`Target`: where to send, what the views did (:class:`Script`), and the ledger
the adapter admits with (to hold an event, or to look at what it recorded).
"""

from __future__ import annotations

import json
import socket
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from adapter_support import SIGNING_KEY, raw_request, wire_headers

from upvest_verify import Event
from upvest_verify.adapters.starlette import Delivery
from upvest_verify.ledger import BaseLedger, Claim, InboxLedger, MemoryLedger
from upvest_verify.testing import SignedWebhook, sample_events, sign_webhook

Answer = tuple[int, Any, dict[str, str]]
"""Status, decoded JSON body (``None`` when not JSON) and lower-cased headers."""


class Boom(Exception):
    """What a test view's handler raises for the event it is told to fail on."""


@dataclass
class Script:
    """What the test views do with their delivery; a test sets it before sending.

    Attributes:
        mode: ``"process"`` hands the events to ``delivery.process``/``aprocess``;
            ``"own"`` iterates ``delivery.events`` and leaves completion to the adapter.
        fail_on: The event id whose handler raises :class:`Boom`.
        status: The status the view answers with when no handler raised.
        handled: Event ids handled, in order, over every request.
        deliveries: The delivery each view call got, in order.
    """

    mode: str = "process"
    fail_on: str | None = None
    status: int = 200
    handled: list[str] = field(default_factory=list)
    deliveries: list[Delivery | None] = field(default_factory=list)

    def reset(
        self, *, mode: str = "process", fail_on: str | None = None, status: int = 200
    ) -> None:
        """Start a test: forget what was handled, set what the views do."""
        self.mode, self.fail_on, self.status = mode, fail_on, status
        self.handled.clear()
        self.deliveries.clear()

    @property
    def calls(self) -> int:
        """How many times a view ran."""
        return len(self.deliveries)

    def _handle(self, event: Event) -> None:
        if event.id == self.fail_on:
            raise Boom(event.id)
        self.handled.append(event.id)

    async def _ahandle(self, event: Event) -> None:
        self._handle(event)

    def run(self, delivery: Delivery | None) -> tuple[dict[str, Any], int]:
        """The sync views' body: handle the delivery; the JSON document and status."""
        self.deliveries.append(delivery)
        if delivery is None:
            return {"delivery": None}, self.status
        if self.mode == "process":
            done = list(delivery.process(self._handle).processed)
        else:
            for event in delivery.events:
                self._handle(event)
            done = [event.id for event in delivery.events]
        return {"processed": done, "skipped": list(delivery.skipped)}, self.status

    async def arun(self, delivery: Delivery | None) -> tuple[dict[str, Any], int]:
        """The async views' body: like :meth:`run`, with ``aprocess``."""
        if delivery is None or self.mode != "process":
            return self.run(delivery)
        self.deliveries.append(delivery)
        report = await delivery.aprocess(self._ahandle)
        return {"processed": list(report.processed), "skipped": list(delivery.skipped)}, self.status


@dataclass
class Batch:
    """One signed delivery and its event ids, in order."""

    signed: SignedWebhook
    ids: list[str]


@dataclass
class Target:
    """A served receiver with a ledger: where to send, its script and its ledger."""

    url: str
    path: str
    script: Script
    ledger: BaseLedger
    prefix: str = ""  # a WSGI mount the request target carries

    def batch(self, count: int = 3, path: str | None = None) -> Batch:
        """Sign a fresh delivery of ``count`` events for ``path`` (default: the target's)."""
        body = sample_events(count)
        signed = sign_webhook(
            body, key=SIGNING_KEY, url=self.url + (path or self.path), dialect="rfc9421"
        )
        return Batch(signed, [item["id"] for item in body["payload"]])

    def send(self, batch: Batch | SignedWebhook) -> Answer:
        """POST the delivery as signed; decode a JSON answer."""
        signed = batch.signed if isinstance(batch, Batch) else batch
        status, body, headers = raw_request(
            self.url, "POST", signed.path, wire_headers(signed), signed.body
        )
        try:
            document = json.loads(body)
        except ValueError:
            document = None
        return status, document, headers

    def on(self, path: str) -> Target:
        """The same receiver, sending to another of its views."""
        return Target(self.url, path, self.script, self.ledger, self.prefix)


def assert_problem(answer: Answer, status: int, reason: str, *, retry_after: bool) -> None:
    """A problem+json answer with exactly ``reason`` (and ``Retry-After`` if expected)."""
    code, document, headers = answer
    assert code == status, document
    assert headers["content-type"].startswith("application/problem+json")
    assert document == {
        "type": "about:blank",
        "title": document["title"],
        "status": status,
        "detail": reason,
    }
    assert ("retry-after" in headers) is retry_after
    if retry_after:
        assert headers["retry-after"] == "5"


def assert_already_processed(answer: Answer) -> None:
    """The adapter's own 200 for a delivery whose events are all done."""
    code, document, headers = answer
    assert (code, document) == (200, {"status": "already_processed"})
    assert headers["content-type"].startswith("application/json")


def free(ledger: BaseLedger, event_id: str) -> bool:
    """Whether ``event_id`` is neither done nor held: claim it and give it back."""
    outcome = ledger.acquire(event_id)
    if isinstance(outcome, Claim):
        outcome.release()
        return True
    return False


# --------------------------------------------------------------------------- scenarios


def check_once(target: Target) -> None:
    """A delivery is processed once; its retry is answered 200 already_processed, no view."""
    target.script.reset()
    batch = target.batch(3)
    status, document, _ = target.send(batch)
    assert (status, document) == (200, {"processed": batch.ids, "skipped": []})
    assert target.script.handled == batch.ids
    assert_already_processed(target.send(batch))
    assert target.script.calls == 1
    assert target.script.handled == batch.ids
    assert {target.ledger.acquire(i) for i in batch.ids} == {"done"}


def check_retry_after_failure(target: Target) -> None:
    """A view failing on event 2 of 3 answers non-2xx; the retry runs only events 2 and 3."""
    batch = target.batch(3)
    target.script.reset(fail_on=batch.ids[1])
    status, _, _ = target.send(batch)
    assert status == 500
    assert target.script.handled == batch.ids[:1]
    assert target.ledger.acquire(batch.ids[0]) == "done"
    assert free(target.ledger, batch.ids[1])
    assert free(target.ledger, batch.ids[2])
    target.script.fail_on = None
    status, document, _ = target.send(batch)
    assert (status, document) == (200, {"processed": batch.ids[1:], "skipped": batch.ids[:1]})
    assert target.script.handled == batch.ids
    assert_already_processed(target.send(batch))
    assert target.script.calls == 2


def check_held(target: Target) -> None:
    """An event held by another worker: 503 in_progress with Retry-After, claims given back."""
    target.script.reset()
    batch = target.batch(3)
    other = target.ledger.acquire(batch.ids[1])
    assert isinstance(other, Claim)
    assert_problem(target.send(batch), 503, "in_progress", retry_after=True)
    assert target.script.calls == 0
    assert free(target.ledger, batch.ids[0])  # claimed, then released
    assert free(target.ledger, batch.ids[2])  # never claimed: admission stopped at the held one
    other.release()
    status, document, _ = target.send(batch)
    assert (status, document["processed"]) == (200, batch.ids)


def check_process_completes_each(target: Target) -> None:
    """``delivery.process`` completes each event as it goes: a later non-2xx keeps them done."""
    target.script.reset(status=500)
    batch = target.batch(2)
    status, document, _ = target.send(batch)
    assert (status, document["processed"]) == (500, batch.ids)
    assert {target.ledger.acquire(i) for i in batch.ids} == {"done"}
    assert_already_processed(target.send(batch))


def check_own_way(target: Target) -> None:
    """Events handled without process(): a 2xx answer completes them, another releases them."""
    target.script.reset(mode="own", status=503)
    batch = target.batch(2)
    assert target.send(batch)[0] == 503
    assert all(free(target.ledger, i) for i in batch.ids)
    target.script.status = 200
    assert target.send(batch)[0] == 200
    assert target.script.handled == batch.ids * 2
    assert {target.ledger.acquire(i) for i in batch.ids} == {"done"}
    assert_already_processed(target.send(batch))


def check_outage(target: Target) -> None:
    """A ledger that cannot be reached: 503 ledger_unavailable with Retry-After, no view."""
    target.script.reset()
    assert_problem(target.send(target.batch(2)), 503, "ledger_unavailable", retry_after=True)
    assert target.script.calls == 0


def check_inbox(target: Target) -> None:
    """Inbox mode: events queued, 200 queued, no view; a retry queues nothing new."""
    assert isinstance(target.ledger, InboxLedger)
    target.script.reset()
    batch = target.batch(3)
    before = target.ledger.pending()
    status, document, _ = target.send(batch)
    assert (status, document) == (200, {"status": "queued", "new": 3})
    assert target.send(batch)[:2] == (200, {"status": "queued", "new": 0})
    assert target.script.calls == 0
    assert target.ledger.pending() == before + 3
    worked: list[str] = []
    report = target.ledger.work(lambda e: worked.append(e.id), idle_timeout=0)
    assert report.handled == before + 3
    assert worked[-3:] == batch.ids


def check_replay_recorded(target: Target) -> None:
    """With a replay store the signature is recorded after a 2xx answer, never after a failure."""
    batch = target.batch(2)
    target.script.reset(fail_on=batch.ids[0])
    assert target.send(batch)[0] == 500
    target.script.reset()
    assert target.send(batch)[0] == 200  # the failed attempt was not recorded
    status, document, _ = target.send(batch)
    assert (status, document["detail"]) == (401, "replayed")


# --------------------------------------------------------------------------- broken ledgers


def closed_port() -> int:
    """A loopback port nothing listens on (it was free an instant ago)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def unopenable_sqlite(tmp_path: Path) -> str:
    """An SQLite path that cannot be opened: its parent is a file."""
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    path = blocker / "events.sqlite3"
    try:  # make sure: this is what the ledger will run into
        sqlite3.connect(path).close()
    except sqlite3.OperationalError:
        return str(path)
    raise AssertionError("expected an unopenable SQLite path")


def memory() -> MemoryLedger:
    """A fresh in-memory ledger."""
    return MemoryLedger()


Build = Callable[..., Any]
"""A test module's app builder: ``build(verifier, script, **adapter_options)``."""
