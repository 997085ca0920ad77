"""When to retry a call, and how long to wait first (pure).

Upvest processes nothing it answers 429 to, so 429 is retried on every method.
502, 503, 504 and lost connections may hide a request that was processed, so they
are retried only on GET and DELETE (idempotent; no ``idempotency-key`` exists on
the webhook endpoints). Waits grow exponentially with jitter, honour
``Retry-After``, and stop at a number of attempts and a total time.
"""

from __future__ import annotations

import email.utils
import math
from dataclasses import dataclass, field

from upvest_verify.errors import ConfigurationError

__all__ = ["RetryPolicy", "parse_retry_after", "retry_delay"]


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How the client retries. ``RetryPolicy.off()`` (or ``retry=None``) never retries.

    Attributes:
        max_attempts: Attempts per call, the first included (1: no retries).
        backoff: The wait before the first retry, in seconds; doubled each time.
        max_backoff: The longest computed wait.
        max_total: Seconds a call may take, waits included; a retry that could
            only start later is not made.
        max_retry_after: The longest ``Retry-After`` honoured; a longer one ends
            the retries (the caller decides).
        jitter: Wait a random 50-100% of the computed backoff, so clients that
            failed together do not retry together.
        retry_statuses: Statuses retried on ``idempotent_methods`` (429 is retried
            on every method).
        idempotent_methods: Methods safe to repeat after a lost response.
    """

    max_attempts: int = 4
    backoff: float = 0.5
    max_backoff: float = 8.0
    max_total: float = 60.0
    max_retry_after: float = 60.0
    jitter: bool = True
    retry_statuses: frozenset[int] = field(default=frozenset({502, 503, 504}))
    idempotent_methods: frozenset[str] = field(default=frozenset({"GET", "DELETE"}))

    def __post_init__(self) -> None:
        if not isinstance(self.max_attempts, int) or self.max_attempts < 1:
            raise ConfigurationError(f"max_attempts must be at least 1, got {self.max_attempts!r}")
        for name in ("backoff", "max_backoff", "max_total", "max_retry_after"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise ConfigurationError(f"{name} must be a non-negative number, got {value!r}")

    @classmethod
    def off(cls) -> RetryPolicy:
        """A policy that never retries."""
        return cls(max_attempts=1)


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Seconds a ``Retry-After`` value asks to wait (RFC 9110 §10.2.3).

    Args:
        value: The field value: delay-seconds or an HTTP-date.
        now: The wall clock (Unix seconds) an HTTP-date is measured from.

    Returns:
        Seconds (0 or more), or ``None`` when absent or unreadable.
    """
    if value is None:
        return None
    text = value.strip()
    if text.isdigit():
        return float(int(text))
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - now)


def retry_delay(
    policy: RetryPolicy,
    *,
    attempt: int,
    method: str,
    status: int | None,
    elapsed: float,
    retry_after: float | None = None,
    random: float = 1.0,
) -> float | None:
    """How long to wait before attempt ``attempt + 1``, or ``None`` to give up.

    Args:
        policy: The retry policy.
        attempt: Attempts made so far (1 after the first).
        method: The request method.
        status: The response status, or ``None`` when no response came (a
            connection error or timeout).
        elapsed: Seconds since the call started.
        retry_after: Seconds from the response's ``Retry-After``, if any.
        random: A number in [0, 1) for the jitter.

    Returns:
        Seconds to wait, or ``None`` when the outcome is final.
    """
    if attempt >= policy.max_attempts:
        return None
    if status == 429:
        pass
    elif status is None or status in policy.retry_statuses:
        if method.upper() not in policy.idempotent_methods:
            return None
    else:
        return None
    delay = min(policy.max_backoff, policy.backoff * 2.0 ** (attempt - 1))
    if policy.jitter:
        delay *= 0.5 + 0.5 * random
    if retry_after is not None:
        if retry_after > policy.max_retry_after:
            return None
        delay = max(delay, retry_after)
    if elapsed + delay > policy.max_total:
        return None
    return delay
