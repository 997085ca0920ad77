"""The safe entry points: :func:`verify` and :class:`Verifier`.

:func:`verify` is pure: message parts, a :class:`~upvest_verify.KeySet` and
``now`` in, a :class:`~upvest_verify.VerifiedWebhook` or a
:class:`~upvest_verify.VerificationError` out. :class:`Verifier` adds a clock,
a policy and a key provider (such as :class:`~upvest_verify.jwks.JWKSCache`)
that it asks for one rate-limited refresh when a ``keyid`` is unknown.
"""

from __future__ import annotations

import inspect
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TypeAlias, TypeVar

from . import _fast
from ._fast import fast_verify
from ._keyset import KeySet
from ._message import HeaderInput, normalise_fields, request_message
from ._policy import Policy
from ._result import Layout, VerifiedWebhook
from ._rules import DEFAULT_LAYOUTS
from ._verify import verify_message
from .errors import ConfigurationError, Reason, VerificationError
from .types import AsyncKeyProvider, Clock, KeyProvider

__all__ = ["Verifier", "verify"]

logger = logging.getLogger("upvest_verify")

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
    logger.exception("unexpected error while verifying a webhook")
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
    except VerificationError:
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
    except VerificationError:
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


class Verifier:
    """Verifies webhooks with a fixed policy, a clock and a key set or key provider.

    Thread-safe and loop-agnostic: one instance serves a whole application.

    Example::

        keys = JWKSCache(URLKeySource("https://api.upvest.co/auth/verify_keys"))
        verifier = Verifier(keys, policy=Policy(skew=30))
        webhook = verifier.verify("POST", url, headers, body)

    Args:
        keys: A :class:`KeySet`, or a provider implementing :class:`KeyProvider`
            (and :class:`AsyncKeyProvider` for :meth:`averify`).
        policy: The policy; defaults to :class:`Policy()`.
        clock: Wall clock in Unix seconds, used for ``created``/``expires``.

    Raises:
        ConfigurationError: ``keys`` is neither a key set nor a provider.
    """

    __slots__ = ("_clock", "_keys", "_layouts", "_policy")

    def __init__(
        self, keys: Keys, *, policy: Policy | None = None, clock: Clock = time.time
    ) -> None:
        if not isinstance(keys, (KeySet, KeyProvider)):
            raise ConfigurationError("keys must be a KeySet or a KeyProvider such as JWKSCache")
        if policy is not None and not isinstance(policy, Policy):
            raise ConfigurationError("policy must be a Policy")
        self._keys = keys
        self._policy = policy or Policy()
        self._clock = clock
        # The base layout that verified last is tried first next time, so a sender
        # sticking to one dialect costs one ECDSA verify, not two. A plain attribute
        # swap: a race only costs one extra verify.
        self._layouts: tuple[Layout, ...] = DEFAULT_LAYOUTS

    @property
    def policy(self) -> Policy:
        """The policy this verifier enforces."""
        return self._policy

    @property
    def keys(self) -> Keys:
        """The key set or key provider."""
        return self._keys

    def _learn(self, layout: Layout) -> None:
        self._layouts = (layout, *(x for x in DEFAULT_LAYOUTS if x != layout))

    def _check(
        self, method: str, url: str, headers: HeaderInput, body: bytes, keys: KeySet
    ) -> VerifiedWebhook:
        layouts = self._layouts
        result = _verify(method, url, headers, body, keys, self._clock(), self._policy, layouts)
        if layouts[0] != result.dialect.layout:
            self._learn(result.dialect.layout)
        return result

    @staticmethod
    def _retry_kid(error: VerificationError, keys: KeySet) -> str | None:
        # Any signature's unknown kid warrants the (rate-limited) refresh, even when
        # another, extra signature produced the error that was raised.
        return next((kid for kid in error.unknown_key_ids if kid not in keys), None)

    def verify(self, method: str, url: str, headers: HeaderInput, body: bytes) -> VerifiedWebhook:
        """Verify a webhook; see :func:`verify` for the arguments.

        With a key provider, an unknown ``keyid`` leads to at most one refresh
        (rate-limited by the provider) and one more attempt.

        Returns:
            The verified webhook.

        Raises:
            VerificationError: The webhook is not acceptable.
            TypeError: A Python type is wrong (see :func:`verify`).
        """
        keys = self._keys
        if isinstance(keys, KeySet):
            return self._check(method, url, headers, body, keys)
        snapshot = keys.current()
        try:
            return self._check(method, url, headers, body, snapshot)
        except VerificationError as e:
            kid = self._retry_kid(e, snapshot)
            if kid is None:
                raise
            fresh = keys.refresh_for(kid)
            if fresh is None or fresh is snapshot:
                raise
        return self._check(method, url, headers, body, fresh)

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

        Keys come from the provider's async methods. The CPU-bound check (about one
        P-521 verify, ~0.7 ms; ``cryptography`` releases the GIL) runs inline, or
        through ``run_sync`` to offload it, e.g. ``anyio.to_thread.run_sync``.

        Returns:
            The verified webhook.

        Raises:
            VerificationError: The webhook is not acceptable.
            TypeError: A Python type is wrong (see :func:`verify`).
            ConfigurationError: The key provider has no async interface.
        """

        async def check(keys: KeySet) -> VerifiedWebhook:
            if run_sync is None:
                return self._check(method, url, headers, body, keys)
            return await run_sync(lambda: self._check(method, url, headers, body, keys))

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

    def __repr__(self) -> str:
        return f"Verifier(keys={self._keys!r}, policy={self._policy!r})"
