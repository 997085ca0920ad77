"""URLconf and views for the Django event-ledger tests (``ROOT_URLCONF`` override; not a test module).

The middleware protects ``/webhooks/*``; ``/decorated/*`` rely on the decorator only.
Every view hands its delivery to :data:`SCRIPT`, which the test sets before sending.
"""

from __future__ import annotations

from typing import Any

from delivery_support import Script
from django.http import HttpRequest, JsonResponse  # type: ignore[import-untyped,unused-ignore]
from django.urls import path  # type: ignore[import-untyped,unused-ignore]

from upvest_verify.adapters.django import get_delivery, get_webhook, require_upvest_signature
from upvest_verify.ledger import MemoryLedger

SCRIPT = Script()
OWN_LEDGER = MemoryLedger()
"""The ledger of ``/decorated/own``, given to its decorator instead of the settings'."""


def _answer(result: tuple[dict[str, Any], int]) -> JsonResponse:
    document, status = result
    return JsonResponse(document, status=status)


def sync_view(request: HttpRequest) -> JsonResponse:
    """A sync view behind the middleware."""
    delivery = get_delivery(request)
    assert delivery is None or delivery.webhook is get_webhook(request)
    return _answer(SCRIPT.run(delivery))


async def async_view(request: HttpRequest) -> JsonResponse:
    """An async view behind the middleware."""
    return _answer(await SCRIPT.arun(get_delivery(request)))


@require_upvest_signature
def decorated_sync(request: HttpRequest) -> JsonResponse:
    """A sync view protected by the decorator only (the settings' ledger)."""
    return _answer(SCRIPT.run(get_delivery(request)))


@require_upvest_signature
async def decorated_async(request: HttpRequest) -> JsonResponse:
    """An async view protected by the decorator only (the settings' ledger)."""
    return _answer(await SCRIPT.arun(get_delivery(request)))


@require_upvest_signature(ledger=OWN_LEDGER)
def decorated_own(request: HttpRequest) -> JsonResponse:
    """A view whose decorator brings its own ledger."""
    return _answer(SCRIPT.run(get_delivery(request)))


urlpatterns = [
    path("webhooks/sync", sync_view),
    path("webhooks/async", async_view),
    path("decorated/sync", decorated_sync),
    path("decorated/async", decorated_async),
    path("decorated/own", decorated_own),
]
