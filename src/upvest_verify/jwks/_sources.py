"""What a key source returns, the static source, and the one JWKS loader.

:class:`FetchResult` carries a document and the lifetime its HTTP cache headers
grant (RFC 9111, parsed here; the cache clamps it, see ``_policy``).

:func:`load_jwks` is the only place that tells JWKS text from a file path; the
static source, the CLI and the adapters' settings all go through its rule:

* a ``Mapping`` is serialised to JSON;
* ``bytes`` are the document;
* a ``str`` whose first non-whitespace character is ``{`` is JSON text;
* any other ``str``, or a path-like, names a file (read up to ``max_bytes``).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from upvest_verify.errors import ConfigurationError, JWKSError

if TYPE_CHECKING:
    from pathlib import Path

__all__ = [
    "FetchResult",
    "StaticKeySource",
    "freshness_lifetime",
    "load_jwks",
    "parse_cache_control",
]

# RFC 9111 §1.2.2: a delta-seconds too large to represent counts as 2^31.
_RFC9111_MAX_DELTA = 2147483648

# RFC 9111 §5.2 (Cache-Control) with RFC 9110 §5.6.2 tokens and §5.6.4 quoted strings:
#   Cache-Control   = #cache-directive
#   cache-directive = token [ "=" ( token / quoted-string ) ]
_DIRECTIVE = re.compile(
    r"""[ \t]*([!#$%&'*+.^_`|~0-9A-Za-z-]+)[ \t]*"""
    r"""(?:=[ \t]*(?:([!#$%&'*+.^_`|~0-9A-Za-z-]+)|"((?:[^"\\]|\\.)*)"))?[ \t]*(?:,|$)"""
)
# RFC 9111 §1.2.2: delta-seconds = 1*DIGIT
_DELTA_SECONDS = re.compile(r"[0-9]+")


# ---- how long a response may be cached (RFC 9111) -------------------------------------------


def _delta_seconds(value: str | None) -> int | None:
    """Parse RFC 9111 §1.2.2 ``delta-seconds``; ``None`` when absent or invalid."""
    if value is None or not _DELTA_SECONDS.fullmatch(value.strip()):
        return None
    return min(int(value.strip()), _RFC9111_MAX_DELTA)


def parse_cache_control(cache_control: str) -> float | None:
    """Return the freshness lifetime a ``Cache-Control`` value grants, if it states one.

    Lenient but safe: a malformed directive is skipped up to the next comma;
    ``no-store``/``no-cache`` mean 0 (RFC 9111 §5.2.2.4, §5.2.2.5: a key cache cannot
    revalidate per request, so "as short as allowed"); of several ``max-age``
    directives the first valid one counts (RFC 9111 §4.2.1).

    Args:
        cache_control: The field value (several field lines joined with ``", "``).

    Returns:
        Seconds, or ``None`` when the value states no lifetime.
    """
    max_age: float | None = None
    pos = 0
    while pos < len(cache_control):
        match = _DIRECTIVE.match(cache_control, pos)
        if match is None or match.end() == pos:
            comma = cache_control.find(",", pos)
            if comma < 0:
                break
            pos = comma + 1
            continue
        pos = match.end()
        name = match.group(1).lower()
        value = match.group(2) if match.group(2) is not None else match.group(3)
        if name in ("no-store", "no-cache"):
            return 0.0
        if name == "max-age" and max_age is None:
            seconds = _delta_seconds(value)
            if seconds is not None:
                max_age = float(seconds)
    return max_age


def freshness_lifetime(cache_control: str | None, age: str | None) -> float | None:
    """The lifetime left for a response: ``Cache-Control`` ``max-age`` minus ``Age``.

    RFC 9111 §5.2.2.1 (``max-age``) and §4.2.3 (the response's current ``Age``);
    the result never goes below 0. An invalid ``Age`` is ignored.

    Args:
        cache_control: The ``Cache-Control`` field value, or ``None``.
        age: The ``Age`` field value, or ``None``.

    Returns:
        Seconds, or ``None`` when the response states no lifetime.
    """
    max_age = parse_cache_control(cache_control) if cache_control else None
    if max_age is not None:
        current_age = _delta_seconds(age)
        if current_age is not None:
            max_age = max(0.0, max_age - current_age)
    return max_age


@dataclass(frozen=True, slots=True)
class FetchResult:
    """One fetched JWKS document and how long it may be cached.

    Attributes:
        body: The raw JWKS document (JSON bytes).
        max_age: Freshness lifetime in seconds from the response's cache headers, or
            ``None`` when the response states none (the cache then uses its ``ttl``).
            The cache clamps it to ``[min_ttl, max_ttl]``.
    """

    body: bytes
    max_age: float | None = None

    @classmethod
    def from_http(
        cls, body: bytes, *, cache_control: str | None = None, age: str | None = None
    ) -> FetchResult:
        """Build a result from an HTTP response body and its cache headers.

        ``max-age`` comes from ``Cache-Control`` (RFC 9111 §5.2.2.1), minus the
        response's ``Age`` (RFC 9111 §4.2.3); ``no-store``/``no-cache`` count as 0.

        Args:
            body: The response body.
            cache_control: The ``Cache-Control`` field value (several lines joined
                with ``", "``), or ``None``.
            age: The ``Age`` field value, or ``None``.

        Returns:
            The fetch result.
        """
        return cls(body=bytes(body), max_age=freshness_lifetime(cache_control, age))


def _file_of(source: object) -> Path | None:
    """The file ``source`` names under the rule in the module docstring, else ``None``."""
    from pathlib import Path  # lazily: only file-based key sets need it

    if isinstance(source, (Mapping, bytes, bytearray, memoryview)):
        return None
    if isinstance(source, str):
        return None if source.lstrip()[:1] == "{" else Path(source)
    if isinstance(source, os.PathLike):
        return Path(os.fsdecode(source))
    raise ConfigurationError(
        f"JWKS must be a mapping, JSON text or bytes, or a file path, got {type(source).__name__}"
    )


def _read_file(path: Path, max_bytes: int) -> bytes:
    """Read at most ``max_bytes`` of ``path``; raises ``OSError`` or :class:`JWKSError`."""
    with path.open("rb") as f:
        body = f.read(max_bytes + 1)
    if len(body) > max_bytes:
        raise JWKSError(f"JWKS file larger than {max_bytes} bytes: {path}")
    return body


def load_jwks(
    source: Mapping[str, Any] | str | bytes | os.PathLike[str], *, max_bytes: int = 65536
) -> bytes:
    """Return a configured JWKS as JSON bytes.

    One rule tells text from a path: a ``Mapping`` is serialised, ``bytes`` are the
    document, a ``str`` whose first non-whitespace character is ``{`` is JSON text,
    and any other ``str`` or path-like is a file path, read up to ``max_bytes``.
    The JSON is checked to parse; whether it is a usable JWKS is
    :meth:`~upvest_verify.KeySet.from_jwks`'s business. Text, bytes and files come
    back byte for byte as given (a repeated member name stays visible).

    Args:
        source: The JWKS mapping, JSON text or bytes, or a file path.
        max_bytes: Largest file accepted.

    Returns:
        The JWKS document.

    Raises:
        ConfigurationError: The mapping is not JSON-serialisable, the text, bytes or
            file is not JSON, the file is missing, unreadable or larger than
            ``max_bytes``, or ``source`` is of another type.
    """
    if max_bytes < 1:
        raise ConfigurationError(f"max_bytes must be positive, got {max_bytes!r}")
    path = _file_of(source)
    if path is not None:
        what = f"JWKS file {str(path)!r}"
        try:
            body = _read_file(path, max_bytes)
        except JWKSError as e:
            raise ConfigurationError(str(e)) from e
        except OSError as e:
            raise ConfigurationError(f"{what} cannot be read: {e}") from e
    elif isinstance(source, Mapping):
        try:
            return json.dumps(source, allow_nan=False).encode()
        except (TypeError, ValueError, RecursionError) as e:
            raise ConfigurationError(f"JWKS mapping is not JSON-serialisable: {e}") from e
    else:  # text or bytes: _file_of() sent every path-like above
        what = "JWKS text"
        body = source.encode() if isinstance(source, str) else bytes(cast("bytes", source))
    try:
        json.loads(body)
    except (ValueError, RecursionError) as e:
        raise ConfigurationError(f"{what} is not JSON: {e}") from e
    return body


class StaticKeySource:
    """A fixed key set: a mapping, JSON text, or a file read on every fetch.

    A file path lets deployment tooling rotate keys by replacing the file; the cache
    picks the new file up at its next refresh. What counts as a path follows
    :func:`load_jwks`.

    Args:
        jwks: A JWKS mapping, JSON text or bytes (a ``str`` starting with ``{``), or
            a path to a JSON file (``str`` or path-like).
        max_bytes: Largest document accepted from a file.

    Raises:
        ConfigurationError: The mapping is not JSON-serialisable, the text is not
            JSON, or the file does not exist.
    """

    __slots__ = ("_body", "_max_bytes", "_path")

    def __init__(
        self,
        jwks: Mapping[str, Any] | str | bytes | os.PathLike[str],
        *,
        max_bytes: int = 65536,
    ) -> None:
        self._max_bytes = max_bytes
        self._body: bytes | None = None
        self._path = _file_of(jwks)
        if self._path is None:
            self._body = load_jwks(jwks)  # max_bytes bounds files only
        elif not self._path.is_file():
            raise ConfigurationError(f"JWKS file not found: {self._path}")

    def fetch(self) -> FetchResult:
        """Return the key set (reading the file, if one was given).

        Returns:
            The document, without a cache lifetime.

        Raises:
            OSError: The file cannot be read.
            JWKSError: The file is larger than ``max_bytes``.
        """
        if self._body is not None:
            return FetchResult(self._body)
        assert self._path is not None
        return FetchResult(_read_file(self._path, self._max_bytes))

    async def afetch(self) -> FetchResult:
        """Like :meth:`fetch`; a file is read in a worker thread.

        Returns:
            The document, without a cache lifetime.
        """
        if self._body is not None:
            return FetchResult(self._body)
        import asyncio  # lazily: sync-only users never pay for asyncio

        return await asyncio.to_thread(self.fetch)

    def __repr__(self) -> str:
        what = str(self._path) if self._path is not None else f"{len(self._body or b'')} bytes"
        return f"StaticKeySource({what})"
