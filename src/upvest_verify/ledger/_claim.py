"""Claims, reports, errors and the one processing flow shared by every ledger backend.

A backend supplies four primitives: ``acquire``/``aacquire`` (take a lease on an
event id, or say why not) and ``settle``/``asettle`` (compare-and-set on the owner
token: mark the event done, or give it back). :class:`BaseLedger` builds
``claim``/``aclaim`` and ``process``/``aprocess`` on top of them. ``process`` and
``aprocess`` drive the same generator, :func:`process_flow`, so the order of
claim, handle, complete and release is spelled once.
"""

from __future__ import annotations

import abc
import contextlib
import math
from collections.abc import Awaitable, Callable, Generator, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from upvest_verify._result import Event

__all__ = [
    "DEFAULT_LEASE",
    "DEFAULT_RETENTION",
    "MAX_EVENT_ID_LENGTH",
    "Acquired",
    "BaseLedger",
    "Claim",
    "ClaimLost",
    "InvalidEventId",
    "LedgerError",
    "LedgerUnavailable",
    "ProcessReport",
    "check_duration",
    "check_event_id",
    "process_flow",
]

DEFAULT_LEASE = 30.0
"""Seconds a claim lasts when its worker neither completes nor releases it."""

DEFAULT_RETENTION = 30 * 24 * 3600.0
"""Seconds a completed event id is remembered (30 days)."""

MAX_EVENT_ID_LENGTH = 256
"""The longest event id accepted, in characters."""


class LedgerError(Exception):
    """Base class of every error a ledger raises."""


class ClaimLost(LedgerError):
    """A claim was completed or released after its lease expired, or by a non-owner.

    Another worker may have taken the event over; the outcome of this worker's
    handler must not be recorded.
    """


class InvalidEventId(LedgerError, ValueError):
    """An event id is not a non-empty string of at most :data:`MAX_EVENT_ID_LENGTH`
    printable characters."""


class LedgerUnavailable(LedgerError):
    """The ledger's storage (a Redis server, an SQLite file) cannot be used right now."""


def check_event_id(event_id: object) -> str:
    """Return ``event_id`` if it can key the ledger.

    Raises:
        InvalidEventId: Not a string, empty, too long, or holding control characters.
    """
    if not isinstance(event_id, str):
        raise InvalidEventId(f"event id must be a str, not {type(event_id).__name__}")
    if not event_id:
        raise InvalidEventId("event id is empty")
    if len(event_id) > MAX_EVENT_ID_LENGTH:
        raise InvalidEventId(f"event id is longer than {MAX_EVENT_ID_LENGTH} characters")
    if not event_id.isprintable():
        raise InvalidEventId("event id holds control characters")
    return event_id


def check_duration(name: str, seconds: float) -> float:
    """Return ``seconds`` if it is a finite positive number of seconds.

    Raises:
        ValueError: It is not.
    """
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
        raise ValueError(f"{name} must be a number of seconds")
    if not (math.isfinite(seconds) and seconds > 0):
        raise ValueError(f"{name} must be a finite number of seconds above zero")
    return float(seconds)


@dataclass(frozen=True, slots=True)
class Claim:
    """A lease on one event: this worker may handle it until the lease ends.

    Attributes:
        event_id: The claimed event's id.
        token: The random owner token; only its holder can complete or release.
        ledger: The ledger the claim was taken from.
    """

    event_id: str
    token: str = field(repr=False)
    ledger: BaseLedger = field(repr=False, compare=False)

    def complete(self) -> None:
        """Record the event as done; it is never handled again within the retention.

        Raises:
            ClaimLost: The lease expired or the claim is not the current owner's.
            LedgerUnavailable: The storage failed.
        """
        if not self.ledger.settle(self.event_id, self.token, done=True):
            raise ClaimLost(f"claim on event {self.event_id!r} was lost before complete()")

    def release(self) -> None:
        """Give the event back so that a retry handles it again.

        Raises:
            ClaimLost: The lease expired or the claim is not the current owner's.
            LedgerUnavailable: The storage failed.
        """
        if not self.ledger.settle(self.event_id, self.token, done=False):
            raise ClaimLost(f"claim on event {self.event_id!r} was lost before release()")

    async def acomplete(self) -> None:
        """:meth:`complete` without blocking the event loop."""
        if not await self.ledger.asettle(self.event_id, self.token, done=True):
            raise ClaimLost(f"claim on event {self.event_id!r} was lost before complete()")

    async def arelease(self) -> None:
        """:meth:`release` without blocking the event loop."""
        if not await self.ledger.asettle(self.event_id, self.token, done=False):
            raise ClaimLost(f"claim on event {self.event_id!r} was lost before release()")


Acquired = Claim | Literal["done", "held"]
"""What :meth:`BaseLedger.acquire` returns: a claim, or why there is none."""


@dataclass(frozen=True, slots=True)
class ProcessReport:
    """What one :meth:`BaseLedger.process` call did with each event id, in batch order.

    Attributes:
        processed: Ids handled and completed by this call.
        skipped: Ids already completed earlier (or earlier in the same batch).
        held: Ids another worker holds a live claim on; they were not handled.
            A webhook endpoint answers non-2xx (e.g. 503) while any are held,
            so that the delivery is retried.
    """

    processed: tuple[str, ...] = ()
    skipped: tuple[str, ...] = ()
    held: tuple[str, ...] = ()

    @property
    def finished(self) -> bool:
        """True when every event is done: none is held by another worker."""
        return not self.held


@dataclass(frozen=True, slots=True)
class _Acquire:
    event_id: str


@dataclass(frozen=True, slots=True)
class _Handle:
    event: Event


@dataclass(frozen=True, slots=True)
class _Settle:
    claim: Claim
    done: bool


_Step = _Acquire | _Handle | _Settle


def process_flow(events: Iterable[Event]) -> Generator[_Step, Any, ProcessReport]:
    """The processing order, as steps for a sync or async driver to perform.

    For each event: acquire; if claimed, handle, then complete. A handler error
    releases the claim and propagates; a lost claim on that path does not hide
    the handler error.
    """
    processed: list[str] = []
    skipped: list[str] = []
    held: list[str] = []
    for event in events:
        outcome = yield _Acquire(check_event_id(event.id))
        if outcome == "done":
            skipped.append(event.id)
            continue
        if outcome == "held":
            held.append(event.id)
            continue
        claim: Claim = outcome
        try:
            yield _Handle(event)
        except GeneratorExit:
            raise
        except BaseException:
            # A lost lease on this path is not news; the handler's error is.
            with contextlib.suppress(LedgerError):
                yield _Settle(claim, done=False)
            raise
        yield _Settle(claim, done=True)
        processed.append(event.id)
    return ProcessReport(tuple(processed), tuple(skipped), tuple(held))


class BaseLedger(abc.ABC):
    """A ledger of event ids: leases while an event is handled, memory of done ones.

    Subclasses implement :meth:`acquire`, :meth:`settle` and their async twins.
    """

    __slots__ = ()

    @property
    @abc.abstractmethod
    def retention(self) -> float:
        """Seconds a completed event id is remembered (a retry later than that runs again)."""

    @abc.abstractmethod
    def acquire(self, event_id: str) -> Acquired:
        """Claim ``event_id``, or say why not.

        Returns:
            A :class:`Claim`; ``"done"`` when the event was completed within the
            retention; ``"held"`` when another worker's lease on it is live.

        Raises:
            InvalidEventId: ``event_id`` cannot key the ledger.
            LedgerUnavailable: The storage failed.
        """

    @abc.abstractmethod
    async def aacquire(self, event_id: str) -> Acquired:
        """:meth:`acquire` without blocking the event loop."""

    @abc.abstractmethod
    def settle(self, event_id: str, token: str, *, done: bool) -> bool:
        """Mark done (``done=True``) or give back, if ``token`` owns a live lease.

        Returns:
            False when the lease expired or ``token`` is not its owner; nothing changed.
        """

    @abc.abstractmethod
    async def asettle(self, event_id: str, token: str, *, done: bool) -> bool:
        """:meth:`settle` without blocking the event loop."""

    def close(self) -> None:  # noqa: B027 - optional hook, nothing to close by default
        """Release this ledger's connections (they reopen on next use)."""

    async def aclose(self) -> None:  # noqa: B027 - optional hook, nothing to close by default
        """Release this ledger's async connections; call it in the loop that used them."""

    def claim(self, event_id: str) -> Claim | None:
        """Claim ``event_id`` for this worker.

        Returns:
            The claim, or ``None`` when the event is done or another worker holds it.

        Raises:
            InvalidEventId: ``event_id`` cannot key the ledger.
            LedgerUnavailable: The storage failed.
        """
        outcome = self.acquire(event_id)
        return outcome if isinstance(outcome, Claim) else None

    async def aclaim(self, event_id: str) -> Claim | None:
        """:meth:`claim` without blocking the event loop."""
        outcome = await self.aacquire(event_id)
        return outcome if isinstance(outcome, Claim) else None

    def process(self, events: Iterable[Event], handle: Callable[[Event], object]) -> ProcessReport:
        """Handle each event at most once across workers and retries.

        In order, each event is claimed, passed to ``handle`` while the claim is
        held, and completed. Completed events are skipped; events another worker
        holds are reported, not handled.

        Raises:
            Exception: Whatever ``handle`` raised; that event's claim is released
                first, so a retry of the delivery handles it (and the events after
                it) again, while completed events stay completed.
            ClaimLost: A lease ran out before its event was completed.
            InvalidEventId: An event id cannot key the ledger.
            LedgerUnavailable: The storage failed.
        """
        flow = process_flow(events)
        try:
            step = next(flow)
            while True:
                try:
                    if isinstance(step, _Acquire):
                        result: Any = self.acquire(step.event_id)
                    elif isinstance(step, _Handle):
                        result = handle(step.event)
                    else:
                        result = None
                        if step.done:
                            step.claim.complete()
                        else:
                            step.claim.release()
                except BaseException as exc:
                    step = flow.throw(exc)
                else:
                    step = flow.send(result)
        except StopIteration as stop:
            report: ProcessReport = stop.value
            return report

    async def aprocess(
        self, events: Iterable[Event], handle: Callable[[Event], Awaitable[object]]
    ) -> ProcessReport:
        """:meth:`process` with an async handler, never blocking the event loop."""
        flow = process_flow(events)
        try:
            step = next(flow)
            while True:
                try:
                    if isinstance(step, _Acquire):
                        result: Any = await self.aacquire(step.event_id)
                    elif isinstance(step, _Handle):
                        result = await handle(step.event)
                    else:
                        result = None
                        if step.done:
                            await step.claim.acomplete()
                        else:
                            await step.claim.arelease()
                except BaseException as exc:
                    step = flow.throw(exc)
                else:
                    step = flow.send(result)
        except StopIteration as stop:
            report: ProcessReport = stop.value
            return report
