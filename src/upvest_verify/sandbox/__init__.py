"""A local emulator of Upvest's Investment API that really signs and delivers webhooks.

Needs the ``sandbox`` extra (``pip install 'upvest-verify[sandbox]'``: Starlette,
uvicorn, httpx)::

    from upvest_verify.sandbox import Sandbox

    with Sandbox(port=0, time_scale=0.01, allow_http=True) as sb:
        hook = sb.add_webhook("http://localhost:8000/webhooks/upvest")
        sb.emit("ORDER.FILLED")
        [delivery] = sb.wait_for_deliveries(1)
        assert delivery.status_codes[-1] == 200

The server (loopback by default) answers ``POST /auth/token``, ``GET
/auth/verify_keys``, the ``/webhooks`` API and ``POST /webhooks/{id}/test``, checking
every call's signature against the tenant's registered key, its token and scope. A
tenant is created at start-up (:attr:`Sandbox.tenant`: client id, secret and the
private key it signs requests with). Events are batched per subscription, signed with
the current webhook key in the configured dialect and sent over HTTPS (or plain HTTP
to ``http://localhost:<port>`` with ``allow_http``), retried with Upvest's back-off.
The ``/_sandbox/`` endpoints (unsigned, loopback only) emit events, rotate keys, list
deliveries and spoil the next delivery; ``/events-acceptor-service/`` emulates the
relay Upvest's signing proxy uses to show webhooks.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._deliver import DEFAULT_DIALECT, WebhookDialect, backoff
    from ._samples import sample_object
    from ._sandbox import Sandbox
    from ._state import TEST_EVENT_TYPE, Attempt, Delivery, Tenant

__all__ = [
    "DEFAULT_DIALECT",
    "TEST_EVENT_TYPE",
    "Attempt",
    "Delivery",
    "Sandbox",
    "Tenant",
    "WebhookDialect",
    "backoff",
    "sample_object",
]

# Imported on first use (PEP 562), so that importing the pytest plugin beside this
# package costs nothing, and works, without the extra.
_HOMES = {
    "DEFAULT_DIALECT": "._deliver",
    "WebhookDialect": "._deliver",
    "backoff": "._deliver",
    "Sandbox": "._sandbox",
    "sample_object": "._samples",
    "TEST_EVENT_TYPE": "._state",
    "Attempt": "._state",
    "Delivery": "._state",
    "Tenant": "._state",
}
_HINT = "upvest_verify.sandbox needs its extra: pip install 'upvest-verify[sandbox]'"


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    try:
        module = importlib.import_module(home, __name__)
    except ImportError as e:
        if e.name in ("starlette", "uvicorn", "httpx", "anyio", "h11"):
            raise ImportError(_HINT, name=e.name) from e
        raise
    value = getattr(module, name)
    if isinstance(value, type):
        value.__module__ = __name__
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
