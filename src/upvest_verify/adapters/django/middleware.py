"""Django middleware verifying Upvest webhooks on configured paths (sync and async).

The request-level helpers here are shared with :mod:`.decorators`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction, sync_to_async
from django.core.exceptions import RequestDataTooBig  # type: ignore[import-untyped,unused-ignore]
from django.http import (  # type: ignore[import-untyped,unused-ignore]
    HttpResponse,
    RawPostDataException,
    UnreadablePostError,
)

from upvest_verify import VerifiedWebhook
from upvest_verify.adapters._body import BodyReader, IncompleteBody, declared_length
from upvest_verify.adapters._reject import (
    METHOD_NOT_ALLOWED,
    PROBLEM_CONTENT_TYPE,
    Rejection,
    log_rejection,
    rejection_for,
)
from upvest_verify.adapters._run import verify_async
from upvest_verify.adapters._settings import AdapterSettings
from upvest_verify.adapters._url import wsgi_header_pairs, wsgi_method
from upvest_verify.adapters.django.conf import get_settings
from upvest_verify.errors import ConfigurationError, Reason, VerificationError

__all__ = ["REQUEST_ATTRIBUTE", "UpvestWebhookMiddleware", "averify_request", "verify_request"]

REQUEST_ATTRIBUTE = "upvest_webhook"
"""``request.upvest_webhook`` holds the :class:`~upvest_verify.VerifiedWebhook`."""


def _reject(request: Any, rejection: Rejection, exc: BaseException | None = None) -> Any:
    """The single exit for every refusal: log on ``upvest_verify.security``, answer problem+json."""
    log_rejection(rejection, request.path, exc)
    response = HttpResponse(
        rejection.body(), status=rejection.status, content_type=PROBLEM_CONTENT_TYPE
    )
    for name, value in rejection.headers():
        if name != "content-type":
            response[name] = value
    return response


def _body(request: Any, limit: int) -> bytes:
    declared = declared_length(request.META.get("CONTENT_LENGTH") or None)
    reader = BodyReader(limit, declared)  # 413 for a declared length over the limit
    try:
        body: bytes = request.body
    except RawPostDataException as e:
        # G6: request.POST (multipart) or the stream was read first; the raw bytes are gone.
        raise ConfigurationError(
            "the request body was read before verification; put UpvestWebhookMiddleware "
            "before any middleware touching request.POST"
        ) from e
    except RequestDataTooBig as e:  # G7: above DATA_UPLOAD_MAX_MEMORY_SIZE
        raise VerificationError(Reason.BODY_TOO_LARGE, str(e)) from e
    except UnreadablePostError as e:  # G2: never verify a partial body
        raise IncompleteBody("the body could not be read to its end") from e
    reader.feed(body)  # 413 when the body passes the limit
    return reader.finish()  # IncompleteBody when shorter than Content-Length


def _parts(request: Any, settings: AdapterSettings) -> tuple[str, str, Any, bytes]:
    """The method, URL, header field lines and body of a Django request, as received.

    ``request.method`` is upper-cased by Django; the signature covers the method as
    received (RFC 9421 §2.2.1): the scope's under ASGI (where ``META`` holds the
    upper-cased copy too), ``REQUEST_METHOD`` under WSGI.
    """
    body = _body(request, settings.max_body_size)
    scope = getattr(request, "scope", None)
    if isinstance(scope, dict):
        # ASGIRequest: the scope keeps the method, raw_path and every header line unjoined.
        method = scope.get("method")
        return (
            method if isinstance(method, str) else "",
            settings.url.from_asgi(scope),
            list(scope.get("headers", ())),
            body,
        )
    meta = request.META
    return wsgi_method(meta), settings.url.from_wsgi(meta), wsgi_header_pairs(meta), body


def _accept(request: Any, webhook: VerifiedWebhook) -> None:
    setattr(request, REQUEST_ATTRIBUTE, webhook)
    # A signed server-to-server delivery is not a browser form post: CSRF does not apply.
    request._dont_enforce_csrf_checks = True


def _verified(request: Any) -> bool:
    return isinstance(getattr(request, REQUEST_ATTRIBUTE, None), VerifiedWebhook)


def verify_request(request: Any, settings: AdapterSettings | None = None) -> Any:
    """Verify a Django request in sync code.

    Args:
        request: The ``HttpRequest``.
        settings: The adapter settings; read from ``settings.UPVEST_VERIFY`` if ``None``.

    Returns:
        ``None`` when the webhook is valid (``request.upvest_webhook`` is set), else
        the problem+json ``HttpResponse`` to send.
    """
    if _verified(request):
        return None
    if request.method != "POST":  # Django's view of the method (upper-cased)
        return _reject(request, Rejection(405, METHOD_NOT_ALLOWED))
    try:
        settings = settings or get_settings()
        method, url, headers, body = _parts(request, settings)
        webhook = settings.verifier.verify(method, url, headers, body)
    except Exception as exc:  # G13: every failure fails closed
        return _reject(request, rejection_for(exc), exc)
    _accept(request, webhook)
    return None


async def _in_worker_thread(check: Callable[[], VerifiedWebhook]) -> VerifiedWebhook:
    return await sync_to_async(check, thread_sensitive=False)()


async def averify_request(request: Any, settings: AdapterSettings | None = None) -> Any:
    """Verify a Django request in async code; the CPU-bound check runs in a worker thread.

    Args:
        request: The ``HttpRequest``.
        settings: The adapter settings; read from ``settings.UPVEST_VERIFY`` if ``None``.

    Returns:
        ``None`` when the webhook is valid, else the ``HttpResponse`` to send.
    """
    if _verified(request):
        return None
    if request.method != "POST":  # Django's view of the method (upper-cased)
        return _reject(request, Rejection(405, METHOD_NOT_ALLOWED))
    try:
        settings = settings or get_settings()
        method, url, headers, body = _parts(request, settings)
        webhook = await verify_async(
            settings.verifier, method, url, headers, body, _in_worker_thread
        )
    except Exception as exc:  # G13: every failure fails closed
        return _reject(request, rejection_for(exc), exc)
    _accept(request, webhook)
    return None


class UpvestWebhookMiddleware:
    """Verify Upvest webhooks on the paths in ``UPVEST_VERIFY["PATHS"]``.

    Works in sync and async stacks. Place it before any middleware that reads
    ``request.POST`` (a consumed body fails closed with 500). On success the view
    gets ``request.upvest_webhook`` and CSRF checks are skipped for the request;
    failures never reach the view.

    Example::

        MIDDLEWARE = ["upvest_verify.adapters.django.UpvestWebhookMiddleware", ...]
        UPVEST_VERIFY = {"JWKS": "/etc/upvest/jwks.json", "PATHS": ["/webhooks/upvest"]}

    Args:
        get_response: The next handler (Django passes it).

    Raises:
        ConfigurationError: ``UPVEST_VERIFY`` is missing or invalid (at start-up).
    """

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[[Any], Any]) -> None:
        self.get_response = get_response
        self.async_mode = iscoroutinefunction(get_response)
        if self.async_mode:
            markcoroutinefunction(self)
        # Read once: settings are not meant to change while serving.
        self._settings = get_settings()

    def __call__(self, request: Any) -> Any:
        """Verify ``request`` if its path is protected, then call the next handler."""
        if self.async_mode:
            return self.__acall__(request)
        if self._settings.paths(request.path_info):
            failure = verify_request(request, self._settings)
            if failure is not None:
                return failure
        return self.get_response(request)

    async def __acall__(self, request: Any) -> Any:
        """Async twin of :meth:`__call__`."""
        if self._settings.paths(request.path_info):
            failure = await averify_request(request, self._settings)
            if failure is not None:
                return failure
        response: Awaitable[Any] = self.get_response(request)
        return await response
