"""The JWKS cache policy: pure functions over an immutable state (threat-model.md §5).

Everything :class:`~upvest_verify.jwks.JWKSCache` decides lives here: how long a
fetched set is fresh (``Cache-Control`` and the ``[min_ttl, max_ttl]`` clamp), how
long a stale set may still be served, when a cold, expired or unknown-kid lookup
may fetch, what a lookup does next (:class:`Action`), how a fetch's outcome
changes the state, and when the background refresher is due. Nothing here does
I/O, takes a lock or reads a clock: every time is passed in, on the cache's
monotonic clock. The cache's flow asks these functions, its drivers do the rest.
"""

from __future__ import annotations

import enum
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from upvest_verify._crypto import KEY_TYPES, MAX_KID_LENGTH
from upvest_verify._keyset import KeySet
from upvest_verify.errors import ConfigurationError, JWKSError, KeySetUnavailable, Reason

if TYPE_CHECKING:
    from upvest_verify._crypto import KeyType

__all__ = [
    "NEVER",
    "Action",
    "CachePolicy",
    "CacheState",
    "background_delay",
    "check_key_types",
    "check_seconds",
    "effective_ttl",
    "freshness_lifetime",
    "is_fresh",
    "is_usable",
    "knows",
    "may_fetch_expired",
    "may_fetch_for_kid",
    "parse_cache_control",
    "plan_current",
    "plan_refresh",
    "plan_refresh_for",
    "record_attempt",
    "record_failure",
    "record_success",
    "refusal_expiry",
    "unavailable",
    "usable_keys",
]

NEVER = -math.inf
"""The time of an event that has not happened (sorts before every real time)."""

# RFC 9111 §1.2.2: a delta-seconds too large to represent counts as 2^31.
_RFC9111_MAX_DELTA = 2147483648

# RFC 9111 §5.2 (Cache-Control) with RFC 9110 §5.6.2 tokens and §5.6.4 quoted strings:
#   Cache-Control   = #cache-directive
#   cache-directive = token [ "=" ( token / quoted-string ) ]
_DIRECTIVE = re.compile(
    r"""[ \t]*([!#$%&'*+.^_`|~0-9A-Za-z-]+)[ \t]*"""
    r"""(?:=[ \t]*(?:([!#$%&'*+.^_`|~0-9A-Za-z-]+)|"((?:[^"\\]|\\.)*)"))?[ \t]*(?:,|$)"""
)
# RFC 9111 §1.2.2: delta-seconds = 1*DIGIT
_DELTA_SECONDS = re.compile(r"[0-9]+")


# ---- how long a response may be cached (RFC 9111) -------------------------------------------


def _delta_seconds(value: str | None) -> int | None:
    """Parse RFC 9111 §1.2.2 ``delta-seconds``; ``None`` when absent or invalid."""
    if value is None or not _DELTA_SECONDS.fullmatch(value.strip()):
        return None
    return min(int(value.strip()), _RFC9111_MAX_DELTA)


def parse_cache_control(cache_control: str) -> float | None:
    """Return the freshness lifetime a ``Cache-Control`` value grants, if it states one.

    Lenient but safe: a malformed directive is skipped up to the next comma;
    ``no-store``/``no-cache`` mean 0 (RFC 9111 §5.2.2.4, §5.2.2.5: a key cache cannot
    revalidate per request, so "as short as allowed"); of several ``max-age``
    directives the first valid one counts (RFC 9111 §4.2.1).

    Args:
        cache_control: The field value (several field lines joined with ``", "``).

    Returns:
        Seconds, or ``None`` when the value states no lifetime.
    """
    max_age: float | None = None
    pos = 0
    while pos < len(cache_control):
        match = _DIRECTIVE.match(cache_control, pos)
        if match is None or match.end() == pos:
            comma = cache_control.find(",", pos)
            if comma < 0:
                break
            pos = comma + 1
            continue
        pos = match.end()
        name = match.group(1).lower()
        value = match.group(2) if match.group(2) is not None else match.group(3)
        if name in ("no-store", "no-cache"):
            return 0.0
        if name == "max-age" and max_age is None:
            seconds = _delta_seconds(value)
            if seconds is not None:
                max_age = float(seconds)
    return max_age


def freshness_lifetime(cache_control: str | None, age: str | None) -> float | None:
    """The lifetime left for a response: ``Cache-Control`` ``max-age`` minus ``Age``.

    RFC 9111 §5.2.2.1 (``max-age``) and §4.2.3 (the response's current ``Age``);
    the result never goes below 0. An invalid ``Age`` is ignored.

    Args:
        cache_control: The ``Cache-Control`` field value, or ``None``.
        age: The ``Age`` field value, or ``None``.

    Returns:
        Seconds, or ``None`` when the response states no lifetime.
    """
    max_age = parse_cache_control(cache_control) if cache_control else None
    if max_age is not None:
        current_age = _delta_seconds(age)
        if current_age is not None:
            max_age = max(0.0, max_age - current_age)
    return max_age


# ---- settings and state ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CachePolicy:
    """The cache's limits, in seconds.

    Attributes:
        ttl: Freshness of a set whose response stated no ``max-age``.
        min_ttl: Lower clamp for ``max-age``.
        max_ttl: Upper clamp for ``max-age``.
        max_stale: How long past its TTL a set is still served while refreshes fail.
        refresh_cooldown: Minimum time between an attempt and a refresh for an unknown kid.
        failure_cooldown: No fetch for this long after a failed one.
    """

    ttl: float
    min_ttl: float
    max_ttl: float
    max_stale: float
    refresh_cooldown: float
    failure_cooldown: float

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
    ) -> CachePolicy:
        """Check the settings and build the policy.

        Args:
            ttl: See the attributes.
            min_ttl: See the attributes.
            max_ttl: See the attributes.
            max_stale: See the attributes.
            refresh_cooldown: See the attributes.
            failure_cooldown: See the attributes.

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
            raise ConfigurationError("failure_cooldown must be a positive, finite number (K6)")
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
        last_attempt: Start of the latest fetch, successful or not.
        last_failure: End of the latest failed fetch since the last success.
        error: Why the latest fetch failed (for ``keys_unavailable`` messages).
    """

    keys: KeySet | None = None
    fetched_at: float = NEVER
    expires_at: float = NEVER
    last_attempt: float = NEVER
    last_failure: float = NEVER
    error: str = ""


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
    """Refuse a refresh for an unknown kid (cooldown)."""


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
    """Whether an unknown kid may trigger a fetch: once per ``refresh_cooldown``.

    Every attempt counts, failed ones too (K4), and so does a failure cooldown.
    """
    return (
        now >= state.last_attempt + policy.refresh_cooldown
        and now >= state.last_failure + policy.failure_cooldown
    )


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


def refusal_expiry(state: CacheState, policy: CachePolicy) -> float:
    """Until when a refused unknown kid is refused without looking again (negative cache).

    Args:
        state: The cache state at the refusal.
        policy: The limits.

    Returns:
        The monotonic time the refresh cooldown or failure cooldown ends, whichever is later.
    """
    return max(
        state.last_attempt + policy.refresh_cooldown,
        state.last_failure + policy.failure_cooldown,
    )


# ---- transitions -------------------------------------------------------------------------


def record_attempt(state: CacheState, now: float) -> CacheState:
    """The state once a fetch starts at ``now`` (it counts toward the refresh cooldown, K4).

    Args:
        state: The state before.
        now: The monotonic time.

    Returns:
        The new state.
    """
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
