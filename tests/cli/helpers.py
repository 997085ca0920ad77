"""Running the command line in-process, and a loopback receiver for tests."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from upvest_verify.cli import cli


@dataclass
class Outcome:
    """Exit code and everything printed (standard output and error)."""

    code: int
    output: str


def invoke(*args: str, env: Mapping[str, str] | None = None) -> Outcome:
    """Run ``upvest-verify ARGS`` in-process."""
    result = CliRunner().invoke(cli, list(args), env=dict(env or {}), catch_exceptions=False)
    return Outcome(result.exit_code, result.output)


def write_credentials(path: Path, sandbox: Any) -> Path:
    """Write an emulator tenant's credentials in the ``--credentials`` file format."""
    tenant = sandbox.tenant
    doc = {
        "base_url": sandbox.base_url,
        "client_id": tenant.client_id,
        "client_secret": tenant.client_secret,
        "signing_key_id": tenant.key_id,
        "signing_key_pem": tenant.private_key_pem(),
    }
    path.write_text(json.dumps(doc))
    return path


@dataclass
class Received:
    """Requests a :func:`receiver` got: (path, headers, body)."""

    requests: list[tuple[str, list[tuple[str, str]], bytes]] = field(default_factory=list)


@contextmanager
def receiver(status: int = 200) -> Iterator[tuple[str, Received]]:
    """A plain HTTP receiver on 127.0.0.1 answering ``status`` and recording requests."""
    received = Received()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length") or 0))
            received.requests.append((self.path, list(self.headers.items()), body))
            answer = b'{"received": true}'
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet."""

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hooks", received
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
