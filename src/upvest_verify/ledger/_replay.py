"""Replay stores: refuse a signature that was already handled, for as long as it is valid.

A :class:`~upvest_verify.Verifier` given ``replay_store=`` asks the store, after a
signature verified, whether it has seen that signature; if so the webhook is
refused with ``replayed``. The store learns a signature only through
:meth:`Verifier.record <upvest_verify.Verifier.record>`, which the application (or
an adapter) calls once its handler answered 2xx: a delivery whose handler failed is
never recorded, so Upvest's retry of it is accepted again (threat model E10).

Identity of a signature (see :func:`replay_key`), always the hex SHA-256 of:

- ``(keyid, nonce)`` when the signature has a ``nonce`` (Upvest always sends one);
- otherwise ``(keyid, created, expires, covered components, SHA-512 of the body)``:
  what the signature signed, minus the covered header values the result does not
  keep. Never the signature bytes: ECDSA signatures are malleable (``s`` to
  ``n - s``) and come in DER or raw form, so the same capture could be re-encoded
  past a byte-keyed store (threat model C4).

A signature is remembered until ``until`` (Unix seconds, from the same wall clock as
the verifier's); the verifier passes one second past the last instant the window
accepts, plus the skew. Remembered signatures are forgotten once ``until`` passed, so
a store holds at most the signatures recorded within one window.
"""

from __future__ import annotations

import abc
import asyncio
import hashlib
import heapq
import json
import logging
import math
import os
import re
import sqlite3
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from ._claim import check_duration
from ._sqlite_db import Database

if TYPE_CHECKING:
    from upvest_verify._result import VerifiedWebhook

__all__ = [
    "DEFAULT_MAX_ENTRIES",
    "BaseReplayStore",
    "MemoryReplayStore",
    "SQLiteReplayStore",
    "check_until",
    "replay_key",
]

logger = logging.getLogger("upvest_verify")

DEFAULT_MAX_ENTRIES = 100_000
"""The most signatures a :class:`MemoryReplayStore` holds by default."""

PURGE_BATCH = 1000
"""At most this many expired entries are dropped per purge step."""


def replay_key(webhook: VerifiedWebhook) -> str:
    """The identity of the signature that verified ``webhook``: 64 hex digits.

    Args:
        webhook: A verified webhook.

    Returns:
        The hex SHA-256 of ``(keyid, nonce)``, or, without a nonce, of ``(keyid,
        created, expires, covered components, SHA-512 of the body)``.
    """
    parts: list[object]
    if webhook.nonce is not None:
        parts = ["nonce", webhook.key_id, webhook.nonce]
    else:
        parts = [
            "signed",
            webhook.key_id,
            webhook.created,
            webhook.expires,
            list(webhook.covered_components),
            hashlib.sha512(webhook.body).hexdigest(),
        ]
    # JSON of a list: an unambiguous encoding whatever the strings hold.
    encoded = json.dumps(parts, separators=(",", ":")).encode()
    return hashlib.sha256(encoded).hexdigest()


def check_until(until: float) -> float:
    """Return ``until`` if it is a finite number of Unix seconds.

    Raises:
        ValueError: It is not.
    """
    if isinstance(until, bool) or not isinstance(until, (int, float)) or not math.isfinite(until):
        raise ValueError("until must be a finite number of Unix seconds")
    return float(until)


class BaseReplayStore(abc.ABC):
    """Remembers handled signatures until their validity window ends.

    Subclasses implement the key-level primitives :meth:`seen_key`,
    :meth:`record_key` and their async twins; :meth:`seen` and :meth:`record` derive
    the key with :func:`replay_key`. A store failure raises
    :class:`~upvest_verify.ledger.LedgerUnavailable`; the verifier lets it propagate,
    so a webhook is never accepted unchecked.
    """

    __slots__ = ()

    @abc.abstractmethod
    def seen_key(self, key: str) -> bool:
        """Whether ``key`` was recorded and its ``until`` has not passed.

        Raises:
            LedgerUnavailable: The storage failed.
        """

    @abc.abstractmethod
    async def aseen_key(self, key: str) -> bool:
        """:meth:`seen_key` without blocking the event loop."""

    @abc.abstractmethod
    def record_key(self, key: str, until: float) -> None:
        """Remember ``key`` until ``until`` (Unix seconds); nothing if that has passed.

        Raises:
            LedgerUnavailable: The storage failed.
        """

    @abc.abstractmethod
    async def arecord_key(self, key: str, until: float) -> None:
        """:meth:`record_key` without blocking the event loop."""

    def seen(self, webhook: VerifiedWebhook) -> bool:
        """Whether the signature that verified ``webhook`` was recorded and is remembered.

        Raises:
            LedgerUnavailable: The storage failed.
        """
        return self.seen_key(replay_key(webhook))

    async def aseen(self, webhook: VerifiedWebhook) -> bool:
        """:meth:`seen` without blocking the event loop."""
        return await self.aseen_key(replay_key(webhook))

    def record(self, webhook: VerifiedWebhook, *, until: float) -> None:
        """Remember the signature that verified ``webhook`` until ``until``.

        Args:
            webhook: A webhook whose handler succeeded.
            until: Unix seconds (the verifier's wall clock) after which the signature
                is forgotten; an instant already past records nothing.

        Raises:
            ValueError: ``until`` is not a finite number.
            LedgerUnavailable: The storage failed.
        """
        self.record_key(replay_key(webhook), check_until(until))

    async def arecord(self, webhook: VerifiedWebhook, *, until: float) -> None:
        """:meth:`record` without blocking the event loop."""
        await self.arecord_key(replay_key(webhook), check_until(until))

    def close(self) -> None:  # noqa: B027 - optional hook, nothing to close by default
        """Release this store's connections (they reopen on next use)."""

    async def aclose(self) -> None:  # noqa: B027 - optional hook, nothing to close by default
        """Release this store's async connections; call it in the loop that used them."""


class MemoryReplayStore(BaseReplayStore):
    """A thread-safe replay store in this process's memory (one process; tests).

    Expired signatures are dropped soonest-expiring first, a bounded number per call.
    At ``max_entries`` live signatures, recording another drops the one closest to
    its expiry (logged as a warning): memory stays bounded, and only a replay of
    that signature in its last moments would get through.

    Args:
        max_entries: The most signatures held.
        clock: Wall-clock Unix seconds; use the verifier's clock.
    """

    __slots__ = ("_clock", "_heap", "_lock", "_max_entries", "_until")

    def __init__(
        self, *, max_entries: int = DEFAULT_MAX_ENTRIES, clock: Callable[[], float] = time.time
    ) -> None:
        if isinstance(max_entries, bool) or not isinstance(max_entries, int) or max_entries < 1:
            raise ValueError("max_entries must be a positive int")
        self._max_entries = max_entries
        self._clock = clock
        self._lock = threading.Lock()
        self._until: dict[str, float] = {}  # key -> forget-at
        # (forget-at, key), soonest first; an entry whose forget-at no longer matches
        # _until (the key was recorded again, later) is stale and skipped.
        self._heap: list[tuple[float, str]] = []

    def __repr__(self) -> str:
        return f"MemoryReplayStore(max_entries={self._max_entries})"

    def __len__(self) -> int:
        """The number of signatures held, including expired ones not yet dropped."""
        with self._lock:
            return len(self._until)

    def _drop_first(self) -> bool:
        # Called with the lock held: drop the soonest-expiring live entry.
        while self._heap:
            until, key = heapq.heappop(self._heap)
            if self._until.get(key) == until:
                del self._until[key]
                return True
        return False

    def _purge(self, now: float, limit: int) -> int:
        removed = 0
        while self._heap and self._heap[0][0] <= now and removed < limit:
            until, key = heapq.heappop(self._heap)
            if self._until.get(key) == until:
                del self._until[key]
                removed += 1
        return removed

    def purge(self) -> int:
        """Drop every signature whose ``until`` passed; return how many."""
        with self._lock:
            return self._purge(self._clock(), len(self._heap))

    def seen_key(self, key: str) -> bool:
        with self._lock:
            now = self._clock()
            self._purge(now, PURGE_BATCH)
            until = self._until.get(key)
            return until is not None and until > now

    async def aseen_key(self, key: str) -> bool:
        return self.seen_key(key)

    def record_key(self, key: str, until: float) -> None:
        with self._lock:
            now = self._clock()
            if until <= now:
                return
            self._purge(now, PURGE_BATCH)
            current = self._until.get(key)
            if current is not None and current >= until:
                return
            if current is None and len(self._until) >= self._max_entries:
                self._drop_first()
                logger.warning(
                    "replay store full (%d signatures): dropped the one closest to expiry",
                    self._max_entries,
                )
            self._until[key] = until
            heapq.heappush(self._heap, (until, key))

    async def arecord_key(self, key: str, until: float) -> None:
        self.record_key(key, until)


_SQL = {
    "create": "CREATE TABLE IF NOT EXISTS {table} ("
    "replay_key TEXT PRIMARY KEY NOT NULL, expires_at REAL NOT NULL"
    ") WITHOUT ROWID",
    "index": "CREATE INDEX IF NOT EXISTS {table}_expires_at ON {table} (expires_at)",
    "seen": "SELECT 1 FROM {table} WHERE replay_key = ? AND expires_at > ?",
    "count": "SELECT count(*) FROM {table}",
    "record": "INSERT INTO {table} (replay_key, expires_at) VALUES (?, ?) "
    "ON CONFLICT (replay_key) DO UPDATE SET "
    "expires_at = max({table}.expires_at, excluded.expires_at)",
    "purge": "DELETE FROM {table} WHERE replay_key IN "
    "(SELECT replay_key FROM {table} WHERE expires_at <= ? LIMIT ?)",
}
"""Every statement the store runs; ``{table}`` stands for the table name."""

_TABLE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")


class SQLiteReplayStore(BaseReplayStore):
    """A replay store in one SQLite file, shared by the processes of one host.

    Storage: one table (default ``upvest_replay``), created on first use::

        replay_key  TEXT PRIMARY KEY  -- replay_key(webhook), 64 hex digits
        expires_at  REAL              -- wall-clock seconds: forget the signature then

    Checking is one ``SELECT``, recording one ``INSERT ... ON CONFLICT DO UPDATE``
    that keeps the later ``expires_at``. WAL mode and a busy timeout let several
    processes share the file. Expired rows are deleted in bounded batches, at most
    once per ``purge_interval``, so the table holds about one window of signatures.

    Args:
        path: The database file (it may be the ledger's file: the tables differ).
        table: The table name (letters, digits, underscores).
        busy_timeout: Seconds to wait for another process's write lock.
        purge_interval: Seconds between automatic purges of expired rows.
        clock: Wall-clock Unix seconds; use the verifier's clock.
    """

    __slots__ = (
        "_clock",
        "_db",
        "_lock",
        "_next_purge",
        "_path",
        "_purge_interval",
        "_sql",
    )

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        table: str = "upvest_replay",
        busy_timeout: float = 10.0,
        purge_interval: float = 60.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not _TABLE_NAME.fullmatch(table):
            raise ValueError(f"table name {table!r} is not a plain SQL identifier")
        self._path = os.fspath(path)
        busy = check_duration("busy_timeout", busy_timeout)
        self._purge_interval = check_duration("purge_interval", purge_interval)
        self._clock = clock
        self._lock = threading.Lock()
        self._next_purge = 0.0
        # The table name is a checked identifier; values are always bound parameters.
        self._sql = {name: text.replace("{table}", table) for name, text in _SQL.items()}
        schema = (self._sql["create"], self._sql["index"])
        self._db = Database(self._path, busy, schema, "SQLite replay store")

    def __repr__(self) -> str:
        return f"SQLiteReplayStore({self._path!r})"

    @property
    def path(self) -> str:
        """The database file."""
        return self._path

    def _run(self, query: str, *params: object) -> sqlite3.Cursor:
        # Called with the lock held.
        return self._db.run(self._sql[query], params)

    def close(self) -> None:
        """Close the database connection (it reopens on next use)."""
        with self._lock:
            self._db.close()

    async def aclose(self) -> None:
        """:meth:`close`, in a worker thread."""
        await asyncio.to_thread(self.close)

    def _purge_locked(self, now: float) -> int:
        total = self._db.purge(self._sql["purge"], now, PURGE_BATCH)
        self._next_purge = now + self._purge_interval
        return total

    def purge(self) -> int:
        """Delete every row whose ``expires_at`` passed; return how many.

        Raises:
            LedgerUnavailable: The database cannot be used.
        """
        with self._lock:
            return self._purge_locked(self._clock())

    def __len__(self) -> int:
        """The number of rows, including expired ones not yet purged."""
        with self._lock:
            count: int = self._run("count").fetchone()[0]
            return count

    def seen_key(self, key: str) -> bool:
        with self._lock:
            return self._run("seen", key, self._clock()).fetchone() is not None

    async def aseen_key(self, key: str) -> bool:
        return await asyncio.to_thread(self.seen_key, key)

    def record_key(self, key: str, until: float) -> None:
        with self._lock:
            now = self._clock()
            if until <= now:
                return
            if now >= self._next_purge:
                self._purge_locked(now)
            self._run("record", key, until)

    async def arecord_key(self, key: str, until: float) -> None:
        await asyncio.to_thread(self.record_key, key, until)
