"""``upvest-verify work``: a worker process for the acknowledge-first inbox.

The webhook endpoint stores each verified delivery's events with
``ledger.enqueue(webhook.events)`` and answers 200 at once; this command runs a
handler over them (``ledger.work``): each event once, in order per webhook, failures
retried with backoff. Run as many as you like on the same ledger. SIGINT or SIGTERM
lets the current event finish, then the command exits; a second one interrupts.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import click

from upvest_verify.ledger import (
    DEFAULT_LEASE,
    InboxLedger,
    LedgerError,
    LedgerUnavailable,
    WorkReport,
    ledger_from_url,
)

from ._common import CommandError, UsageMistake, console, safe

__all__ = ["load_handler", "work_command"]

_SPEC_HINT = "--handler takes MODULE:FUNCTION, e.g. myapp.tasks:handle_event"


def load_handler(spec: str) -> Callable[..., Any]:
    """Import the callable ``spec`` names (``package.module:function`` or ``:obj.method``).

    The working directory is searched first, as ``python -m`` does.

    Raises:
        UsageMistake: The spec is malformed, or names nothing callable.
    """
    module_name, colon, attribute = spec.partition(":")
    if not colon or not module_name.strip() or not attribute.strip():
        raise UsageMistake(f"bad handler {spec!r}: expected MODULE:FUNCTION", _SPEC_HINT)
    cwd = os.getcwd()
    added = cwd not in sys.path
    if added:
        sys.path.insert(0, cwd)
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise UsageMistake(f"cannot import handler module {module_name!r}: {e}", _SPEC_HINT) from e
    except Exception as e:  # the module itself failed while it was imported
        raise CommandError(
            f"handler module {module_name!r} failed to import: {type(e).__name__}: {e}",
            f"run 'python -c \"import {module_name}\"' to see the traceback",
        ) from e
    finally:
        if added:
            sys.path.remove(cwd)
    target: Any = module
    for part in attribute.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise UsageMistake(f"module {module_name!r} has no {attribute!r}", _SPEC_HINT) from None
    if not callable(target):
        raise UsageMistake(f"handler {spec!r} is not callable", _SPEC_HINT)
    return target  # type: ignore[no-any-return]


def _is_async(handler: Callable[..., Any]) -> bool:
    call = getattr(handler, "__call__", None)  # noqa: B004 - async __call__ of an object
    return inspect.iscoroutinefunction(handler) or inspect.iscoroutinefunction(call)


def _open_ledger(url: str, namespace: str, lease: float) -> InboxLedger:
    if url.strip().lower().startswith("memory:"):
        raise UsageMistake(
            "memory:// cannot serve a worker: its events live in another process's memory",
            "use the ledger the endpoint enqueues into: sqlite:///PATH or redis://HOST:PORT/DB",
        )
    try:
        return ledger_from_url(url, namespace=namespace, lease=lease)
    except ImportError as e:
        raise CommandError(str(e), "pip install 'upvest-verify[redis]'") from e
    except ValueError as e:
        raise UsageMistake(f"unusable --ledger: {e}", "see 'upvest-verify work --help'") from e


@contextmanager
def _stop_on_signals(stop: threading.Event) -> Iterator[None]:
    """SIGINT/SIGTERM set ``stop`` once (the current event finishes); a second one interrupts."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}

    def request_stop(signum: int, frame: object) -> None:
        click.echo("stopping after the current event", err=True)
        stop.set()
        for sig, handler in previous.items():
            signal.signal(sig, handler)

    for sig in previous:
        signal.signal(sig, request_stop)
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@contextmanager
def _failures_on_stderr() -> Iterator[None]:
    """Show the ledger's warnings (handler failures, lost leases) on standard error."""
    logger = logging.getLogger("upvest_verify.ledger")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    handler.setLevel(logging.WARNING)
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)


@click.command("work")
@click.option(
    "--ledger",
    "ledger_url",
    required=True,
    metavar="URL",
    help="The inbox: sqlite:///PATH (relative; four slashes for absolute) or redis://HOST:PORT/DB.",
)
@click.option(
    "--handler",
    "handler_spec",
    required=True,
    metavar="MODULE:FUNCTION",
    help="Called with each Event (sync or async); raising retries the event later.",
)
@click.option("--max-events", type=click.IntRange(min=1), help="Exit after this many attempts.")
@click.option(
    "--idle-timeout",
    type=click.FloatRange(min=0),
    help="Exit after this many seconds without an event to handle.",
)
@click.option("--namespace", default="upvest", show_default=True, help="Redis key prefix.")
@click.option(
    "--lease",
    type=click.FloatRange(min=0, min_open=True),
    default=DEFAULT_LEASE,
    show_default=True,
    help="Seconds an event stays leased to this worker; longer than the handler takes.",
)
def work_command(
    ledger_url: str,
    handler_spec: str,
    max_events: int | None,
    idle_timeout: float | None,
    namespace: str,
    lease: float,
) -> None:
    """Handle the events a webhook endpoint enqueued: each once, in order per webhook.

    Exit status 0 when it stops (signal, --max-events, --idle-timeout), 1 when the
    ledger fails, 2 for a usage mistake.

        upvest-verify work --ledger sqlite:///events.sqlite3 --handler myapp.tasks:handle
    """
    handler = load_handler(handler_spec)
    ledger = _open_ledger(ledger_url, namespace, lease)
    stop = threading.Event()
    out = console()
    out.print(f"working on {safe(repr(ledger))} with {safe(handler_spec)}", soft_wrap=True)
    try:
        with _stop_on_signals(stop), _failures_on_stderr():
            report = _run(ledger, handler, stop, max_events, idle_timeout)
    except LedgerUnavailable as e:
        raise CommandError(f"the ledger failed: {e}", "check that the store is reachable") from e
    except LedgerError as e:
        raise CommandError(str(e)) from e
    finally:
        ledger.close()
    reason = {"stop": "stopped", "max_events": "--max-events reached"}.get(
        report.reason, "idle timeout"
    )
    out.print(f"{report.handled} handled, {report.failed} failed, {report.lost} lost ({reason})")


def _run(
    ledger: InboxLedger,
    handler: Callable[..., Any],
    stop: threading.Event,
    max_events: int | None,
    idle_timeout: float | None,
) -> WorkReport:
    options: dict[str, Any] = {"max_events": max_events, "idle_timeout": idle_timeout, "stop": stop}
    if not _is_async(handler):
        return ledger.work(handler, **options)

    async def main() -> WorkReport:
        try:
            return await ledger.awork(handler, **options)
        finally:
            await ledger.aclose()

    return asyncio.run(main())
