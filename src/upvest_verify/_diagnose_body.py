"""Body hints for a failure diagnosis: a body changed between the network and the verifier.

Used by :mod:`._diagnose`. The evidence, strongest first:

- a variant of the received body (its UTF-8 byte order mark removed, its trailing
  newlines removed, its line ends converted, its JSON serialised again in the usual
  ways) matches the signed digest: something rewrote the body, and the variant says how;
- ``Content-Encoding`` names gzip but the body is not gzip data (decompressed on the
  way), or a JSON body starts with a byte order mark (RFC 8259 §8.1: senders never add
  one);
- the body length differs from ``Content-Length``;
- the body is empty, undeclared, and the signed digest is not the empty body's.

Nothing here shows the body: hints name only lengths and the kind of change.

Hashing variants costs a few passes over the body, so it is bounded: always for bodies
up to :data:`SMALL_BODY` bytes, at most :data:`CHECKS_PER_SECOND` times per second per
process for bodies up to :data:`LARGE_BODY` bytes, never beyond. A flood of forged
requests cannot make the diagnosis cost more than that.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING

from . import _sfv
from .errors import Reason

if TYPE_CHECKING:
    from ._verify import SignatureInput

__all__ = [
    "CHECKS_PER_SECOND",
    "LARGE_BODY",
    "SMALL_BODY",
    "body_hints",
    "content_length_text",
]

SMALL_BODY = 4096
"""Bodies up to this size are always checked against the signed digest."""
LARGE_BODY = 256 * 1024
"""Bodies above this size are never checked."""
CHECKS_PER_SECOND = 10.0
"""Checks of bodies between the two sizes, per second per process (a burst of as many)."""

_BOM = b"\xef\xbb\xbf"
_HASHES: dict[str, Callable[[bytes], bytes]] = {
    "sha-512": lambda b: hashlib.sha512(b).digest(),
    "sha-256": lambda b: hashlib.sha256(b).digest(),
}

Found = tuple[str, str]
"""A hint as ``(code, text)``."""


class _Allowance:
    """A token bucket: ``rate`` checks per second, at most ``rate`` saved up."""

    def __init__(self, rate: float) -> None:
        self._rate = rate
        self._tokens = rate
        self._at = time.monotonic()
        self._lock = threading.Lock()

    def take(self) -> bool:
        with self._lock:
            now = time.monotonic()
            self._tokens = min(self._rate, self._tokens + (now - self._at) * self._rate)
            self._at = now
            if self._tokens < 1:
                return False
            self._tokens -= 1
            return True


_ALLOWANCE = _Allowance(CHECKS_PER_SECOND)


def content_length_text(fields: Mapping[str, list[str]]) -> str | None:
    """``Content-Length`` as digits, ``"invalid"`` or ``"several"``; ``None`` if absent."""
    lines = fields.get("content-length")
    if not lines:
        return None
    values = {line.strip(" \t") for line in lines}
    if len(values) > 1:
        return "several"
    value = values.pop()
    return value if value.isdigit() and len(value) <= 19 else "invalid"


def _signed_digest(
    fields: Mapping[str, list[str]], sig: SignatureInput | None
) -> tuple[str, bytes] | None:
    """The strongest ``(algorithm, digest)`` of the covered digest field, if readable."""
    names = [c.name for c in sig.components] if sig is not None else []
    found: dict[str, bytes] = {}
    if "content-digest" in names and fields.get("content-digest"):
        try:
            members = _sfv.parse_dictionary(", ".join(fields["content-digest"]))
        except _sfv.SFError:
            members = {}
        for algorithm, (value, _) in members.items():
            if algorithm in _HASHES and isinstance(value, bytes):
                found.setdefault(algorithm, value)
    if not found and "digest" in names and fields.get("digest"):
        for part in ",".join(fields["digest"]).split(","):
            algorithm, _, encoded = part.strip(" \t").partition("=")
            try:
                value = base64.b64decode(encoded, validate=True)
            except (binascii.Error, ValueError):
                continue
            if algorithm.lower() in _HASHES:
                found.setdefault(algorithm.lower(), value)
    for algorithm in ("sha-512", "sha-256"):
        if algorithm in found:
            return algorithm, found[algorithm]
    return None


def _variants(body: bytes) -> Iterator[tuple[str, str, bytes]]:
    """Bodies the sender may have signed: ``(kind, what turned it into body, variant)``."""
    if body.startswith(_BOM):
        yield "bom", "a UTF-8 byte order mark was added at its start", body[3:]
    trimmed = body.rstrip(b"\r\n")
    if trimmed != body:
        yield (
            "newline",
            f"{len(body) - len(trimmed)} newline byte(s) were added at its end",
            trimmed,
        )
    if b"\r\n" in body:
        yield "lf", "its CRLF line ends were converted to LF", body.replace(b"\r\n", b"\n")
    elif b"\n" in body:
        yield "crlf", "its LF line ends were converted to CRLF", body.replace(b"\n", b"\r\n")
    try:
        document = json.loads(body.decode("utf-8-sig"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return
    for ensure_ascii in (False, True):
        for separators in ((",", ":"), (", ", ": ")):
            try:
                text = json.dumps(document, ensure_ascii=ensure_ascii, separators=separators)
            except (ValueError, RecursionError):  # pragma: no cover - it was just parsed
                return
            yield "json", "its JSON was parsed and serialised again", text.encode("utf-8")


def _rewritten(body: bytes, kind: str, what: str, variant: bytes, cli: bool) -> str:
    if cli and kind == "newline":
        # A captured file with a newline an editor appended: say how to cut it.
        return (
            f"the capture's body ends with {len(body) - len(variant)} newline byte(s) the sender "
            "did not sign (editors add one); remove them, e.g. with 'truncate -s -1 FILE'"
        )
    who = "the capture's body" if cli else "the body"
    return f"{who} matches the signed digest once undone: {what}; {_fix(cli)}"


def _allowed(size: int) -> bool:
    if size <= SMALL_BODY:
        return True
    return size <= LARGE_BODY and _ALLOWANCE.take()


def _fix(cli: bool) -> str:
    if cli:
        return "check the capture against the bytes that came off the wire"
    return (
        "verify the raw bytes as received, before any middleware that parses, decompresses "
        "or re-encodes the body"
    )


def body_hints(
    body: bytes,
    fields: Mapping[str, list[str]],
    sig: SignatureInput | None,
    reason: Reason,
    *,
    cli: bool = False,
) -> tuple[list[Found], list[str]]:
    """The body hints for a refusal, and notes on checks that were skipped.

    Args:
        body: The body as the verifier got it.
        fields: The header field lines.
        sig: The signature diagnosed (its covered digest field), if parsed.
        reason: ``bad_signature`` or ``digest_mismatch``; only the latter compares
            variants with the digest.
        cli: Phrase the hints for the command line (a captured file).

    Returns:
        ``(hints, notes)``.
    """
    hints: list[Found] = []
    notes: list[str] = []
    who = "the capture's body" if cli else "the body"
    if reason is Reason.DIGEST_MISMATCH:
        signed = _signed_digest(fields, sig)
        if signed is not None and body:
            if _allowed(len(body)):
                algorithm, expected = signed
                digest = _HASHES[algorithm]
                for kind, what, variant in _variants(body):
                    if hmac.compare_digest(digest(variant), expected):
                        text = _rewritten(body, kind, what, variant, cli)
                        return [("body_rewritten", text)], notes
            else:
                notes.append(f"body re-encoding checks skipped ({len(body)} bytes)")
        encodings = [
            v.strip(" \t").lower()
            for line in fields.get("content-encoding", ())
            for v in line.split(",")
        ]
        if encodings and encodings[-1] in ("gzip", "x-gzip") and body[:2] != b"\x1f\x8b":
            hints.append(
                (
                    "body_decoded",
                    f"Content-Encoding says {encodings[-1]!r} but {who} is not gzip data: it was "
                    f"decompressed on the way; {_fix(cli)}",
                )
            )
        elif body.startswith(_BOM):
            hints.append(
                (
                    "body_rewritten",
                    f"{who} starts with a UTF-8 byte order mark, which JSON senders never add: "
                    f"something re-encoded it; {_fix(cli)}",
                )
            )
    declared = content_length_text(fields)
    if declared is not None and declared.isdigit() and int(declared) != len(body):
        hints.append(
            (
                "body_length",
                f"{who} has {len(body)} bytes but Content-Length says {declared}: it was "
                f"changed before the verifier; {_fix(cli)}",
            )
        )
    elif declared is None and not body and reason is Reason.DIGEST_MISMATCH:
        hints.append(
            (
                "empty_body",
                "the body arrived empty without a Content-Length (chunked?) and the signed digest "
                "is not the empty body's: the server or a middleware did not pass the body on "
                "(under WSGI, a server without wsgi.input_terminated drops chunked bodies)",
            )
        )
    return hints, notes
