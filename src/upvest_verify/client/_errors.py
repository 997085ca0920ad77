"""Exceptions of the management client.

::

    Exception
    ├── UpvestError                   anything the API or the network did wrong
    │   ├── UpvestAPIError            an error response: status, type, title, detail, instance,
    │   │   │                         request_id (the upvest-request-id header)
    │   │   ├── BadRequest            400: Upvest refused the request's content
    │   │   ├── Unauthorised          401: bad credentials, token or signature
    │   │   ├── Forbidden             403: the token lacks the scope
    │   │   ├── NotFound              404: no such webhook
    │   │   ├── RateLimited           429: not processed; retry_after seconds, if sent
    │   │   ├── ServerError           5xx
    │   │   └── UnexpectedResponse    a success status with a body the client cannot read
    │   └── UpvestConnectionError     no response: connection, TLS or timeout failure
    └── ValueError
        └── WebhookValidationError    refused before sending; .field names the field
            ├── InvalidTitle · InvalidURL · InvalidEventTypes · InvalidDelay
            ├── InvalidMaxPackageSize · UnknownFields · InvalidWebhookId
            └── InvalidListParameter

Messages never hold the client secret, an access token or a signature: they are
built from the status line, the problem document and the names of fields.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = [
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
    "RateLimited",
    "ServerError",
    "Unauthorised",
    "UnexpectedResponse",
    "UnknownFields",
    "UpvestAPIError",
    "UpvestConnectionError",
    "UpvestError",
    "WebhookValidationError",
    "api_error",
]

_MAX_TEXT = 300  # longest problem member quoted in a message


def _rebuild(cls: type[Exception], args: tuple[Any, ...], state: dict[str, Any]) -> Exception:
    error = cls.__new__(cls)
    Exception.__init__(error, *args)
    error.__dict__.update(state)
    return error


class _Copyable(Exception):
    """Copies and pickles keep every attribute and the message (keyword-only __init__)."""

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (type(self), self.args, dict(self.__dict__)))


class UpvestError(_Copyable):
    """Base class of the errors the API or the network cause."""


class UpvestConnectionError(UpvestError):
    """No response arrived: connection refused or reset, TLS failure or timeout.

    Raised once the retries allowed for the request are used up. The underlying
    ``httpx`` exception is the ``__cause__``.

    Attributes:
        method: The request method.
        path: The request path.
    """

    def __init__(self, message: str, *, method: str, path: str) -> None:
        super().__init__(message)
        self.method = method
        self.path = path


class UpvestAPIError(UpvestError):
    """Upvest answered with an error status (RFC 9457 problem details, if it sent them).

    Attributes:
        status: The HTTP status code.
        type: The problem ``type`` (a URL or a short code; opaque), or ``None``.
        title: The problem ``title``, or ``None``.
        detail: The problem ``detail`` (``"Signature is incorrect"``...), or ``None``.
        instance: The problem ``instance``, or ``None``.
        request_id: The ``upvest-request-id`` response header (quote it to Upvest
            support), else the problem's ``request_id``, or ``None``.
        method: The request method.
        path: The request path.
        body: A readable excerpt of a body that was not a problem document, else ``None``.
        problem: Every member of the problem document, unknown ones included.
    """

    def __init__(
        self,
        status: int,
        *,
        method: str = "",
        path: str = "",
        type: str | None = None,
        title: str | None = None,
        detail: str | None = None,
        instance: str | None = None,
        request_id: str | None = None,
        body: str | None = None,
        problem: Mapping[str, Any] | None = None,
    ) -> None:
        self.status = status
        self.method = method
        self.path = path
        self.type = type
        self.title = title
        self.detail = detail
        self.instance = instance
        self.request_id = request_id
        self.body = body
        self.problem: Mapping[str, Any] = dict(problem or {})
        super().__init__(self._message())

    def _message(self) -> str:
        detail = self.detail if self.detail != self.title else None
        text = " - ".join(t for t in (self.title, detail) if t) or self.body
        message = f"HTTP {self.status}"
        if self.method:
            message = f"{self.method} {self.path}: {message}"
        if text:
            message += f": {text}"
        if self.type:
            message += f" (type {self.type})"
        if self.request_id:
            message += f" [upvest-request-id {self.request_id}]"
        return message


class BadRequest(UpvestAPIError):
    """400: Upvest refused the request (validation, a missing header)."""


class Unauthorised(UpvestAPIError):
    """401: wrong client credentials, an invalid token, or ``Signature is incorrect``."""


class Forbidden(UpvestAPIError):
    """403: the access token lacks the scope the endpoint needs."""


class NotFound(UpvestAPIError):
    """404: the webhook (or resource) does not exist."""


class RateLimited(UpvestAPIError):
    """429: too many requests; the request was not processed.

    Attributes:
        retry_after: Seconds the ``Retry-After`` header asked to wait, or ``None``.
    """

    retry_after: float | None = None


class ServerError(UpvestAPIError):
    """5xx: Upvest failed (500), or a gateway did (502, 503, 504)."""


class UnexpectedResponse(UpvestAPIError):
    """A success status whose body is not what the endpoint documents."""


_BY_STATUS: dict[int, type[UpvestAPIError]] = {
    400: BadRequest,
    401: Unauthorised,
    403: Forbidden,
    404: NotFound,
    429: RateLimited,
}


def _text(value: object) -> str | None:
    if value is None:
        return None
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= _MAX_TEXT else text[:_MAX_TEXT] + "..."


def api_error(
    status: int,
    *,
    method: str,
    path: str,
    problem: Mapping[str, Any] | None,
    body_excerpt: str | None,
    request_id: str | None,
    retry_after: float | None = None,
) -> UpvestAPIError:
    """Build the exception for an error response.

    Args:
        status: The HTTP status.
        method: The request method.
        path: The request path.
        problem: The decoded problem document, or ``None`` if the body was not one.
        body_excerpt: A printable excerpt of a body that was not a problem document.
        request_id: The ``upvest-request-id`` header.
        retry_after: Seconds from ``Retry-After`` (kept on :class:`RateLimited`).

    Returns:
        The exception, of the subclass the status calls for.
    """
    cls = _BY_STATUS.get(status) or (ServerError if status >= 500 else UpvestAPIError)
    problem = problem or {}
    error = cls(
        status,
        method=method,
        path=path,
        type=_text(problem.get("type")) or None,
        title=_text(problem.get("title")),
        detail=_text(problem.get("detail")),
        instance=_text(problem.get("instance")),
        request_id=request_id or _text(problem.get("request_id")),
        body=None if problem else body_excerpt,
        problem=problem,
    )
    if isinstance(error, RateLimited):
        error.retry_after = retry_after
    return error


class WebhookValidationError(_Copyable, ValueError):
    """A value refused before anything was sent.

    Attributes:
        field: The field (``title``, ``url``, ``type``, ``config.delay``...).
    """

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


class InvalidTitle(WebhookValidationError):
    """``title`` is empty, longer than 100 characters or holds control characters."""


class InvalidURL(WebhookValidationError):
    """``url`` is not an https URL with a DNS host, or is longer than 1,000 characters."""


class InvalidEventTypes(WebhookValidationError):
    """``type`` is empty, repeats a category or names one Upvest does not document."""


class InvalidDelay(WebhookValidationError):
    """``config.delay`` does not match ``^[1-9][0-9]?[sm]$`` or lies outside 1 s to 30 s."""


class InvalidMaxPackageSize(WebhookValidationError):
    """``config.max_package_size`` is not an integer from 100 to 1,048,576."""


class UnknownFields(WebhookValidationError):
    """A field the client does not know, not passed through ``extras``."""


class InvalidWebhookId(WebhookValidationError):
    """The webhook id is not a UUID-like path segment."""


class InvalidListParameter(WebhookValidationError):
    """``sort``, ``order``, ``offset`` or ``limit`` of a list call is out of range."""
