"""Exceptions raised by upvest-verify.

Every way a webhook can fail verification raises a :class:`VerificationError`
carrying a stable :class:`Reason` code and an HTTP status hint. The tree is
split by what the caller does about the failure, not by parsing step::

    Exception
    ├── VerificationError             reason + status_code; never a bare ValueError
    │   ├── InvalidSignature          reject (400/401): header, policy, digest, signature
    │   ├── KeyNotFound               reject (401): unknown_key, unsupported_key
    │   ├── KeySetUnavailable         retry later (503): keys_unavailable
    │   └── RequestTooLarge           reject (413): body_too_large
    ├── ConfigurationError            the application is wired wrong; fix the code
    └── ValueError
        └── JWKSError                 a JWKS document is unusable as a whole

``str(exc)`` is ``"<reason>: <message>"``. The message is for logs; send clients
only the reason code.

:class:`InvalidSignature` here is unrelated to
``cryptography.exceptions.InvalidSignature``; no ``cryptography`` exception ever
escapes this package.
"""

from __future__ import annotations

import enum

__all__ = [
    "ConfigurationError",
    "InvalidSignature",
    "JWKSError",
    "KeyNotFound",
    "KeySetUnavailable",
    "Reason",
    "RequestTooLarge",
    "VerificationError",
]


class Reason(str, enum.Enum):
    """Stable reason codes for a rejected webhook.

    The values are part of the public contract: log them, alert on them and
    match on them; they never change between releases.
    """

    MISSING_SIGNATURE = "missing_signature"
    """``Signature`` or ``Signature-Input`` (or both) absent."""
    MALFORMED_HEADER = "malformed_header"
    """Structured-field syntax error, wrong type, duplicate, unknown parameter or size cap."""
    LABEL_MISMATCH = "label_mismatch"
    """A label present in one header but not the other, or no acceptable label."""
    MISSING_COMPONENT = "missing_component"
    """A component the policy requires is not covered by the signature."""
    COMPONENT_UNAVAILABLE = "component_unavailable"
    """A covered component cannot be built from this message."""
    UNKNOWN_KEY = "unknown_key"
    """``keyid`` is not in the key set, even after a refresh."""
    UNSUPPORTED_KEY = "unsupported_key"
    """``keyid`` names a key that cannot verify under the policy."""
    UNSUPPORTED_ALGORITHM = "unsupported_algorithm"
    """``alg`` is outside the allow-list or contradicts the key."""
    BAD_SIGNATURE = "bad_signature"
    """Signature bytes undecodable, or the signature does not verify."""
    DIGEST_MISMATCH = "digest_mismatch"
    """The covered body digest does not match the body, or none is acceptable."""
    EXPIRED = "expired"
    """``expires`` passed, ``created`` too old, or the validity window too long."""
    CREATED_IN_FUTURE = "created_in_future"
    """``created`` is later than now plus the allowed clock skew."""
    REPLAYED = "replayed"
    """``(keyid, nonce)`` was already accepted within the window."""
    BODY_TOO_LARGE = "body_too_large"
    """The body is larger than the configured maximum."""
    KEYS_UNAVAILABLE = "keys_unavailable"
    """No usable key set: the key endpoint is down and nothing (fresh enough) is cached."""

    def __str__(self) -> str:
        return self.value

    @property
    def status_code(self) -> int:
        """The HTTP status a receiver should answer with for this reason."""
        return _STATUS[self]


_STATUS: dict[Reason, int] = {
    Reason.MISSING_SIGNATURE: 401,
    Reason.MALFORMED_HEADER: 400,
    Reason.LABEL_MISMATCH: 401,
    Reason.MISSING_COMPONENT: 401,
    Reason.COMPONENT_UNAVAILABLE: 401,
    Reason.UNKNOWN_KEY: 401,
    Reason.UNSUPPORTED_KEY: 401,
    Reason.UNSUPPORTED_ALGORITHM: 401,
    Reason.BAD_SIGNATURE: 401,
    Reason.DIGEST_MISMATCH: 401,
    Reason.EXPIRED: 401,
    Reason.CREATED_IN_FUTURE: 401,
    Reason.REPLAYED: 401,
    Reason.BODY_TOO_LARGE: 413,
    Reason.KEYS_UNAVAILABLE: 503,
}


class VerificationError(Exception):
    """A webhook failed verification.

    Args:
        reason: The stable reason code.
        message: A human-readable explanation for logs. Never send it to the client.
        key_id: The ``keyid`` the failure concerns, when known.
        signed_at: For an ``expired`` webhook whose only time fault is its age, the
            instant it was signed (its ``created``); ``None`` otherwise.

    Attributes:
        reason: The :class:`Reason`.
        message: The log message.
        status_code: The HTTP status hint (400, 401, 413 or 503).
        key_id: The ``keyid`` involved, or ``None``.
        unknown_key_ids: Every ``keyid`` of the request's signatures that was not in
            the key set, whichever error is raised; a key cache refreshes for them.
        signed_at: Set only on an ``expired`` error raised because the webhook is
            too old (``expires`` passed, or ``created`` beyond ``max_age``) while its
            window is well formed and ``created`` is known: the signing instant, Unix
            seconds. A :class:`~upvest_verify.Verifier` with ``late_retries`` uses it
            to accept an authentic but late retry. ``None`` for every other error.
    """

    reason: Reason
    message: str
    status_code: int
    key_id: str | None
    unknown_key_ids: tuple[str, ...]
    signed_at: int | None

    def __new__(
        cls,
        reason: Reason | str,
        message: str = "",
        *,
        key_id: str | None = None,
        signed_at: int | None = None,
    ) -> VerificationError:
        # Constructing the base class picks the subclass that fits the reason, so
        # ``except KeyNotFound`` works whoever raised the error.
        if cls is VerificationError:
            cls = _SUBCLASS.get(Reason(reason), InvalidSignature)
        return super().__new__(cls)

    def __init__(
        self,
        reason: Reason | str,
        message: str = "",
        *,
        key_id: str | None = None,
        signed_at: int | None = None,
    ) -> None:
        self.reason = Reason(reason)
        self.message = message or self.reason.value.replace("_", " ")
        self.status_code = self.reason.status_code
        self.key_id = key_id
        self.unknown_key_ids = ()
        self.signed_at = signed_at
        super().__init__(self.reason, self.message)

    def __str__(self) -> str:
        return f"{self.reason.value}: {self.message}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.reason.value!r}, {self.message!r})"

    def __reduce__(self) -> tuple[object, ...]:
        return (_rebuild, (type(self), self.reason, self.message, self.key_id, self.signed_at))


def _rebuild(
    cls: type[VerificationError],
    reason: Reason,
    message: str,
    key_id: str | None,
    signed_at: int | None = None,
) -> VerificationError:
    return cls(reason, message, key_id=key_id, signed_at=signed_at)


class InvalidSignature(VerificationError):
    """The request is not a valid Upvest webhook: reject it (400 or 401)."""


class KeyNotFound(VerificationError):
    """The signature names a key that is unknown or unusable (401)."""


class KeySetUnavailable(VerificationError):
    """No usable key set is available right now; answer 503 so Upvest retries."""


class RequestTooLarge(VerificationError):
    """The body exceeds the configured limit (413)."""


_SUBCLASS: dict[Reason, type[VerificationError]] = {
    Reason.UNKNOWN_KEY: KeyNotFound,
    Reason.UNSUPPORTED_KEY: KeyNotFound,
    Reason.KEYS_UNAVAILABLE: KeySetUnavailable,
    Reason.BODY_TOO_LARGE: RequestTooLarge,
}


class ConfigurationError(Exception):
    """The verifier or an adapter is configured wrongly.

    Raised at start-up for bad settings, and at request time when the body was
    already consumed by other code before verification could read it. Adapters
    fail closed on it (HTTP 500, handler not called).
    """


class JWKSError(ValueError):
    """A JWKS document cannot be used at all (not JSON, no ``keys`` list, too large).

    Single bad keys inside a usable document never raise this: they are skipped
    and logged. A key cache treats this error as a failed refresh and keeps its
    last good key set.
    """
