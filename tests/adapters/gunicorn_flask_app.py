"""A Flask receiver for the gunicorn test (run by gunicorn in a child process).

Keys come from the ``UPVEST_VERIFY_JWKS`` environment variable (JSON text).
"""

from __future__ import annotations

import os

from flask import Flask, g, request

from upvest_verify.adapters.flask import UpvestVerify, require_upvest_signature

app = Flask(__name__)
app.config["UPVEST_VERIFY_JWKS"] = os.environ["UPVEST_VERIFY_JWKS"]
UpvestVerify(app)


@app.post("/webhooks/upvest")
@require_upvest_signature
def receive() -> dict[str, object]:
    """Echo what the view saw."""
    return {"length": len(request.get_data()), "key_id": g.upvest_webhook.key_id}
