"""Manage Upvest webhook subscriptions, and fetch Upvest's webhook keys.

Needs ``pip install 'upvest-verify[client]'`` (httpx)::

    from upvest_verify.client import UpvestClient
    from upvest_verify.signing import SigningKey

    key = SigningKey.from_pem(pem, key_id="...")
    with UpvestClient(base_url="sandbox", client_id="...", client_secret="...",
                      signing_key=key) as client:
        webhook = client.webhooks.create(title="Users", url="https://tenant.example/hooks",
                                         types=["USER"], delay="1s")
        client.webhooks.enable(webhook.id)
        cache = JWKSCache(client.key_source())

Requests are signed as Upvest's v15 reference signers sign them (through
:mod:`upvest_verify.signing`, the same code the verifier checks with) and carry an
OAuth2 token (client credentials; ``webhooks:read`` for reads, ``webhooks:admin``
for writes). Layout, after httpx: ``_auth`` (token + signing in one auth flow),
``_api`` (each endpoint described once; the call flow with retries and error
mapping), ``_client`` (the blocking and asyncio drivers), ``_keysource``,
``_models``, ``_validation``, ``_retry``, ``_errors``, ``_config`` (the adapters' settings).
"""

from __future__ import annotations

try:
    import httpx  # noqa: F401
except ImportError as e:  # pragma: no cover - depends on the environment
    raise ImportError(
        "upvest_verify.client needs httpx: pip install 'upvest-verify[client]'"
    ) from e

from ._auth import UpvestAuth
from ._client import AsyncUpvestClient, AsyncWebhooks, UpvestClient, Webhooks
from ._config import key_source_from_settings
from ._errors import (
    BadRequest,
    Forbidden,
    InvalidDelay,
    InvalidEventTypes,
    InvalidListParameter,
    InvalidMaxPackageSize,
    InvalidTitle,
    InvalidURL,
    InvalidWebhookId,
    NotFound,
    RateLimited,
    ServerError,
    Unauthorised,
    UnexpectedResponse,
    UnknownFields,
    UpvestAPIError,
    UpvestConnectionError,
    UpvestError,
    WebhookValidationError,
)
from ._keysource import AsyncUpvestKeySource, UpvestKeySource
from ._models import PageMeta, Webhook, WebhookPage
from ._retry import RetryPolicy
from ._validation import EVENT_CATEGORIES

__all__ = [
    "EVENT_CATEGORIES",
    "AsyncUpvestClient",
    "AsyncUpvestKeySource",
    "AsyncWebhooks",
    "BadRequest",
    "Forbidden",
    "InvalidDelay",
    "InvalidEventTypes",
    "InvalidListParameter",
    "InvalidMaxPackageSize",
    "InvalidTitle",
    "InvalidURL",
    "InvalidWebhookId",
    "NotFound",
    "PageMeta",
    "RateLimited",
    "RetryPolicy",
    "ServerError",
    "Unauthorised",
    "UnexpectedResponse",
    "UnknownFields",
    "UpvestAPIError",
    "UpvestAuth",
    "UpvestClient",
    "UpvestConnectionError",
    "UpvestError",
    "UpvestKeySource",
    "Webhook",
    "WebhookPage",
    "WebhookValidationError",
    "Webhooks",
    "key_source_from_settings",
]

# Present the names defined in the private modules as this package's own.
for _name in __all__:
    _obj = globals()[_name]
    if getattr(_obj, "__module__", "").startswith(__name__ + "."):
        _obj.__module__ = __name__
del _name, _obj
