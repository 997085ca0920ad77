"""Opening the SQLite file a ledger or replay store lives in (private).

Both :class:`~upvest_verify.ledger.SQLiteLedger` and
:class:`~upvest_verify.ledger.SQLiteReplayStore` open their file the same way: one
autocommit connection, a busy timeout, WAL mode (switched once per file, even when
several processes open a new file together), ``synchronous = NORMAL``, then their
own ``CREATE`` statements. :class:`Database` holds that connection for them: opened on
first use, reopened after :meth:`Database.close`, its errors turned into
:class:`~upvest_verify.ledger.LedgerUnavailable`.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterable

from ._claim import LedgerUnavailable

__all__ = ["Database", "enable_wal", "open_database"]


def enable_wal(conn: sqlite3.Connection, timeout: float) -> None:
    """Put the database in WAL mode (once per file), waiting up to ``timeout`` seconds.

    Switching the journal mode needs an exclusive lock, and SQLite answers "database is
    locked" at once, without the busy handler, when several processes open a new file
    together; so the switch is retried, and skipped when another process already made it.
    """
    deadline = time.monotonic() + timeout
    while True:
        if conn.execute("PRAGMA journal_mode").fetchone()[0].lower() == "wal":
            return
        try:
            conn.execute("PRAGMA journal_mode = WAL")
        except sqlite3.OperationalError as e:
            if "locked" not in str(e) or time.monotonic() >= deadline:
                raise
            time.sleep(0.01)


def open_database(path: str, busy_timeout: float, schema: Iterable[str]) -> sqlite3.Connection:
    """One autocommit connection to ``path`` in WAL mode, with ``schema`` run on it.

    The connection may be used from any thread; its owner guards it with a lock.

    Raises:
        sqlite3.Error: The file cannot be opened or set up; nothing is left open.
    """
    conn = sqlite3.connect(
        path,
        timeout=busy_timeout,
        isolation_level=None,  # autocommit: each statement is its own transaction
        check_same_thread=False,  # guarded by the owner's lock
    )
    try:
        conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
        enable_wal(conn, busy_timeout)
        conn.execute("PRAGMA synchronous = NORMAL")
        for statement in schema:
            conn.execute(statement)
    except BaseException:
        conn.close()
        raise
    return conn


class Database:
    """The connection of one SQLite ledger or replay store, opened on first use.

    Not thread-safe by itself: its owner holds its own lock around every call.

    Args:
        path: The database file.
        busy_timeout: Seconds to wait for another process's write lock.
        schema: The owner's ``CREATE`` statements, run whenever the file is opened.
        label: What the owner is called in errors (``"SQLite ledger"``).
    """

    __slots__ = ("_busy_timeout", "_conn", "_label", "_path", "_schema")

    def __init__(self, path: str, busy_timeout: float, schema: Iterable[str], label: str) -> None:
        self._path = path
        self._busy_timeout = busy_timeout
        self._schema = tuple(schema)
        self._label = label
        self._conn: sqlite3.Connection | None = None

    def connection(self) -> sqlite3.Connection:
        """The open connection, opening the file (and running the schema) if needed.

        Raises:
            sqlite3.Error: The file cannot be opened or set up.
        """
        if self._conn is None:
            self._conn = open_database(self._path, self._busy_timeout, self._schema)
        return self._conn

    def run(self, sql: str, params: tuple[object, ...]) -> sqlite3.Cursor:
        """Execute one statement.

        Raises:
            LedgerUnavailable: SQLite failed; the message names the owner and the file.
        """
        try:
            return self.connection().execute(sql, params)
        except sqlite3.Error as e:
            raise self.unavailable(e) from e

    def unavailable(self, error: sqlite3.Error) -> LedgerUnavailable:
        """The error raised for a failure of this database."""
        return LedgerUnavailable(f"{self._label} {self._path!r}: {error}")

    def purge(self, sql: str, now: float, batch: int) -> int:
        """Run a ``DELETE ... LIMIT batch`` statement until it removes fewer rows; the total.

        Raises:
            LedgerUnavailable: SQLite failed.
        """
        total = 0
        while True:
            removed = self.run(sql, (now, batch)).rowcount
            total += removed
            if removed < batch:
                return total

    def close(self) -> None:
        """Close the connection, if open; the next call opens it again."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None
