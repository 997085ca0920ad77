"""Body digests: ``Content-Digest`` (RFC 9530) and the legacy ``Digest`` (RFC 3230).

A signature covers the body only through a digest field, so the digest must be
checked against the bytes actually received (RFC 9421 §7.2.8, R12). Every
supported algorithm present must match (ignoring a failed one would be a
downgrade, RFC 9530 §6); deprecated ones (``md5``, ``sha``) never count.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from binascii import b2a_base64
from collections.abc import Callable, Sequence

from . import _sfv
from .errors import Reason, VerificationError

__all__ = [
    "BodyHasher",
    "check_content_digest",
    "check_legacy_digest",
    "content_digest",
    "legacy_digest",
]

# RFC 9530 §5 registry names (lower case) and RFC 3230 tokens (compared case-insensitively).
_ALGORITHMS: dict[str, Callable[[bytes], bytes]] = {
    "sha-512": lambda b: hashlib.sha512(b).digest(),
    "sha-256": lambda b: hashlib.sha256(b).digest(),
}


_FAST_CONTENT_DIGEST = re.compile(r"(sha-512|sha-256)=:([A-Za-z0-9+/]+={0,2}):")


class BodyHasher:
    """Hashes the body at most once per algorithm, however many signatures ask."""

    __slots__ = ("_body", "_cache")

    def __init__(self, body: bytes) -> None:
        """Wrap the raw body.

        Args:
            body: The raw request body as received.
        """
        self._body = body
        self._cache: dict[str, bytes] = {}

    def canonical_content_digest(self) -> str:
        """``sha-512=:<base64>:``, the usual ``Content-Digest`` value for this body."""
        return _content_digest_value("sha-512", self.digest("sha-512"))

    def canonical_legacy_digest(self) -> str:
        """``SHA-256=<base64>``, the usual (Upvest v6) ``Digest`` value for this body."""
        return _legacy_digest_value("sha-256", self.digest("sha-256"))

    def digest(self, algorithm: str) -> bytes:
        """Return the body's digest under a supported algorithm name (``sha-512``)."""
        value = self._cache.get(algorithm)
        if value is None:
            value = self._cache[algorithm] = _ALGORITHMS[algorithm](self._body)
        return value


def _content_digest_value(algorithm: str, digest: bytes) -> str:
    # RFC 9530 §2: a Dictionary member, algorithm = byte sequence (RFC 8941 §3.3.5).
    return f"{algorithm}=:{b2a_base64(digest, newline=False).decode('ascii')}:"


def _legacy_digest_value(algorithm: str, digest: bytes) -> str:
    # RFC 3230 §4.3.2 instance-digest, with the algorithm token as registered
    # (RFC 5843 §2: "SHA-256", "SHA-512") and standard base64.
    return f"{algorithm.upper()}={b2a_base64(digest, newline=False).decode('ascii')}"


_SHA512_ONLY = ("sha-512",)
_SHA256_ONLY = ("sha-256",)


def content_digest(body: bytes, algorithms: Sequence[str] = _SHA512_ONLY) -> str:
    """Produce the ``Content-Digest`` value a sender writes for ``body`` (RFC 9530).

    Args:
        body: The raw body.
        algorithms: Algorithm names, in order (``sha-512``, ``sha-256``).

    Returns:
        For example ``sha-512=:<base64>:``; several algorithms are comma-separated.

    Raises:
        ValueError: An algorithm is not supported.
    """
    if algorithms is _SHA512_ONLY:  # the verify path's case, without the generality
        return _content_digest_value("sha-512", hashlib.sha512(body).digest())
    return ", ".join(_content_digest_value(a, _hash(a, body)) for a in _algorithm_names(algorithms))


def legacy_digest(body: bytes, algorithms: Sequence[str] = _SHA256_ONLY) -> str:
    """Produce the RFC 3230 ``Digest`` value Upvest's v6 signers write for ``body``.

    Args:
        body: The raw body.
        algorithms: Algorithm names, in order (``sha-256``, ``sha-512``).

    Returns:
        For example ``SHA-256=<base64>``; several algorithms are comma-separated.

    Raises:
        ValueError: An algorithm is not supported.
    """
    if algorithms is _SHA256_ONLY:  # the verify path's case, without the generality
        return _legacy_digest_value("sha-256", hashlib.sha256(body).digest())
    return ", ".join(_legacy_digest_value(a, _hash(a, body)) for a in _algorithm_names(algorithms))


def _algorithm_names(algorithms: Sequence[str]) -> list[str]:
    if isinstance(algorithms, str):
        algorithms = (algorithms,)
    names = [a.lower() for a in algorithms]
    unknown = [a for a in names if a not in _ALGORITHMS]
    if unknown or not names:
        raise ValueError(f"digest algorithms must be among {sorted(_ALGORITHMS)}, got {names}")
    return names


def _hash(algorithm: str, body: bytes) -> bytes:
    return _ALGORITHMS[algorithm](body)


def _compare(
    hasher: BodyHasher, found: dict[str, bytes], header: str, required: str | None = None
) -> None:
    if not found:
        raise VerificationError(
            Reason.DIGEST_MISMATCH, f"{header} has no supported algorithm (sha-512, sha-256)"
        )
    if required is not None and required not in found:
        # A receiver is as weak as the weakest algorithm it accepts alone (R24, D3).
        raise VerificationError(Reason.DIGEST_MISMATCH, f"{header} must carry {required}")
    for algorithm, expected in found.items():
        # Constant-time compare (D11); lengths differ only for malformed values.
        if not hmac.compare_digest(hasher.digest(algorithm), expected):
            raise VerificationError(
                Reason.DIGEST_MISMATCH, f"{header} {algorithm} does not match the body"
            )


def check_content_digest(value: str, hasher: BodyHasher) -> None:
    """Check an RFC 9530 ``Content-Digest`` value against the body.

    ``Content-Digest = Dictionary`` whose members map an algorithm to a byte
    sequence (RFC 9530 §2). Duplicate members are malformed (D5), not last-wins.

    Args:
        value: The combined field value.
        hasher: The body hasher.

    Raises:
        VerificationError: ``malformed_header`` for bad syntax or a non-byte-sequence
            member; ``digest_mismatch`` if ``sha-512`` is absent (a ``sha-256`` alone is
            not enough) or any supported algorithm present does not match.
    """
    # Fastest path: the value is exactly what a sender would write for this body.
    if value.isascii() and hmac.compare_digest(value, hasher.canonical_content_digest()):
        return
    fast = _FAST_CONTENT_DIGEST.fullmatch(value)
    if fast is not None:
        # The usual single "sha-512=:<base64>:" member: same result as the full parse.
        try:
            expected = base64.b64decode(fast.group(2), validate=True)
        except (binascii.Error, ValueError):
            pass  # padding the strict parser may still accept: let it decide
        else:
            _compare(hasher, {fast.group(1): expected}, "content-digest", "sha-512")
            return
    try:
        members = _sfv.parse_dictionary(value, allow_duplicates=False)
    except _sfv.SFError as e:
        raise VerificationError(Reason.MALFORMED_HEADER, f"content-digest: {e}") from e
    found: dict[str, bytes] = {}
    for algorithm, member in members.items():
        bare = member[0]
        if not isinstance(bare, bytes):
            raise VerificationError(
                Reason.MALFORMED_HEADER, f"content-digest {algorithm} is not a byte sequence"
            )
        if algorithm in _ALGORITHMS:
            found[algorithm] = bare
    _compare(hasher, found, "content-digest", "sha-512")


def check_legacy_digest(value: str, hasher: BodyHasher) -> None:
    """Check an RFC 3230 ``Digest`` value (Upvest v6) against the body.

    ``Digest = 1#instance-digest``, ``instance-digest = digest-algorithm "="
    <encoded digest output>`` (RFC 3230 §4.3.2); algorithm tokens are
    case-insensitive and SHA-256/SHA-512 values are standard base64
    (RFC 5843 §2).

    Args:
        value: The combined field value.
        hasher: The body hasher.

    Raises:
        VerificationError: ``malformed_header`` for bad syntax or base64, or the same
            algorithm twice; ``digest_mismatch`` as for ``Content-Digest``.
    """
    if value.isascii() and hmac.compare_digest(value, hasher.canonical_legacy_digest()):
        return
    found: dict[str, bytes] = {}
    for part in value.split(","):
        algorithm, sep, encoded = part.strip(" \t").partition("=")
        if not sep or not algorithm:
            raise VerificationError(Reason.MALFORMED_HEADER, "digest: expected <alg>=<value>")
        algorithm = algorithm.lower()
        if algorithm not in _ALGORITHMS:
            continue  # md5, sha, unixsum...: never trusted, never required
        try:
            decoded = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError) as e:
            raise VerificationError(
                Reason.MALFORMED_HEADER, f"digest {algorithm} is not base64"
            ) from e
        if algorithm in found and found[algorithm] != decoded:
            raise VerificationError(
                Reason.MALFORMED_HEADER, f"digest lists {algorithm} twice with different values"
            )
        found[algorithm] = decoded
    _compare(hasher, found, "digest")
