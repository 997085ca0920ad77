"""What the cache shares between threads and asyncio tasks of any event loop.

* :class:`Flight`, the one fetch in flight: a :class:`concurrent.futures.Future`,
  not an asyncio primitive, so threads block on it and tasks of any loop await it
  (K7). The future is marked RUNNING at once: a waiter that is cancelled or times
  out never cancels the fetch the others share.
* :func:`stop_worker`, which stops the background refresher, a thread or a task
  on any loop, from any thread.
* :class:`NegativeCache`, the unknown kids a refresh did not bring in, read
  without a lock and bounded in size.
* :class:`CacheStats`, counters with thread-safe increments, mirrored to
  OpenTelemetry instruments when ``opentelemetry-api`` is installed (:mod:`upvest_verify._metrics`).
* :func:`reset_after_fork`, one at-fork hook for every cache (F15).
* :func:`fetch_ended` (a fetch's log line and metrics) and :class:`RefusalLog`, the
  cache's log lines.

No policy lives here. ``asyncio`` is imported only by the async paths.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import logging
import os
import sys
import threading
import weakref
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, TypeVar, cast

from upvest_verify._metrics import cache_metrics

if TYPE_CHECKING:
    import asyncio

    from opentelemetry.metrics import MeterProvider

    from upvest_verify._keyset import KeySet

__all__ = [
    "CacheStats",
    "Flight",
    "NegativeCache",
    "RefusalLog",
    "fetch_ended",
    "log_outcome",
    "reset_after_fork",
    "running_loop",
    "stop_worker",
]

logger = logging.getLogger("upvest_verify")

NEGATIVE_CACHE_SIZE = 1024
"""Most unknown kids remembered; past it the negative cache starts over (H8)."""

_T = TypeVar("_T")

# Objects to re-initialise in a forked child (F15), each with its reset function;
# weak keys, so a cache that is gone is forgotten. One at-fork hook for all.
_AFTER_FORK: weakref.WeakKeyDictionary[Any, Callable[[Any], None]] = weakref.WeakKeyDictionary()


def reset_after_fork(obj: _T, reset: Callable[[_T], None]) -> None:
    """Call ``reset(obj)`` in every child forked from now on, while ``obj`` lives.

    Args:
        obj: The object (held weakly).
        reset: Re-creates what a forked child cannot inherit (locks, threads, tasks).
    """
    _AFTER_FORK[obj] = reset


def _after_fork_in_child() -> None:
    for obj, reset in list(_AFTER_FORK.items()):
        reset(obj)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def running_loop() -> asyncio.AbstractEventLoop | None:
    """The event loop running in this thread, if any.

    Returns:
        The loop, or ``None`` (also when asyncio was never imported: then no loop runs).
    """
    aio = sys.modules.get("asyncio")
    if aio is None:
        return None
    try:
        return cast("asyncio.AbstractEventLoop", aio.get_running_loop())
    except RuntimeError:
        return None


class CacheStats:
    """Counters of a :class:`~upvest_verify.jwks.JWKSCache` (thread-safe increments).

    Attributes:
        fetches: Fetch attempts started.
        failures: Fetch attempts that failed (transport, HTTP status, garbage,
            oversized or no usable key).
        stale_serves: Key sets handed out after their TTL (during a refresh or an
            outage, up to ``max_stale``).
        unknown_kid_refusals: Refresh-on-miss requests refused by the cooldown or the
            negative cache.
        kid_refreshes: Fetch attempts caused by an unknown kid (counted in ``fetches``
            too); at most one per ``refresh_cooldown``.

    Args:
        meter_provider: The OpenTelemetry meter provider to mirror the counters to
            (``upvest_verify.jwks.*`` instruments), ``None`` for the global one; used
            only when ``opentelemetry-api`` is installed.
    """

    __slots__ = (
        "_lock",
        "_metrics",
        "failures",
        "fetches",
        "kid_refreshes",
        "stale_serves",
        "unknown_kid_refusals",
    )

    def __init__(self, *, meter_provider: MeterProvider | None = None) -> None:
        self._lock = threading.Lock()
        self._metrics = cache_metrics(meter_provider)
        self.fetches = 0
        self.failures = 0
        self.stale_serves = 0
        self.unknown_kid_refusals = 0
        self.kid_refreshes = 0

    def _add(self, name: str) -> None:
        with self._lock:
            setattr(self, name, getattr(self, name) + 1)
        if self._metrics is not None:
            self._metrics.counted(name)

    def as_dict(self) -> dict[str, int]:
        """Return the counters as a dict (for metrics exporters).

        Returns:
            ``{"fetches": ..., "failures": ..., "stale_serves": ...,
            "unknown_kid_refusals": ..., "kid_refreshes": ...}``.
        """
        with self._lock:
            return {
                "fetches": self.fetches,
                "failures": self.failures,
                "stale_serves": self.stale_serves,
                "unknown_kid_refusals": self.unknown_kid_refusals,
                "kid_refreshes": self.kid_refreshes,
            }

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={v}" for k, v in self.as_dict().items())
        return f"CacheStats({fields})"


def count(stats: CacheStats, name: str) -> None:
    """Add one to the counter ``name`` of ``stats`` (under its lock)."""
    stats._add(name)


def after_fork(stats: CacheStats) -> None:
    """Give ``stats`` a new lock in a forked child (the parent's may be held)."""
    stats._lock = threading.Lock()


def fetch_ended(
    stats: CacheStats,
    reason: str,
    old: KeySet | None,
    loaded: tuple[KeySet, float] | None,
    error: BaseException | None,
    usable: bool,
) -> None:
    """Log how a fetch ended (:func:`log_outcome`) and record it in the metrics of ``stats``.

    Args:
        stats: The cache's counters (and metrics).
        reason: Why the fetch ran.
        old: The snapshot before it.
        loaded: The new snapshot and its TTL, if it succeeded.
        error: Why it failed, if it did.
        usable: Whether the cache still has a usable snapshot.
    """
    log_outcome(reason, old, loaded, error, usable)
    if stats._metrics is not None:
        stats._metrics.fetched(reason, error, ok=loaded is not None)


class NegativeCache(dict[str, float]):
    """Unknown kids and the monotonic time until which a refresh for them is refused.

    Single dict operations are atomic, so readers need no lock; a lost update only
    costs one more trip through the (locked, rate-limited) refresh path.
    """

    __slots__ = ()

    def refused_until(self, kid: str, now: float) -> float | None:
        """Until when a refresh for ``kid`` is refused, seen at ``now``; forgets an expired entry.

        Args:
            kid: The unknown ``keyid``.
            now: The monotonic time.

        Returns:
            The monotonic time the refusal ends, or ``None`` when it is not refused.
        """
        until = self.get(kid)
        if until is None:
            return None
        if now < until:
            return until
        self.pop(kid, None)
        return None

    def remember(self, kid: str, until: float) -> None:
        """Refuse refreshes for ``kid`` until ``until``; bounded memory under kid noise (H8).

        Args:
            kid: The unknown ``keyid``.
            until: The monotonic time the refusal ends.
        """
        if len(self) >= NEGATIVE_CACHE_SIZE:
            self.clear()
        self[kid] = until


def log_outcome(
    reason: str,
    old: KeySet | None,
    loaded: tuple[KeySet, float] | None,
    error: BaseException | None,
    usable: bool,
) -> None:
    """Log how a fetch ended: the kids added and removed, or why it failed.

    Args:
        reason: Why the fetch ran.
        old: The snapshot before it.
        loaded: The new snapshot and its TTL, if it succeeded.
        error: Why it failed, if it did.
        usable: Whether the cache still has a usable snapshot.
    """
    if loaded is not None:
        keys, ttl = loaded
        logger.info(
            "JWKS fetched (%s): %d keys, %d rejected, fresh for %.0f s; added %s, removed %s",
            reason,
            len(keys),
            len(keys.rejected),
            ttl,
            sorted(set(keys) - set(old or ())),
            sorted(set(old or ()) - set(keys)),
        )
    elif error is not None:
        logger.warning(
            "JWKS fetch failed (%s): %s: %s; %s",
            reason,
            type(error).__name__,
            error,
            "serving the cached key set" if usable else "no usable key set (keys_unavailable)",
        )
    else:
        logger.warning("JWKS fetch (%s) aborted", reason)


class RefusalLog:
    """Logs refused unknown-kid refreshes at WARNING, boundedly (K4, H8).

    A flood of forged kids is refused once per request; one line per refusal would let
    an attacker fill the logs. Per interval (the refresh cooldown), each of the first
    few distinct kids is logged once; the rest are counted, and the next logged line
    says how many were refused without a line of their own.
    """

    __slots__ = ("_interval", "_lock", "_logged", "_started", "_suppressed")

    KIDS_PER_INTERVAL = 3

    def __init__(self, interval: float) -> None:
        """Args: interval: Seconds (monotonic) a window of logged kids lasts."""
        self._interval = interval
        self._started: float | None = None
        self._logged: set[str] = set()
        self._suppressed = 0
        self._lock = threading.Lock()

    def refused(self, kid: str, seconds_left: float, cause: str, now: float) -> None:
        """Record one refusal; log it if its kid is among the window's first few.

        Args:
            kid: The kid, already escaped and truncated for the log.
            seconds_left: Seconds until a refresh for it may run (``inf``: never).
            cause: The limit that refused it.
            now: Monotonic time.
        """
        with self._lock:
            if self._started is None or now - self._started >= self._interval:
                self._started, self._logged = now, set()
            if kid in self._logged or len(self._logged) >= self.KIDS_PER_INTERVAL:
                self._suppressed += 1
                return
            self._logged.add(kid)
            suppressed, self._suppressed = self._suppressed, 0
        more = f" ({suppressed} more refusals not logged)" if suppressed else ""
        if seconds_left == float("inf"):
            logger.warning("JWKS refresh for unknown kid %s refused: %s%s", kid, cause, more)
        else:
            logger.warning(
                "JWKS refresh for unknown kid %s refused (%s): %.1f s of cooldown left%s",
                kid,
                cause,
                seconds_left,
                more,
            )


def stop_worker(
    worker: threading.Thread | asyncio.Task[None] | None, stop: threading.Event | None
) -> None:
    """Tell the background refresher to stop, from any thread, without waiting.

    Args:
        worker: The refresher: a thread (stopped through ``stop``) or a task
            (cancelled on its own loop, thread-safely), or ``None``.
        stop: The thread's stop event, or ``None``.
    """
    if stop is not None:
        stop.set()
    if worker is None or isinstance(worker, threading.Thread) or worker.done():
        return
    loop = worker.get_loop()
    if loop is running_loop():
        worker.cancel()
    elif not loop.is_closed():
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
            loop.call_soon_threadsafe(worker.cancel)


class Flight:
    """One fetch in flight and its waiters.

    Attributes:
        started: Monotonic time the fetch started.
        reason: Why it runs (for logs): cold start, expired, unknown kid, ...
        for_kid: Whether an unknown kid caused it (it used up the refresh-on-miss budget).
        future: Resolves to the fetched snapshot, or ``None`` when the fetch failed.
        loop: The event loop of the task running it, if a task runs it.
        task: A strong reference to that task.
    """

    __slots__ = ("for_kid", "future", "loop", "reason", "started", "task")

    def __init__(self, started: float, reason: str, *, for_kid: bool = False) -> None:
        self.started = started
        self.reason = reason
        self.for_kid = for_kid
        self.future: concurrent.futures.Future[KeySet | None] = concurrent.futures.Future()
        # RUNNING futures cannot be cancelled: a cancelled waiter never cancels the
        # shared fetch for the others.
        self.future.set_running_or_notify_cancel()
        self.loop: asyncio.AbstractEventLoop | None = None
        self.task: asyncio.Task[None] | None = None

    def settle(self, keys: KeySet | None) -> None:
        """Wake every waiter with ``keys`` (once; later calls do nothing).

        Args:
            keys: The new snapshot, or ``None`` for a failed or abandoned fetch.
        """
        if not self.future.done():
            self.future.set_result(keys)

    def abandoned(self) -> bool:
        """Whether its event loop closed without finishing the task; if so, wake the waiters.

        Returns:
            ``True`` when nobody will ever finish this flight.
        """
        if self.loop is None or not self.loop.is_closed():
            return False
        self.settle(None)
        return True

    def run_in_thread(
        self,
        fetch: Callable[[Flight], None],
        failed: Callable[[Flight, None, BaseException], None],
    ) -> None:
        """Run ``fetch(self)`` in a daemon thread of its own, so no request waits for it.

        Args:
            fetch: Runs the fetch and settles this flight.
            failed: Called as ``failed(self, None, error)`` when no thread can start
                (e.g. while the interpreter shuts down).
        """
        thread = threading.Thread(
            target=fetch, args=(self,), name="upvest-verify-jwks", daemon=True
        )
        try:
            thread.start()
        except RuntimeError as exc:
            failed(self, None, exc)

    def run_as_task(self, fetch: Coroutine[Any, Any, None]) -> None:
        """Run ``fetch`` as a task of its own on the running loop.

        A task of its own: a cancelled request never cancels the shared fetch.

        Args:
            fetch: The coroutine that fetches and settles this flight.
        """
        import asyncio

        self.loop = asyncio.get_running_loop()
        self.task = self.loop.create_task(fetch, name="upvest-verify-jwks")

    def wait(self, timeout: float) -> KeySet | None:
        """Block this thread until the fetch ends, at most ``timeout`` seconds.

        Args:
            timeout: Seconds.

        Returns:
            The snapshot, or ``None`` when the fetch failed or the wait gave up.
        """
        if self.loop is not None and self.loop is running_loop():
            # Sync call on the event loop that must run the fetch: waiting would
            # deadlock. Async code must use acurrent()/arefresh_for().
            logger.warning("JWKSCache sync method called on the event loop during an async fetch")
            return None
        try:
            return self.future.result(timeout=timeout)
        except concurrent.futures.TimeoutError:
            self._gave_up(timeout)
            return None

    async def wait_async(self, timeout: float) -> KeySet | None:
        """Await the end of the fetch from any event loop, at most ``timeout`` seconds.

        Args:
            timeout: Seconds.

        Returns:
            The snapshot, or ``None`` when the fetch failed or the wait gave up.
        """
        import asyncio

        try:
            return await asyncio.wait_for(asyncio.wrap_future(self.future), timeout=timeout)
        except asyncio.TimeoutError:
            self._gave_up(timeout)
            return None

    def _gave_up(self, timeout: float) -> None:
        logger.warning("JWKS fetch (%s) still running after %.0f s", self.reason, timeout)
