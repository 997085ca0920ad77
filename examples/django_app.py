"""Minimal Upvest webhook receiver as a single-file Django project.

Run (serves on 127.0.0.1; port 0 picks a free one and prints it)::

    UPVEST_JWKS=upvest_jwks.json python examples/django_app.py 8000

In a real project put ``UpvestWebhookMiddleware`` in ``MIDDLEWARE`` and the
``UPVEST_VERIFY`` dict in ``settings.py`` exactly as below. The middleware admits
each verified delivery through the event ledger (``LEDGER``): the view gets only
the events not processed before, and a retried delivery whose events are all done
is answered 200 ``already_processed``.

A delivery whose body is signed but is not a ``{"payload": [...]}`` envelope
never reaches the view: the ledger cannot key it, so the adapter answers 400
``invalid_payload`` and logs it at ERROR (key id and body length) on
``upvest_verify.delivery``. Upvest keeps retrying it, holding back later
deliveries, until the receiver is changed to read it; without a ledger, check
``webhook.envelope_error`` before ``webhook.events`` to read such a body
(``webhook.json()``) or acknowledge it on purpose.
"""

from __future__ import annotations

import os
import sys

from django.conf import settings  # type: ignore[import-untyped,unused-ignore]

if not settings.configured:
    settings.configure(
        DEBUG=False,
        SECRET_KEY=os.environ.get("DJANGO_SECRET_KEY", "example-only-change-me"),
        ALLOWED_HOSTS=["127.0.0.1", "localhost"],
        ROOT_URLCONF=__name__,
        INSTALLED_APPS=["upvest_verify.adapters.django"],  # system checks
        MIDDLEWARE=[
            "upvest_verify.adapters.django.UpvestWebhookMiddleware",  # first: reads the body
            "django.middleware.csrf.CsrfViewMiddleware",
        ],
        UPVEST_VERIFY={
            "JWKS": os.environ.get("UPVEST_JWKS", ""),  # or "JWKS_URL": "https://..."
            "PATHS": ["/webhooks/upvest"],
            # Processes on one host share an SQLite file; redis://host:6379/0 across hosts.
            "LEDGER": os.environ.get("UPVEST_LEDGER", "sqlite:///upvest_events.sqlite3"),
        },
    )

import django  # type: ignore[import-untyped,unused-ignore]
from django.http import HttpRequest, JsonResponse  # type: ignore[import-untyped,unused-ignore]
from django.urls import path  # type: ignore[import-untyped,unused-ignore]

from upvest_verify import Event
from upvest_verify.adapters.django import get_delivery


def handle(event: Event) -> None:
    """Do the work for one event (it runs once per event id)."""


def upvest_webhook(request: HttpRequest) -> JsonResponse:
    """Handle the events of a verified delivery that were not processed before."""
    delivery = get_delivery(request)  # request.upvest_delivery, set by the middleware
    assert delivery is not None  # UPVEST_VERIFY["LEDGER"] is set
    report = delivery.process(handle)  # completes each event as it goes
    return JsonResponse(
        {"received": len(delivery.webhook.events), "processed": len(report.processed)}
    )


urlpatterns = [path("webhooks/upvest", upvest_webhook)]


def main() -> None:
    """Serve on 127.0.0.1 with the stdlib WSGI server (for trying it out)."""
    from wsgiref.simple_server import make_server

    from django.core.management import call_command  # type: ignore[import-untyped,unused-ignore]
    from django.core.wsgi import get_wsgi_application  # type: ignore[import-untyped,unused-ignore]

    django.setup()
    call_command("check", stdout=sys.stderr)  # fails loudly on bad UPVEST_VERIFY settings
    application = get_wsgi_application()
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 8000
    with make_server("127.0.0.1", port, application) as server:
        print(f"listening on http://127.0.0.1:{server.server_port}", flush=True)
        server.serve_forever()


if __name__ == "__main__":
    main()
