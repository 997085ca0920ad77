"""The runnable receivers in ``examples/`` process once, dedupe and reject on real servers."""

from __future__ import annotations

import importlib.util
import json
import os
import selectors
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

httpx = pytest.importorskip("httpx", reason="the example tests send requests with httpx")

from adapter_support import (  # noqa: E402
    SIGNING_KEY,
    STARTUP_TIMEOUT,
    run_uvicorn,
    run_werkzeug,
    wire_headers,
)

from upvest_verify.testing import make_jwks, sample_events, sign_webhook  # noqa: E402

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.fixture
def jwks_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A JWKS file with the test key and an SQLite ledger in ``tmp_path``, announced the
    way each example reads them."""
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps(make_jwks(SIGNING_KEY)))
    monkeypatch.setenv("UPVEST_JWKS", str(path))
    monkeypatch.setenv("UPVEST_VERIFY_JWKS", str(path))
    ledger = f"sqlite:///{tmp_path / 'events.sqlite3'}"
    monkeypatch.setenv("UPVEST_LEDGER", ledger)
    monkeypatch.setenv("UPVEST_VERIFY_LEDGER", ledger)
    return path


def load(name: str) -> ModuleType:
    """Import ``examples/<name>.py`` under a private module name."""
    spec = importlib.util.spec_from_file_location(f"upvest_example_{name}", EXAMPLES / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def exercise(url: str) -> None:
    """Deliver one bundle twice (the retry is already processed) and a tampered copy."""
    signed = sign_webhook(sample_events(2), key=SIGNING_KEY, url=url + "/webhooks/upvest")
    with httpx.Client(base_url=url, timeout=STARTUP_TIMEOUT) as c:
        first = c.post(signed.path, content=signed.body, headers=wire_headers(signed))
        again = c.post(signed.path, content=signed.body, headers=wire_headers(signed))
        forged = c.post(
            signed.path,
            content=signed.body.replace(b"EUR", b"USD"),
            headers=wire_headers(signed),
        )
    assert (first.status_code, first.json()) == (200, {"received": 2, "processed": 2})
    assert (again.status_code, again.json()) == (200, {"status": "already_processed"})
    assert forged.status_code == 401
    assert forged.json()["detail"] == "digest_mismatch"


@pytest.mark.usefixtures("jwks_file")
def test_starlette_example() -> None:
    """examples/starlette_app.py verifies, acknowledges and dedupes."""
    pytest.importorskip("starlette")
    pytest.importorskip("uvicorn")
    with run_uvicorn(load("starlette_app").app) as url:
        exercise(url)


@pytest.mark.usefixtures("jwks_file")
def test_fastapi_example() -> None:
    """examples/fastapi_app.py verifies, acknowledges and dedupes."""
    pytest.importorskip("fastapi")
    pytest.importorskip("uvicorn")
    with run_uvicorn(load("fastapi_app").app) as url:
        exercise(url)


@pytest.mark.usefixtures("jwks_file")
def test_flask_example() -> None:
    """examples/flask_app.py verifies, acknowledges and dedupes."""
    pytest.importorskip("flask")
    with run_werkzeug(load("flask_app").app) as url:
        exercise(url)


def test_django_example(jwks_file: Path) -> None:
    """examples/django_app.py (own process: its own settings) verifies, acks and dedupes."""
    pytest.importorskip("django")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    process = subprocess.Popen(
        [sys.executable, str(EXAMPLES / "django_app.py"), "0"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        with selectors.DefaultSelector() as selector:
            selector.register(process.stdout, selectors.EVENT_READ)
            if not selector.select(timeout=STARTUP_TIMEOUT):
                pytest.fail("the Django example did not start")
        line = process.stdout.readline()
        assert line.startswith("listening on "), process.stderr.read() if process.stderr else ""
        exercise(line.split()[-1])
    finally:
        process.terminate()
        process.communicate(timeout=STARTUP_TIMEOUT)
