"""The safe entry points: :func:`verify` and :class:`Verifier`.

:func:`verify` is pure: message parts, a :class:`~upvest_verify.KeySet` and
``now`` in, a :class:`~upvest_verify.VerifiedWebhook` or a
:class:`~upvest_verify.VerificationError` out. :class:`Verifier` adds a clock,
a policy and a key provider (such as :class:`~upvest_verify.jwks.JWKSCache`)
that it asks for one rate-limited refresh when a ``keyid`` is unknown, and two
opt-in steps around that one verification flow: a replay store that refuses a
signature already handled, and the acceptance of authentic retries signed too
long ago, whose events an event ledger deduplicates.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, TypeAlias, TypeVar

from . import _fast
from ._failure import remember_failure
from ._fast import fast_verify
from ._keyset import KeySet
from ._message import HeaderInput, normalise_fields, request_message
from ._metrics import verify_metrics
from ._policy import Policy
from ._result import Layout, VerifiedWebhook
from ._rules import DEFAULT_LAYOUTS
from ._verify import verify_message
from .errors import ConfigurationError, Reason, VerificationError
from .types import AsyncKeyProvider, AsyncLedger, Clock, KeyProvider, Ledger, ReplayStore

if TYPE_CHECKING:
    import logging

    from opentelemetry.metrics import MeterProvider

    from .ledger import BaseLedger

__all__ = ["Verifier", "verify"]


def _logger() -> logging.Logger:
    # logging costs a few ms at import; only failures and late retries log.
    import logging

    return logging.getLogger("upvest_verify")


_DEFAULT_POLICY = Policy()
T = TypeVar("T")
RunSync = Callable[[Callable[[], T]], Awaitable[T]]
Keys: TypeAlias = KeySet | KeyProvider


def _body_bytes(body: object) -> bytes:
    if isinstance(body, bytes):
        return body
    if isinstance(body, (bytearray, memoryview)):
        return bytes(body)
    raise TypeError(f"body must be bytes, not {type(body).__name__}")


def _unexpected(error: Exception) -> VerificationError:
    # The safety net: a bug must fail closed, never accept; it is logged with its traceback.
    _logger().exception("unexpected error while verifying a webhook")
    return VerificationError(Reason.MALFORMED_HEADER, f"unexpected {type(error).__name__}")


def _verify(
    method: str,
    url: str,
    headers: HeaderInput,
    body: bytes,
    keys: KeySet,
    now: float,
    policy: Policy,
    layouts: tuple[Layout, ...],
) -> VerifiedWebhook:
    try:
        if _fast.ENABLED:
            result = fast_verify(method, url, headers, body, keys, now, policy, layouts)
            if result is not None:
                return result
    except VerificationError as e:
        # Failure path only: keeps references for the rejection log's diagnosis.
        remember_failure(e, method, url, headers, None, body, keys, policy, layouts)
        raise
    except Exception as e:
        raise _unexpected(e) from e
    # Wrong Python types are the caller's mistake, not the sender's: TypeError, at once.
    if not isinstance(method, str) or not isinstance(url, str):
        raise TypeError("method and url must be str")
    raw = _body_bytes(body)
    fields = normalise_fields(headers)
    try:
        message = request_message(method, url, fields)
        return verify_message(message, raw, keys=keys, now=now, policy=policy, layouts=layouts)
    except VerificationError as e:
        remember_failure(e, method, url, None, fields, raw, keys, policy, layouts)
        raise
    except Exception as e:
        raise _unexpected(e) from e


def verify(
    method: str,
    url: str,
    headers: HeaderInput,
    body: bytes,
    *,
    keys: KeySet,
    now: float | None = None,
    policy: Policy | None = None,
) -> VerifiedWebhook:
    """Verify one Upvest webhook. Pure: no I/O.

    Args:
        method: The request method as received (``"POST"``).
        url: The URL Upvest sent the request to: absolute
            (``https://host/path?query``) or origin form (``/path?query``), with the
            path and query exactly as received (not percent-decoded).
        headers: A mapping or an iterable of ``(name, value)`` pairs, ``str`` or
            ``bytes``; repeated names allowed and combined per RFC 9421 §2.1.
        body: The raw body bytes.
        keys: The Upvest key set (see :meth:`KeySet.from_jwks`).
        now: Current Unix time; defaults to :func:`time.time`.
        policy: The policy; defaults to :class:`Policy()`.

    Returns:
        The verified webhook.

    Raises:
        VerificationError: The webhook is not acceptable; ``exc.reason`` says why.
            Whatever the request's contents, no other exception escapes.
        TypeError: A Python type is wrong (a ``str`` body, an ``int`` header value,
            headers that are not ``(name, value)`` pairs): a programming error.
    """
    return _verify(
        method,
        url,
        headers,
        body,
        keys,
        time.time() if now is None else now,
        policy or _DEFAULT_POLICY,
        DEFAULT_LAYOUTS,
    )


def _late_window(ledger: object) -> float:
    # The ledger's retention bounds how old a late webhook may be: within it, every
    # event the webhook carries that was completed before is still remembered as done.
    if not isinstance(ledger, (Ledger, AsyncLedger)):
        raise ConfigurationError("late_retries must be an event ledger such as SQLiteLedger")
    retention = getattr(ledger, "retention", None)
    if (
        isinstance(retention, bool)
        or not isinstance(retention, (int, float))
        or not (math.isfinite(retention) and retention > 0)
    ):
        raise ConfigurationError(
            "late_retries needs a ledger with a positive, finite 'retention' in seconds"
        )
    return float(retention)


def _replayed(webhook: VerifiedWebhook) -> VerificationError:
    what = "signature" if webhook.nonce is None else f"nonce {webhook.nonce!r}"
    return VerificationError(
        Reason.REPLAYED,
        f"{what} of key {webhook.key_id!r} (label {webhook.label!r}) was already handled",
        key_id=webhook.key_id,
    )


class Verifier:
    """Verifies webhooks with a fixed policy, a clock and a key set or key provider.

    Thread-safe and loop-agnostic: one instance serves a whole application.

    Example::

        keys = JWKSCache(client.key_source())  # an upvest_verify.client.UpvestClient
        verifier = Verifier(keys, policy=Policy(skew=30))
        webhook = verifier.verify("POST", url, headers, body)

    **Replay store** (``replay_store``, off by default). After a signature verified,
    the store is asked whether that signature (its ``(keyid, nonce)``, see
    :func:`~upvest_verify.ledger.replay_key`) was handled before; if so the webhook is
    refused with ``replayed`` (401). The store learns a signature only from
    :meth:`record`/:meth:`arecord`, to be called **after the handler answered 2xx**;
    a delivery whose handler failed is accepted again when Upvest retries it. It is
    off by default because Upvest may resend a delivery with the same signature (a
    lost 2xx answer): with the store on, that resend is refused until the signature
    expires and ``expired`` after that, unless ``late_retries`` is on too, which then
    accepts it late and lets the ledger skip its done events. Two copies of one
    delivery arriving at the same time both pass (nothing is recorded yet): the event
    ledger, not the replay store, makes handling exactly-once. A store that fails
    raises its error (:class:`~upvest_verify.ledger.LedgerUnavailable`) out of
    :meth:`verify`; the webhook is never accepted unchecked (answer 503).

    **Late retries** (``late_retries``, off by default). Whether Upvest re-signs a
    retry is unknown; if it does not, its back-off outlasts a short window and every
    later attempt is ``expired``, which blocks the tenant's queue. Given an event
    ledger, a webhook whose *only* fault is its age (an ``expired`` error carrying
    :attr:`~upvest_verify.VerificationError.signed_at`: ``expires`` passed or
    ``created`` beyond ``max_age``, while ``created`` is not in the future and the
    window is well formed) is verified again as of the instant it was signed, so
    every other rule (signature, digest, coverage, key) applies exactly as to a fresh
    webhook, and is accepted if it was signed at most ``ledger.retention`` seconds
    ago. The result has ``late=True`` and a warning is logged. Its events **must** go
    through that ledger (``ledger.process(webhook.events, handle)``), which skips the
    ones completed before: the retention guarantees it still remembers them. A
    captured webhook can then be replayed for up to the retention, but never makes a
    completed event run again.

    **Metrics** (with ``opentelemetry-api`` installed, the ``otel`` extra). Each
    :meth:`verify`/:meth:`averify` call is counted (``upvest_verify.verifications``) and
    timed (``upvest_verify.verification.duration``) on the ``upvest_verify`` meter, by
    outcome and, for a failure, ``error.type`` (the reason code); see
    docs/guides/metrics.md. Without OpenTelemetry nothing is recorded or imported.

    Args:
        keys: A :class:`KeySet`, or a provider implementing :class:`KeyProvider`
            (and :class:`AsyncKeyProvider` for :meth:`averify`).
        policy: The policy; defaults to :class:`Policy()`.
        clock: Wall clock in Unix seconds, used for ``created``/``expires``.
        replay_store: A :class:`~upvest_verify.types.ReplayStore` such as
            :class:`~upvest_verify.ledger.SQLiteReplayStore` (give it the same clock),
            or ``None`` (default) for no replay check.
        late_retries: The event ledger the application processes events with
            (:class:`~upvest_verify.ledger.BaseLedger`), to accept authentic webhooks
            that are only too old; ``None`` (default) rejects them as ``expired``.
        meter_provider: The OpenTelemetry ``MeterProvider`` to record metrics with;
            ``None`` (default): the global one. A ``NoOpMeterProvider`` turns them off.

    Raises:
        ConfigurationError: ``keys`` is neither a key set nor a provider, or
            ``replay_store``/``late_retries`` is not a store/ledger.
    """

    __slots__ = (
        "_clock",
        "_keys",
        "_late",
        "_late_window",
        "_layouts",
        "_metrics",
        "_policy",
        "_replay",
    )

    def __init__(
        self,
        keys: Keys,
        *,
        policy: Policy | None = None,
        clock: Clock = time.time,
        replay_store: ReplayStore | None = None,
        late_retries: BaseLedger | None = None,
        meter_provider: MeterProvider | None = None,
    ) -> None:
        if not isinstance(keys, (KeySet, KeyProvider)):
            raise ConfigurationError("keys must be a KeySet or a KeyProvider such as JWKSCache")
        if policy is not None and not isinstance(policy, Policy):
            raise ConfigurationError("policy must be a Policy")
        if replay_store is not None and not isinstance(replay_store, ReplayStore):
            raise ConfigurationError(
                "replay_store must implement seen/record/aseen/arecord, "
                "e.g. upvest_verify.ledger.SQLiteReplayStore"
            )
        self._keys = keys
        self._policy = policy or Policy()
        self._clock = clock
        self._replay = replay_store
        self._late = late_retries
        self._late_window = 0.0 if late_retries is None else _late_window(late_retries)
        # The base layout that verified last is tried first next time, so a sender
        # sticking to one dialect costs one ECDSA verify, not two. A plain attribute
        # swap: a race only costs one extra verify.
        self._layouts: tuple[Layout, ...] = DEFAULT_LAYOUTS
        # Found out once: without OpenTelemetry, verify() pays one attribute check.
        self._metrics = verify_metrics(meter_provider)

    @property
    def policy(self) -> Policy:
        """The policy this verifier enforces."""
        return self._policy

    @property
    def keys(self) -> Keys:
        """The key set or key provider."""
        return self._keys

    @property
    def replay_store(self) -> ReplayStore | None:
        """The replay store, or ``None`` when replays are not checked."""
        return self._replay

    @property
    def late_retries(self) -> BaseLedger | None:
        """The event ledger that makes late retries acceptable, or ``None``."""
        return self._late

    def _learn(self, layout: Layout) -> None:
        self._layouts = (layout, *(x for x in DEFAULT_LAYOUTS if x != layout))

    def _check(
        self,
        method: str,
        url: str,
        headers: HeaderInput,
        body: bytes,
        keys: KeySet,
        now: float | None,
    ) -> VerifiedWebhook:
        layouts = self._layouts
        result = _verify(
            method,
            url,
            headers,
            body,
            keys,
            self._clock() if now is None else now,
            self._policy,
            layouts,
        )
        if layouts[0] != result.dialect.layout:
            self._learn(result.dialect.layout)
        return result

    @staticmethod
    def _retry_kid(error: VerificationError, keys: KeySet) -> str | None:
        # Any signature's unknown kid warrants the (rate-limited) refresh, even when
        # another, extra signature produced the error that was raised.
        return next((kid for kid in error.unknown_key_ids if kid not in keys), None)

    def _run(
        self, method: str, url: str, headers: HeaderInput, body: bytes, now: float | None
    ) -> VerifiedWebhook:
        # One verification at ``now`` (None: the clock), with one refresh for an unknown kid.
        keys = self._keys
        if isinstance(keys, KeySet):
            return self._check(method, url, headers, body, keys, now)
        snapshot = keys.current()
        try:
            return self._check(method, url, headers, body, snapshot, now)
        except VerificationError as e:
            kid = self._retry_kid(e, snapshot)
            if kid is None:
                raise
            fresh = keys.refresh_for(kid)
            if fresh is None or fresh is snapshot:
                raise
        return self._check(method, url, headers, body, fresh, now)

    # -- late retries

    def _late_start(self, error: VerificationError) -> tuple[float, float]:
        # The error's signing instant if it is recent enough to try; else the error.
        signed_at = error.signed_at
        assert signed_at is not None
        now = self._clock()
        if now - signed_at > self._late_window:
            raise error
        return now, float(signed_at)

    def _late_result(
        self, error: VerificationError, result: VerifiedWebhook, now: float
    ) -> VerifiedWebhook:
        # The signature that verified as of the signing instant decides the real age.
        created = result.created
        if created is None or now - created > self._late_window:
            raise error
        _logger().warning(
            "accepted a late webhook: key %r, label %r, signed %s s ago "
            "(its events must go through the late_retries ledger)",
            result.key_id,
            result.label,
            f"{now - created:.0f}",
        )
        return dataclasses.replace(result, late=True)

    # -- public

    def verify(self, method: str, url: str, headers: HeaderInput, body: bytes) -> VerifiedWebhook:
        """Verify a webhook; see :func:`verify` for the arguments.

        With a key provider, an unknown ``keyid`` leads to at most one refresh
        (rate-limited by the provider) and one more attempt. With ``late_retries``,
        a webhook that is only too old is checked again as of its signing instant
        (see the class docstring). With a ``replay_store``, a signature already
        recorded is refused.

        Returns:
            The verified webhook.

        Raises:
            VerificationError: The webhook is not acceptable (``replayed`` for a
                recorded signature).
            LedgerUnavailable: The replay store failed; nothing was accepted.
            TypeError: A Python type is wrong (see :func:`verify`).
        """
        if self._metrics is None:
            return self._verify_unmetered(method, url, headers, body)
        return self._metrics.measure(self._verify_unmetered, method, url, headers, body)

    def _verify_unmetered(
        self, method: str, url: str, headers: HeaderInput, body: bytes
    ) -> VerifiedWebhook:
        keys = self._keys
        try:
            if isinstance(keys, KeySet):
                result = self._check(method, url, headers, body, keys, None)
            else:
                result = self._run(method, url, headers, body, None)
        except VerificationError as e:
            if e.signed_at is None or self._late is None:
                raise
            now, signed_at = self._late_start(e)
            result = self._late_result(e, self._run(method, url, headers, body, signed_at), now)
        if self._replay is not None and self._replay.seen(result):
            raise _replayed(result)
        return result

    async def _arun(
        self,
        method: str,
        url: str,
        headers: HeaderInput,
        body: bytes,
        now: float | None,
        run_sync: RunSync[VerifiedWebhook] | None,
    ) -> VerifiedWebhook:
        async def check(keys: KeySet) -> VerifiedWebhook:
            if run_sync is None:
                return self._check(method, url, headers, body, keys, now)
            return await run_sync(lambda: self._check(method, url, headers, body, keys, now))

        if isinstance(self._keys, KeySet):
            return await check(self._keys)
        if not isinstance(self._keys, AsyncKeyProvider) or not inspect.iscoroutinefunction(
            self._keys.acurrent
        ):
            raise ConfigurationError("averify() needs a KeySet or an AsyncKeyProvider")
        snapshot = await self._keys.acurrent()
        try:
            return await check(snapshot)
        except VerificationError as e:
            kid = self._retry_kid(e, snapshot)
            if kid is None:
                raise
            fresh = await self._keys.arefresh_for(kid)
            if fresh is None or fresh is snapshot:
                raise
        return await check(fresh)

    async def averify(
        self,
        method: str,
        url: str,
        headers: HeaderInput,
        body: bytes,
        *,
        run_sync: RunSync[VerifiedWebhook] | None = None,
    ) -> VerifiedWebhook:
        """Verify a webhook from async code without blocking the event loop on I/O.

        Keys come from the provider's async methods, the replay check from the
        store's ``aseen``. The CPU-bound check (about one P-521 verify, ~0.7 ms;
        ``cryptography`` releases the GIL) runs inline, or through ``run_sync`` to
        offload it, e.g. ``anyio.to_thread.run_sync``. Late retries and replays are
        handled as in :meth:`verify`.

        Returns:
            The verified webhook.

        Raises:
            VerificationError: The webhook is not acceptable.
            LedgerUnavailable: The replay store failed; nothing was accepted.
            TypeError: A Python type is wrong (see :func:`verify`).
            ConfigurationError: The key provider has no async interface.
        """
        if self._metrics is None:
            return await self._averify_unmetered(method, url, headers, body, run_sync)
        return await self._metrics.ameasure(
            self._averify_unmetered(method, url, headers, body, run_sync)
        )

    async def _averify_unmetered(
        self,
        method: str,
        url: str,
        headers: HeaderInput,
        body: bytes,
        run_sync: RunSync[VerifiedWebhook] | None,
    ) -> VerifiedWebhook:
        try:
            result = await self._arun(method, url, headers, body, None, run_sync)
        except VerificationError as e:
            if e.signed_at is None or self._late is None:
                raise
            now, signed_at = self._late_start(e)
            late = await self._arun(method, url, headers, body, signed_at, run_sync)
            result = self._late_result(e, late, now)
        if self._replay is not None and await self._replay.aseen(result):
            raise _replayed(result)
        return result

    def replay_until(self, webhook: VerifiedWebhook) -> float:
        """Until when the replay store must remember ``webhook``'s signature (Unix seconds).

        One second past the last instant the policy accepts it, plus the skew:
        ``expires + skew + 1``; without ``expires``, ``created + max_age + skew + 1``;
        with neither (only possible with ``require_created=False``, and then the
        signature never expires), ``max_age + skew + 1`` seconds from now.

        Args:
            webhook: A webhook this verifier accepted.

        Returns:
            The instant, on this verifier's clock.
        """
        policy = self._policy
        if webhook.expires is not None:
            last = webhook.expires + policy.skew
        elif webhook.created is not None:
            last = webhook.created + policy.max_age + policy.skew
        else:
            last = self._clock() + policy.max_age + policy.skew
        return last + 1

    def _to_record(self, webhook: VerifiedWebhook) -> float | None:
        if not isinstance(webhook, VerifiedWebhook):
            raise TypeError(f"record() takes a VerifiedWebhook, not {type(webhook).__name__}")
        until = self.replay_until(webhook)
        # A late webhook's window has ended: there is nothing left to refuse.
        return until if until > self._clock() else None

    def record(self, webhook: VerifiedWebhook) -> None:
        """Record that ``webhook`` was handled: a replay of its signature is refused.

        Call it only after the handler succeeded (answered 2xx), never before: a
        delivery whose handler failed must be accepted again when Upvest retries it.
        Does nothing without a replay store, so adapters may call it always. The
        signature is remembered until :meth:`replay_until`; a late webhook, whose
        window already ended, is not recorded (its events' ledger deduplicates).

        Args:
            webhook: A webhook this verifier accepted.

        Raises:
            TypeError: ``webhook`` is not a :class:`VerifiedWebhook`.
            LedgerUnavailable: The replay store failed: the signature is not
                remembered, so a replay of it would pass this check (the event ledger
                still skips done events). The handler's work is done: log it and
                still answer 2xx.
        """
        if self._replay is None:
            return
        until = self._to_record(webhook)
        if until is not None:
            self._replay.record(webhook, until=until)

    async def arecord(self, webhook: VerifiedWebhook) -> None:
        """:meth:`record` without blocking the event loop (through the store's ``arecord``)."""
        if self._replay is None:
            return
        until = self._to_record(webhook)
        if until is not None:
            await self._replay.arecord(webhook, until=until)

    def warm_up(self) -> None:
        """Prime the first verification: :func:`upvest_verify.warm_up` under this policy.

        Verifies built-in webhooks with a built-in key through a throwaway verifier
        with this verifier's policy; asks this verifier's key provider, replay store
        and ledger for nothing and does no I/O.

        Raises:
            RuntimeError: A built-in webhook did not verify (see
                :func:`upvest_verify.warm_up`).
        """
        from ._warmup import warm_up

        warm_up(self._policy)

    def __repr__(self) -> str:
        extra = "" if self._replay is None else f", replay_store={self._replay!r}"
        if self._late is not None:
            extra += f", late_retries={self._late!r}"
        return f"Verifier(keys={self._keys!r}, policy={self._policy!r}{extra})"
