"""The in-process inbox of :class:`~upvest_verify.ledger.MemoryLedger`.

Queued events live beside the ledger's leases and completions, under the same lock,
so taking a head and completing it are single steps; nothing survives the process.
Per webhook a deque keeps the queued ids in enqueue order, and a due time says when
its head may be taken next (now; the lease end while a worker runs it; the retry time
after a failure). Idle sync workers wait on a condition that ``put`` notifies; async
ones sleep in short polls. The ledger hands its inbox a :class:`MemoryLedgerAccess`: its
lock, clock, lease and the lock-held steps the inbox runs on its records.
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from ._claim import Acquired, Claim
from ._inbox_store import HELD_RECHECK, SCAN_LIMIT, FailedEvent, InboxStore, Row, Taken

__all__ = ["MemoryInbox", "MemoryLedgerAccess"]

ASYNC_POLL = 0.02
"""The longest sleep of an idle async worker between two looks (it cannot wait on the
thread condition without blocking the event loop)."""


@dataclass(frozen=True, slots=True)
class MemoryLedgerAccess:
    """What :class:`MemoryInbox` may use of its :class:`~upvest_verify.ledger.MemoryLedger`.

    The ledger builds it for its inbox store in this package; not part of the public
    API. Every callable expects ``lock`` to be held.

    Attributes:
        lock: The ledger's lock; the inbox's condition is made on it.
        clock: The ledger's monotonic clock.
        lease: Seconds a lease lasts.
        is_done: ``(event_id, now)``: whether the id completed and is still remembered.
        acquire: ``(event_id, now)``: the ledger's acquire: a claim, ``"done"`` or ``"held"``.
        lease_end: ``(event_id)``: when the live lease on an id just found held ends.
        settle: ``(event_id, token, done, now)``: the ledger's settle; False if the lease
            ended or is another's.
    """

    lock: threading.Lock
    clock: Callable[[], float]
    lease: float
    is_done: Callable[[str, float], bool]
    acquire: Callable[[str, float], Acquired]
    lease_end: Callable[[str], float]
    settle: Callable[[str, str, bool, float], bool]


@dataclass(slots=True)
class _Item:
    webhook_id: str
    raw: str
    attempts: int = 0
    error: str | None = None
    retry_at: float = 0.0


class MemoryInbox(InboxStore):
    """The inbox of one :class:`MemoryLedger`; every method takes the ledger's lock."""

    __slots__ = ("_changed", "_due", "_items", "_ledger", "_queues")

    def __init__(self, ledger: MemoryLedgerAccess) -> None:
        self._ledger = ledger
        self._changed = threading.Condition(ledger.lock)
        self._items: dict[str, _Item] = {}  # id -> entry, in enqueue order
        self._queues: dict[str, deque[str]] = {}  # webhook id -> queued ids, oldest first
        self._due: dict[str, float] = {}  # webhook id -> when its head may be taken

    def put(self, rows: Sequence[Row]) -> int:
        ledger = self._ledger
        added = 0
        with self._changed:
            now = ledger.clock()
            for event_id, webhook_id, raw in rows:
                if event_id in self._items or ledger.is_done(event_id, now):
                    continue
                self._items[event_id] = _Item(webhook_id, raw)
                self._queues.setdefault(webhook_id, deque()).append(event_id)
                self._due.setdefault(webhook_id, now)
                added += 1
            if added:
                self._changed.notify_all()
        return added

    def take(self) -> Taken | float | None:
        ledger = self._ledger
        with self._changed:
            now = ledger.clock()
            for _ in range(SCAN_LIMIT):
                if not self._due:
                    return None
                webhook_id, due_at = min(self._due.items(), key=lambda pair: pair[1])
                if due_at > now:
                    return due_at - now
                queue = self._queues.get(webhook_id)
                if not queue:
                    del self._due[webhook_id]
                    self._queues.pop(webhook_id, None)
                    continue
                event_id = queue[0]
                outcome = ledger.acquire(event_id, now)
                if outcome == "done":  # completed on another path: dequeue, look again
                    queue.popleft()
                    del self._items[event_id]
                    continue
                if outcome == "held":  # another path runs it: look again later
                    lease_end = ledger.lease_end(event_id)
                    self._due[webhook_id] = min(lease_end, now + HELD_RECHECK)
                    continue
                item = self._items[event_id]
                item.attempts += 1
                self._due[webhook_id] = now + ledger.lease
                return Taken(outcome, webhook_id, item.raw, item.attempts)
        return 0.0

    def finish(self, taken: Taken, retry_in: float | None, error: str | None) -> bool:
        ledger = self._ledger
        claim: Claim = taken.claim
        event_id, webhook_id = claim.event_id, taken.webhook_id
        with self._changed:
            now = ledger.clock()
            if not ledger.settle(event_id, claim.token, retry_in is None, now):
                return False
            queue = self._queues[webhook_id]
            if retry_in is None:
                queue.remove(event_id)  # the head: O(1)
                del self._items[event_id]
                if queue:
                    self._due[webhook_id] = now
                else:
                    del self._due[webhook_id], self._queues[webhook_id]
            else:
                self._due[webhook_id] = now + retry_in
                if error is not None:
                    item = self._items[event_id]
                    item.error, item.retry_at = error, now + retry_in
            self._changed.notify_all()
        return True

    def idle(self, seconds: float) -> None:
        with self._changed:
            self._changed.wait(seconds)

    def pending(self) -> int:
        with self._changed:
            return len(self._items)

    def failed(self, limit: int) -> list[FailedEvent]:
        with self._changed:
            now = self._ledger.clock()
            failures = [
                FailedEvent(id_, item.webhook_id, item.attempts, item.error, item.retry_at - now)
                for id_, item in self._items.items()
                if item.error is not None
            ]
        return [replace(f, retry_in=max(0.0, f.retry_in)) for f in failures[: max(limit, 0)]]

    async def aput(self, rows: Sequence[Row]) -> int:
        return self.put(rows)

    async def atake(self) -> Taken | float | None:
        return self.take()

    async def afinish(self, taken: Taken, retry_in: float | None, error: str | None) -> bool:
        return self.finish(taken, retry_in, error)

    async def aidle(self, seconds: float) -> None:
        await asyncio.sleep(min(seconds, ASYNC_POLL))

    async def apending(self) -> int:
        return self.pending()

    async def afailed(self, limit: int) -> list[FailedEvent]:
        return self.failed(limit)
