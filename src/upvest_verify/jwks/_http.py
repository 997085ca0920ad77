"""``URLKeySource``: fetch a JWKS over HTTPS (K1, F6, F7, F11, F12).

The rules are pure functions at the top of this module: which URLs are allowed,
the same-origin redirect rule, the status and length checks, the request
headers, and the cache lifetime a response grants. Two thin drivers apply them:
:meth:`URLKeySource.fetch` with the stdlib ``urllib`` (blocking) and
:meth:`URLKeySource.afetch` with ``httpx`` (asyncio; a worker thread without
httpx). ``urllib.request``, ``ssl``, ``asyncio`` and ``httpx`` are imported on
first use, so importing the package costs none of them.
"""

from __future__ import annotations

import functools
import math
import time
import urllib.parse
from typing import TYPE_CHECKING, Any

from upvest_verify.errors import ConfigurationError, JWKSError

from ._sources import FetchResult

if TYPE_CHECKING:
    import ssl
    import urllib.request
    from http.client import HTTPMessage

__all__ = [
    "MAX_REDIRECTS",
    "URLKeySource",
    "add_chunk",
    "check_length",
    "check_status",
    "check_url",
    "fetch_result",
    "is_loopback",
    "origin",
    "redirect_target",
    "request_headers",
]

MAX_REDIRECTS = 3
"""Redirects followed (same origin only) before a fetch fails."""

_USER_AGENT = "upvest-verify"
_READ_CHUNK = 65536


# ---- pure rules ---------------------------------------------------------------------------


def origin(url: str) -> tuple[str, str, int | None]:
    """The (scheme, host, port) of ``url``, lower-cased, with the scheme's default port.

    Args:
        url: An absolute URL.

    Returns:
        The origin triple.
    """
    parts = urllib.parse.urlsplit(url)
    port = parts.port or {"https": 443, "http": 80}.get(parts.scheme)
    return (parts.scheme.lower(), (parts.hostname or "").lower(), port)


def is_loopback(host: str) -> bool:
    """Whether ``host`` is ``localhost`` or a loopback IP address (``127.0.0.0/8``, ``::1``).

    Args:
        host: A host name or IP literal (without brackets).

    Returns:
        ``True`` for loopback hosts.
    """
    if host == "localhost":
        return True
    import ipaddress  # lazily: only URL sources need it

    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_url(url: str, *, allow_insecure_loopback: bool) -> tuple[str, bool]:
    """Check a JWKS URL (K1) and drop its fragment.

    Args:
        url: The configured URL.
        allow_insecure_loopback: Permit ``http://`` to a loopback host.

    Returns:
        The URL to fetch, and whether it is plain HTTP to loopback.

    Raises:
        ConfigurationError: The URL does not parse, has no host, carries
            credentials, or is not HTTPS (nor allowed loopback HTTP).
    """
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
    loopback = scheme == "http" and allow_insecure_loopback and is_loopback(host)
    if scheme != "https" and not loopback:
        raise ConfigurationError(
            f"JWKS URL must be https:// (plain http only to loopback with "
            f"allow_insecure_loopback=True): {url!r}"
        )
    return urllib.parse.urlunsplit(parts._replace(fragment="")), loopback


def redirect_target(url: str, location: str, status: int) -> str:
    """Resolve a redirect and allow it only within the same scheme, host and port (F11).

    Args:
        url: The URL that answered with the redirect.
        location: Its ``Location`` value (may be relative).
        status: Its status code, for the message.

    Returns:
        The absolute target URL.

    Raises:
        OSError: The target is another origin.
    """
    target = urllib.parse.urljoin(url, location)
    if origin(target) != origin(url):
        raise OSError(f"JWKS redirect to another origin refused: HTTP {status} -> {target}")
    return target


def request_headers() -> dict[str, str]:
    """The headers of a JWKS request (no compression: the length cap is on the wire).

    Returns:
        ``Accept``, ``Accept-Encoding`` and ``User-Agent``.
    """
    return {"Accept": "application/json", "Accept-Encoding": "identity", "User-Agent": _USER_AGENT}


def check_status(url: str, status: int) -> None:
    """Only 200 carries a key set.

    Args:
        url: The URL fetched, for the message.
        status: The final response's status code.

    Raises:
        OSError: Any other status.
    """
    if status != 200:
        raise OSError(f"JWKS fetch from {url}: HTTP {status}")


def check_length(content_length: str | None, max_bytes: int) -> None:
    """Refuse a response whose ``Content-Length`` already exceeds ``max_bytes`` (F7).

    Args:
        content_length: The field value, or ``None``; a non-number is ignored here
            (the streamed length is capped anyway).
        max_bytes: The cap.

    Raises:
        JWKSError: The declared length is above the cap.
    """
    if (
        content_length is not None
        and content_length.strip().isdigit()
        and int(content_length) > max_bytes
    ):
        raise JWKSError(
            f"JWKS response declares {int(content_length)} bytes, more than max_bytes={max_bytes}"
        )


def add_chunk(body: bytearray, chunk: bytes, max_bytes: int) -> None:
    """Append a streamed chunk, abandoning the body as soon as it passes ``max_bytes`` (F7).

    Args:
        body: The body read so far (extended in place).
        chunk: The next chunk.
        max_bytes: The cap (inclusive).

    Raises:
        JWKSError: The body is now larger than ``max_bytes``.
    """
    body += chunk
    if len(body) > max_bytes:
        raise JWKSError(f"JWKS response larger than max_bytes={max_bytes}")


def fetch_result(body: bytes, cache_control: list[str], age: str | None) -> FetchResult:
    """The fetch result of a 200 response: its body and the lifetime its headers grant.

    Args:
        body: The body.
        cache_control: Every ``Cache-Control`` field line (joined as one list).
        age: The ``Age`` field value, or ``None``.

    Returns:
        The result.
    """
    return FetchResult.from_http(body, cache_control=", ".join(cache_control) or None, age=age)


# ---- drivers ------------------------------------------------------------------------------


@functools.cache
def _redirect_handler() -> type[urllib.request.HTTPRedirectHandler]:
    """The urllib redirect handler applying :func:`redirect_target` (built on first use)."""
    import urllib.request

    class SameOriginRedirectHandler(urllib.request.HTTPRedirectHandler):
        max_redirections = MAX_REDIRECTS

        def redirect_request(
            self,
            req: urllib.request.Request,
            fp: Any,
            code: int,
            msg: str,
            headers: HTTPMessage,
            newurl: str,
        ) -> urllib.request.Request | None:
            try:
                target = redirect_target(req.full_url, newurl, code)
            except OSError:
                fp.close()
                raise
            return super().redirect_request(req, fp, code, msg, headers, target)

    return SameOriginRedirectHandler


class URLKeySource:
    """Fetch a JWKS document over HTTPS (stdlib ``urllib``; ``httpx`` for async if installed).

    * HTTPS only, TLS verification always on. Plain HTTP is allowed only to a
      loopback address, and only with ``allow_insecure_loopback=True`` (tests).
    * Redirects are followed only within the same scheme, host and port.
    * The body is read as a stream and abandoned past ``max_bytes``.
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
        self._url, self._loopback = check_url(url, allow_insecure_loopback=allow_insecure_loopback)
        if not (timeout > 0 and math.isfinite(timeout)):
            raise ConfigurationError(f"timeout must be a positive number, got {timeout!r}")
        if max_bytes < 1:
            raise ConfigurationError(f"max_bytes must be positive, got {max_bytes!r}")
        if ssl_context is not None:
            import ssl  # the caller has imported it already

            if not (ssl_context.verify_mode == ssl.CERT_REQUIRED and ssl_context.check_hostname):
                raise ConfigurationError("ssl_context must verify certificates and host names")
        self._timeout = float(timeout)
        self._max_bytes = max_bytes
        self._ssl_context = ssl_context

    @property
    def url(self) -> str:
        """The JWKS URL."""
        return self._url

    def _context(self) -> ssl.SSLContext:
        if self._ssl_context is None:
            import ssl

            # Created once: loading the trust store costs milliseconds.
            self._ssl_context = ssl.create_default_context()
        return self._ssl_context

    def _timed_out(self) -> TimeoutError:
        return TimeoutError(f"JWKS fetch from {self._url} timed out after {self._timeout} s")

    def fetch(self) -> FetchResult:
        """Fetch the JWKS with ``urllib``, blocking the calling thread.

        Returns:
            The body and its ``Cache-Control``/``Age`` lifetime.

        Raises:
            OSError: Connection, TLS, timeout, redirect or HTTP status error.
            JWKSError: The body is larger than ``max_bytes``.
        """
        import http.client
        import urllib.error
        import urllib.request

        deadline = time.monotonic() + self._timeout
        # Only the handlers we need: no file:, ftp: or data: (K1). Built per fetch
        # (once per TTL), so nothing is shared across threads or a fork.
        opener = urllib.request.OpenerDirector()
        handlers: list[urllib.request.BaseHandler] = [
            urllib.request.ProxyHandler({} if self._loopback else None),
            urllib.request.HTTPSHandler(context=self._context()),
            _redirect_handler()(),
            urllib.request.HTTPDefaultErrorHandler(),
            urllib.request.HTTPErrorProcessor(),
        ]
        if self._loopback:
            handlers.append(urllib.request.HTTPHandler())
        for handler in handlers:
            opener.add_handler(handler)
        # The scheme was checked at construction (https, or http to loopback).
        request = urllib.request.Request(  # noqa: S310
            self._url, headers=request_headers(), method="GET"
        )
        try:
            with opener.open(request, timeout=self._timeout) as response:
                check_status(self._url, response.status)
                check_length(response.headers.get("Content-Length"), self._max_bytes)
                body = bytearray()
                while True:
                    if time.monotonic() > deadline:
                        raise self._timed_out()
                    chunk = response.read1(min(_READ_CHUNK, self._max_bytes + 1 - len(body)))
                    if not chunk:
                        break
                    add_chunk(body, chunk, self._max_bytes)
                cache_control = response.headers.get_all("Cache-Control") or []
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
        return fetch_result(bytes(body), cache_control, age)

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
        import asyncio

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
                headers=request_headers(),
            ) as client:
                for _ in range(MAX_REDIRECTS + 1):
                    async with client.stream("GET", url) as response:
                        if response.is_redirect:
                            location = response.headers["location"]
                            url = redirect_target(url, location, response.status_code)
                            continue
                        check_status(url, response.status_code)
                        check_length(response.headers.get("content-length"), self._max_bytes)
                        body = bytearray()
                        async for chunk in response.aiter_bytes():
                            add_chunk(body, chunk, self._max_bytes)
                        return fetch_result(
                            bytes(body),
                            response.headers.get_list("cache-control"),
                            response.headers.get("age"),
                        )
        except httpx.HTTPError as e:
            raise OSError(f"JWKS fetch from {url} failed: {e!r}") from e
        raise OSError(f"JWKS fetch from {self._url}: too many redirects")

    def __repr__(self) -> str:
        return f"URLKeySource({self._url!r})"
