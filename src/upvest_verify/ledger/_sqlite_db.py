"""Opening the SQLite file a ledger or replay store lives in (private).

Both :class:`~upvest_verify.ledger.SQLiteLedger` and
:class:`~upvest_verify.ledger.SQLiteReplayStore` open their file the same way: one
autocommit connection, a busy timeout, WAL mode (switched once per file, even when
several processes open a new file together), ``synchronous = NORMAL``, then their
own ``CREATE`` statements.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterable

__all__ = ["enable_wal", "open_database"]


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
