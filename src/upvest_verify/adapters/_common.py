"""Framework-free pieces shared by every adapter (private).

- :class:`Rejection`: the ``application/problem+json`` answer (RFC 9457) and the
  line logged on ``upvest_verify.security`` for every refused webhook.
- :class:`URLRebuilder`: the URL Upvest sent the request to, rebuilt from an ASGI
  scope or a WSGI environ, optionally behind proxies (RFC 9421 §7.4.3: "use
  configured external context"). Paths come from ASGI ``raw_path`` and WSGI
  ``RAW_URI``/``REQUEST_URI``, never from the percent-decoded path.
- :class:`PathMatcher`, :func:`declared_length`, :func:`wsgi_header_pairs`.
- :func:`load_settings` / :func:`settings_problems`: a :class:`~upvest_verify.Verifier`
  and the adapter options from Flask config or Django settings.

No web framework is imported here; every adapter builds on these helpers, so the
security-relevant logic exists once.
"""

from __future__ import annotations

import dataclasses
import http
import importlib
import inspect
import ipaddress
import json
import logging
import re
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal, cast
from urllib.parse import quote

from upvest_verify import KeySet, Policy, VerifiedWebhook, Verifier
from upvest_verify.errors import ConfigurationError, JWKSError, Reason, VerificationError
from upvest_verify.jwks import JWKSCache, URLKeySource
from upvest_verify.types import AsyncKeyProvider, KeyProvider

__all__ = [
    "CONFIGURATION_ERROR",
    "INCOMPLETE_BODY",
    "INTERNAL_ERROR",
    "METHOD_NOT_ALLOWED",
    "PROBLEM_CONTENT_TYPE",
    "AdapterSettings",
    "PathMatcher",
    "Rejection",
    "URLRebuilder",
    "declared_length",
    "load_settings",
    "log_rejection",
    "rejection_for",
    "security_logger",
    "settings_problems",
    "verify_async",
    "wsgi_header_pairs",
]

security_logger: Final = logging.getLogger("upvest_verify.security")
"""Every refused webhook is logged here: reason code and request path, never secrets."""

PROBLEM_CONTENT_TYPE: Final = "application/problem+json"

# Rejection codes that are not verification outcomes (threat-model.md §2, last note).
METHOD_NOT_ALLOWED: Final = "method_not_allowed"
CONFIGURATION_ERROR: Final = "configuration_error"
INTERNAL_ERROR: Final = "internal_error"
INCOMPLETE_BODY: Final = "incomplete_body"

DEFAULT_PATHS: Final = ("/webhooks/upvest",)

ProxyHeaders = Literal["x-forwarded", "forwarded"]
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


# --------------------------------------------------------------------------- rejections


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
    """Map an exception raised while verifying to the answer for the client.

    Args:
        exc: A :class:`VerificationError` (its own status and reason),
            :class:`ConfigurationError` (500, ``configuration_error``) or anything
            else (500, ``internal_error``). Never fails open.

    Returns:
        The rejection.
    """
    if isinstance(exc, VerificationError):
        return Rejection(exc.status_code, exc.reason.value)
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


# --------------------------------------------------------------------------- verifying

RunSync = Callable[[Callable[[], VerifiedWebhook]], Awaitable[VerifiedWebhook]]


async def verify_async(
    verifier: Verifier,
    method: str,
    url: str,
    headers: Any,
    body: bytes,
    run_sync: RunSync | None,
) -> VerifiedWebhook:
    """Verify from async code, offloading through ``run_sync`` when given.

    With a key set or an async key provider this is :meth:`Verifier.averify`. A
    provider with only a synchronous interface may do network I/O, so the whole
    :meth:`Verifier.verify` then runs through ``run_sync`` (or inline if offloading
    is off).

    Args:
        verifier: The verifier.
        method: The request method.
        url: The rebuilt URL.
        headers: Header field lines.
        body: The raw body.
        run_sync: Runs a callable in a worker thread, or ``None`` to stay inline.

    Returns:
        The verified webhook.

    Raises:
        VerificationError: The webhook is not acceptable.
    """
    keys = verifier.keys
    if isinstance(keys, KeySet) or (
        isinstance(keys, AsyncKeyProvider) and inspect.iscoroutinefunction(keys.acurrent)
    ):
        return await verifier.averify(method, url, headers, body, run_sync=run_sync)
    if run_sync is None:
        return verifier.verify(method, url, headers, body)
    return await run_sync(lambda: verifier.verify(method, url, headers, body))


# --------------------------------------------------------------------------- small parsers

_DIGITS = re.compile(r"[0-9]{1,18}")


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
    text = value.decode("latin-1") if isinstance(value, bytes) else value
    text = text.strip()
    # RFC 9110 §8.6: Content-Length = 1*DIGIT
    return int(text) if _DIGITS.fullmatch(text) else None


def wsgi_header_pairs(environ: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Return the request header fields of a WSGI environ as ``(name, value)`` pairs.

    WSGI servers have already joined repeated field lines into one value (with
    ``","``); that value is passed on as one field line.

    Args:
        environ: The WSGI environ (PEP 3333).

    Returns:
        Lower-case field names with their values.
    """
    pairs: list[tuple[str, str]] = []
    for key, value in environ.items():
        if not isinstance(value, str):
            continue
        if key.startswith("HTTP_"):
            pairs.append((key[5:].replace("_", "-").lower(), value))
        elif key in ("CONTENT_TYPE", "CONTENT_LENGTH") and value:
            pairs.append((key.replace("_", "-").lower(), value))
    return pairs


@dataclass(frozen=True, slots=True)
class PathMatcher:
    """Which request paths are webhook endpoints.

    ``"/webhooks/upvest"`` matches that path with or without a trailing slash;
    ``"/webhooks/*"`` matches every path below ``/webhooks/``. Matching uses the
    decoded route path, the same one the framework routes on, so a
    percent-encoded variant of a protected path is protected too.

    Attributes:
        exact: Exact paths (without trailing slash).
        prefixes: Path prefixes ending in ``/``.
    """

    exact: frozenset[str]
    prefixes: tuple[str, ...]

    @classmethod
    def create(cls, paths: Iterable[str] | str) -> PathMatcher:
        """Validate and compile a list of paths.

        Args:
            paths: Absolute paths, optionally ending in ``/*``.

        Returns:
            The matcher.

        Raises:
            ConfigurationError: A path is not a string starting with ``/``, or has a
                ``*`` anywhere but in a final ``/*``.
        """
        if isinstance(paths, str):
            paths = (paths,)
        exact: set[str] = set()
        prefixes: list[str] = []
        for path in paths:
            if not isinstance(path, str) or not path.startswith("/"):
                raise ConfigurationError(f"paths must be strings starting with '/', got {path!r}")
            if path.endswith("/*"):
                head = path[:-1]
                if "*" in head:
                    raise ConfigurationError(f"'*' is only allowed as a final '/*': {path!r}")
                prefixes.append(head)
            elif "*" in path:
                raise ConfigurationError(f"'*' is only allowed as a final '/*': {path!r}")
            else:
                exact.add(_strip_slash(path))
        if not exact and not prefixes:
            raise ConfigurationError("paths must name at least one webhook path")
        return cls(frozenset(exact), tuple(prefixes))

    def __call__(self, path: str) -> bool:
        """Return whether ``path`` (decoded, relative to the app root) is protected."""
        return _strip_slash(path) in self.exact or any(path.startswith(p) for p in self.prefixes)


def _strip_slash(path: str) -> str:
    return path[:-1] if len(path) > 1 and path.endswith("/") else path


# --------------------------------------------------------------------------- URL rebuilding

# RFC 3986 §3.3: pchar = unreserved / pct-encoded / sub-delims / ":" / "@"
_PCHAR: Final = "/:@!$&'()*+,;=-._~"

# RFC 3986 §3.2.2-3: host = IP-literal / IPv4address / reg-name ; port = *DIGIT.
# No "/", "?", "#" or "@": a Host field must not be able to move the path or query.
_AUTHORITY = re.compile(r"(?:\[[0-9A-Za-z:.%\-]+\]|[A-Za-z0-9\-._~!$&'()*+,;=%]+)(?::[0-9]{0,5})?")
_SCHEMES = ("http", "https")
_DEFAULT_PORT = {"http": "80", "https": "443"}


def _origin_form(target: str) -> str:
    """Turn an absolute-form request target into origin form (RFC 9112 §3.2.2)."""
    lower = target[:8].lower()
    if lower.startswith(("http://", "https://")):
        rest = target.split("://", 1)[1]
        cut = min((i for i in (rest.find("/"), rest.find("?")) if i != -1), default=len(rest))
        target = rest[cut:]
        if not target.startswith("/"):
            target = "/" + target
    return target


def _under_root(path: str, root: str) -> str:
    """Prefix ``path`` with the mount point ``root`` unless it already starts with it.

    Servers differ: uvicorn puts ``root_path`` into ``raw_path``; a proxy that strips
    the prefix (with the server told via ``--root-path``/``SCRIPT_NAME``) does not.
    """
    root = root.rstrip("/")
    if not root or path == root or path.startswith(root + "/"):
        return path
    return root + path


def _last_list_member(values: Sequence[str]) -> str | None:
    # RFC 9110 §5.3: several field lines are one comma-separated list. The last
    # member is the one added by the proxy nearest to us, i.e. a trusted one.
    members = [m.strip() for v in values for m in v.split(",")]
    members = [m for m in members if m]
    return members[-1] if members else None


# RFC 9110 §5.6.2 token and §5.6.4 quoted-string (with quoted-pair).
_FWD_PAIR = re.compile(
    r"([!#$%&'*+\-.^_`|~0-9A-Za-z]+)="
    r'(?:([!#$%&\'*+\-.^_`|~0-9A-Za-z]+)|"((?:[\t \x21\x23-\x5b\x5d-\x7e]|\\[\t \x21-\x7e])*)")'
)
_FWD_UNESCAPE = re.compile(r"\\(.)")


def _forwarded_pairs(values: Sequence[str]) -> dict[str, str]:
    """Return the parameters of the last element of ``Forwarded`` (RFC 7239 §4).

    ABNF (RFC 7239 §4)::

        Forwarded         = 1#forwarded-element
        forwarded-element = [ forwarded-pair ] *( ";" [ forwarded-pair ] )
        forwarded-pair    = token "=" value
        value             = token / quoted-string

    Parsed strictly: after a value only whitespace, ``;`` or ``,`` may follow, and a
    parameter may not repeat within an element (RFC 7239 §4). A lenient parser lets a
    client's unterminated quote swallow the trusted proxy's own element.

    Raises:
        VerificationError: ``malformed_header`` for anything else.
    """
    elements: list[dict[str, str]] = [{}]
    text = ", ".join(values)
    i, n = 0, len(text)
    expect_pair = True
    while i < n:
        ch = text[i]
        if ch in " \t":
            i += 1
        elif ch == ",":
            elements.append({})
            expect_pair = True
            i += 1
        elif ch == ";":
            expect_pair = True
            i += 1
        else:
            m = _FWD_PAIR.match(text, i) if expect_pair else None
            if m is None:
                raise VerificationError(Reason.MALFORMED_HEADER, "unparseable Forwarded field")
            name = m.group(1).lower()
            token, quoted = m.group(2), m.group(3)
            value = token if token is not None else _FWD_UNESCAPE.sub(r"\1", quoted)
            if name in elements[-1]:
                raise VerificationError(
                    Reason.MALFORMED_HEADER, f"Forwarded parameter {name!r} repeated"
                )
            elements[-1][name] = value
            expect_pair = False
            i = m.end()
    return elements[-1]


@dataclass(frozen=True, slots=True)
class URLRebuilder:
    """Rebuilds the absolute URL Upvest sent a webhook to.

    Without options the URL is taken from the request as received: the server's
    scheme, the ``Host`` field, and the raw path under the mount point. Behind a
    proxy, either state the public URL, or list the proxies whose ``X-Forwarded-*``
    (or ``Forwarded``) fields may be believed. Fields from any other peer are
    ignored, so a client cannot claim another host (cross-tenant replay).

    Attributes:
        public_scheme: Scheme from ``public_url``, or ``None``.
        public_authority: ``host[:port]`` from ``public_url``, or ``None``.
        path_prefix: Percent-encoded prefix a proxy strips before the app sees the
            path (from ``public_url``'s path or ``path_prefix``).
        trusted_proxies: Networks whose forwarding fields are believed.
        proxy_headers: ``"x-forwarded"`` (``X-Forwarded-Proto``/``-Host``/``-Port``/
            ``-Prefix``) or ``"forwarded"`` (RFC 7239 ``proto``/``host``).
    """

    public_scheme: str | None = None
    public_authority: str | None = None
    path_prefix: str = ""
    trusted_proxies: tuple[IPNetwork, ...] = ()
    proxy_headers: ProxyHeaders = "x-forwarded"

    @classmethod
    def create(
        cls,
        *,
        public_url: str | None = None,
        trusted_proxies: Iterable[str] | str = (),
        proxy_headers: str = "x-forwarded",
        path_prefix: str = "",
    ) -> URLRebuilder:
        """Validate the proxy options.

        Args:
            public_url: ``https://host[:port][/prefix]`` as registered with Upvest.
            trusted_proxies: IP addresses or networks (``"10.0.0.0/8"``) of proxies.
            proxy_headers: Which forwarding fields trusted proxies set.
            path_prefix: A path prefix the proxy strips (``"/hooks"``).

        Returns:
            The rebuilder.

        Raises:
            ConfigurationError: An option is invalid, or both ``public_url`` and
                ``trusted_proxies`` are given.
        """
        scheme = authority = None
        prefix = _clean_prefix(path_prefix, "path_prefix")
        if public_url is not None:
            if not isinstance(public_url, str) or "://" not in public_url:
                raise ConfigurationError(f"public_url must be an absolute URL, got {public_url!r}")
            scheme, _, rest = public_url.partition("://")
            scheme = scheme.lower()
            authority, slash, url_path = rest.partition("/")
            if scheme not in _SCHEMES or not _AUTHORITY.fullmatch(authority):
                raise ConfigurationError(
                    f"public_url must be http(s)://host[:port][/prefix]: {public_url!r}"
                )
            if "?" in url_path or "#" in url_path:
                raise ConfigurationError("public_url must not have a query or fragment")
            url_prefix = _clean_prefix(slash + url_path, "public_url path")
            if url_prefix and prefix:
                raise ConfigurationError("give the prefix in public_url or path_prefix, not both")
            prefix = prefix or url_prefix
        if isinstance(trusted_proxies, str):
            trusted_proxies = [p for p in trusted_proxies.split(",") if p.strip()]
        networks: list[IPNetwork] = []
        for proxy in trusted_proxies:
            try:
                networks.append(ipaddress.ip_network(str(proxy).strip(), strict=False))
            except ValueError as e:
                raise ConfigurationError(f"trusted_proxies: not an IP network: {proxy!r}") from e
        if networks and scheme is not None:
            raise ConfigurationError("give public_url or trusted_proxies, not both")
        if proxy_headers not in ("x-forwarded", "forwarded"):
            raise ConfigurationError(
                f"proxy_headers must be 'x-forwarded' or 'forwarded', got {proxy_headers!r}"
            )
        return cls(
            public_scheme=scheme,
            public_authority=authority,
            path_prefix=prefix,
            trusted_proxies=tuple(networks),
            proxy_headers=cast(ProxyHeaders, proxy_headers),
        )

    def from_asgi(self, scope: Mapping[str, Any]) -> str:
        """Rebuild the URL of an ASGI HTTP request.

        The path is ``raw_path`` (under ``root_path``); when a server gives no
        ``raw_path``, the decoded ``path`` is percent-encoded again.

        Args:
            scope: The ASGI HTTP scope.

        Returns:
            The absolute URL.

        Raises:
            VerificationError: ``malformed_header`` for an unusable ``Host``.
        """
        headers: list[tuple[str, str]] = [
            (bytes(k).decode("latin-1").lower(), bytes(v).decode("latin-1"))
            for k, v in scope.get("headers", ())
        ]
        raw_path = scope.get("raw_path")
        if raw_path:
            path = _origin_form(bytes(raw_path).decode("latin-1")).split("?", 1)[0]
        else:
            path = quote(str(scope.get("path", "/")).encode("utf-8"), safe=_PCHAR)
        root = quote(str(scope.get("root_path", "")).encode("utf-8"), safe=_PCHAR)
        query = bytes(scope.get("query_string", b"")).decode("latin-1")
        server = scope.get("server")
        client = scope.get("client")
        return self._build(
            scheme=str(scope.get("scheme", "http")),
            host=_only_host(headers, server),
            path=_under_root(path, root),
            query=query,
            peer=str(client[0]) if client else None,
            headers=headers,
        )

    def from_wsgi(self, environ: Mapping[str, Any]) -> str:
        """Rebuild the URL of a WSGI request.

        The path and query come from ``RAW_URI`` or ``REQUEST_URI`` (the request
        target as received, set by gunicorn, Werkzeug, uWSGI, mod_wsgi); only if
        neither exists (wsgiref) are ``SCRIPT_NAME`` and ``PATH_INFO`` percent-encoded
        again, which can differ from what Upvest signed for unusual paths.

        Args:
            environ: The WSGI environ.

        Returns:
            The absolute URL.

        Raises:
            VerificationError: ``malformed_header`` for an unusable ``Host``.
        """
        script = quote(str(environ.get("SCRIPT_NAME", "")).encode("latin-1"), safe=_PCHAR)
        target = environ.get("RAW_URI") or environ.get("REQUEST_URI")
        if isinstance(target, str) and target:
            path, _, query = _origin_form(target).partition("?")
            path = _under_root(path, script)
        else:
            path_info = str(environ.get("PATH_INFO", "")).encode("latin-1")
            path = script + quote(path_info, safe=_PCHAR)
            query = str(environ.get("QUERY_STRING", ""))
        host = environ.get("HTTP_HOST")
        if not host:
            port = str(environ.get("SERVER_PORT", ""))
            host = str(environ.get("SERVER_NAME", "localhost")) + (":" + port if port else "")
        return self._build(
            scheme=str(environ.get("wsgi.url_scheme", "http")),
            host=str(host),
            path=path or "/",
            query=query,
            peer=str(environ.get("REMOTE_ADDR") or "") or None,
            headers=wsgi_header_pairs(environ),
        )

    def _trusted(self, peer: str | None) -> bool:
        if not self.trusted_proxies or not peer:
            return False
        try:
            address = ipaddress.ip_address(peer.strip("[]"))
        except ValueError:
            return False
        return any(address in network for network in self.trusted_proxies)

    def _build(
        self,
        *,
        scheme: str,
        host: str,
        path: str,
        query: str,
        peer: str | None,
        headers: Sequence[tuple[str, str]],
    ) -> str:
        prefix = self.path_prefix
        if self.public_scheme is not None and self.public_authority is not None:
            scheme, host = self.public_scheme, self.public_authority
        elif self._trusted(peer):
            scheme, host, forwarded_prefix = self._forwarded(scheme, host, headers)
            prefix = prefix or forwarded_prefix
        if not _AUTHORITY.fullmatch(host):
            raise VerificationError(
                Reason.MALFORMED_HEADER, "the Host field is not a valid authority"
            )
        scheme = scheme.lower()
        if scheme not in _SCHEMES:
            raise VerificationError(Reason.MALFORMED_HEADER, "the forwarded scheme is not http(s)")
        if not path.startswith("/"):
            path = "/" + path
        url = f"{scheme}://{host}{prefix}{path}"
        return f"{url}?{query}" if query else url

    def _forwarded(
        self, scheme: str, host: str, headers: Sequence[tuple[str, str]]
    ) -> tuple[str, str, str]:
        def values(name: str) -> list[str]:
            return [v for k, v in headers if k == name]

        prefix = ""
        if self.proxy_headers == "forwarded":
            pairs = _forwarded_pairs(values("forwarded")) if values("forwarded") else {}
            scheme = pairs.get("proto", scheme)
            host = pairs.get("host", host)
            return scheme, host, prefix
        scheme = _last_list_member(values("x-forwarded-proto")) or scheme
        forwarded_host = _last_list_member(values("x-forwarded-host"))
        if forwarded_host:
            host = forwarded_host
        port = _last_list_member(values("x-forwarded-port"))
        if (
            port
            and port.isdigit()
            and not re.search(r"(:[0-9]*|\])$", host)
            and _DEFAULT_PORT.get(scheme.lower()) != port
        ):
            host = f"{host}:{port}"
        forwarded_prefix = _last_list_member(values("x-forwarded-prefix"))
        if forwarded_prefix:
            prefix = quote(forwarded_prefix.rstrip("/"), safe=_PCHAR + "%")
            if prefix and not prefix.startswith("/"):
                prefix = "/" + prefix
        return scheme, host, prefix


def _only_host(headers: Sequence[tuple[str, str]], server: Any) -> str:
    hosts = [v for k, v in headers if k == "host"]
    if len(hosts) > 1:
        raise VerificationError(Reason.MALFORMED_HEADER, "more than one Host field")
    if hosts:
        return hosts[0].strip()
    if server:
        host, port = server[0], server[1]
        host = f"[{host}]" if ":" in str(host) else str(host)
        return f"{host}:{port}" if port is not None else host
    return "localhost"


def _clean_prefix(prefix: object, what: str) -> str:
    if not isinstance(prefix, str):
        raise ConfigurationError(f"{what} must be a string")
    prefix = prefix.rstrip("/")
    if prefix and not prefix.startswith("/"):
        raise ConfigurationError(f"{what} must start with '/': {prefix!r}")
    if any(c in prefix for c in "?#") or prefix != quote(prefix, safe=_PCHAR + "%"):
        raise ConfigurationError(f"{what} must be a percent-encoded path: {prefix!r}")
    return prefix


# --------------------------------------------------------------------------- settings

_POLICY_FIELDS: Final = {f.name.upper(): f for f in dataclasses.fields(Policy)}
_KEY_SOURCES: Final = ("VERIFIER", "KEYS", "JWKS", "JWKS_URL")
_ADAPTER_KEYS: Final = (
    "PATHS",
    "PUBLIC_URL",
    "TRUSTED_PROXIES",
    "PROXY_HEADERS",
    "PATH_PREFIX",
    "POLICY",
)
SETTING_NAMES: Final = frozenset((*_KEY_SOURCES, *_ADAPTER_KEYS, *_POLICY_FIELDS))


@dataclass(frozen=True, slots=True)
class AdapterSettings:
    """Everything an adapter needs, built from framework configuration.

    Attributes:
        verifier: The verifier.
        url: How to rebuild the URL Upvest called.
        paths: Which paths a middleware protects.
    """

    verifier: Verifier
    url: URLRebuilder
    paths: PathMatcher

    @property
    def max_body_size(self) -> int:
        """The body limit of the verifier's policy."""
        return self.verifier.policy.max_body_size


# (code, message) pairs; codes are the Django system-check ids' numbers.
Problem = tuple[str, str]


def _import_object(path: str) -> object:
    module, sep, attr = path.partition(":")
    if not sep:
        module, _, attr = path.rpartition(".")
    if not module or not attr:
        raise ConfigurationError(f"not a dotted path: {path!r}")
    try:
        obj: object = importlib.import_module(module)
        for part in attr.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as e:
        raise ConfigurationError(f"cannot import {path!r}: {e}") from e
    return obj


def _resolve(value: object) -> object:
    """A dotted path is imported; a class or zero-argument factory is called."""
    if isinstance(value, str):
        value = _import_object(value)
    if isinstance(value, type) or (
        callable(value) and not isinstance(value, (Verifier, KeySet, KeyProvider))
    ):
        try:
            value = value()
        except Exception as e:  # a factory failing is a configuration problem
            raise ConfigurationError(f"calling {value!r} failed: {e}") from e
    return value


def _read_jwks(value: object) -> Mapping[str, Any] | str | bytes:
    if isinstance(value, Mapping):
        return cast(Mapping[str, Any], value)
    if isinstance(value, bytes):
        return value
    if isinstance(value, (str, Path)):
        text = str(value)
        if text.lstrip().startswith("{"):
            return text
        try:
            with open(text, "rb") as f:
                return f.read(64 * 1024 + 1)
        except OSError as e:
            raise ConfigurationError(f"JWKS file {text!r} cannot be read: {e}") from e
    raise ConfigurationError("JWKS must be a dict, JSON text or bytes, or a file path")


def _coerce(name: str, value: object) -> object:
    """Convert configuration strings (from environment variables) to policy types."""
    field = _POLICY_FIELDS[name]
    default = field.default if field.default is not dataclasses.MISSING else None
    if isinstance(value, str):
        text = value.strip()
        if isinstance(default, bool):
            if text.lower() in ("1", "true", "yes", "on"):
                return True
            if text.lower() in ("0", "false", "no", "off"):
                return False
        elif isinstance(default, (int, float)) or name == "MAX_WINDOW":
            if text.lower() == "none" and name == "MAX_WINDOW":
                return None
            try:
                return int(text) if text.isdigit() else float(text)
            except ValueError:
                return value
        elif name in ("LABELS", "REQUIRED_COMPONENTS", "KEY_TYPES"):
            return tuple(p.strip() for p in text.split(",") if p.strip())
    if isinstance(value, list) and name in ("LABELS", "REQUIRED_COMPONENTS"):
        return tuple(value)
    return value


def _policy(values: Mapping[str, Any], problems: list[Problem]) -> Policy | None:
    given = {k: v for k, v in values.items() if k in _POLICY_FIELDS}
    if "POLICY" in values:
        if given:
            problems.append(("E005", "give POLICY or individual policy settings, not both"))
            return None
        policy = values["POLICY"]
        if not isinstance(policy, Policy):
            problems.append(("E005", "POLICY must be an upvest_verify.Policy"))
            return None
        return policy
    try:
        options: dict[str, Any] = {k.lower(): _coerce(k, v) for k, v in given.items()}
        return Policy(**options)
    except (ConfigurationError, TypeError, ValueError) as e:
        problems.append(("E005", f"invalid policy setting: {e}"))
        return None


def _verifier(
    values: Mapping[str, Any], verifier: Verifier | None, problems: list[Problem]
) -> Verifier | None:
    sources = [k for k in _KEY_SOURCES if values.get(k) is not None]
    policy_given = "POLICY" in values or any(k in _POLICY_FIELDS for k in values)
    if verifier is not None:
        if sources or policy_given:
            found = ", ".join(sources) or "the policy settings"
            problems.append(("E003", f"a verifier was passed in code; remove {found}"))
            return None
        return verifier
    if len(sources) != 1:
        problems.append(
            (
                "E003",
                "give exactly one key source: VERIFIER, KEYS, JWKS or JWKS_URL"
                + (f" (found {', '.join(sources)})" if sources else ""),
            )
        )
        return None
    source = sources[0]
    if source == "VERIFIER":
        if policy_given:
            problems.append(("E005", "policy settings are ignored with VERIFIER; set them on it"))
            return None
        try:
            obj = _resolve(values["VERIFIER"])
        except ConfigurationError as e:
            problems.append(("E004", f"VERIFIER: {e}"))
            return None
        if not isinstance(obj, Verifier):
            problems.append(("E004", "VERIFIER must be an upvest_verify.Verifier or a path to one"))
            return None
        return obj
    policy = _policy(values, problems)
    if policy is None:
        return None
    try:
        if source == "KEYS":
            keys = _resolve(values["KEYS"])
            if not isinstance(keys, (KeySet, KeyProvider)):
                raise ConfigurationError("KEYS must be a KeySet or a key provider (JWKSCache)")
            return Verifier(keys, policy=policy)
        if source == "JWKS":
            key_set = KeySet.from_jwks(_read_jwks(values["JWKS"]), key_types=policy.key_types)
            if not key_set:
                raise ConfigurationError("the JWKS holds no usable key")
            return Verifier(key_set, policy=policy)
        return Verifier(_jwks_cache(values["JWKS_URL"], policy), policy=policy)
    except (ConfigurationError, JWKSError) as e:
        problems.append(("E004", f"{source}: {e}"))
        return None


def _jwks_cache(url: object, policy: Policy) -> KeyProvider:
    """A :class:`~upvest_verify.jwks.JWKSCache` fetching ``url`` (plain HTTPS GET, no auth)."""
    if not isinstance(url, str):
        raise ConfigurationError(f"JWKS_URL must be a string, got {url!r}")
    return JWKSCache(URLKeySource(url), key_types=policy.key_types)


def _settings(
    values: object, *, verifier: Verifier | None, origin: str
) -> tuple[AdapterSettings | None, list[Problem]]:
    problems: list[Problem] = []
    if not isinstance(values, Mapping):
        return None, [("E001", f"{origin} must be a dict")]
    unknown = sorted(str(k) for k in values if k not in SETTING_NAMES)
    if unknown:
        problems.append(("E002", f"unknown {origin} keys: {', '.join(unknown)}"))
    built = _verifier(values, verifier, problems)
    try:
        paths = PathMatcher.create(values.get("PATHS", DEFAULT_PATHS))
    except ConfigurationError as e:
        problems.append(("E006", f"PATHS: {e}"))
    try:
        url = URLRebuilder.create(
            public_url=values.get("PUBLIC_URL"),
            trusted_proxies=values.get("TRUSTED_PROXIES") or (),
            proxy_headers=values.get("PROXY_HEADERS", "x-forwarded"),
            path_prefix=values.get("PATH_PREFIX", ""),
        )
    except ConfigurationError as e:
        problems.append(("E007", str(e)))
    if problems or built is None:
        return None, problems
    return AdapterSettings(built, url, paths), problems


def settings_problems(
    values: object, *, verifier: Verifier | None = None, origin: str = "UPVEST_VERIFY"
) -> list[tuple[str, str]]:
    """List what is wrong with adapter settings, without raising.

    Args:
        values: The settings mapping (keys without prefix: ``JWKS``, ``SKEW``...).
        verifier: A verifier given in code, if any.
        origin: How the settings are named in messages.

    Returns:
        ``(code, message)`` pairs; codes ``E001`` to ``E007``. Empty if all is well.
    """
    return _settings(values, verifier=verifier, origin=origin)[1]


def load_settings(
    values: object, *, verifier: Verifier | None = None, origin: str = "UPVEST_VERIFY"
) -> AdapterSettings:
    """Build the verifier and adapter options from settings.

    Keys (all optional except a key source, unless ``verifier`` is given):

    - key source, exactly one: ``VERIFIER`` (a Verifier, a dotted path to one or a
      factory), ``KEYS`` (a KeySet or key provider, or a path/factory), ``JWKS``
      (a dict, JSON text or a file path), ``JWKS_URL`` (https URL of a JWKS);
    - policy: ``POLICY`` (a Policy) or any Policy field in upper case (``SKEW``,
      ``MAX_AGE``, ``MAX_BODY_SIZE``, ``DIALECT``...);
    - ``PATHS`` (default ``["/webhooks/upvest"]``), ``PUBLIC_URL``,
      ``TRUSTED_PROXIES``, ``PROXY_HEADERS``, ``PATH_PREFIX``.

    Args:
        values: The settings mapping.
        verifier: A verifier given in code (then no key source or policy keys).
        origin: How the settings are named in messages.

    Returns:
        The adapter settings.

    Raises:
        ConfigurationError: Listing every problem found.
    """
    built, problems = _settings(values, verifier=verifier, origin=origin)
    if built is None:
        raise ConfigurationError("; ".join(f"{code}: {msg}" for code, msg in problems))
    return built
