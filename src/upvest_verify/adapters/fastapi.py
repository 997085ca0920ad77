"""Verify Upvest webhooks in FastAPI: the ASGI middleware plus typed dependencies.

Requires ``pip install 'upvest-verify[fastapi]'``.

With the middleware (recommended; it also answers failures with full
``application/problem+json`` documents)::

    app = FastAPI()
    app.add_middleware(UpvestWebhookMiddleware, verifier=verifier)

    @app.post("/webhooks/upvest")
    async def receive(webhook: UpvestWebhook) -> dict[str, str]:
        ...

With an event ledger, each event is processed once across retries and workers::

    app.add_middleware(UpvestWebhookMiddleware, verifier=verifier, ledger=ledger)

    @app.post("/webhooks/upvest")
    async def receive(delivery: UpvestDelivery) -> dict[str, int]:
        report = await delivery.aprocess(handle_event)   # completes each event's claim
        return {"processed": len(report.processed)}

Without the middleware, per route (no ledger: a dependency cannot see the
status of the answer the endpoint returns, which decides complete or release)::

    verified = UpvestSignature(verifier)

    @app.post("/webhooks/upvest")
    async def receive(webhook: Annotated[VerifiedWebhook, Depends(verified)]) -> ...:
        ...

Refusals are ``application/problem+json`` documents either way: the dependencies
have the app answer :class:`UpvestWebhookRejected` with
:func:`problem_exception_handler` (unless you registered a handler for it), and a
:class:`~upvest_verify.PayloadError` from ``webhook.events`` of a verified body that
is not an envelope with 400 ``invalid_payload`` instead of a 500.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Annotated, Final

try:
    from fastapi import Depends, HTTPException, Request
    from fastapi.responses import Response
    from starlette.requests import ClientDisconnect
except ImportError as e:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "upvest_verify.adapters.fastapi needs FastAPI: pip install 'upvest-verify[fastapi]'"
    ) from e

from upvest_verify import PayloadError, VerifiedWebhook, Verifier
from upvest_verify.adapters._body import IncompleteBody
from upvest_verify.adapters._delivery import Delivery
from upvest_verify.adapters._reject import (
    CONFIGURATION_ERROR,
    METHOD_NOT_ALLOWED,
    Rejection,
    log_rejection,
    payload_rejection,
    rejection_for,
)
from upvest_verify.adapters._run import (
    DEFAULT_MAX_THREADS,
    SCOPE_KEY,
    ASGIVerification,
    store_result,
)
from upvest_verify.adapters._url import asgi_log_path
from upvest_verify.adapters.starlette import UpvestWebhookMiddleware, get_delivery, get_webhook
from upvest_verify.errors import ConfigurationError

__all__ = [
    "Delivery",
    "UpvestDelivery",
    "UpvestSignature",
    "UpvestWebhook",
    "UpvestWebhookMiddleware",
    "UpvestWebhookRejected",
    "get_delivery",
    "get_webhook",
    "problem_exception_handler",
    "upvest_delivery",
    "upvest_webhook",
]


# Starlette's per-request view of the app's exception handlers (set by its
# ExceptionMiddleware): ``(handlers by exception class, handlers by status)``.
_HANDLERS_KEY: Final = "starlette.exception_handlers"


class UpvestWebhookRejected(HTTPException):
    """Raised by the dependencies to refuse a webhook.

    Answered with the full RFC 9457 ``application/problem+json`` document (``type``,
    ``title``, ``status``, ``detail`` = the reason code) by
    :func:`problem_exception_handler`, which the dependencies install in the app
    when no handler for this class is registered; without FastAPI's exception
    middleware it is an ``HTTPException`` like any other.

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

    The dependencies install it for :class:`UpvestWebhookRejected` and
    :class:`~upvest_verify.PayloadError` on first use; registering it yourself is
    harmless: ``app.add_exception_handler(UpvestWebhookRejected, problem_exception_handler)``.

    Args:
        request: The request.
        exc: The rejection; or a ``PayloadError`` (400 ``invalid_payload`` when the
            request's verified body is not an envelope, else raised again).

    Returns:
        The problem response.

    Raises:
        PayloadError: ``exc``, when it does not come from this request's verified body.
    """
    if isinstance(exc, PayloadError):
        refused = payload_rejection(get_webhook(request), asgi_log_path(request.scope))
        if refused is None:
            raise exc  # not about a verified webhook: handled as if no handler were here
        rejection = refused
    elif isinstance(exc, UpvestWebhookRejected):
        rejection = exc.rejection
    else:  # registered for something else: fail closed
        rejection = rejection_for(exc)
    return Response(rejection.body(), rejection.status, headers=dict(rejection.headers()))


def _answer_with_problems(request: Request) -> None:
    """Have the app answer this module's refusals (and payload errors) with problem documents.

    FastAPI's default ``HTTPException`` handler would send ``{"detail": "<reason>"}``
    under ``application/problem+json``. Starlette's exception middleware passes its
    handler table along in the scope; a handler the app registered for these
    classes is kept.
    """
    found = request.scope.get(_HANDLERS_KEY)
    if isinstance(found, tuple) and found and isinstance(found[0], dict):
        handlers = found[0]
        if UpvestWebhookRejected not in handlers:
            handlers[UpvestWebhookRejected] = problem_exception_handler
        if PayloadError not in handlers:
            handlers[PayloadError] = problem_exception_handler


def _reject(request: Request, exc: Exception | None, rejection: Rejection) -> UpvestWebhookRejected:
    log_rejection(rejection, asgi_log_path(request.scope), exc)
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
    _answer_with_problems(request)
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


def upvest_delivery(request: Request) -> Delivery:
    """FastAPI dependency: the events still to process, admitted by the middleware's ledger.

    Args:
        request: The request (injected by FastAPI).

    Returns:
        The :class:`Delivery` of this request.

    Raises:
        UpvestWebhookRejected: 500 ``configuration_error`` when the middleware has no
            ``ledger`` or did not verify this request.
    """
    _answer_with_problems(request)
    delivery = get_delivery(request)
    if delivery is None:
        raise _reject(
            request,
            ConfigurationError(
                "no delivery in the scope: add UpvestWebhookMiddleware with a ledger and this path"
            ),
            Rejection(500, CONFIGURATION_ERROR),
        )
    return delivery


UpvestDelivery = Annotated[Delivery, Depends(upvest_delivery)]
"""``Annotated[Delivery, Depends(upvest_delivery)]``, for endpoint parameters."""


class UpvestSignature:
    """A stand-alone FastAPI dependency that verifies the request itself.

    Use it on routes when :class:`UpvestWebhookMiddleware` is not installed. The
    body is read with Starlette's own ``await request.body()``, which caches it on the
    request, so FastAPI's body parsing and the endpoint's ``await request.body()`` see
    the same bytes. If the middleware already verified the request, its result is
    returned without verifying again.

    Only the middleware bounds memory while reading. The dependency refuses a declared
    ``Content-Length`` above ``max_body_size`` before reading (the server then delivers
    no more than declared), but a chunked body is read whole and then measured; with a
    body model FastAPI reads the body before any dependency runs anyway. Prefer the
    middleware, or cap request sizes in the server or proxy.

    Example::

        verified = UpvestSignature(verifier)

        @app.post("/webhooks/upvest")
        async def receive(webhook: Annotated[VerifiedWebhook, Depends(verified)]):
            ...

    Args:
        verifier: The verifier.
        max_body_size: Largest body read; defaults to the verifier policy's limit.
        offload: Run the CPU-bound check in a worker thread.
        max_threads: Worker threads verifying at once (default: one per CPU core),
            shared by every adapter of the process with the same value; ``None`` uses
            anyio's worker threads and its shared default limiter (40 threads).
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
        self._check = ASGIVerification.create(
            verifier,
            max_body_size=max_body_size,
            offload=offload,
            max_threads=max_threads,
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
            UpvestWebhookRejected: The webhook was refused (status and reason code),
                answered as a full problem document.
        """
        _answer_with_problems(request)
        done = request.scope.get(SCOPE_KEY)
        if isinstance(done, VerifiedWebhook):
            return done
        if request.method != "POST":
            raise _reject(request, None, Rejection(405, METHOD_NOT_ALLOWED))
        try:
            body = await self._body(request)
            webhook = await self._check.verify(request.scope, body)
        except Exception as exc:  # every failure fails closed
            raise _reject(request, exc, rejection_for(exc)) from exc
        store_result(request.scope, webhook)
        return webhook

    async def _body(self, request: Request) -> bytes:
        # 413 for a declared Content-Length over the limit, before anything is read.
        reader = self._check.body_reader(request.scope)
        try:
            # Starlette's own reader and cache: FastAPI's body parsing and the
            # endpoint's ``await request.body()`` get these same bytes afterwards.
            body = await request.body()
        except ClientDisconnect as e:  # never verify a partial body
            raise IncompleteBody("the client disconnected before the body was complete") from e
        except RuntimeError as e:  # "Stream consumed": read elsewhere without caching
            raise ConfigurationError(
                f"the request body was consumed before verification: {e}"
            ) from e
        reader.feed(body)
        return reader.finish()
