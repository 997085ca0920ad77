"""A Django webhook receiver for the emulator tests, run as a child process (not a test module).

Usage: ``python django_receiver.py <jwks-url>``. Configures Django in this process only
(so the test process's own Django settings are never touched), serves the adapter's
middleware on 127.0.0.1 with Werkzeug on a free port, prints the port, and answers each
verified webhook with its event ids and key id.
"""

from __future__ import annotations

import sys

from django.conf import settings  # type: ignore[import-untyped,unused-ignore]

from upvest_verify import Verifier
from upvest_verify.jwks import JWKSCache, URLKeySource

verifier = Verifier(
    JWKSCache(URLKeySource(sys.argv[1], allow_insecure_loopback=True), refresh_cooldown=1)
)
settings.configure(
    DEBUG=False,
    SECRET_KEY="upvest-verify-sandbox-tests-only",
    ALLOWED_HOSTS=["localhost", "127.0.0.1"],
    ROOT_URLCONF=__name__,
    INSTALLED_APPS=["upvest_verify.adapters.django"],
    MIDDLEWARE=["upvest_verify.adapters.django.UpvestWebhookMiddleware"],
    UPVEST_VERIFY={"VERIFIER": verifier, "PATHS": ["/webhooks/*"]},
    USE_TZ=True,
    DATABASES={},
)

import django  # type: ignore[import-untyped,unused-ignore]  # noqa: E402

django.setup()

from django.core.handlers.wsgi import WSGIHandler  # noqa: E402
from django.http import HttpRequest, JsonResponse  # noqa: E402
from django.urls import path  # noqa: E402
from werkzeug.serving import make_server  # noqa: E402


def hook(request: HttpRequest) -> JsonResponse:
    """Answer with what the middleware verified."""
    webhook = request.upvest_webhook  # type: ignore[attr-defined]
    return JsonResponse({"events": [e.id for e in webhook.events], "key_id": webhook.key_id})


urlpatterns = [path("webhooks/upvest", hook)]

if __name__ == "__main__":
    server = make_server("127.0.0.1", 0, WSGIHandler(), threaded=True)
    print(server.server_port, flush=True)
    server.serve_forever()
