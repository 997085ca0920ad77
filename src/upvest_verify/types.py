"""Protocols for the injection points of the verifier.

A :class:`~upvest_verify.Verifier` takes either a fixed
:class:`~upvest_verify.KeySet` or a *key provider* such as
:class:`~upvest_verify.jwks.JWKSCache`. A provider hands out immutable key-set
snapshots; the pure core verifies against one snapshot at a time and asks the
provider for a rate-limited refresh only when a ``keyid`` is unknown. A
:class:`~upvest_verify.jwks.JWKSCache` in turn gets its JWKS documents from a
*key source*.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    from ._keyset import KeySet
    from ._result import Event, VerifiedWebhook
    from .jwks import FetchResult
    from .ledger import Claim, ProcessReport

__all__ = [
    "AsyncKeyProvider",
    "AsyncKeySource",
    "AsyncLedger",
    "Clock",
    "KeyProvider",
    "KeySource",
    "Ledger",
    "ReplayStore",
]

Clock = Callable[[], float]
"""A wall clock in Unix seconds, like :func:`time.time`."""


@runtime_checkable
class KeyProvider(Protocol):
    """Protocol: a source of key-set snapshots for synchronous verification."""

    def current(self) -> KeySet:
        """Return the current key set.

        May fetch when nothing is cached or the cache expired.

        Raises:
            KeySetUnavailable: No usable key set can be had.
        """
        ...

    def refresh_for(self, kid: str) -> KeySet | None:
        """Refresh because ``kid`` is not in the current key set.

        Implementations rate-limit this: at most one refresh per cooldown.

        Returns:
            The new snapshot, or ``None`` when no refresh was allowed or it failed.
        """
        ...


@runtime_checkable
class AsyncKeyProvider(Protocol):
    """Protocol: a source of key-set snapshots for asynchronous verification."""

    async def acurrent(self) -> KeySet:
        """Return the current key set without blocking the event loop.

        Raises:
            KeySetUnavailable: No usable key set can be had.
        """
        ...

    async def arefresh_for(self, kid: str) -> KeySet | None:
        """Refresh because ``kid`` is unknown; rate-limited like :meth:`KeyProvider.refresh_for`.

        Returns:
            The new snapshot, or ``None`` when no refresh was allowed or it failed.
        """
        ...


@runtime_checkable
class KeySource(Protocol):
    """Protocol: where a :class:`~upvest_verify.jwks.JWKSCache` gets the JWKS from (blocking).

    ``fetch`` may raise any exception (``OSError`` for transport and HTTP errors,
    :class:`~upvest_verify.errors.JWKSError` for unusable content, by convention);
    the cache treats every exception as a failed fetch and keeps its last good keys.
    """

    def fetch(self) -> FetchResult:
        """Fetch the JWKS document, blocking the calling thread.

        Returns:
            The document and its cache lifetime.
        """
        ...


@runtime_checkable
class AsyncKeySource(KeySource, Protocol):
    """Protocol: a :class:`KeySource` that can also fetch without blocking an event loop.

    The cache's async methods use ``afetch`` when the source has it, and otherwise
    run ``fetch`` in a worker thread.
    """

    async def afetch(self) -> FetchResult:
        """Fetch the JWKS document without blocking the event loop.

        Returns:
            The document and its cache lifetime.
        """
        ...


@runtime_checkable
class Ledger(Protocol):
    """Protocol: an event ledger that lets each event be handled once (blocking).

    Implemented by :class:`~upvest_verify.ledger.MemoryLedger`,
    :class:`~upvest_verify.ledger.SQLiteLedger` and
    :class:`~upvest_verify.ledger.RedisLedger`.
    """

    def claim(self, event_id: str) -> Claim | None:
        """Lease ``event_id`` to this worker.

        Returns:
            The claim, or ``None`` when the event is done or another worker holds it.
        """
        ...

    def process(self, events: Iterable[Event], handle: Callable[[Event], object]) -> ProcessReport:
        """Claim, handle and complete each event in order; release it if ``handle`` raises."""
        ...


@runtime_checkable
class AsyncLedger(Protocol):
    """Protocol: the event ledger's async twin, which never blocks the event loop."""

    async def aclaim(self, event_id: str) -> Claim | None:
        """Lease ``event_id`` to this worker, like :meth:`Ledger.claim`."""
        ...

    async def aprocess(
        self, events: Iterable[Event], handle: Callable[[Event], Awaitable[object]]
    ) -> ProcessReport:
        """Like :meth:`Ledger.process`, with an async handler."""
        ...


@runtime_checkable
class ReplayStore(Protocol):
    """Protocol: remembers handled signatures so that a replay within its window is refused.

    Implemented by :class:`~upvest_verify.ledger.MemoryReplayStore`,
    :class:`~upvest_verify.ledger.SQLiteReplayStore` and
    :class:`~upvest_verify.ledger.RedisReplayStore` (subclasses of
    :class:`~upvest_verify.ledger.BaseReplayStore`). A store that cannot answer
    raises (by convention :class:`~upvest_verify.ledger.LedgerUnavailable`); the
    verifier never treats a failure as "not seen".
    """

    def seen(self, webhook: VerifiedWebhook) -> bool:
        """Whether the signature that verified ``webhook`` is remembered."""
        ...

    def record(self, webhook: VerifiedWebhook, *, until: float) -> None:
        """Remember that signature until ``until`` (Unix seconds)."""
        ...

    async def aseen(self, webhook: VerifiedWebhook) -> bool:
        """:meth:`seen` without blocking the event loop."""
        ...

    async def arecord(self, webhook: VerifiedWebhook, *, until: float) -> None:
        """:meth:`record` without blocking the event loop."""
        ...
