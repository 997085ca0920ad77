"""``JWKSCache``: one cache flow, driven by threads or by asyncio tasks.

The shape is httpx's auth flow (``httpx/_auth.py``): each operation is a
generator (:meth:`JWKSCache._current_flow`, ``_refresh_for_flow``,
``_refresh_flow``, ``_background_flow``) that asks the pure policy
(:mod:`._policy`) what to do, changes the state under the lock, and *yields* a
:class:`_Step` whenever I/O or waiting is needed (run the fetch, start it
detached, join the fetch in flight, sleep, start the refresher); it receives the
fetched snapshot (or ``None``) back. Two drivers run the flows and do nothing
else: :meth:`JWKSCache._drive` with threads (the calling thread, a daemon thread)
and :meth:`JWKSCache._adrive` with asyncio tasks. The one fetch in flight is a
:class:`._runtime.Flight`, shared by threads and tasks of any event loop.
"""

from __future__ import annotations

import enum
import math
import threading
import time
from collections.abc import Callable, Generator, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeAlias, TypeVar, cast

from upvest_verify._crypto import MAX_KID_LENGTH
from upvest_verify._keyset import KeySet
from upvest_verify.errors import ConfigurationError

from . import _policy as policy
from ._policy import Action, CacheState, Loaded
from ._runtime import (
    CacheStats,
    Flight,
    NegativeCache,
    RefusalLog,
    count,
    fetch_ended,
    reset_after_fork,
    running_loop,
    stop_worker,
)
from ._runtime import after_fork as stats_after_fork

if TYPE_CHECKING:
    import asyncio

    from opentelemetry.metrics import MeterProvider

    from upvest_verify._crypto import KeyType
    from upvest_verify.types import KeySource

__all__ = ["CacheStats", "JWKSCache"]

_T = TypeVar("_T")


class _Do(enum.Enum):
    """What a flow needs its driver to do."""

    START_WORKER = "start the background refresher"
    DETACH = "start the fetch; nobody waits for it"
    LEAD = "run the fetch and wait for it"
    JOIN = "wait for the fetch in flight"
    SLEEP = "sleep (the background refresher)"


@dataclass(frozen=True, slots=True)
class _Step:
    """One request from a flow to its driver (``seconds`` only for ``SLEEP``)."""

    do: _Do
    flight: Flight | None = None
    seconds: float = 0.0


_START_WORKER = _Step(_Do.START_WORKER)

_Flow: TypeAlias = Generator[_Step, "KeySet | None", _T]
"""A cache flow: yields steps, is sent the snapshot a wait ended with, returns ``_T``."""

_FOR_KID = "unknown kid"
"""Why a fetch caused by an unknown kid runs (the only kind that uses up the cooldown)."""


def _wait_step(action: Action, flight: Flight | None) -> _Step:
    return _Step(_Do.LEAD if action is Action.FETCH else _Do.JOIN, flight)


class JWKSCache:
    """A rotating JWKS cache; implements ``KeyProvider`` and ``AsyncKeyProvider``.

    Pass it to :class:`~upvest_verify.Verifier`. Synchronous code calls
    :meth:`current`/:meth:`refresh_for`, asyncio code :meth:`acurrent`/
    :meth:`arefresh_for`; both share one snapshot and one fetch in flight. The
    guarantees (lock-free hits, stale-while-refresh, the refresh-on-miss limits,
    stale on error, background refresh, fork safety) are listed in
    :mod:`upvest_verify.jwks`. Fetches and refused refreshes are logged on the
    ``upvest_verify`` logger and counted in :attr:`stats` and, with
    ``opentelemetry-api`` installed, in OpenTelemetry metrics (``meter_provider``).

    Args:
        source: Where the JWKS comes from.
        ttl: Seconds a fetched set is fresh when the response states no ``max-age``.
        refresh_cooldown: Minimum seconds between two refreshes caused by unknown
            kids, failed ones included; other fetches do not count, they only hold
            such a refresh off for 1 s after they start. Must be positive.
        max_stale: Seconds past the TTL a set is still served while refreshes fail
            (0: strict).
        min_ttl: Lower clamp for ``max-age``.
        max_ttl: Upper clamp for ``max-age``.
        failure_cooldown: Seconds without a fetch after a failed one. Must be positive.
        key_types: Key types imported from the JWKS (Upvest: ``P-521`` only).
        background_refresh: Refresh ahead of expiry even without traffic.
        wait_timeout: Longest a caller waits for a fetch in flight started by someone
            else (cold start, :meth:`refresh_for`).
        monotonic: The clock for TTLs and cooldowns (never the wall clock); inject one in tests.
        meter_provider: The OpenTelemetry meter provider of its ``upvest_verify.jwks.*``
            metrics (fetches, stale serves, refused refreshes); ``None``: the global one.

    Raises:
        ConfigurationError: A setting is out of range, e.g. ``refresh_cooldown <= 0``
            (refresh on an unknown kid without a limit), or the source has no
            ``fetch`` method.
    """

    # Seconds between checks of the background refresher (its longest sleep).
    _BACKGROUND_TICK = 1.0

    def __init__(
        self,
        source: KeySource,
        *,
        ttl: float = 300,
        refresh_cooldown: float = 30,
        max_stale: float = 86400,
        min_ttl: float = 60,
        max_ttl: float = 3600,
        failure_cooldown: float = 10,
        key_types: Iterable[KeyType] = ("P-521",),
        background_refresh: bool = False,
        wait_timeout: float = 30,
        monotonic: Callable[[], float] = time.monotonic,
        meter_provider: MeterProvider | None = None,
    ) -> None:
        if not callable(getattr(source, "fetch", None)):
            raise ConfigurationError(f"source must have a fetch() method: {source!r}")
        self._limits = policy.CachePolicy.from_settings(
            ttl=ttl,
            min_ttl=min_ttl,
            max_ttl=max_ttl,
            max_stale=max_stale,
            refresh_cooldown=refresh_cooldown,
            failure_cooldown=failure_cooldown,
        )
        policy.check_seconds("wait_timeout", wait_timeout)
        if wait_timeout <= 0:
            raise ConfigurationError("wait_timeout must be positive")
        self._key_types = policy.check_key_types(key_types)
        self._source = source
        self._wait_timeout = float(wait_timeout)
        self._monotonic = monotonic
        self._background = background_refresh
        self.stats = CacheStats(meter_provider=meter_provider)
        """Fetch and serve counters (:class:`CacheStats`)."""
        self._state = CacheState()
        self._lock = threading.Lock()  # guards _flight, _worker and state transitions
        self._flight: Flight | None = None
        self._negative = NegativeCache()  # unknown kid -> monotonic time it expires
        self._refusals = RefusalLog(self._limits.refresh_cooldown)  # one line per cooldown
        self._closed = False
        self._worker: threading.Thread | asyncio.Task[None] | None = None
        self._worker_stop: threading.Event | None = None
        self._worker_wanted = background_refresh  # checked on the hit path
        reset_after_fork(self, JWKSCache._after_fork)

    def __repr__(self) -> str:
        keys = self._state.keys
        kids = sorted(keys) if keys is not None else None
        return f"JWKSCache({self._source!r}, kids={kids!r})"

    # ---- the public face: a lock-free hit, else one flow and a driver ---------------------

    def _fresh_hit(self) -> KeySet | None:
        # One read of the snapshot: no lock, no await, no generator.
        state = self._state
        if (
            state.keys is not None
            and self._monotonic() < state.expires_at
            and not self._worker_wanted
        ):
            return state.keys
        return None

    def current(self) -> KeySet:
        """Return the current key set, refreshing when the TTL ran out.

        Lock-free on a hit. Expired but within ``max_stale``: the stale set is
        returned at once and a refresh runs in a daemon thread. Cold, or stale
        beyond ``max_stale``: waits for the (single) fetch.

        Returns:
            The key-set snapshot.

        Raises:
            KeySetUnavailable: No key set fresh enough (``keys_unavailable``).
        """
        hit = self._fresh_hit()
        return hit if hit is not None else self._drive(self._current_flow())

    def refresh_for(self, kid: str) -> KeySet | None:
        """Refresh because ``kid`` is not in the current set, rate-limited.

        Returns at once with the current set when it already knows ``kid``
        (another request's refresh brought it in). Otherwise joins the fetch in
        flight or starts one: at most one per ``refresh_cooldown`` among refreshes
        for unknown kids, and none within 1 s of the start of any fetch.

        Args:
            kid: The unknown ``keyid``.

        Returns:
            The new snapshot (whether or not it has ``kid``), or ``None`` when the
            refresh was refused by the cooldown/negative cache or failed.
        """
        return self._drive(self._refresh_for_flow(kid))

    def refresh(self) -> KeySet:
        """Fetch now (or join the fetch in flight), ignoring TTL and cooldowns.

        Meant for warming the cache at start-up and for operators; requests use
        :meth:`current` and :meth:`refresh_for`.

        Returns:
            The newly fetched key set.

        Raises:
            KeySetUnavailable: The fetch failed (the cache keeps its last good set).
        """
        return self._drive(self._refresh_flow())

    async def acurrent(self) -> KeySet:
        """Like :meth:`current`, without blocking the event loop.

        A detached refresh runs as a task on the running loop; waiting callers
        await the shared fetch (any loop, any thread may be running it).

        Returns:
            The key-set snapshot.

        Raises:
            KeySetUnavailable: No key set fresh enough (``keys_unavailable``).
        """
        hit = self._fresh_hit()
        return hit if hit is not None else await self._adrive(self._current_flow())

    async def arefresh_for(self, kid: str) -> KeySet | None:
        """Like :meth:`refresh_for`, without blocking the event loop.

        Args:
            kid: The unknown ``keyid``.

        Returns:
            The new snapshot, or ``None`` when the refresh was refused or failed.
        """
        return await self._adrive(self._refresh_for_flow(kid))

    async def arefresh(self) -> KeySet:
        """Like :meth:`refresh`, without blocking the event loop.

        Returns:
            The newly fetched key set.

        Raises:
            KeySetUnavailable: The fetch failed (the cache keeps its last good set).
        """
        return await self._adrive(self._refresh_flow())

    def close(self, timeout: float = 5.0) -> None:
        """Stop the background refresher, if any. The cache keeps working on demand.

        Args:
            timeout: Seconds to wait for the refresher thread to end (it may be in
                the middle of a fetch; it is a daemon thread either way).
        """
        worker = self._stop_worker()
        if isinstance(worker, threading.Thread) and worker is not threading.current_thread():
            worker.join(timeout)

    async def aclose(self, timeout: float = 5.0) -> None:
        """Stop the background refresher and wait (without blocking the loop) until it ends.

        Args:
            timeout: Seconds to wait for a refresher thread to end.
        """
        import asyncio

        worker = self._stop_worker()
        if isinstance(worker, threading.Thread):
            await asyncio.to_thread(worker.join, timeout)
        elif worker is not None and worker.get_loop() is running_loop():
            # asyncio.wait never raises the worker's CancelledError, only our own.
            await asyncio.wait([worker])

    def __enter__(self) -> JWKSCache:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    async def __aenter__(self) -> JWKSCache:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    # ---- the flows: every decision, once; no I/O, no waiting -----------------------------

    def _current_flow(self) -> _Flow[KeySet]:
        if self._worker_wanted:
            yield _START_WORKER
        with self._lock:
            state, now = self._state, self._monotonic()
            action = policy.plan_current(state, now, self._limits, self._in_flight())
            flight = self._begin(now, "cold start" if state.keys is None else "expired", action)
        if action is Action.UNAVAILABLE:
            raise policy.unavailable(state)
        if action is Action.SERVE_AND_REFRESH:
            yield _Step(_Do.DETACH, flight)
        if action is Action.SERVE or action is Action.SERVE_AND_REFRESH:
            return self._serve(state, now)
        keys = yield _wait_step(action, flight)
        if keys is not None:
            return keys
        # The fetch failed or the wait timed out: the stale set, if still usable.
        state, now = self._state, self._monotonic()
        if policy.is_usable(state, now, self._limits):
            return self._serve(state, now)
        raise policy.unavailable(state)

    def _refresh_for_flow(self, kid: str) -> _Flow[KeySet | None]:
        state, now = self._state, self._monotonic()
        if policy.knows(state.keys, kid):
            return state.keys
        until = self._negative.refused_until(kid, now)
        if until is not None:
            self._refuse(kid, until - now, policy.refusal_cause(state, self._limits))
            return None
        if self._worker_wanted:
            yield _START_WORKER
        keys: KeySet | None = None
        # Joining an ordinary fetch (cold, TTL, background) that started before the key
        # was published must not cost the kid a cooldown: then plan once more.
        for _ in range(2):
            with self._lock:
                state, now = self._state, self._monotonic()
                action = policy.plan_refresh_for(state, kid, now, self._limits, self._in_flight())
                flight = self._begin(now, _FOR_KID, action)
            if action is Action.SERVE:
                return state.keys
            if action is Action.REFUSE:
                if len(kid) > MAX_KID_LENGTH:  # no usable key has such a kid (K2)
                    self._refuse(kid, math.inf, f"longer than {MAX_KID_LENGTH} characters")
                    return None
                until = policy.refusal_expiry(state, self._limits)
                self._negative.remember(kid, until)
                self._refuse(kid, until - now, policy.refusal_cause(state, self._limits))
                return None
            assert flight is not None
            keys = yield _wait_step(action, flight)
            if keys is None or policy.knows(keys, kid):
                return keys
            if flight.for_kid:  # a refresh for an unknown kid ran and did not bring it in
                self._negative.remember(kid, policy.refusal_expiry(self._state, self._limits))
                return keys
        return keys

    def _refresh_flow(self) -> _Flow[KeySet]:
        with self._lock:
            action = policy.plan_refresh(self._in_flight())
            flight = self._begin(self._monotonic(), "explicit refresh", action)
        keys = yield _wait_step(action, flight)
        if keys is None:
            raise policy.unavailable(self._state)
        return keys

    def _background_flow(self) -> _Flow[None]:
        while not self._closed:
            delay = policy.background_delay(self._state, self._monotonic(), self._limits)
            if delay > 0:
                yield _Step(_Do.SLEEP, seconds=min(delay, self._BACKGROUND_TICK))
                continue
            with self._lock:
                action = policy.plan_refresh(self._in_flight())
                flight = self._begin(self._monotonic(), "background", action)
            yield _wait_step(action, flight)

    # ---- the drivers: I/O and waiting only --------------------------------------------------

    def _drive(self, flow: _Flow[_T], stop: threading.Event | None = None) -> _T:
        """Run a flow with threads: fetch in this thread, or detached in a daemon thread."""
        outcome: KeySet | None = None
        while True:
            try:
                step = flow.send(outcome)
            except StopIteration as done:
                return cast("_T", done.value)
            outcome = None
            if step.do is _Do.START_WORKER:
                self._start_worker_thread()
            elif step.do is _Do.SLEEP:
                assert stop is not None
                stop.wait(step.seconds)
            else:
                flight = step.flight
                assert flight is not None
                if step.do is _Do.DETACH:
                    flight.run_in_thread(self._run_flight, self._finish)
                    continue
                if step.do is _Do.LEAD:
                    self._run_flight(flight)
                outcome = flight.wait(self._wait_timeout)

    async def _adrive(self, flow: _Flow[_T]) -> _T:
        """Run a flow with asyncio: every fetch is a task of its own, waits never block."""
        import asyncio

        outcome: KeySet | None = None
        while True:
            try:
                step = flow.send(outcome)
            except StopIteration as done:
                return cast("_T", done.value)
            outcome = None
            if step.do is _Do.START_WORKER:
                self._start_worker_task()
            elif step.do is _Do.SLEEP:
                await asyncio.sleep(step.seconds)
            else:
                flight = step.flight
                assert flight is not None
                if step.do is not _Do.JOIN:
                    flight.run_as_task(self._arun_flight(flight))
                if step.do is not _Do.DETACH:
                    outcome = await flight.wait_async(self._wait_timeout)

    def _run_flight(self, flight: Flight) -> None:
        """Run the flight's fetch in this thread (the sync leader)."""
        loaded: Loaded | None = None
        error: BaseException | None = None
        try:
            loaded = policy.load(self._source.fetch(), self._key_types, self._limits)
        except Exception as exc:
            error = exc
        finally:
            self._finish(flight, loaded, error)

    async def _arun_flight(self, flight: Flight) -> None:
        """Run the flight's fetch as a task (the async leader)."""
        import asyncio

        loaded: Loaded | None = None
        error: BaseException | None = None
        try:
            afetch = getattr(self._source, "afetch", None)
            if afetch is not None:
                result = await afetch()
            else:
                result = await asyncio.to_thread(self._source.fetch)
            loaded = policy.load(result, self._key_types, self._limits)
        except Exception as exc:
            error = exc
        finally:
            self._finish(flight, loaded, error)

    # ---- shared state changes (under the lock where noted) ----------------------------------

    def _in_flight(self) -> bool:
        """Whether a live fetch is in flight (caller holds the lock)."""
        flight = self._flight
        if flight is None:
            return False
        if flight.abandoned():  # its event loop closed without finishing the task
            self._flight = None
            return False
        return True

    def _begin(self, now: float, reason: str, action: Action) -> Flight | None:
        """Register a flight when the action fetches; the flight to wait on (lock held)."""
        if action is Action.JOIN:
            return self._flight
        if action is not Action.FETCH and action is not Action.SERVE_AND_REFRESH:
            return None
        for_kid = reason is _FOR_KID
        flight = self._flight = Flight(now, reason, for_kid=for_kid)
        self._state = policy.record_attempt(self._state, now, for_kid=for_kid)
        count(self.stats, "fetches")
        if for_kid:
            count(self.stats, "kid_refreshes")
        return flight

    def _refuse(self, kid: str, seconds_left: float, cause: str) -> None:
        count(self.stats, "unknown_kid_refusals")
        self._refusals.refused(policy.kid_for_log(kid), seconds_left, cause, self._monotonic())

    def _finish(self, flight: Flight, loaded: Loaded | None, error: BaseException | None) -> None:
        """Record a flight's outcome (state and counters), swap the snapshot, wake every waiter."""
        with self._lock:  # once no flight is in flight, its outcome is in state and stats
            current = self._flight is flight
            if current:
                self._flight = None
            now = self._monotonic()
            state = self._state
            if loaded is not None:
                self._state = policy.record_success(state, loaded[0], flight.started, loaded[1])
            elif error is not None:
                count(self.stats, "failures")
                why = f"{type(error).__name__}: {error}"
                if current:
                    self._state = policy.record_failure(state, now, why)
        usable = policy.is_usable(state, now, self._limits)
        fetch_ended(self.stats, flight.reason, state.keys, loaded, error, usable)
        flight.settle(None if loaded is None else loaded[0])

    def _serve(self, state: CacheState, now: float) -> KeySet:
        assert state.keys is not None
        if not policy.is_fresh(state, now):
            count(self.stats, "stale_serves")
        return state.keys

    # ---- background refresher ---------------------------------------------------------------

    def _claim_worker(self) -> bool:
        """Whether this caller starts the refresher (caller holds the lock)."""
        if not self._worker_wanted or self._closed:
            return False
        self._worker_wanted = False
        return True

    def _start_worker_thread(self) -> None:
        with self._lock:
            if not self._claim_worker():
                return
            stop = threading.Event()
            thread = threading.Thread(
                target=self._drive,
                args=(self._background_flow(), stop),
                name="upvest-verify-jwks-refresh",
                daemon=True,
            )
            self._worker, self._worker_stop = thread, stop
        thread.start()

    def _start_worker_task(self) -> None:
        import asyncio

        loop = asyncio.get_running_loop()
        with self._lock:
            if self._claim_worker():
                self._worker = loop.create_task(
                    self._aworker_main(), name="upvest-verify-jwks-refresh"
                )

    async def _aworker_main(self) -> None:
        import asyncio

        try:
            await self._adrive(self._background_flow())
        finally:
            # Ended with its event loop (or closed): the next call may start another.
            with self._lock:
                if self._worker is asyncio.current_task():
                    self._worker = None
                    self._worker_wanted = not self._closed

    def _stop_worker(self) -> threading.Thread | asyncio.Task[None] | None:
        """Signal the refresher to stop, without waiting; return it."""
        with self._lock:
            self._closed = True
            self._worker_wanted = False
            worker, stop = self._worker, self._worker_stop
            self._worker, self._worker_stop = None, None
        stop_worker(worker, stop)
        return worker

    def _after_fork(self) -> None:
        """Re-create what a forked child cannot inherit (F15).

        The parent's lock may have been held by another thread at fork time, and
        the parent's fetch threads, tasks and refresher do not exist in the child.
        """
        self._lock = threading.Lock()
        stats_after_fork(self.stats)
        self._flight = None
        self._worker = None
        self._worker_stop = None
        self._worker_wanted = self._background and not self._closed
