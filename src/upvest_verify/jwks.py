"""JWKS sources and a rotating key cache that never stalls a receiver.

Upvest serves its webhook keys at ``GET /auth/verify_keys`` and rotates them.
:class:`JWKSCache` sits in front of a :class:`KeySource` and hands the verifier
immutable :class:`~upvest_verify.KeySet` snapshots (threat-model.md §5, K1-K11):

* a cache hit is a lock-free read of the current snapshot; a refresh swaps in a
  new snapshot atomically;
* one fetch is in flight per cache, shared by threads *and* asyncio tasks of any
  event loop (a :class:`concurrent.futures.Future` is the rendezvous, so no
  asyncio primitive is bound to one loop);
* an unknown ``keyid`` triggers at most one refresh per ``refresh_cooldown``;
* a failed or garbage refresh keeps serving the last good set until
  ``max_stale`` has passed, then ``keys_unavailable`` (503);
* a key removed by a *successful* refresh is gone at once;
* an expired-but-usable snapshot is refreshed in the background, so a slow key
  endpoint never slows a request signed with a known key; only a cold cache (or
  one stale beyond ``max_stale``) waits for the fetch.

The policy is a handful of pure functions over an immutable ``_CacheState``
(``_plan_current``, ``_plan_refresh_for``, ``_effective_ttl``, ...), shared by one
synchronous and one asynchronous driver, after the shape of httpx's auth flows.

Example::

    cache = JWKSCache(URLKeySource("https://api.upvest.co/auth/verify_keys"))
    verifier = Verifier(cache)

Fetching from Upvest's real endpoint needs a signed, OAuth-authorised request;
the management client provides that source. :class:`URLKeySource` serves
unauthenticated JWKS URLs and tests, :class:`StaticKeySource` pinned or
file-based key sets.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import enum
import http.client
import ipaddress
import json
import logging
import math
import os
import re
import ssl
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import weakref
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from ._crypto import KEY_TYPES, MAX_KID_LENGTH
from ._keyset import KeySet
from .errors import ConfigurationError, JWKSError, KeySetUnavailable, Reason

if TYPE_CHECKING:
    from http.client import HTTPMessage

    from ._crypto import KeyType

__all__ = [
    "AsyncKeySource",
    "CacheStats",
    "FetchResult",
    "JWKSCache",
    "KeySource",
    "StaticKeySource",
    "URLKeySource",
]

logger = logging.getLogger("upvest_verify")

_USER_AGENT = "upvest-verify"
_NEGATIVE_CACHE_SIZE = 1024
_MAX_REDIRECTS = 3
_RFC9111_MAX_DELTA = 2147483648  # RFC 9111 §1.2.2: overflowing delta-seconds -> 2^31.


# --------------------------------------------------------------------------------------
# Fetch results and sources
# --------------------------------------------------------------------------------------

# RFC 9111 §5.2 (Cache-Control) with RFC 9110 §5.6.2 tokens and §5.6.4 quoted strings:
#   Cache-Control   = #cache-directive
#   cache-directive = token [ "=" ( token / quoted-string ) ]
_DIRECTIVE = re.compile(
    r"""[ \t]*([!#$%&'*+.^_`|~0-9A-Za-z-]+)[ \t]*"""
    r"""(?:=[ \t]*(?:([!#$%&'*+.^_`|~0-9A-Za-z-]+)|"((?:[^"\\]|\\.)*)"))?[ \t]*(?:,|$)"""
)
# RFC 9111 §1.2.2: delta-seconds = 1*DIGIT
_DELTA_SECONDS = re.compile(r"[0-9]+")


def _delta_seconds(value: str | None) -> int | None:
    """Parse RFC 9111 §1.2.2 ``delta-seconds``; ``None`` when absent or invalid."""
    if value is None or not _DELTA_SECONDS.fullmatch(value.strip()):
        return None
    return min(int(value.strip()), _RFC9111_MAX_DELTA)


def _parse_cache_control(cache_control: str) -> float | None:
    """Return the freshness lifetime a ``Cache-Control`` value grants, if it states one."""
    max_age: float | None = None
    pos = 0
    while pos < len(cache_control):
        match = _DIRECTIVE.match(cache_control, pos)
        if match is None or match.end() == pos:
            # Skip a malformed directive up to the next comma.
            comma = cache_control.find(",", pos)
            if comma < 0:
                break
            pos = comma + 1
            continue
        pos = match.end()
        name = match.group(1).lower()
        value = match.group(2) if match.group(2) is not None else match.group(3)
        if name in ("no-store", "no-cache"):
            # RFC 9111 §5.2.2.4/§5.2.2.5: do not reuse without revalidation. A key
            # cache cannot revalidate per request, so this means "as short as allowed".
            return 0.0
        if name == "max-age" and max_age is None:
            # RFC 9111 §4.2.1: with several max-age directives, use the first one.
            seconds = _delta_seconds(value)
            if seconds is not None:
                max_age = float(seconds)
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
        max_age = _parse_cache_control(cache_control) if cache_control else None
        if max_age is not None:
            current_age = _delta_seconds(age)
            if current_age is not None:
                max_age = max(0.0, max_age - current_age)
        return cls(body=bytes(body), max_age=max_age)


@runtime_checkable
class KeySource(Protocol):
    """Protocol: where a :class:`JWKSCache` gets the JWKS document from (blocking).

    ``fetch`` may raise any exception (``OSError`` for transport and HTTP errors,
    :class:`~upvest_verify.errors.JWKSError` for unusable content, by convention);
    the cache treats every exception as a failed fetch and keeps its last good keys.
    """

    def fetch(self) -> FetchResult:
        """Fetch the JWKS document, blocking the calling thread.

        Returns:
            The document and its cache lifetime.
        """
        ...


@runtime_checkable
class AsyncKeySource(KeySource, Protocol):
    """Protocol: a :class:`KeySource` that can also fetch without blocking an event loop.

    The cache's async methods use ``afetch`` when the source has it, and otherwise
    run ``fetch`` in a worker thread.
    """

    async def afetch(self) -> FetchResult:
        """Fetch the JWKS document without blocking the event loop.

        Returns:
            The document and its cache lifetime.
        """
        ...


class StaticKeySource:
    """A fixed key set: a mapping, JSON text, or a file read on every fetch.

    A file path lets deployment tooling rotate keys by replacing the file; the cache
    picks the new file up at its next refresh.

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
        self._path: Path | None = None
        if isinstance(jwks, Mapping):
            try:
                self._body = json.dumps(jwks).encode()
            except (TypeError, ValueError) as e:
                raise ConfigurationError(f"JWKS mapping is not JSON: {e}") from e
        elif isinstance(jwks, bytes) or (isinstance(jwks, str) and jwks.lstrip()[:1] == "{"):
            body = jwks.encode() if isinstance(jwks, str) else bytes(jwks)
            try:
                json.loads(body)
            except ValueError as e:
                raise ConfigurationError(f"JWKS text is not JSON: {e}") from e
            self._body = body
        else:
            path = Path(jwks)
            if not path.is_file():
                raise ConfigurationError(f"JWKS file not found: {path}")
            self._path = path

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
        with self._path.open("rb") as f:
            body = f.read(self._max_bytes + 1)
        if len(body) > self._max_bytes:
            raise JWKSError(f"JWKS file larger than {self._max_bytes} bytes: {self._path}")
        return FetchResult(body)

    async def afetch(self) -> FetchResult:
        """Like :meth:`fetch`; a file is read in a worker thread.

        Returns:
            The document, without a cache lifetime.
        """
        if self._body is not None:
            return FetchResult(self._body)
        return await asyncio.to_thread(self.fetch)

    def __repr__(self) -> str:
        what = str(self._path) if self._path is not None else f"{len(self._body or b'')} bytes"
        return f"StaticKeySource({what})"


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urllib.parse.urlsplit(url)
    port = parts.port or {"https": 443, "http": 80}.get(parts.scheme)
    return (parts.scheme.lower(), (parts.hostname or "").lower(), port)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class _SameOriginRedirectHandler(urllib.request.HTTPRedirectHandler):
    """Follow a redirect only to the same scheme, host and port (K1, F11)."""

    max_redirections = _MAX_REDIRECTS

    def redirect_request(
        self,
        req: urllib.request.Request,
        fp: Any,
        code: int,
        msg: str,
        headers: HTTPMessage,
        newurl: str,
    ) -> urllib.request.Request | None:
        target = urllib.parse.urljoin(req.full_url, newurl)
        if _origin(target) != _origin(req.full_url):
            fp.close()
            raise OSError(f"JWKS redirect to another origin refused: HTTP {code} -> {target}")
        return super().redirect_request(req, fp, code, msg, headers, target)


class URLKeySource:
    """Fetch a JWKS document over HTTPS (stdlib ``urllib``; ``httpx`` for async if installed).

    * HTTPS only, TLS verification always on (K1). Plain HTTP is allowed only to a
      loopback address, and only with ``allow_insecure_loopback=True`` (tests).
    * Redirects are followed only within the same scheme, host and port.
    * The body is read as a stream and abandoned past ``max_bytes`` (F7).
    * ``timeout`` bounds connecting and each read; the fetch is also abandoned once
      ``timeout`` seconds have passed in total (checked between reads), so a fetch
      takes at most about twice ``timeout``. The async fetch enforces the total
      ``timeout`` exactly.
    * :meth:`afetch` never blocks the event loop: it uses ``httpx.AsyncClient`` when
      httpx is importable, else runs :meth:`fetch` in a worker thread. httpx is
      imported lazily, inside :meth:`afetch`. A fresh client per fetch (once per
      TTL) means no connection pool is bound to an event loop or survives a fork.

    Args:
        url: The JWKS URL, e.g. ``https://api.upvest.co/auth/verify_keys``.
        timeout: Seconds; see above.
        max_bytes: Largest document accepted.
        allow_insecure_loopback: Permit ``http://`` to ``127.0.0.0/8``, ``::1`` or
            ``localhost`` (for tests); environment proxies are then bypassed.
        ssl_context: A TLS context with extra trust anchors (it must verify
            certificates and host names). Default: the system trust store.

    Raises:
        ConfigurationError: The URL is not HTTPS (or allowed loopback HTTP), has no
            host, carries credentials, or the TLS context does not verify.
    """

    __slots__ = ("_loopback", "_max_bytes", "_ssl_context", "_timeout", "_url")

    def __init__(
        self,
        url: str,
        *,
        timeout: float = 5.0,
        max_bytes: int = 65536,
        allow_insecure_loopback: bool = False,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        try:
            parts = urllib.parse.urlsplit(url)
            _ = parts.port  # raises ValueError for a bad port
        except ValueError as e:
            raise ConfigurationError(f"invalid JWKS URL {url!r}: {e}") from e
        scheme = parts.scheme.lower()
        host = (parts.hostname or "").lower()
        if not host:
            raise ConfigurationError(f"JWKS URL has no host: {url!r}")
        if parts.username is not None or parts.password is not None:
            raise ConfigurationError("JWKS URL must not carry credentials")
        loopback = _is_loopback(host)
        if scheme != "https" and not (scheme == "http" and allow_insecure_loopback and loopback):
            raise ConfigurationError(
                f"JWKS URL must be https:// (plain http only to loopback with "
                f"allow_insecure_loopback=True): {url!r}"
            )
        if not (timeout > 0 and math.isfinite(timeout)):
            raise ConfigurationError(f"timeout must be a positive number, got {timeout!r}")
        if max_bytes < 1:
            raise ConfigurationError(f"max_bytes must be positive, got {max_bytes!r}")
        if ssl_context is not None and not (
            ssl_context.verify_mode == ssl.CERT_REQUIRED and ssl_context.check_hostname
        ):
            raise ConfigurationError("ssl_context must verify certificates and host names")
        self._url = urllib.parse.urlunsplit(parts._replace(fragment=""))
        self._timeout = float(timeout)
        self._max_bytes = max_bytes
        self._loopback = loopback and scheme == "http"
        self._ssl_context = ssl_context

    @property
    def url(self) -> str:
        """The JWKS URL."""
        return self._url

    def _context(self) -> ssl.SSLContext:
        if self._ssl_context is None:
            # Created once: loading the trust store costs milliseconds.
            self._ssl_context = ssl.create_default_context()
        return self._ssl_context

    def _opener(self) -> urllib.request.OpenerDirector:
        # Only the handlers we need: no file:, ftp: or data: (K1). Built per fetch
        # (once per TTL), so nothing is shared across threads or a fork.
        opener = urllib.request.OpenerDirector()
        handlers: list[urllib.request.BaseHandler] = [
            urllib.request.ProxyHandler({} if self._loopback else None),
            urllib.request.HTTPSHandler(context=self._context()),
            _SameOriginRedirectHandler(),
            urllib.request.HTTPDefaultErrorHandler(),
            urllib.request.HTTPErrorProcessor(),
        ]
        if self._loopback:
            handlers.append(urllib.request.HTTPHandler())
        for handler in handlers:
            opener.add_handler(handler)
        return opener

    def _headers(self) -> dict[str, str]:
        return {
            "Accept": "application/json",
            "Accept-Encoding": "identity",
            "User-Agent": _USER_AGENT,
        }

    def _check_length(self, content_length: str | None) -> None:
        if (
            content_length is not None
            and content_length.strip().isdigit()
            and int(content_length) > self._max_bytes
        ):
            raise JWKSError(
                f"JWKS response declares {int(content_length)} bytes, "
                f"more than max_bytes={self._max_bytes}"
            )

    def _timed_out(self) -> TimeoutError:
        return TimeoutError(f"JWKS fetch from {self._url} timed out after {self._timeout} s")

    def _too_large(self) -> JWKSError:
        return JWKSError(f"JWKS response larger than max_bytes={self._max_bytes}")

    def fetch(self) -> FetchResult:
        """Fetch the JWKS with ``urllib``, blocking the calling thread.

        Returns:
            The body and its ``Cache-Control``/``Age`` lifetime.

        Raises:
            OSError: Connection, TLS, timeout, redirect or HTTP status error.
            JWKSError: The body is larger than ``max_bytes``.
        """
        deadline = time.monotonic() + self._timeout
        # The scheme was checked at construction (https, or http to loopback), and
        # the opener has no file:/ftp:/data: handlers.
        request = urllib.request.Request(  # noqa: S310
            self._url, headers=self._headers(), method="GET"
        )
        try:
            with self._opener().open(request, timeout=self._timeout) as response:
                if response.status != 200:
                    raise OSError(f"JWKS fetch from {self._url}: HTTP {response.status}")
                self._check_length(response.headers.get("Content-Length"))
                body = bytearray()
                while True:
                    if time.monotonic() > deadline:
                        raise self._timed_out()
                    chunk = response.read1(min(65536, self._max_bytes + 1 - len(body)))
                    if not chunk:
                        break
                    body += chunk
                    if len(body) > self._max_bytes:
                        raise self._too_large()
                cache_control = ", ".join(response.headers.get_all("Cache-Control") or [])
                age = response.headers.get("Age")
        except urllib.error.HTTPError as e:
            e.close()
            if 300 <= e.code < 400:
                raise OSError(
                    f"JWKS fetch from {self._url}: too many redirects "
                    f"or no Location (HTTP {e.code})"
                ) from e
            raise OSError(f"JWKS fetch from {self._url}: HTTP {e.code}") from e
        except urllib.error.URLError as e:
            if isinstance(e.reason, TimeoutError):
                raise self._timed_out() from e
            raise OSError(f"JWKS fetch from {self._url} failed: {e.reason}") from e
        except TimeoutError as e:
            raise self._timed_out() from e
        except http.client.HTTPException as e:
            raise OSError(f"JWKS fetch from {self._url} failed: {e!r}") from e
        return FetchResult.from_http(bytes(body), cache_control=cache_control or None, age=age)

    async def afetch(self) -> FetchResult:
        """Fetch the JWKS without blocking the event loop (asyncio).

        Uses ``httpx.AsyncClient`` when httpx is importable, else :meth:`fetch` in a
        worker thread (:func:`asyncio.to_thread`).

        Returns:
            The body and its ``Cache-Control``/``Age`` lifetime.

        Raises:
            OSError: Connection, TLS, timeout, redirect or HTTP status error.
            JWKSError: The body is larger than ``max_bytes``.
        """
        try:
            import httpx  # noqa: F401 - lazily: httpx is an optional dependency
        except ImportError:
            return await asyncio.to_thread(self.fetch)
        try:
            return await asyncio.wait_for(self._afetch_httpx(), timeout=self._timeout)
        except asyncio.TimeoutError as e:
            raise self._timed_out() from e

    async def _afetch_httpx(self) -> FetchResult:
        import httpx

        url = self._url
        try:
            async with httpx.AsyncClient(
                verify=self._context(),
                timeout=httpx.Timeout(self._timeout),
                follow_redirects=False,
                trust_env=not self._loopback,
                headers=self._headers(),
            ) as client:
                for _ in range(_MAX_REDIRECTS + 1):
                    async with client.stream("GET", url) as response:
                        if response.is_redirect:
                            target = urllib.parse.urljoin(url, response.headers["location"])
                            if _origin(target) != _origin(url):
                                raise OSError(
                                    f"JWKS redirect to another origin refused: "
                                    f"HTTP {response.status_code} -> {target}"
                                )
                            url = target
                            continue
                        if response.status_code != 200:
                            raise OSError(f"JWKS fetch from {url}: HTTP {response.status_code}")
                        self._check_length(response.headers.get("content-length"))
                        body = bytearray()
                        async for chunk in response.aiter_bytes():
                            body += chunk
                            if len(body) > self._max_bytes:
                                raise self._too_large()
                        return FetchResult.from_http(
                            bytes(body),
                            cache_control=", ".join(response.headers.get_list("cache-control"))
                            or None,
                            age=response.headers.get("age"),
                        )
        except httpx.HTTPError as e:
            raise OSError(f"JWKS fetch from {url} failed: {e!r}") from e
        raise OSError(f"JWKS fetch from {self._url}: too many redirects")

    def __repr__(self) -> str:
        return f"URLKeySource({self._url!r})"


# --------------------------------------------------------------------------------------
# Cache policy: pure functions over an immutable state
# --------------------------------------------------------------------------------------

_NEVER = -math.inf


@dataclass(frozen=True, slots=True)
class _CachePolicy:
    ttl: float
    min_ttl: float
    max_ttl: float
    max_stale: float
    refresh_cooldown: float
    failure_cooldown: float


@dataclass(frozen=True, slots=True)
class _CacheState:
    """Everything the policy looks at; replaced as a whole, never mutated.

    Times are on the cache's monotonic clock.
    """

    keys: KeySet | None = None
    fetched_at: float = _NEVER  # start of the fetch that produced ``keys``
    expires_at: float = _NEVER  # fetched_at + effective TTL; -inf while cold
    last_attempt: float = _NEVER  # start of the latest fetch, successful or not
    last_failure: float = _NEVER  # end of the latest failed fetch since the last success
    error: str = ""  # why the latest fetch failed, for KeySetUnavailable


class _Action(enum.Enum):
    SERVE = "serve"  # return the snapshot as is
    SERVE_AND_REFRESH = "serve and refresh"  # return the stale snapshot, refresh detached
    FETCH = "fetch"  # start a fetch and wait for it
    JOIN = "join"  # wait for the fetch in flight
    UNAVAILABLE = "unavailable"  # raise keys_unavailable
    REFUSE = "refuse"  # refresh-on-miss refused (cooldown)


def _effective_ttl(max_age: float | None, policy: _CachePolicy) -> float:
    """The TTL for a fetch: its ``max-age`` clamped to [min_ttl, max_ttl], else ``ttl`` (K4)."""
    if max_age is None or math.isnan(max_age):
        return policy.ttl
    return min(max(max_age, policy.min_ttl), policy.max_ttl)


def _is_fresh(state: _CacheState, now: float) -> bool:
    """Keys exist and their TTL has not run out."""
    return state.keys is not None and now < state.expires_at


def _is_usable(state: _CacheState, now: float, policy: _CachePolicy) -> bool:
    """Keys exist and are at most ``max_stale`` past their TTL (K5)."""
    return state.keys is not None and now < state.expires_at + policy.max_stale


def _may_fetch_expired(state: _CacheState, now: float, policy: _CachePolicy) -> bool:
    """A cold or expired cache may fetch unless a failure is younger than the cooldown (K6)."""
    return now >= state.last_failure + policy.failure_cooldown


def _may_fetch_for_kid(state: _CacheState, now: float, policy: _CachePolicy) -> bool:
    """An unknown kid may trigger a fetch once per ``refresh_cooldown``.

    Every attempt counts, failed ones too (K4), and so does a failure cooldown.
    """
    return (
        now >= state.last_attempt + policy.refresh_cooldown
        and now >= state.last_failure + policy.failure_cooldown
    )


def _knows(keys: KeySet | None, kid: str) -> bool:
    """The snapshot has an answer for ``kid`` (a key, or a reason it is unusable)."""
    return keys is not None and (kid in keys or kid in keys.rejected)


def _plan_current(state: _CacheState, now: float, policy: _CachePolicy, in_flight: bool) -> _Action:
    """Decide what :meth:`JWKSCache.current` does."""
    if _is_fresh(state, now):
        return _Action.SERVE
    if _is_usable(state, now, policy):
        # Stale but usable: never make this request wait for the key endpoint.
        if in_flight or not _may_fetch_expired(state, now, policy):
            return _Action.SERVE
        return _Action.SERVE_AND_REFRESH
    if in_flight:
        return _Action.JOIN
    if _may_fetch_expired(state, now, policy):
        return _Action.FETCH
    return _Action.UNAVAILABLE


def _plan_refresh_for(
    state: _CacheState, kid: str, now: float, policy: _CachePolicy, in_flight: bool
) -> _Action:
    """Decide what :meth:`JWKSCache.refresh_for` does for an unknown ``kid``."""
    if _knows(state.keys, kid):
        return _Action.SERVE  # another request's refresh already brought it in
    if len(kid) > MAX_KID_LENGTH:
        return _Action.REFUSE  # no usable key has such a kid (K2): never fetch for it
    if in_flight:
        return _Action.JOIN
    if _may_fetch_for_kid(state, now, policy):
        return _Action.FETCH
    return _Action.REFUSE


def _plan_refresh(state: _CacheState, in_flight: bool) -> _Action:
    """Decide what an explicit :meth:`JWKSCache.refresh` does: always fetch or join."""
    return _Action.JOIN if in_flight else _Action.FETCH


def _background_delay(state: _CacheState, now: float, policy: _CachePolicy) -> float:
    """Seconds until the background refresher should fetch (<= 0: now).

    It refreshes at 80% of the TTL, so the snapshot normally never expires, and
    waits out the failure cooldown after a failed attempt.
    """
    if state.keys is None:
        due = _NEVER
    else:
        due = state.fetched_at + 0.8 * (state.expires_at - state.fetched_at)
    due = max(due, state.last_failure + policy.failure_cooldown)
    return due - now


# --------------------------------------------------------------------------------------
# Drivers
# --------------------------------------------------------------------------------------


class CacheStats:
    """Counters of a :class:`JWKSCache` (thread-safe increments).

    Attributes:
        fetches: Fetch attempts started.
        failures: Fetch attempts that failed (transport, HTTP status, garbage,
            oversized or no usable key).
        stale_serves: Key sets handed out after their TTL (during a refresh or an
            outage, up to ``max_stale``).
        unknown_kid_refusals: Refresh-on-miss requests refused by the cooldown or the
            negative cache.
    """

    __slots__ = ("_lock", "failures", "fetches", "stale_serves", "unknown_kid_refusals")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.fetches = 0
        self.failures = 0
        self.stale_serves = 0
        self.unknown_kid_refusals = 0

    def _add(self, name: str) -> None:
        with self._lock:
            setattr(self, name, getattr(self, name) + 1)

    def as_dict(self) -> dict[str, int]:
        """Return the counters as a dict (for metrics exporters).

        Returns:
            ``{"fetches": ..., "failures": ..., "stale_serves": ...,
            "unknown_kid_refusals": ...}``.
        """
        with self._lock:
            return {
                "fetches": self.fetches,
                "failures": self.failures,
                "stale_serves": self.stale_serves,
                "unknown_kid_refusals": self.unknown_kid_refusals,
            }

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={v}" for k, v in self.as_dict().items())
        return f"CacheStats({fields})"


@dataclass(slots=True, eq=False)
class _Flight:
    """The one fetch in flight; ``future`` is the rendezvous for threads and tasks."""

    started: float
    reason: str
    future: concurrent.futures.Future[KeySet | None]
    loop: asyncio.AbstractEventLoop | None = None  # set when an asyncio task runs it
    task: asyncio.Task[None] | None = None  # strong reference to that task


_Loaded = tuple[KeySet, float]
"""A parsed fetch: the snapshot and its effective TTL."""


# Caches to re-initialise in a forked child (F15). One at-fork hook for all.
_INSTANCES: weakref.WeakSet[JWKSCache] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for cache in list(_INSTANCES):
        cache._after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


class JWKSCache:
    """A rotating JWKS cache; implements ``KeyProvider`` and ``AsyncKeyProvider``.

    Pass it to :class:`~upvest_verify.Verifier`. Synchronous code calls
    :meth:`current`/:meth:`refresh_for`, asyncio code :meth:`acurrent`/
    :meth:`arefresh_for`; both share one snapshot and one fetch in flight.

    * A hit is a lock-free read. When the TTL has run out, the stale snapshot is
      still returned at once and one refresh runs detached (a daemon thread, or a
      task on the caller's event loop). Only a cold cache, or one stale beyond
      ``max_stale``, waits for the fetch (single-flight: all waiters share it).
    * An unknown ``kid`` refreshes at most once per ``refresh_cooldown``; the
      other misses get ``None`` from :meth:`refresh_for` (the verifier then
      rejects with ``unknown_key``). Kids that a refresh did not bring in are
      remembered (negative cache) for the cooldown.
    * A failed, garbage, oversized or key-less response keeps the last good set
      until ``max_stale`` past its TTL, then :class:`KeySetUnavailable`
      (``keys_unavailable``, 503). After a failure, no fetch for ``failure_cooldown``.
    * A successful fetch replaces the set: removed keys are gone at once.
    * ``Cache-Control: max-age`` sets the TTL, clamped to ``[min_ttl, max_ttl]``.
    * With ``background_refresh=True`` a refresher (a daemon thread when first used
      from sync code, a task on the event loop when first used from async code)
      fetches at 80% of the TTL. Stop it with :meth:`close` or :meth:`aclose` (or
      use the cache as a context manager); it also ends with its event loop.
    * Every fetch is logged on the ``upvest_verify`` logger and counted in
      :attr:`stats`. Locks and in-flight state are re-created in a forked child.

    Args:
        source: Where the JWKS comes from.
        ttl: Seconds a fetched set is fresh when the response states no ``max-age``.
        refresh_cooldown: Minimum seconds between refreshes caused by unknown kids
            (and after any fetch attempt). Must be positive.
        max_stale: Seconds past the TTL a set is still served while refreshes fail
            (0: strict).
        min_ttl: Lower clamp for ``max-age``.
        max_ttl: Upper clamp for ``max-age``.
        failure_cooldown: Seconds without a fetch after a failed one. Must be positive.
        key_types: Key types imported from the JWKS (Upvest: ``P-521`` only).
        background_refresh: Refresh ahead of expiry even without traffic.
        wait_timeout: Longest a caller waits for a fetch in flight started by someone
            else (cold start, :meth:`refresh_for`).
        monotonic: The clock for TTLs and cooldowns (K11); inject one in tests.

    Raises:
        ConfigurationError: A setting is out of range, e.g. ``refresh_cooldown <= 0``
            (refresh on an unknown kid without a limit), or the source has no
            ``fetch`` method.
    """

    # Seconds between checks of the background refresher (its longest sleep).
    _BACKGROUND_TICK = 1.0

    def __init__(
        self,
        source: KeySource,
        *,
        ttl: float = 300,
        refresh_cooldown: float = 30,
        max_stale: float = 86400,
        min_ttl: float = 60,
        max_ttl: float = 3600,
        failure_cooldown: float = 10,
        key_types: Iterable[KeyType] = ("P-521",),
        background_refresh: bool = False,
        wait_timeout: float = 30,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if not callable(getattr(source, "fetch", None)):
            raise ConfigurationError(f"source must have a fetch() method: {source!r}")
        numbers = {
            "ttl": ttl,
            "refresh_cooldown": refresh_cooldown,
            "max_stale": max_stale,
            "min_ttl": min_ttl,
            "max_ttl": max_ttl,
            "failure_cooldown": failure_cooldown,
            "wait_timeout": wait_timeout,
        }
        for name, value in numbers.items():
            if not isinstance(value, (int, float)) or math.isnan(value) or value < 0:
                raise ConfigurationError(f"{name} must be a number >= 0, got {value!r}")
        if refresh_cooldown <= 0 or math.isinf(refresh_cooldown):
            raise ConfigurationError(
                "refresh_cooldown must be a positive, finite number of seconds: "
                "refreshing on unknown kids without a limit lets forged keyids "
                "flood the key endpoint"
            )
        if failure_cooldown <= 0 or math.isinf(failure_cooldown):
            # Infinite would turn one failed fetch into a permanent outage (K5, K6).
            raise ConfigurationError("failure_cooldown must be a positive, finite number (K6)")
        if not 0 < min_ttl <= ttl <= max_ttl or math.isinf(max_ttl):
            raise ConfigurationError(
                f"need 0 < min_ttl <= ttl <= max_ttl < inf, got "
                f"min_ttl={min_ttl}, ttl={ttl}, max_ttl={max_ttl}"
            )
        if wait_timeout <= 0:
            raise ConfigurationError("wait_timeout must be positive")
        if isinstance(key_types, str):
            raise ConfigurationError(f"key_types must be a collection, not {key_types!r}")
        self._key_types: tuple[KeyType, ...] = tuple(key_types)
        if not self._key_types or not set(self._key_types) <= KEY_TYPES:
            raise ConfigurationError(
                f"key_types must be a non-empty subset of {sorted(KEY_TYPES)}, "
                f"got {self._key_types!r}"
            )
        self._source = source
        self._policy = _CachePolicy(
            ttl=float(ttl),
            min_ttl=float(min_ttl),
            max_ttl=float(max_ttl),
            max_stale=float(max_stale),
            refresh_cooldown=float(refresh_cooldown),
            failure_cooldown=float(failure_cooldown),
        )
        self._wait_timeout = float(wait_timeout)
        self._monotonic = monotonic
        self._background = background_refresh
        self.stats = CacheStats()
        """Fetch and serve counters (:class:`CacheStats`)."""
        self._state = _CacheState()
        self._lock = threading.Lock()  # guards _flight, _worker and state transitions
        self._flight: _Flight | None = None
        self._negative: dict[str, float] = {}  # unknown kid -> monotonic time it expires
        self._closed = False
        self._worker: threading.Thread | asyncio.Task[None] | None = None
        self._worker_stop: threading.Event | None = None
        self._worker_wanted = background_refresh  # checked on the hit path
        _INSTANCES.add(self)

    def __repr__(self) -> str:
        keys = self._state.keys
        kids = sorted(keys) if keys is not None else None
        return f"JWKSCache({self._source!r}, kids={kids!r})"

    # ---- KeyProvider (sync) ----------------------------------------------------------

    def _fresh_hit(self) -> KeySet | None:
        # The lock-free hit shared by current() and acurrent(): one read of the
        # snapshot, no lock, no await.
        state = self._state
        if (
            state.keys is not None
            and self._monotonic() < state.expires_at
            and not self._worker_wanted
        ):
            return state.keys
        return None

    def current(self) -> KeySet:
        """Return the current key set, refreshing when the TTL ran out.

        Lock-free on a hit. Expired but within ``max_stale``: the stale set is
        returned at once and a refresh runs in a daemon thread. Cold, or stale
        beyond ``max_stale``: waits for the (single) fetch.

        Returns:
            The key-set snapshot.

        Raises:
            KeySetUnavailable: No key set fresh enough (``keys_unavailable``).
        """
        hit = self._fresh_hit()
        if hit is not None:
            return hit
        if self._worker_wanted:
            self._start_worker_thread()
        with self._lock:
            state, now = self._state, self._monotonic()
            action = _plan_current(state, now, self._policy, self._in_flight())
            flight = self._begin(now, "cold start" if state.keys is None else "expired", action)
        if action is _Action.SERVE_AND_REFRESH:
            assert flight is not None
            self._run_detached(flight)
        elif action is _Action.FETCH:
            assert flight is not None
            self._run_flight(flight)
        elif action is _Action.UNAVAILABLE:
            raise self._unavailable(state)
        if action is _Action.SERVE or action is _Action.SERVE_AND_REFRESH:
            return self._serve(state, now)
        assert flight is not None
        return self._after_wait(self._wait(flight))

    def refresh_for(self, kid: str) -> KeySet | None:
        """Refresh because ``kid`` is not in the current set, rate-limited.

        Returns at once with the current set when it already knows ``kid``
        (another request's refresh brought it in). Otherwise joins the fetch in
        flight or starts one, at most once per ``refresh_cooldown``.

        Args:
            kid: The unknown ``keyid``.

        Returns:
            The new snapshot (whether or not it has ``kid``), or ``None`` when the
            refresh was refused by the cooldown/negative cache or failed.
        """
        state = self._state
        if _knows(state.keys, kid):
            return state.keys
        if self._refused_fast(kid):
            return None
        if self._worker_wanted:
            self._start_worker_thread()
        with self._lock:
            state, now = self._state, self._monotonic()
            action = _plan_refresh_for(state, kid, now, self._policy, self._in_flight())
            flight = self._begin(now, "unknown kid", action)
        if action is _Action.SERVE:
            return state.keys
        if action is _Action.REFUSE:
            self._refuse(kid, state)
            return None
        assert flight is not None
        if action is _Action.FETCH:
            self._run_flight(flight)
        return self._after_refresh_for(kid, flight, self._wait(flight))

    def refresh(self) -> KeySet:
        """Fetch now (or join the fetch in flight), ignoring TTL and cooldowns.

        Meant for warming the cache at start-up and for operators; requests use
        :meth:`current` and :meth:`refresh_for`.

        Returns:
            The newly fetched key set.

        Raises:
            KeySetUnavailable: The fetch failed (the cache keeps its last good set).
        """
        with self._lock:
            now = self._monotonic()
            action = _plan_refresh(self._state, self._in_flight())
            flight = self._begin(now, "explicit refresh", action)
        assert flight is not None
        if action is _Action.FETCH:
            self._run_flight(flight)
        keys = self._wait(flight)
        if keys is None:
            raise self._unavailable(self._state)
        return keys

    def close(self, timeout: float = 5.0) -> None:
        """Stop the background refresher, if any. The cache keeps working on demand.

        Args:
            timeout: Seconds to wait for the refresher thread to end (it may be in
                the middle of a fetch; it is a daemon thread either way).
        """
        worker = self._stop_worker()
        if isinstance(worker, threading.Thread) and worker is not threading.current_thread():
            worker.join(timeout)

    def _stop_worker(self) -> threading.Thread | asyncio.Task[None] | None:
        """Signal the refresher to stop, without waiting; return it."""
        with self._lock:
            self._closed = True
            self._worker_wanted = False
            worker, stop = self._worker, self._worker_stop
            self._worker, self._worker_stop = None, None
        if stop is not None:
            stop.set()
        if isinstance(worker, asyncio.Task) and not worker.done():
            loop = worker.get_loop()
            if loop is _running_loop():
                worker.cancel()
            elif not loop.is_closed():
                with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                    loop.call_soon_threadsafe(worker.cancel)
        return worker

    def __enter__(self) -> JWKSCache:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # ---- AsyncKeyProvider ------------------------------------------------------------

    async def acurrent(self) -> KeySet:
        """Like :meth:`current`, without blocking the event loop.

        A detached refresh runs as a task on the running loop; waiting callers
        await the shared fetch (any loop, any thread may be running it).

        Returns:
            The key-set snapshot.

        Raises:
            KeySetUnavailable: No key set fresh enough (``keys_unavailable``).
        """
        hit = self._fresh_hit()
        if hit is not None:
            return hit
        if self._worker_wanted:
            self._start_worker_task()
        loop = asyncio.get_running_loop()
        with self._lock:
            state, now = self._state, self._monotonic()
            action = _plan_current(state, now, self._policy, self._in_flight())
            flight = self._begin(
                now, "cold start" if state.keys is None else "expired", action, loop
            )
        if action is _Action.SERVE_AND_REFRESH or action is _Action.FETCH:
            assert flight is not None
            self._spawn_task(flight, loop)
        elif action is _Action.UNAVAILABLE:
            raise self._unavailable(state)
        if action is _Action.SERVE or action is _Action.SERVE_AND_REFRESH:
            return self._serve(state, now)
        assert flight is not None
        return self._after_wait(await self._await(flight))

    async def arefresh_for(self, kid: str) -> KeySet | None:
        """Like :meth:`refresh_for`, without blocking the event loop.

        Args:
            kid: The unknown ``keyid``.

        Returns:
            The new snapshot, or ``None`` when the refresh was refused or failed.
        """
        state = self._state
        if _knows(state.keys, kid):
            return state.keys
        if self._refused_fast(kid):
            return None
        if self._worker_wanted:
            self._start_worker_task()
        loop = asyncio.get_running_loop()
        with self._lock:
            state, now = self._state, self._monotonic()
            action = _plan_refresh_for(state, kid, now, self._policy, self._in_flight())
            flight = self._begin(now, "unknown kid", action, loop)
        if action is _Action.SERVE:
            return state.keys
        if action is _Action.REFUSE:
            self._refuse(kid, state)
            return None
        assert flight is not None
        if action is _Action.FETCH:
            self._spawn_task(flight, loop)
        return self._after_refresh_for(kid, flight, await self._await(flight))

    async def arefresh(self) -> KeySet:
        """Like :meth:`refresh`, without blocking the event loop.

        Returns:
            The newly fetched key set.

        Raises:
            KeySetUnavailable: The fetch failed (the cache keeps its last good set).
        """
        loop = asyncio.get_running_loop()
        with self._lock:
            now = self._monotonic()
            action = _plan_refresh(self._state, self._in_flight())
            flight = self._begin(now, "explicit refresh", action, loop)
        assert flight is not None
        if action is _Action.FETCH:
            self._spawn_task(flight, loop)
        keys = await self._await(flight)
        if keys is None:
            raise self._unavailable(self._state)
        return keys

    async def aclose(self, timeout: float = 5.0) -> None:
        """Stop the background refresher and wait (without blocking the loop) until it ends.

        Args:
            timeout: Seconds to wait for a refresher thread to end.
        """
        worker = self._stop_worker()
        if isinstance(worker, threading.Thread):
            await asyncio.to_thread(worker.join, timeout)
        elif worker is not None and worker.get_loop() is _running_loop():
            # asyncio.wait never raises the worker's CancelledError, only our own.
            await asyncio.wait([worker])

    async def __aenter__(self) -> JWKSCache:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    # ---- shared machinery ------------------------------------------------------------

    def _in_flight(self) -> bool:
        """Whether a live fetch is in flight (caller holds the lock)."""
        flight = self._flight
        if flight is None:
            return False
        if flight.loop is not None and flight.loop.is_closed():
            # Its event loop died without finishing the task: forget it, wake waiters.
            self._flight = None
            if not flight.future.done():
                flight.future.set_result(None)
            return False
        return True

    def _begin(
        self,
        now: float,
        reason: str,
        action: _Action,
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> _Flight | None:
        """Register a new flight for FETCH-like actions, return the one to wait on.

        The caller holds the lock; nothing here does I/O.
        """
        if action is _Action.JOIN:
            return self._flight
        if action not in (_Action.FETCH, _Action.SERVE_AND_REFRESH):
            return None
        future: concurrent.futures.Future[KeySet | None] = concurrent.futures.Future()
        # RUNNING futures cannot be cancelled: a cancelled waiter never cancels the
        # shared fetch for the others.
        future.set_running_or_notify_cancel()
        flight = _Flight(started=now, reason=reason, future=future, loop=loop)
        self._flight = flight
        self._state = replace(self._state, last_attempt=now)
        self.stats._add("fetches")
        return flight

    def _load(self, result: FetchResult) -> _Loaded:
        """Turn a fetch result into a snapshot; raises on anything unusable."""
        if not isinstance(result, FetchResult):
            raise TypeError(f"KeySource returned {type(result).__name__}, not FetchResult")
        keys = KeySet.from_jwks(result.body, key_types=self._key_types)
        if len(keys) == 0:
            # An all-unusable set would reject every webhook: treat it as a failed
            # refresh and keep the last good set (K5).
            rejected = ", ".join(f"{k}: {why}" for k, why in keys.rejected.items())
            raise JWKSError(f"JWKS has no usable key ({rejected or 'empty'})")
        return keys, _effective_ttl(result.max_age, self._policy)

    def _finish(self, flight: _Flight, loaded: _Loaded | None, error: BaseException | None) -> None:
        """Record a flight's outcome, swap the snapshot, wake every waiter."""
        keys: KeySet | None = None
        with self._lock:
            current = self._flight is flight
            if current:
                self._flight = None
            now = self._monotonic()
            state = self._state
            if loaded is not None and flight.started >= state.fetched_at:
                keys, ttl = loaded
                self._state = replace(
                    state,
                    keys=keys,
                    fetched_at=flight.started,
                    expires_at=flight.started + ttl,
                    last_failure=_NEVER,
                    error="",
                )
            elif loaded is None and error is not None and current:
                message = f"{type(error).__name__}: {error}"
                self._state = replace(state, last_failure=now, error=message)
        if loaded is not None:
            keys = loaded[0]
            old = state.keys
            added = sorted(set(keys) - set(old or ()))
            removed = sorted(set(old or ()) - set(keys))
            logger.info(
                "JWKS fetched (%s): %d keys, %d rejected, fresh for %.0f s; added %s, removed %s",
                flight.reason,
                len(keys),
                len(keys.rejected),
                loaded[1],
                added,
                removed,
            )
        elif error is not None:
            self.stats._add("failures")
            usable = _is_usable(state, now, self._policy)
            logger.warning(
                "JWKS fetch failed (%s): %s: %s; %s",
                flight.reason,
                type(error).__name__,
                error,
                "serving the cached key set" if usable else "no usable key set (keys_unavailable)",
            )
        else:
            logger.warning("JWKS fetch (%s) aborted", flight.reason)
        if not flight.future.done():
            flight.future.set_result(keys)

    def _run_flight(self, flight: _Flight) -> None:
        """Run the flight's fetch in this thread (the sync leader)."""
        loaded: _Loaded | None = None
        error: BaseException | None = None
        try:
            loaded = self._load(self._source.fetch())
        except Exception as exc:
            error = exc
        finally:
            self._finish(flight, loaded, error)

    def _run_detached(self, flight: _Flight) -> None:
        """Run the flight in a daemon thread, so no request waits for it."""
        thread = threading.Thread(
            target=self._run_flight, args=(flight,), name="upvest-verify-jwks", daemon=True
        )
        try:
            thread.start()
        except RuntimeError as exc:  # e.g. interpreter shutting down
            self._finish(flight, None, exc)

    async def _arun_flight(self, flight: _Flight) -> None:
        """Run the flight's fetch as a task (the async leader)."""
        loaded: _Loaded | None = None
        error: BaseException | None = None
        try:
            afetch = getattr(self._source, "afetch", None)
            if afetch is not None:
                result = await afetch()
            else:
                result = await asyncio.to_thread(self._source.fetch)
            loaded = self._load(result)
        except Exception as exc:
            error = exc
        finally:
            self._finish(flight, loaded, error)

    def _spawn_task(self, flight: _Flight, loop: asyncio.AbstractEventLoop) -> None:
        # A task of its own: a cancelled request never cancels the shared fetch.
        flight.task = loop.create_task(self._arun_flight(flight), name="upvest-verify-jwks")

    def _wait(self, flight: _Flight) -> KeySet | None:
        """Block until the flight ends (at most ``wait_timeout``)."""
        if flight.loop is not None and flight.loop is _running_loop():
            # Sync call on the event loop that must run the fetch: waiting would
            # deadlock. Async code must use acurrent()/arefresh_for().
            logger.warning("JWKSCache sync method called on the event loop during an async fetch")
            return None
        try:
            return flight.future.result(timeout=self._wait_timeout)
        except concurrent.futures.TimeoutError:
            logger.warning(
                "JWKS fetch (%s) still running after %.0f s", flight.reason, self._wait_timeout
            )
            return None

    async def _await(self, flight: _Flight) -> KeySet | None:
        """Await the flight's end from any event loop (at most ``wait_timeout``)."""
        try:
            return await asyncio.wait_for(
                asyncio.wrap_future(flight.future), timeout=self._wait_timeout
            )
        except asyncio.TimeoutError:
            logger.warning(
                "JWKS fetch (%s) still running after %.0f s", flight.reason, self._wait_timeout
            )
            return None

    def _serve(self, state: _CacheState, now: float) -> KeySet:
        assert state.keys is not None
        if not _is_fresh(state, now):
            self.stats._add("stale_serves")
        return state.keys

    def _after_wait(self, keys: KeySet | None) -> KeySet:
        """After a cold-start wait: the new set, else the stale one, else raise."""
        if keys is not None:
            return keys
        state, now = self._state, self._monotonic()
        if _is_usable(state, now, self._policy):
            return self._serve(state, now)
        raise self._unavailable(state)

    def _after_refresh_for(self, kid: str, flight: _Flight, keys: KeySet | None) -> KeySet | None:
        if keys is not None and not _knows(keys, kid):
            self._remember_unknown(kid, flight.started + self._policy.refresh_cooldown)
        return keys

    def _unavailable(self, state: _CacheState) -> KeySetUnavailable:
        why = state.error or "no key set fetched yet"
        if state.keys is not None:
            why = f"cached key set stale beyond max_stale; last error: {why}"
        return KeySetUnavailable(Reason.KEYS_UNAVAILABLE, f"no usable key set: {why}")

    def _refused_fast(self, kid: str) -> bool:
        """Lock-free negative-cache check for a kid a recent refresh did not bring in."""
        until = self._negative.get(kid)
        if until is None:
            return False
        if self._monotonic() < until:
            self.stats._add("unknown_kid_refusals")
            return True
        self._negative.pop(kid, None)
        return False

    def _refuse(self, kid: str, state: _CacheState) -> None:
        self.stats._add("unknown_kid_refusals")
        logger.debug("JWKS refresh for unknown kid refused (cooldown)")
        if len(kid) <= MAX_KID_LENGTH:
            policy = self._policy
            until = max(
                state.last_attempt + policy.refresh_cooldown,
                state.last_failure + policy.failure_cooldown,
            )
            self._remember_unknown(kid, until)

    def _remember_unknown(self, kid: str, until: float) -> None:
        negative = self._negative
        if len(negative) >= _NEGATIVE_CACHE_SIZE:
            negative.clear()  # bounded memory under kid noise (H8)
        negative[kid] = until

    # ---- background refresher --------------------------------------------------------

    def _start_worker_thread(self) -> None:
        with self._lock:
            if not self._worker_wanted or self._closed:
                return
            self._worker_wanted = False
            stop = threading.Event()
            thread = threading.Thread(
                target=self._worker_main,
                args=(stop,),
                name="upvest-verify-jwks-refresh",
                daemon=True,
            )
            self._worker, self._worker_stop = thread, stop
        thread.start()

    def _worker_main(self, stop: threading.Event) -> None:
        while not stop.is_set():
            delay = _background_delay(self._state, self._monotonic(), self._policy)
            if delay > 0:
                stop.wait(min(delay, self._BACKGROUND_TICK))
                continue
            with self._lock:
                action = _plan_refresh(self._state, self._in_flight())
                flight = self._begin(self._monotonic(), "background", action)
            assert flight is not None
            if action is _Action.FETCH:
                self._run_flight(flight)
            else:
                self._wait(flight)

    def _start_worker_task(self) -> None:
        loop = asyncio.get_running_loop()
        with self._lock:
            if not self._worker_wanted or self._closed:
                return
            self._worker_wanted = False
            task = loop.create_task(self._aworker_main(), name="upvest-verify-jwks-refresh")
            self._worker = task

    async def _aworker_main(self) -> None:
        try:
            while not self._closed:
                delay = _background_delay(self._state, self._monotonic(), self._policy)
                if delay > 0:
                    await asyncio.sleep(min(delay, self._BACKGROUND_TICK))
                    continue
                loop = asyncio.get_running_loop()
                with self._lock:
                    action = _plan_refresh(self._state, self._in_flight())
                    flight = self._begin(self._monotonic(), "background", action, loop)
                assert flight is not None
                if action is _Action.FETCH:
                    self._spawn_task(flight, loop)
                await self._await(flight)
        finally:
            # Ended with its event loop (or closed): the next call may start another.
            with self._lock:
                if self._worker is asyncio.current_task():
                    self._worker = None
                    self._worker_wanted = not self._closed

    def _after_fork(self) -> None:
        """Re-create what a forked child cannot inherit (F15).

        The parent's lock may have been held by another thread at fork time, and
        the parent's fetch threads, tasks and refresher do not exist in the child.
        """
        self._lock = threading.Lock()
        self.stats._lock = threading.Lock()
        self._flight = None
        self._worker = None
        self._worker_stop = None
        self._worker_wanted = self._background and not self._closed
