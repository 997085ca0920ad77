"""URLconf for the Django tests of bodies that are not envelopes (``ROOT_URLCONF``; not a test module).

The middleware protects ``/webhooks/*``; ``/decorated/*`` rely on the decorator. Each
view reads ``webhook.events`` the way a handler does, or, under ``/*/lenient``, checks
``envelope_error`` first and acknowledges another shape on purpose.
"""

from __future__ import annotations

from django.http import HttpRequest, JsonResponse  # type: ignore[import-untyped,unused-ignore]
from django.urls import path  # type: ignore[import-untyped,unused-ignore]

from upvest_verify import PayloadError
from upvest_verify.adapters.django import get_webhook, require_upvest_signature

CALLS: list[str] = []


def _events(request: HttpRequest, kind: str) -> JsonResponse:
    webhook = get_webhook(request)
    assert webhook is not None
    CALLS.append(kind)
    return JsonResponse({"events": len(webhook.events)})  # PayloadError for another shape


def sync_view(request: HttpRequest) -> JsonResponse:
    """A sync view behind the middleware."""
    return _events(request, "sync")


async def async_view(request: HttpRequest) -> JsonResponse:
    """An async view behind the middleware."""
    return _events(request, "async")


@require_upvest_signature
def decorated_sync(request: HttpRequest) -> JsonResponse:
    """A sync view protected by the decorator only."""
    return _events(request, "decorated-sync")


@require_upvest_signature
async def decorated_async(request: HttpRequest) -> JsonResponse:
    """An async view protected by the decorator only."""
    return _events(request, "decorated-async")


def lenient(request: HttpRequest) -> JsonResponse:
    """Acknowledges a verified body of another shape on purpose."""
    webhook = get_webhook(request)
    assert webhook is not None
    CALLS.append("lenient")
    if webhook.envelope_error is not None:
        return JsonResponse({"other_shape": webhook.json()})
    return JsonResponse({"events": len(webhook.events)})


def own_error(request: HttpRequest) -> JsonResponse:
    """Raises a PayloadError of its own for a body that is an envelope: not the adapter's."""
    CALLS.append("own-error")
    raise PayloadError("the handler's own parsing failed")


urlpatterns = [
    path("webhooks/sync", sync_view),
    path("webhooks/async", async_view),
    path("webhooks/lenient", lenient),
    path("webhooks/own-error", own_error),
    path("decorated/sync", decorated_sync),
    path("decorated/async", decorated_async),
]
