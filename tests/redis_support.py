"""A real redis-server on a free loopback port, for the ledger tests and the documentation.

Imported by ``tests/ledger/ledger_support.py`` and ``tests/docs/docs_support.py`` (the
``tests`` folder is on ``sys.path`` through its ``conftest.py``); not a test module.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator

import pytest

BOUND = 15.0
"""Seconds redis-server may take to start or stop; a bound, never a speed assertion."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free an instant ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.contextmanager
def run_redis_server() -> Iterator[str]:
    """Start ``redis-server`` on a free loopback port without persistence; yield its URL.

    Skips when the binary or redis-py is missing.
    """
    redis = pytest.importorskip("redis", reason="redis-py is not installed (extra 'redis')")
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server binary not found on PATH")
    port = free_port()
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    url = f"redis://127.0.0.1:{port}/0"
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=1)
        deadline = time.monotonic() + BOUND
        while True:
            if process.poll() is not None:
                errors = process.stderr.read().decode(errors="replace") if process.stderr else ""
                pytest.fail(f"redis-server exited: {errors}")
            try:
                if client.ping():
                    break
            except redis.ConnectionError:
                pass
            if time.monotonic() > deadline:
                pytest.fail("redis-server did not start")
            time.sleep(0.02)
        client.close()
        yield url
    finally:
        process.terminate()
        process.communicate(timeout=BOUND)
