"""Verify Upvest webhooks in Django (WSGI and ASGI, sync and async views).

Requires ``pip install 'upvest-verify[django]'``. Configure in ``settings.py``::

    INSTALLED_APPS = [..., "upvest_verify.adapters.django"]   # system checks
    MIDDLEWARE = [
        "upvest_verify.adapters.django.UpvestWebhookMiddleware",   # early in the list
        ...
    ]
    UPVEST_VERIFY = {
        "JWKS": BASE_DIR / "upvest_jwks.json",   # or JWKS_URL / KEYS / VERIFIER
        "PATHS": ["/webhooks/upvest"],
        "SKEW": 60,
    }

or protect single views with :func:`require_upvest_signature`. The verified
webhook is ``request.upvest_webhook`` (:func:`get_webhook`). With
``UPVEST_VERIFY["LEDGER"]`` (a ledger, or a URL such as ``"sqlite:///events.sqlite3"``)
each event is processed once: the view gets the events still to process as
``request.upvest_delivery`` (:func:`get_delivery`, a :class:`Delivery`).
"""

from __future__ import annotations

import importlib.util

if importlib.util.find_spec("django") is None:  # pragma: no cover - only without the extra
    raise ImportError(
        "upvest_verify.adapters.django needs Django: pip install 'upvest-verify[django]'"
    )

from upvest_verify.adapters._delivery import Delivery
from upvest_verify.adapters.django.decorators import require_upvest_signature
from upvest_verify.adapters.django.middleware import (
    UpvestWebhookMiddleware,
    get_delivery,
    get_webhook,
)

__all__ = [
    "Delivery",
    "UpvestWebhookMiddleware",
    "get_delivery",
    "get_webhook",
    "require_upvest_signature",
]
