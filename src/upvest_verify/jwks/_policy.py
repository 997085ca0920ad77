"""The JWKS cache policy: pure functions over an immutable state (threat-model.md §5).

Everything :class:`~upvest_verify.jwks.JWKSCache` decides lives here: how long a
fetched set is fresh (its ``max-age`` clamped to ``[min_ttl, max_ttl]``), how
long a stale set may still be served, when a cold, expired or unknown-kid lookup
may fetch, what a lookup does next (:class:`Action`), how a fetch's outcome
changes the state, and when the background refresher is due. Nothing here does
I/O, takes a lock or reads a clock: every time is passed in, on the cache's
monotonic clock. The cache's flow asks these functions, its drivers do the rest.

The refresh-on-miss rule (K4), in one place (:func:`refusal_expiry`): refreshes
caused by unknown kids share one budget, at most one per ``refresh_cooldown``
counted from the start of the previous one (failed or not). Ordinary fetches
(cold start, TTL expiry, background, explicit) leave that budget alone, so a key
published just after one of them is fetched by the first webhook that names it;
they only hold refreshes off for ``refresh_gap`` (1 s) after their start, which
coalesces the lookups that raced them. A failed fetch of any kind holds every
fetch off for ``failure_cooldown`` (K6).
"""

from __future__ import annotations

import enum
import math
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, TypeAlias

from upvest_verify._crypto import KEY_TYPES, MAX_KID_LENGTH
from upvest_verify._keyset import KeySet
from upvest_verify.errors import ConfigurationError, JWKSError, KeySetUnavailable, Reason

from ._sources import FetchResult

if TYPE_CHECKING:
    from upvest_verify._crypto import KeyType

__all__ = [
    "DEFAULT_REFRESH_GAP",
    "NEVER",
    "Action",
    "CachePolicy",
    "CacheState",
    "Loaded",
    "background_delay",
    "check_key_types",
    "check_seconds",
    "effective_ttl",
    "is_fresh",
    "is_usable",
    "kid_for_log",
    "knows",
    "load",
    "may_fetch_expired",
    "may_fetch_for_kid",
    "plan_current",
    "plan_refresh",
    "plan_refresh_for",
    "record_attempt",
    "record_failure",
    "record_success",
    "refusal_cause",
    "refusal_expiry",
    "unavailable",
    "usable_keys",
]

NEVER = -math.inf
"""The time of an event that has not happened (sorts before every real time)."""

DEFAULT_REFRESH_GAP = 1.0
"""Seconds after the start of any fetch before an unknown kid may refresh (coalescing)."""

# ---- settings and state ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CachePolicy:
    """The cache's limits, in seconds.

    Attributes:
        ttl: Freshness of a set whose response stated no ``max-age``.
        min_ttl: Lower clamp for ``max-age``.
        max_ttl: Upper clamp for ``max-age``.
        max_stale: How long past its TTL a set is still served while refreshes fail.
        refresh_cooldown: Minimum time between two refreshes caused by unknown kids
            (from the start of one to the start of the next, failed ones included).
        failure_cooldown: No fetch for this long after a failed one.
        refresh_gap: Minimum time between the start of any fetch and a refresh for
            an unknown kid; at most ``refresh_cooldown``.
    """

    ttl: float
    min_ttl: float
    max_ttl: float
    max_stale: float
    refresh_cooldown: float
    failure_cooldown: float
    refresh_gap: float = DEFAULT_REFRESH_GAP

    @classmethod
    def from_settings(
        cls,
        *,
        ttl: float,
        min_ttl: float,
        max_ttl: float,
        max_stale: float,
        refresh_cooldown: float,
        failure_cooldown: float,
        refresh_gap: float = DEFAULT_REFRESH_GAP,
    ) -> CachePolicy:
        """Check the settings and build the policy.

        Args:
            ttl: See the attributes.
            min_ttl: See the attributes.
            max_ttl: See the attributes.
            max_stale: See the attributes.
            refresh_cooldown: See the attributes.
            failure_cooldown: See the attributes.
            refresh_gap: See the attributes; lowered to ``refresh_cooldown`` if above it.

        Returns:
            The policy, all values as floats.

        Raises:
            ConfigurationError: A value is not a number >= 0; ``refresh_cooldown`` is not
                positive and finite (refresh on unknown kids without a limit); the same
                for ``failure_cooldown`` (K6); or not ``0 < min_ttl <= ttl <= max_ttl < inf``.
        """
        numbers = {
            "ttl": ttl,
            "refresh_cooldown": refresh_cooldown,
            "max_stale": max_stale,
            "min_ttl": min_ttl,
            "max_ttl": max_ttl,
            "failure_cooldown": failure_cooldown,
            "refresh_gap": refresh_gap,
        }
        for name, value in numbers.items():
            check_seconds(name, value)
        if refresh_cooldown <= 0 or math.isinf(refresh_cooldown):
            raise ConfigurationError(
                "refresh_cooldown must be a positive, finite number of seconds: "
                "refreshing on unknown kids without a limit lets forged keyids "
                "flood the key endpoint"
            )
        if failure_cooldown <= 0 or math.isinf(failure_cooldown):
            # Infinite would turn one failed fetch into a permanent outage (K5, K6).
            raise ConfigurationError("failure_cooldown must be a positive, finite number")
        if not 0 < min_ttl <= ttl <= max_ttl or math.isinf(max_ttl):
            raise ConfigurationError(
                f"need 0 < min_ttl <= ttl <= max_ttl < inf, got "
                f"min_ttl={min_ttl}, ttl={ttl}, max_ttl={max_ttl}"
            )
        return cls(
            ttl=float(ttl),
            min_ttl=float(min_ttl),
            max_ttl=float(max_ttl),
            max_stale=float(max_stale),
            refresh_cooldown=float(refresh_cooldown),
            failure_cooldown=float(failure_cooldown),
            refresh_gap=float(min(refresh_gap, refresh_cooldown)),
        )


def check_seconds(name: str, value: object) -> None:
    """Refuse a setting that is not a number of seconds >= 0 (NaN included).

    Args:
        name: The setting's name, for the message.
        value: The value given.

    Raises:
        ConfigurationError: ``value`` is not an int or float >= 0.
    """
    if not isinstance(value, (int, float)) or math.isnan(value) or value < 0:
        raise ConfigurationError(f"{name} must be a number >= 0, got {value!r}")


def check_key_types(key_types: Iterable[KeyType]) -> tuple[KeyType, ...]:
    """Check the key types a cache imports.

    Args:
        key_types: A collection of key types.

    Returns:
        The key types as a tuple.

    Raises:
        ConfigurationError: A single string was given, the collection is empty, or it
            names an unknown key type.
    """
    if isinstance(key_types, str):
        raise ConfigurationError(f"key_types must be a collection, not {key_types!r}")
    types = tuple(key_types)
    if not types or not set(types) <= KEY_TYPES:
        raise ConfigurationError(
            f"key_types must be a non-empty subset of {sorted(KEY_TYPES)}, got {types!r}"
        )
    return types


@dataclass(frozen=True, slots=True)
class CacheState:
    """Everything the policy looks at; replaced as a whole, never mutated.

    Attributes:
        keys: The snapshot served, or ``None`` while cold.
        fetched_at: Start of the fetch that produced ``keys``.
        expires_at: ``fetched_at`` plus the effective TTL; :data:`NEVER` while cold.
        last_attempt: Start of the latest fetch of any kind, successful or not.
        last_failure: End of the latest failed fetch since the last success.
        error: Why the latest fetch failed (for ``keys_unavailable`` messages).
        last_kid_refresh: Start of the latest fetch caused by an unknown kid,
            successful or not (the refresh-on-miss budget, K4).
    """

    keys: KeySet | None = None
    fetched_at: float = NEVER
    expires_at: float = NEVER
    last_attempt: float = NEVER
    last_failure: float = NEVER
    error: str = ""
    last_kid_refresh: float = NEVER


class Action(enum.Enum):
    """What a lookup does next."""

    SERVE = "serve"
    """Return the snapshot as it is."""
    SERVE_AND_REFRESH = "serve and refresh"
    """Return the stale snapshot at once and start a refresh nobody waits for."""
    FETCH = "fetch"
    """Start a fetch and wait for it."""
    JOIN = "join"
    """Wait for the fetch already in flight."""
    UNAVAILABLE = "unavailable"
    """Raise ``keys_unavailable``."""
    REFUSE = "refuse"
    """Refuse a refresh for an unknown kid (see :func:`refusal_expiry`)."""


# ---- outcomes ------------------------------------------------------------------------------


def usable_keys(body: bytes, key_types: Iterable[KeyType]) -> KeySet:
    """Parse a fetched JWKS; a document without a single usable key is a failed fetch.

    An all-unusable set would reject every webhook, so it never replaces the last
    good set (K5); the unusable keys themselves are skipped, never fatal (K2).

    Args:
        body: The JWKS document.
        key_types: Key types to import.

    Returns:
        The snapshot, with at least one key.

    Raises:
        JWKSError: The document is unusable as a whole, or holds no usable key.
    """
    keys = KeySet.from_jwks(body, key_types=key_types)
    if len(keys) == 0:
        rejected = ", ".join(f"{k}: {why}" for k, why in keys.rejected.items())
        raise JWKSError(f"JWKS has no usable key ({rejected or 'empty'})")
    return keys


Loaded: TypeAlias = tuple[KeySet, float]
"""A parsed fetch: the snapshot and its effective TTL."""


def load(result: FetchResult, key_types: Iterable[KeyType], policy: CachePolicy) -> Loaded:
    """Turn what a key source returned into a snapshot and its TTL.

    Args:
        result: The source's fetch result.
        key_types: Key types to import.
        policy: The limits (for the TTL clamp).

    Returns:
        The snapshot and its effective TTL.

    Raises:
        TypeError: The source returned something else than a :class:`FetchResult`.
        JWKSError: The document is unusable, or holds no usable key.
    """
    if not isinstance(result, FetchResult):
        raise TypeError(f"KeySource returned {type(result).__name__}, not FetchResult")
    return usable_keys(result.body, key_types), effective_ttl(result.max_age, policy)


def unavailable(state: CacheState) -> KeySetUnavailable:
    """The ``keys_unavailable`` error (503) for a cache with nothing usable to serve.

    Args:
        state: The cache state.

    Returns:
        The error, naming the last failure.
    """
    why = state.error or "no key set fetched yet"
    if state.keys is not None:
        why = f"cached key set stale beyond max_stale; last error: {why}"
    return KeySetUnavailable(Reason.KEYS_UNAVAILABLE, f"no usable key set: {why}")


# ---- predicates --------------------------------------------------------------------------


def effective_ttl(max_age: float | None, policy: CachePolicy) -> float:
    """The TTL for a fetch: its ``max-age`` clamped to ``[min_ttl, max_ttl]``, else ``ttl`` (K4).

    Args:
        max_age: The response's lifetime (:attr:`FetchResult.max_age`), or ``None``.
        policy: The limits.

    Returns:
        Seconds the fetched set is fresh.
    """
    if max_age is None or math.isnan(max_age):
        return policy.ttl
    return min(max(max_age, policy.min_ttl), policy.max_ttl)


def is_fresh(state: CacheState, now: float) -> bool:
    """Whether keys exist and their TTL has not run out."""
    return state.keys is not None and now < state.expires_at


def is_usable(state: CacheState, now: float, policy: CachePolicy) -> bool:
    """Whether keys exist and are less than ``max_stale`` past their TTL (K5)."""
    return state.keys is not None and now < state.expires_at + policy.max_stale


def may_fetch_expired(state: CacheState, now: float, policy: CachePolicy) -> bool:
    """Whether a cold or expired cache may fetch: no failure younger than the cooldown (K6)."""
    return now >= state.last_failure + policy.failure_cooldown


def may_fetch_for_kid(state: CacheState, now: float, policy: CachePolicy) -> bool:
    """Whether an unknown kid may trigger a fetch now (K4; :func:`refusal_expiry`)."""
    return now >= refusal_expiry(state, policy)


def knows(keys: KeySet | None, kid: str) -> bool:
    """Whether the snapshot has an answer for ``kid`` (a key, or why it is unusable)."""
    return keys is not None and (kid in keys or kid in keys.rejected)


# ---- plans -------------------------------------------------------------------------------


def plan_current(state: CacheState, now: float, policy: CachePolicy, in_flight: bool) -> Action:
    """Decide what a lookup of the current set does.

    Fresh: serve. Stale but usable: serve at once, and refresh detached unless a
    fetch is in flight or a failure cooldown runs. Nothing usable: join the fetch
    in flight, else fetch, else (failure cooldown) unavailable.

    Args:
        state: The cache state.
        now: The monotonic time.
        policy: The limits.
        in_flight: Whether a fetch is in flight.

    Returns:
        The action.
    """
    if is_fresh(state, now):
        return Action.SERVE
    if is_usable(state, now, policy):
        # Stale but usable: never make this request wait for the key endpoint.
        if in_flight or not may_fetch_expired(state, now, policy):
            return Action.SERVE
        return Action.SERVE_AND_REFRESH
    if in_flight:
        return Action.JOIN
    if may_fetch_expired(state, now, policy):
        return Action.FETCH
    return Action.UNAVAILABLE


def plan_refresh_for(
    state: CacheState, kid: str, now: float, policy: CachePolicy, in_flight: bool
) -> Action:
    """Decide what a refresh for the unknown ``kid`` does.

    Args:
        state: The cache state.
        kid: The ``keyid`` the snapshot lacked.
        now: The monotonic time.
        policy: The limits.
        in_flight: Whether a fetch is in flight.

    Returns:
        ``SERVE`` when the snapshot knows ``kid`` by now; ``REFUSE`` for a kid longer
        than any usable one (K2) or within the cooldown; else ``JOIN`` or ``FETCH``.
    """
    if knows(state.keys, kid):
        return Action.SERVE  # another request's refresh already brought it in
    if len(kid) > MAX_KID_LENGTH:
        return Action.REFUSE  # no usable key has such a kid: never fetch for it
    if in_flight:
        return Action.JOIN
    if may_fetch_for_kid(state, now, policy):
        return Action.FETCH
    return Action.REFUSE


def plan_refresh(in_flight: bool) -> Action:
    """Decide what an explicit or background refresh does: fetch, or join the flight.

    Args:
        in_flight: Whether a fetch is in flight.

    Returns:
        ``JOIN`` or ``FETCH``; TTL and cooldowns do not matter.
    """
    return Action.JOIN if in_flight else Action.FETCH


def background_delay(state: CacheState, now: float, policy: CachePolicy) -> float:
    """Seconds until the background refresher should fetch (<= 0: now).

    It refreshes at 80% of the TTL, so the snapshot normally never expires, and
    waits out the failure cooldown after a failed attempt.

    Args:
        state: The cache state.
        now: The monotonic time.
        policy: The limits.

    Returns:
        The delay in seconds.
    """
    if state.keys is None:
        due = NEVER
    else:
        due = state.fetched_at + 0.8 * (state.expires_at - state.fetched_at)
    due = max(due, state.last_failure + policy.failure_cooldown)
    return due - now


def _holds(state: CacheState, policy: CachePolicy) -> tuple[tuple[float, str], ...]:
    # Each limit on refreshes for unknown kids: (when it ends, what it is).
    return (
        (state.last_kid_refresh + policy.refresh_cooldown, "unknown-kid refresh cooldown"),
        (state.last_attempt + policy.refresh_gap, "a fetch has just started"),
        (state.last_failure + policy.failure_cooldown, "failure cooldown"),
    )


def refusal_expiry(state: CacheState, policy: CachePolicy) -> float:
    """When the next refresh for an unknown kid may start: the rule of K4.

    The latest of: ``refresh_cooldown`` after the previous refresh for an unknown kid
    (failed or not), ``refresh_gap`` after the start of any fetch, and
    ``failure_cooldown`` after a failed fetch. Ordinary fetches move only the gap,
    so they never use up the budget of refreshes for unknown kids. A refused kid
    is refused without looking again until then (negative cache).

    Args:
        state: The cache state.
        policy: The limits.

    Returns:
        A monotonic time; :data:`NEVER` when nothing holds refreshes off.
    """
    return max(until for until, _ in _holds(state, policy))


def refusal_cause(state: CacheState, policy: CachePolicy) -> str:
    """Which limit of :func:`refusal_expiry` ends last, in words (for the log).

    Args:
        state: The cache state.
        policy: The limits.

    Returns:
        ``"unknown-kid refresh cooldown"``, ``"a fetch has just started"`` or
        ``"failure cooldown"``.
    """
    return max(_holds(state, policy))[1]


def kid_for_log(kid: str) -> str:
    """An attacker-supplied ``keyid`` made safe to log: ``repr``-escaped, at most ~80 characters.

    Args:
        kid: The ``keyid``.

    Returns:
        The quoted, escaped and, past 77 characters, truncated kid.
    """
    return repr(kid) if len(kid) <= 80 else repr(kid[:77]) + "..."


# ---- transitions -------------------------------------------------------------------------


def record_attempt(state: CacheState, now: float, *, for_kid: bool = False) -> CacheState:
    """The state once a fetch starts at ``now``.

    Every fetch starts the short ``refresh_gap``; only a fetch caused by an unknown
    kid uses up the budget of refreshes for unknown kids (K4).

    Args:
        state: The state before.
        now: The monotonic time.
        for_kid: Whether an unknown kid caused the fetch.

    Returns:
        The new state.
    """
    if for_kid:
        return replace(state, last_attempt=now, last_kid_refresh=now)
    return replace(state, last_attempt=now)


def record_success(state: CacheState, keys: KeySet, started: float, ttl: float) -> CacheState:
    """The state after a fetch that started at ``started`` brought ``keys``.

    A fetch older than the one that produced the current snapshot changes nothing,
    so a slow, abandoned fetch never brings back keys a newer fetch removed (K5).

    Args:
        state: The state when the fetch ended.
        keys: The new snapshot.
        started: When the fetch started.
        ttl: Its effective TTL.

    Returns:
        The new state (failures forgotten), or ``state`` itself.
    """
    if started < state.fetched_at:
        return state
    return replace(
        state,
        keys=keys,
        fetched_at=started,
        expires_at=started + ttl,
        last_failure=NEVER,
        error="",
    )


def record_failure(state: CacheState, now: float, error: str) -> CacheState:
    """The state after a failed fetch ended at ``now``: the snapshot stays (K5).

    Args:
        state: The state when the fetch ended.
        now: The monotonic time.
        error: Why it failed.

    Returns:
        The new state; the failure cooldown runs from ``now``.
    """
    return replace(state, last_failure=now, error=error)
