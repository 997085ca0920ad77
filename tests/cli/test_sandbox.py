"""``upvest-verify sandbox`` (a real process, stopped with Ctrl-C) and ``trigger``."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("click", reason="the command line needs the [cli] extra (click)")
pytest.importorskip("rich", reason="the command line needs the [cli] extra (rich)")
pytest.importorskip("starlette", reason="the emulator needs the [sandbox] extra (starlette)")
pytest.importorskip("uvicorn", reason="the emulator needs the [sandbox] extra (uvicorn)")
pytest.importorskip("httpx", reason="the emulator needs the [sandbox] extra (httpx)")

from upvest_verify.cli.sandbox import set_path
from upvest_verify.sandbox import Sandbox

from .helpers import invoke


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    """An emulator on 127.0.0.1 with a fast clock."""
    with Sandbox(time_scale=0.01, allow_http=True) as sb:
        yield sb


@pytest.mark.skipif(sys.platform == "win32", reason="sends SIGINT")
def test_sandbox_command_serves_writes_credentials_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    """The command writes 0600 credentials once serving, they work, and Ctrl-C stops it."""
    creds = tmp_path / "creds.json"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "upvest_verify.cli",
            "sandbox",
            "--time-scale",
            "0.01",
            "--allow-http",
            "--credentials-out",
            str(creds),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 20
        while not creds.exists() or not creds.read_text().endswith("}\n"):
            assert process.poll() is None, process.communicate()[0]
            assert time.monotonic() < deadline, "no credentials file within 20 s"
            time.sleep(0.05)
        assert creds.stat().st_mode & 0o777 == 0o600
        doc = json.loads(creds.read_text())
        assert set(doc) == {
            "base_url",
            "client_id",
            "client_secret",
            "signing_key_id",
            "signing_key_pem",
        }
        listed = invoke("webhooks", "list", "--credentials", str(creds), "--json")
        assert listed.code == 0, listed.output
        assert json.loads(listed.output) == []
        triggered = invoke("trigger", "ORDER.FILLED", "--credentials", str(creds))
        assert triggered.code == 0, triggered.output
        assert "emitted ORDER.FILLED" in triggered.output
        process.send_signal(signal.SIGINT)
        output, _ = process.communicate(timeout=20)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, output
    assert "emulator stopped" in output
    assert doc["client_id"] in output
    assert doc["client_secret"] not in output
    assert "PRIVATE KEY" not in output
    assert not creds.exists()  # the credentials die with the emulator


def test_sandbox_command_refuses_a_bad_dialect() -> None:
    """An unknown dialect is a usage mistake answered in one line."""
    done = invoke("sandbox", "--dialect", "nope")
    assert done.code == 2
    assert "error: dialect layout" in done.output
    assert "Traceback" not in done.output


def test_trigger_sets_fields_of_the_sample_object(sandbox: Sandbox) -> None:
    """--set changes fields of the emulator's sample object; JSON values keep their type."""
    sandbox.add_webhook("http://localhost:9/unreachable")  # records the events it gets
    done = invoke(
        "trigger",
        "ORDER.FILLED",
        "--base-url",
        sandbox.base_url,
        "--set",
        "status=FILLED",
        "--set",
        "quantity=3",
        "--set",
        "extra.note=hello",
    )
    assert done.code == 0, done.output
    [delivery] = sandbox.wait_for_deliveries(1, delivered=False)
    [event] = delivery.events
    assert event["type"] == "ORDER.FILLED"
    assert event["object"]["status"] == "FILLED"
    assert event["object"]["quantity"] == 3
    assert event["object"]["extra"] == {"note": "hello"}
    assert "id" in event["object"]  # the rest of the sample is kept
    assert event["id"] in done.output


def test_trigger_count_emits_several(sandbox: Sandbox) -> None:
    """--count emits that many events."""
    done = invoke("trigger", "USER.CREATED", "--count", "3", "--base-url", sandbox.base_url)
    assert done.code == 0, done.output
    assert done.output.count("emitted USER.CREATED") == 3


def test_trigger_reports_a_refused_event(sandbox: Sandbox) -> None:
    """A type the emulator refuses is reported in one line with its detail."""
    done = invoke("trigger", "not-a-type", "--base-url", sandbox.base_url)
    assert done.code == 1
    assert "error: the emulator refused the event: 400" in done.output


def test_trigger_needs_a_base_url() -> None:
    """Without a base URL trigger says where to give one."""
    done = invoke("trigger", "ORDER.FILLED", env={"UPVEST_BASE_URL": ""})
    assert done.code == 2
    assert "hint: pass --base-url" in done.output


def test_trigger_without_a_running_emulator() -> None:
    """A base URL where nothing listens is one line, not a traceback."""
    done = invoke("trigger", "ORDER.FILLED", "--base-url", "http://127.0.0.1:9")
    assert done.code == 1
    assert "error: no answer from http://127.0.0.1:9" in done.output


def test_set_path_builds_nested_objects_and_refuses_bad_paths() -> None:
    """Dotted paths create objects; empty parts and non-object parents are refused."""
    target: dict[str, object] = {"a": 1}
    set_path(target, "b.c", 2)
    assert target == {"a": 1, "b": {"c": 2}}
    with pytest.raises(Exception, match="bad --set path"):
        set_path(target, "b..c", 1)
    with pytest.raises(Exception, match="is not an object"):
        set_path(target, "a.x", 1)
