"""Refusing a webhook: the problem document and the security log line (private).

Every adapter answers every failure through :func:`rejection_for` and
:func:`log_rejection`, so a refusal looks and logs the same in every framework:

- the answer is ``application/problem+json`` (RFC 9457) carrying only a stable
  reason code, never internals (threat-model.md §6);
- the log line goes to ``upvest_verify.security`` with the reason, status and path,
  never signatures or bodies; for ``bad_signature`` and ``digest_mismatch`` it adds
  what was rebuilt and a hint naming the setting to change (:mod:`._explain`).

A verified body that is not a ``{"payload": [...]}`` envelope is refused through
:func:`payload_rejection`: 400 ``invalid_payload``, logged at ERROR on
``upvest_verify.delivery`` with the key id and the body length.

No web framework is imported here.
"""

from __future__ import annotations

import http
import json
import logging
from dataclasses import dataclass
from typing import Final

from upvest_verify import VerifiedWebhook
from upvest_verify.adapters._body import IncompleteBody
from upvest_verify.adapters._explain import explain, log_bases
from upvest_verify.errors import ConfigurationError, VerificationError
from upvest_verify.ledger import LedgerUnavailable

__all__ = [
    "CONFIGURATION_ERROR",
    "INCOMPLETE_BODY",
    "INTERNAL_ERROR",
    "INVALID_PAYLOAD",
    "IN_PROGRESS",
    "LEDGER_UNAVAILABLE",
    "METHOD_NOT_ALLOWED",
    "PROBLEM_CONTENT_TYPE",
    "RETRY_AFTER",
    "Rejection",
    "log_rejection",
    "payload_rejection",
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
# Event ledger and replay store outcomes (adapters/_delivery.py).
IN_PROGRESS: Final = "in_progress"
"""503: another worker holds a live claim on an event of the delivery."""
LEDGER_UNAVAILABLE: Final = "ledger_unavailable"
"""503: the event ledger's (or replay store's) storage cannot be used right now."""
INVALID_PAYLOAD: Final = "invalid_payload"
"""400: the verified body has no events the ledger can key (no ``payload`` list, bad ids)."""
RETRY_AFTER: Final = 5
"""Seconds in ``Retry-After`` on the 503 answers above: long enough for another worker
to finish a typical event; Upvest's own back-off decides in the end."""


@dataclass(frozen=True, slots=True)
class Rejection:
    """A refused webhook: the HTTP status and the stable code sent to the client.

    Attributes:
        status: HTTP status (400, 401, 405, 413, 500 or 503).
        reason: A :class:`~upvest_verify.Reason` value, or one of the adapter codes
            ``method_not_allowed``, ``configuration_error``, ``internal_error``,
            ``incomplete_body`` (and, with an event ledger, ``in_progress``,
            ``ledger_unavailable``, ``invalid_payload``).
        retry_after: Seconds for a ``Retry-After`` field (RFC 9110 §10.2.3), or ``None``.
    """

    status: int
    reason: str
    retry_after: int | None = None

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
        if self.retry_after is not None:
            headers.append(("retry-after", str(self.retry_after)))
        return headers


def rejection_for(exc: BaseException) -> Rejection:
    """Map an exception raised while reading or verifying to the answer for the client.

    Args:
        exc: A :class:`VerificationError` (its own status and reason),
            :class:`~upvest_verify.adapters._body.IncompleteBody` (400,
            ``incomplete_body``), :class:`ConfigurationError` (500,
            ``configuration_error``), :class:`~upvest_verify.ledger.LedgerUnavailable`
            from a replay store (503, ``ledger_unavailable``) or anything else (500,
            ``internal_error``). Never fails open.

    Returns:
        The rejection.
    """
    if isinstance(exc, VerificationError):
        return Rejection(exc.status_code, exc.reason.value)
    if isinstance(exc, IncompleteBody):
        return Rejection(400, INCOMPLETE_BODY)
    if isinstance(exc, ConfigurationError):
        return Rejection(500, CONFIGURATION_ERROR)
    if isinstance(exc, LedgerUnavailable):
        return Rejection(503, LEDGER_UNAVAILABLE, RETRY_AFTER)
    return Rejection(500, INTERNAL_ERROR)


def _loggable_path(path: str) -> str:
    # The query may carry secrets of other systems; the path is enough to find the route.
    path = path.split("?", 1)[0]
    return path if len(path) <= 200 else path[:200] + "..."


def log_rejection(rejection: Rejection, path: str, exc: BaseException | None = None) -> None:
    """Log a refused webhook on ``upvest_verify.security``.

    Logs the reason code, status, request path (no query) and, for verification
    errors, the key id and the library's log message. For ``bad_signature`` and
    ``digest_mismatch`` it adds the diagnosis (:mod:`upvest_verify.diagnosis`): the
    rebuilt method, scheme, authority and path, the bases tried, the body length
    against ``Content-Length``, the adapter's URL settings and hints; computed only
    when the record is formatted. Never logs signatures or bodies, nor header values
    beyond those a hint rests on; the signature bases only when the
    ``upvest_verify.security.base`` logger is set to ``DEBUG`` (:mod:`._explain`).
    Unexpected exceptions are logged with their traceback.

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
    diagnosis = explain(exc)
    security_logger.log(
        level,
        "Upvest webhook rejected: reason=%s status=%d path=%r%s%s",
        rejection.reason,
        rejection.status,
        _loggable_path(path),
        detail,
        "" if diagnosis is None else diagnosis,
        exc_info=exc if rejection.reason == INTERNAL_ERROR else None,
        extra={
            "upvest_reason": rejection.reason,
            "upvest_status": rejection.status,
            "upvest_diagnosis": diagnosis,
        },
    )
    if diagnosis is not None:
        log_bases(diagnosis)


# The event ledger's logger (adapters/_delivery.py), by name: that module imports this one.
_delivery_logger: Final = logging.getLogger("upvest_verify.delivery")


def payload_rejection(webhook: object, path: str) -> Rejection | None:
    """The answer for a verified webhook whose body is not an envelope, logged at ERROR.

    Upvest retries every answer but a 2xx, with no attempt limit, and holds back the
    tenant's later deliveries meanwhile. An authentic body without the
    ``{"payload": [...]}`` shape comes back unchanged on every retry, so only a 2xx
    would end the retries, and a 2xx drops a delivery nobody has read. The adapters
    do not drop it: 400 ``invalid_payload`` (the code of the event ledger's
    admission too), logged with the key id and the body length, never the body.
    Upvest keeps the delivery until the receiver is changed to read it
    (``webhook.json()``) or to acknowledge it on purpose (check
    ``webhook.envelope_error`` and answer 200).

    Adapters call it when a handler's ``webhook.events`` raised
    :class:`~upvest_verify.PayloadError`, and, with an event ledger, before admission.

    Args:
        webhook: The request's verified webhook, or ``None`` (or anything else) when
            the request was not verified.
        path: The request path, for the log line.

    Returns:
        400 ``invalid_payload`` when ``webhook`` is a verified webhook whose body is
        not an envelope; ``None`` otherwise (a ``PayloadError`` from elsewhere is not
        the adapter's to answer).
    """
    if not isinstance(webhook, VerifiedWebhook):
        return None
    error = webhook.envelope_error
    if error is None:
        return None
    rejection = Rejection(400, INVALID_PAYLOAD)
    _delivery_logger.error(
        "Upvest webhook not processed: reason=%s status=%d path=%r key_id=%r body_length=%d "
        "error=%r; Upvest retries it until the receiver reads this body "
        "(webhook.json()) or acknowledges it",
        rejection.reason,
        rejection.status,
        _loggable_path(path),
        webhook.key_id,
        len(webhook.body),
        str(error),
        extra={"upvest_reason": rejection.reason, "upvest_status": rejection.status},
    )
    return rejection
