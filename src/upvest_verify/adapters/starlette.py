"""Verify Upvest webhooks in Starlette, FastAPI or any ASGI app (pure ASGI middleware).

Requires ``pip install 'upvest-verify[starlette]'``.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import os
import weakref
from collections.abc import Awaitable, Callable, Iterable

try:
    import anyio
    import anyio.to_thread
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.types import ASGIApp, Message, Receive, Scope, Send
except ImportError as e:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "upvest_verify.adapters.starlette needs Starlette and anyio: "
        "pip install 'upvest-verify[starlette]'"
    ) from e

from upvest_verify import VerifiedWebhook, Verifier
from upvest_verify.adapters._common import (
    DEFAULT_PATHS,
    METHOD_NOT_ALLOWED,
    PathMatcher,
    Rejection,
    URLRebuilder,
    declared_length,
    log_rejection,
    rejection_for,
    security_logger,
    verify_async,
)
from upvest_verify.errors import ConfigurationError, Reason, VerificationError

__all__ = [
    "DEFAULT_MAX_THREADS",
    "SCOPE_KEY",
    "STATE_KEY",
    "OnError",
    "UpvestWebhookMiddleware",
]

SCOPE_KEY = "upvest_verify"
"""``scope[SCOPE_KEY]`` holds the :class:`~upvest_verify.VerifiedWebhook` of a verified request."""

STATE_KEY = "upvest_webhook"
"""The same result as ``request.state.upvest_webhook``."""

OnError = Callable[[Request, Exception], Response | Awaitable[Response]]
"""``on_error(request, exc) -> Response``: ``exc`` is a ``VerificationError``, a
``ConfigurationError``, or an unexpected exception from the verifier."""


class _Disconnected(Exception):
    """The client went away before the whole body arrived."""


DEFAULT_MAX_THREADS = os.cpu_count() or 2
"""Worker threads verifying at once, per event loop: one per core.

The check is CPU-bound; more threads than cores add little throughput but make
the event loop wait longer for the GIL (2 cores, 16 concurrent webhooks: loop
lag p99 about 4 ms with 2 threads, about 16 ms with anyio's 40; see
``benchmarks/bench_starlette_middleware.py``)."""


class _Offloader:
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
        # cryptography releases the GIL during the P-521 verify, so worker threads
        # verify in parallel and the event loop keeps serving (threat-model.md §5 K8).
        return await anyio.to_thread.run_sync(check, limiter=self._limiter())


def _checked_limit(verifier: object, max_body_size: int | None) -> int:
    """Validate the verifier and return the body limit (the policy's by default)."""
    if not isinstance(verifier, Verifier):
        raise ConfigurationError("verifier must be an upvest_verify.Verifier")
    limit = verifier.policy.max_body_size if max_body_size is None else max_body_size
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise ConfigurationError(f"max_body_size must be an int >= 1, got {limit!r}")
    return limit


def _route_path(scope: Scope) -> str:
    """The decoded path relative to ``root_path``: what the router matches on."""
    path: str = scope.get("path", "/")
    root: str = scope.get("root_path", "")
    if root and path.startswith(root) and (len(path) == len(root) or path[len(root)] == "/"):
        return path[len(root) :] or "/"
    return path


def _log_path(scope: Scope) -> str:
    raw = scope.get("raw_path")
    return bytes(raw).decode("latin-1") if raw else str(scope.get("path", ""))


def _replay(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that hands the buffered body downstream, then defers to the server.

    After the body, the app's next ``receive()`` waits for ``http.disconnect`` from
    the real server, as it would without this middleware.
    """
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


class UpvestWebhookMiddleware:
    """Pure ASGI middleware that verifies Upvest webhooks before the app sees them.

    On the protected paths, a ``POST`` body is buffered (up to ``max_body_size``),
    verified, and replayed unchanged, so ``await request.body()`` and
    ``await request.json()`` work in the endpoint. The result is stored in
    ``scope["upvest_verify"]`` and ``request.state.upvest_webhook``. Failures are
    answered with ``application/problem+json`` and never reach the app. Other paths,
    websockets and lifespan pass through untouched.

    Example::

        from starlette.middleware import Middleware
        from upvest_verify.adapters.starlette import UpvestWebhookMiddleware

        app = Starlette(
            routes=[Route("/webhooks/upvest", receive_webhook, methods=["POST"])],
            middleware=[Middleware(UpvestWebhookMiddleware, verifier=verifier)],
        )

    Args:
        app: The ASGI app to protect.
        verifier: The :class:`~upvest_verify.Verifier` (a ``KeySet`` or an async-capable
            key provider such as ``JWKSCache``).
        paths: Protected paths (decoded, relative to ``root_path``); a final ``/*``
            protects everything below.
        max_body_size: Largest body read; defaults to the verifier policy's limit.
        on_error: ``on_error(request, exc) -> Response`` to answer failures yourself.
        offload: Run the CPU-bound check in a worker thread (recommended).
        max_threads: Worker threads verifying at once per event loop (default: one per
            CPU core); ``None`` shares anyio's default thread limiter.
        public_url: The public ``https://host[/prefix]`` registered with Upvest.
        trusted_proxies: Proxy addresses/networks whose forwarding fields are believed.
        proxy_headers: ``"x-forwarded"`` or ``"forwarded"`` (RFC 7239).
        path_prefix: A path prefix a proxy strips before the app sees the path.

    Raises:
        ConfigurationError: An option is invalid.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        verifier: Verifier,
        paths: Iterable[str] = DEFAULT_PATHS,
        max_body_size: int | None = None,
        on_error: OnError | None = None,
        offload: bool = True,
        max_threads: int | None = DEFAULT_MAX_THREADS,
        public_url: str | None = None,
        trusted_proxies: Iterable[str] = (),
        proxy_headers: str = "x-forwarded",
        path_prefix: str = "",
    ) -> None:
        limit = _checked_limit(verifier, max_body_size)
        self.app = app
        self._verifier = verifier
        self._paths = PathMatcher.create(paths)
        self._max_body_size = limit
        self._on_error = on_error
        self._offload: _Offloader | None = _Offloader(max_threads) if offload else None
        self._url = URLRebuilder.create(
            public_url=public_url,
            trusted_proxies=trusted_proxies,
            proxy_headers=proxy_headers,
            path_prefix=path_prefix,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Verify webhook requests; pass everything else through."""
        if scope["type"] != "http" or not self._paths(_route_path(scope)):
            await self.app(scope, receive, send)
            return
        if scope["method"] != "POST":
            # G9: only POST delivers webhooks; never run the handler for anything else.
            await self._answer(scope, receive, send, Rejection(405, METHOD_NOT_ALLOWED))
            return
        body: bytes | None = None
        try:
            body = await self._read_body(scope, receive)
            url = self._url.from_asgi(scope)
            webhook = await verify_async(
                self._verifier,
                scope["method"],
                url,
                scope["headers"],
                body,
                self._offload,
            )
        except _Disconnected:
            # G2: never verify a partial body; nobody is left to answer.
            security_logger.warning(
                "Upvest webhook aborted: client disconnected before the body was complete path=%r",
                _log_path(scope),
            )
            return
        except Exception as exc:  # G13: every failure fails closed
            await self._fail(scope, receive, send, body, exc)
            return
        scope[SCOPE_KEY] = webhook
        scope.setdefault("state", {})[STATE_KEY] = webhook
        await self.app(scope, _replay(body, receive), send)

    async def _read_body(self, scope: Scope, receive: Receive) -> bytes:
        limit = self._max_body_size
        lengths = [v for k, v in scope["headers"] if k.lower() == b"content-length"]
        declared = declared_length(lengths[0]) if len(lengths) == 1 else None
        if declared is not None and declared > limit:
            raise VerificationError(
                Reason.BODY_TOO_LARGE, f"Content-Length {declared} exceeds {limit} bytes"
            )
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise _Disconnected
            if message["type"] != "http.request":  # pragma: no cover - not in the ASGI spec
                continue
            chunk: bytes = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                # G3: stop reading at the first byte over the limit; memory stays bounded.
                raise VerificationError(Reason.BODY_TOO_LARGE, f"body exceeds {limit} bytes")
            if chunk:
                chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    async def _fail(
        self, scope: Scope, receive: Receive, send: Send, body: bytes | None, exc: Exception
    ) -> None:
        rejection = rejection_for(exc)
        log_rejection(rejection, _log_path(scope), exc)
        if self._on_error is not None:
            try:
                outcome = self._on_error(Request(scope, _replay(body or b"", receive)), exc)
                response = await outcome if inspect.isawaitable(outcome) else outcome
            except Exception:  # a broken hook must not fail open
                security_logger.exception("on_error hook failed; sending the default answer")
            else:
                await response(scope, receive, send)
                return
        await self._answer(scope, receive, send, rejection, logged=True)

    async def _answer(
        self, scope: Scope, receive: Receive, send: Send, rejection: Rejection, logged: bool = False
    ) -> None:
        if not logged:
            log_rejection(rejection, _log_path(scope))
        response = Response(rejection.body(), rejection.status, headers=dict(rejection.headers()))
        await response(scope, receive, send)
