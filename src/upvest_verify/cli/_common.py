"""What the commands share: failing in one line, optional extras, a loopback server.

Every mistake a user can make ends as :class:`CommandError`: one line saying what is
wrong and one hint saying what to do, printed without a traceback (exit status 2 for
usage mistakes, 1 for failures).
"""

from __future__ import annotations

import importlib
import logging
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO, Any

import click
from rich.console import Console
from rich.markup import escape

__all__ = [
    "CommandError",
    "UsageMistake",
    "console",
    "quiet_library_logs",
    "require",
    "safe",
    "serve_asgi",
]

_EXTRAS = {
    "httpx": "client",
    "starlette": "sandbox",
    "uvicorn": "sandbox",
    "anyio": "sandbox",
}


class CommandError(click.ClickException):
    """A mistake or failure reported as one line and a hint, never a traceback.

    Args:
        message: What went wrong.
        hint: What to do about it.
    """

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.hint = hint

    def show(self, file: IO[Any] | None = None) -> None:
        """Print ``error: <message>`` and ``hint: <hint>`` on standard error."""
        click.echo(f"error: {self.message}", file=file, err=file is None)
        if self.hint:
            click.echo(f"hint: {self.hint}", file=file, err=file is None)


class UsageMistake(CommandError):
    """A :class:`CommandError` caused by how the command was called (exit status 2)."""

    exit_code = 2


def console() -> Console:
    """The console commands print to (standard output; no colour when redirected)."""
    return Console(highlight=False)


def safe(text: object) -> str:
    """``text`` with rich markup characters escaped."""
    return escape(str(text))


def require(*modules: str, extra: str | None = None) -> None:
    """Import ``modules`` or fail with the ``pip install`` line that brings them.

    Raises:
        CommandError: A module is missing.
    """
    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError as e:
            wanted = extra or _EXTRAS.get(name, name)
            raise CommandError(
                f"this command needs {name}, which is not installed",
                f"pip install 'upvest-verify[{wanted}]'",
            ) from e


@contextmanager
def quiet_library_logs() -> Iterator[None]:
    """Keep the library's log lines (rejections, key refreshes) off the terminal."""
    logger = logging.getLogger("upvest_verify")
    handler = logging.NullHandler()
    propagate = logger.propagate
    logger.addHandler(handler)
    logger.propagate = False
    try:
        yield
    finally:
        logger.propagate = propagate
        logger.removeHandler(handler)


@contextmanager
def serve_asgi(app: Any, host: str = "127.0.0.1", port: int = 0) -> Iterator[int]:
    """Run ``app`` on uvicorn in a daemon thread; yield the port it listens on.

    Raises:
        CommandError: The server did not start within 15 seconds.
    """
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    config = uvicorn.Config(
        app, log_level="warning", access_log=False, lifespan="off", ws="none", http="h11"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name="upvest-verify-receiver", daemon=True
    )
    thread.start()
    deadline = time.monotonic() + 15
    try:
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise CommandError("the local receiver did not start", "try again")
            time.sleep(0.005)
        yield int(sock.getsockname()[1])
    finally:
        server.should_exit = True
        thread.join(15)
        sock.close()
