"""Minimal Django settings and URLconf for the adapter tests (``DJANGO_SETTINGS_MODULE``)."""

from __future__ import annotations

import json
from typing import Any

from adapter_support import SIGNING_KEY
from django.http import HttpRequest, HttpResponse, JsonResponse  # type: ignore[import-untyped,unused-ignore]
from django.urls import path  # type: ignore[import-untyped,unused-ignore]

from upvest_verify import Policy, VerifiedWebhook, Verifier
from upvest_verify.adapters.django import require_upvest_signature
from upvest_verify.testing import make_key_set

LIMIT = 8192


class CountingVerifier(Verifier):
    """A verifier that counts its verifications (sync and async)."""

    __slots__ = ("calls",)

    def __init__(self) -> None:
        super().__init__(make_key_set(SIGNING_KEY), policy=Policy(max_body_size=LIMIT))
        self.calls = 0

    def verify(self, *args: Any, **kwargs: Any) -> VerifiedWebhook:
        self.calls += 1
        return super().verify(*args, **kwargs)

    async def averify(self, *args: Any, **kwargs: Any) -> VerifiedWebhook:
        self.calls += 1
        return await super().averify(*args, **kwargs)


class ExplodingVerifier(Verifier):
    """A verifier whose internals crash (G13)."""

    __slots__ = ()

    def verify(self, *args: Any, **kwargs: Any) -> VerifiedWebhook:
        raise RuntimeError("boom")

    async def averify(self, *args: Any, **kwargs: Any) -> VerifiedWebhook:
        raise RuntimeError("boom")


def exploding() -> Verifier:
    """Factory for ``UPVEST_VERIFY["VERIFIER"]`` (dotted path)."""
    return ExplodingVerifier(make_key_set(SIGNING_KEY))


COUNTING = CountingVerifier()
CALLS: list[dict[str, Any]] = []

SECRET_KEY = "upvest-verify-adapter-tests-only"
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
ROOT_URLCONF = "django_settings"
INSTALLED_APPS = ["upvest_verify.adapters.django"]
MIDDLEWARE = [
    "upvest_verify.adapters.django.UpvestWebhookMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
]
USE_TZ = True
DATABASES: dict[str, Any] = {}
UPVEST_VERIFY: dict[str, Any] = {"VERIFIER": COUNTING, "PATHS": ["/webhooks/*"]}


class ReadPostMiddleware:
    """An app middleware that reads ``request.POST`` before the verifier (G6)."""

    def __init__(self, get_response: Any) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> Any:
        _ = request.POST
        return self.get_response(request)


def _record(request: HttpRequest, kind: str) -> HttpResponse:
    webhook = request.upvest_webhook  # type: ignore[attr-defined,unused-ignore]
    document = json.loads(request.body) if request.body else None
    CALLS.append({"kind": kind, "body": request.body, "json": document, "webhook": webhook})
    return JsonResponse({"kind": kind, "events": len(webhook.events)})


def sync_view(request: HttpRequest) -> HttpResponse:
    """Plain sync view behind the middleware."""
    return _record(request, "sync")


async def async_view(request: HttpRequest) -> HttpResponse:
    """Async view behind the middleware."""
    return _record(request, "async")


@require_upvest_signature
def decorated_sync(request: HttpRequest) -> HttpResponse:
    """Sync view protected by the decorator only."""
    return _record(request, "decorated-sync")


@require_upvest_signature
async def decorated_async(request: HttpRequest) -> HttpResponse:
    """Async view protected by the decorator only."""
    return _record(request, "decorated-async")


def tenant_view(request: HttpRequest, rest: str) -> HttpResponse:
    """A catch-all view behind the middleware, for percent-encoded paths."""
    return _record(request, "tenant")


def other(request: HttpRequest) -> HttpResponse:
    """An unprotected view."""
    CALLS.append({"kind": "other", "body": request.body})
    return HttpResponse("other")


urlpatterns = [
    path("webhooks/sync", sync_view),
    path("webhooks/async", async_view),
    path("webhooks/t/<path:rest>", tenant_view),
    path("decorated/sync", decorated_sync),
    path("decorated/async", decorated_async),
    path("other", other),
]
