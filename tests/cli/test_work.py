"""``upvest-verify work``: a handler from a module over an SQLite inbox, and clear refusals."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import pytest

pytest.importorskip("click", reason="the command line needs the [cli] extra (click)")
pytest.importorskip("rich", reason="the command line needs the [cli] extra (rich)")

from upvest_verify import Event
from upvest_verify.ledger import SQLiteLedger
from upvest_verify.testing import sample_events

from .helpers import invoke

HANDLERS = """
from pathlib import Path

LOG = Path(__file__).with_name("handled.log")
NOT_CALLABLE = 42
FAILED = set()


def handle(event):
    with LOG.open("a") as log:
        log.write(event.id + "\\n")


async def ahandle(event):
    handle(event)


def fail_once(event):
    if event.id not in FAILED:
        FAILED.add(event.id)
        raise RuntimeError("not yet")
    handle(event)


class Handlers:
    @staticmethod
    def handle(event):
        handle(event)
"""


@pytest.fixture
def module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A handler module of a fresh name in the working directory."""
    name = f"handlers_{uuid.uuid4().hex}"
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(HANDLERS))
    monkeypatch.chdir(tmp_path)
    return name


@pytest.fixture
def inbox(tmp_path: Path) -> tuple[str, list[str]]:
    """An SQLite inbox URL holding five queued events, and their ids in order."""
    path = tmp_path / "inbox.sqlite3"
    events = [Event.from_json(item) for item in sample_events(5)["payload"]]
    ledger = SQLiteLedger(path)
    assert ledger.enqueue(events) == 5
    ledger.close()
    return f"sqlite:///{path}", [event.id for event in events]


def handled(tmp_path: Path) -> list[str]:
    log = tmp_path / "handled.log"
    return log.read_text().split() if log.exists() else []


def test_work_runs_the_handler_until_max_events_then_idle(
    module: str, inbox: tuple[str, list[str]], tmp_path: Path
) -> None:
    """--max-events ends the run after that many events; --idle-timeout once none is left."""
    url, ids = inbox
    done = invoke("work", "--ledger", url, "--handler", f"{module}:handle", "--max-events", "3")
    assert done.code == 0, done.output
    assert handled(tmp_path) == ids[:3]
    assert "3 handled, 0 failed, 0 lost (--max-events reached)" in done.output
    done = invoke("work", "--ledger", url, "--handler", f"{module}:handle", "--idle-timeout", "0.2")
    assert done.code == 0, done.output
    assert handled(tmp_path) == ids
    assert "2 handled, 0 failed, 0 lost (idle timeout)" in done.output
    assert SQLiteLedger(url.removeprefix("sqlite:///")).pending() == 0


@pytest.mark.parametrize("function", ["ahandle", "Handlers.handle"])
def test_work_takes_async_handlers_and_dotted_names(
    module: str, inbox: tuple[str, list[str]], tmp_path: Path, function: str
) -> None:
    """An async handler runs under awork; MODULE:obj.attr names a nested callable."""
    url, ids = inbox
    done = invoke(
        "work", "--ledger", url, "--handler", f"{module}:{function}", "--idle-timeout", "0"
    )
    assert done.code == 0, done.output
    assert handled(tmp_path) == ids


def test_work_reports_handler_failures(
    module: str, inbox: tuple[str, list[str]], tmp_path: Path
) -> None:
    """A failing event is logged on standard error and left queued for its retry."""
    url, ids = inbox
    done = invoke(
        "work", "--ledger", url, "--handler", f"{module}:fail_once", "--idle-timeout", "0"
    )
    assert done.code == 0, done.output
    assert f"WARNING event {ids[0]}" in done.output
    assert "RuntimeError: not yet" in done.output
    assert "0 handled, 1 failed, 0 lost (idle timeout)" in done.output
    assert handled(tmp_path) == []


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("no_colon", "expected MODULE:FUNCTION"),
        (":handle", "expected MODULE:FUNCTION"),
        ("{module}:", "expected MODULE:FUNCTION"),
        ("no_such_module_here:handle", "cannot import handler module 'no_such_module_here'"),
        ("{module}:missing", "has no 'missing'"),
        ("{module}:NOT_CALLABLE", "is not callable"),
    ],
)
def test_bad_handler_specs_are_usage_mistakes(
    module: str, inbox: tuple[str, list[str]], spec: str, message: str
) -> None:
    """A handler that cannot be found is exit status 2 with a one-line error and a hint."""
    url, _ = inbox
    done = invoke("work", "--ledger", url, "--handler", spec.format(module=module))
    assert done.code == 2, done.output
    assert "error: " in done.output
    assert message in done.output
    assert "hint: --handler takes MODULE:FUNCTION" in done.output
    assert "Traceback" not in done.output


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("memory://", "memory:// cannot serve a worker"),
        ("MEMORY://", "memory:// cannot serve a worker"),
        ("ftp://host/x", "unusable --ledger: unknown ledger URL scheme 'ftp'"),
        ("sqlite://host/x.sqlite3", "unusable --ledger: an SQLite ledger URL has no host"),
    ],
)
def test_unusable_ledgers_are_usage_mistakes(module: str, url: str, message: str) -> None:
    """memory:// and malformed URLs are refused with exit status 2 before any work."""
    done = invoke("work", "--ledger", url, "--handler", f"{module}:handle", "--max-events", "1")
    assert done.code == 2, done.output
    assert f"error: {message}" in done.output
    assert "hint: " in done.output
    assert "Traceback" not in done.output


def test_bad_numbers_are_usage_mistakes(module: str, inbox: tuple[str, list[str]]) -> None:
    """--max-events below 1 and a negative --idle-timeout are refused by the option parser."""
    url, _ = inbox
    for option, value in (("--max-events", "0"), ("--idle-timeout", "-1")):
        done = invoke("work", "--ledger", url, "--handler", f"{module}:handle", option, value)
        assert done.code == 2, done.output
        assert option in done.output


def test_an_unusable_database_fails_with_status_1(module: str, tmp_path: Path) -> None:
    """A ledger whose storage fails ends the command with exit status 1 and a hint."""
    url = f"sqlite:///{tmp_path / 'missing-dir' / 'inbox.sqlite3'}"
    done = invoke("work", "--ledger", url, "--handler", f"{module}:handle", "--idle-timeout", "0")
    assert done.code == 1, done.output
    assert "error: the ledger failed" in done.output
    assert "Traceback" not in done.output


def test_sigterm_lets_the_current_event_finish(tmp_path: Path) -> None:
    """SIGTERM while a handler runs: that event completes, then the command exits 0."""
    (tmp_path / "slow_handler.py").write_text(
        textwrap.dedent(
            """
            import time
            from pathlib import Path

            def handle(event):
                Path("started").touch()
                time.sleep(0.5)
                with open("handled.log", "a") as log:
                    log.write(event.id + "\\n")
            """
        )
    )
    path = tmp_path / "inbox.sqlite3"
    events = [Event.from_json(item) for item in sample_events(3)["payload"]]
    ledger = SQLiteLedger(path)
    ledger.enqueue(events)
    command = [sys.executable, "-m", "upvest_verify.cli", "work", "--ledger", f"sqlite:///{path}"]
    worker = subprocess.Popen(
        [*command, "--handler", "slow_handler:handle", "--idle-timeout", "30"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while not (tmp_path / "started").exists():
            assert worker.poll() is None, worker.communicate()[0]
            assert time.monotonic() < deadline, "the handler never started"
            time.sleep(0.02)
        worker.send_signal(signal.SIGTERM)
        output, _ = worker.communicate(timeout=30)
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.communicate()
    assert worker.returncode == 0, output
    assert "stopping after the current event" in output
    assert "1 handled, 0 failed, 0 lost (stopped)" in output
    assert handled(tmp_path) == [events[0].id]
    assert ledger.pending() == 2
    ledger.close()


def test_a_handler_module_that_fails_to_import_is_reported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, inbox: tuple[str, list[str]]
) -> None:
    """An error raised while the handler module imports ends the command with status 1."""
    name = f"broken_{uuid.uuid4().hex}"
    (tmp_path / f"{name}.py").write_text("raise RuntimeError('no config')\n")
    monkeypatch.chdir(tmp_path)
    url, _ = inbox
    done = invoke("work", "--ledger", url, "--handler", f"{name}:handle")
    assert done.code == 1, done.output
    assert (
        f"error: handler module {name!r} failed to import: RuntimeError: no config" in done.output
    )
    assert "Traceback" not in done.output
