"""Verify Upvest webhooks in Flask: the ``UpvestVerify`` extension and a view decorator.

Requires ``pip install 'upvest-verify[flask]'``.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
from collections.abc import Callable
from typing import Any, Final, TypeVar, cast

try:
    from flask import Flask, Response, current_app, g, request
    from werkzeug.exceptions import ClientDisconnected, RequestEntityTooLarge
except ImportError as e:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "upvest_verify.adapters.flask needs Flask: pip install 'upvest-verify[flask]'"
    ) from e

from upvest_verify import VerifiedWebhook, Verifier
from upvest_verify.adapters._body import BodyReader, IncompleteBody
from upvest_verify.adapters._reject import (
    CONFIGURATION_ERROR,
    METHOD_NOT_ALLOWED,
    Rejection,
    log_rejection,
    rejection_for,
)
from upvest_verify.adapters._settings import AdapterSettings, load_settings
from upvest_verify.adapters._url import wsgi_header_pairs, wsgi_method
from upvest_verify.errors import ConfigurationError, Reason, VerificationError

__all__ = [
    "CONFIG_PREFIX",
    "EXTENSION_KEY",
    "UpvestVerify",
    "current_webhook",
    "require_upvest_signature",
]

EXTENSION_KEY: Final = "upvest_verify"
"""``app.extensions[EXTENSION_KEY]`` holds the extension's per-app state."""

CONFIG_PREFIX: Final = "UPVEST_VERIFY_"
"""Flask config keys: ``UPVEST_VERIFY_JWKS``, ``UPVEST_VERIFY_SKEW``, ..."""

_FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")

F = TypeVar("F", bound=Callable[..., Any])


class UpvestVerify:
    """Flask extension holding the verifier for :func:`require_upvest_signature`.

    Without ``verifier``, one is built from ``UPVEST_VERIFY_*`` config when
    :meth:`init_app` runs: a key source (``UPVEST_VERIFY_JWKS`` as a dict, JSON text
    or file path; ``UPVEST_VERIFY_JWKS_URL``; ``UPVEST_VERIFY_KEYS``;
    ``UPVEST_VERIFY_VERIFIER``), policy fields (``UPVEST_VERIFY_SKEW``,
    ``UPVEST_VERIFY_MAX_AGE``, ``UPVEST_VERIFY_MAX_BODY_SIZE``, ...) and proxy options
    (``UPVEST_VERIFY_PUBLIC_URL``, ``UPVEST_VERIFY_TRUSTED_PROXIES``,
    ``UPVEST_VERIFY_PROXY_HEADERS``, ``UPVEST_VERIFY_PATH_PREFIX``).

    Example::

        upvest = UpvestVerify(app)          # or UpvestVerify(verifier=v).init_app(app)

        @app.post("/webhooks/upvest")
        @require_upvest_signature
        def receive():
            for event in g.upvest_webhook.events:
                ...
            return "", 200

    Args:
        app: The app to initialise now, if any.
        verifier: A ready :class:`~upvest_verify.Verifier`; then only the proxy
            options are read from config.

    Raises:
        ConfigurationError: From :meth:`init_app`, for invalid or incomplete config.
    """

    def __init__(self, app: Flask | None = None, *, verifier: Verifier | None = None) -> None:
        if verifier is not None and not isinstance(verifier, Verifier):
            raise ConfigurationError("verifier must be an upvest_verify.Verifier")
        self._verifier = verifier
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        """Build the verifier from config and register it on ``app``.

        Args:
            app: The Flask app.

        Raises:
            ConfigurationError: Invalid or incomplete ``UPVEST_VERIFY_*`` config.
        """
        values = {
            key[len(CONFIG_PREFIX) :]: value
            for key, value in app.config.items()
            if key.startswith(CONFIG_PREFIX)
        }
        app.extensions[EXTENSION_KEY] = load_settings(
            values, verifier=self._verifier, origin="UPVEST_VERIFY_* config"
        )

    @staticmethod
    def settings(app: Flask) -> AdapterSettings:
        """Return the state :meth:`init_app` stored on ``app``.

        Args:
            app: The Flask app.

        Returns:
            The verifier and adapter options.

        Raises:
            ConfigurationError: The extension was not initialised on ``app``.
        """
        state = app.extensions.get(EXTENSION_KEY)
        if not isinstance(state, AdapterSettings):
            raise ConfigurationError("UpvestVerify is not initialised on this app")
        return state


def _reject(rejection: Rejection, exc: BaseException | None = None) -> Response:
    log_rejection(rejection, request.environ.get("RAW_URI") or request.path, exc)
    return current_app.response_class(
        rejection.body(), status=rejection.status, headers=rejection.headers()
    )


def _form_consumed_body() -> bool:
    """Whether ``request.form`` was parsed straight from the stream (G5)."""
    # ``form`` is a cached property: it is in the instance dict once something read it.
    return "form" in vars(request) and request.mimetype in _FORM_TYPES


def _read_body(limit: int) -> bytes:
    current = request.max_content_length
    if current is not None:
        limit = min(limit, current)
    declared = request.content_length
    reader = BodyReader(limit, declared)  # 413 for a declared length over the limit
    # Werkzeug stops a streamed (chunked) body silently at max_content_length, so read
    # one byte more than allowed: that byte tells "too large" from "exactly the limit".
    # (Flask < 3.1 cannot set it per request; only MAX_CONTENT_LENGTH applies there.)
    with contextlib.suppress(AttributeError):
        request.max_content_length = limit + 1
    try:
        body = request.get_data(cache=True)
    except RequestEntityTooLarge as e:
        raise VerificationError(Reason.BODY_TOO_LARGE, f"body exceeds {limit} bytes") from e
    except ClientDisconnected as e:  # G2: never verify a partial body
        raise IncompleteBody("the client disconnected before the body was complete") from e
    if len(body) < (1 if declared is None else declared) and _form_consumed_body():
        # G5: request.form parsed (and consumed) the body before we could read it; a
        # body read with get_data() first stays whole and is verified as usual.
        raise ConfigurationError(
            "request.form was read before @require_upvest_signature; the raw body is gone"
        )
    reader.feed(body)  # 413 when the body passes the limit
    return reader.finish()  # IncompleteBody when shorter than Content-Length


def _verify_current_request() -> Response | None:
    """Verify the current request; return the failure response, or ``None`` if valid."""
    if request.method != "POST":  # Werkzeug's routing view of the method (upper-cased)
        return _reject(Rejection(405, METHOD_NOT_ALLOWED))
    try:
        settings = UpvestVerify.settings(current_app)
        body = _read_body(settings.max_body_size)
        url = settings.url.from_wsgi(request.environ)
        headers = wsgi_header_pairs(request.environ)
        # The signature covers the method as received, not request.method's upper-cased copy.
        method = wsgi_method(request.environ)
        webhook = settings.verifier.verify(method, url, headers, body)
    except Exception as exc:  # G13: every failure fails closed
        return _reject(rejection_for(exc), exc)
    g.upvest_webhook = webhook
    return None


def require_upvest_signature(view: F) -> F:
    """Decorate a Flask view so it runs only for a verified Upvest webhook.

    Place it under ``@app.route``/``@app.post``. It reads the body with
    ``request.get_data(cache=True)`` (the view can read it again) and puts the
    :class:`~upvest_verify.VerifiedWebhook` on ``flask.g.upvest_webhook``. Failures
    are answered with ``application/problem+json`` and the view is not called.
    Works for sync and ``async`` views.

    Args:
        view: The view function.

    Returns:
        The wrapped view.
    """
    if inspect.iscoroutinefunction(view):

        @functools.wraps(view)
        async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
            failure = _verify_current_request()
            if failure is not None:
                return failure
            return await view(*args, **kwargs)

        return cast(F, async_wrapper)

    @functools.wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        failure = _verify_current_request()
        if failure is not None:
            return failure
        return view(*args, **kwargs)

    return cast(F, wrapper)


def current_webhook() -> VerifiedWebhook:
    """Return the webhook verified for the current request.

    Returns:
        ``g.upvest_webhook``.

    Raises:
        ConfigurationError: The current view is not decorated with
            :func:`require_upvest_signature`.
    """
    webhook = g.get("upvest_webhook")
    if not isinstance(webhook, VerifiedWebhook):
        raise ConfigurationError(f"{CONFIGURATION_ERROR}: no verified webhook for this request")
    return webhook
