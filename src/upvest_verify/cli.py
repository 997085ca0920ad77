"""The ``upvest-verify`` command line.

``upvest-verify demo`` runs the whole flow on this machine: a key endpoint
serving a JWKS on loopback, a receiver verifying through a rotating key cache,
and a sender signing webhooks in each dialect, then tampering with them.

``upvest-verify verify`` checks a captured raw HTTP request against a JWKS and
reports which dialect matched, or why it failed.
"""

from __future__ import annotations

import json
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, cast

try:
    import click
    from rich.console import Console
    from rich.table import Table
except ImportError:  # pragma: no cover - exercised only without the [cli] extra
    _HAVE_CLI = False
else:
    _HAVE_CLI = True

from . import __version__
from ._keyset import KeySet
from ._policy import Policy
from .errors import ConfigurationError, VerificationError
from .jwks import JWKSCache, URLKeySource, load_jwks
from .testing import SignedWebhook, SigningKey, generate_key, make_jwks, sample_events, sign_webhook
from .verifier import Verifier

__all__ = ["main"]

_INSTALL_HINT = "the command line needs its extra: pip install 'upvest-verify[cli]'"


class _Quiet(BaseHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Keep the demo output clean."""


@contextmanager
def _serve(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    """Run an HTTP server on 127.0.0.1 (ephemeral port) in a thread; yield its origin."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def _key_endpoint(jwks: Callable[[], dict[str, Any]]) -> type[BaseHTTPRequestHandler]:
    class KeyEndpoint(_Quiet):
        def do_GET(self) -> None:
            body = json.dumps(jwks()).encode()
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    return KeyEndpoint


def _receiver(verifier: Verifier) -> type[BaseHTTPRequestHandler]:
    class Receiver(_Quiet):
        def do_POST(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            body = self.rfile.read(length)
            # The raw request target (self.path), never a decoded path: @path is signed raw.
            host, port = cast("tuple[str, int]", self.server.server_address)[:2]
            url = f"http://{host!s}:{port}"
            try:
                webhook = verifier.verify("POST", url + self.path, self.headers.items(), body)
            except VerificationError as e:
                status, doc = e.status_code, {"status": e.status_code, "detail": e.reason.value}
                ctype = "application/problem+json"
            else:
                status, ctype = 200, "application/json"
                doc = {"dialect": str(webhook.dialect), "events": len(webhook.events)}
            out = json.dumps(doc).encode()
            self.send_response(status)
            self.send_header("content-type", ctype)
            self.send_header("content-length", str(len(out)))
            self.end_headers()
            self.wfile.write(out)

    return Receiver


def _deliver(signed: SignedWebhook) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(  # noqa: S310 - loopback URL built above
        signed.url, data=signed.body, method=signed.method, headers=dict(signed.headers)
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def _tamper(signed: SignedWebhook) -> SignedWebhook:
    # Same length, one amount changed: what a man in the middle would do.
    return signed.replace_body(signed.body.replace(b'"balance":"100.25"', b'"balance":"900.25"'))


def _publish(published: list[SigningKey], key: SigningKey) -> None:
    published.append(key)
    time.sleep(1.1)  # let the demo cache's 1 s refetch cooldown pass


@dataclass(frozen=True, slots=True)
class _Case:
    title: str
    expect: str
    make: Callable[[], SignedWebhook]
    before: Callable[[], None] | None = None


def run_demo(console: Console) -> bool:
    """Run the end-to-end demo and print a table; return whether every case behaved."""
    current = generate_key()
    published: list[SigningKey] = [current]
    with _serve(_key_endpoint(lambda: make_jwks(*published))) as key_origin:
        source = URLKeySource(key_origin + "/auth/verify_keys", allow_insecure_loopback=True)
        cache = JWKSCache(source, ttl=300, refresh_cooldown=1)
        verifier = Verifier(cache, policy=Policy(skew=60, max_age=300))
        with _serve(_receiver(verifier)) as origin:
            url = origin + "/webhooks/upvest?tenant=demo"
            rotated = generate_key()
            stranger = generate_key()

            def sign(key: SigningKey = current, **kwargs: Any) -> SignedWebhook:
                return sign_webhook(sample_events(3), key=key, url=url, **kwargs)

            cases = [
                _Case("Upvest v6 base, DER, Digest", "200", sign),
                _Case(
                    "RFC 9421 base, raw r||s, Content-Digest",
                    "200",
                    lambda: sign(dialect="rfc9421", encoding="raw"),
                ),
                _Case(
                    "Amount changed in transit",
                    "digest_mismatch",
                    lambda: _tamper(sign()),
                ),
                _Case(
                    "Replayed 15 minutes later",
                    "expired",
                    lambda: sign(created=int(time.time()) - 900),
                ),
                _Case(
                    "Body digest not covered",
                    "missing_component",
                    lambda: sign(components=["@method", "@path", "@query"]),
                ),
                _Case(
                    "Key rotated upstream (one refetch)",
                    "200",
                    lambda: sign(key=rotated),
                    # Refetches on an unknown kid are rate-limited (here 1 s; 30 s by default).
                    before=lambda: _publish(published, rotated),
                ),
                _Case("Signed by an unpublished key", "unknown_key", lambda: sign(stranger)),
            ]
            table = Table(title=f"upvest-verify {__version__}: end-to-end demo on 127.0.0.1")
            for column in ("#", "scenario", "HTTP", "verdict", "check"):
                table.add_column(column, no_wrap=column != "scenario")
            ok = True
            for i, case in enumerate(cases, 1):
                if case.before is not None:
                    case.before()
                status, doc = _deliver(case.make())
                result = doc.get("dialect") or doc.get("detail", "?")
                passed = str(status) == case.expect or result == case.expect
                ok &= passed
                mark = "[green]ok[/]" if passed else f"[red]expected {case.expect}[/]"
                table.add_row(str(i), case.title, str(status), str(result), mark)
            console.print(table)
            stats = cache.stats
            console.print(
                f"key endpoint: {stats.fetches} fetches, {stats.failures} failures, "
                f"{stats.unknown_kid_refusals} unknown-kid refusals "
                f"(key set now {sorted(k[:8] for k in cache.current())})"
            )
    return ok


def _parse_raw_request(data: bytes) -> tuple[str, str, list[tuple[str, str]], bytes]:
    head, sep, body = data.partition(b"\r\n\r\n")
    if not sep:
        head, _, body = data.partition(b"\n\n")
    lines = head.decode("latin-1").splitlines()
    if not lines:
        raise ValueError("empty request")
    method, target, *_ = lines[0].split(" ")
    headers: list[tuple[str, str]] = []
    for line in lines[1:]:
        if line[:1] in (" ", "\t") and headers:  # obs-fold continuation
            name, value = headers[-1]
            headers[-1] = (name, value + "\r\n" + line)
            continue
        name, colon, value = line.partition(":")
        if not colon:
            raise ValueError(f"bad header line: {line!r}")
        headers.append((name.strip(), value.strip()))
    return method, target, headers, body


def _load_jwks(value: str) -> KeySet:
    # One rule for text vs path (load_jwks): "{..." is JSON text, anything else a file.
    try:
        return KeySet.from_jwks(load_jwks(value))
    except ConfigurationError as e:
        raise click.BadParameter(str(e), param_hint="'--jwks'") from e


def _build_cli() -> Any:
    @click.group()
    @click.version_option(__version__, prog_name="upvest-verify")
    def cli() -> None:
        """Verify Upvest webhook signatures (HTTP Message Signatures, ECDSA P-521)."""

    @cli.command()
    def demo() -> None:
        """Run key endpoint, receiver and sender on 127.0.0.1 and show each verdict."""
        console = Console()
        if not run_demo(console):
            console.print("[red]some scenarios did not behave as expected[/]")
            sys.exit(1)
        console.print("[green]all scenarios behaved as expected[/]")

    @cli.command()
    @click.argument("request_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
    @click.option("--jwks", required=True, help="JWKS file, or JSON text starting with '{'.")
    @click.option("--base-url", help="Scheme and authority the request was sent to.")
    @click.option("--now", type=float, help="Unix time to verify at (default: now).")
    @click.option("--skew", type=float, default=60.0, show_default=True)
    @click.option("--max-age", type=float, default=300.0, show_default=True)
    def verify(
        request_file: Path,
        jwks: str,
        base_url: str | None,
        now: float | None,
        skew: float,
        max_age: float,
    ) -> None:
        """Verify a captured raw HTTP request (request line, headers, blank line, body)."""
        console = Console()
        method, target, headers, body = _parse_raw_request(request_file.read_bytes())
        if base_url is None:
            host = next((v for k, v in headers if k.lower() == "host"), None)
            base_url = f"https://{host}" if host else ""
        url = base_url.rstrip("/") + target if base_url else target
        policy = Policy(skew=skew, max_age=max_age)
        verifier = Verifier(
            _load_jwks(jwks), policy=policy, clock=(lambda: now) if now else time.time
        )
        try:
            webhook = verifier.verify(method, url, headers, body)
        except VerificationError as e:
            console.print(f"[red]rejected[/] {e.reason.value} (HTTP {e.status_code}): {e.message}")
            sys.exit(1)
        console.print(
            f"[green]verified[/] key {webhook.key_id}, label {webhook.label}, "
            f"dialect {webhook.dialect}, covers {' '.join(webhook.covered_components)}"
        )

    return cli


def main() -> None:
    """Console-script entry point."""
    if not _HAVE_CLI:  # pragma: no cover
        sys.stderr.write(_INSTALL_HINT + "\n")
        sys.exit(2)
    _build_cli()()
