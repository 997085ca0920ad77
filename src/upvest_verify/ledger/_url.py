"""A ledger from a URL, for configuration files and the ``upvest-verify work`` command.

=====================================  ==============================================
``memory://``                          :class:`MemoryLedger` (this process only)
``sqlite:///events.sqlite3``           :class:`SQLiteLedger`, path relative to the
                                       working directory
``sqlite:////var/lib/app/ev.sqlite3``  the same with an absolute path (four slashes)
``sqlite:///ev.sqlite3?table=NAME``    another table name
``redis://host:6379/0``                :class:`RedisLedger` (also ``rediss://`` with
                                       TLS and ``unix:///path/redis.sock``)
=====================================  ==============================================

As with SQLAlchemy's URLs, everything after ``sqlite:///`` is the file path
(percent-decoded). A Redis URL goes to ``redis.Redis.from_url`` unchanged, so its
password and query options work as redis-py documents them.
"""

from __future__ import annotations

from urllib.parse import parse_qs, unquote, urlsplit

from ._claim import DEFAULT_LEASE, DEFAULT_RETENTION
from ._inbox import InboxLedger
from ._memory import MemoryLedger
from ._sqlite import SQLiteLedger

__all__ = ["URL_FORMS", "ledger_from_url"]

URL_FORMS = "memory://, sqlite:///PATH or redis://HOST:PORT/DB"
"""The URL forms, for error messages."""

_REDIS_SCHEMES = ("redis", "rediss", "unix")


def ledger_from_url(
    url: str,
    *,
    namespace: str = "upvest",
    lease: float = DEFAULT_LEASE,
    retention: float = DEFAULT_RETENTION,
) -> InboxLedger:
    """Build the ledger a URL names.

    Args:
        url: ``memory://``, ``sqlite:///PATH`` or ``redis://HOST:PORT/DB`` (see the
            module documentation).
        namespace: The Redis key prefix (ignored by the other backends).
        lease: Seconds a claim lasts unless completed or released.
        retention: Seconds a completed id is remembered.

    Returns:
        The ledger; SQLite and Redis connect on first use.

    Raises:
        ValueError: The URL is not one of these forms, or a duration is not positive.
        ImportError: A Redis URL without the ``redis`` extra installed.
    """
    if not isinstance(url, str):
        raise ValueError(f"a ledger URL must be a str, not {type(url).__name__}")
    scheme, sep, _ = url.partition("://")
    scheme = scheme.lower()
    if not sep or not scheme:
        raise ValueError(f"not a ledger URL (expected {URL_FORMS})")
    if scheme == "memory":
        if url.lower() != "memory://":
            raise ValueError("a memory ledger URL is just 'memory://'")
        return MemoryLedger(lease=lease, retention=retention)
    if scheme == "sqlite":
        path, table = _sqlite_parts(url)
        return SQLiteLedger(path, lease=lease, retention=retention, table=table)
    if scheme in _REDIS_SCHEMES:
        from ._redis import RedisLedger

        return RedisLedger.from_url(url, namespace=namespace, lease=lease, retention=retention)
    raise ValueError(f"unknown ledger URL scheme {scheme!r} (expected {URL_FORMS})")


def _sqlite_parts(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    if parts.netloc:
        raise ValueError(
            "an SQLite ledger URL has no host: write sqlite:///relative/path.sqlite3 "
            "or sqlite:////absolute/path.sqlite3"
        )
    path = unquote(parts.path[1:])  # drop the slash that ends "sqlite://"
    if not path:
        raise ValueError("an SQLite ledger URL needs a file path: sqlite:///PATH")
    if parts.fragment:
        raise ValueError("an SQLite ledger URL has no fragment ('#')")
    try:
        options = parse_qs(parts.query, keep_blank_values=True, strict_parsing=bool(parts.query))
    except ValueError as e:
        raise ValueError(f"an SQLite ledger URL has a malformed query: {e}") from e
    unknown = sorted(set(options) - {"table"})
    if unknown:
        raise ValueError(
            f"unknown SQLite ledger URL option(s): {', '.join(unknown)} (known: table)"
        )
    tables = options.get("table", ["upvest_events"])
    if len(tables) != 1:
        raise ValueError("give the SQLite ledger URL option 'table' once")
    return path, tables[0]
