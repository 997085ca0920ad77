"""Minimal Upvest webhook receiver on Starlette.

Run (keys from a JWKS file, or a JWKS URL you host)::

    UPVEST_JWKS=upvest_jwks.json uvicorn examples.starlette_app:app

The middleware verifies every POST to ``/webhooks/upvest`` before the endpoint
runs; the endpoint acknowledges with 200 and skips events it has already seen
(Upvest retries whole deliveries, so duplicates are normal).
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from upvest_verify import KeySet, Verifier
from upvest_verify.adapters.starlette import UpvestWebhookMiddleware
from upvest_verify.jwks import JWKSCache, URLKeySource

log = logging.getLogger("webhooks")


def load_verifier() -> Verifier:
    """Build the verifier from ``UPVEST_JWKS`` (a file) or ``UPVEST_JWKS_URL``."""
    if path := os.environ.get("UPVEST_JWKS"):
        return Verifier(KeySet.from_jwks(Path(path).read_bytes()))
    return Verifier(JWKSCache(URLKeySource(os.environ["UPVEST_JWKS_URL"])))


class SeenEvents:
    """Event ids already processed (use a unique database column in production)."""

    def __init__(self) -> None:
        self._ids: set[str] = set()
        self._lock = threading.Lock()

    def first_time(self, event_id: str) -> bool:
        """Record ``event_id``; return whether it was new."""
        with self._lock:
            if event_id in self._ids:
                return False
            self._ids.add(event_id)
            return True


seen = SeenEvents()


async def upvest_webhook(request: Request) -> JSONResponse:
    """Acknowledge a verified delivery; handle each event once."""
    webhook = request.state.upvest_webhook
    new = [event for event in webhook.events if seen.first_time(event.id)]
    for event in new:
        log.info("event %s %s", event.type, event.id)  # hand over to a queue here
    return JSONResponse({"received": len(webhook.events), "new": len(new)})


app = Starlette(
    routes=[Route("/webhooks/upvest", upvest_webhook, methods=["POST"])],
    middleware=[Middleware(UpvestWebhookMiddleware, verifier=load_verifier())],
)
