"""Each endpoint described once: request builders, response parsing, error mapping (pure).

A :class:`Call` says what to send and how to read the answer. :func:`call_flow`
is the one flow every call runs through, after httpx's auth flows: a generator
that yields :class:`Send` and :class:`Sleep` steps and is sent each outcome (a
response or the exception sending raised). ``UpvestClient`` and
``AsyncUpvestClient`` only carry out the steps, blocking or awaiting; retries,
error mapping and parsing happen here, once.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import random as _random
import time
import urllib.parse
from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import httpx

from upvest_verify.errors import ConfigurationError
from upvest_verify.jwks import FetchResult

from ._errors import (
    InvalidListParameter,
    UnexpectedResponse,
    UpvestAPIError,
    UpvestConnectionError,
    UpvestError,
    api_error,
)
from ._models import Webhook, WebhookPage
from ._retry import RetryPolicy, parse_retry_after, retry_delay
from ._validation import MAX_LIMIT, check_list_params, check_webhook_id

__all__ = [
    "BASE_URLS",
    "MAX_PAGES",
    "Call",
    "Pages",
    "Send",
    "Sleep",
    "call_flow",
    "create_webhook",
    "delete_webhook",
    "error_from_response",
    "get_verify_keys",
    "get_webhook",
    "is_loopback",
    "list_webhooks",
    "resolve_base_url",
    "test_webhook",
    "update_webhook",
]

T = TypeVar("T")

logger = logging.getLogger("upvest_verify.client")

BASE_URLS: Mapping[str, str] = {
    "sandbox": "https://sandbox.upvest.co",
    "live": "https://api.upvest.co",
}
"""The ``base_url`` shortcuts (upvest-protocol.md §1)."""

MAX_PAGES = 10_000
"""Pages :class:`Pages` follows before deciding the listing does not end."""

_EXCERPT = 200


# ---- base URL -------------------------------------------------------------------------------


def is_loopback(host: str) -> bool:
    """Whether ``host`` is ``localhost`` or a loopback address (``127.0.0.0/8``, ``::1``)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def resolve_base_url(base_url: str) -> str:
    """The API's base URL: a shortcut or an https URL (plain http only to loopback).

    Args:
        base_url: ``"sandbox"``, ``"live"`` or a URL such as ``https://sandbox.upvest.co``
            (a path prefix is kept). ``http://`` is accepted for a loopback host
            only, which is where the local emulator runs.

    Returns:
        The URL without a trailing slash.

    Raises:
        ConfigurationError: Anything else.
    """
    if not isinstance(base_url, str):
        raise ConfigurationError(f"base_url must be a string, got {type(base_url).__name__}")
    url = BASE_URLS.get(base_url, base_url)
    try:
        parts = urllib.parse.urlsplit(url)
        _ = parts.port
    except ValueError as e:
        raise ConfigurationError(f"base_url does not parse: {e}") from e
    host = parts.hostname or ""
    if not host or parts.query or parts.fragment or parts.username or parts.password:
        raise ConfigurationError(
            f"base_url must be 'sandbox', 'live' or a URL like https://sandbox.upvest.co"
            f" (a host, no query, fragment or credentials), got {base_url!r}"
        )
    if parts.scheme != "https" and not (parts.scheme == "http" and is_loopback(host)):
        raise ConfigurationError(
            f"base_url must be https:// (plain http only to a loopback host), got {base_url!r}"
        )
    return url.rstrip("/")


# ---- calls ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Call(Generic[T]):
    """One endpoint call: what to send and how to read a success.

    Attributes:
        method: The method.
        path: The path below the base URL.
        parse: Turns a 2xx response into the result; raises :class:`ValueError`
            (or a :class:`~upvest_verify.client.UpvestAPIError`) if it cannot.
        params: The query parameters.
        body: The raw body (empty for none).
        content_type: The body's media type.
    """

    method: str
    path: str
    parse: Callable[[httpx.Response], T]
    params: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""
    content_type: str | None = None

    @property
    def target(self) -> str:
        """Method and path, for messages."""
        return f"{self.method} {self.path}"


@dataclass(frozen=True, slots=True)
class Send:
    """Step: send the call (again: every attempt is a fresh, freshly signed request)."""

    attempt: int


@dataclass(frozen=True, slots=True)
class Sleep:
    """Step: wait this many seconds before the next attempt."""

    seconds: float


Step = Send | Sleep
Outcome = httpx.Response | Exception


def _excerpt(response: httpx.Response) -> str:
    text = " ".join(response.content[: _EXCERPT * 4].decode("utf-8", "replace").split())
    if len(text) > _EXCERPT:
        text = text[:_EXCERPT] + "..."
    kind = response.headers.get("content-type", "no content type").split(";")[0]
    phrase = response.reason_phrase or "error"
    return f"{phrase} ({kind} body: {text!r})" if text else phrase


def _redact(value: Any, secrets: tuple[str, ...]) -> Any:
    if isinstance(value, str):
        for secret in secrets:
            if secret:
                value = value.replace(secret, "[redacted]")
        return value
    if isinstance(value, Mapping):
        return {k: _redact(v, secrets) for k, v in value.items()}
    if isinstance(value, list):
        return [_redact(v, secrets) for v in value]
    return value


def error_from_response(
    response: httpx.Response,
    *,
    method: str,
    path: str,
    now: float,
    secrets: tuple[str, ...] = (),
) -> UpvestAPIError:
    """The exception for an error response; non-JSON bodies give an excerpt instead.

    Args:
        response: The (read) response.
        method: The request method.
        path: The request path.
        now: Wall-clock seconds, to read an HTTP-date ``Retry-After``.
        secrets: Strings to blank out should the server echo them.

    Returns:
        The exception.
    """
    problem: Mapping[str, Any] | None = None
    try:
        data = json.loads(response.content)
    except (ValueError, RecursionError):
        data = None
    if isinstance(data, Mapping) and data:
        problem = _redact(data, secrets)
    return api_error(
        response.status_code,
        method=method,
        path=path,
        problem=problem,
        body_excerpt=None if problem else _redact(_excerpt(response), secrets),
        request_id=response.headers.get("upvest-request-id"),
        retry_after=parse_retry_after(response.headers.get("retry-after"), now),
    )


def _unexpected(response: httpx.Response, why: str) -> UnexpectedResponse:
    request = response.request
    return UnexpectedResponse(
        response.status_code,
        method=request.method,
        path=request.url.raw_path.decode("ascii", "replace"),
        detail=why,
        request_id=response.headers.get("upvest-request-id"),
    )


def _json(response: httpx.Response) -> Any:
    try:
        return json.loads(response.content)
    except (ValueError, RecursionError) as e:
        raise ValueError(f"the response body is not JSON: {_excerpt(response)}") from e


def _parse_webhook(response: httpx.Response) -> Webhook:
    return Webhook.from_json(_json(response))


def _parse_page(response: httpx.Response) -> WebhookPage:
    return WebhookPage.from_json(_json(response))


def _parse_nothing(response: httpx.Response) -> None:
    return None


def _parse_jwks(response: httpx.Response) -> FetchResult:
    if not isinstance(_json(response), Mapping):
        raise ValueError("the key set is not a JSON object")
    return FetchResult.from_http(
        response.content,
        cache_control=", ".join(response.headers.get_list("cache-control")) or None,
        age=response.headers.get("age"),
    )


def _json_body(body: Mapping[str, Any]) -> bytes:
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


def list_webhooks(
    *, sort: str | None = None, order: str | None = None, offset: int = 0, limit: int = 100
) -> Call[WebhookPage]:
    """``GET /webhooks`` (read scope)."""
    params = check_list_params(sort, order, offset, limit)
    return Call("GET", "/webhooks", _parse_page, params=params)


def create_webhook(body: Mapping[str, Any]) -> Call[Webhook]:
    """``POST /webhooks`` (admin scope) with a body from ``create_body``; answers 201."""
    return Call("POST", "/webhooks", _parse_webhook, body=_json_body(body), content_type=_JSON)


def get_webhook(webhook_id: str) -> Call[Webhook]:
    """``GET /webhooks/{id}`` (read scope)."""
    return Call("GET", f"/webhooks/{check_webhook_id(webhook_id)}", _parse_webhook)


def update_webhook(webhook_id: str, body: Mapping[str, Any]) -> Call[Webhook]:
    """``PATCH /webhooks/{id}`` (admin scope) with the changed fields only."""
    path = f"/webhooks/{check_webhook_id(webhook_id)}"
    return Call("PATCH", path, _parse_webhook, body=_json_body(body), content_type=_JSON)


def delete_webhook(webhook_id: str) -> Call[None]:
    """``DELETE /webhooks/{id}`` (admin scope); answers 204."""
    return Call("DELETE", f"/webhooks/{check_webhook_id(webhook_id)}", _parse_nothing)


def test_webhook(webhook_id: str) -> Call[None]:
    """``POST /webhooks/{id}/test`` (admin scope), no body; answers 202."""
    return Call("POST", f"/webhooks/{check_webhook_id(webhook_id)}/test", _parse_nothing)


def get_verify_keys() -> Call[FetchResult]:
    """``GET /auth/verify_keys`` (read scope): the JWKS and its cache lifetime."""
    return Call("GET", "/auth/verify_keys", _parse_jwks)


_JSON = "application/json"


class Pages:
    """Walks ``GET /webhooks`` page by page (pure): :meth:`first`, then :meth:`after`.

    The next offset is this page's offset plus the items it held; the walk ends on
    an empty page or at ``total_count``, and after :data:`MAX_PAGES` pages at most.

    Raises:
        InvalidListParameter: ``sort``/``order`` invalid, or ``page_size`` not 1 to 1,000.
    """

    def __init__(self, *, sort: str | None, order: str | None, page_size: int) -> None:
        if (
            isinstance(page_size, bool)
            or not isinstance(page_size, int)
            or not 1 <= page_size <= MAX_LIMIT
        ):
            raise InvalidListParameter(
                "page_size", f"must be an integer from 1 to {MAX_LIMIT}, not {page_size!r}"
            )
        self._first = list_webhooks(sort=sort, order=order, offset=0, limit=page_size)
        self._sort, self._order, self._size = sort, order, page_size
        self._offset = 0
        self._pages = 0

    def first(self) -> Call[WebhookPage]:
        """The call for the first page."""
        return self._first

    def after(self, page: WebhookPage) -> Call[WebhookPage] | None:
        """The call for the page after ``page``, or ``None`` when ``page`` was the last.

        Raises:
            UnexpectedResponse: The listing went on for more than :data:`MAX_PAGES` pages.
        """
        self._pages += 1
        self._offset += len(page.data)
        if not page.data or self._offset >= page.meta.total_count:
            return None
        if self._pages >= MAX_PAGES:
            raise UnexpectedResponse(
                200, method="GET", path="/webhooks", detail=f"more than {MAX_PAGES} pages"
            )
        return list_webhooks(
            sort=self._sort, order=self._order, offset=self._offset, limit=self._size
        )


# ---- the flow every call runs through -------------------------------------------------------


def call_flow(
    call: Call[T],
    policy: RetryPolicy,
    *,
    monotonic: Callable[[], float] = time.monotonic,
    clock: Callable[[], float] = time.time,
    random: Callable[[], float] = _random.random,
) -> Generator[Step, Outcome | None, T]:
    """Send ``call``, retry as ``policy`` allows, map errors, parse the success.

    Yields :class:`Send` (the driver builds and sends a fresh request and sends back
    the response, or the exception sending raised) and :class:`Sleep` (the driver
    waits, then sends ``None``).

    Returns:
        What ``call.parse`` makes of the 2xx response.

    Raises:
        UpvestAPIError: An error status (subclass by meaning), or a 2xx response
            that cannot be read (:class:`UnexpectedResponse`), once retries are over.
        UpvestConnectionError: No response, once retries are over.
    """
    started = monotonic()
    attempt = 0
    while True:  # ends: retry_delay() gives up after policy.max_attempts
        attempt += 1
        outcome = yield Send(attempt)
        error: UpvestError
        if isinstance(outcome, httpx.Response):
            if 200 <= outcome.status_code < 300:
                try:
                    return call.parse(outcome)
                except ValueError as e:
                    raise _unexpected(outcome, str(e)) from e
            error = error_from_response(outcome, method=call.method, path=call.path, now=clock())
            status: int | None = outcome.status_code
        elif isinstance(outcome, UpvestAPIError):  # the token request failed
            error, status = outcome, outcome.status
        elif isinstance(outcome, httpx.TransportError):
            error = UpvestConnectionError(
                f"{call.target}: {type(outcome).__name__}: {outcome}",
                method=call.method,
                path=call.path,
            )
            error.__cause__ = outcome
            status = None
        else:
            raise TypeError(f"call_flow was sent {type(outcome).__name__}")
        delay = retry_delay(
            policy,
            attempt=attempt,
            method=call.method,
            status=status,
            elapsed=monotonic() - started,
            retry_after=getattr(error, "retry_after", None),
            random=random(),
        )
        if delay is None:
            raise error
        logger.info(
            "%s: %s, attempt %d of %d in %.2f s",
            call.target,
            f"HTTP {status}" if status is not None else type(outcome).__name__,
            attempt + 1,
            policy.max_attempts,
            delay,
        )
        yield Sleep(delay)
