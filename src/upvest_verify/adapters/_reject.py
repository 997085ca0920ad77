"""Refusing a webhook: the problem document and the security log line (private).

Every adapter answers every failure through :func:`rejection_for` and
:func:`log_rejection`, so a refusal looks and logs the same in every framework:

- the answer is ``application/problem+json`` (RFC 9457) carrying only a stable
  reason code, never internals (threat-model.md §6 G12);
- the log line goes to ``upvest_verify.security`` with the reason, status and path,
  never signatures, header values or bodies.

No web framework is imported here.
"""

from __future__ import annotations

import http
import json
import logging
from dataclasses import dataclass
from typing import Final

from upvest_verify.adapters._body import IncompleteBody
from upvest_verify.errors import ConfigurationError, VerificationError

__all__ = [
    "CONFIGURATION_ERROR",
    "INCOMPLETE_BODY",
    "INTERNAL_ERROR",
    "METHOD_NOT_ALLOWED",
    "PROBLEM_CONTENT_TYPE",
    "Rejection",
    "log_rejection",
    "rejection_for",
    "security_logger",
]

security_logger: Final = logging.getLogger("upvest_verify.security")
"""Every refused webhook is logged here: reason code and request path, never secrets."""

PROBLEM_CONTENT_TYPE: Final = "application/problem+json"

# Rejection codes that are not verification outcomes (threat-model.md §2, last note).
METHOD_NOT_ALLOWED: Final = "method_not_allowed"
CONFIGURATION_ERROR: Final = "configuration_error"
INTERNAL_ERROR: Final = "internal_error"
INCOMPLETE_BODY: Final = "incomplete_body"


@dataclass(frozen=True, slots=True)
class Rejection:
    """A refused webhook: the HTTP status and the stable code sent to the client.

    Attributes:
        status: HTTP status (400, 401, 405, 413, 500 or 503).
        reason: A :class:`~upvest_verify.Reason` value, or one of the adapter codes
            ``method_not_allowed``, ``configuration_error``, ``internal_error``,
            ``incomplete_body``.
    """

    status: int
    reason: str

    @property
    def title(self) -> str:
        """The HTTP reason phrase (RFC 9457 §4.2.1: the title for ``about:blank``)."""
        try:
            return http.HTTPStatus(self.status).phrase
        except ValueError:
            return "Error"

    def body(self) -> bytes:
        """The ``application/problem+json`` document: only the reason code, no internals."""
        # RFC 9457 §3.1: type, title, status, detail. "about:blank" says the problem
        # has no semantics beyond the status; ``detail`` carries our stable code.
        document = {
            "type": "about:blank",
            "title": self.title,
            "status": self.status,
            "detail": self.reason,
        }
        return json.dumps(document, separators=(",", ":")).encode("ascii")

    def headers(self) -> list[tuple[str, str]]:
        """Response header fields (without ``Content-Length``)."""
        headers = [("content-type", PROBLEM_CONTENT_TYPE), ("cache-control", "no-store")]
        if self.status == 405:
            headers.append(("allow", "POST"))
        return headers


def rejection_for(exc: BaseException) -> Rejection:
    """Map an exception raised while reading or verifying to the answer for the client.

    Args:
        exc: A :class:`VerificationError` (its own status and reason),
            :class:`~upvest_verify.adapters._body.IncompleteBody` (400,
            ``incomplete_body``), :class:`ConfigurationError` (500,
            ``configuration_error``) or anything else (500, ``internal_error``).
            Never fails open.

    Returns:
        The rejection.
    """
    if isinstance(exc, VerificationError):
        return Rejection(exc.status_code, exc.reason.value)
    if isinstance(exc, IncompleteBody):
        return Rejection(400, INCOMPLETE_BODY)
    if isinstance(exc, ConfigurationError):
        return Rejection(500, CONFIGURATION_ERROR)
    return Rejection(500, INTERNAL_ERROR)


def _loggable_path(path: str) -> str:
    # The query may carry secrets of other systems; the path is enough to find the route.
    path = path.split("?", 1)[0]
    return path if len(path) <= 200 else path[:200] + "..."


def log_rejection(rejection: Rejection, path: str, exc: BaseException | None = None) -> None:
    """Log a refused webhook on ``upvest_verify.security``.

    Logs the reason code, status, request path (no query) and, for verification
    errors, the key id and the library's log message. Never logs signatures,
    header values or bodies. Unexpected exceptions are logged with their traceback.

    Args:
        rejection: What the client gets.
        path: The request path as received.
        exc: The exception behind the rejection, if any.
    """
    level = logging.ERROR if rejection.status >= 500 else logging.WARNING
    detail = ""
    if isinstance(exc, VerificationError):
        detail = f" key_id={exc.key_id!r} message={exc.message!r}" if exc.key_id else ""
        detail = detail or f" message={exc.message!r}"
    elif isinstance(exc, ConfigurationError):
        detail = f" message={str(exc)!r}"
    security_logger.log(
        level,
        "Upvest webhook rejected: reason=%s status=%d path=%r%s",
        rejection.reason,
        rejection.status,
        _loggable_path(path),
        detail,
        exc_info=exc if rejection.reason == INTERNAL_ERROR else None,
        extra={"upvest_reason": rejection.reason, "upvest_status": rejection.status},
    )
