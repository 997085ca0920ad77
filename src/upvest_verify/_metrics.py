"""OpenTelemetry metrics of the verifier and the key cache (private).

With ``opentelemetry-api`` installed (the ``otel`` extra), a
:class:`~upvest_verify.Verifier` and a :class:`~upvest_verify.jwks.JWKSCache`
record on the meter ``upvest_verify`` (version: the library's) of their
``meter_provider``, by default the global one (``opentelemetry.metrics``):

* ``upvest_verify.verifications`` (counter, ``{verification}``) and
  ``upvest_verify.verification.duration`` (histogram, ``s``), per verify call:
  ``upvest_verify.outcome``; ``error.type`` on failures; ``upvest_verify.layout``
  and ``upvest_verify.late`` on accepted webhooks;
* ``upvest_verify.jwks.fetches`` (counter, ``{fetch}``), per key fetch that ended:
  ``upvest_verify.jwks.trigger``; ``error.type`` on failures;
* ``upvest_verify.jwks.stale_serves`` (``{key_set}``) and
  ``upvest_verify.jwks.refresh_refusals`` (``{refresh}``), counters without attributes.

Every attribute has a handful of values: no key id, URL or other value a sender
chooses is ever recorded (docs/guides/metrics.md). Whether OpenTelemetry is there
is found out once per verifier or cache, when it is built; ``import upvest_verify``
never imports it, and without it (or with a no-op provider) a verification pays
one attribute check. Instruments are created once per meter provider.
"""

from __future__ import annotations

import threading
import time
import weakref
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Final, TypeAlias

from . import __version__
from .errors import ConfigurationError, Reason, VerificationError

if TYPE_CHECKING:
    from opentelemetry.metrics import Counter, Histogram, Meter, MeterProvider

    from ._message import HeaderInput
    from ._result import VerifiedWebhook

__all__ = [
    "DURATION_BUCKETS",
    "ERROR_TYPE",
    "JWKS_FETCHES",
    "JWKS_REFRESH_REFUSALS",
    "JWKS_STALE_SERVES",
    "LATE",
    "LAYOUT",
    "METER_NAME",
    "OUTCOME",
    "TRIGGER",
    "VERIFICATIONS",
    "VERIFICATION_DURATION",
    "CacheMetrics",
    "VerifyMetrics",
    "cache_metrics",
    "unmetered",
    "verify_metrics",
]

Attributes: TypeAlias = Mapping[str, str | bool]

METER_NAME: Final = "upvest_verify"

VERIFICATIONS: Final = "upvest_verify.verifications"
VERIFICATION_DURATION: Final = "upvest_verify.verification.duration"
JWKS_FETCHES: Final = "upvest_verify.jwks.fetches"
JWKS_STALE_SERVES: Final = "upvest_verify.jwks.stale_serves"
JWKS_REFRESH_REFUSALS: Final = "upvest_verify.jwks.refresh_refusals"

OUTCOME: Final = "upvest_verify.outcome"
"""``accepted``, ``rejected`` (a :class:`VerificationError`) or ``error`` (any other exception)."""
ERROR_TYPE: Final = "error.type"
"""On failures only (semantic conventions): the reason code, or the exception's class name."""
LAYOUT: Final = "upvest_verify.layout"
"""On accepted webhooks: the base layout that verified, ``rfc9421`` or ``upvest-v6``."""
LATE: Final = "upvest_verify.late"
"""On accepted webhooks: whether it was accepted as a late retry."""
TRIGGER: Final = "upvest_verify.jwks.trigger"
"""Why a key fetch ran: ``cold_start``, ``expired``, ``unknown_kid``, ``explicit`` or
``background``."""

DURATION_BUCKETS: Final = (
    0.0001,
    0.00025,
    0.0005,
    0.00075,
    0.001,
    0.0025,
    0.005,
    0.0075,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    1.0,
)
"""Histogram bucket advice, seconds: 0.1 ms to 100 ms (one P-521 verify is ~0.7 ms), and
two more for verifications that waited for a key fetch."""

_TRIGGERS: Final = {
    "cold start": "cold_start",
    "expired": "expired",
    "unknown kid": "unknown_kid",
    "explicit refresh": "explicit",
    "background": "background",
}
"""The key cache's fetch reasons (its log wording) and their attribute values."""


class _Instruments:
    """The library's instruments on one meter."""

    __slots__ = ("duration", "fetches", "refusals", "stale_serves", "verifications")

    def __init__(self, meter: Meter) -> None:
        self.verifications: Counter = meter.create_counter(
            VERIFICATIONS,
            unit="{verification}",
            description="Webhooks verified, by outcome; error.type says why one failed.",
        )
        self.duration: Histogram = meter.create_histogram(
            VERIFICATION_DURATION,
            unit="s",
            description="Duration of Verifier.verify and averify calls.",
            explicit_bucket_boundaries_advisory=DURATION_BUCKETS,
        )
        self.fetches: Counter = meter.create_counter(
            JWKS_FETCHES,
            unit="{fetch}",
            description="Key set (JWKS) fetches of the key cache, by trigger and error.type.",
        )
        self.stale_serves: Counter = meter.create_counter(
            JWKS_STALE_SERVES,
            unit="{key_set}",
            description="Key sets the key cache handed out after their TTL.",
        )
        self.refusals: Counter = meter.create_counter(
            JWKS_REFRESH_REFUSALS,
            unit="{refresh}",
            description="Key cache refreshes for unknown key ids refused by the cooldown.",
        )


_BY_PROVIDER: weakref.WeakKeyDictionary[object, _Instruments | None] = weakref.WeakKeyDictionary()
_LOCK = threading.Lock()


def _instruments(meter_provider: MeterProvider | None) -> _Instruments | None:
    """The instruments on ``meter_provider`` (``None``: the global one), created once.

    ``None`` when ``opentelemetry`` cannot be imported, or the provider or its meter is
    a no-op (``NoOpMeterProvider``, or an SDK provider with ``OTEL_SDK_DISABLED=true``).

    Raises:
        ConfigurationError: ``meter_provider`` has no ``get_meter`` method.
    """
    try:
        from opentelemetry import metrics
    except ImportError:
        return None
    provider = metrics.get_meter_provider() if meter_provider is None else meter_provider
    if not callable(getattr(provider, "get_meter", None)):
        raise ConfigurationError(f"meter_provider must be a MeterProvider, not {provider!r}")
    if isinstance(provider, metrics.NoOpMeterProvider):
        return None
    # Once per provider: the API's proxy meter (before an SDK is set) keeps every
    # instrument created on it, and older SDKs warn about each one created twice.
    with _LOCK:
        if provider in _BY_PROVIDER:
            return _BY_PROVIDER[provider]
        meter = provider.get_meter(METER_NAME, __version__)
        found = None if isinstance(meter, metrics.NoOpMeter) else _Instruments(meter)
        _BY_PROVIDER[provider] = found
    return found


def unmetered() -> MeterProvider | None:
    """A meter provider that records nothing, for verifications that are not traffic.

    Returns:
        ``opentelemetry``'s ``NoOpMeterProvider``, or ``None`` when ``opentelemetry``
        cannot be imported (then nothing is recorded either).
    """
    try:
        from opentelemetry.metrics import NoOpMeterProvider
    except ImportError:
        return None
    return NoOpMeterProvider()


# ---- the verifier ---------------------------------------------------------------------------

_REJECTED: Final[dict[Reason, Attributes]] = {
    reason: {OUTCOME: "rejected", ERROR_TYPE: reason.value} for reason in Reason
}
_ACCEPTED: dict[tuple[str, bool], Attributes] = {}
_ERRORS: dict[type[BaseException], Attributes] = {}


def _accepted(webhook: VerifiedWebhook) -> Attributes:
    key = (webhook.dialect.layout, webhook.late)
    attributes = _ACCEPTED.get(key)
    if attributes is None:  # a race only builds an equal dict twice
        attributes = _ACCEPTED[key] = {OUTCOME: "accepted", LAYOUT: key[0], LATE: key[1]}
    return attributes


def _failed(error: Exception) -> Attributes:
    if isinstance(error, VerificationError):
        return _REJECTED[error.reason]
    kind = type(error)
    attributes = _ERRORS.get(kind)
    if attributes is None:
        attributes = _ERRORS[kind] = {OUTCOME: "error", ERROR_TYPE: kind.__qualname__}
    return attributes


class VerifyMetrics:
    """Counts and times the verifications of one :class:`~upvest_verify.Verifier`.

    A call that ends with ``BaseException`` only (a cancelled :meth:`averify`) is not
    recorded.
    """

    __slots__ = ("_add", "_record")

    def __init__(self, instruments: _Instruments) -> None:
        self._add = instruments.verifications.add
        self._record = instruments.duration.record

    def _done(self, started: float, attributes: Attributes) -> None:
        self._record(time.perf_counter() - started, attributes)
        self._add(1, attributes)

    def measure(
        self,
        verify: Callable[[str, str, HeaderInput, bytes], VerifiedWebhook],
        method: str,
        url: str,
        headers: HeaderInput,
        body: bytes,
    ) -> VerifiedWebhook:
        """Run ``verify(method, url, headers, body)`` and record its outcome and duration.

        Returns:
            What ``verify`` returned.

        Raises:
            Exception: Whatever ``verify`` raised, unchanged.
        """
        started = time.perf_counter()
        try:
            webhook = verify(method, url, headers, body)
        except Exception as e:
            self._done(started, _failed(e))
            raise
        self._done(started, _accepted(webhook))
        return webhook

    async def ameasure(self, verification: Awaitable[VerifiedWebhook]) -> VerifiedWebhook:
        """Await ``verification`` (not started yet) and record its outcome and duration.

        Returns:
            Its result.

        Raises:
            Exception: Whatever it raised, unchanged.
        """
        started = time.perf_counter()
        try:
            webhook = await verification
        except Exception as e:
            self._done(started, _failed(e))
            raise
        self._done(started, _accepted(webhook))
        return webhook


def verify_metrics(meter_provider: MeterProvider | None) -> VerifyMetrics | None:
    """What a verifier records with, or ``None`` for nothing (see the module docstring).

    Args:
        meter_provider: The provider, or ``None`` for the global one.

    Returns:
        The recorder, or ``None``.
    """
    instruments = _instruments(meter_provider)
    return None if instruments is None else VerifyMetrics(instruments)


# ---- the key cache ----------------------------------------------------------------------------


class CacheMetrics:
    """Counts the fetches, stale serves and refused refreshes of one key cache."""

    __slots__ = ("_fetches", "_stats")

    def __init__(self, instruments: _Instruments) -> None:
        self._fetches = instruments.fetches
        self._stats: dict[str, Counter] = {
            "stale_serves": instruments.stale_serves,
            "unknown_kid_refusals": instruments.refusals,
        }

    def counted(self, name: str) -> None:
        """Mirror one increment of the :class:`~upvest_verify.jwks.CacheStats` counter ``name``.

        Args:
            name: The counter; only ``stale_serves`` and ``unknown_kid_refusals`` are
                mirrored (fetches are recorded when they end, by :meth:`fetched`).
        """
        counter = self._stats.get(name)
        if counter is not None:
            counter.add(1)

    def fetched(self, reason: str, error: BaseException | None, *, ok: bool) -> None:
        """Record a fetch that ended.

        Args:
            reason: Why it ran, in the cache's words (``"cold start"``, ``"unknown kid"``...).
            error: Why it failed, if it did.
            ok: Whether it brought a usable key set; ``False`` without ``error`` means
                it was aborted (``error.type`` ``aborted``).
        """
        attributes: dict[str, str] = {TRIGGER: _TRIGGERS.get(reason, "other")}
        if not ok:
            attributes[ERROR_TYPE] = "aborted" if error is None else type(error).__qualname__
        self._fetches.add(1, attributes)


def cache_metrics(meter_provider: MeterProvider | None) -> CacheMetrics | None:
    """What a key cache records with, or ``None`` for nothing.

    Args:
        meter_provider: The provider, or ``None`` for the global one.

    Returns:
        The recorder, or ``None``.
    """
    instruments = _instruments(meter_provider)
    return None if instruments is None else CacheMetrics(instruments)
