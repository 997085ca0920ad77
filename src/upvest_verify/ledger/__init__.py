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
one host), :class:`RedisLedger` (any hosts; ``pip install 'upvest-verify[redis]'``);
:func:`ledger_from_url` builds one from ``memory://``, ``sqlite:///PATH`` or
``redis://HOST:PORT/DB``.

Acknowledge first, process later: ``ledger.enqueue(webhook.events)`` stores the events
durably in the same store (answer 2xx right after it), and worker processes run
``ledger.work(handle)``: each event once, in order per webhook, failures retried with
:class:`Backoff` (see :class:`InboxLedger`).

Replay stores (``Verifier(keys, replay_store=...)``, off by default) remember the
signatures of handled webhooks until their window ends, so that a replay within the
window is refused: :class:`MemoryReplayStore`, :class:`SQLiteReplayStore`,
:class:`RedisReplayStore`.

Importing this package does not import redis; ``RedisLedger`` and
``RedisReplayStore`` load it on access.
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
from ._inbox import DEFAULT_BACKOFF, Backoff, FailedEvent, InboxLedger, WorkReport
from ._memory import MemoryLedger
from ._replay import (
    DEFAULT_MAX_ENTRIES,
    BaseReplayStore,
    MemoryReplayStore,
    SQLiteReplayStore,
    replay_key,
)
from ._sqlite import SQLiteLedger
from ._url import ledger_from_url

if TYPE_CHECKING:
    from ._redis import RedisLedger
    from ._replay_redis import RedisReplayStore

__all__ = [
    "DEFAULT_BACKOFF",
    "DEFAULT_LEASE",
    "DEFAULT_MAX_ENTRIES",
    "DEFAULT_RETENTION",
    "MAX_EVENT_ID_LENGTH",
    "Acquired",
    "Backoff",
    "BaseLedger",
    "BaseReplayStore",
    "Claim",
    "ClaimLost",
    "FailedEvent",
    "InboxLedger",
    "InvalidEventId",
    "LedgerError",
    "LedgerUnavailable",
    "MemoryLedger",
    "MemoryReplayStore",
    "ProcessReport",
    "RedisLedger",
    "RedisReplayStore",
    "SQLiteLedger",
    "SQLiteReplayStore",
    "WorkReport",
    "ledger_from_url",
    "replay_key",
]


def __getattr__(name: str) -> Any:
    if name == "RedisLedger":
        from ._redis import RedisLedger

        return RedisLedger
    if name == "RedisReplayStore":
        from ._replay_redis import RedisReplayStore

        return RedisReplayStore
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
