"""Minimal Upvest webhook receiver on Flask.

Run::

    UPVEST_VERIFY_JWKS=upvest_jwks.json flask --app examples.flask_app run

The extension builds its verifier from ``UPVEST_VERIFY_*`` settings (here read
from the environment); the decorator verifies before the view runs. Events are
acknowledged with 200 and processed once per event id.
"""

from __future__ import annotations

import os
import threading

from flask import Flask, g

from upvest_verify.adapters.flask import UpvestVerify, require_upvest_signature

app = Flask(__name__)
# UPVEST_VERIFY_JWKS (file path or JSON), UPVEST_VERIFY_SKEW, UPVEST_VERIFY_PUBLIC_URL, ...
app.config.from_mapping({k: v for k, v in os.environ.items() if k.startswith("UPVEST_VERIFY_")})
UpvestVerify(app)

_seen: set[str] = set()
_lock = threading.Lock()


@app.post("/webhooks/upvest")
@require_upvest_signature
def upvest_webhook() -> dict[str, int]:
    """Acknowledge a verified delivery; handle each event once (Upvest retries)."""
    webhook = g.upvest_webhook
    with _lock:
        new = [event for event in webhook.events if event.id not in _seen]
        _seen.update(event.id for event in new)
    return {"received": len(webhook.events), "new": len(new)}
