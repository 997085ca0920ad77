"""A ledger in Redis (7.0 or later), shared by any number of processes and hosts.

Key layout, one key per event::

    <namespace>:event:<event id>
        "<owner token>"  while claimed; expires after the lease (PX)
        "done"           once completed; expires after the retention (PX)

A missing key means the event is free: never seen, released, its lease ran out,
or its completion is older than the retention. Redis expires the keys itself, so
nothing grows without bound and no purge is needed.

Round trips: a claim is one ``SET key token NX PX <lease> GET`` (the ``GET``
answers whether a refused claim found the event done or held); complete and
release are one ``EVALSHA`` each of a small Lua script that compares the owner
token before it changes the key (the first use of a script on a server also
loads it).

The inbox (``enqueue``/``work``) keeps its queues under ``<namespace>:inbox:``; see
:mod:`upvest_verify.ledger._inbox_redis` for its keys and round trips. It uses the
ledger through the :class:`~upvest_verify.ledger._inbox_redis.RedisLedgerAccess` the
ledger gives it.

Needs the ``redis`` extra: ``pip install 'upvest-verify[redis]'``.
"""

from __future__ import annotations

import secrets
from typing import Any

try:
    import redis
    import redis.asyncio
except ImportError as e:  # pragma: no cover - exercised only without the extra
    raise ImportError("RedisLedger needs redis-py: pip install 'upvest-verify[redis]'") from e

from ._claim import (
    DEFAULT_LEASE,
    DEFAULT_RETENTION,
    Acquired,
    Claim,
    LedgerError,
    LedgerUnavailable,
    check_duration,
    check_event_id,
)
from ._inbox import InboxLedger
from ._inbox_redis import RedisInbox, RedisLedgerAccess
from ._inbox_store import InboxStore

__all__ = ["RedisLedger"]

DONE = "done"
"""The value of a completed event's key (owner tokens are 32 hex digits)."""

COMPLETE_SCRIPT = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
    redis.call('SET', KEYS[1], 'done', 'PX', ARGV[2])
    return 1
end
return 0
"""

RELEASE_SCRIPT = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
    redis.call('DEL', KEYS[1])
    return 1
end
return 0
"""


def _text(value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def _millis(seconds: float) -> int:
    return max(1, round(seconds * 1000))


class RedisLedger(InboxLedger):
    """A ledger stored in Redis.

    Args:
        client: A ``redis.Redis`` client for :meth:`claim` and :meth:`process`.
        async_client: A ``redis.asyncio.Redis`` client for :meth:`aclaim` and
            :meth:`aprocess`; at least one of the two is needed.
        namespace: The prefix of every key (``<namespace>:event:<id>``).
        lease: Seconds a claim lasts unless completed or released.
        retention: Seconds a completed id is remembered.
    """

    __slots__ = (
        "_async_client",
        "_async_scripts",
        "_client",
        "_inbox_store",
        "_lease_ms",
        "_namespace",
        "_options",
        "_retention_ms",
        "_scripts",
        "_url",
    )

    def __init__(
        self,
        client: redis.Redis | None = None,
        *,
        async_client: redis.asyncio.Redis | None = None,
        namespace: str = "upvest",
        lease: float = DEFAULT_LEASE,
        retention: float = DEFAULT_RETENTION,
    ) -> None:
        if client is None and async_client is None:
            raise ValueError("RedisLedger needs a client, an async_client, or from_url()")
        if not namespace or not namespace.isprintable():
            raise ValueError("namespace must be a non-empty printable string")
        self._client = client
        self._async_client = async_client
        self._namespace = namespace
        self._lease_ms = _millis(check_duration("lease", lease))
        self._retention_ms = _millis(check_duration("retention", retention))
        self._scripts: tuple[Any, Any] | None = None
        self._async_scripts: tuple[Any, Any] | None = None
        self._url: str | None = None
        self._options: dict[str, Any] = {}
        self._inbox_store = RedisInbox(
            RedisLedgerAccess(
                owner=self,
                namespace=self._namespace,
                lease_ms=self._lease_ms,
                retention_ms=self._retention_ms,
                sync_client=self._sync,
                async_client=self._async,
            )
        )

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        namespace: str = "upvest",
        lease: float = DEFAULT_LEASE,
        retention: float = DEFAULT_RETENTION,
        **options: Any,
    ) -> RedisLedger:
        """A ledger on the Redis server at ``url`` (``redis://host:port/db``).

        The sync client is made now; the async client on first async use, in the
        running event loop (use one event loop per ledger). ``options`` go to both
        clients' ``from_url``.
        """
        ledger = cls(
            redis.Redis.from_url(url, **options),
            namespace=namespace,
            lease=lease,
            retention=retention,
        )
        ledger._url = url
        ledger._options = options
        return ledger

    def __repr__(self) -> str:
        return f"RedisLedger(namespace={self._namespace!r}, lease={self._lease_ms / 1000})"

    @property
    def retention(self) -> float:
        """Seconds a completed id is remembered (the TTL of its ``done`` key)."""
        return self._retention_ms / 1000

    def _inbox(self) -> InboxStore:
        return self._inbox_store

    def key(self, event_id: str) -> str:
        """The Redis key of ``event_id``: ``<namespace>:event:<event id>``."""
        return f"{self._namespace}:event:{check_event_id(event_id)}"

    def close(self) -> None:
        """Close the sync client's connections."""
        if self._client is not None:
            self._client.close()

    async def aclose(self) -> None:
        """Close the async client's connections (call it in the loop that used them)."""
        if self._async_client is not None:
            await self._async_client.aclose()

    def purge(self) -> int:
        """Nothing to do: Redis expires completed keys itself. Returns 0."""
        return 0

    # -- sync

    def _sync(self) -> redis.Redis:
        if self._client is None:
            raise LedgerError("this RedisLedger has no sync client; use aclaim()/aprocess()")
        return self._client

    def acquire(self, event_id: str) -> Acquired:
        key = self.key(event_id)
        token = secrets.token_hex(16)
        try:
            previous = self._sync().set(key, token, nx=True, px=self._lease_ms, get=True)
        except redis.RedisError as e:
            raise LedgerUnavailable(f"Redis ledger: {e}") from e
        return self._outcome(event_id, token, previous)

    def settle(self, event_id: str, token: str, *, done: bool) -> bool:
        client = self._sync()
        if self._scripts is None:
            self._scripts = (
                client.register_script(COMPLETE_SCRIPT),
                client.register_script(RELEASE_SCRIPT),
            )
        complete, release = self._scripts
        try:
            if done:
                changed = complete(keys=[self.key(event_id)], args=[token, self._retention_ms])
            else:
                changed = release(keys=[self.key(event_id)], args=[token])
        except redis.RedisError as e:
            raise LedgerUnavailable(f"Redis ledger: {e}") from e
        return int(changed) == 1

    # -- async

    def _async(self) -> redis.asyncio.Redis:
        if self._async_client is None:
            if self._url is None:
                raise LedgerError("this RedisLedger has no async client; use claim()/process()")
            self._async_client = redis.asyncio.Redis.from_url(self._url, **self._options)
        return self._async_client

    async def aacquire(self, event_id: str) -> Acquired:
        key = self.key(event_id)
        token = secrets.token_hex(16)
        try:
            previous = await self._async().set(key, token, nx=True, px=self._lease_ms, get=True)
        except redis.RedisError as e:
            raise LedgerUnavailable(f"Redis ledger: {e}") from e
        return self._outcome(event_id, token, previous)

    async def asettle(self, event_id: str, token: str, *, done: bool) -> bool:
        client = self._async()
        if self._async_scripts is None:
            self._async_scripts = (
                client.register_script(COMPLETE_SCRIPT),
                client.register_script(RELEASE_SCRIPT),
            )
        complete, release = self._async_scripts
        try:
            if done:
                changed = await complete(
                    keys=[self.key(event_id)], args=[token, self._retention_ms]
                )
            else:
                changed = await release(keys=[self.key(event_id)], args=[token])
        except redis.RedisError as e:
            raise LedgerUnavailable(f"Redis ledger: {e}") from e
        return int(changed) == 1

    def _outcome(self, event_id: str, token: str, previous: object) -> Acquired:
        value = _text(previous)
        if value is None:
            return Claim(event_id, token, self)
        return "done" if value == DONE else "held"
