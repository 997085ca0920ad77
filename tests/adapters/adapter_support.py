"""Helpers for the adapter tests: signing and sending webhooks, real loopback servers.

Every server binds 127.0.0.1 on an ephemeral port, runs in a daemon thread and
is stopped when its context ends. Imported by the test modules (not a test module).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import http.client
import io
import json
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import pytest

from upvest_verify import Reason
from upvest_verify.testing import SignedWebhook, generate_key

STARTUP_TIMEOUT = 15.0
"""Seconds a server may take to start or stop; a bound, never a speed assertion."""

WEBHOOK_PATH = "/webhooks/upvest"

# One key for the whole session: P-521 key generation is the slow part of fixtures.
SIGNING_KEY = generate_key(kid="adapter-test-key")
OTHER_KEY = generate_key(kid="unknown-to-the-receiver")


# --------------------------------------------------------------------------- sending


def wire_headers(signed: SignedWebhook, *, drop: tuple[str, ...] = ()) -> list[tuple[str, str]]:
    """The signed header lines to put on the wire (the client sets ``Host`` itself)."""
    skip = {"host", *drop}
    return [(k, v) for k, v in signed.headers if k.lower() not in skip]


def chunks(data: bytes, count: int) -> Iterator[bytes]:
    """Split ``data`` into about ``count`` pieces (a generator makes httpx send chunked)."""
    size = max(1, -(-len(data) // count))
    for i in range(0, len(data), size):
        yield data[i : i + size]


def tamper_signature(signed: SignedWebhook) -> SignedWebhook:
    """Flip one bit inside the signature bytes."""
    value = signed.header("signature") or ""
    label, _, rest = value.partition("=:")
    raw = bytearray(base64.b64decode(rest.rstrip(":")))
    raw[-5] ^= 0x01
    return signed.replace_header("signature", f"{label}=:{base64.b64encode(bytes(raw)).decode()}:")


def assert_problem(response: Any, status: int, reason: Reason | str) -> None:
    """Assert an ``application/problem+json`` answer carrying exactly ``reason``."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    document = response.json()
    assert document == {
        "type": "about:blank",
        "title": document["title"],
        "status": status,
        "detail": str(reason),
    }


def raw_request(
    base_url: str,
    method: str,
    target: str,
    headers: list[tuple[str, str]],
    body: bytes = b"",
    *,
    pieces: int = 0,
) -> tuple[int, bytes, dict[str, str]]:
    """Send one request with ``http.client`` (no URL normalisation, target and method as is).

    With ``pieces`` the body goes out in chunked transfer coding, in about that many
    chunks (drop ``content-length`` from ``headers`` then).
    """
    host, port = base_url.split("//", 1)[1].split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=STARTUP_TIMEOUT)
    try:
        conn.putrequest(method, target, skip_accept_encoding=True)
        for name, value in headers:
            conn.putheader(name, value)
        if pieces:
            conn.putheader("transfer-encoding", "chunked")
            conn.endheaders()
            for piece in chunks(body, pieces):
                conn.send(b"%x\r\n%s\r\n" % (len(piece), piece))
            conn.send(b"0\r\n\r\n")
        else:
            conn.endheaders(body or None)
        response = conn.getresponse()
        return response.status, response.read(), {k.lower(): v for k, v in response.getheaders()}
    finally:
        conn.close()


def send_partial_then_close(base_url: str, target: str, headers: list[tuple[str, str]]) -> None:
    """Announce a 1,000-byte body, send half of it and close the connection."""
    host, port = base_url.split("//", 1)[1].split(":")
    with socket.create_connection((host, int(port)), timeout=STARTUP_TIMEOUT) as sock:
        lines = [f"POST {target} HTTP/1.1", f"Host: {host}:{port}", "Content-Length: 1000"]
        lines += [f"{k}: {v}" for k, v in headers if k.lower() != "content-length"]
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + b"{" * 500)


SHORT_BODY = b"{" * 10
"""Ten bytes where ``Content-Length: 1000`` was declared: a body the server ended early."""


def asgi_call(
    app: Any,
    path: str,
    headers: list[tuple[bytes, bytes]],
    messages: Iterable[dict[str, Any]],
    *,
    host: bytes | None = b"127.0.0.1",
    **scope_items: Any,
) -> tuple[int, dict[str, str], bytes]:
    """Drive an ASGI app in-process with one POST whose body comes from ``messages``.

    After the messages run out, ``receive()`` waits for a disconnect that never
    comes, as a real server would; the app must answer before that. ``host=None``
    sends no ``host`` line; ``scope_items`` replace scope entries (``http_version``).
    """
    scope: dict[str, Any] = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "scheme": "http",
        "method": "POST",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [*([(b"host", host)] if host is not None else []), *headers],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
        **scope_items,
    }
    pending = iter(messages)  # a generator can count what the app pulled
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        message = next(pending, None)
        if message is not None:
            return message
        await asyncio.sleep(STARTUP_TIMEOUT)
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(asyncio.wait_for(app(scope, receive, send), STARTUP_TIMEOUT))
    start = next(m for m in sent if m["type"] == "http.response.start")
    response_headers = {bytes(k).decode().lower(): bytes(v).decode() for k, v in start["headers"]}
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return start["status"], response_headers, body


def short_body_asgi(app: Any, path: str) -> tuple[int, dict[str, str], bytes]:
    """POST ``SHORT_BODY`` under ``Content-Length: 1000``, the server ending the body early."""
    return asgi_call(
        app,
        path,
        [(b"content-type", b"application/json"), (b"content-length", b"1000")],
        [{"type": "http.request", "body": SHORT_BODY, "more_body": False}],
    )


def short_body_wsgi(
    app: Any, path: str, *, input_terminated: bool = False
) -> tuple[int, dict[str, str], bytes]:
    """Call a WSGI app with ``SHORT_BODY`` under ``Content-Length: 1000``.

    With ``input_terminated`` the environ says the server terminates the input itself
    (gunicorn does), so the framework reads what there is instead of waiting for more.
    """
    environ: dict[str, Any] = {
        "REQUEST_METHOD": "POST",
        "SCRIPT_NAME": "",
        "PATH_INFO": path,
        "QUERY_STRING": "",
        "RAW_URI": path,
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "8000",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
        "HTTP_HOST": "127.0.0.1",
        "CONTENT_TYPE": "application/json",
        "CONTENT_LENGTH": "1000",
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(SHORT_BODY),
        "wsgi.errors": io.StringIO(),
        "wsgi.multithread": False,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
    }
    if input_terminated:
        environ["wsgi.input_terminated"] = True
    answer: list[Any] = []

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        answer[:] = [int(status.split()[0]), {k.lower(): v for k, v in headers}]
        return lambda data: None

    chunks_out = app(environ, start_response)
    try:
        body = b"".join(chunks_out)
    finally:
        close = getattr(chunks_out, "close", None)
        if close is not None:
            close()
    return answer[0], answer[1], body


def assert_problem_bytes(status: int, body: bytes, expected: int, reason: str) -> None:
    """Assert a raw problem+json answer with ``expected`` status carrying exactly ``reason``."""
    document = json.loads(body)
    assert (status, document["status"], document["detail"]) == (expected, expected, reason)


class LogWaiter(logging.Handler):
    """Collects records of one logger and lets a test wait (bounded) for a message."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []
        self._event = threading.Condition()

    def emit(self, record: logging.LogRecord) -> None:
        with self._event:
            self.records.append(record)
            self._event.notify_all()

    def wait_for(self, fragment: str, timeout: float = STARTUP_TIMEOUT) -> logging.LogRecord:
        """Return the first record containing ``fragment``; fail after ``timeout``."""
        deadline = time.monotonic() + timeout
        with self._event:
            while True:
                for record in self.records:
                    if fragment in record.getMessage():
                        return record
                left = deadline - time.monotonic()
                if left <= 0:
                    pytest.fail(f"no log record containing {fragment!r}")
                self._event.wait(left)


# --------------------------------------------------------------------------- servers


def _wait(condition: Callable[[], bool], thread: threading.Thread, what: str) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while not condition():
        if not thread.is_alive():
            pytest.fail(f"{what} died during start-up")
        if time.monotonic() > deadline:
            pytest.fail(f"{what} did not start within {STARTUP_TIMEOUT} s")
        time.sleep(0.01)


@contextlib.contextmanager
def run_uvicorn(app: Any, **options: Any) -> Iterator[str]:
    """Serve an ASGI app with uvicorn in a thread; yield its base URL."""
    import uvicorn

    # proto=IPPROTO_TCP: asyncio sets TCP_NODELAY only on sockets that say so; without
    # it every response waits ~40 ms for a delayed ACK (Nagle).
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
    }
    settings.update(options)
    server = uvicorn.Server(uvicorn.Config(app, **settings))
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name="uvicorn", daemon=True
    )
    thread.start()
    try:
        _wait(lambda: server.started, thread, "uvicorn")
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(STARTUP_TIMEOUT)
        sock.close()
        assert not thread.is_alive(), "uvicorn did not stop"


@contextlib.contextmanager
def run_werkzeug(app: Any) -> Iterator[str]:
    """Serve a WSGI app with Werkzeug's threaded server; yield its base URL."""
    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="werkzeug", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(STARTUP_TIMEOUT)
        server.server_close()
        assert not thread.is_alive(), "werkzeug did not stop"


@contextlib.contextmanager
def run_wsgiref(app: Any) -> Iterator[str]:
    """Serve a WSGI app with the stdlib ``wsgiref`` server (no ``RAW_URI``); yield its URL."""
    from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

    class QuietHandler(WSGIRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = make_server("127.0.0.1", 0, app, server_class=WSGIServer, handler_class=QuietHandler)
    thread = threading.Thread(target=server.serve_forever, name="wsgiref", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(STARTUP_TIMEOUT)
        server.server_close()
        assert not thread.is_alive(), "wsgiref did not stop"


@contextlib.contextmanager
def run_gunicorn(
    app_path: str, env: dict[str, str], cwd: str, args: tuple[str, ...] = ()
) -> Iterator[str]:
    """Serve ``module:app`` with gunicorn (sync worker) in a child process; yield its URL.

    The listening socket is bound here on an ephemeral port and handed over as
    ``fd://``, so the port is known without parsing logs. ``args`` are extra
    gunicorn options.
    """
    import os
    import subprocess
    import sys

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    sock.set_inheritable(True)
    port = sock.getsockname()[1]
    command = [
        sys.executable,
        "-m",
        "gunicorn",
        "--bind",
        f"fd://{sock.fileno()}",
        "--workers",
        "1",
        "--log-level",
        "warning",
        *args,
        app_path,
    ]
    process = subprocess.Popen(
        command,
        cwd=cwd,
        env={**os.environ, **env},
        pass_fds=(sock.fileno(),),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while True:
            if process.poll() is not None:
                errors = process.stderr.read().decode(errors="replace") if process.stderr else ""
                pytest.fail(f"gunicorn exited: {errors}")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1) as probe:
                    probe.sendall(b"GET /ready HTTP/1.0\r\n\r\n")
                    if probe.recv(16).startswith(b"HTTP/"):
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail("gunicorn did not start")
            time.sleep(0.05)
        yield url
    finally:
        process.terminate()
        process.communicate(timeout=STARTUP_TIMEOUT)
        sock.close()
