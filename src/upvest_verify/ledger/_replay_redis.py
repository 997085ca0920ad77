"""A replay store in Redis, shared by any number of processes and hosts.

Key layout, one key per remembered signature::

    <namespace>:replay:<replay key>   "1", expiring when the signature is forgotten (PX)

``<replay key>`` is :func:`~upvest_verify.ledger.replay_key` (64 hex digits). Checking
is one ``EXISTS``. Recording is one round trip, a ``MULTI``/``EXEC`` transaction of
``SET key 1 NX PX <ms>`` (a new key) and ``PEXPIRE key <ms> GT`` (an existing key
lives on if that is later), so a signature recorded twice keeps the later expiry,
as in the other stores (``GT`` needs Redis 7.0 or later). Redis expires the keys
itself, so nothing grows beyond one window of signatures and no purge is needed.
The time left is computed with the store's ``clock`` (use the verifier's) and handed
to Redis as a duration, so the server's clock does not matter.

Needs the ``redis`` extra: ``pip install 'upvest-verify[redis]'``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

try:
    import redis
    import redis.asyncio
except ImportError as e:  # pragma: no cover - exercised only without the extra
    raise ImportError("RedisReplayStore needs redis-py: pip install 'upvest-verify[redis]'") from e

from ._claim import LedgerError, LedgerUnavailable
from ._replay import BaseReplayStore

__all__ = ["RedisReplayStore"]


class RedisReplayStore(BaseReplayStore):
    """A replay store in Redis.

    Args:
        client: A ``redis.Redis`` client for :meth:`seen` and :meth:`record`.
        async_client: A ``redis.asyncio.Redis`` client for :meth:`aseen` and
            :meth:`arecord`; at least one of the two is needed.
        namespace: The prefix of every key (``<namespace>:replay:<key>``).
        clock: Wall-clock Unix seconds; use the verifier's clock.
    """

    __slots__ = ("_async_client", "_client", "_clock", "_namespace", "_options", "_url")

    def __init__(
        self,
        client: redis.Redis | None = None,
        *,
        async_client: redis.asyncio.Redis | None = None,
        namespace: str = "upvest",
        clock: Callable[[], float] = time.time,
    ) -> None:
        if client is None and async_client is None:
            raise ValueError("RedisReplayStore needs a client, an async_client, or from_url()")
        if not isinstance(namespace, str) or not namespace or not namespace.isprintable():
            raise ValueError("namespace must be a non-empty printable string")
        self._client = client
        self._async_client = async_client
        self._namespace = namespace
        self._clock = clock
        self._url: str | None = None
        self._options: dict[str, Any] = {}

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        namespace: str = "upvest",
        clock: Callable[[], float] = time.time,
        **options: Any,
    ) -> RedisReplayStore:
        """A replay store on the Redis server at ``url`` (``redis://host:port/db``).

        The sync client is made now; the async client on first async use, in the
        running event loop (use one event loop per store). ``options`` go to both
        clients' ``from_url``.
        """
        store = cls(redis.Redis.from_url(url, **options), namespace=namespace, clock=clock)
        store._url = url
        store._options = options
        return store

    def __repr__(self) -> str:
        return f"RedisReplayStore(namespace={self._namespace!r})"

    def redis_key(self, key: str) -> str:
        """The Redis key of a replay key: ``<namespace>:replay:<key>``."""
        return f"{self._namespace}:replay:{key}"

    def close(self) -> None:
        """Close the sync client's connections."""
        if self._client is not None:
            self._client.close()

    async def aclose(self) -> None:
        """Close the async client's connections (call it in the loop that used them)."""
        if self._async_client is not None:
            await self._async_client.aclose()

    def _ttl_ms(self, until: float) -> int:
        # Milliseconds left, rounded up so that the key outlives ``until``; 0: nothing to keep.
        return max(0, math.ceil((until - self._clock()) * 1000))

    # -- sync

    def _sync(self) -> redis.Redis:
        if self._client is None:
            raise LedgerError("this RedisReplayStore has no sync client; use aseen()/arecord()")
        return self._client

    def seen_key(self, key: str) -> bool:
        try:
            return int(self._sync().exists(self.redis_key(key))) > 0
        except redis.RedisError as e:
            raise LedgerUnavailable(f"Redis replay store: {e}") from e

    def record_key(self, key: str, until: float) -> None:
        ttl = self._ttl_ms(until)
        if ttl <= 0:
            return
        name = self.redis_key(key)
        try:
            with self._sync().pipeline(transaction=True) as pipe:
                pipe.set(name, "1", nx=True, px=ttl)
                pipe.pexpire(name, ttl, gt=True)
                pipe.execute()
        except redis.RedisError as e:
            raise LedgerUnavailable(f"Redis replay store: {e}") from e

    # -- async

    def _async(self) -> redis.asyncio.Redis:
        if self._async_client is None:
            if self._url is None:
                raise LedgerError("this RedisReplayStore has no async client; use seen()/record()")
            self._async_client = redis.asyncio.Redis.from_url(self._url, **self._options)
        return self._async_client

    async def aseen_key(self, key: str) -> bool:
        try:
            return int(await self._async().exists(self.redis_key(key))) > 0
        except redis.RedisError as e:
            raise LedgerUnavailable(f"Redis replay store: {e}") from e

    async def arecord_key(self, key: str, until: float) -> None:
        ttl = self._ttl_ms(until)
        if ttl <= 0:
            return
        name = self.redis_key(key)
        try:
            async with self._async().pipeline(transaction=True) as pipe:
                pipe.set(name, "1", nx=True, px=ttl)
                pipe.pexpire(name, ttl, gt=True)
                await pipe.execute()
        except redis.RedisError as e:
            raise LedgerUnavailable(f"Redis replay store: {e}") from e
