"""Verify Upvest Investment API webhooks: HTTP Message Signatures with ECDSA P-521.

The core is pure (no I/O) and imports no web framework::

    from upvest_verify import KeySet, verify

    keys = KeySet.from_jwks(jwks_json)          # body of GET /auth/verify_keys
    webhook = verify("POST", url, headers, body, keys=keys)
    for event in webhook.events:
        ...

Framework adapters live in :mod:`upvest_verify.adapters`; the rotating key cache
in :mod:`upvest_verify.jwks`; test helpers in :mod:`upvest_verify.testing`.
"""

from __future__ import annotations

from ._crypto import VerifyingKey
from ._keyset import KeySet
from ._policy import Policy
from ._result import Dialect, Event, PayloadError, VerifiedWebhook
from .errors import (
    ConfigurationError,
    InvalidSignature,
    JWKSError,
    KeyNotFound,
    KeySetUnavailable,
    Reason,
    RequestTooLarge,
    VerificationError,
)
from .jwks import JWKSCache, StaticKeySource, URLKeySource
from .types import AsyncKeyProvider, KeyProvider
from .verifier import Verifier, verify

__version__ = "0.1.0"

__all__ = [
    "AsyncKeyProvider",
    "ConfigurationError",
    "Dialect",
    "Event",
    "InvalidSignature",
    "JWKSCache",
    "JWKSError",
    "KeyNotFound",
    "KeyProvider",
    "KeySet",
    "KeySetUnavailable",
    "PayloadError",
    "Policy",
    "Reason",
    "RequestTooLarge",
    "StaticKeySource",
    "URLKeySource",
    "VerificationError",
    "VerifiedWebhook",
    "Verifier",
    "VerifyingKey",
    "__version__",
    "verify",
]

# Present the public names as living in the package itself (nicer reprs and docs).
for _name in __all__:
    if _name != "__version__":
        globals()[_name].__module__ = __name__
del _name
