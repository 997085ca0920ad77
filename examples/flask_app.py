"""Minimal Upvest webhook receiver on Flask.

Run::

    UPVEST_VERIFY_JWKS=upvest_jwks.json flask --app examples.flask_app run

The extension builds its verifier and its event ledger from ``UPVEST_VERIFY_*``
settings (here read from the environment; the ledger is an SQLite file unless
``UPVEST_VERIFY_LEDGER`` names another). The decorator verifies before the view
runs and hands it only the events not processed before; a retried delivery whose
events are all done is answered 200 ``already_processed``.
"""

from __future__ import annotations

import os

from flask import Flask

from upvest_verify import Event
from upvest_verify.adapters.flask import UpvestVerify, get_delivery, require_upvest_signature

app = Flask(__name__)
# UPVEST_VERIFY_JWKS (file path or JSON), UPVEST_VERIFY_LEDGER, UPVEST_VERIFY_SKEW, ...
app.config.from_mapping({k: v for k, v in os.environ.items() if k.startswith("UPVEST_VERIFY_")})
app.config.setdefault("UPVEST_VERIFY_LEDGER", "sqlite:///upvest_events.sqlite3")
UpvestVerify(app)


def handle(event: Event) -> None:
    """Do the work for one event (it runs once per event id)."""
    app.logger.info("event %s %s", event.type, event.id)


@app.post("/webhooks/upvest")
@require_upvest_signature
def upvest_webhook() -> dict[str, int]:
    """Handle the events of a verified delivery that were not processed before."""
    delivery = get_delivery()
    assert delivery is not None  # UPVEST_VERIFY_LEDGER is set
    report = delivery.process(handle)  # completes each event as it goes
    return {"received": len(delivery.webhook.events), "processed": len(report.processed)}
