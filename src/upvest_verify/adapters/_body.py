"""The body rules every adapter applies while reading a webhook body (private).

One rule, wherever the bytes come from (ASGI messages, ``request.stream()``,
``request.get_data()``, Django's ``request.body``):

- a declared ``Content-Length`` above the limit is refused before anything is read
  (413 ``body_too_large``);
- reading stops at the first byte over the limit (413 ``body_too_large``), so
  memory stays bounded by the limit wherever the adapter reads chunk by chunk;
- a body whose length differs from its declared ``Content-Length`` is never
  verified: :class:`IncompleteBody`, answered 400 ``incomplete_body``. It is a
  transport problem (the client went away, or a server delivered less than it
  framed), not a configuration one.

:class:`BodyReader` holds the rule as a small state machine without I/O (in the
spirit of ``h11``): adapters feed it the chunks they read and call
:meth:`BodyReader.finish`. No web framework is imported here.
"""

from __future__ import annotations

import re

from upvest_verify import Verifier
from upvest_verify.errors import ConfigurationError, Reason, VerificationError

__all__ = ["BodyReader", "IncompleteBody", "declared_length", "refuse_declared", "resolve_limit"]

_DIGITS = re.compile(r"[0-9]{1,18}")


class IncompleteBody(Exception):
    """The body does not match its declared ``Content-Length``: answered 400 ``incomplete_body``.

    Raised for fewer bytes than declared (the client went away, or the stream ended
    early) and, with a non-conforming server, for more. Adapters also raise it for
    their framework's "client disconnected while reading" error.
    """


def declared_length(value: str | bytes | None) -> int | None:
    """Parse a ``Content-Length`` value.

    Args:
        value: The field value, or ``None`` when absent.

    Returns:
        The length, or ``None`` when absent or not a plain decimal (the server
        rejects such requests itself; the body limit is still enforced while reading).
    """
    if value is None:
        return None
    if type(value) is bytes and value.isdigit() and len(value) <= 18:
        return int(value)  # the usual case: ASCII digits only, as RFC 9110 §8.6 says
    text = value.decode("latin-1") if isinstance(value, bytes) else value
    text = text.strip()
    # RFC 9110 §8.6: Content-Length = 1*DIGIT
    return int(text) if _DIGITS.fullmatch(text) else None


def resolve_limit(verifier: object, max_body_size: int | None) -> int:
    """Validate the verifier and return the body limit (the policy's by default).

    Args:
        verifier: What the adapter was given as its verifier.
        max_body_size: An explicit limit, or ``None`` for the policy's.

    Returns:
        The limit in bytes.

    Raises:
        ConfigurationError: ``verifier`` is not a :class:`~upvest_verify.Verifier`,
            or the limit is not an int >= 1.
    """
    if not isinstance(verifier, Verifier):
        raise ConfigurationError("verifier must be an upvest_verify.Verifier")
    limit = verifier.policy.max_body_size if max_body_size is None else max_body_size
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise ConfigurationError(f"max_body_size must be an int >= 1, got {limit!r}")
    return limit


class BodyReader:
    """Collects one request body under the shared limit and completeness rule.

    Example::

        reader = BodyReader(limit, declared_length(content_length))  # 413 if declared > limit
        for chunk in chunks:
            reader.feed(chunk)                                         # 413 at limit + 1
        body = reader.finish()                                         # IncompleteBody if short

    Args:
        limit: The largest body accepted, in bytes.
        declared: The declared ``Content-Length``, or ``None`` (chunked, or absent).

    Raises:
        VerificationError: ``body_too_large`` when ``declared`` exceeds ``limit``.
    """

    __slots__ = ("_chunks", "_declared", "_limit", "_size")

    def __init__(self, limit: int, declared: int | None) -> None:
        refuse_declared(limit, declared)
        self._limit = limit
        self._declared = declared
        self._chunks: list[bytes] = []
        self._size = 0

    def feed(self, chunk: bytes) -> None:
        """Add the next piece of the body.

        Args:
            chunk: The bytes read (may be empty).

        Raises:
            VerificationError: ``body_too_large`` once the body passes the limit; the
                caller stops reading there, so memory stays bounded.
        """
        self._size += len(chunk)
        if self._size > self._limit:
            raise VerificationError(Reason.BODY_TOO_LARGE, f"body exceeds {self._limit} bytes")
        if chunk:
            self._chunks.append(chunk)

    def finish(self) -> bytes:
        """Return the whole body, once the framework says it has ended.

        Returns:
            The body.

        Raises:
            IncompleteBody: Its length differs from the declared ``Content-Length``
                (a partial body is never verified).
        """
        if self._declared is not None and self._size != self._declared:
            raise IncompleteBody(
                f"the body has {self._size} bytes, Content-Length declared {self._declared}"
            )
        return b"".join(self._chunks)

    @staticmethod
    def whole(limit: int, declared: int | None, body: bytes) -> bytes:
        """Apply the rules to a body that arrived in one piece, without a reader.

        The same checks as :meth:`feed` and :meth:`finish` (the declared length was
        checked with :func:`refuse_declared` before reading).

        Args:
            limit: The largest body accepted, in bytes.
            declared: The declared ``Content-Length``, or ``None``.
            body: The whole body.

        Returns:
            ``body`` (as ``bytes``, if a server handed over another bytes-like object).

        Raises:
            VerificationError: ``body_too_large`` when ``body`` passes the limit.
            IncompleteBody: Its length differs from ``declared``.
        """
        size = len(body)
        if size > limit:
            raise VerificationError(Reason.BODY_TOO_LARGE, f"body exceeds {limit} bytes")
        if declared is not None and size != declared:
            raise IncompleteBody(f"the body has {size} bytes, Content-Length declared {declared}")
        return body if type(body) is bytes else bytes(body)


def refuse_declared(limit: int, declared: int | None) -> None:
    """Refuse a declared ``Content-Length`` above the limit, before anything is read.

    Args:
        limit: The largest body accepted, in bytes.
        declared: The declared ``Content-Length``, or ``None``.

    Raises:
        VerificationError: ``body_too_large`` when ``declared`` exceeds ``limit``.
    """
    if declared is not None and declared > limit:
        raise VerificationError(
            Reason.BODY_TOO_LARGE, f"Content-Length {declared} exceeds {limit} bytes"
        )
