"""Minimal Upvest webhook receiver on FastAPI.

Run::

    UPVEST_JWKS=upvest_jwks.json uvicorn examples.fastapi_app:app

``UpvestWebhookMiddleware`` verifies POSTs to ``/webhooks/upvest``; the
``UpvestWebhook`` dependency hands the endpoint the verified result. Events are
acknowledged with 200 and processed once per event id.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

from fastapi import FastAPI

from upvest_verify import KeySet, Verifier
from upvest_verify.adapters.fastapi import UpvestWebhook, UpvestWebhookMiddleware
from upvest_verify.jwks import JWKSCache, URLKeySource


def load_verifier() -> Verifier:
    """Build the verifier from ``UPVEST_JWKS`` (a file) or ``UPVEST_JWKS_URL``."""
    if path := os.environ.get("UPVEST_JWKS"):
        return Verifier(KeySet.from_jwks(Path(path).read_bytes()))
    return Verifier(JWKSCache(URLKeySource(os.environ["UPVEST_JWKS_URL"])))


app = FastAPI()
app.add_middleware(UpvestWebhookMiddleware, verifier=load_verifier())

_seen: set[str] = set()
_lock = threading.Lock()


@app.post("/webhooks/upvest")
async def upvest_webhook(webhook: UpvestWebhook) -> dict[str, int]:
    """Acknowledge a verified delivery; handle each event once (Upvest retries)."""
    with _lock:
        new = [event for event in webhook.events if event.id not in _seen]
        _seen.update(event.id for event in new)
    # Hand ``new`` to a queue or background task here; answer quickly.
    return {"received": len(webhook.events), "new": len(new)}
