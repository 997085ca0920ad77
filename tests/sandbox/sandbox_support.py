"""Support code for the emulator tests: a signed API client, recording receivers, servers.

Every server binds 127.0.0.1 on a free port, runs in a daemon thread and stops when
its context ends. Imported by the test modules (not a test module itself).
"""

from __future__ import annotations

import contextlib
import json
import socket
import ssl
import threading
import time
import urllib.parse
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from upvest_verify import KeySet, Policy, VerifiedWebhook, Verifier
from upvest_verify.sandbox import Delivery, Sandbox, Tenant
from upvest_verify.signing import sign_request, sign_upvest_request

STARTUP_TIMEOUT = 15.0
"""Seconds a server may take to start or stop; a bound, never a speed assertion."""


# --------------------------------------------------------------------------- the API client


class ApiClient:
    """A minimal signed management client: Upvest's v15 request profile, or v6."""

    def __init__(self, sandbox: Sandbox, tenant: Tenant | None = None, *, v6: bool = False):
        self.sandbox = sandbox
        self.tenant = tenant or sandbox.tenant
        self.v6 = v6
        self.http = httpx.Client(trust_env=False, timeout=STARTUP_TIMEOUT)

    def close(self) -> None:
        """Close the connection pool."""
        self.http.close()

    def headers(self, token: str | None = None, **extra: str) -> list[tuple[str, str]]:
        """The headers of an API call (before signing)."""
        pairs = [
            ("accept", "application/json"),
            ("upvest-client-id", self.tenant.client_id),
            ("upvest-api-version", "1"),
        ]
        if token is not None:
            pairs.append(("authorization", f"Bearer {token}"))
        pairs += [(k.replace("_", "-"), v) for k, v in extra.items()]
        return pairs

    def send(
        self,
        method: str,
        path: str,
        *,
        token: str | None = None,
        body: bytes = b"",
        headers: Sequence[tuple[str, str]] | None = None,
    ) -> httpx.Response:
        """Sign and send one request."""
        url = self.sandbox.base_url + path
        pairs = list(headers) if headers is not None else self.headers(token)
        key = self.tenant.signing_key
        if self.v6:
            # Upvest v6: unquoted base, Digest, no upvest-signature-version field.
            names = ["@method", "@path", *(["@query"] if "?" in path else [])]
            names += [k.lower() for k, _ in pairs]
            signed = sign_request(
                method, url, pairs, body, key=key, components=names, layout="upvest-v6", ttl=10
            )
        else:
            signed = sign_upvest_request(method, url, pairs, body, key=key)
        return self.http.request(method, url, headers=signed.headers, content=signed.body)

    def token_response(self, scope: str = "webhooks:admin", **form: str) -> httpx.Response:
        """``POST /auth/token`` with the tenant's credentials (``form`` overrides fields)."""
        fields = {
            "client_id": self.tenant.client_id,
            "client_secret": self.tenant.client_secret,
            "grant_type": "client_credentials",
            "scope": scope,
            **form,
        }
        body = urllib.parse.urlencode(fields).encode()
        headers = [*self.headers(), ("content-type", "application/x-www-form-urlencoded")]
        return self.send("POST", "/auth/token", body=body, headers=headers)

    def token(self, scope: str = "webhooks:admin") -> str:
        """An access token for ``scope``."""
        response = self.token_response(scope)
        assert response.status_code == 200, response.text
        return str(response.json()["access_token"])

    def json(
        self, method: str, path: str, doc: Any = None, *, token: str | None = None
    ) -> httpx.Response:
        """An API call with a JSON body (or none)."""
        if doc is None:
            return self.send(method, path, token=token)
        body = json.dumps(doc).encode()
        headers = [*self.headers(token), ("content-type", "application/json")]
        return self.send(method, path, token=token, body=body, headers=headers)


def assert_problem(response: httpx.Response, status: int, detail: str | None = None) -> None:
    """An ``application/problem+json`` answer shaped like Upvest's ``Error`` schema."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    doc = response.json()
    assert set(doc) <= {"type", "status", "title", "detail", "instance", "request_id"}
    assert doc["status"] == status
    assert doc["request_id"] == response.headers["upvest-request-id"]
    if detail is not None:
        assert doc["detail"] == detail


# --------------------------------------------------------------------------- receivers


@dataclass
class Received:
    """One request a recording receiver got."""

    method: str
    target: str
    headers: list[tuple[str, str]]
    body: bytes

    def json(self) -> Any:
        """The body as JSON."""
        return json.loads(self.body)


@dataclass
class Recorder:
    """A receiver recording every request and answering from a script.

    ``statuses`` are answered in order, then 200 for ever. While ``gate`` is given and
    not set, every request is answered 500 (a receiver that is down until released).
    Serve it with :func:`serve`.
    """

    statuses: list[int] = field(default_factory=list)
    gate: threading.Event | None = None
    requests: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def answer(self, received: Received) -> int:
        """Record a request and pick its status."""
        with self.lock:
            self.requests.append(received)
            if self.gate is not None and not self.gate.is_set():
                return 500
            return self.statuses.pop(0) if self.statuses else 200


class _RecorderHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as a real receiver
    recorder: Recorder

    def do_POST(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length)
        received = Received(self.command, self.path, list(self.headers.items()), body)
        status = self.recorder.answer(received)
        self.send_response(status)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        """Keep the test output clean."""


@contextlib.contextmanager
def serve(recorder: Recorder, *, certfile: str | None = None) -> Iterator[int]:
    """Serve a recorder on 127.0.0.1 (HTTPS with ``certfile``) in a thread; yield its port."""
    handler = type("Handler", (_RecorderHandler,), {"recorder": recorder})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    if certfile is not None:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(certfile)
        server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(STARTUP_TIMEOUT)
        assert not thread.is_alive(), "the recorder did not stop"


def verify_received(received: Received, origin: str, keys: KeySet) -> VerifiedWebhook:
    """Verify a recorded request with this library's verifier (raises if it fails)."""
    verifier = Verifier(keys, policy=Policy(require_nonce=True))
    return verifier.verify(
        received.method, origin + received.target, received.headers, received.body
    )


def payload_ids(delivery: Delivery) -> list[str]:
    """The event ids in a delivery's body."""
    return [e["id"] for e in json.loads(delivery.body)["payload"]]


# --------------------------------------------------------------------------- servers


@contextlib.contextmanager
def run_uvicorn(app: Any, **options: Any) -> Iterator[int]:
    """Serve an ASGI app with uvicorn on 127.0.0.1 in a thread; yield its port."""
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    settings: dict[str, Any] = {
        "log_level": "warning",
        "access_log": False,
        "lifespan": "off",
        "ws": "none",
        "http": "h11",
        "proxy_headers": False,
        "timeout_graceful_shutdown": 2,
    }
    settings.update(options)
    server = uvicorn.Server(uvicorn.Config(app, **settings))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                pytest.fail("uvicorn did not start")
            time.sleep(0.01)
        yield port
    finally:
        server.should_exit = True
        thread.join(STARTUP_TIMEOUT)
        sock.close()
        assert not thread.is_alive(), "uvicorn did not stop"


@contextlib.contextmanager
def run_werkzeug(app: Any) -> Iterator[int]:
    """Serve a WSGI app with Werkzeug's threaded server on 127.0.0.1; yield its port."""
    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_port
    finally:
        server.shutdown()
        thread.join(STARTUP_TIMEOUT)
        server.server_close()
        assert not thread.is_alive(), "werkzeug did not stop"
