"""A Flask receiver protected by the extension alone, for gunicorn (run in a child process).

No view is decorated: ``UpvestVerify(app)`` protects ``/webhooks/upvest``, the default
path. Keys come from the ``UPVEST_VERIFY_JWKS`` environment variable (JSON text).
"""

from __future__ import annotations

import os

from flask import Flask, request

from upvest_verify.adapters.flask import UpvestVerify, get_webhook

app = Flask(__name__)
app.config["UPVEST_VERIFY_JWKS"] = os.environ["UPVEST_VERIFY_JWKS"]
UpvestVerify(app)


@app.post("/webhooks/upvest")
def receive() -> dict[str, object]:
    """Echo what the view saw; it runs only for a verified webhook."""
    webhook = get_webhook()
    return {
        "length": len(request.get_data()),
        "key_id": None if webhook is None else webhook.key_id,
    }


@app.post("/elsewhere")
def elsewhere() -> dict[str, object]:
    """An unprotected view."""
    return {"verified": get_webhook() is not None}
