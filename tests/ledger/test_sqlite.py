"""SQLiteLedger: one file shared by processes, WAL, purge, async off the loop."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from pathlib import Path

import pytest
from ledger_support import (
    Target,
    check_each_event_exactly_once,
    check_takeover_after_a_crash,
    make_events,
)

from upvest_verify.ledger import Acquired, LedgerUnavailable, SQLiteLedger
from upvest_verify.ledger._sqlite_db import enable_wal
from upvest_verify.testing import ManualClock as FakeClock


def rows(path: Path) -> list[tuple[str, str | None, float]]:
    with sqlite3.connect(path) as conn:
        return list(conn.execute("SELECT event_id, token, expires_at FROM upvest_events"))


def test_file_and_table_are_created_on_first_use(tmp_path: Path) -> None:
    path = tmp_path / "sub-free.sqlite3"
    ledger = SQLiteLedger(path)
    assert not path.exists()
    claim = ledger.claim("evt")
    assert claim is not None
    assert path.exists()
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
    assert tables == ["upvest_events"]
    ledger.close()


def test_rows_hold_token_then_done(tmp_path: Path) -> None:
    clock = FakeClock(1_700_000_000)
    path = tmp_path / "l.sqlite3"
    ledger = SQLiteLedger(path, lease=30, retention=1000, clock=clock)
    claim = ledger.claim("evt")
    assert claim is not None
    assert rows(path) == [("evt", claim.token, clock.now + 30)]
    claim.complete()
    assert rows(path) == [("evt", None, clock.now + 1000)]
    ledger.close()


def test_purge_deletes_old_completed_rows_in_batches(tmp_path: Path) -> None:
    clock = FakeClock(1_700_000_000)
    path = tmp_path / "l.sqlite3"
    ledger = SQLiteLedger(path, lease=1000, retention=100, purge_interval=50, clock=clock)
    for i in range(2500):
        claim = ledger.claim(f"evt-{i}")
        assert claim is not None
        claim.complete()
    held = ledger.claim("held")  # a live lease is never purged
    assert held is not None
    clock.now += 99
    assert ledger.purge() == 0
    clock.now += 1
    assert ledger.purge() == 2500  # more than one batch of 1000
    assert [r[0] for r in rows(path)] == ["held"]
    ledger.close()


def test_claims_purge_automatically_after_the_interval(tmp_path: Path) -> None:
    clock = FakeClock(1_700_000_000)
    path = tmp_path / "l.sqlite3"
    ledger = SQLiteLedger(path, retention=10, purge_interval=60, clock=clock)
    for i in range(3):
        claim = ledger.claim(f"old-{i}")
        assert claim is not None
        claim.complete()
    clock.now += 30
    assert ledger.claim("a") is not None  # retention passed, interval not yet
    assert len(rows(path)) == 4
    clock.now += 31
    assert ledger.claim("b") is not None
    assert [r[0] for r in rows(path)] == ["b"]  # "a"'s 30 s lease ran out too
    ledger.close()


def test_bad_table_name_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="identifier"):
        SQLiteLedger(tmp_path / "l.sqlite3", table="events; DROP TABLE x")


def test_unusable_file_raises_ledger_unavailable(tmp_path: Path) -> None:
    ledger = SQLiteLedger(tmp_path / "missing-dir" / "l.sqlite3")
    with pytest.raises(LedgerUnavailable):
        ledger.claim("evt")


def test_claims_and_the_inbox_name_an_unusable_file_alike(tmp_path: Path) -> None:
    path = tmp_path / "missing-dir" / "l.sqlite3"
    ledger = SQLiteLedger(path)
    prefix = f"SQLite ledger {str(path)!r}: unable to open database file"
    steps = {
        "claim": lambda: ledger.claim("evt"),
        "enqueue": lambda: ledger.enqueue(make_events(1)),
        "pending": ledger.pending,
        "work": lambda: ledger.work(print, idle_timeout=0),
    }
    for step, call in steps.items():
        with pytest.raises(LedgerUnavailable) as caught:
            call()
        assert str(caught.value) == prefix, step
        assert isinstance(caught.value.__cause__, sqlite3.Error), step


def test_async_runs_sqlite_off_the_event_loop(tmp_path: Path) -> None:
    threads: set[int] = set()

    class Recording(SQLiteLedger):
        def acquire(self, event_id: str) -> Acquired:
            threads.add(threading.get_ident())
            return super().acquire(event_id)

        def settle(self, event_id: str, token: str, *, done: bool) -> bool:
            threads.add(threading.get_ident())
            return super().settle(event_id, token, done=done)

    ledger = Recording(tmp_path / "l.sqlite3")

    async def main() -> int:
        claim = await ledger.aclaim("evt")
        assert claim is not None
        await claim.acomplete()
        assert await ledger.aacquire("evt") == "done"
        await ledger.aclose()
        return threading.get_ident()

    loop_thread = asyncio.run(main())
    assert threads
    assert loop_thread not in threads


def test_four_processes_handle_each_event_exactly_once(tmp_path: Path) -> None:
    check_each_event_exactly_once(Target("sqlite", str(tmp_path / "shared.sqlite3")))


def test_a_dead_workers_event_is_taken_over_after_the_lease(tmp_path: Path) -> None:
    check_takeover_after_a_crash(Target("sqlite", str(tmp_path / "shared.sqlite3"), lease=0.6))


class _Rows:
    def __init__(self, *rows: tuple[str]) -> None:
        self._rows = list(rows)

    def fetchone(self) -> tuple[str]:
        return self._rows[0]


class _BusySwitch:
    """A connection whose switch to WAL is refused as locked a few times (another process
    is switching the same new file), as SQLite does without calling its busy handler."""

    def __init__(self, refusals: int) -> None:
        self.refusals = refusals
        self.mode = "delete"
        self.switches = 0

    def execute(self, sql: str) -> _Rows:
        if sql == "PRAGMA journal_mode":
            return _Rows((self.mode,))
        self.switches += 1
        if self.refusals:
            self.refusals -= 1
            raise sqlite3.OperationalError("database is locked")
        self.mode = "wal"
        return _Rows(("wal",))


def test_switching_a_new_file_to_wal_retries_while_another_process_switches_it() -> None:
    """Several processes opening one new file: "locked" on the switch is retried, not raised."""
    conn = _BusySwitch(refusals=3)
    enable_wal(conn, timeout=5)  # type: ignore[arg-type]
    assert (conn.mode, conn.switches) == ("wal", 4)
    stubborn = _BusySwitch(refusals=10**6)
    with pytest.raises(sqlite3.OperationalError, match="locked"):
        enable_wal(stubborn, timeout=0.05)  # type: ignore[arg-type]
