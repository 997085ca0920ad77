"""The inbox of :class:`~upvest_verify.ledger.SQLiteLedger`: two tables beside the ledger's.

Created on first use, in the same file (``{table}`` is the ledger's table name,
``upvest_events`` by default)::

    {table}_inbox                      -- one row per queued event, deleted once done
        seq         INTEGER PRIMARY KEY  -- enqueue order
        event_id    TEXT UNIQUE          -- the event id (its claim lives in {table})
        webhook_id  TEXT                 -- the ordering group
        raw         TEXT                 -- the event's JSON
        attempts    INTEGER              -- starts so far
        retry_at    REAL                 -- wall clock of the next attempt after a failure
        error       TEXT                 -- the last handler error, NULL if none

    {table}_inbox_due                  -- one row per webhook with queued events
        webhook_id  TEXT PRIMARY KEY
        due_at      REAL                 -- wall clock when its head may be taken next

A take, a completion and a retry are each one ``BEGIN IMMEDIATE`` transaction that
runs the ledger's own claim/complete/release statements together with the inbox
changes, so the queue and the done-ledger never disagree. The head of a webhook is its
lowest ``seq``; while a worker runs it, the webhook's ``due_at`` is the lease end, so a
dead worker's event is taken over when its lease ends. ``enqueue`` commits with
``synchronous = FULL`` (the events are on disk before the endpoint answers 2xx); the
other writes keep the ledger's ``NORMAL``. Idle workers poll a cheap read
(``MIN(due_at)``) every :data:`POLL` seconds at most; only a due head starts a write.
The ledger hands its inbox a :class:`SQLiteLedgerAccess`: its lock, database, clock,
lease, retention, table name and the three statements the inbox runs in its transactions.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from ._claim import BaseLedger, Claim
from ._inbox_store import HELD_RECHECK, SCAN_LIMIT, FailedEvent, InboxStore, Row, Taken
from ._sqlite_db import Database

__all__ = ["POLL", "SQLiteInbox", "SQLiteLedgerAccess"]

POLL = 0.05
"""The longest sleep of an idle worker between two looks at the due table, in seconds."""

_SQL = {
    "create_inbox": "CREATE TABLE IF NOT EXISTS {table}_inbox ("
    "seq INTEGER PRIMARY KEY, event_id TEXT NOT NULL UNIQUE, webhook_id TEXT NOT NULL, "
    "raw TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, retry_at REAL, error TEXT)",
    "index_inbox": "CREATE INDEX IF NOT EXISTS {table}_inbox_webhook "
    "ON {table}_inbox (webhook_id, seq)",
    "create_due": "CREATE TABLE IF NOT EXISTS {table}_inbox_due ("
    "webhook_id TEXT PRIMARY KEY NOT NULL, due_at REAL NOT NULL) WITHOUT ROWID",
    "index_due": "CREATE INDEX IF NOT EXISTS {table}_inbox_due_at ON {table}_inbox_due (due_at)",
    "put": "INSERT INTO {table}_inbox (event_id, webhook_id, raw) SELECT ?, ?, ? "
    "WHERE NOT EXISTS (SELECT 1 FROM {table} "
    "WHERE event_id = ? AND token IS NULL AND expires_at > ?) "
    "ON CONFLICT (event_id) DO NOTHING",
    "schedule": "INSERT INTO {table}_inbox_due (webhook_id, due_at) VALUES (?, ?) "
    "ON CONFLICT (webhook_id) DO NOTHING",
    "next_due": "SELECT MIN(due_at) FROM {table}_inbox_due",
    "first_due": "SELECT webhook_id FROM {table}_inbox_due WHERE due_at <= ? "
    "ORDER BY due_at LIMIT 1",
    "head": "SELECT seq, event_id, raw, attempts FROM {table}_inbox "
    "WHERE webhook_id = ? ORDER BY seq LIMIT 1",
    "holder": "SELECT token IS NULL, expires_at FROM {table} WHERE event_id = ? AND expires_at > ?",
    "started": "UPDATE {table}_inbox SET attempts = ? WHERE seq = ?",
    "reschedule": "UPDATE {table}_inbox_due SET due_at = ? WHERE webhook_id = ?",
    "unschedule": "DELETE FROM {table}_inbox_due WHERE webhook_id = ?",
    "drop": "DELETE FROM {table}_inbox WHERE seq = ?",
    "more": "SELECT 1 FROM {table}_inbox WHERE webhook_id = ? LIMIT 1",
    "failure": "UPDATE {table}_inbox SET retry_at = ?, error = ? WHERE seq = ?",
    "pending": "SELECT COUNT(*) FROM {table}_inbox",
    "failed": "SELECT event_id, webhook_id, attempts, error, retry_at FROM {table}_inbox "
    "WHERE error IS NOT NULL ORDER BY seq LIMIT ?",
}
"""Every inbox statement; ``{table}`` stands for the ledger's table name."""


@dataclass(frozen=True, slots=True)
class SQLiteLedgerAccess:
    """What :class:`SQLiteInbox` may use of its :class:`~upvest_verify.ledger.SQLiteLedger`.

    The ledger builds it for its inbox store in this package; not part of the public API.

    Attributes:
        owner: The ledger itself, named in the claims the inbox hands out.
        lock: The ledger's lock, held around every use of ``db``.
        db: The ledger's database: its connection, and its errors as ``LedgerUnavailable``.
        clock: The ledger's wall clock.
        lease: Seconds a lease lasts.
        retention: Seconds a completed id is remembered.
        table: The ledger's table; the inbox tables are named after it.
        claim_sql: The ledger's claim statement: (event id, token, lease end, now).
        complete_sql: The ledger's complete statement: (forget-at, event id, token, now).
        release_sql: The ledger's release statement: (event id, token, now).
    """

    owner: BaseLedger
    lock: threading.Lock
    db: Database
    clock: Callable[[], float]
    lease: float
    retention: float
    table: str
    claim_sql: str
    complete_sql: str
    release_sql: str


class SQLiteInbox(InboxStore):
    """The inbox of one :class:`SQLiteLedger`, on its connection and lock."""

    __slots__ = ("_ledger", "_ready", "_sql")

    def __init__(self, ledger: SQLiteLedgerAccess) -> None:
        self._ledger = ledger
        self._ready = False
        self._sql = {name: text.replace("{table}", ledger.table) for name, text in _SQL.items()}

    @contextlib.contextmanager
    def _using(self) -> Iterator[sqlite3.Connection]:
        """The ledger's connection under its lock, the inbox tables made; errors wrapped."""
        ledger = self._ledger
        with ledger.lock:
            try:
                conn = ledger.db.connection()
                if not self._ready:
                    for name in ("create_inbox", "index_inbox", "create_due", "index_due"):
                        conn.execute(self._sql[name])
                    self._ready = True
                yield conn
            except sqlite3.Error as e:
                raise ledger.db.unavailable(e) from e

    @staticmethod
    @contextlib.contextmanager
    def _transaction(conn: sqlite3.Connection) -> Iterator[None]:
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield
            conn.execute("COMMIT")
        finally:
            if conn.in_transaction:  # an error before or during the commit
                conn.execute("ROLLBACK")

    def put(self, rows: Sequence[Row]) -> int:
        sql, ledger = self._sql, self._ledger
        added = 0
        with self._using() as conn:
            conn.execute("PRAGMA synchronous = FULL")  # on disk before the endpoint answers
            try:
                with self._transaction(conn):
                    now = ledger.clock()
                    for event_id, webhook_id, raw in rows:
                        row = (event_id, webhook_id, raw, event_id, now)
                        if conn.execute(sql["put"], row).rowcount == 1:
                            conn.execute(sql["schedule"], (webhook_id, now))
                            added += 1
            finally:
                conn.execute("PRAGMA synchronous = NORMAL")
        return added

    def take(self) -> Taken | float | None:
        sql, ledger = self._sql, self._ledger
        token = secrets.token_hex(16)
        with self._using() as conn:
            first = conn.execute(sql["next_due"]).fetchone()[0]  # a read: no write lock
            if first is None:
                return None
            now = ledger.clock()
            if first > now:
                return float(first - now)
            with self._transaction(conn):
                return self._take_locked(conn, token)

    def _take_locked(self, conn: sqlite3.Connection, token: str) -> Taken | float | None:
        sql, ledger = self._sql, self._ledger
        now = ledger.clock()
        lease_end = now + ledger.lease
        for _ in range(SCAN_LIMIT):
            due = conn.execute(sql["first_due"], (now,)).fetchone()
            if due is None:
                first = conn.execute(sql["next_due"]).fetchone()[0]
                return None if first is None else max(float(first - now), 0.0)
            webhook_id: str = due[0]
            head = conn.execute(sql["head"], (webhook_id,)).fetchone()
            if head is None:
                conn.execute(sql["unschedule"], (webhook_id,))
                continue
            seq, event_id, raw, attempts = head
            # The ledger's own claim statement: the same lease as claim() takes.
            if conn.execute(ledger.claim_sql, (event_id, token, lease_end, now)).rowcount == 1:
                conn.execute(sql["started"], (attempts + 1, seq))
                conn.execute(sql["reschedule"], (lease_end, webhook_id))
                return Taken(
                    Claim(event_id, token, ledger.owner), webhook_id, raw, attempts + 1, seq
                )
            holder = conn.execute(sql["holder"], (event_id, now)).fetchone()
            if holder is not None and holder[0]:  # completed on another path: dequeue
                conn.execute(sql["drop"], (seq,))
                continue
            # Another path (process()) holds it: look again at its lease end, or sooner.
            until = now + HELD_RECHECK if holder is None else min(holder[1], now + HELD_RECHECK)
            conn.execute(sql["reschedule"], (until, webhook_id))
        return 0.0

    def finish(self, taken: Taken, retry_in: float | None, error: str | None) -> bool:
        sql, ledger = self._sql, self._ledger
        event_id, token, webhook_id = taken.claim.event_id, taken.claim.token, taken.webhook_id
        with self._using() as conn, self._transaction(conn):
            now = ledger.clock()
            if retry_in is None:
                done = (now + ledger.retention, event_id, token, now)
                if conn.execute(ledger.complete_sql, done).rowcount != 1:
                    return False
                conn.execute(sql["drop"], (taken.ref,))
                if conn.execute(sql["more"], (webhook_id,)).fetchone() is None:
                    conn.execute(sql["unschedule"], (webhook_id,))
                else:
                    conn.execute(sql["reschedule"], (now, webhook_id))
                return True
            if conn.execute(ledger.release_sql, (event_id, token, now)).rowcount != 1:
                return False
            if error is not None:
                conn.execute(sql["failure"], (now + retry_in, error, taken.ref))
            conn.execute(sql["reschedule"], (now + retry_in, webhook_id))
            return True

    def idle(self, seconds: float) -> None:
        time.sleep(min(seconds, POLL))

    async def aidle(self, seconds: float) -> None:
        await asyncio.sleep(min(seconds, POLL))

    def pending(self) -> int:
        with self._using() as conn:
            count: int = conn.execute(self._sql["pending"]).fetchone()[0]
            return count

    def failed(self, limit: int) -> list[FailedEvent]:
        with self._using() as conn:
            rows = conn.execute(self._sql["failed"], (max(limit, 0),)).fetchall()
            now = self._ledger.clock()
        return [
            FailedEvent(event_id, webhook_id, attempts, error, max(0.0, float(retry_at) - now))
            for event_id, webhook_id, attempts, error, retry_at in rows
        ]
