"""The inbox of :class:`~upvest_verify.ledger.RedisLedger`: queues in Redis (7.0 or later).

Key layout, beside the ledger's ``<namespace>:event:<id>`` claim keys::

    <namespace>:inbox:item:<event id>      hash {raw, webhook, attempts, error}; no TTL,
                                           deleted when the event completes
    <namespace>:inbox:webhook:<webhook id> list of queued event ids, oldest first (the head
                                           is index 0); no TTL, gone when empty
    <namespace>:inbox:due                  sorted set: webhook id -> server time (ms) when its
                                           head may be taken next; no TTL
    <namespace>:inbox:failing              sorted set: event id -> server time (ms) of the
                                           next attempt, for events whose last attempt failed
    <namespace>:inbox:count                integer: events queued
    <namespace>:inbox:wake                 list of wake-up tokens for idle workers (BLPOP);
                                           at most 64, expires 60 s after the last enqueue

Queued events never expire: the inbox holds them until they complete. For them to
survive a Redis restart, run Redis with persistence (``appendonly yes``) and with
``maxmemory-policy noeviction``.

Round trips: ``enqueue`` is one ``EVALSHA`` per batch; a worker spends one ``EVALSHA``
to take an event (the script finds the webhook due first, looks at its head's claim
key and takes the lease with ``SET ... PX``, exactly as ``claim()`` does) and one to
complete it or schedule its retry. While a worker runs a head, the webhook's due time
is the lease end, so a dead worker's event is taken over when its lease ends. Idle
workers block in ``BLPOP`` on the wake list for at most the poll interval (keep the
client's ``socket_timeout`` above it). Due times use the server's clock (``TIME``), so
hosts need not agree on the time.

The scripts compute key names from the namespace, so the inbox needs a single Redis
server (with replicas if wanted), not Redis Cluster.

The ledger hands its inbox a :class:`RedisLedgerAccess`: its namespace, lease, retention
and its sync and async clients.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import redis

from ._claim import BaseLedger, Claim, LedgerUnavailable
from ._inbox_store import HELD_RECHECK, SCAN_LIMIT, FailedEvent, InboxStore, Row, Taken

if TYPE_CHECKING:
    import redis.asyncio

__all__ = ["RedisInbox", "RedisLedgerAccess"]

WAKE_MAX = 64
"""Wake-up tokens kept at most (one per new event, for as many idle workers)."""

WAKE_TTL_MS = 60_000
"""Milliseconds the wake list lives after the last enqueue."""

_NOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"""

PUT_SCRIPT = (
    _NOW
    + """
local ns, wake_max, wake_ttl = ARGV[1], tonumber(ARGV[2]), ARGV[3]
local added = 0
for i = 4, #ARGV, 3 do
    local id, webhook, raw = ARGV[i], ARGV[i + 1], ARGV[i + 2]
    local item = ns .. ':inbox:item:' .. id
    if redis.call('EXISTS', item) == 0 and redis.call('GET', ns .. ':event:' .. id) ~= 'done' then
        redis.call('HSET', item, 'raw', raw, 'webhook', webhook, 'attempts', 0)
        redis.call('RPUSH', ns .. ':inbox:webhook:' .. webhook, id)
        redis.call('ZADD', ns .. ':inbox:due', 'NX', now, webhook)
        added = added + 1
    end
end
if added > 0 then
    redis.call('INCRBY', ns .. ':inbox:count', added)
    local wake = ns .. ':inbox:wake'
    for _ = 1, math.min(added, wake_max) do
        redis.call('RPUSH', wake, '1')
    end
    redis.call('LTRIM', wake, -wake_max, -1)
    redis.call('PEXPIRE', wake, wake_ttl)
end
return added
"""
)

TAKE_SCRIPT = (
    _NOW
    + """
local ns, token = ARGV[1], ARGV[2]
local lease, recheck, limit = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local due = ns .. ':inbox:due'
for _ = 1, limit do
    local first = redis.call('ZRANGE', due, 0, 0, 'WITHSCORES')
    if #first == 0 then
        return {0, -1}
    end
    local webhook, at = first[1], tonumber(first[2])
    if at > now then
        return {0, math.ceil(at - now)}
    end
    local queue = ns .. ':inbox:webhook:' .. webhook
    local id = redis.call('LINDEX', queue, 0)
    if not id then
        redis.call('ZREM', due, webhook)
    else
        local key = ns .. ':event:' .. id
        local item = ns .. ':inbox:item:' .. id
        local state = redis.call('GET', key)
        local raw = redis.call('HGET', item, 'raw')
        if state == 'done' or not raw then
            -- completed on another path (or an orphan id): dequeue, look again
            redis.call('LPOP', queue)
            if redis.call('DEL', item) == 1 then
                redis.call('DECR', ns .. ':inbox:count')
            end
            redis.call('ZREM', ns .. ':inbox:failing', id)
        elseif state then
            -- another path holds it: look again at its lease end, or sooner
            local left = redis.call('PTTL', key)
            if left < 0 or left > recheck then
                left = recheck
            end
            redis.call('ZADD', due, now + left, webhook)
        else
            redis.call('SET', key, token, 'PX', lease)
            redis.call('ZADD', due, now + lease, webhook)
            return {1, id, raw, redis.call('HINCRBY', item, 'attempts', 1), webhook}
        end
    end
end
return {0, 0}
"""
)

DONE_SCRIPT = """
local ns, id, webhook, token, retention = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local key = ns .. ':event:' .. id
if redis.call('GET', key) ~= token then
    return 0
end
redis.call('SET', key, 'done', 'PX', retention)
local queue = ns .. ':inbox:webhook:' .. webhook
redis.call('LREM', queue, 1, id)
if redis.call('DEL', ns .. ':inbox:item:' .. id) == 1 then
    redis.call('DECR', ns .. ':inbox:count')
end
redis.call('ZREM', ns .. ':inbox:failing', id)
if redis.call('LLEN', queue) > 0 then
    local t = redis.call('TIME')
    local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
    redis.call('ZADD', ns .. ':inbox:due', now, webhook)
else
    redis.call('ZREM', ns .. ':inbox:due', webhook)
end
return 1
"""

RETRY_SCRIPT = """
local ns, id, webhook, token, delay, err = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6]
local key = ns .. ':event:' .. id
if redis.call('GET', key) ~= token then
    return 0
end
redis.call('DEL', key)
local t = redis.call('TIME')
local at = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + tonumber(delay)
if err ~= '' then
    redis.call('HSET', ns .. ':inbox:item:' .. id, 'error', err)
    redis.call('ZADD', ns .. ':inbox:failing', at, id)
end
redis.call('ZADD', ns .. ':inbox:due', at, webhook)
return 1
"""

_SCRIPTS = (PUT_SCRIPT, TAKE_SCRIPT, DONE_SCRIPT, RETRY_SCRIPT)


def _text(value: object) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _millis(seconds: float) -> int:
    return max(0, round(seconds * 1000))


@dataclass(frozen=True, slots=True)
class RedisLedgerAccess:
    """What :class:`RedisInbox` may use of its :class:`~upvest_verify.ledger.RedisLedger`.

    The ledger builds it for its inbox store in this package; not part of the public API.

    Attributes:
        owner: The ledger itself, named in the claims the inbox hands out.
        namespace: The prefix of every key.
        lease_ms: Milliseconds a lease lasts.
        retention_ms: Milliseconds a completed id is remembered.
        sync_client: The sync client; raises ``LedgerError`` when the ledger has none.
        async_client: The async client, made on first use for a ledger from a URL;
            raises ``LedgerError`` when the ledger has none.
    """

    owner: BaseLedger
    namespace: str
    lease_ms: int
    retention_ms: int
    sync_client: Callable[[], redis.Redis]
    async_client: Callable[[], redis.asyncio.Redis]


class RedisInbox(InboxStore):
    """The inbox of one :class:`RedisLedger`, on its clients."""

    __slots__ = ("_async_scripts", "_ledger", "_scripts")

    def __init__(self, ledger: RedisLedgerAccess) -> None:
        self._ledger = ledger
        self._scripts: tuple[Any, ...] | None = None
        self._async_scripts: tuple[Any, ...] | None = None

    def _key(self, name: str) -> str:
        return f"{self._ledger.namespace}:inbox:{name}"

    # -- arguments and replies, shared by the sync and async paths

    def _put_args(self, rows: Sequence[Row]) -> list[object]:
        args: list[object] = [self._ledger.namespace, WAKE_MAX, WAKE_TTL_MS]
        for row in rows:
            args.extend(row)
        return args

    def _take_args(self, token: str) -> list[object]:
        lease = self._ledger.lease_ms
        return [self._ledger.namespace, token, lease, _millis(HELD_RECHECK), SCAN_LIMIT]

    def _taken(self, reply: Any, token: str) -> Taken | float | None:
        if int(reply[0]) == 1:
            event_id, raw, attempts, webhook_id = reply[1:5]
            claim = Claim(_text(event_id), token, self._ledger.owner)
            return Taken(claim, _text(webhook_id), _text(raw), int(attempts))
        wait = int(reply[1])
        return None if wait < 0 else wait / 1000

    def _finish_args(self, taken: Taken, retry_in: float | None, error: str | None) -> list[object]:
        ns, claim = self._ledger.namespace, taken.claim
        head = [ns, claim.event_id, taken.webhook_id, claim.token]
        if retry_in is None:
            return [*head, self._ledger.retention_ms]
        return [*head, _millis(retry_in), error or ""]

    def _failures(self, now: Any, ids: list[Any], details: list[Any]) -> list[FailedEvent]:
        now_ms = int(now[0]) * 1000 + int(now[1]) // 1000
        failures = []
        for (event_id, at), (webhook_id, attempts, error) in zip(ids, details, strict=True):
            if webhook_id is None:
                continue  # completed between the two reads
            failures.append(
                FailedEvent(
                    _text(event_id),
                    _text(webhook_id),
                    int(attempts or 0),
                    _text(error or ""),
                    max(0.0, (float(at) - now_ms) / 1000),
                )
            )
        return failures

    # -- sync

    def _sync_scripts(self) -> tuple[Any, ...]:
        if self._scripts is None:
            client = self._ledger.sync_client()
            self._scripts = tuple(client.register_script(text) for text in _SCRIPTS)
        return self._scripts

    def put(self, rows: Sequence[Row]) -> int:
        put = self._sync_scripts()[0]
        try:
            return int(put(keys=[], args=self._put_args(rows)))
        except redis.RedisError as e:
            raise LedgerUnavailable(f"Redis ledger: {e}") from e

    def take(self) -> Taken | float | None:
        take = self._sync_scripts()[1]
        token = secrets.token_hex(16)
        try:
            reply = take(keys=[], args=self._take_args(token))
        except redis.RedisError as e:
            raise LedgerUnavailable(f"Redis ledger: {e}") from e
        return self._taken(reply, token)

    def finish(self, taken: Taken, retry_in: float | None, error: str | None) -> bool:
        script = self._sync_scripts()[2 if retry_in is None else 3]
        try:
            return int(script(keys=[], args=self._finish_args(taken, retry_in, error))) == 1
        except redis.RedisError as e:
            raise LedgerUnavailable(f"Redis ledger: {e}") from e

    def idle(self, seconds: float) -> None:
        try:
            self._ledger.sync_client().blpop([self._key("wake")], timeout=max(seconds, 0.01))
        except redis.RedisError as e:
            raise LedgerUnavailable(f"Redis ledger: {e}") from e

    def pending(self) -> int:
        try:
            return int(self._ledger.sync_client().get(self._key("count")) or 0)
        except redis.RedisError as e:
            raise LedgerUnavailable(f"Redis ledger: {e}") from e

    def failed(self, limit: int) -> list[FailedEvent]:
        if limit <= 0:
            return []
        client = self._ledger.sync_client()
        try:
            with client.pipeline(transaction=False) as pipe:
                pipe.time()
                pipe.zrange(self._key("failing"), 0, limit - 1, withscores=True)
                now, ids = pipe.execute()
            with client.pipeline(transaction=False) as pipe:
                for event_id, _ in ids:
                    pipe.hmget(self._key(f"item:{_text(event_id)}"), "webhook", "attempts", "error")
                details = pipe.execute()
        except redis.RedisError as e:
            raise LedgerUnavailable(f"Redis ledger: {e}") from e
        return self._failures(now, ids, details)

    # -- async

    def _aclient_scripts(self) -> tuple[Any, ...]:
        if self._async_scripts is None:
            client = self._ledger.async_client()
            self._async_scripts = tuple(client.register_script(text) for text in _SCRIPTS)
        return self._async_scripts

    async def aput(self, rows: Sequence[Row]) -> int:
        put = self._aclient_scripts()[0]
        try:
            return int(await put(keys=[], args=self._put_args(rows)))
        except redis.RedisError as e:
            raise LedgerUnavailable(f"Redis ledger: {e}") from e

    async def atake(self) -> Taken | float | None:
        take = self._aclient_scripts()[1]
        token = secrets.token_hex(16)
        try:
            reply = await take(keys=[], args=self._take_args(token))
        except redis.RedisError as e:
            raise LedgerUnavailable(f"Redis ledger: {e}") from e
        return self._taken(reply, token)

    async def afinish(self, taken: Taken, retry_in: float | None, error: str | None) -> bool:
        script = self._aclient_scripts()[2 if retry_in is None else 3]
        try:
            return int(await script(keys=[], args=self._finish_args(taken, retry_in, error))) == 1
        except redis.RedisError as e:
            raise LedgerUnavailable(f"Redis ledger: {e}") from e

    async def aidle(self, seconds: float) -> None:
        try:
            await self._ledger.async_client().blpop([self._key("wake")], timeout=max(seconds, 0.01))
        except redis.RedisError as e:
            raise LedgerUnavailable(f"Redis ledger: {e}") from e

    async def apending(self) -> int:
        try:
            return int(await self._ledger.async_client().get(self._key("count")) or 0)
        except redis.RedisError as e:
            raise LedgerUnavailable(f"Redis ledger: {e}") from e

    async def afailed(self, limit: int) -> list[FailedEvent]:
        if limit <= 0:
            return []
        client = self._ledger.async_client()
        try:
            async with client.pipeline(transaction=False) as pipe:
                pipe.time()
                pipe.zrange(self._key("failing"), 0, limit - 1, withscores=True)
                now, ids = await pipe.execute()
            async with client.pipeline(transaction=False) as pipe:
                for event_id, _ in ids:
                    pipe.hmget(self._key(f"item:{_text(event_id)}"), "webhook", "attempts", "error")
                details = await pipe.execute()
        except redis.RedisError as e:
            raise LedgerUnavailable(f"Redis ledger: {e}") from e
        return self._failures(now, ids, details)
