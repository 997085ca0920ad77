"""ledger_from_url: memory://, sqlite:///PATH and redis:// URLs, and clear refusals."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from ledger_support import make_events

from upvest_verify.ledger import MemoryLedger, SQLiteLedger, ledger_from_url


def test_memory_url() -> None:
    """memory:// builds a MemoryLedger with the given lease and retention."""
    ledger = ledger_from_url("memory://", lease=5, retention=60)
    assert isinstance(ledger, MemoryLedger)
    assert ledger.retention == 60
    assert repr(ledger) == "MemoryLedger(lease=5.0, retention=60.0)"


def test_sqlite_url_with_an_absolute_path(tmp_path: Path) -> None:
    """sqlite:/// followed by an absolute path (four slashes in all) opens that file."""
    path = tmp_path / "events.sqlite3"
    ledger = ledger_from_url(f"sqlite:///{path}", lease=7, retention=70)
    assert isinstance(ledger, SQLiteLedger)
    assert ledger.path == str(path)
    assert ledger.retention == 70
    assert ledger.enqueue(make_events(2)) == 2
    ledger.close()
    assert path.exists()


def test_sqlite_url_with_a_relative_path_and_a_table(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """sqlite:///name is relative to the working directory; ?table= names the table."""
    monkeypatch.chdir(tmp_path)
    ledger = ledger_from_url("sqlite:///sub%20dir.sqlite3?table=my_events")
    assert isinstance(ledger, SQLiteLedger)
    assert ledger.path == "sub dir.sqlite3"
    claim = ledger.claim("evt")
    assert claim is not None
    claim.complete()
    ledger.close()
    with sqlite3.connect(tmp_path / "sub dir.sqlite3") as conn:
        assert conn.execute("SELECT event_id FROM my_events").fetchall() == [("evt",)]


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("", "not a ledger URL"),
        ("events.sqlite3", "not a ledger URL"),
        ("ftp://host/x", "unknown ledger URL scheme 'ftp'"),
        ("memory://somewhere", "just 'memory://'"),
        ("sqlite://host/events.sqlite3", "no host"),
        ("sqlite:///", "needs a file path"),
        ("sqlite:///e.sqlite3?timeout=3", "unknown SQLite ledger URL option"),
        ("sqlite:///e.sqlite3?table=a&table=b", "'table' once"),
        ("sqlite:///e.sqlite3?table=x;drop", "identifier"),
        ("sqlite:///e.sqlite3#frag", "fragment"),
    ],
)
def test_bad_urls_are_refused(url: str, message: str) -> None:
    """A URL that names no ledger raises ValueError saying what is wrong."""
    with pytest.raises(ValueError, match=message):
        ledger_from_url(url)


def test_bad_durations_are_refused() -> None:
    """The lease and retention are checked as the constructors check them."""
    with pytest.raises(ValueError, match="lease"):
        ledger_from_url("memory://", lease=0)
    with pytest.raises(ValueError, match="retention"):
        ledger_from_url("sqlite:///x.sqlite3", retention=-1)


def test_redis_url(redis_url: str, namespace: str) -> None:
    """redis:// builds a RedisLedger with the namespace, lease and retention given."""
    from upvest_verify.ledger import RedisLedger

    ledger = ledger_from_url(redis_url, namespace=namespace, lease=3, retention=30)
    assert isinstance(ledger, RedisLedger)
    assert ledger.retention == 30
    assert ledger.key("evt") == f"{namespace}:event:evt"
    assert repr(ledger) == f"RedisLedger(namespace={namespace!r}, lease=3.0)"
    assert ledger.enqueue(make_events(1)) == 1
    ledger.close()
