"""Exactly-once processing per event id in every adapter: :class:`Delivery`.

With an event ledger configured, an adapter admits each verified webhook before
the view runs. Admission claims every event of the batch, in order:

- every event already done: the answer is 200 ``{"status": "already_processed"}``
  at once and the view is not called (Upvest retried a delivery that was handled);
- an event held by another worker: the claims just taken are released and the
  answer is 503 ``in_progress`` with ``Retry-After``; the view is not called;
- otherwise the view runs with a :class:`Delivery` whose ``events`` are the
  claimed events, in batch order (done ones and repeats left out).

After the view answered, the adapter settles the claims still open: a 2xx answer
completes them, anything else (or an exception) releases them, so a retry of the
delivery runs only the unfinished events. A ledger failure is 503
``ledger_unavailable``; a body whose events cannot key the ledger is 400
``invalid_payload``. After every 2xx answer (and only then) the adapter records the
signature in the verifier's replay store, if it has one (:func:`finish`).

In inbox mode (:func:`queue`) the adapter stores the events in the ledger's queue
instead (``ledger.enqueue``) and answers 200 ``{"status": "queued"}``; worker
processes handle them later (``ledger.work``).

The order of acquire, handle, complete and release is written once, as generator
flows that a sync and an async driver perform (like ``BaseLedger.process``).
No web framework is imported here.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Generator, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final, TypeVar

from upvest_verify import Event, PayloadError, VerifiedWebhook, Verifier
from upvest_verify.adapters._reject import (
    CONFIGURATION_ERROR,
    IN_PROGRESS,
    INVALID_PAYLOAD,
    LEDGER_UNAVAILABLE,
    RETRY_AFTER,
    Rejection,
)
from upvest_verify.errors import ConfigurationError
from upvest_verify.ledger import (
    BaseLedger,
    Claim,
    ClaimLost,
    InboxLedger,
    InvalidEventId,
    LedgerError,
    ProcessReport,
)

__all__ = [
    "ALREADY_PROCESSED",
    "QUEUED",
    "Answer",
    "Delivery",
    "aadmit",
    "admit",
    "afinish",
    "aqueue",
    "check_ledger",
    "delivery_logger",
    "finish",
    "has_inbox",
    "is_success",
    "queue",
]

delivery_logger: Final = logging.getLogger("upvest_verify.delivery")
"""Admissions and settlements: duplicates (INFO), held events (WARNING), ledger
failures and lost claims (ERROR). Event ids and paths only, never bodies."""

ALREADY_PROCESSED: Final = "already_processed"
"""``{"status": "already_processed"}``: every event of the delivery was done before."""
QUEUED: Final = "queued"
"""``{"status": "queued", "new": n}``: inbox mode stored the events for the workers."""

_LOGGED_IDS: Final = 10  # at most this many event ids per log line

T = TypeVar("T")


def check_ledger(ledger: object, inbox: object = False) -> BaseLedger | None:
    """Validate an adapter's ``ledger`` and ``inbox`` options.

    Args:
        ledger: What the adapter was given as its ledger, or ``None``.
        inbox: Whether to acknowledge first and process later (needs a ledger).

    Returns:
        The ledger, or ``None``.

    Raises:
        ConfigurationError: ``ledger`` is not a ledger, or ``inbox`` is not a bool
            or is set without a ledger.
    """
    if ledger is not None and not isinstance(ledger, BaseLedger):
        raise ConfigurationError(
            "ledger must be an upvest_verify.ledger ledger (MemoryLedger, SQLiteLedger, "
            f"RedisLedger), got {type(ledger).__name__}"
        )
    if not isinstance(inbox, bool):
        raise ConfigurationError(f"inbox must be True or False, got {inbox!r}")
    if inbox and ledger is None:
        raise ConfigurationError("inbox=True needs a ledger to put the events in")
    if inbox and not has_inbox(ledger):
        raise ConfigurationError(f"inbox=True needs a ledger with a queue (enqueue); {ledger!r}")
    return ledger


def has_inbox(ledger: object) -> bool:
    """Whether ``ledger`` can queue events for workers (an :class:`InboxLedger`)."""
    return isinstance(ledger, InboxLedger)


def is_success(status: int) -> bool:
    """Whether an HTTP status acknowledges a delivery (2xx): Upvest stops retrying."""
    return 200 <= status < 300


@dataclass(frozen=True, slots=True)
class Answer:
    """An answer the adapter sends instead of calling the view.

    Attributes:
        status: The HTTP status.
        body: The response body.
        headers: Response header fields (without ``Content-Length``).
    """

    status: int
    body: bytes
    headers: tuple[tuple[str, str], ...]

    @classmethod
    def document(cls, status: int, document: Mapping[str, object]) -> Answer:
        """A small ``application/json`` answer."""
        body = json.dumps(document, separators=(",", ":")).encode("ascii")
        headers = (("content-type", "application/json"), ("cache-control", "no-store"))
        return cls(status, body, headers)

    @classmethod
    def problem(cls, rejection: Rejection) -> Answer:
        """The ``application/problem+json`` answer for ``rejection``."""
        return cls(rejection.status, rejection.body(), tuple(rejection.headers()))


def _refused(rejection: Rejection, path: str, detail: object) -> Answer:
    """Log why a verified webhook was not admitted (or queued); the answer for it."""
    level = logging.WARNING if rejection.reason == IN_PROGRESS else logging.ERROR
    delivery_logger.log(
        level,
        "Upvest webhook not admitted: reason=%s status=%d path=%r %s",
        rejection.reason,
        rejection.status,
        path,
        detail,
        extra={"upvest_reason": rejection.reason, "upvest_status": rejection.status},
    )
    return Answer.problem(rejection)


def _ids(ids: Iterable[str]) -> str:
    listed = list(ids)
    shown = ", ".join(repr(i) for i in listed[:_LOGGED_IDS])
    return shown + (f" (+{len(listed) - _LOGGED_IDS} more)" if len(listed) > _LOGGED_IDS else "")


# --------------------------------------------------------------------------- steps


@dataclass(frozen=True, slots=True)
class _Acquire:
    ledger: BaseLedger
    event_id: str


@dataclass(frozen=True, slots=True)
class _Handle:
    event: Event


@dataclass(frozen=True, slots=True)
class _Settle:
    claim: Claim
    done: bool


@dataclass(frozen=True, slots=True)
class _Enqueue:
    ledger: InboxLedger
    events: tuple[Event, ...]


@dataclass(frozen=True, slots=True)
class _Record:
    verifier: Verifier
    webhook: VerifiedWebhook


_Step = _Acquire | _Handle | _Settle | _Enqueue | _Record
_Flow = Generator[_Step, Any, T]


def _settle_flow(claims: Iterable[Claim], done: bool, path: str) -> _Flow[None]:
    """Complete or release ``claims``; a failure is logged and the others still settle."""
    for claim in claims:
        try:
            yield _Settle(claim, done)
        except ClaimLost:
            # The lease ran out while the view worked: another worker may handle the
            # event again, or already has. Nothing to undo here, but it must be seen.
            delivery_logger.error(
                "Upvest event claim lost before %s: event_id=%r path=%r; "
                "raise the ledger's lease above the handler's running time",
                "complete" if done else "release",
                claim.event_id,
                path,
            )
        except LedgerError as exc:
            delivery_logger.error(
                "Upvest event claim not %s: event_id=%r path=%r error=%s; "
                "the claim ends with its lease",
                "completed" if done else "released",
                claim.event_id,
                path,
                exc,
            )


def _admit_flow(
    ledger: BaseLedger, webhook: VerifiedWebhook, path: str, blocking: bool
) -> _Flow[Delivery | Answer]:
    """Claim every event in batch order; say what to answer, or hand the view a Delivery."""
    try:
        events = webhook.events
    except PayloadError as exc:
        return _refused(Rejection(400, INVALID_PAYLOAD), path, exc)
    claims: dict[str, Claim] = {}
    fresh: list[Event] = []
    skipped: list[str] = []
    seen: set[str] = set()
    held: str | None = None
    failure: Answer | None = None
    try:
        for event in events:
            if event.id in seen:
                skipped.append(event.id)  # repeated within the batch: handled once
                continue
            seen.add(event.id)
            outcome = yield _Acquire(ledger, event.id)
            if isinstance(outcome, Claim):
                claims[event.id] = outcome
                fresh.append(event)
            elif outcome == "done":
                skipped.append(event.id)
            else:
                held = event.id  # stop here: the delivery is retried as a whole
                break
    except InvalidEventId as exc:
        failure = _refused(Rejection(400, INVALID_PAYLOAD), path, exc)
    except LedgerError as exc:
        failure = _refused(Rejection(503, LEDGER_UNAVAILABLE, RETRY_AFTER), path, exc)
    except GeneratorExit:
        raise
    except BaseException:
        yield from _settle_flow(list(claims.values()), False, path)
        raise
    if failure is None and held is not None:
        # Another worker is handling it right now; Upvest retries the whole delivery.
        failure = _refused(Rejection(503, IN_PROGRESS, RETRY_AFTER), path, f"event_id={held!r}")
    if failure is not None:
        yield from _settle_flow(list(claims.values()), False, path)
        return failure
    if events and not claims:
        delivery_logger.info(
            "Upvest webhook already processed: events=%s path=%r", _ids(skipped), path
        )
        return Answer.document(200, {"status": ALREADY_PROCESSED})
    return Delivery(webhook, tuple(fresh), tuple(skipped), claims, path=path, blocking=blocking)


def _queue_flow(ledger: BaseLedger, webhook: VerifiedWebhook, path: str) -> _Flow[Answer]:
    """Inbox mode: store the events for the workers; the answer says whether it worked."""
    if not isinstance(ledger, InboxLedger):  # check_ledger() refuses this at start-up
        return _refused(Rejection(500, CONFIGURATION_ERROR), path, f"no queue in {ledger!r}")
    try:
        events = webhook.events
        new = yield _Enqueue(ledger, events)
    except LedgerError as exc:  # before ValueError: InvalidEventId is both
        if isinstance(exc, InvalidEventId):
            return _refused(Rejection(400, INVALID_PAYLOAD), path, exc)
        return _refused(Rejection(503, LEDGER_UNAVAILABLE, RETRY_AFTER), path, exc)
    except (PayloadError, ValueError) as exc:  # ValueError: an event's JSON cannot be stored
        return _refused(Rejection(400, INVALID_PAYLOAD), path, exc)
    delivery_logger.info("Upvest webhook queued: events=%d new=%d path=%r", len(events), new, path)
    return Answer.document(200, {"status": QUEUED, "new": new})


def _finish_flow(
    verifier: Verifier,
    webhook: VerifiedWebhook,
    claims: list[Claim],
    ok: bool,
    path: str,
) -> _Flow[None]:
    """After the answer: settle the open claims by it; on 2xx record the signature."""
    yield from _settle_flow(claims, ok, path)
    if not ok:
        return  # a failed delivery is never recorded: Upvest's retry must pass (E10)
    try:
        yield _Record(verifier, webhook)
    except Exception as exc:  # the answer is 2xx already; a retry is deduplicated
        delivery_logger.error(
            "Upvest webhook signature not recorded in the replay store: path=%r error=%s",
            path,
            exc,
        )


# --------------------------------------------------------------------------- drivers


def _perform(step: _Step) -> Any:
    """Perform a ledger, queue or replay-store step with blocking calls."""
    if isinstance(step, _Acquire):
        return step.ledger.acquire(step.event_id)
    if isinstance(step, _Enqueue):
        return step.ledger.enqueue(step.events)
    if isinstance(step, _Record):
        return step.verifier.record(step.webhook)
    assert isinstance(step, _Settle)  # _Handle steps are the driver's own
    return step.claim.complete() if step.done else step.claim.release()


async def _aperform(step: _Step) -> Any:
    """:func:`_perform` through the async interfaces."""
    if isinstance(step, _Acquire):
        return await step.ledger.aacquire(step.event_id)
    if isinstance(step, _Enqueue):
        return await step.ledger.aenqueue(step.events)
    if isinstance(step, _Record):
        return await step.verifier.arecord(step.webhook)
    assert isinstance(step, _Settle)
    return await (step.claim.acomplete() if step.done else step.claim.arelease())


def _drive(flow: _Flow[T], handle: Callable[[Event], object] | None = None) -> T:
    """Run a flow with blocking calls; a step's exception is thrown back into the flow."""
    try:
        step = next(flow)
        while True:
            try:
                if isinstance(step, _Handle):
                    assert handle is not None  # only process flows yield _Handle
                    result: Any = handle(step.event)
                else:
                    result = _perform(step)
            except BaseException as exc:
                step = flow.throw(exc)
            else:
                step = flow.send(result)
    except StopIteration as stop:
        value: T = stop.value
        return value


async def _adrive(
    flow: _Flow[T],
    handle: Callable[[Event], Awaitable[object]] | None = None,
    *,
    blocking: bool = False,
) -> T:
    """Run a flow in a coroutine; ``blocking`` keeps the ledger calls sync (WSGI apps)."""
    try:
        step = next(flow)
        while True:
            try:
                if isinstance(step, _Handle):
                    assert handle is not None  # only process flows yield _Handle
                    result: Any = await handle(step.event)
                elif blocking:
                    result = _perform(step)
                else:
                    result = await _aperform(step)
            except BaseException as exc:
                step = flow.throw(exc)
            else:
                step = flow.send(result)
    except StopIteration as stop:
        value: T = stop.value
        return value


def admit(
    ledger: BaseLedger, webhook: VerifiedWebhook, *, path: str = "", blocking: bool = True
) -> Delivery | Answer:
    """Claim the webhook's events with blocking calls: the view's Delivery, or the Answer.

    ``blocking`` makes the Delivery's async methods use blocking ledger calls too: a
    WSGI app runs each async view in an event loop of its own, where a Redis client
    made in another loop cannot be used. ``path`` is for log lines.
    """
    return _drive(_admit_flow(ledger, webhook, path, blocking))


async def aadmit(
    ledger: BaseLedger, webhook: VerifiedWebhook, *, path: str = "", blocking: bool = False
) -> Delivery | Answer:
    """:func:`admit` from a coroutine; ``blocking`` as there (for WSGI async views)."""
    return await _adrive(_admit_flow(ledger, webhook, path, blocking), blocking=blocking)


def queue(ledger: BaseLedger, webhook: VerifiedWebhook, *, path: str = "") -> Answer:
    """Inbox mode: put the events in the ledger's queue (``enqueue``); the answer to send:
    200 ``{"status": "queued", "new": n}``, 503 ``ledger_unavailable`` or 400
    ``invalid_payload``."""
    return _drive(_queue_flow(ledger, webhook, path))


async def aqueue(
    ledger: BaseLedger, webhook: VerifiedWebhook, *, path: str = "", blocking: bool = False
) -> Answer:
    """:func:`queue` from a coroutine (``blocking``: keep the ledger calls sync)."""
    return await _adrive(_queue_flow(ledger, webhook, path), blocking=blocking)


def finish(
    verifier: Verifier,
    webhook: VerifiedWebhook,
    delivery: Delivery | None,
    status: int | None,
    *,
    path: str = "",
) -> None:
    """After the answer: settle the delivery's open claims, record the signature on 2xx.

    ``status`` is the answer's HTTP status, ``None`` when the view raised. Only a 2xx
    completes the claims and records the signature in the verifier's replay store
    (if it has one); failures are logged, never raised.
    """
    claims = [] if delivery is None else delivery._take()
    ok = status is not None and is_success(status)
    _drive(_finish_flow(verifier, webhook, claims, ok, path))


async def afinish(
    verifier: Verifier,
    webhook: VerifiedWebhook,
    delivery: Delivery | None,
    status: int | None,
    *,
    path: str = "",
    blocking: bool = False,
) -> None:
    """:func:`finish` from a coroutine (``blocking``: keep the ledger calls sync)."""
    claims = [] if delivery is None else delivery._take()
    ok = status is not None and is_success(status)
    await _adrive(_finish_flow(verifier, webhook, claims, ok, path), blocking=blocking)


# --------------------------------------------------------------------------- Delivery


class Delivery:
    """The events of one verified webhook that this request still has to process.

    Built by an adapter configured with an event ledger, after verification:
    :attr:`events` are the events this worker has claimed, in batch order. Handle
    them with :meth:`process` (or :meth:`aprocess`), which completes each claim as
    soon as its handler returns; or handle them your own way and answer 2xx, after
    which the adapter completes the claims still open. A non-2xx answer or an
    exception releases them, so Upvest's retry runs only the unfinished events.

    Example (Starlette)::

        async def upvest_webhook(request):
            delivery = get_delivery(request)
            await delivery.aprocess(handle_event)   # or delivery.process(...) in sync code
            return Response(status_code=200)

    Finish handling before the view answers: claims completed on a 2xx answer say
    the events are done, whether or not work scheduled for later succeeds.

    Attributes:
        webhook: The verified webhook (all its events, done ones included).
        events: The claimed events, in batch order: each to be handled once.
        skipped: Ids left out: completed by an earlier delivery, or repeated
            within this batch.
    """

    __slots__ = ("_blocking", "_open", "_path", "events", "skipped", "webhook")

    def __init__(
        self,
        webhook: VerifiedWebhook,
        events: tuple[Event, ...],
        skipped: tuple[str, ...],
        claims: Mapping[str, Claim],
        *,
        path: str = "",
        blocking: bool = False,
    ) -> None:
        self.webhook = webhook
        self.events = events
        self.skipped = skipped
        self._open: dict[str, Claim] = {e.id: claims[e.id] for e in events}
        self._path = path
        self._blocking = blocking

    def __repr__(self) -> str:
        return (
            f"Delivery(events={[e.id for e in self.events]!r}, skipped={list(self.skipped)!r}, "
            f"pending={list(self.pending)!r})"
        )

    @property
    def pending(self) -> tuple[str, ...]:
        """Ids whose claims are still open: neither completed nor released yet."""
        return tuple(self._open)

    def _take(self) -> list[Claim]:
        claims = list(self._open.values())
        self._open.clear()
        return claims

    def _process_flow(self) -> _Flow[ProcessReport]:
        processed: list[str] = []
        for event in self.events:
            claim = self._open.pop(event.id, None)
            if claim is None:
                continue  # settled already (an earlier process() call)
            try:
                yield _Handle(event)
            except GeneratorExit:
                raise
            except BaseException:
                # This event and the ones after it go back to the ledger: a retry runs them.
                yield from _settle_flow([claim, *self._take()], False, self._path)
                raise
            try:
                yield _Settle(claim, True)
            except LedgerError:
                yield from _settle_flow(self._take(), False, self._path)
                raise
            processed.append(event.id)
        return ProcessReport(tuple(processed), self.skipped)

    def process(self, handle: Callable[[Event], object]) -> ProcessReport:
        """Handle each claimed event in order; complete its claim right after ``handle`` returns.

        Args:
            handle: Called once per event still pending.

        Returns:
            What was processed here, and what was :attr:`skipped`.

        Raises:
            Exception: Whatever ``handle`` raised; that event's claim and those of the
                events after it are released first (completed ones stay completed).
            ClaimLost: A lease ran out before its event was completed (the events
                after it are released).
            LedgerUnavailable: The storage failed while completing.
        """
        return _drive(self._process_flow(), handle)

    async def aprocess(self, handle: Callable[[Event], Awaitable[object]]) -> ProcessReport:
        """:meth:`process` with an async handler, without blocking the event loop."""
        return await _adrive(self._process_flow(), handle, blocking=self._blocking)

    def settle(self, *, done: bool) -> None:
        """Complete (``done=True``) or release every claim still open.

        The adapter calls it after the view answered: ``done`` when the answer is
        2xx. Failures are logged on ``upvest_verify.delivery``, never raised.
        """
        _drive(_settle_flow(self._take(), done, self._path))

    async def asettle(self, *, done: bool) -> None:
        """:meth:`settle` from a coroutine."""
        await _adrive(_settle_flow(self._take(), done, self._path), blocking=self._blocking)
