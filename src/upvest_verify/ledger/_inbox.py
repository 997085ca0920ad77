"""Acknowledge first, process later: a durable inbox on the ledger's own store.

An endpoint that verified a delivery stores its events with :meth:`InboxLedger.enqueue`
and answers 2xx at once; worker processes run :meth:`InboxLedger.work`, which takes the
queued events one by one, handles each and completes it. A slow or failing handler then
never holds up Upvest's delivery queue::

    stored = ledger.enqueue(webhook.events)  # in the endpoint; then answer 200
    ledger.work(handle, stop=stopping)       # in each worker process

The rules, the same on every backend:

* **One store.** A queued event is taken with the same lease as :meth:`BaseLedger.claim`
  and completed into the same done-ledger, so an event handled through ``process()``
  on one path and enqueued on another still runs once; ``enqueue`` skips ids that are
  already queued or done.
* **Order per webhook.** Events with the same ``webhook_id`` run in the order they were
  enqueued: only the oldest queued event of a webhook (its *head*) is ever taken, and it
  leaves the queue only once completed. A later event never starts while an earlier one
  is running or waiting for a retry; other webhooks go on meanwhile.
* **Leases.** A worker that dies mid-event loses its lease; another worker takes the
  event over once the lease ends (not before). Choose a lease longer than the handler
  takes: a completion after the lease ended is refused and the event runs again.
* **Retries.** A handler error gives the event back with a delay of
  :class:`Backoff` (1 s doubling to 300 s by default) and logs a warning on logger
  ``upvest_verify.ledger``. Each start counts as an attempt (a crashed worker's too).
  Nothing is ever dropped: after many failures the event is retried every ``cap``
  seconds, forever, while :meth:`InboxLedger.failed` lists it with its attempts and
  last error, so an operator can fix the handler (or the data) and let it run.

Each backend supplies an :class:`InboxStore` (put, take, finish, idle); the order of
steps is spelled once, in :func:`work_flow`, and driven by :meth:`InboxLedger.work`
and :meth:`InboxLedger.awork`.
"""

from __future__ import annotations

import abc
import contextlib
import json
import logging
import math
import time
from collections.abc import Awaitable, Callable, Generator, Iterable
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from upvest_verify._result import Event

from ._claim import BaseLedger, LedgerError, check_duration, check_event_id
from ._inbox_store import FailedEvent, InboxStore, Row, Taken

__all__ = [
    "DEFAULT_BACKOFF",
    "DEFAULT_POLL",
    "Backoff",
    "FailedEvent",
    "InboxLedger",
    "InboxStore",
    "Row",
    "StopSignal",
    "Taken",
    "WorkReport",
    "WorkSettings",
    "describe",
    "logger",
    "rows_of",
    "work_flow",
]

logger = logging.getLogger("upvest_verify.ledger")

DEFAULT_POLL = 0.5
"""The longest single wait of an idle worker, in seconds; ``stop`` is seen within it."""

MAX_ERROR_LENGTH = 1000
"""Characters of a handler error kept with a failed event."""


@dataclass(frozen=True, slots=True)
class Backoff:
    """How long a failed event waits before its next attempt: exponential, capped.

    Attributes:
        initial: Seconds before the second attempt.
        factor: Each further failure multiplies the wait by this.
        cap: The longest wait; once reached, the event is retried at this pace forever.
    """

    initial: float = 1.0
    factor: float = 2.0
    cap: float = 300.0

    def __post_init__(self) -> None:
        check_duration("initial", self.initial)
        check_duration("cap", self.cap)
        if isinstance(self.factor, bool) or not isinstance(self.factor, (int, float)):
            raise ValueError("factor must be a number")
        if not (math.isfinite(self.factor) and self.factor >= 1):
            raise ValueError("factor must be a finite number of at least 1")
        if self.cap < self.initial:
            raise ValueError("cap must not be below initial")

    def delay(self, attempts: int) -> float:
        """Seconds to wait after the ``attempts``-th attempt failed (1 for the first)."""
        steps = max(attempts, 1) - 1
        if self.factor > 1 and steps * math.log(self.factor) >= math.log(self.cap / self.initial):
            return self.cap
        return min(self.cap, self.initial * self.factor**steps)


DEFAULT_BACKOFF = Backoff()
"""1 s, 2 s, 4 s, ... up to 5 minutes between attempts."""


@dataclass(frozen=True, slots=True)
class WorkReport:
    """What one :meth:`InboxLedger.work` run did.

    Attributes:
        handled: Events handled and completed.
        failed: Handler failures; each event was given back for a later attempt.
        lost: Events handled whose lease had ended before they completed; they stay
            queued and run again (the lease was shorter than the handler took).
        reason: Why the run ended: ``"stop"``, ``"max_events"`` or ``"idle_timeout"``.
    """

    handled: int = 0
    failed: int = 0
    lost: int = 0
    reason: Literal["stop", "max_events", "idle_timeout"] = "stop"


# --------------------------------------------------------------------------- the flow


class _Flag(Protocol):
    def is_set(self) -> bool: ...


StopSignal = _Flag | Callable[[], object]
"""A ``threading.Event``, an ``asyncio.Event``, or a callable that returns true to stop."""


@dataclass(frozen=True, slots=True)
class _Take:
    pass


@dataclass(frozen=True, slots=True)
class _Run:
    event: Event


@dataclass(frozen=True, slots=True)
class _Finish:
    taken: Taken
    retry_in: float | None
    error: str | None


@dataclass(frozen=True, slots=True)
class _Idle:
    seconds: float


_Step = _Take | _Run | _Finish | _Idle


@dataclass(frozen=True, slots=True)
class WorkSettings:
    """A worker's checked settings (see :meth:`InboxLedger.work`)."""

    max_events: int | None
    idle_timeout: float | None
    stop: Callable[[], object]
    backoff: Backoff
    poll: float
    clock: Callable[[], float] = time.monotonic

    @classmethod
    def check(
        cls,
        max_events: int | None,
        idle_timeout: float | None,
        stop: StopSignal | None,
        backoff: Backoff,
        poll: float,
    ) -> WorkSettings:
        """Validate the arguments of ``work``/``awork``.

        Raises:
            ValueError: One is out of range.
        """
        if max_events is not None and (
            isinstance(max_events, bool) or not isinstance(max_events, int) or max_events < 1
        ):
            raise ValueError("max_events must be a positive integer or None")
        if idle_timeout is not None and (
            isinstance(idle_timeout, bool)
            or not isinstance(idle_timeout, (int, float))
            or not (math.isfinite(idle_timeout) and idle_timeout >= 0)
        ):
            raise ValueError("idle_timeout must be a finite number of seconds, 0 or more")
        if not isinstance(backoff, Backoff):
            raise ValueError("backoff must be a Backoff")
        is_set = getattr(stop, "is_set", None)
        if stop is None:
            flag: Callable[[], object] = _never
        elif callable(is_set):
            flag = is_set
        elif callable(stop):
            flag = stop
        else:
            raise ValueError("stop must be an Event or a callable")
        return cls(max_events, idle_timeout, flag, backoff, check_duration("poll", poll))


def _never() -> bool:
    return False


def describe(exc: BaseException) -> str:
    """``"Type: message"`` of a handler error, cut to :data:`MAX_ERROR_LENGTH` characters."""
    try:
        message = str(exc)
    except Exception:  # an exception whose __str__ fails must not stop the worker
        message = "<unprintable>"
    text = f"{type(exc).__name__}: {message}" if message else type(exc).__name__
    return text[:MAX_ERROR_LENGTH]


def work_flow(settings: WorkSettings) -> Generator[_Step, Any, WorkReport]:
    """A worker's loop, as steps for a sync or async driver to perform.

    Take the due head; if there is one, rebuild the event, handle it and finish it;
    else wait (never longer than ``poll``, the time until the next due head, or the
    rest of the idle timeout). Stop when asked, after ``max_events`` attempts, or once
    idle for ``idle_timeout`` seconds. Storage errors propagate.
    """
    handled = failed = lost = 0
    idle_since = settings.clock()
    reason: Literal["stop", "max_events", "idle_timeout"]
    while True:
        if settings.stop():
            reason = "stop"
            break
        if settings.max_events is not None and handled + failed + lost >= settings.max_events:
            reason = "max_events"
            break
        taken = yield _Take()
        if isinstance(taken, Taken):
            outcome = yield from _attempt(taken, settings.backoff)
            handled += outcome == "handled"
            failed += outcome == "failed"
            lost += outcome == "lost"
            idle_since = settings.clock()
            continue
        if taken == 0:
            continue  # more heads to look at right now
        wait = settings.poll if taken is None else min(settings.poll, taken)
        if settings.idle_timeout is not None:
            left = idle_since + settings.idle_timeout - settings.clock()
            if left <= 0:
                reason = "idle_timeout"
                break
            wait = min(wait, left)
        yield _Idle(wait)
    return WorkReport(handled, failed, lost, reason)


def _attempt(
    taken: Taken, backoff: Backoff
) -> Generator[_Step, Any, Literal["handled", "failed", "lost"]]:
    event_id, webhook_id = taken.claim.event_id, taken.webhook_id
    try:
        event = Event.from_json(json.loads(taken.raw))
        yield _Run(event)
    except GeneratorExit:
        raise
    except Exception as exc:
        delay = backoff.delay(taken.attempts)
        logger.warning(
            "event %s of webhook %s failed on attempt %d; next attempt in %.3g s",
            event_id,
            webhook_id,
            taken.attempts,
            delay,
            exc_info=exc,
        )
        if not (yield _Finish(taken, delay, describe(exc))):
            logger.error("event %s: its lease ended before the failure was recorded", event_id)
        return "failed"
    except BaseException:
        # Interrupted (KeyboardInterrupt, cancellation): give it back for another worker.
        with contextlib.suppress(LedgerError):
            yield _Finish(taken, 0.0, None)
        raise
    if (yield _Finish(taken, None, None)):
        return "handled"
    logger.error(
        "event %s of webhook %s: its lease ended before it completed; it stays queued and "
        "runs again (choose a lease longer than the handler takes)",
        event_id,
        webhook_id,
    )
    return "lost"


# --------------------------------------------------------------------------- the ledger


def rows_of(events: Iterable[Event]) -> list[Row]:
    """The rows to queue for ``events``: checked ids, first occurrence of each, raw JSON.

    Raises:
        InvalidEventId: An id cannot key the ledger.
        ValueError: An event's ``raw`` is not JSON-serialisable.
    """
    rows: list[Row] = []
    seen: set[str] = set()
    for event in events:
        event_id = check_event_id(event.id)
        if event_id in seen:
            continue
        seen.add(event_id)
        if not isinstance(event.webhook_id, str):
            raise ValueError(f"event {event_id!r} has no webhook id string")
        try:
            raw = json.dumps(event.raw, separators=(",", ":"), allow_nan=False)
        except (TypeError, ValueError) as e:
            raise ValueError(f"event {event_id!r} cannot be queued: its raw JSON: {e}") from e
        rows.append((event_id, event.webhook_id, raw))
    return rows


class InboxLedger(BaseLedger):
    """A ledger that also queues events for worker processes (the inbox).

    Subclasses supply :meth:`_inbox`; see the module documentation for the rules.
    """

    __slots__ = ()

    @abc.abstractmethod
    def _inbox(self) -> InboxStore:
        """This backend's inbox primitives."""

    def enqueue(self, events: Iterable[Event]) -> int:
        """Store ``events`` durably for the workers, in order; answer 2xx after this.

        Ids already queued or done are not stored again (a retried delivery stores
        nothing new); the rest are stored in one transaction.

        Returns:
            How many events were new.

        Raises:
            InvalidEventId: An id cannot key the ledger; nothing was stored.
            LedgerUnavailable: The storage failed; answer non-2xx so Upvest retries.
        """
        rows = rows_of(events)
        return self._inbox().put(rows) if rows else 0

    async def aenqueue(self, events: Iterable[Event]) -> int:
        """:meth:`enqueue` without blocking the event loop."""
        rows = rows_of(events)
        return await self._inbox().aput(rows) if rows else 0

    def pending(self) -> int:
        """How many events are queued: waiting, running, or failed and waiting to retry."""
        return self._inbox().pending()

    async def apending(self) -> int:
        """:meth:`pending` without blocking the event loop."""
        return await self._inbox().apending()

    def failed(self, limit: int = 100) -> tuple[FailedEvent, ...]:
        """Up to ``limit`` queued events whose last attempt failed, with attempts and error."""
        return tuple(self._inbox().failed(limit))

    async def afailed(self, limit: int = 100) -> tuple[FailedEvent, ...]:
        """:meth:`failed` without blocking the event loop."""
        return tuple(await self._inbox().afailed(limit))

    def work(
        self,
        handle: Callable[[Event], object],
        *,
        max_events: int | None = None,
        idle_timeout: float | None = None,
        stop: StopSignal | None = None,
        backoff: Backoff = DEFAULT_BACKOFF,
        poll: float = DEFAULT_POLL,
    ) -> WorkReport:
        """Handle queued events until stopped: each once, in order per webhook.

        Args:
            handle: Called with each event; returning completes it, raising retries it.
            max_events: Return after this many attempts (handled or failed).
            idle_timeout: Return after this many seconds without an event to handle
                (``0``: as soon as none is due).
            stop: A ``threading.Event`` or a callable; checked before each event and
                at least every ``poll`` seconds while idle. The current event finishes.
            backoff: The waits between attempts of a failing event.
            poll: The longest single wait while idle.

        Returns:
            What the run did and why it ended.

        Raises:
            LedgerUnavailable: The storage failed.
            BaseException: ``KeyboardInterrupt`` and the like from ``handle``, after its
                event was given back.
        """
        settings = WorkSettings.check(max_events, idle_timeout, stop, backoff, poll)
        store = self._inbox()
        flow = work_flow(settings)
        try:
            step = next(flow)
            while True:
                try:
                    if isinstance(step, _Take):
                        result: Any = store.take()
                    elif isinstance(step, _Run):
                        result = handle(step.event)
                    elif isinstance(step, _Finish):
                        result = store.finish(step.taken, step.retry_in, step.error)
                    else:
                        store.idle(step.seconds)
                        result = None
                except BaseException as exc:
                    step = flow.throw(exc)
                else:
                    step = flow.send(result)
        except StopIteration as done:
            report: WorkReport = done.value
            return report

    async def awork(
        self,
        handle: Callable[[Event], Awaitable[object]],
        *,
        max_events: int | None = None,
        idle_timeout: float | None = None,
        stop: StopSignal | None = None,
        backoff: Backoff = DEFAULT_BACKOFF,
        poll: float = DEFAULT_POLL,
    ) -> WorkReport:
        """:meth:`work` with an async handler, never blocking the event loop.

        ``stop`` may also be an ``asyncio.Event``. Cancelling the task gives the
        current event back before the cancellation propagates.
        """
        settings = WorkSettings.check(max_events, idle_timeout, stop, backoff, poll)
        store = self._inbox()
        flow = work_flow(settings)
        try:
            step = next(flow)
            while True:
                try:
                    if isinstance(step, _Take):
                        result: Any = await store.atake()
                    elif isinstance(step, _Run):
                        result = await handle(step.event)
                    elif isinstance(step, _Finish):
                        result = await store.afinish(step.taken, step.retry_in, step.error)
                    else:
                        await store.aidle(step.seconds)
                        result = None
                except BaseException as exc:
                    step = flow.throw(exc)
                else:
                    step = flow.send(result)
        except StopIteration as done:
            report: WorkReport = done.value
            return report
