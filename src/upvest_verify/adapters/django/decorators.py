"""``@require_upvest_signature`` for single Django views (sync or async)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar, cast

from asgiref.sync import iscoroutinefunction

from upvest_verify.adapters.django.middleware import averify_request, verify_request

__all__ = ["require_upvest_signature"]

F = TypeVar("F", bound=Callable[..., Any])


def require_upvest_signature(view: F) -> F:
    """Run ``view`` only for a verified Upvest webhook.

    Reads ``request.body`` (cached by Django, so the view can read it again),
    verifies it with the verifier built from ``settings.UPVEST_VERIFY``, and sets
    ``request.upvest_webhook``. Failures are answered with
    ``application/problem+json`` and the view is not called. The view is marked
    CSRF-exempt (a signed delivery is no browser form). If
    :class:`~upvest_verify.adapters.django.UpvestWebhookMiddleware` already verified
    the request, it is not verified twice.

    Example::

        @require_upvest_signature
        def upvest_webhook(request):
            for event in request.upvest_webhook.events:
                ...
            return HttpResponse(status=200)

    For class-based views use ``method_decorator(require_upvest_signature,
    name="dispatch")``.

    Args:
        view: A function view, sync or ``async``.

    Returns:
        The wrapped view.
    """
    if iscoroutinefunction(view):

        async def async_view(request: Any, *args: Any, **kwargs: Any) -> Any:
            failure = await averify_request(request)
            if failure is not None:
                return failure
            return await view(request, *args, **kwargs)

        wrapped: Callable[..., Any] = async_view
    else:

        def sync_view(request: Any, *args: Any, **kwargs: Any) -> Any:
            failure = verify_request(request)
            if failure is not None:
                return failure
            return view(request, *args, **kwargs)

        wrapped = sync_view
    wrapped = functools.wraps(view)(wrapped)
    wrapped.csrf_exempt = True  # type: ignore[attr-defined]
    return cast(F, wrapped)
