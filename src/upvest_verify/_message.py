"""The HTTP message as the verifier sees it: explicit parts, no framework objects.

Adapters and callers pass the method, the URL as Upvest sent it, the header
field lines and the raw body. This module turns them into a :class:`Message`
with lower-cased field names and the field lines kept in order, which is what
RFC 9421 §2.1 needs to rebuild component values.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeAlias

from .errors import Reason, VerificationError

__all__ = [
    "HeaderInput",
    "Message",
    "ascii_lower",
    "field_text",
    "normalise_fields",
    "request_message",
    "split_url",
]

HeaderInput: TypeAlias = (
    Mapping[str, str]
    | Mapping[bytes, bytes]
    | Iterable[tuple[str, str]]
    | Iterable[tuple[bytes, bytes]]
    | Iterable[tuple[str | bytes, str | bytes]]
)
"""Header fields: a mapping, or an iterable of ``(name, value)`` pairs (names may repeat)."""

_DEFAULT_PORTS = {"http": "80", "https": "443"}


@dataclass(slots=True)
class Message:
    """An HTTP message reduced to what signature components are built from.

    Attributes:
        method: The request method exactly as received (``None`` for a response).
        scheme: Lower-case URI scheme, or ``None`` if the caller gave an origin-form URL.
        authority: Normalised ``host[:port]`` (RFC 9421 §2.2.3), or ``None``.
        path: The raw absolute path as received, percent-encoding untouched; ``/`` if empty.
        query: The raw query without the leading ``?``; ``None`` when the URL has no ``?``.
        status: The response status code, or ``None`` for a request.
        fields: Lower-case field name to the list of its field-line values, in order.
        target_uri: The target URI as sent (RFC 9421 §2.2.2: an explicit default port
            is kept), without any fragment; ``None`` for an origin-form URL.
        memo: Values worked out once per message (combined fields, parsed dictionaries,
            the decoded query), shared by every component and signature (K9).
    """

    method: str | None
    scheme: str | None
    authority: str | None
    path: str
    query: str | None
    status: int | None
    fields: Mapping[str, list[str]]
    target_uri: str | None = None
    memo: dict[Any, Any] = field(default_factory=dict, repr=False, compare=False)


_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def ascii_lower(text: str) -> str:
    """``text`` with only the ASCII letters lower-cased.

    Field names, schemes and hosts are case-insensitive in ASCII only. ``str.lower``
    would also fold some non-ASCII characters into ASCII (KELVIN SIGN U+212A becomes
    ``k``), letting a name or host nobody signed stand in for a signed one.
    """
    return text.lower() if text.isascii() else text.translate(_ASCII_LOWER)


def field_text(value: str | bytes) -> str:
    """A field name or value as ``str``: bytes are decoded as ISO-8859-1, others refused.

    Raises:
        TypeError: ``value`` is neither ``str`` nor bytes-like.
    """
    # Field values arrive as bytes from ASGI/WSGI servers. ISO-8859-1 maps every
    # byte to one code point, so no byte is lost; non-ASCII is rejected later,
    # only for values that are actually covered (RFC 9421 §2.1, §2.5).
    if isinstance(value, str):
        return value
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).decode("latin-1")
    # bytes(3) would be three NUL bytes: refuse anything else instead of coercing it.
    raise TypeError(f"header names and values must be str or bytes, not {type(value).__name__}")


def normalise_fields(headers: HeaderInput) -> dict[str, list[str]]:
    """Group header field lines by lower-cased name, keeping their order.

    Args:
        headers: A mapping or an iterable of ``(name, value)`` pairs, ``str`` or ``bytes``.
            A mapping whose ``items()`` yields repeated names (Starlette, Werkzeug) keeps
            every line.

    Returns:
        Lower-case field name to the list of field-line values.

    Raises:
        TypeError: ``headers`` is not such a mapping or iterable, or a name or value is
            neither ``str`` nor bytes: a programming error, never wire input.
    """
    items = headers.items() if isinstance(headers, Mapping) else headers
    fields: dict[str, list[str]] = {}
    try:
        for name, value in items:
            key = ascii_lower(name if type(name) is str else field_text(name))
            if type(value) is not str:
                value = field_text(value)
            values = fields.get(key)
            if values is None:
                fields[key] = [value]
            else:
                values.append(value)
    except TypeError:
        raise
    except (ValueError, AttributeError) as e:  # not pairs: unpacking failed
        raise TypeError(f"headers must be (name, value) pairs: {e}") from e
    return fields


_SplitURL: TypeAlias = tuple[str | None, str | None, str, str | None]
# A receiver sees the same few URLs over and over; splitting is pure, so memoise it.
# Only short URLs, so unsigned requests cannot grow it: at most 1,024 URLs of up to
# 2 KiB, each with its split parts (about 5 MiB when full).
_URL_CACHE: dict[str, _SplitURL] = {}
_URL_CACHE_CAP = 1024
_URL_CACHE_MAX_URL = 2048


def split_url(url: str) -> _SplitURL:
    """Split an absolute or origin-form URL into scheme, authority, path and query (memoised).

    Args:
        url: The URL as received.

    Returns:
        ``(scheme, authority, path, query)`` as described on :class:`Message`.

    Raises:
        VerificationError: ``malformed_header`` for a URL that is neither absolute nor
            origin-form.
    """
    split = _URL_CACHE.get(url)
    if split is None:
        split = _split_url_uncached(url)
        if len(url) <= _URL_CACHE_MAX_URL:
            if len(_URL_CACHE) >= _URL_CACHE_CAP:
                _URL_CACHE.clear()
            _URL_CACHE[url] = split
    return split


def _split_url_uncached(url: str) -> _SplitURL:
    """Split an absolute or origin-form URL without decoding anything.

    ``urllib.parse`` is avoided on purpose: it normalises and may decode, while
    ``@path`` and ``@query`` must be the raw strings as sent (RFC 9421 §2.2.6-7).
    """
    scheme: str | None = None
    authority: str | None = None
    rest = url
    if not url.startswith("/"):
        sep = url.find("://")
        if sep <= 0:
            raise VerificationError(
                Reason.MALFORMED_HEADER, f"url is neither absolute nor origin-form: {url[:80]!r}"
            )
        scheme = ascii_lower(url[:sep])
        after = url[sep + 3 :]
        end = len(after)
        for ch in "/?#":
            i = after.find(ch)
            if i != -1 and i < end:
                end = i
        authority = after[:end]
        rest = after[end:]
        if "@" in authority:
            # userinfo is never part of @authority (RFC 9110 §4.2.4 forbids it in http(s) URIs)
            authority = authority.rsplit("@", 1)[1]
        authority = _normalise_authority(scheme, authority)
    hash_at = rest.find("#")
    if hash_at != -1:
        rest = rest[:hash_at]
    q = rest.find("?")
    if q == -1:
        path, query = rest, None
    else:
        path, query = rest[:q], rest[q + 1 :]
    return scheme, authority, path or "/", query


def _normalise_authority(scheme: str | None, authority: str) -> str:
    # RFC 9421 §2.2.3: @authority is normalised per RFC 9110 §4.2.3: host lower-cased,
    # default port omitted.
    authority = ascii_lower(authority)
    if scheme in _DEFAULT_PORTS and authority.endswith(":" + _DEFAULT_PORTS[scheme]):
        authority = authority[: -len(_DEFAULT_PORTS[scheme]) - 1]
    return authority


def request_message(method: str, url: str, fields: dict[str, list[str]]) -> Message:
    """Build the :class:`Message` for a request.

    Args:
        method: The method as received (not upper-cased: RFC 9421 §2.2.1).
        url: Absolute URL (``https://host/path?query``) or origin form (``/path?query``),
            exactly as Upvest sent it. With origin form, ``@authority`` comes from the
            ``Host`` field (the target URI is reconstructed per RFC 9112 §3.3) and
            ``@scheme``/``@target-uri`` are unavailable.
        fields: Output of :func:`normalise_fields`.

    Returns:
        The message.

    Raises:
        TypeError: ``method`` or ``url`` is not a ``str`` (a programming error).
        VerificationError: ``malformed_header`` for an unusable URL or an empty method.
    """
    if not isinstance(method, str):
        raise TypeError(f"method must be a str, not {type(method).__name__}")
    if not isinstance(url, str):
        raise TypeError(f"url must be a str, not {type(url).__name__}")
    if not method:
        raise VerificationError(Reason.MALFORMED_HEADER, "method must not be empty")
    scheme, authority, path, query = split_url(url)
    if authority is None:
        hosts = fields.get("host")
        if hosts is not None and len(hosts) == 1:
            # RFC 9110 §5.5: only SP and HTAB are optional whitespace around a value.
            authority = _normalise_authority(scheme, hosts[0].strip(" \t"))
    return Message(
        method=method,
        scheme=scheme,
        authority=authority,
        path=path,
        query=query,
        status=None,
        fields=fields,
        target_uri=None if scheme is None else url.partition("#")[0],
    )
