"""Verify Upvest webhooks in FastAPI: the ASGI middleware plus typed dependencies.

Requires ``pip install 'upvest-verify[fastapi]'``.

With the middleware (recommended; it also answers failures with full
``application/problem+json`` documents)::

    app = FastAPI()
    app.add_middleware(UpvestWebhookMiddleware, verifier=verifier)

    @app.post("/webhooks/upvest")
    async def receive(webhook: UpvestWebhook) -> dict[str, str]:
        ...

Without it, per route::

    verified = UpvestSignature(verifier)

    @app.post("/webhooks/upvest")
    async def receive(webhook: Annotated[VerifiedWebhook, Depends(verified)]) -> ...:
        ...
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Annotated

try:
    from fastapi import Depends, HTTPException, Request
    from fastapi.responses import Response
    from starlette.requests import ClientDisconnect
except ImportError as e:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "upvest_verify.adapters.fastapi needs FastAPI: pip install 'upvest-verify[fastapi]'"
    ) from e

from upvest_verify import VerifiedWebhook, Verifier
from upvest_verify.adapters._common import (
    CONFIGURATION_ERROR,
    INCOMPLETE_BODY,
    METHOD_NOT_ALLOWED,
    Rejection,
    URLRebuilder,
    declared_length,
    log_rejection,
    rejection_for,
    verify_async,
)
from upvest_verify.adapters.starlette import (
    DEFAULT_MAX_THREADS,
    SCOPE_KEY,
    STATE_KEY,
    UpvestWebhookMiddleware,
    _checked_limit,
    _log_path,
    _Offloader,
)
from upvest_verify.errors import ConfigurationError, Reason, VerificationError

__all__ = [
    "UpvestSignature",
    "UpvestWebhook",
    "UpvestWebhookMiddleware",
    "UpvestWebhookRejected",
    "problem_exception_handler",
    "upvest_webhook",
]


class UpvestWebhookRejected(HTTPException):
    """Raised by the dependencies to refuse a webhook.

    FastAPI's default handler answers ``{"detail": "<reason>"}`` with the right
    status and ``Content-Type: application/problem+json``; register
    :func:`problem_exception_handler` for the full RFC 9457 document.

    Args:
        rejection: The status and reason code.

    Attributes:
        rejection: The status and reason code.
    """

    def __init__(self, rejection: Rejection) -> None:
        super().__init__(rejection.status, rejection.reason, headers=dict(rejection.headers()))
        self.rejection = rejection


async def problem_exception_handler(request: Request, exc: Exception) -> Response:
    """Answer :class:`UpvestWebhookRejected` with a full ``application/problem+json`` body.

    Register with ``app.add_exception_handler(UpvestWebhookRejected, problem_exception_handler)``.

    Args:
        request: The request.
        exc: The rejection.

    Returns:
        The problem response.
    """
    # Registered for UpvestWebhookRejected; anything else fails closed with 500.
    rejection = exc.rejection if isinstance(exc, UpvestWebhookRejected) else rejection_for(exc)
    return Response(rejection.body(), rejection.status, headers=dict(rejection.headers()))


def _reject(request: Request, exc: Exception | None, rejection: Rejection) -> UpvestWebhookRejected:
    log_rejection(rejection, _log_path(request.scope), exc)
    return UpvestWebhookRejected(rejection)


def upvest_webhook(request: Request) -> VerifiedWebhook:
    """FastAPI dependency: the webhook verified by :class:`UpvestWebhookMiddleware`.

    Reads the result from the ASGI scope and never touches the body. If the
    middleware did not verify this request (not installed, or the route is not
    among its ``paths``), the request fails closed with 500.

    Args:
        request: The request (injected by FastAPI).

    Returns:
        The verified webhook.

    Raises:
        UpvestWebhookRejected: 500 ``configuration_error`` without a verified result.
    """
    webhook = request.scope.get(SCOPE_KEY)
    if not isinstance(webhook, VerifiedWebhook):
        raise _reject(
            request,
            ConfigurationError(
                "no verified webhook in the scope: add UpvestWebhookMiddleware with this path"
            ),
            Rejection(500, CONFIGURATION_ERROR),
        )
    return webhook


UpvestWebhook = Annotated[VerifiedWebhook, Depends(upvest_webhook)]
"""``Annotated[VerifiedWebhook, Depends(upvest_webhook)]``, for endpoint parameters."""


class UpvestSignature:
    """A stand-alone FastAPI dependency that verifies the request itself.

    Use it on routes when :class:`UpvestWebhookMiddleware` is not installed. The
    body is read through Starlette's request cache, so the endpoint can still call
    ``await request.body()``. If the middleware already verified the request, its
    result is returned without verifying again.

    Only the middleware bounds memory: when the endpoint also declares a body model,
    FastAPI reads the whole body before any dependency runs, so ``max_body_size`` is
    checked after the fact. Prefer the middleware, or ``await request.body()`` in the
    endpoint, or cap request sizes in the server or proxy.

    Example::

        verified = UpvestSignature(verifier)

        @app.post("/webhooks/upvest")
        async def receive(webhook: Annotated[VerifiedWebhook, Depends(verified)]):
            ...

    Args:
        verifier: The verifier.
        max_body_size: Largest body read; defaults to the verifier policy's limit.
        offload: Run the CPU-bound check in a worker thread.
        max_threads: Worker threads verifying at once per event loop (default: one per
            CPU core); ``None`` shares anyio's default thread limiter.
        public_url: See :class:`UpvestWebhookMiddleware`.
        trusted_proxies: See :class:`UpvestWebhookMiddleware`.
        proxy_headers: See :class:`UpvestWebhookMiddleware`.
        path_prefix: See :class:`UpvestWebhookMiddleware`.

    Raises:
        ConfigurationError: An option is invalid.
    """

    def __init__(
        self,
        verifier: Verifier,
        *,
        max_body_size: int | None = None,
        offload: bool = True,
        max_threads: int | None = DEFAULT_MAX_THREADS,
        public_url: str | None = None,
        trusted_proxies: Iterable[str] = (),
        proxy_headers: str = "x-forwarded",
        path_prefix: str = "",
    ) -> None:
        limit = _checked_limit(verifier, max_body_size)
        self._verifier = verifier
        self._max_body_size = limit
        self._offload: _Offloader | None = _Offloader(max_threads) if offload else None
        self._url = URLRebuilder.create(
            public_url=public_url,
            trusted_proxies=trusted_proxies,
            proxy_headers=proxy_headers,
            path_prefix=path_prefix,
        )

    async def __call__(self, request: Request) -> VerifiedWebhook:
        """Verify the request (FastAPI calls this as a dependency).

        Args:
            request: The request.

        Returns:
            The verified webhook, also stored like the middleware stores it.

        Raises:
            UpvestWebhookRejected: The webhook was refused (status and reason code).
        """
        done = request.scope.get(SCOPE_KEY)
        if isinstance(done, VerifiedWebhook):
            return done
        if request.method != "POST":
            raise _reject(request, None, Rejection(405, METHOD_NOT_ALLOWED))
        try:
            body = await self._body(request)
            url = self._url.from_asgi(request.scope)
            headers = request.scope["headers"]
            webhook = await verify_async(
                self._verifier,
                request.method,
                url,
                headers,
                body,
                self._offload,
            )
        except ClientDisconnect as exc:
            raise _reject(request, exc, Rejection(400, INCOMPLETE_BODY)) from exc
        except Exception as exc:  # G13: every failure fails closed
            raise _reject(request, exc, rejection_for(exc)) from exc
        request.scope[SCOPE_KEY] = webhook
        request.scope.setdefault("state", {})[STATE_KEY] = webhook
        return webhook

    async def _body(self, request: Request) -> bytes:
        limit = self._max_body_size
        declared = declared_length(request.headers.get("content-length"))
        if declared is not None and declared > limit:
            raise VerificationError(
                Reason.BODY_TOO_LARGE, f"Content-Length {declared} exceeds {limit} bytes"
            )
        chunks: list[bytes] = []
        size = 0
        try:
            # stream() yields the cached body if FastAPI already read it.
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise VerificationError(Reason.BODY_TOO_LARGE, f"body exceeds {limit} bytes")
                chunks.append(chunk)
        except RuntimeError as e:  # "Stream consumed": read elsewhere without caching
            raise ConfigurationError(
                f"the request body was consumed before verification: {e}"
            ) from e
        body = b"".join(chunks)
        # Starlette's own cache, so the endpoint's ``await request.body()`` still works.
        request._body = body
        return body
