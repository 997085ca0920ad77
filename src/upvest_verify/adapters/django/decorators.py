"""``@require_upvest_signature`` for single Django views (sync or async)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar, cast, overload

from asgiref.sync import iscoroutinefunction

from upvest_verify import PayloadError
from upvest_verify.adapters._delivery import check_ledger
from upvest_verify.adapters.django.middleware import (
    adeliver,
    averify_request,
    deliver,
    payload_response,
    verify_request,
)
from upvest_verify.ledger import BaseLedger

__all__ = ["require_upvest_signature"]

F = TypeVar("F", bound=Callable[..., Any])


def _decorate(view: F, ledger: BaseLedger | None, inbox: bool | None) -> F:
    if iscoroutinefunction(view):

        async def async_view(request: Any, *args: Any, **kwargs: Any) -> Any:
            failure = await averify_request(request)
            if failure is not None:
                return failure
            try:
                return await adeliver(
                    request, lambda: view(request, *args, **kwargs), ledger=ledger, inbox=inbox
                )
            except PayloadError:
                answer = payload_response(request)
                if answer is None:
                    raise
                return answer

        wrapped: Callable[..., Any] = async_view
    else:

        def sync_view(request: Any, *args: Any, **kwargs: Any) -> Any:
            failure = verify_request(request)
            if failure is not None:
                return failure
            try:
                return deliver(
                    request, lambda: view(request, *args, **kwargs), ledger=ledger, inbox=inbox
                )
            except PayloadError:
                answer = payload_response(request)
                if answer is None:
                    raise
                return answer

        wrapped = sync_view
    wrapped = functools.wraps(view)(wrapped)
    wrapped.csrf_exempt = True  # type: ignore[attr-defined]
    return cast(F, wrapped)


@overload
def require_upvest_signature(view: F) -> F: ...


@overload
def require_upvest_signature(
    view: None = None, *, ledger: BaseLedger | None = None, inbox: bool | None = None
) -> Callable[[F], F]: ...


def require_upvest_signature(
    view: F | None = None, *, ledger: BaseLedger | None = None, inbox: bool | None = None
) -> F | Callable[[F], F]:
    """Run ``view`` only for a verified Upvest webhook.

    Reads ``request.body`` (cached by Django, so the view can read it again),
    verifies it with the verifier built from ``settings.UPVEST_VERIFY``, and sets
    ``request.upvest_webhook``. Failures are answered with
    ``application/problem+json`` and the view is not called. The view is marked
    CSRF-exempt (a signed delivery is no browser form). If
    :class:`~upvest_verify.adapters.django.UpvestWebhookMiddleware` already verified
    the request, it is not verified (or admitted through a ledger) twice. A view
    reading ``webhook.events`` of a verified body that is not an envelope gets 400
    ``invalid_payload`` instead of a 500.

    With an event ledger (``UPVEST_VERIFY["LEDGER"]``, or ``ledger=`` here) the view
    gets only the events still to process, as ``request.upvest_delivery``; see
    :class:`~upvest_verify.adapters.django.UpvestWebhookMiddleware`.

    Example::

        @require_upvest_signature
        def upvest_webhook(request):
            for event in request.upvest_webhook.events:
                ...
            return HttpResponse(status=200)

        @require_upvest_signature(ledger=SQLiteLedger("events.sqlite3"))
        def upvest_orders(request):
            get_delivery(request).process(handle_event)
            return HttpResponse(status=200)

    For class-based views use ``method_decorator(require_upvest_signature,
    name="dispatch")``.

    Args:
        view: A function view, sync or ``async`` (when used without arguments).
        ledger: An event ledger for this view, instead of ``UPVEST_VERIFY["LEDGER"]``.
        inbox: Override ``UPVEST_VERIFY["INBOX"]`` for this view.

    Returns:
        The wrapped view, or a decorator when called with keyword arguments only.

    Raises:
        ConfigurationError: ``ledger`` is not a ledger.
    """
    check_ledger(ledger)
    if view is None:
        return lambda view: _decorate(view, ledger, inbox)
    return _decorate(view, ledger, inbox)
