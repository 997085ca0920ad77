"""Helpers for the key-cache tests: P-521 JWKs, a fake monotonic clock, a loopback JWKS server."""

from __future__ import annotations

import base64
import datetime
import ipaddress
import json
import ssl
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from upvest_verify.testing import ManualClock as FakeClock  # noqa: F401  # re-exported

# Upper bound for every wait in these tests: reached only when something is broken.
BOUND = 10.0


def b64url(data: bytes) -> str:
    """Unpadded base64url."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


@dataclass(frozen=True)
class JWKKey:
    """A private key and its public JWK (built by hand: 66-byte P-521 coordinates)."""

    kid: str
    private_key: ec.EllipticCurvePrivateKey = field(repr=False)
    jwk: dict[str, str] = field(repr=False)


_CURVES: dict[str, tuple[ec.EllipticCurve, int]] = {
    "P-521": (ec.SECP521R1(), 66),
    "P-256": (ec.SECP256R1(), 32),
    "P-384": (ec.SECP384R1(), 48),
}


def make_key(kid: str | None = None, crv: str = "P-521") -> JWKKey:
    """Generate an EC key and its JWK (``kty=EC``, unpadded base64url coordinates)."""
    curve, size = _CURVES[crv]
    private = ec.generate_private_key(curve)
    numbers = private.public_key().public_numbers()
    kid = kid or str(uuid.uuid4())
    jwk = {
        "kid": kid,
        "kty": "EC",
        "crv": crv,
        "x": b64url(numbers.x.to_bytes(size, "big")),
        "y": b64url(numbers.y.to_bytes(size, "big")),
    }
    return JWKKey(kid, private, jwk)


def jwks(*keys: JWKKey) -> dict[str, Any]:
    """A JWKS document holding these keys."""
    return {"keys": [k.jwk for k in keys]}


def wait_until(predicate: Callable[[], bool], bound: float = BOUND) -> bool:
    """Poll ``predicate`` until true or ``bound`` seconds passed; return its last value."""
    deadline = time.monotonic() + bound
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.005)
    return True


class JWKSServer:
    """A real HTTP server on 127.0.0.1 serving a JWKS the test controls.

    Attributes:
        document: The JWKS served (``rotate()`` replaces it).
        mode: ``"ok"``, ``"error"`` (500), ``"hang"`` (sleep ``hang_seconds``, then
            answer), ``"garbage"``, ``"oversized"`` (with Content-Length),
            ``"endless"`` (chunked, no length), ``"redirect"`` (to ``redirect_to``),
            ``"redirect-once"`` (redirect the next request only), ``"no-content"``
            (204), ``"drip"`` (the body a byte per 50 ms), ``"stall-body"`` (part of the
            body, then silence), ``"bad-status"`` (not an HTTP response),
            ``"unauthorized"`` (401 with a Bearer challenge).
        gate: When set, each request waits (bounded) until ``release()`` before answering.
            A request answers with the document served when it *arrived*, so a key
            published while it waits is not in its answer.
        cache_control: ``Cache-Control`` value to send, if any.
        raw: When set, the exact body served instead of ``document`` (mode ``"ok"``).
        on_request: When set, called with each request's number (1, 2, ...) before it
            is answered, e.g. to hold one particular request.
        requests: Number of requests received.
        answered: Number of requests that got past the gate and the hang (answering began).
    """

    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        self.document: dict[str, Any] = {"keys": []}
        self.mode = "ok"
        self.hang_seconds = 2.0
        self.cache_control: str | None = None
        self.raw: bytes | None = None
        self.on_request: Callable[[int], object] | None = None
        self.age: str | None = None
        self.redirect_to = ""
        self.oversize = 200_000
        self.gated = False
        self._release = threading.Event()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self.requests = 0
        self.answered = 0
        self.arrived = threading.Event()  # set when a request arrives
        self.paths: list[str] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                server._handle(self)

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request: Any, client_address: Any) -> None:
                pass  # clients that gave up (timeouts) break the pipe: expected

        self._httpd = Server(("127.0.0.1", 0), Handler)
        if tls is not None:
            self._httpd.socket = tls.wrap_socket(self._httpd.socket, server_side=True)
        self.port = self._httpd.server_address[1]
        scheme = "https" if tls is not None else "http"
        self.origin = f"{scheme}://127.0.0.1:{self.port}"
        self.url = f"{self.origin}/auth/verify_keys"
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    def start(self) -> JWKSServer:
        """Start serving in a daemon thread."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Release every waiting handler and stop the server."""
        self._stop.set()
        self._release.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(BOUND)

    def rotate(self, *keys: JWKKey) -> None:
        """Serve a JWKS with exactly these keys from now on."""
        self.document = jwks(*keys)

    def gate(self) -> None:
        """Make requests wait until ``release()`` (bounded by BOUND)."""
        self._release.clear()
        self.arrived.clear()
        self.gated = True

    def release(self) -> None:
        """Let gated requests answer."""
        self.gated = False
        self._release.set()

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        with self._lock:
            self.requests += 1
            self.paths.append(handler.path)
            document = self.document
            raw = self.raw
            number = self.requests
        self.arrived.set()
        if self.on_request is not None:
            self.on_request(number)
        if self.gated:
            self._release.wait(BOUND)
        with self._lock:
            mode = self.mode
            if mode == "redirect-once":  # redirect this request, serve the next ones
                self.mode = mode = "ok"
                mode = "redirect"
        if mode == "hang":
            self._stop.wait(self.hang_seconds)
            mode = "ok"
        with self._lock:
            self.answered += 1
        if mode == "unauthorized":
            self._send(handler, 401, b'{"error":"invalid_token"}')
        elif mode == "error":
            self._send(handler, 500, b'{"error":"boom"}')
        elif mode == "garbage":
            self._send(handler, 200, b"<html>this is not JSON</html>")
        elif mode == "oversized":
            self._send(handler, 200, b'{"keys":[' + b" " * self.oversize + b"]}")
        elif mode == "endless":
            handler.send_response(200)
            handler.send_header("Content-Type", "application/json")
            handler.send_header("Transfer-Encoding", "chunked")
            handler.end_headers()
            chunk = b" " * 8192
            try:
                for _ in range(1000):  # 8 MB at most: bounded
                    if self._stop.is_set():
                        break
                    handler.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                handler.wfile.write(b"0\r\n\r\n")
            except OSError:
                pass
        elif mode == "no-content":
            self._send(handler, 204, b"")
        elif mode in ("drip", "stall-body"):
            body = json.dumps(document).encode()
            try:
                handler.send_response(200)
                handler.send_header("Content-Length", str(len(body)))
                handler.end_headers()
                handler.wfile.write(body[:10])
                handler.wfile.flush()
                if mode == "stall-body":
                    self._stop.wait(self.hang_seconds)
                else:  # a byte every 50 ms: each read is quick, the whole is slow
                    for i in range(10, min(len(body), 200)):
                        if self._stop.wait(0.05):
                            break
                        handler.wfile.write(body[i : i + 1])
                        handler.wfile.flush()
            except OSError:
                pass
        elif mode == "bad-status":
            try:
                handler.wfile.write(b"NOT-HTTP garbage\r\n\r\n")
                handler.wfile.flush()
            except OSError:
                pass
            handler.close_connection = True
        elif mode == "redirect":
            handler.send_response(302)
            handler.send_header("Location", self.redirect_to)
            handler.send_header("Content-Length", "0")
            handler.end_headers()
        else:
            self._send(handler, 200, raw if raw is not None else json.dumps(document).encode())

    def _send(self, handler: BaseHTTPRequestHandler, status: int, body: bytes) -> None:
        try:
            handler.send_response(status)
            handler.send_header("Content-Type", "application/json")
            handler.send_header("Content-Length", str(len(body)))
            if status == 401:
                handler.send_header("WWW-Authenticate", 'Bearer error="invalid_token"')
            if self.cache_control is not None:
                handler.send_header("Cache-Control", self.cache_control)
            if self.age is not None:
                handler.send_header("Age", self.age)
            handler.end_headers()
            handler.wfile.write(body)
        except OSError:
            pass


@contextmanager
def running_server(tls: ssl.SSLContext | None = None) -> Iterator[JWKSServer]:
    """A started JWKSServer, stopped on exit."""
    server = JWKSServer(tls).start()
    try:
        yield server
    finally:
        server.stop()


def self_signed_tls(directory: Path) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """A server context with a self-signed cert for 127.0.0.1, and a client context trusting it."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    (directory / "cert.pem").write_bytes(cert_pem)
    (directory / "key.pem").write_bytes(key_pem)
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(directory / "cert.pem", directory / "key.pem")
    client_ctx = ssl.create_default_context(cafile=str(directory / "cert.pem"))
    return server_ctx, client_ctx
