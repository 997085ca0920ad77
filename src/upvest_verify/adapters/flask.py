"""Verify Upvest webhooks in Flask: the ``UpvestVerify`` extension and a view decorator.

Requires ``pip install 'upvest-verify[flask]'``.

The extension verifies every request to its paths (``UPVEST_VERIFY_PATHS``, by
default ``/webhooks/upvest``) before any view runs; :func:`require_upvest_signature`
protects single views elsewhere. The result is :func:`get_webhook` (typed) or
``flask.g.upvest_webhook``.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
from collections.abc import Callable
from typing import Any, Final, TypeVar, cast, overload

try:
    from flask import Flask, Response, current_app, g, request
    from werkzeug.exceptions import ClientDisconnected, RequestEntityTooLarge
except ImportError as e:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "upvest_verify.adapters.flask needs Flask: pip install 'upvest-verify[flask]'"
    ) from e

from upvest_verify import PayloadError, VerifiedWebhook, Verifier
from upvest_verify.adapters._body import BodyReader, IncompleteBody
from upvest_verify.adapters._delivery import Answer, Delivery, admit, check_ledger, finish, queue
from upvest_verify.adapters._reject import (
    CONFIGURATION_ERROR,
    METHOD_NOT_ALLOWED,
    Rejection,
    log_rejection,
    payload_rejection,
    rejection_for,
)
from upvest_verify.adapters._settings import AdapterSettings, load_settings
from upvest_verify.adapters._url import wsgi_header_pairs, wsgi_method
from upvest_verify.errors import ConfigurationError, Reason, VerificationError
from upvest_verify.ledger import BaseLedger

__all__ = [
    "CONFIG_PREFIX",
    "EXTENSION_KEY",
    "Delivery",
    "UpvestVerify",
    "current_webhook",
    "get_delivery",
    "get_webhook",
    "require_upvest_signature",
]

EXTENSION_KEY: Final = "upvest_verify"
"""``app.extensions[EXTENSION_KEY]`` holds the extension's per-app state."""

CONFIG_PREFIX: Final = "UPVEST_VERIFY_"
"""Flask config keys: ``UPVEST_VERIFY_JWKS``, ``UPVEST_VERIFY_SKEW``, ``UPVEST_VERIFY_PATHS``..."""

_FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")
# A decorated view carries its ``(ledger, inbox)`` here, for the extension's hook to use.
_VIEW_OPTIONS: Final = "_upvest_verify_options"
# ``g`` item: the delivery (or None) of a request the hook admitted, settled by the answer.
_PENDING: Final = "_upvest_verify_pending"

F = TypeVar("F", bound=Callable[..., Any])


class UpvestVerify:
    """Flask extension: verifies every request to its webhook paths before the view runs.

    Every request whose path is among ``UPVEST_VERIFY_PATHS`` (default
    ``["/webhooks/upvest"]``; ``"/hooks/*"`` protects a subtree) is verified in a
    ``before_request`` hook, whatever view (or none) it is routed to: a refusal is
    answered with ``application/problem+json`` and logged on
    ``upvest_verify.security``, anything but ``POST`` is 405 ``method_not_allowed``,
    and the view runs only for a verified webhook (:func:`get_webhook`,
    ``flask.g.upvest_webhook``). :func:`require_upvest_signature` protects views on
    other paths; on a protected path it adds nothing (the request is verified once).

    Without ``verifier``, one is built from ``UPVEST_VERIFY_*`` config when
    :meth:`init_app` runs: a key source (``UPVEST_VERIFY_JWKS`` as a dict, JSON text
    or file path; ``UPVEST_VERIFY_JWKS_URL``; ``UPVEST_VERIFY_KEYS``;
    ``UPVEST_VERIFY_VERIFIER``), policy fields (``UPVEST_VERIFY_SKEW``,
    ``UPVEST_VERIFY_MAX_AGE``, ``UPVEST_VERIFY_MAX_BODY_SIZE``, ...) and proxy options
    (``UPVEST_VERIFY_PUBLIC_URL``, ``UPVEST_VERIFY_TRUSTED_PROXIES``,
    ``UPVEST_VERIFY_PROXY_HEADERS``, ``UPVEST_VERIFY_PATH_PREFIX``) and an event
    ledger (``UPVEST_VERIFY_LEDGER``: a ledger, or a URL such as
    ``sqlite:///events.sqlite3``).

    A handler reading ``webhook.events`` of a verified body that is not a
    ``{"payload": [...]}`` envelope gets 400 ``invalid_payload`` instead of a 500
    (logged at ERROR; see :attr:`~upvest_verify.VerifiedWebhook.envelope_error`).

    Example::

        upvest = UpvestVerify(app, ledger=SQLiteLedger("events.sqlite3"))

        @app.post("/webhooks/upvest")   # protected by the extension
        def receive():
            get_delivery().process(handle_event)   # each event once, across retries
            return "", 200

    Args:
        app: The app to initialise now, if any.
        verifier: A ready :class:`~upvest_verify.Verifier`; then only the proxy
            options are read from config.
        ledger: An event ledger for exactly-once processing per event id (then no
            ``UPVEST_VERIFY_LEDGER``).
        inbox: Acknowledge verified deliveries at once and put their events in the
            ledger's queue instead of calling the view (needs a ledger).

    Raises:
        ConfigurationError: From :meth:`init_app`, for invalid or incomplete config.
    """

    def __init__(
        self,
        app: Flask | None = None,
        *,
        verifier: Verifier | None = None,
        ledger: BaseLedger | None = None,
        inbox: bool | None = None,
    ) -> None:
        if verifier is not None and not isinstance(verifier, Verifier):
            raise ConfigurationError("verifier must be an upvest_verify.Verifier")
        self._verifier = verifier
        self._ledger = check_ledger(ledger)
        self._inbox = inbox
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        """Build the verifier from config, register it on ``app`` and protect its paths.

        Registers a ``before_request`` hook verifying the requests to
        ``UPVEST_VERIFY_PATHS``, the ``after_request``/``teardown_request`` hooks that
        settle their event claims by the answer, and the error handler answering a
        handler's :class:`~upvest_verify.PayloadError` for a verified webhook.

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
        registered = isinstance(app.extensions.get(EXTENSION_KEY), AdapterSettings)
        app.extensions[EXTENSION_KEY] = load_settings(
            values,
            verifier=self._verifier,
            ledger=self._ledger,
            inbox=self._inbox,
            origin="UPVEST_VERIFY_* config",
        )
        if not registered:  # a second init_app replaces the settings, not the hooks
            app.before_request(_protect)
            app.after_request(_settle_after)
            app.teardown_request(_settle_on_teardown)
            app.register_error_handler(PayloadError, _payload_error)

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


def _log_path() -> str:
    return str(request.environ.get("RAW_URI") or request.path)


def _problem(rejection: Rejection) -> Response:
    return current_app.response_class(
        rejection.body(), status=rejection.status, headers=rejection.headers()
    )


def _reject(rejection: Rejection, exc: BaseException | None = None) -> Response:
    log_rejection(rejection, _log_path(), exc)
    return _problem(rejection)


def _send(answer: Answer) -> Response:
    return current_app.response_class(answer.body, status=answer.status, headers=answer.headers)


def _form_consumed_body() -> bool:
    """Whether ``request.form`` was parsed straight from the stream, consuming the body."""
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
    except ClientDisconnected as e:  # never verify a partial body (threat-model.md §6)
        raise IncompleteBody("the client disconnected before the body was complete") from e
    if len(body) < (1 if declared is None else declared) and _form_consumed_body():
        # request.form parsed (and consumed) the body before we could read it; a body
        # read with get_data() first stays whole and is verified as usual.
        raise ConfigurationError(
            "request.form was read before the webhook was verified; the raw body is gone"
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
    except Exception as exc:  # every failure fails closed
        return _reject(rejection_for(exc), exc)
    g.upvest_webhook = webhook
    return None


def _verified() -> bool:
    """Whether the current request was verified already (by the hook or an outer decorator)."""
    return isinstance(g.get("upvest_webhook"), VerifiedWebhook)


def _admit(ledger: BaseLedger | None, inbox: bool | None) -> Response | Delivery | None:
    """The answer to send instead of calling the view, the delivery for the view, or
    ``None`` to call the view without one (no ledger)."""
    try:
        settings = UpvestVerify.settings(current_app)
        ledger = settings.ledger if ledger is None else ledger
        inbox = settings.inbox if inbox is None else inbox
        check_ledger(ledger, inbox)
    except ConfigurationError as exc:
        return _reject(Rejection(500, CONFIGURATION_ERROR), exc)
    if ledger is None:
        return None
    webhook, path = g.upvest_webhook, _log_path()
    refused = payload_rejection(webhook, path)  # no events to key the ledger with
    if refused is not None:
        return _problem(refused)
    # Flask runs an async view in an event loop of its own per request: the ledger is
    # used through its blocking calls, which any loop can make.
    outcome: Delivery | Answer = (
        queue(ledger, webhook, path=path)
        if inbox
        else admit(ledger, webhook, path=path, blocking=True)
    )
    if isinstance(outcome, Answer):
        finish(settings.verifier, webhook, None, outcome.status, path=path)
        return _send(outcome)
    g.upvest_delivery = outcome
    return outcome


def _plain(admitted: Delivery | None) -> bool:
    """Whether nothing is left to do after the view: no delivery, no replay store."""
    return admitted is None and UpvestVerify.settings(current_app).verifier.replay_store is None


def _finish(admitted: Delivery | None, status: int | None) -> None:
    verifier = UpvestVerify.settings(current_app).verifier
    finish(verifier, g.upvest_webhook, admitted, status, path=_log_path())


def _view_options() -> tuple[BaseLedger | None, bool | None]:
    """The ``ledger``/``inbox`` given to the decorator of the view this request is routed to."""
    endpoint = request.endpoint
    view = current_app.view_functions.get(endpoint) if endpoint is not None else None
    options = getattr(view, _VIEW_OPTIONS, None)
    return options if isinstance(options, tuple) else (None, None)


def _protect() -> Response | None:
    """``before_request``: verify and admit every request to a protected path.

    It runs before routing errors are raised, so a protected path is verified even
    without a view (then 404 after a valid webhook) and answers 405
    ``method_not_allowed`` to anything but ``POST`` whatever the route allows.
    """
    if not UpvestVerify.settings(current_app).paths(request.path):
        return None
    ledger, inbox = _view_options()
    failure = _verify_current_request()
    if failure is not None:
        return failure
    admitted = _admit(ledger, inbox)
    if isinstance(admitted, Response):
        return admitted
    if not _plain(admitted):
        setattr(g, _PENDING, (admitted,))  # settled by the answer's status
    return None


def _settle_after(response: Response) -> Response:
    """``after_request``: settle a hook-admitted delivery by the answer, before it is sent."""
    pending = g.pop(_PENDING, None)
    if pending is not None:
        _finish(pending[0], response.status_code)
    return response


def _settle_on_teardown(exc: BaseException | None) -> None:
    """``teardown_request``: release what no answer settled (an exception propagated)."""
    pending = g.pop(_PENDING, None)
    if pending is not None:
        _finish(pending[0], None)


def _payload_error(error: PayloadError) -> Response:
    """Error handler: 400 ``invalid_payload`` when a verified body is not an envelope.

    A :class:`~upvest_verify.PayloadError` of anything else is re-raised (a 500, as
    without this handler).
    """
    rejection = payload_rejection(g.get("upvest_webhook"), _log_path())
    if rejection is None:
        raise error
    return _problem(rejection)


def _decorate(view: F, ledger: BaseLedger | None, inbox: bool | None) -> F:
    if inspect.iscoroutinefunction(view):

        @functools.wraps(view)
        async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
            if _verified():  # the extension's hook (or an outer decorator) handles it
                return await view(*args, **kwargs)
            failure = _verify_current_request()
            if failure is not None:
                return failure
            admitted = _admit(ledger, inbox)
            if isinstance(admitted, Response):
                return admitted
            if _plain(admitted):
                return await view(*args, **kwargs)
            try:
                response = current_app.make_response(await view(*args, **kwargs))
            except BaseException:
                _finish(admitted, None)
                raise
            _finish(admitted, response.status_code)
            return response

        setattr(async_wrapper, _VIEW_OPTIONS, (ledger, inbox))
        return cast(F, async_wrapper)

    @functools.wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if _verified():  # the extension's hook (or an outer decorator) handles it
            return view(*args, **kwargs)
        failure = _verify_current_request()
        if failure is not None:
            return failure
        admitted = _admit(ledger, inbox)
        if isinstance(admitted, Response):
            return admitted
        if _plain(admitted):
            return view(*args, **kwargs)
        try:
            response = current_app.make_response(view(*args, **kwargs))
        except BaseException:
            _finish(admitted, None)
            raise
        _finish(admitted, response.status_code)
        return response

    setattr(wrapper, _VIEW_OPTIONS, (ledger, inbox))
    return cast(F, wrapper)


@overload
def require_upvest_signature(view: F) -> F: ...


@overload
def require_upvest_signature(
    view: None = None, *, ledger: BaseLedger | None = None, inbox: bool | None = None
) -> Callable[[F], F]: ...


def require_upvest_signature(
    view: F | None = None, *, ledger: BaseLedger | None = None, inbox: bool | None = None
) -> F | Callable[[F], F]:
    """Decorate a Flask view so it runs only for a verified Upvest webhook.

    Place it under ``@app.route``/``@app.post``. It reads the body with
    ``request.get_data(cache=True)`` (the view can read it again) and puts the
    :class:`~upvest_verify.VerifiedWebhook` on ``flask.g.upvest_webhook``
    (:func:`get_webhook`). Failures are answered with ``application/problem+json``
    and the view is not called. Works for sync and ``async`` views. Needed only on
    paths outside ``UPVEST_VERIFY_PATHS``: :class:`UpvestVerify` verifies those
    itself, and there the decorator only passes its ``ledger``/``inbox`` on.

    With an event ledger (``UpvestVerify(ledger=...)``, ``UPVEST_VERIFY_LEDGER``, or
    ``@require_upvest_signature(ledger=...)`` for this view), a delivery whose events
    are all done is answered 200 ``already_processed`` and one with an event held by
    another worker 503 ``in_progress``, without calling the view; otherwise the view
    finds the claimed events in :func:`get_delivery` (``g.upvest_delivery``), and the
    claims it leaves open are completed by a 2xx answer and released by any other
    answer or an exception.

    Args:
        view: The view function (when used without arguments).
        ledger: An event ledger for this view, instead of the app's.
        inbox: Override the app's inbox mode for this view.

    Returns:
        The wrapped view, or a decorator when called with keyword arguments only.

    Raises:
        ConfigurationError: ``ledger`` is not a ledger.
    """
    check_ledger(ledger)
    if view is None:
        return lambda view: _decorate(view, ledger, inbox)
    return _decorate(view, ledger, inbox)


def get_webhook() -> VerifiedWebhook | None:
    """The webhook verified for the current request: ``flask.g.upvest_webhook``, typed.

    Returns:
        The webhook the extension (on ``UPVEST_VERIFY_PATHS``) or
        :func:`require_upvest_signature` verified; ``None`` for any other request.
    """
    webhook = g.get("upvest_webhook")
    return webhook if isinstance(webhook, VerifiedWebhook) else None


def get_delivery() -> Delivery | None:
    """The events the current request still has to process, when a ledger is configured.

    Returns:
        ``g.upvest_delivery``, or ``None`` without a ledger or for a request that was
        not verified.
    """
    delivery = g.get("upvest_delivery")
    return delivery if isinstance(delivery, Delivery) else None


def current_webhook() -> VerifiedWebhook:
    """Return the webhook verified for the current request.

    Returns:
        ``g.upvest_webhook``.

    Raises:
        ConfigurationError: The request was not verified: its path is not among
            ``UPVEST_VERIFY_PATHS`` and the view is not decorated with
            :func:`require_upvest_signature`.
    """
    webhook = g.get("upvest_webhook")
    if not isinstance(webhook, VerifiedWebhook):
        raise ConfigurationError(f"{CONFIGURATION_ERROR}: no verified webhook for this request")
    return webhook
