"""Which URL and path a webhook was sent to, from the request parts (private).

Pure functions over request parts, in the spirit of werkzeug's ``sansio``: no web
framework is imported, the adapters hand in an ASGI scope or a WSGI environ.

- :class:`URLRebuilder`: the URL Upvest sent the request to, rebuilt from an ASGI
  scope or a WSGI environ, optionally behind proxies (RFC 9421 §7.4.3: "use
  configured external context"). Paths come from ASGI ``raw_path`` and WSGI
  ``RAW_URI``/``REQUEST_URI``, never from the percent-decoded path.
- ``X-Forwarded-*`` and RFC 7239 ``Forwarded`` parsing, believed only from
  trusted proxies.
- :class:`PathMatcher`: which paths a middleware protects (:func:`asgi_route_path`
  and :func:`asgi_log_path`, the paths of an ASGI request, live in :mod:`._asgi`).
- :func:`wsgi_header_pairs` and :func:`wsgi_method`: the header field lines and the
  method of a WSGI environ, as received.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Final, Literal, cast
from urllib.parse import quote

from upvest_verify.adapters._asgi import ASGIHead, asgi_log_path, asgi_route_path, read_head
from upvest_verify.errors import ConfigurationError, Reason, VerificationError

__all__ = [
    "DEFAULT_PATHS",
    "PathMatcher",
    "Rebuilt",
    "URLRebuilder",
    "asgi_log_path",
    "asgi_route_path",
    "last_rebuilt",
    "wsgi_header_pairs",
    "wsgi_method",
]

DEFAULT_PATHS: Final = ("/webhooks/upvest",)
"""The path protected when none are configured."""

ProxyHeaders = Literal["x-forwarded", "forwarded"]
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


# --------------------------------------------------------------------------- request parts


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


def wsgi_method(environ: Mapping[str, Any]) -> str:
    """Return the request method of a WSGI environ exactly as received.

    RFC 9421 §2.2.1 signs the method as received, and methods are case-sensitive
    (RFC 9110 §9.1). ``REQUEST_METHOD`` (PEP 3333) holds the request line's method
    as sent; Werkzeug's and Django's ``request.method`` are upper-cased copies, so a
    request sent as ``post`` would verify a signature made over ``POST``.

    Args:
        environ: The WSGI environ (or Django's ``request.META``).

    Returns:
        The method, or ``""`` when absent (the verifier refuses it).
    """
    method = environ.get("REQUEST_METHOD")
    return method if isinstance(method, str) else ""


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
        if _strip_slash(path) in self.exact:
            return True
        return bool(self.prefixes) and path.startswith(self.prefixes)


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

    def from_asgi(self, scope: Mapping[str, Any], head: ASGIHead | None = None) -> str:
        """Rebuild the URL of an ASGI HTTP request.

        The path is ``raw_path`` (under ``root_path``); when a server gives no
        ``raw_path``, the decoded ``path`` is percent-encoded again.

        Args:
            scope: The ASGI HTTP scope.
            head: Its header lines as :func:`~upvest_verify.adapters._asgi.read_head`
                read them, if the caller has them already.

        Returns:
            The absolute URL.

        Raises:
            VerificationError: ``malformed_header`` for an unusable ``Host``.
        """
        if head is None:
            head = read_head(scope)
        raw_path = scope.get("raw_path")
        if raw_path:
            path = str(raw_path, "latin-1")
            if path[:1] != "/":
                path = _origin_form(path)
            if "?" in path:
                path = path.split("?", 1)[0]
        else:
            path = quote(str(scope.get("path", "/")).encode("utf-8"), safe=_PCHAR)
        root = scope.get("root_path", "")
        if root:
            path = _under_root(path, quote(str(root).encode("utf-8"), safe=_PCHAR))
        client = scope.get("client")
        return self._build(
            str(scope.get("scheme", "http")),
            head.authority(scope.get("server")),
            path,
            str(scope.get("query_string", b""), "latin-1"),
            str(client[0]) if client else None,
            head.values,
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

        def values(name: str) -> list[str]:
            return [v for k, v in wsgi_header_pairs(environ) if k == name]

        return self._build(
            str(environ.get("wsgi.url_scheme", "http")),
            str(host),
            path or "/",
            query,
            str(environ.get("REMOTE_ADDR") or "") or None,
            values,
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
        scheme: str,
        host: str,
        path: str,
        query: str,
        peer: str | None,
        values: Callable[[str], list[str]],
    ) -> str:
        """The URL from its parts; ``values(name)`` reads a forwarding field's lines."""
        prefix = self.path_prefix
        if self.public_scheme is not None and self.public_authority is not None:
            scheme, host = self.public_scheme, self.public_authority
        elif self.trusted_proxies and self._trusted(peer):
            scheme, host, forwarded_prefix = self._forwarded(scheme, host, values)
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
        if query:
            url = f"{url}?{query}"
        # For the rejection log: which settings and peer made this URL (a tuple: cheap).
        _LAST_REBUILT.set((self, url, peer))
        return url

    def _forwarded(
        self, scheme: str, host: str, values: Callable[[str], list[str]]
    ) -> tuple[str, str, str]:
        prefix = ""
        if self.proxy_headers == "forwarded":
            forwarded = values("forwarded")
            pairs = _forwarded_pairs(forwarded) if forwarded else {}
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


@dataclass(frozen=True, slots=True)
class Rebuilt:
    """A URL the rebuilder made, with the settings and peer behind it.

    Attributes:
        rebuilder: The rebuilder (its settings: public URL, prefix, trusted proxies).
        url: The URL it returned.
        peer: The address the request came from, if the server said.
    """

    rebuilder: URLRebuilder
    url: str
    peer: str | None

    @property
    def peer_trusted(self) -> bool:
        """Whether ``peer`` is among the trusted proxies (its forwarding fields count)."""
        return self.rebuilder._trusted(self.peer)


# The last URL rebuilt in this context (task or thread). An adapter rebuilds the URL,
# verifies and logs a refusal in one context, so the log can say which settings made
# the URL; it is matched against the refused URL, never assumed to belong to it.
_LAST_REBUILT: ContextVar[tuple[URLRebuilder, str, str | None] | None] = ContextVar(
    "upvest_verify_last_rebuilt", default=None
)


def last_rebuilt() -> Rebuilt | None:
    """The URL last rebuilt in the current context, or ``None``.

    Returns:
        The URL with the rebuilder and peer that made it.
    """
    last = _LAST_REBUILT.get()
    return None if last is None else Rebuilt(*last)


def _clean_prefix(prefix: object, what: str) -> str:
    if not isinstance(prefix, str):
        raise ConfigurationError(f"{what} must be a string")
    prefix = prefix.rstrip("/")
    if prefix and not prefix.startswith("/"):
        raise ConfigurationError(f"{what} must start with '/': {prefix!r}")
    if any(c in prefix for c in "?#") or prefix != quote(prefix, safe=_PCHAR + "%"):
        raise ConfigurationError(f"{what} must be a percent-encoded path: {prefix!r}")
    return prefix
