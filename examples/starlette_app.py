"""Minimal Upvest webhook receiver on Starlette.

Run (keys from a JWKS file, or a JWKS URL you host)::

    UPVEST_JWKS=upvest_jwks.json uvicorn examples.starlette_app:app

The middleware verifies every POST to ``/webhooks/upvest`` before the endpoint
runs, and admits it through an event ledger (``UPVEST_LEDGER``, an SQLite file by
default): the endpoint gets only the events not processed before. Upvest retries
whole deliveries, so duplicates are normal; a retry of a delivery whose events are
all done is answered 200 ``already_processed`` without calling the endpoint.

A delivery whose body is signed but is not a ``{"payload": [...]}`` envelope
never reaches the endpoint: the ledger cannot key it, so the adapter answers 400
``invalid_payload`` and logs it at ERROR on ``upvest_verify.delivery`` (never
the body). Upvest keeps retrying it, holding back later deliveries, until the
receiver is changed to read it; without a ledger, check ``webhook.envelope_error``
before ``webhook.events`` to read such a body (``webhook.json()``) or acknowledge
it on purpose.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from upvest_verify import Event, KeySet, Verifier
from upvest_verify.adapters.starlette import UpvestWebhookMiddleware, get_delivery
from upvest_verify.jwks import JWKSCache, URLKeySource
from upvest_verify.ledger import ledger_from_url

log = logging.getLogger("webhooks")


def load_verifier() -> Verifier:
    """Build the verifier from ``UPVEST_JWKS`` (a file) or ``UPVEST_JWKS_URL``."""
    if path := os.environ.get("UPVEST_JWKS"):
        return Verifier(KeySet.from_jwks(Path(path).read_bytes()))
    return Verifier(JWKSCache(URLKeySource(os.environ["UPVEST_JWKS_URL"])))


# Processes on one host share an SQLite file; use redis://... across hosts.
ledger = ledger_from_url(os.environ.get("UPVEST_LEDGER", "sqlite:///upvest_events.sqlite3"))


async def handle(event: Event) -> None:
    """Do the work for one event (it runs once per event id)."""
    log.info("event %s %s", event.type, event.id)


async def upvest_webhook(request: Request) -> JSONResponse:
    """Handle the events of a verified delivery that were not processed before."""
    delivery = get_delivery(request)
    assert delivery is not None  # the middleware has a ledger
    # Each event's claim is completed as soon as handle() returns; if it raises, the
    # rest go back to the ledger and the 500 makes Upvest retry the unfinished ones.
    report = await delivery.aprocess(handle)
    return JSONResponse(
        {"received": len(delivery.webhook.events), "processed": len(report.processed)}
    )


app = Starlette(
    routes=[Route("/webhooks/upvest", upvest_webhook, methods=["POST"])],
    middleware=[Middleware(UpvestWebhookMiddleware, verifier=load_verifier(), ledger=ledger)],
)
