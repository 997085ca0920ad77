"""Minimal Upvest webhook receiver on FastAPI.

Run::

    UPVEST_JWKS=upvest_jwks.json uvicorn examples.fastapi_app:app

``UpvestWebhookMiddleware`` verifies POSTs to ``/webhooks/upvest`` and admits them
through an event ledger (``UPVEST_LEDGER``, an SQLite file by default); the
``UpvestDelivery`` dependency hands the endpoint the events not processed before.
A retried delivery whose events are all done is answered 200 ``already_processed``.

A delivery whose body is signed but is not a ``{"payload": [...]}`` envelope
never reaches the endpoint: the ledger cannot key it, so the adapter answers 400
``invalid_payload`` and logs it at ERROR on ``upvest_verify.delivery`` (never
the body). Upvest keeps retrying it, holding back later deliveries, until the
receiver is changed to read it; without a ledger, check ``webhook.envelope_error``
before ``webhook.events`` to read such a body (``webhook.json()``) or acknowledge
it on purpose.
"""

from __future__ import annotations

import os
from pathlib import Path

from fastapi import FastAPI

from upvest_verify import Event, KeySet, Verifier
from upvest_verify.adapters.fastapi import UpvestDelivery, UpvestWebhookMiddleware
from upvest_verify.jwks import JWKSCache, URLKeySource
from upvest_verify.ledger import ledger_from_url


def load_verifier() -> Verifier:
    """Build the verifier from ``UPVEST_JWKS`` (a file) or ``UPVEST_JWKS_URL``."""
    if path := os.environ.get("UPVEST_JWKS"):
        return Verifier(KeySet.from_jwks(Path(path).read_bytes()))
    return Verifier(JWKSCache(URLKeySource(os.environ["UPVEST_JWKS_URL"])))


app = FastAPI()
app.add_middleware(
    UpvestWebhookMiddleware,
    verifier=load_verifier(),
    ledger=ledger_from_url(os.environ.get("UPVEST_LEDGER", "sqlite:///upvest_events.sqlite3")),
)


async def handle(event: Event) -> None:
    """Do the work for one event (it runs once per event id)."""


@app.post("/webhooks/upvest")
async def upvest_webhook(delivery: UpvestDelivery) -> dict[str, int]:
    """Handle the events of a verified delivery that were not processed before."""
    report = await delivery.aprocess(handle)  # completes each event as it goes
    return {"received": len(delivery.webhook.events), "processed": len(report.processed)}
