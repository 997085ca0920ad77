"""OpenTelemetry metrics: what a Verifier and a JWKSCache record, and that nothing is without it.

The instruments are read back through the SDK's ``InMemoryMetricReader`` on a
``MeterProvider`` passed in (``meter_provider=``), never the process-global one.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from upvest_verify import ConfigurationError, KeyNotFound, KeySet, KeySetUnavailable, Verifier
from upvest_verify.jwks import FetchResult, JWKSCache
from upvest_verify.ledger import MemoryLedger
from upvest_verify.testing import (
    ManualClock,
    SignedWebhook,
    SigningKey,
    generate_key,
    make_jwks,
    make_key_set,
    sample_events,
    sign_webhook,
)

REFERENCE_NOW = 1_700_000_000  # the suite's fixed "now" (conftest.py)

VERIFICATIONS = "upvest_verify.verifications"
DURATION = "upvest_verify.verification.duration"
FETCHES = "upvest_verify.jwks.fetches"
STALE_SERVES = "upvest_verify.jwks.stale_serves"
REFUSALS = "upvest_verify.jwks.refresh_refusals"

BOUND = 10.0
"""Seconds a wait for a fetch in a thread may last: reached only when something is broken."""

ACCEPTED_V6 = {
    "upvest_verify.outcome": "accepted",
    "upvest_verify.layout": "upvest-v6",
    "upvest_verify.late": False,
}


@dataclass
class Metrics:
    """An SDK meter provider and the in-memory reader of what was recorded on it."""

    provider: Any
    reader: Any

    def points(self, name: str) -> list[Any]:
        """The data points of the instrument ``name`` (cumulative), checking its scope."""
        data = self.reader.get_metrics_data()
        found: list[Any] = []
        for resource in data.resource_metrics if data is not None else ():
            for scope in resource.scope_metrics:
                assert scope.scope.name == "upvest_verify"
                assert scope.scope.version == _version()
                for metric in scope.metrics:
                    if metric.name == name:
                        found.extend(metric.data.data_points)
        return found

    def counts(self, name: str) -> dict[frozenset[tuple[str, Any]], int]:
        """A counter's value for each set of attributes."""
        return {frozenset(p.attributes.items()): p.value for p in self.points(name)}

    def units(self) -> dict[str, str]:
        """Each recorded instrument's unit."""
        data = self.reader.get_metrics_data()
        return {
            metric.name: metric.unit
            for resource in data.resource_metrics
            for scope in resource.scope_metrics
            for metric in scope.metrics
        }


def _version() -> str:
    import upvest_verify

    return upvest_verify.__version__


def attrs(**values: Any) -> frozenset[tuple[str, Any]]:
    """Attributes as ``counts`` keys them; ``error_type`` stands for ``error.type``."""
    return frozenset((k.replace("error_type", "error.type"), v) for k, v in values.items())


def outcome(value: str, **more: Any) -> frozenset[tuple[str, Any]]:
    """The attributes of a verification with this outcome."""
    return attrs(**{"upvest_verify.outcome": value}, **more)


ACCEPTED = frozenset(ACCEPTED_V6.items())


@pytest.fixture
def metrics() -> Iterator[Metrics]:
    """A fresh SDK MeterProvider with an InMemoryMetricReader (skipped without the SDK)."""
    sdk = pytest.importorskip("opentelemetry.sdk.metrics")
    export = pytest.importorskip("opentelemetry.sdk.metrics.export")
    reader = export.InMemoryMetricReader()
    provider = sdk.MeterProvider(metric_readers=[reader])
    yield Metrics(provider, reader)
    provider.shutdown()


def parts(signed: SignedWebhook, **changes: Any) -> tuple[str, str, Any, bytes]:
    """The webhook's method, URL, headers and body, some replaced."""
    return (
        changes.get("method", signed.method),
        changes.get("url", signed.url),
        changes.get("headers", signed.headers),
        changes.get("body", signed.body),
    )


def webhook(key: SigningKey, **kwargs: Any) -> SignedWebhook:
    """A webhook signed by ``key`` at the reference time (Upvest's draft-06 layout)."""
    kwargs.setdefault("created", REFERENCE_NOW)
    return sign_webhook(sample_events(1), key=key, **kwargs)


class FunctionKeySource:
    """A key source served by a local function: the JWKS of ``keys``, or ``error`` raised."""

    def __init__(self, *keys: SigningKey) -> None:
        self.keys = list(keys)
        self.error: Exception | None = None
        self.body: bytes | None = None  # served instead of the JWKS when set

    def fetch(self) -> FetchResult:
        if self.error is not None:
            raise self.error
        return FetchResult(self.body or json.dumps(make_jwks(*self.keys)).encode())

    async def afetch(self) -> FetchResult:
        return self.fetch()


# ---- the verifier --------------------------------------------------------------------------


def test_accepted_and_rejected_verifications_are_counted_and_timed(
    metrics: Metrics, p521_key: SigningKey, key_set: KeySet
) -> None:
    """One counter increment and one duration per call, by outcome and reason code."""
    verifier = Verifier(key_set, clock=lambda: REFERENCE_NOW, meter_provider=metrics.provider)
    good = webhook(p521_key)
    verifier.verify(*parts(good))
    verifier.verify(*parts(webhook(p521_key, dialect="rfc9421", encoding="raw")))
    with pytest.raises(KeyNotFound):
        verifier.verify(*parts(webhook(generate_key())))
    for _ in range(2):
        with pytest.raises(Exception, match="digest_mismatch"):
            verifier.verify(*parts(good, body=good.body + b" "))

    assert metrics.counts(VERIFICATIONS) == {
        ACCEPTED: 1,
        outcome("accepted", **{"upvest_verify.layout": "rfc9421", "upvest_verify.late": False}): 1,
        outcome("rejected", error_type="unknown_key"): 1,
        outcome("rejected", error_type="digest_mismatch"): 2,
    }
    durations = {frozenset(p.attributes.items()): p for p in metrics.points(DURATION)}
    assert set(durations) == set(metrics.counts(VERIFICATIONS))
    assert durations[outcome("rejected", error_type="digest_mismatch")].count == 2
    assert all(p.sum > 0 and p.min >= 0 for p in durations.values())
    # The bucket advice is taken: 0.1 ms to 100 ms, and beyond.
    assert durations[ACCEPTED].explicit_bounds[0] == 0.0001
    assert 0.1 in durations[ACCEPTED].explicit_bounds
    assert metrics.units() == {VERIFICATIONS: "{verification}", DURATION: "s"}


def test_other_failures_are_errors_with_the_exception_type(
    metrics: Metrics, p521_key: SigningKey, key_set: KeySet
) -> None:
    """A caller's TypeError is counted as an error, not a rejection, and still raised."""
    verifier = Verifier(key_set, clock=lambda: REFERENCE_NOW, meter_provider=metrics.provider)
    with pytest.raises(TypeError):
        verifier.verify(*parts(webhook(p521_key), body="not bytes"))
    assert metrics.counts(VERIFICATIONS) == {outcome("error", error_type="TypeError"): 1}


def test_a_late_retry_is_counted_as_late(metrics: Metrics, p521_key: SigningKey) -> None:
    """A webhook accepted late carries ``upvest_verify.late=true``; one call, one count."""
    clock = ManualClock(REFERENCE_NOW)
    verifier = Verifier(
        make_key_set(p521_key),
        clock=clock,
        late_retries=MemoryLedger(retention=86400),
        meter_provider=metrics.provider,
    )
    signed = webhook(p521_key)
    clock.advance(600)
    assert verifier.verify(*parts(signed)).late is True
    late = {**ACCEPTED_V6, "upvest_verify.late": True}
    assert metrics.counts(VERIFICATIONS) == {frozenset(late.items()): 1}


@pytest.mark.parametrize("offload", [False, True], ids=["inline", "run-sync"])
def test_averify_is_counted_and_timed(
    metrics: Metrics, p521_key: SigningKey, key_set: KeySet, offload: bool
) -> None:
    """The async path records exactly as the sync one."""
    verifier = Verifier(key_set, clock=lambda: REFERENCE_NOW, meter_provider=metrics.provider)
    good = webhook(p521_key)

    async def scenario() -> None:
        run_sync = asyncio.to_thread if offload else None
        await verifier.averify(*parts(good), run_sync=run_sync)
        with pytest.raises(Exception, match="missing_signature"):
            await verifier.averify(*parts(good, headers=[("content-type", "application/json")]))

    asyncio.run(scenario())
    assert metrics.counts(VERIFICATIONS) == {
        ACCEPTED: 1,
        outcome("rejected", error_type="missing_signature"): 1,
    }
    assert sum(p.count for p in metrics.points(DURATION)) == 2


def test_instruments_are_created_once_per_provider(
    metrics: Metrics, p521_key: SigningKey, key_set: KeySet
) -> None:
    """Verifiers and caches on one provider ask it for the meter once and share one series.

    (The API's proxy meter, used until an SDK is set, keeps every instrument created on it.)
    """
    meters: list[Any] = []
    get_meter = metrics.provider.get_meter

    def counting_get_meter(*args: Any, **kwargs: Any) -> Any:
        meters.append(args)
        return get_meter(*args, **kwargs)

    metrics.provider.get_meter = counting_get_meter
    verifiers = [
        Verifier(key_set, clock=lambda: REFERENCE_NOW, meter_provider=metrics.provider)
        for _ in range(3)
    ]
    JWKSCache(FunctionKeySource(p521_key), meter_provider=metrics.provider)
    assert meters == [("upvest_verify", _version())]
    for verifier in verifiers:
        verifier.verify(*parts(webhook(p521_key)))
    assert metrics.counts(VERIFICATIONS) == {ACCEPTED: 3}


# ---- the key cache --------------------------------------------------------------------------


def test_key_fetches_refusals_and_stale_serves_are_counted(metrics: Metrics) -> None:
    """Each fetch that ends counts once, by trigger, with the exception type when it failed."""
    old, new = generate_key(), generate_key()
    source = FunctionKeySource(old)
    clock = ManualClock()
    cache = JWKSCache(source, monotonic=clock, meter_provider=metrics.provider)
    verifier = Verifier(cache, clock=lambda: REFERENCE_NOW, meter_provider=metrics.provider)

    verifier.verify(*parts(webhook(old)))  # cold start
    source.keys.append(new)
    clock.advance(2)
    verifier.verify(*parts(webhook(new)))  # an unknown kid: one refresh brings it in
    with pytest.raises(KeyNotFound):  # another within the cooldown: refused
        verifier.verify(*parts(webhook(generate_key())))
    source.error = OSError("key endpoint down")
    with pytest.raises(KeySetUnavailable):
        cache.refresh()
    source.error, source.body = None, b"not json"
    clock.advance(20)
    with pytest.raises(KeySetUnavailable):
        cache.refresh()
    clock.advance(300)  # past the TTL: the stale set, and a refresh in a thread of its own
    verifier.verify(*parts(webhook(old)))
    expired = attrs(**{"upvest_verify.jwks.trigger": "expired"}, error_type="JWKSError")
    deadline = time.monotonic() + BOUND
    while expired not in metrics.counts(FETCHES) and time.monotonic() < deadline:
        time.sleep(0.01)

    assert metrics.counts(FETCHES) == {
        attrs(**{"upvest_verify.jwks.trigger": "cold_start"}): 1,
        attrs(**{"upvest_verify.jwks.trigger": "unknown_kid"}): 1,
        attrs(**{"upvest_verify.jwks.trigger": "explicit"}, error_type="OSError"): 1,
        attrs(**{"upvest_verify.jwks.trigger": "explicit"}, error_type="JWKSError"): 1,
        expired: 1,
    }
    assert metrics.counts(REFUSALS) == {frozenset(): 1}
    assert metrics.counts(STALE_SERVES) == {frozenset(): 1}
    assert (cache.stats.fetches, cache.stats.failures, cache.stats.stale_serves) == (5, 3, 1)
    units = metrics.units()
    assert (units[FETCHES], units[REFUSALS], units[STALE_SERVES]) == (
        "{fetch}",
        "{refresh}",
        "{key_set}",
    )
    assert metrics.counts(VERIFICATIONS)[outcome("rejected", error_type="unknown_key")] == 1


def test_async_key_fetches_are_counted(metrics: Metrics) -> None:
    """A fetch run as a task (``afetch``) is counted like a thread's."""
    key = generate_key()
    cache = JWKSCache(
        FunctionKeySource(key), monotonic=ManualClock(), meter_provider=metrics.provider
    )
    verifier = Verifier(cache, clock=lambda: REFERENCE_NOW, meter_provider=metrics.provider)
    asyncio.run(verifier.averify(*parts(webhook(key))))
    assert metrics.counts(FETCHES) == {attrs(**{"upvest_verify.jwks.trigger": "cold_start"}): 1}
    assert metrics.counts(VERIFICATIONS) == {ACCEPTED: 1}


# ---- off ------------------------------------------------------------------------------------


def _block_opentelemetry(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make ``import opentelemetry`` (and its submodules) fail, as when it is not installed."""
    for name in [m for m in sys.modules if m == "opentelemetry" or m.startswith("opentelemetry.")]:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, "opentelemetry", None)


def test_without_opentelemetry_nothing_is_recorded(
    monkeypatch: pytest.MonkeyPatch, p521_key: SigningKey
) -> None:
    """Not importable: verifiers and caches work, record nothing, take the unmetered path."""
    try:
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    except ImportError:
        reader, provider = None, None
    else:  # even a provider passed in is not used
        reader = InMemoryMetricReader()
        provider = MeterProvider(metric_readers=[reader])
    _block_opentelemetry(monkeypatch)
    with pytest.raises(ImportError):
        import opentelemetry  # noqa: F401

    cache = JWKSCache(FunctionKeySource(p521_key), meter_provider=provider)
    verifier = Verifier(cache, clock=lambda: REFERENCE_NOW, meter_provider=provider)
    assert verifier._metrics is None  # verify() pays one attribute check
    good = webhook(p521_key)
    verifier.verify(*parts(good))
    with pytest.raises(Exception, match="digest_mismatch"):
        verifier.verify(*parts(good, body=b"{}"))
    asyncio.run(verifier.averify(*parts(good)))
    cache.refresh()
    monkeypatch.undo()
    if reader is not None:
        assert reader.get_metrics_data() is None or not any(
            scope.metrics
            for resource in reader.get_metrics_data().resource_metrics
            for scope in resource.scope_metrics
        )
        provider.shutdown()


def test_a_noop_provider_turns_metrics_off(p521_key: SigningKey, key_set: KeySet) -> None:
    """``NoOpMeterProvider()`` (as an application may pass to opt out): no recorder at all."""
    otel = pytest.importorskip("opentelemetry.metrics")
    verifier = Verifier(
        key_set, clock=lambda: REFERENCE_NOW, meter_provider=otel.NoOpMeterProvider()
    )
    assert verifier._metrics is None
    verifier.verify(*parts(webhook(p521_key)))


def test_unmetered_records_nothing(p521_key: SigningKey, key_set: KeySet) -> None:
    """``unmetered()`` (for verifications that are not traffic) gives an unmetered verifier."""
    from upvest_verify._metrics import unmetered

    verifier = Verifier(key_set, clock=lambda: REFERENCE_NOW, meter_provider=unmetered())
    assert verifier._metrics is None
    verifier.verify(*parts(webhook(p521_key)))


def test_a_disabled_sdk_turns_metrics_off(
    monkeypatch: pytest.MonkeyPatch, p521_key: SigningKey, key_set: KeySet
) -> None:
    """An SDK provider built with ``OTEL_SDK_DISABLED=true`` hands out a no-op meter: off."""
    sdk = pytest.importorskip("opentelemetry.sdk.metrics")
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    provider = sdk.MeterProvider()
    verifier = Verifier(key_set, clock=lambda: REFERENCE_NOW, meter_provider=provider)
    assert verifier._metrics is None
    verifier.verify(*parts(webhook(p521_key)))
    provider.shutdown()


def test_a_meter_provider_of_the_wrong_type_is_refused(key_set: KeySet) -> None:
    """Anything without ``get_meter`` fails at construction, like every other bad setting."""
    pytest.importorskip("opentelemetry.metrics")
    with pytest.raises(ConfigurationError, match="meter_provider must be a MeterProvider"):
        Verifier(key_set, meter_provider="prometheus")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="meter_provider must be a MeterProvider"):
        JWKSCache(FunctionKeySource(), meter_provider=object())  # type: ignore[arg-type]


def test_warm_up_records_nothing_on_the_global_provider(
    metrics: Metrics, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Start-up's throwaway verifications never reach the application's metrics."""
    from opentelemetry import metrics as otel_metrics

    import upvest_verify

    monkeypatch.setattr(otel_metrics, "get_meter_provider", lambda: metrics.provider)
    upvest_verify.warm_up()
    upvest_verify.Verifier(make_key_set()).warm_up()
    assert metrics.points(VERIFICATIONS) == []
    assert metrics.points(DURATION) == []
