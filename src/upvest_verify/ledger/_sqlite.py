"""A ledger in one SQLite file, shared by any number of processes on one host.

Storage: one table (default name ``upvest_events``), created on first use::

    event_id    TEXT PRIMARY KEY  -- the event id
    token       TEXT              -- owner token while claimed, NULL once done
    expires_at  REAL              -- wall-clock seconds: lease end, or forget-at once done

A claim is one statement, ``INSERT ... ON CONFLICT(event_id) DO UPDATE ... WHERE
expires_at <= now``, whose change count (``changes()``) says whether it took the
row. Complete and release are one ``UPDATE``/``DELETE`` each, conditioned on the
owner token and a live lease. The database runs in WAL mode with a busy timeout,
so workers in several processes wait for each other's short write transactions
instead of failing. Completed rows are deleted once older than the retention, in
bounded batches, at most once per purge interval.

Clocks: lease ends and retention use the wall clock (``time.time``) because
several processes compare them; keep the host's clock synchronised.

The inbox (``enqueue``/``work``) keeps two more tables in the same file, created on
its first use; see :mod:`upvest_verify.ledger._inbox_sqlite`. It uses the ledger through
the :class:`~upvest_verify.ledger._inbox_sqlite.SQLiteLedgerAccess` the ledger gives it.
"""

from __future__ import annotations

import asyncio
import os
import re
import secrets
import sqlite3
import threading
import time
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
from ._inbox_sqlite import SQLiteInbox, SQLiteLedgerAccess
from ._inbox_store import InboxStore
from ._sqlite_db import Database

__all__ = ["SQLiteLedger"]

PURGE_BATCH = 1000
"""At most this many expired rows are deleted per purge statement."""

_SQL = {
    "create": "CREATE TABLE IF NOT EXISTS {table} ("
    "event_id TEXT PRIMARY KEY NOT NULL, token TEXT, expires_at REAL NOT NULL"
    ") WITHOUT ROWID",
    "index": "CREATE INDEX IF NOT EXISTS {table}_expires_at ON {table} (expires_at)",
    "claim": "INSERT INTO {table} (event_id, token, expires_at) VALUES (?, ?, ?) "
    "ON CONFLICT (event_id) DO UPDATE SET "
    "token = excluded.token, expires_at = excluded.expires_at "
    "WHERE {table}.expires_at <= ?",
    "state": "SELECT token IS NULL FROM {table} WHERE event_id = ? AND expires_at > ?",
    "complete": "UPDATE {table} SET token = NULL, expires_at = ? "
    "WHERE event_id = ? AND token = ? AND expires_at > ?",
    "release": "DELETE FROM {table} WHERE event_id = ? AND token = ? AND expires_at > ?",
    "purge": "DELETE FROM {table} WHERE event_id IN "
    "(SELECT event_id FROM {table} WHERE expires_at <= ? LIMIT ?)",
}
"""Every statement the ledger runs; ``{table}`` stands for the table name."""

_TABLE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")


class SQLiteLedger(InboxLedger):
    """A ledger stored in an SQLite database file.

    Args:
        path: The database file; created with its table on first use.
        lease: Seconds a claim lasts unless completed or released.
        retention: Seconds a completed id is remembered.
        table: The table name (letters, digits, underscores).
        busy_timeout: Seconds to wait for another process's write lock.
        purge_interval: Seconds between automatic purges of old completed rows.
        clock: Wall-clock seconds; injectable for tests.
    """

    __slots__ = (
        "_clock",
        "_db",
        "_inbox_store",
        "_lease",
        "_lock",
        "_next_purge",
        "_path",
        "_purge_interval",
        "_retention",
        "_sql",
    )

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        lease: float = DEFAULT_LEASE,
        retention: float = DEFAULT_RETENTION,
        table: str = "upvest_events",
        busy_timeout: float = 10.0,
        purge_interval: float = 60.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not _TABLE_NAME.fullmatch(table):
            raise ValueError(f"table name {table!r} is not a plain SQL identifier")
        self._path = os.fspath(path)
        self._lease = check_duration("lease", lease)
        self._retention = check_duration("retention", retention)
        busy = check_duration("busy_timeout", busy_timeout)
        self._purge_interval = check_duration("purge_interval", purge_interval)
        self._clock = clock
        self._lock = threading.Lock()
        self._next_purge = 0.0
        # The table name is a checked identifier; values are always bound parameters.
        self._sql = {name: text.replace("{table}", table) for name, text in _SQL.items()}
        schema = (self._sql["create"], self._sql["index"])
        self._db = Database(self._path, busy, schema, "SQLite ledger")
        self._inbox_store = SQLiteInbox(
            SQLiteLedgerAccess(
                owner=self,
                lock=self._lock,
                db=self._db,
                clock=self._clock,
                lease=self._lease,
                retention=self._retention,
                table=table,
                claim_sql=self._sql["claim"],
                complete_sql=self._sql["complete"],
                release_sql=self._sql["release"],
            )
        )

    def __repr__(self) -> str:
        return f"SQLiteLedger({self._path!r}, lease={self._lease}, retention={self._retention})"

    @property
    def path(self) -> str:
        """The database file."""
        return self._path

    @property
    def retention(self) -> float:
        """Seconds a completed id is remembered."""
        return self._retention

    def _inbox(self) -> InboxStore:
        return self._inbox_store

    def _run(self, query: str, *params: object) -> sqlite3.Cursor:
        # Called with the lock held.
        return self._db.run(self._sql[query], params)

    def close(self) -> None:
        """Close this ledger's database connection (it reopens on next use)."""
        with self._lock:
            self._db.close()

    async def aclose(self) -> None:
        """:meth:`close`, for symmetry with the Redis ledger."""
        await asyncio.to_thread(self.close)

    def purge(self) -> int:
        """Delete every completed row older than the retention; return how many.

        Raises:
            LedgerUnavailable: The database cannot be used.
        """
        with self._lock:
            return self._purge_locked(self._clock())

    def _purge_locked(self, now: float) -> int:
        total = self._db.purge(self._sql["purge"], now, PURGE_BATCH)
        self._next_purge = now + self._purge_interval
        return total

    def acquire(self, event_id: str) -> Acquired:
        check_event_id(event_id)
        token = secrets.token_hex(16)
        with self._lock:
            now = self._clock()
            if now >= self._next_purge:
                self._purge_locked(now)
            if self._run("claim", event_id, token, now + self._lease, now).rowcount == 1:
                return Claim(event_id, token, self)
            row = self._run("state", event_id, now).fetchone()
        # No row: the holder released it an instant ago; report it held so it is retried.
        return "done" if row is not None and row[0] else "held"

    async def aacquire(self, event_id: str) -> Acquired:
        return await asyncio.to_thread(self.acquire, event_id)

    def settle(self, event_id: str, token: str, *, done: bool) -> bool:
        with self._lock:
            now = self._clock()
            if done:
                cursor = self._run("complete", now + self._retention, event_id, token, now)
            else:
                cursor = self._run("release", event_id, token, now)
            return cursor.rowcount == 1

    async def asettle(self, event_id: str, token: str, *, done: bool) -> bool:
        return await asyncio.to_thread(self.settle, event_id, token, done=done)
