"""Process each Upvest event once: an event ledger keyed by ``Event.id``.

Upvest retries a whole delivery until it gets a 2xx answer, so the same event can
arrive more than once, and several workers can receive deliveries at the same
time. A ledger records, per event id, a short *claim* (a lease with a random owner
token) while a worker handles the event, and *done* once it completed::

    from upvest_verify.ledger import SQLiteLedger

    ledger = SQLiteLedger("events.sqlite3", lease=30)
    report = ledger.process(webhook.events, handle)  # claim, handle, complete each
    if report.held:  # another worker is handling some of them right now
        return 503

Backends: :class:`MemoryLedger` (one process), :class:`SQLiteLedger` (processes on
one host), :class:`RedisLedger` (any hosts; ``pip install 'upvest-verify[redis]'``).
Importing this package does not import redis; ``RedisLedger`` loads it on access.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._claim import (
    DEFAULT_LEASE,
    DEFAULT_RETENTION,
    MAX_EVENT_ID_LENGTH,
    Acquired,
    BaseLedger,
    Claim,
    ClaimLost,
    InvalidEventId,
    LedgerError,
    LedgerUnavailable,
    ProcessReport,
)
from ._memory import MemoryLedger
from ._sqlite import SQLiteLedger

if TYPE_CHECKING:
    from ._redis import RedisLedger

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
    "MemoryLedger",
    "ProcessReport",
    "RedisLedger",
    "SQLiteLedger",
]


def __getattr__(name: str) -> Any:
    if name == "RedisLedger":
        from ._redis import RedisLedger

        return RedisLedger
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
