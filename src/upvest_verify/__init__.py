"""Verify Upvest Investment API webhooks: HTTP Message Signatures with ECDSA P-521.

The core is pure (no I/O) and imports no web framework::

    from upvest_verify import KeySet, verify

    keys = KeySet.from_jwks(jwks_json)          # body of GET /auth/verify_keys
    webhook = verify("POST", url, headers, body, keys=keys)
    for event in webhook.events:
        ...

Framework adapters live in :mod:`upvest_verify.adapters`; the rotating key cache
in :mod:`upvest_verify.jwks`; test helpers in :mod:`upvest_verify.testing`.

``import upvest_verify`` loads only the exceptions; every other public name is
imported the first time it is used (``from upvest_verify import Verifier`` or
``upvest_verify.Verifier``), so a process that imports the package without
verifying (a CLI, a management command, a worker) does not pay for the verifier,
``cryptography`` or the key cache. A receiver calls :func:`warm_up` (or
:meth:`Verifier.warm_up`) at start-up so that its first webhook costs what every
later one does.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

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

if TYPE_CHECKING:
    from ._crypto import VerifyingKey
    from ._keyset import KeySet
    from ._policy import Policy
    from ._result import Dialect, Event, PayloadError, VerifiedWebhook
    from ._warmup import warm_up
    from .jwks import JWKSCache, StaticKeySource, URLKeySource
    from .types import AsyncKeyProvider, KeyProvider
    from .verifier import Verifier, verify

__version__ = "0.2.0.dev0"

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
    "warm_up",
]

# Public name -> the module that defines it, imported on first access (PEP 562).
_LAZY: dict[str, str] = {
    "AsyncKeyProvider": ".types",
    "Dialect": "._result",
    "Event": "._result",
    "JWKSCache": ".jwks",
    "KeyProvider": ".types",
    "KeySet": "._keyset",
    "PayloadError": "._result",
    "Policy": "._policy",
    "StaticKeySource": ".jwks",
    "URLKeySource": ".jwks",
    "VerifiedWebhook": "._result",
    "Verifier": ".verifier",
    "VerifyingKey": "._crypto",
    "verify": ".verifier",
    "warm_up": "._warmup",
}


def _present(value: Any) -> Any:
    # Present the public names as living in the package itself (nicer reprs and docs).
    if getattr(value, "__module__", "").startswith(__name__ + "."):
        value.__module__ = __name__
    return value


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = _present(getattr(import_module(module, __name__), name))
    globals()[name] = value  # later lookups are plain attribute reads
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


for _name in __all__:
    if _name in globals() and _name != "__version__":
        _present(globals()[_name])
del _name
