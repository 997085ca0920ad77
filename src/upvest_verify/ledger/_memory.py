"""An in-process ledger: one Python process, any number of threads or tasks.

Nothing is shared with other processes and nothing survives a restart; use it in
tests and single-process apps. Completed ids are remembered for the retention and
dropped in completion order, a bounded number per call, so memory stays bounded
by the completion rate times the retention. Its inbox (``enqueue``/``work``) is
:class:`~upvest_verify.ledger._inbox_memory.MemoryInbox`, under the same lock; it uses
the ledger through the :class:`~upvest_verify.ledger._inbox_memory.MemoryLedgerAccess`
the ledger gives it.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable

from ._claim import (
    DEFAULT_LEASE,
    DEFAULT_RETENTION,
    Acquired,
    Claim,
    check_duration,
    check_event_id,
)
from ._inbox import InboxLedger
from ._inbox_memory import MemoryInbox, MemoryLedgerAccess
from ._inbox_store import InboxStore

__all__ = ["MemoryLedger"]

PURGE_BATCH = 1000
"""At most this many expired completed ids are dropped per claim."""


class MemoryLedger(InboxLedger):
    """A thread-safe ledger held in this process's memory.

    Args:
        lease: Seconds a claim lasts unless completed or released.
        retention: Seconds a completed id is remembered.
        clock: Monotonic seconds; injectable for tests.
    """

    __slots__ = ("_clock", "_done", "_inbox_store", "_lease", "_leases", "_lock", "_retention")

    def __init__(
        self,
        *,
        lease: float = DEFAULT_LEASE,
        retention: float = DEFAULT_RETENTION,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._lease = check_duration("lease", lease)
        self._retention = check_duration("retention", retention)
        self._clock = clock
        self._lock = threading.Lock()
        self._leases: dict[str, tuple[str, float]] = {}  # id -> (token, lease end)
        self._done: OrderedDict[str, float] = OrderedDict()  # id -> forget-at, oldest first
        self._inbox_store = MemoryInbox(
            MemoryLedgerAccess(
                lock=self._lock,
                clock=self._clock,
                lease=self._lease,
                is_done=self._is_done,
                acquire=self._acquire_locked,
                lease_end=self._lease_end,
                settle=self._settle_locked,
            )
        )

    def __repr__(self) -> str:
        return f"MemoryLedger(lease={self._lease}, retention={self._retention})"

    @property
    def retention(self) -> float:
        """Seconds a completed id is remembered."""
        return self._retention

    def __len__(self) -> int:
        """The number of ids held: live or expired leases and remembered completions."""
        with self._lock:
            return len(self._leases) + len(self._done)

    def _purge(self, now: float, limit: int) -> int:
        removed = 0
        while self._done and removed < limit:
            event_id, forget_at = next(iter(self._done.items()))
            if forget_at > now:
                break
            del self._done[event_id]
            removed += 1
        return removed

    def purge(self) -> int:
        """Forget every completed id older than the retention; return how many."""
        with self._lock:
            return self._purge(self._clock(), len(self._done))

    def _inbox(self) -> InboxStore:
        return self._inbox_store

    def acquire(self, event_id: str) -> Acquired:
        check_event_id(event_id)
        with self._lock:
            return self._acquire_locked(event_id, self._clock())

    def _is_done(self, event_id: str, now: float) -> bool:
        # Called with the lock held; handed to the inbox.
        forget_at = self._done.get(event_id)
        return forget_at is not None and forget_at > now

    def _lease_end(self, event_id: str) -> float:
        # Called with the lock held, for an id with a lease; handed to the inbox.
        return self._leases[event_id][1]

    def _acquire_locked(self, event_id: str, now: float) -> Acquired:
        # Called with the lock held; handed to the inbox.
        self._purge(now, PURGE_BATCH)
        forget_at = self._done.get(event_id)
        if forget_at is not None:
            if forget_at > now:
                return "done"
            del self._done[event_id]
        current = self._leases.get(event_id)
        if current is not None and current[1] > now:
            return "held"
        token = secrets.token_hex(16)
        self._leases[event_id] = (token, now + self._lease)
        return Claim(event_id, token, self)

    async def aacquire(self, event_id: str) -> Acquired:
        return self.acquire(event_id)

    def settle(self, event_id: str, token: str, *, done: bool) -> bool:
        with self._lock:
            return self._settle_locked(event_id, token, done, self._clock())

    def _settle_locked(self, event_id: str, token: str, done: bool, now: float) -> bool:
        # Called with the lock held; handed to the inbox.
        current = self._leases.get(event_id)
        if current is None or current[1] <= now or not secrets.compare_digest(current[0], token):
            return False
        del self._leases[event_id]
        if done:
            self._done[event_id] = now + self._retention
            self._done.move_to_end(event_id)
        return True

    async def asettle(self, event_id: str, token: str, *, done: bool) -> bool:
        return self.settle(event_id, token, done=done)
