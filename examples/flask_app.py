"""Minimal Upvest webhook receiver on Flask.

Run::

    UPVEST_VERIFY_JWKS=upvest_jwks.json flask --app examples.flask_app run

The extension builds its verifier and its event ledger from ``UPVEST_VERIFY_*``
settings (here read from the environment; the ledger is an SQLite file unless
``UPVEST_VERIFY_LEDGER`` names another). It verifies every request to
``UPVEST_VERIFY_PATHS`` (``/webhooks/upvest`` by default) before the view runs, and
hands the view only the events not processed before; a retried delivery whose
events are all done is answered 200 ``already_processed``. Views on other paths
take ``@require_upvest_signature``.

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

from flask import Flask

from upvest_verify import Event
from upvest_verify.adapters.flask import UpvestVerify, get_delivery

app = Flask(__name__)
# UPVEST_VERIFY_JWKS (file path or JSON), UPVEST_VERIFY_LEDGER, UPVEST_VERIFY_SKEW, ...
app.config.from_mapping({k: v for k, v in os.environ.items() if k.startswith("UPVEST_VERIFY_")})
app.config.setdefault("UPVEST_VERIFY_LEDGER", "sqlite:///upvest_events.sqlite3")
UpvestVerify(app)  # protects /webhooks/upvest (UPVEST_VERIFY_PATHS)


def handle(event: Event) -> None:
    """Do the work for one event (it runs once per event id)."""
    app.logger.info("event %s %s", event.type, event.id)


@app.post("/webhooks/upvest")
def upvest_webhook() -> dict[str, int]:
    """Handle the events of a verified delivery that were not processed before."""
    delivery = get_delivery()
    assert delivery is not None  # UPVEST_VERIFY_LEDGER is set
    report = delivery.process(handle)  # completes each event as it goes
    return {"received": len(delivery.webhook.events), "processed": len(report.processed)}
