"""URLKeySource: its pure rules directly, and its urllib and httpx drivers against real loopback servers."""

from __future__ import annotations

import asyncio
import json
import ssl
import subprocess
import sys
from pathlib import Path

import pytest

from upvest_verify import ConfigurationError, JWKSError
from upvest_verify.jwks import URLKeySource
from upvest_verify.jwks._http import (
    add_chunk,
    check_length,
    check_status,
    check_url,
    fetch_result,
    is_loopback,
    origin,
    redirect_target,
    request_headers,
)

from .jwks_support import JWKKey, JWKSServer, jwks, running_server, self_signed_tls

SRC = Path(__file__).resolve().parents[2] / "src"


def _source(server: JWKSServer, **kwargs: object) -> URLKeySource:
    return URLKeySource(server.url, allow_insecure_loopback=True, **kwargs)  # type: ignore[arg-type]


# ---- pure rules -------------------------------------------------------------------------------


def test_origin_lowercases_and_fills_in_default_ports() -> None:
    """An origin is (scheme, host, port), case-insensitive, with 443/80 filled in."""
    assert origin("HTTPS://API.Upvest.co/x") == ("https", "api.upvest.co", 443)
    assert origin("http://127.0.0.1/x") == ("http", "127.0.0.1", 80)
    assert origin("https://h:8443/x") == ("https", "h", 8443)


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("localhost", True),
        ("127.0.0.1", True),
        ("127.255.0.9", True),
        ("::1", True),
        ("10.0.0.1", False),
        ("localhost.example", False),
        ("api.upvest.co", False),
    ],
)
def test_is_loopback(host: str, expected: bool) -> None:
    """Only localhost, 127.0.0.0/8 and ::1 count as loopback."""
    assert is_loopback(host) is expected


def test_check_url_drops_the_fragment_and_flags_loopback_http() -> None:
    """check_url returns the URL to fetch and whether it is plain HTTP to loopback."""
    assert check_url("https://h/k#frag", allow_insecure_loopback=False) == ("https://h/k", False)
    assert check_url("https://127.0.0.1/k", allow_insecure_loopback=True) == (
        "https://127.0.0.1/k",
        False,
    )
    assert check_url("http://[::1]:8/k", allow_insecure_loopback=True) == ("http://[::1]:8/k", True)


@pytest.mark.parametrize(
    ("location", "expected"),
    [
        ("/other", "https://h/other"),
        ("other", "https://h/a/other"),
        ("https://H:443/x", "https://H:443/x"),
    ],
)
def test_redirect_target_within_the_origin(location: str, expected: str) -> None:
    """Relative and same-origin absolute redirects resolve against the URL that answered."""
    assert redirect_target("https://h/a/b", location, 302) == expected


@pytest.mark.parametrize(
    "location", ["http://h/a", "https://h:8443/a", "https://evil.example/a", "//evil.example/a"]
)
def test_redirect_target_to_another_origin_is_refused(location: str) -> None:
    """A redirect to another scheme, port or host is an OSError (F11)."""
    with pytest.raises(OSError, match="another origin"):
        redirect_target("https://h/a", location, 301)


def test_status_and_length_checks() -> None:
    """Only 200 is a key set; a declared length above the cap is refused, garbage ignored."""
    check_status("https://h/k", 200)
    with pytest.raises(OSError, match="HTTP 203"):
        check_status("https://h/k", 203)
    check_length("100", 100)
    check_length(None, 100)
    check_length("lots", 100)
    with pytest.raises(JWKSError, match="declares 101 bytes"):
        check_length(" 101 ", 100)


def test_add_chunk_caps_the_body_inclusively() -> None:
    """Chunks are appended up to max_bytes; the first byte past it abandons the body (F7)."""
    body = bytearray()
    add_chunk(body, b"x" * 60, 100)
    add_chunk(body, b"x" * 40, 100)
    assert len(body) == 100
    with pytest.raises(JWKSError, match="larger than max_bytes=100"):
        add_chunk(body, b"x", 100)


def test_request_headers_and_fetch_result() -> None:
    """Requests ask for uncompressed JSON; several Cache-Control lines are read as one."""
    assert request_headers() == {
        "Accept": "application/json",
        "Accept-Encoding": "identity",
        "User-Agent": "upvest-verify",
    }
    result = fetch_result(b"{}", ["public", "max-age=120"], "20")
    assert (result.body, result.max_age) == (b"{}", 100.0)
    assert fetch_result(b"{}", [], None).max_age is None


# ---- URLKeySource configuration (K1, F11) ----------------------------------------------


@pytest.mark.parametrize(
    ("url", "kwargs"),
    [
        ("http://api.upvest.co/auth/verify_keys", {}),
        ("http://api.upvest.co/auth/verify_keys", {"allow_insecure_loopback": True}),
        ("http://127.0.0.1:8080/auth/verify_keys", {}),
        ("http://10.0.0.1/auth/verify_keys", {"allow_insecure_loopback": True}),
        ("file:///etc/passwd", {"allow_insecure_loopback": True}),
        ("ftp://127.0.0.1/jwks", {"allow_insecure_loopback": True}),
        ("https:///no-host", {}),
        ("https://user:secret@api.upvest.co/auth/verify_keys", {}),
        ("https://api.upvest.co:99999/auth/verify_keys", {}),
        ("https://api.upvest.co/auth/verify_keys", {"timeout": 0}),
        ("https://api.upvest.co/auth/verify_keys", {"timeout": float("inf")}),
        ("https://api.upvest.co/auth/verify_keys", {"max_bytes": 0}),
    ],
    ids=[
        "http",
        "http-not-loopback-with-flag",
        "http-loopback-without-flag",
        "http-private-ip",
        "file",
        "ftp",
        "no-host",
        "credentials",
        "bad-port",
        "zero-timeout",
        "infinite-timeout",
        "zero-max-bytes",
    ],
)
def test_url_source_refuses_unsafe_configuration(url: str, kwargs: dict[str, object]) -> None:
    """Only https (or http to loopback when explicitly allowed) with sane limits is accepted."""
    with pytest.raises(ConfigurationError):
        URLKeySource(url, **kwargs)  # type: ignore[arg-type]


def test_url_source_refuses_unverified_tls_context() -> None:
    """A TLS context that skips certificate or host-name checks is refused."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with pytest.raises(ConfigurationError, match="verify"):
        URLKeySource("https://api.upvest.co/auth/verify_keys", ssl_context=ctx)


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:1/x", "http://localhost:1/x", "http://[::1]:1/x"]
)
def test_url_source_accepts_loopback_http_with_flag(url: str) -> None:
    """Plain http is allowed to loopback addresses when allow_insecure_loopback is set."""
    assert URLKeySource(url, allow_insecure_loopback=True).url == url


def test_url_source_drops_fragment() -> None:
    """A fragment is never sent."""
    source = URLKeySource("https://api.upvest.co/auth/verify_keys#x")
    assert source.url == "https://api.upvest.co/auth/verify_keys"
    assert repr(source) == "URLKeySource('https://api.upvest.co/auth/verify_keys')"


# ---- URLKeySource fetching --------------------------------------------------------------


def test_fetch_returns_body_and_max_age(server: JWKSServer, key_a: JWKKey) -> None:
    """A sync fetch returns the served body and the Cache-Control/Age lifetime."""
    server.rotate(key_a)
    server.cache_control = "public, max-age=120"
    server.age = "20"
    result = _source(server).fetch()
    assert json.loads(result.body) == jwks(key_a)
    assert result.max_age == 100.0
    assert server.requests == 1


def test_afetch_returns_body_and_max_age(server: JWKSServer, key_a: JWKKey) -> None:
    """An async fetch (httpx) returns the served body and the Cache-Control lifetime."""
    server.rotate(key_a)
    server.cache_control = "max-age=90"
    result = asyncio.run(_source(server).afetch())
    assert json.loads(result.body) == jwks(key_a)
    assert result.max_age == 90.0


def test_afetch_without_httpx_uses_a_thread(
    server: JWKSServer, key_a: JWKKey, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without httpx the async fetch runs the urllib fetch in a worker thread."""
    monkeypatch.setitem(sys.modules, "httpx", None)
    server.rotate(key_a)
    result = asyncio.run(_source(server).afetch())
    assert json.loads(result.body) == jwks(key_a)


@pytest.mark.parametrize("run", ["sync", "async"])
def test_http_error_status_is_oserror(server: JWKSServer, run: str) -> None:
    """A 500 from the key endpoint is reported as OSError."""
    server.mode = "error"
    source = _source(server)
    with pytest.raises(OSError, match="HTTP 500"):
        source.fetch() if run == "sync" else asyncio.run(source.afetch())


@pytest.mark.parametrize("run", ["sync", "async"])
def test_hanging_endpoint_times_out(server: JWKSServer, run: str) -> None:
    """An endpoint that stalls past the timeout is abandoned with a TimeoutError (F6)."""
    server.mode = "hang"
    server.hang_seconds = 2.0
    source = _source(server, timeout=0.3)
    with pytest.raises(TimeoutError, match="timed out"):
        source.fetch() if run == "sync" else asyncio.run(source.afetch())


@pytest.mark.parametrize("run", ["sync", "async"])
def test_non_200_success_status_is_refused(server: JWKSServer, run: str) -> None:
    """Only 200 carries a key set; a 204 is a failed fetch."""
    server.mode = "no-content"
    source = _source(server)
    with pytest.raises(OSError, match="HTTP 204"):
        source.fetch() if run == "sync" else asyncio.run(source.afetch())


@pytest.mark.parametrize("run", ["sync", "async"])
@pytest.mark.parametrize("mode", ["drip", "stall-body"])
def test_slow_body_is_abandoned(server: JWKSServer, key_a: JWKKey, run: str, mode: str) -> None:
    """A body that stalls, or trickles in slower than the total timeout, is abandoned (F6)."""
    server.rotate(key_a)
    server.mode = mode
    server.hang_seconds = 3.0
    source = _source(server, timeout=0.3)
    with pytest.raises(TimeoutError, match="timed out"):
        source.fetch() if run == "sync" else asyncio.run(source.afetch())


@pytest.mark.parametrize("run", ["sync", "async"])
def test_non_http_answer_is_oserror(server: JWKSServer, run: str) -> None:
    """A peer that does not speak HTTP is a plain OSError, never a foreign exception type."""
    server.mode = "bad-status"
    source = _source(server)
    with pytest.raises(OSError, match="failed"):
        source.fetch() if run == "sync" else asyncio.run(source.afetch())


@pytest.mark.parametrize("run", ["sync", "async"])
@pytest.mark.parametrize("mode", ["oversized", "endless"])
def test_oversized_body_is_refused(server: JWKSServer, run: str, mode: str) -> None:
    """A body above max_bytes, declared or streamed without a length, is refused (F7)."""
    server.mode = mode
    source = _source(server, max_bytes=65536)
    with pytest.raises(JWKSError, match="max_bytes"):
        source.fetch() if run == "sync" else asyncio.run(source.afetch())


@pytest.mark.parametrize("run", ["sync", "async"])
def test_body_at_exactly_max_bytes_is_accepted(server: JWKSServer, run: str) -> None:
    """The cap is inclusive: a body of exactly max_bytes is read in full."""
    server.mode = "oversized"
    server.oversize = 100
    size = len(b'{"keys":[]}') + 100
    source = _source(server, max_bytes=size)
    result = source.fetch() if run == "sync" else asyncio.run(source.afetch())
    assert len(result.body) == size


@pytest.mark.parametrize("run", ["sync", "async"])
def test_redirect_to_same_origin_is_followed(server: JWKSServer, key_a: JWKKey, run: str) -> None:
    """A redirect to the same scheme, host and port is followed."""
    server.rotate(key_a)
    server.mode = "redirect-once"
    server.redirect_to = "/other"
    source = _source(server)
    result = source.fetch() if run == "sync" else asyncio.run(source.afetch())
    assert json.loads(result.body) == jwks(key_a)
    assert server.paths == ["/auth/verify_keys", "/other"]


@pytest.mark.parametrize("run", ["sync", "async"])
@pytest.mark.parametrize("target", ["other-port", "other-host", "other-scheme"])
def test_redirect_to_another_origin_is_refused(server: JWKSServer, run: str, target: str) -> None:
    """A redirect to another port, host or scheme is refused and never followed (F11)."""
    with running_server() as other:
        server.mode = "redirect"
        server.redirect_to = {
            "other-port": other.url,
            "other-host": f"http://localhost:{server.port}/auth/verify_keys",
            "other-scheme": f"https://127.0.0.1:{server.port}/auth/verify_keys",
        }[target]
        source = _source(server)
        with pytest.raises(OSError, match="another origin"):
            source.fetch() if run == "sync" else asyncio.run(source.afetch())
        assert other.requests == 0
        assert server.requests == 1


@pytest.mark.parametrize("run", ["sync", "async"])
def test_endless_redirects_are_bounded(server: JWKSServer, run: str) -> None:
    """A same-origin redirect loop ends with an error after a few hops."""
    server.mode = "redirect"
    server.redirect_to = "/auth/verify_keys"
    source = _source(server)
    with pytest.raises(OSError, match="too many redirects"):
        source.fetch() if run == "sync" else asyncio.run(source.afetch())
    assert 2 <= server.requests <= 5


@pytest.mark.parametrize("run", ["sync", "async"])
def test_connection_refused_is_oserror(run: str) -> None:
    """Nothing listening is a plain OSError."""
    with running_server() as srv:
        url = srv.url
    source = URLKeySource(url, allow_insecure_loopback=True, timeout=1)
    with pytest.raises(OSError, match=r"(?i)refused|connect"):
        source.fetch() if run == "sync" else asyncio.run(source.afetch())


@pytest.mark.parametrize("run", ["sync", "async"])
def test_self_signed_tls_is_a_fetch_failure(tmp_path: Path, key_a: JWKKey, run: str) -> None:
    """A certificate the trust store does not know fails the fetch; verification stays on (F12)."""
    server_ctx, client_ctx = self_signed_tls(tmp_path)
    with running_server(tls=server_ctx) as srv:
        srv.rotate(key_a)
        source = URLKeySource(srv.url)
        with pytest.raises(OSError, match=r"(?i)certificate"):
            source.fetch() if run == "sync" else asyncio.run(source.afetch())
        # With the certificate trusted explicitly the same server works.
        trusted = URLKeySource(srv.url, ssl_context=client_ctx)
        result = trusted.fetch() if run == "sync" else asyncio.run(trusted.afetch())
        assert json.loads(result.body) == jwks(key_a)


@pytest.mark.parametrize("use_httpx", [True, False], ids=["httpx", "thread"])
def test_afetch_never_blocks_the_event_loop(
    server: JWKSServer, use_httpx: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While an async fetch waits on a hanging endpoint, other tasks keep running."""
    if not use_httpx:
        monkeypatch.setitem(sys.modules, "httpx", None)
    server.mode = "hang"
    server.hang_seconds = 2.0
    source = _source(server, timeout=0.5)
    order: list[str] = []

    async def fetch() -> None:
        with pytest.raises(TimeoutError, match="timed out"):
            await source.afetch()
        order.append("fetch done")

    async def other() -> None:
        order.append("other ran")

    async def main() -> None:
        fetching = asyncio.create_task(fetch())
        await asyncio.sleep(0)  # the fetch starts; a blocking fetch would finish here
        await asyncio.gather(fetching, other())

    asyncio.run(main())
    assert order == ["other ran", "fetch done"]


def test_importing_jwks_does_not_import_httpx_or_anyio() -> None:
    """httpx and anyio are imported lazily, never by importing upvest_verify.jwks."""
    code = (
        "import sys, upvest_verify.jwks; "
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in "
        "('httpx', 'anyio', 'starlette', 'fastapi', 'flask', 'django', 'redis')); "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        env={"PYTHONPATH": str(SRC)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_importing_the_package_defers_asyncio_ssl_and_urllib() -> None:
    """asyncio, ssl, http.client and urllib.request load on first fetch, not on import."""
    code = (
        "import sys, upvest_verify, upvest_verify.jwks; "
        "bad = [m for m in ('asyncio', 'ssl', 'http.client', 'urllib.request') "
        "if m in sys.modules]; print(bad); sys.exit(1 if bad else 0)"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        env={"PYTHONPATH": str(SRC)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
