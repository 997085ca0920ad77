"""Django middleware verifying Upvest webhooks on configured paths (sync and async).

The request-level helpers here (verification, admission through an event ledger,
settling the claims by the answer's status) are shared with :mod:`.decorators`.
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

from upvest_verify import PayloadError, VerifiedWebhook
from upvest_verify.adapters._body import BodyReader, IncompleteBody, declared_length
from upvest_verify.adapters._delivery import (
    Answer,
    Delivery,
    aadmit,
    admit,
    afinish,
    aqueue,
    check_ledger,
    finish,
    queue,
)
from upvest_verify.adapters._reject import (
    CONFIGURATION_ERROR,
    METHOD_NOT_ALLOWED,
    PROBLEM_CONTENT_TYPE,
    Rejection,
    log_rejection,
    payload_rejection,
    rejection_for,
)
from upvest_verify.adapters._run import verify_async
from upvest_verify.adapters._settings import AdapterSettings
from upvest_verify.adapters._url import wsgi_header_pairs, wsgi_method
from upvest_verify.adapters.django.conf import get_settings
from upvest_verify.errors import ConfigurationError, Reason, VerificationError
from upvest_verify.ledger import BaseLedger

__all__ = [
    "DELIVERY_ATTRIBUTE",
    "REQUEST_ATTRIBUTE",
    "UpvestWebhookMiddleware",
    "adeliver",
    "averify_request",
    "deliver",
    "get_delivery",
    "get_webhook",
    "payload_response",
    "verify_request",
]

REQUEST_ATTRIBUTE = "upvest_webhook"
"""``request.upvest_webhook`` holds the :class:`~upvest_verify.VerifiedWebhook`."""

DELIVERY_ATTRIBUTE = "upvest_delivery"
"""``request.upvest_delivery`` holds the :class:`~upvest_verify.adapters.django.Delivery`
of a request admitted through an event ledger."""


def get_webhook(request: Any) -> VerifiedWebhook | None:
    """The webhook verified for this request (``request.upvest_webhook``).

    Args:
        request: The ``HttpRequest``.

    Returns:
        The verified webhook, or ``None`` when neither the middleware nor the
        decorator verified this request.
    """
    webhook = getattr(request, REQUEST_ATTRIBUTE, None)
    return webhook if isinstance(webhook, VerifiedWebhook) else None


def get_delivery(request: Any) -> Delivery | None:
    """The events this request still has to process (``request.upvest_delivery``).

    Args:
        request: The ``HttpRequest``.

    Returns:
        The :class:`~upvest_verify.adapters.django.Delivery`, or ``None`` without a
        ledger or for a request that was not verified.
    """
    delivery = getattr(request, DELIVERY_ATTRIBUTE, None)
    return delivery if isinstance(delivery, Delivery) else None


def _problem(rejection: Rejection) -> Any:
    response = HttpResponse(
        rejection.body(), status=rejection.status, content_type=PROBLEM_CONTENT_TYPE
    )
    for name, value in rejection.headers():
        if name != "content-type":
            response[name] = value
    return response


def _reject(request: Any, rejection: Rejection, exc: BaseException | None = None) -> Any:
    """The single exit for every refusal: log on ``upvest_verify.security``, answer problem+json."""
    log_rejection(rejection, request.path, exc)
    return _problem(rejection)


def payload_response(request: Any) -> Any:
    """The 400 ``invalid_payload`` answer when the verified body is not an envelope.

    For a view whose ``webhook.events`` raised :class:`~upvest_verify.PayloadError`
    (the middleware's ``process_exception`` and the decorator call it): a verified
    body without the ``{"payload": [...]}`` shape is answered 400 ``invalid_payload``
    and logged at ERROR (key id and body length, never the body) instead of a 500.

    Args:
        request: The ``HttpRequest``.

    Returns:
        The problem response, or ``None`` when the request was not verified or its
        body is an envelope (the error is not the adapter's to answer).
    """
    rejection = payload_rejection(get_webhook(request), request.path)
    return None if rejection is None else _problem(rejection)


def _send(answer: Answer) -> Any:
    response = HttpResponse(answer.body, status=answer.status)
    for name, value in answer.headers:
        response[name] = value
    return response


def _setup(
    request: Any,
    settings: AdapterSettings | None,
    ledger: BaseLedger | None,
    inbox: bool | None,
) -> tuple[AdapterSettings, BaseLedger | None, bool] | Any:
    """The settings, ledger and inbox mode for a verified request, or the 500 answer."""
    try:
        settings = settings or get_settings()
        ledger = settings.ledger if ledger is None else ledger
        inbox = settings.inbox if inbox is None else inbox
        check_ledger(ledger, inbox)
    except ConfigurationError as exc:
        return _reject(request, Rejection(500, CONFIGURATION_ERROR), exc)
    return settings, ledger, inbox


def deliver(
    request: Any,
    call: Callable[[], Any],
    settings: AdapterSettings | None = None,
    *,
    ledger: BaseLedger | None = None,
    inbox: bool | None = None,
) -> Any:
    """Hand a verified request to the view, in sync code.

    Without a ledger this is ``call()`` (and, with a replay store, recording the
    signature after a 2xx answer). With one, the events are admitted first (or
    queued, in inbox mode): the answer for a delivery already processed or held
    elsewhere is returned without calling the view; otherwise the view finds
    ``request.upvest_delivery``, and its answer settles the claims left open.

    Args:
        request: The verified ``HttpRequest``.
        call: Calls the view (or the rest of the middleware chain).
        settings: The adapter settings; read from ``settings.UPVEST_VERIFY`` if ``None``.
        ledger: A ledger instead of the settings' ``LEDGER``.
        inbox: Inbox mode instead of the settings' ``INBOX``.

    Returns:
        The response.
    """
    if get_delivery(request) is not None:
        return call()  # admitted by an outer layer, which settles it
    found = _setup(request, settings, ledger, inbox)
    if not isinstance(found, tuple):
        return found
    settings, ledger, inbox = found
    webhook, path = getattr(request, REQUEST_ATTRIBUTE), request.path
    delivery: Delivery | None = None
    if ledger is not None:
        if (refused := payload_response(request)) is not None:  # nothing to key the ledger
            return refused
        outcome = queue(ledger, webhook, path=path) if inbox else admit(ledger, webhook, path=path)
        if isinstance(outcome, Answer):
            finish(settings.verifier, webhook, None, outcome.status, path=path)
            return _send(outcome)
        delivery = outcome
        setattr(request, DELIVERY_ATTRIBUTE, delivery)
    elif settings.verifier.replay_store is None:
        return call()
    try:
        response = call()
    except BaseException:
        finish(settings.verifier, webhook, delivery, None, path=path)
        raise
    finish(settings.verifier, webhook, delivery, response.status_code, path=path)
    return response


async def adeliver(
    request: Any,
    call: Callable[[], Awaitable[Any]],
    settings: AdapterSettings | None = None,
    *,
    ledger: BaseLedger | None = None,
    inbox: bool | None = None,
) -> Any:
    """:func:`deliver` in async code.

    Under ASGI the ledger's async calls run in the server's event loop. An async view
    under WSGI runs in an event loop of its own per request; there the ledger is used
    through its blocking calls (a Redis client made for one loop cannot serve another).
    """
    if get_delivery(request) is not None:
        return await call()
    found = _setup(request, settings, ledger, inbox)
    if not isinstance(found, tuple):
        return found
    settings, ledger, inbox = found
    webhook, path = getattr(request, REQUEST_ATTRIBUTE), request.path
    blocking = not isinstance(getattr(request, "scope", None), dict)
    delivery: Delivery | None = None
    if ledger is not None:
        if (refused := payload_response(request)) is not None:  # nothing to key the ledger
            return refused
        if inbox:
            outcome: Delivery | Answer = await aqueue(ledger, webhook, path=path, blocking=blocking)
        else:
            outcome = await aadmit(ledger, webhook, path=path, blocking=blocking)
        if isinstance(outcome, Answer):
            await afinish(
                settings.verifier, webhook, None, outcome.status, path=path, blocking=blocking
            )
            return _send(outcome)
        delivery = outcome
        setattr(request, DELIVERY_ATTRIBUTE, delivery)
    elif settings.verifier.replay_store is None:
        return await call()
    try:
        response = await call()
    except BaseException:
        await afinish(settings.verifier, webhook, delivery, None, path=path, blocking=blocking)
        raise
    await afinish(
        settings.verifier, webhook, delivery, response.status_code, path=path, blocking=blocking
    )
    return response


def _body(request: Any, limit: int) -> bytes:
    declared = declared_length(request.META.get("CONTENT_LENGTH") or None)
    reader = BodyReader(limit, declared)  # 413 for a declared length over the limit
    try:
        body: bytes = request.body
    except RawPostDataException as e:
        # request.POST (multipart) or the stream was read first; the raw bytes are gone.
        raise ConfigurationError(
            "the request body was read before verification; put UpvestWebhookMiddleware "
            "before any middleware touching request.POST"
        ) from e
    except RequestDataTooBig as e:  # above DATA_UPLOAD_MAX_MEMORY_SIZE
        raise VerificationError(Reason.BODY_TOO_LARGE, str(e)) from e
    except UnreadablePostError as e:  # never verify a partial body
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
    except Exception as exc:  # every failure fails closed
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
    except Exception as exc:  # every failure fails closed
        return _reject(request, rejection_for(exc), exc)
    _accept(request, webhook)
    return None


class UpvestWebhookMiddleware:
    """Verify Upvest webhooks on the paths in ``UPVEST_VERIFY["PATHS"]``.

    Works in sync and async stacks. Place it before any middleware that reads
    ``request.POST`` (a consumed body fails closed with 500). On success the view
    gets ``request.upvest_webhook`` and CSRF checks are skipped for the request;
    failures never reach the view.

    With ``UPVEST_VERIFY["LEDGER"]`` each event is processed once across retries and
    workers: a delivery whose events are all done is answered 200
    ``already_processed``, one with an event held by another worker 503
    ``in_progress``; otherwise the view gets ``request.upvest_delivery``
    (:func:`get_delivery`), and the claims it leaves open are completed by a 2xx
    answer and released by any other.

    A view reading ``webhook.events`` of a verified body that is not a
    ``{"payload": [...]}`` envelope gets 400 ``invalid_payload`` instead of a 500
    (:meth:`process_exception`, :func:`payload_response`).

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
            return deliver(request, lambda: self.get_response(request), self._settings)
        return self.get_response(request)

    async def __acall__(self, request: Any) -> Any:
        """Async twin of :meth:`__call__`."""
        if self._settings.paths(request.path_info):
            failure = await averify_request(request, self._settings)
            if failure is not None:
                return failure
            return await adeliver(request, lambda: self.get_response(request), self._settings)
        response: Awaitable[Any] = self.get_response(request)
        return await response

    def process_exception(self, request: Any, exception: Exception) -> Any:
        """Answer a view's :class:`~upvest_verify.PayloadError` for a verified webhook.

        Args:
            request: The ``HttpRequest``.
            exception: What the view raised.

        Returns:
            400 ``invalid_payload`` when the verified body is not an envelope;
            ``None`` (Django's own handling) for anything else.
        """
        if isinstance(exception, PayloadError):
            return payload_response(request)
        return None
