"""Running the check from async code (private).

- :func:`verify_async`: verify from a coroutine, offloading the CPU-bound P-521
  check (and a synchronous key provider's I/O) through a ``run_sync`` callable.
- :class:`Offloader`: that callable for anyio: worker threads under a
  per-event-loop ``CapacityLimiter``.
- :class:`ASGIVerification`: the wiring the Starlette middleware and FastAPI's
  stand-alone dependency share (verifier, body limit, URL rebuilder, offloader),
  and :func:`store_result`, which puts the verified webhook where both look for it.

No web framework is imported here; anyio is imported only when an
:class:`Offloader` is built (the Starlette and FastAPI extras bring it, the
Django adapter offloads through asgiref instead).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import os
import weakref
from collections.abc import Awaitable, Callable, Iterable, Mapping, MutableMapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from upvest_verify import KeySet, VerifiedWebhook, Verifier
from upvest_verify.adapters._body import BodyReader, declared_length, resolve_limit
from upvest_verify.adapters._url import URLRebuilder
from upvest_verify.errors import ConfigurationError
from upvest_verify.types import AsyncKeyProvider

if TYPE_CHECKING:
    import anyio

__all__ = [
    "DEFAULT_MAX_THREADS",
    "DELIVERY_SCOPE_KEY",
    "DELIVERY_STATE_KEY",
    "SCOPE_KEY",
    "STATE_KEY",
    "ASGIVerification",
    "Offloader",
    "RunSync",
    "store_delivery",
    "store_result",
    "verify_async",
]

RunSync = Callable[[Callable[[], VerifiedWebhook]], Awaitable[VerifiedWebhook]]
"""Runs a callable in a worker thread and returns its result."""

SCOPE_KEY: Final = "upvest_verify"
"""``scope[SCOPE_KEY]`` holds the :class:`~upvest_verify.VerifiedWebhook` of a verified request."""

STATE_KEY: Final = "upvest_webhook"
"""The same result under ``scope["state"]``: ``request.state.upvest_webhook``."""

DELIVERY_SCOPE_KEY: Final = "upvest_verify.delivery"
"""``scope[DELIVERY_SCOPE_KEY]`` holds the :class:`~upvest_verify.adapters.starlette.Delivery`
of a request admitted through an event ledger."""

DELIVERY_STATE_KEY: Final = "upvest_delivery"
"""The same delivery under ``scope["state"]``: ``request.state.upvest_delivery``."""

DEFAULT_MAX_THREADS: Final = os.cpu_count() or 2
"""Worker threads verifying at once, per event loop: one per core.

The check is CPU-bound; more threads than cores add little throughput but make
the event loop wait longer for the GIL (2 cores, 16 concurrent webhooks: loop
lag p99 about 4 ms with 2 threads, about 16 ms with anyio's 40; see
``benchmarks/bench_starlette_middleware.py``)."""


async def verify_async(
    verifier: Verifier,
    method: str,
    url: str,
    headers: Any,
    body: bytes,
    run_sync: RunSync | None,
) -> VerifiedWebhook:
    """Verify from async code, offloading through ``run_sync`` when given.

    With a key set or an async key provider this is :meth:`Verifier.averify`. A
    provider with only a synchronous interface may do network I/O, so the whole
    :meth:`Verifier.verify` then runs through ``run_sync`` (or inline if offloading
    is off).

    Args:
        verifier: The verifier.
        method: The request method.
        url: The rebuilt URL.
        headers: Header field lines.
        body: The raw body.
        run_sync: Runs a callable in a worker thread, or ``None`` to stay inline.

    Returns:
        The verified webhook.

    Raises:
        VerificationError: The webhook is not acceptable.
    """
    keys = verifier.keys
    if isinstance(keys, KeySet) or (
        isinstance(keys, AsyncKeyProvider) and inspect.iscoroutinefunction(keys.acurrent)
    ):
        return await verifier.averify(method, url, headers, body, run_sync=run_sync)
    if run_sync is None:
        return verifier.verify(method, url, headers, body)
    return await run_sync(lambda: verifier.verify(method, url, headers, body))


class Offloader:
    """Runs checks in worker threads through a per-event-loop ``CapacityLimiter``.

    Args:
        max_threads: Threads per event loop; ``None`` uses anyio's shared default
            limiter (40 threads).

    Raises:
        ConfigurationError: ``max_threads`` is not a positive int or ``None``.
    """

    def __init__(self, max_threads: int | None) -> None:
        if max_threads is not None and (
            isinstance(max_threads, bool) or not isinstance(max_threads, int) or max_threads < 1
        ):
            raise ConfigurationError(
                f"max_threads must be an int >= 1 or None, got {max_threads!r}"
            )
        self._max_threads = max_threads
        # A limiter belongs to one event loop; a process may run several (tests, H7).
        self._limiters: weakref.WeakKeyDictionary[object, anyio.CapacityLimiter] = (
            weakref.WeakKeyDictionary()
        )

    def _limiter(self) -> anyio.CapacityLimiter | None:
        import anyio

        if self._max_threads is None:
            return None
        try:
            loop: object = asyncio.get_running_loop()
        except RuntimeError:  # not asyncio (trio): anyio's default limiter
            return None
        limiter = self._limiters.get(loop)
        if limiter is None:
            limiter = anyio.CapacityLimiter(self._max_threads)
            with contextlib.suppress(TypeError):  # a loop type without weak references
                self._limiters[loop] = limiter
        return limiter

    async def __call__(self, check: Callable[[], VerifiedWebhook]) -> VerifiedWebhook:
        """Run ``check`` in a worker thread and return its result."""
        import anyio.to_thread

        # cryptography releases the GIL during the P-521 verify, so worker threads
        # verify in parallel and the event loop keeps serving (threat-model.md §5 K8).
        return await anyio.to_thread.run_sync(check, limiter=self._limiter())


def store_result(scope: MutableMapping[str, Any], webhook: VerifiedWebhook) -> None:
    """Put a verified webhook into an ASGI scope: ``scope["upvest_verify"]`` and the state.

    Args:
        scope: The ASGI HTTP scope.
        webhook: The verified webhook.
    """
    scope[SCOPE_KEY] = webhook
    scope.setdefault("state", {})[STATE_KEY] = webhook


def store_delivery(scope: MutableMapping[str, Any], delivery: object) -> None:
    """Put an admitted delivery into an ASGI scope: its own key and the state.

    Args:
        scope: The ASGI HTTP scope.
        delivery: The :class:`~upvest_verify.adapters._delivery.Delivery`.
    """
    scope[DELIVERY_SCOPE_KEY] = delivery
    scope.setdefault("state", {})[DELIVERY_STATE_KEY] = delivery


@dataclass(frozen=True, slots=True)
class ASGIVerification:
    """How an ASGI adapter verifies: one set of options, built and validated once.

    The Starlette middleware and FastAPI's stand-alone dependency take the same
    options; both build them with :meth:`create`. Holds no per-request state.

    Attributes:
        verifier: The verifier.
        max_body_size: The body limit in bytes.
        url: How to rebuild the URL Upvest called.
        run_sync: The offloader, or ``None`` to verify on the event loop.
    """

    verifier: Verifier
    max_body_size: int
    url: URLRebuilder
    run_sync: RunSync | None

    @classmethod
    def create(
        cls,
        verifier: Verifier,
        *,
        max_body_size: int | None = None,
        offload: bool = True,
        max_threads: int | None = DEFAULT_MAX_THREADS,
        public_url: str | None = None,
        trusted_proxies: Iterable[str] = (),
        proxy_headers: str = "x-forwarded",
        path_prefix: str = "",
    ) -> ASGIVerification:
        """Validate the options (see the Starlette middleware for their meaning).

        Returns:
            The verification setup.

        Raises:
            ConfigurationError: An option is invalid.
        """
        limit = resolve_limit(verifier, max_body_size)
        run_sync = Offloader(max_threads) if offload else None
        url = URLRebuilder.create(
            public_url=public_url,
            trusted_proxies=trusted_proxies,
            proxy_headers=proxy_headers,
            path_prefix=path_prefix,
        )
        return cls(verifier, limit, url, run_sync)

    def body_reader(self, scope: Mapping[str, Any]) -> BodyReader:
        """Start reading the body of an ASGI request under the limit.

        Only a single ``Content-Length`` line counts as declared; with none or
        several, the limit is enforced while reading.

        Args:
            scope: The ASGI HTTP scope.

        Returns:
            A fresh reader for this request.

        Raises:
            VerificationError: ``body_too_large`` for a declared length above the limit.
        """
        lengths = [v for k, v in scope["headers"] if bytes(k).lower() == b"content-length"]
        declared = declared_length(bytes(lengths[0])) if len(lengths) == 1 else None
        return BodyReader(self.max_body_size, declared)

    async def verify(self, scope: Mapping[str, Any], body: bytes) -> VerifiedWebhook:
        """Verify an ASGI request whose body has been read.

        Args:
            scope: The ASGI HTTP scope.
            body: The complete body.

        Returns:
            The verified webhook.

        Raises:
            VerificationError: The webhook is not acceptable.
        """
        url = self.url.from_asgi(scope)
        # The scope's method is the request line's, as received (RFC 9421 §2.2.1).
        return await verify_async(
            self.verifier, scope["method"], url, scope["headers"], body, self.run_sync
        )
