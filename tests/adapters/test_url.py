"""URL rebuilding, proxy fields, path matching and header pairs (``adapters/_url.py``)."""

from __future__ import annotations

import contextvars
from typing import Any

import pytest

from upvest_verify import ConfigurationError, Reason, VerificationError
from upvest_verify.adapters._url import (
    DEFAULT_PATHS,
    PathMatcher,
    URLRebuilder,
    asgi_log_path,
    asgi_route_path,
    last_rebuilt,
    wsgi_header_pairs,
    wsgi_method,
)


def asgi(**overrides: Any) -> dict[str, Any]:
    """A minimal ASGI HTTP scope."""
    scope: dict[str, Any] = {
        "type": "http",
        "scheme": "http",
        "method": "POST",
        "path": "/webhooks/upvest",
        "raw_path": b"/webhooks/upvest",
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"app.internal:8000")],
        "client": ("10.1.2.3", 50000),
        "server": ("10.0.0.9", 8000),
    }
    scope.update(overrides)
    return scope


def wsgi(**overrides: Any) -> dict[str, Any]:
    """A minimal WSGI environ."""
    environ: dict[str, Any] = {
        "REQUEST_METHOD": "POST",
        "SCRIPT_NAME": "",
        "PATH_INFO": "/webhooks/upvest",
        "QUERY_STRING": "",
        "SERVER_NAME": "10.0.0.9",
        "SERVER_PORT": "8000",
        "HTTP_HOST": "app.internal:8000",
        "REMOTE_ADDR": "10.1.2.3",
        "wsgi.url_scheme": "http",
    }
    environ.update(overrides)
    return environ


PLAIN = URLRebuilder.create()


@pytest.mark.parametrize(
    ("scope", "url"),
    [
        (asgi(), "http://app.internal:8000/webhooks/upvest"),
        (asgi(query_string=b"a=%20b"), "http://app.internal:8000/webhooks/upvest?a=%20b"),
        (
            asgi(raw_path=b"/webhooks/%75pvest", path="/webhooks/upvest"),
            "http://app.internal:8000/webhooks/%75pvest",
        ),
        (
            asgi(root_path="/api", raw_path=b"/webhooks/upvest"),
            "http://app.internal:8000/api/webhooks/upvest",
        ),
        (
            asgi(root_path="/api", raw_path=b"/api/webhooks/upvest"),
            "http://app.internal:8000/api/webhooks/upvest",
        ),
        (asgi(raw_path=None, path="/a b/ü"), "http://app.internal:8000/a%20b/%C3%BC"),
        (asgi(headers=[]), "http://10.0.0.9:8000/webhooks/upvest"),
        (asgi(headers=[], server=("::1", 8000)), "http://[::1]:8000/webhooks/upvest"),
        (
            asgi(raw_path=b"http://other.example/webhooks/upvest"),
            "http://app.internal:8000/webhooks/upvest",
        ),
    ],
)
def test_asgi_url(scope: dict[str, Any], url: str) -> None:
    """The ASGI URL uses raw_path under root_path, the raw query and the Host field."""
    assert PLAIN.from_asgi(scope) == url


@pytest.mark.parametrize(
    ("environ", "url"),
    [
        (wsgi(RAW_URI="/webhooks/%75pvest?x=1"), "http://app.internal:8000/webhooks/%75pvest?x=1"),
        (wsgi(REQUEST_URI="/webhooks/upvest"), "http://app.internal:8000/webhooks/upvest"),
        (
            wsgi(RAW_URI="http://proxy.example/webhooks/upvest?q"),
            "http://app.internal:8000/webhooks/upvest?q",
        ),
        (
            wsgi(RAW_URI="/webhooks/upvest", SCRIPT_NAME="/mnt"),
            "http://app.internal:8000/mnt/webhooks/upvest",
        ),
        (
            wsgi(RAW_URI="/mnt/webhooks/upvest", SCRIPT_NAME="/mnt"),
            "http://app.internal:8000/mnt/webhooks/upvest",
        ),
        (
            wsgi(PATH_INFO="/a b/\xc3\xbc", QUERY_STRING="z=1"),
            "http://app.internal:8000/a%20b/%C3%BC?z=1",
        ),
        (wsgi(HTTP_HOST=""), "http://10.0.0.9:8000/webhooks/upvest"),
    ],
)
def test_wsgi_url(environ: dict[str, Any], url: str) -> None:
    """The WSGI URL prefers RAW_URI/REQUEST_URI and falls back to re-encoding PATH_INFO."""
    assert PLAIN.from_wsgi(environ) == url


@pytest.mark.parametrize("host", ["evil.example/path?", "a@b", "x y", "h#f", ""])
def test_unusable_host_is_malformed(host: str) -> None:
    """A Host field that could move the path or query is refused as malformed_header."""
    with pytest.raises(VerificationError) as info:
        PLAIN.from_asgi(asgi(headers=[(b"host", host.encode())]))
    assert info.value.reason is Reason.MALFORMED_HEADER


def test_two_host_fields_are_malformed() -> None:
    """Two Host fields are refused."""
    with pytest.raises(VerificationError) as info:
        PLAIN.from_asgi(asgi(headers=[(b"host", b"a"), (b"host", b"b")]))
    assert info.value.reason is Reason.MALFORMED_HEADER


@pytest.mark.parametrize(
    "headers",
    [
        [(b":authority", b"hooks.example.com")],
        [(b":authority", b"hooks.example.com"), (b"host", b"HOOKS.example.com")],
    ],
)
def test_http2_authority_pseudo_header_names_the_host(headers: list[Any]) -> None:
    """An HTTP/2 :authority passed through by the server is the authority, not the socket."""
    url = PLAIN.from_asgi(asgi(headers=headers, http_version="2"))
    assert url == "http://hooks.example.com/webhooks/upvest"


@pytest.mark.parametrize(
    "headers",
    [
        [(b":authority", b"a.example"), (b"host", b"b.example")],
        [(b":authority", b"a.example"), (b":authority", b"a.example")],
    ],
)
def test_conflicting_or_repeated_authority_is_malformed(headers: list[Any]) -> None:
    """A Host differing from :authority, or two :authority lines, is malformed (RFC 9113 §8.3.1)."""
    with pytest.raises(VerificationError) as info:
        PLAIN.from_asgi(asgi(headers=headers, http_version="2"))
    assert info.value.reason is Reason.MALFORMED_HEADER


def test_public_url_overrides_scheme_authority_and_adds_prefix() -> None:
    """public_url replaces scheme and authority and prepends its path."""
    rebuilder = URLRebuilder.create(public_url="HTTPS://Hooks.example.com:443/in/")
    assert rebuilder.from_asgi(asgi()) == "https://Hooks.example.com:443/in/webhooks/upvest"
    assert rebuilder.from_wsgi(wsgi()) == "https://Hooks.example.com:443/in/webhooks/upvest"


FORWARDED = [
    (b"host", b"app.internal"),
    (b"x-forwarded-proto", b"http, https"),
    (b"x-forwarded-host", b"spoofed.example"),
    (b"x-forwarded-host", b"hooks.example.com"),
    (b"x-forwarded-port", b"8443"),
    (b"x-forwarded-prefix", b"/in/"),
]


def test_x_forwarded_from_trusted_proxy() -> None:
    """The last member of each X-Forwarded field (the nearest proxy's) is used."""
    rebuilder = URLRebuilder.create(trusted_proxies="10.0.0.0/8, 192.168.0.1")
    assert rebuilder.from_asgi(asgi(headers=FORWARDED)) == (
        "https://hooks.example.com:8443/in/webhooks/upvest"
    )
    environ = wsgi(
        HTTP_X_FORWARDED_PROTO="https",
        HTTP_X_FORWARDED_HOST="hooks.example.com",
        HTTP_X_FORWARDED_PORT="443",
    )
    assert rebuilder.from_wsgi(environ) == "https://hooks.example.com/webhooks/upvest"


def test_forwarding_fields_of_a_head_without_repeated_names() -> None:
    """One line per field (the head read as one dict): the same rules, the same URL."""
    rebuilder = URLRebuilder.create(trusted_proxies="10.0.0.0/8")
    single = [
        (b"host", b"app.internal"),
        (b"x-forwarded-proto", b"https"),
        (b"x-forwarded-host", b"hooks.example.com"),
        (b"x-forwarded-prefix", b"/in"),
    ]
    assert (
        rebuilder.from_asgi(asgi(headers=single)) == "https://hooks.example.com/in/webhooks/upvest"
    )
    forwarded = URLRebuilder.create(trusted_proxies="10.0.0.0/8", proxy_headers="forwarded")
    lines = [(b"host", b"app.internal"), (b"forwarded", b'proto=https;host="hooks.example.com"')]
    assert forwarded.from_asgi(asgi(headers=lines)) == "https://hooks.example.com/webhooks/upvest"


def test_each_rebuilt_url_is_recorded_for_the_rejection_log() -> None:
    """The URL, the rebuilder and the peer of the last rebuild, per context."""
    rebuilder = URLRebuilder.create(trusted_proxies="10.0.0.0/8")

    def rebuild() -> Any:
        url = rebuilder.from_asgi(asgi(headers=FORWARDED))
        return url, last_rebuilt()

    before = last_rebuilt()
    url, rebuilt = contextvars.copy_context().run(rebuild)
    assert rebuilt is not None
    assert (rebuilt.url, rebuilt.peer, rebuilt.rebuilder) == (url, "10.1.2.3", rebuilder)
    assert rebuilt.peer_trusted
    assert last_rebuilt() == before  # another context's rebuild is not seen here


def test_x_forwarded_ignored_from_other_peers() -> None:
    """Forwarding fields from a peer outside trusted_proxies are ignored."""
    rebuilder = URLRebuilder.create(trusted_proxies=["192.168.0.0/16"])
    assert rebuilder.from_asgi(asgi(headers=FORWARDED)) == "http://app.internal/webhooks/upvest"
    assert rebuilder.from_asgi(asgi(headers=FORWARDED, client=None)).startswith("http://app.")
    unix = asgi(headers=FORWARDED, client=("unix-socket", 0))
    assert rebuilder.from_asgi(unix).startswith("http://app.")


def test_x_forwarded_proto_must_be_http() -> None:
    """A forwarded scheme other than http(s) is malformed."""
    rebuilder = URLRebuilder.create(trusted_proxies=["10.0.0.0/8"])
    with pytest.raises(VerificationError) as info:
        rebuilder.from_asgi(asgi(headers=[(b"host", b"a"), (b"x-forwarded-proto", b"gopher")]))
    assert info.value.reason is Reason.MALFORMED_HEADER


@pytest.mark.parametrize(
    ("value", "url"),
    [
        (
            'for=1.2.3.4;host=x, For="[::1]";Proto=https;Host="hooks.example.com"',
            "https://hooks.example.com/webhooks/upvest",
        ),
        ('for=1.2.3.4;host="a\\"b"', None),
        ("proto=https", "https://app.internal/webhooks/upvest"),
        (";;proto=https;", "https://app.internal/webhooks/upvest"),
    ],
)
def test_rfc7239_forwarded(value: str, url: str | None) -> None:
    """The last Forwarded element's proto and host are used (quoted strings unescaped)."""
    rebuilder = URLRebuilder.create(trusted_proxies=["10.0.0.0/8"], proxy_headers="forwarded")
    scope = asgi(headers=[(b"host", b"app.internal"), (b"forwarded", value.encode())])
    if url is None:
        with pytest.raises(VerificationError):
            rebuilder.from_asgi(scope)
    else:
        assert rebuilder.from_asgi(scope) == url


@pytest.mark.parametrize(
    "value",
    [
        "for",
        'host="unterminated',
        # A client's open quote must not swallow the trusted proxy's element.
        'for=x;host=a.example;x=", for="[2001:db8::1]";host=b.example;proto=https',
        'for=x;host=a.example;x=", for=10.0.0.1;host=b.example',
        "for=a host=b",
        "host=a;host=b",
        'host="a"b',
    ],
)
def test_unparseable_forwarded_is_malformed(value: str) -> None:
    """A Forwarded field that does not parse is malformed_header."""
    rebuilder = URLRebuilder.create(trusted_proxies=["10.0.0.0/8"], proxy_headers="forwarded")
    with pytest.raises(VerificationError) as info:
        rebuilder.from_asgi(asgi(headers=[(b"host", b"a"), (b"forwarded", value.encode())]))
    assert info.value.reason is Reason.MALFORMED_HEADER


@pytest.mark.parametrize(
    "options",
    [
        {"public_url": "https://a/x", "path_prefix": "/y"},
        {"public_url": "https://a/x?q"},
        {"public_url": "https://a b"},
        {"path_prefix": "/a b"},
        {"path_prefix": 3},
    ],
)
def test_bad_url_options(options: dict[str, Any]) -> None:
    """Contradictory or malformed proxy options are configuration errors."""
    with pytest.raises(ConfigurationError):
        URLRebuilder.create(**options)


def test_path_matcher() -> None:
    """Exact paths match with or without trailing slash; '/*' matches below a prefix."""
    match = PathMatcher.create(["/webhooks/upvest/", "/tenants/*"])
    assert match("/webhooks/upvest")
    assert match("/webhooks/upvest/")
    assert not match("/webhooks/upvest2")
    assert match("/tenants/a/b")
    assert not match("/tenants")
    assert PathMatcher.create("/x")("/x")


def test_wsgi_header_pairs() -> None:
    """WSGI HTTP_* keys and the two content keys become lower-case field names."""
    environ = {"HTTP_X_A_B": "1", "CONTENT_TYPE": "a/b", "CONTENT_LENGTH": "", "wsgi.x": object()}
    assert wsgi_header_pairs(environ) == [("x-a-b", "1"), ("content-type", "a/b")]


def test_wsgi_method_is_the_method_as_received() -> None:
    """REQUEST_METHOD is returned unchanged (no upper-casing); absent or not a str gives ""."""
    assert wsgi_method({"REQUEST_METHOD": "post"}) == "post"
    assert wsgi_method({"REQUEST_METHOD": "POST"}) == "POST"
    assert wsgi_method({}) == ""
    assert wsgi_method({"REQUEST_METHOD": b"POST"}) == ""


@pytest.mark.parametrize(
    ("path", "root", "route"),
    [
        ("/webhooks/upvest", "", "/webhooks/upvest"),
        ("/api/webhooks/upvest", "/api", "/webhooks/upvest"),
        ("/api", "/api", "/"),
        ("/apiary/x", "/api", "/apiary/x"),
    ],
)
def test_asgi_route_path(path: str, root: str, route: str) -> None:
    """The route path is the decoded path with a matching root_path prefix removed."""
    assert asgi_route_path(asgi(path=path, root_path=root)) == route


def test_asgi_log_path() -> None:
    """The logged path is the raw path as received, else the decoded path."""
    assert asgi_log_path(asgi(raw_path=b"/webhooks/%75pvest")) == "/webhooks/%75pvest"
    assert asgi_log_path(asgi(raw_path=None, path="/a b")) == "/a b"


def test_default_paths_are_valid() -> None:
    """The default protected path compiles and matches the documented webhook path."""
    assert PathMatcher.create(DEFAULT_PATHS)("/webhooks/upvest")
