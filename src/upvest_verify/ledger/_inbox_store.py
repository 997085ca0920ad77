"""What a ledger backend implements for the inbox: :class:`InboxStore` and its values.

Each change a store makes is atomic together with the ledger's own lease and done
records (one lock, one SQLite transaction, one Redis script), so the queue and the
done-ledger never disagree. :mod:`upvest_verify.ledger._inbox` drives a store.

A store never reads its ledger's private attributes: the ledger hands it an access
object, defined beside the store (``MemoryLedgerAccess``, ``SQLiteLedgerAccess``,
``RedisLedgerAccess``), with just the lock, clock, statements or clients it shares.
"""

from __future__ import annotations

import abc
import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

from ._claim import Claim

__all__ = ["HELD_RECHECK", "SCAN_LIMIT", "FailedEvent", "InboxStore", "Row", "Taken"]

HELD_RECHECK = 1.0
"""Seconds before a webhook whose head another path holds (``process()``) is looked at again."""

SCAN_LIMIT = 64
"""At most this many heads are looked at per take (done ones dropped, held ones put off)."""

Row = tuple[str, str, str]
"""A queued event as a store keeps it: (event id, webhook id, raw JSON text)."""


@dataclass(frozen=True, slots=True)
class FailedEvent:
    """A queued event whose last attempt failed; it waits for its next one.

    Attributes:
        event_id: The event's id.
        webhook_id: Its webhook; later events of this webhook wait behind it.
        attempts: How many times a worker started it.
        error: The last handler error, as ``"Type: message"``.
        retry_in: Seconds until the next attempt (0 when it is due).
    """

    event_id: str
    webhook_id: str
    attempts: int
    error: str
    retry_in: float


@dataclass(frozen=True, slots=True)
class Taken:
    """A queued event leased to this worker by :meth:`InboxStore.take`.

    Attributes:
        claim: The lease, as :meth:`BaseLedger.claim` would have given it.
        webhook_id: The event's webhook.
        raw: The event's JSON text, as enqueued.
        attempts: Starts so far, this one included.
        ref: The backend's handle on the queued entry (SQLite: its row id).
    """

    claim: Claim
    webhook_id: str
    raw: str
    attempts: int
    ref: object = None


class InboxStore(abc.ABC):
    """A backend's inbox primitives; every change is atomic with the ledger's own.

    The async twins run the sync ones in a worker thread unless a backend overrides them.
    """

    __slots__ = ()

    @abc.abstractmethod
    def put(self, rows: Sequence[Row]) -> int:
        """Queue each row whose id is neither queued nor done; return how many were queued."""

    @abc.abstractmethod
    def take(self) -> Taken | float | None:
        """Lease the head of the webhook that is due first.

        Returns:
            The leased event; else the seconds until a head is due (``0`` to look again at
            once); ``None`` when nothing is queued.
        """

    @abc.abstractmethod
    def finish(self, taken: Taken, retry_in: float | None, error: str | None) -> bool:
        """Complete and dequeue ``taken`` (``retry_in=None``), or give it back for a retry.

        Args:
            taken: What :meth:`take` returned.
            retry_in: ``None`` to complete it; else seconds until its webhook is due again.
            error: The failure to record with it (``None`` records nothing).

        Returns:
            False when the lease had ended or is another's; nothing changed.
        """

    @abc.abstractmethod
    def idle(self, seconds: float) -> None:
        """Wait up to ``seconds`` for new events (a backend may return earlier)."""

    @abc.abstractmethod
    def pending(self) -> int:
        """How many events are queued (running and failed ones included)."""

    @abc.abstractmethod
    def failed(self, limit: int) -> list[FailedEvent]:
        """Up to ``limit`` queued events whose last attempt failed."""

    async def aput(self, rows: Sequence[Row]) -> int:
        """:meth:`put` without blocking the event loop."""
        return await asyncio.to_thread(self.put, rows)

    async def atake(self) -> Taken | float | None:
        """:meth:`take` without blocking the event loop."""
        return await asyncio.to_thread(self.take)

    async def afinish(self, taken: Taken, retry_in: float | None, error: str | None) -> bool:
        """:meth:`finish` without blocking the event loop."""
        return await asyncio.to_thread(self.finish, taken, retry_in, error)

    async def aidle(self, seconds: float) -> None:
        """:meth:`idle` without blocking the event loop."""
        await asyncio.sleep(seconds)

    async def apending(self) -> int:
        """:meth:`pending` without blocking the event loop."""
        return await asyncio.to_thread(self.pending)

    async def afailed(self, limit: int) -> list[FailedEvent]:
        """:meth:`failed` without blocking the event loop."""
        return await asyncio.to_thread(self.failed, limit)
