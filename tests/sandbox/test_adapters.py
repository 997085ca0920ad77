"""Deliveries from the emulator into each framework adapter, on real servers.

Each receiver verifies through a :class:`~upvest_verify.jwks.JWKSCache` reading the
emulator's key set over HTTP, as a deployed receiver would read ``/auth/verify_keys``.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("starlette", reason="the sandbox extra (starlette) is not installed")
pytest.importorskip("uvicorn", reason="the sandbox extra (uvicorn) is not installed")
pytest.importorskip("httpx", reason="the sandbox extra (httpx) is not installed")

from sandbox_support import STARTUP_TIMEOUT, run_uvicorn, run_werkzeug

from upvest_verify import Verifier
from upvest_verify.jwks import JWKSCache, URLKeySource
from upvest_verify.sandbox import Sandbox

HERE = Path(__file__).resolve().parent
HOOK_PATH = "/webhooks/upvest"


def _verifier(sandbox: Sandbox) -> Verifier:
    source = URLKeySource(sandbox.jwks_url, allow_insecure_loopback=True)
    return Verifier(JWKSCache(source, refresh_cooldown=1))


def _answer(webhook: Any) -> dict[str, Any]:
    return {"events": [e.id for e in webhook.events], "key_id": webhook.key_id}


@contextlib.contextmanager
def _starlette(sandbox: Sandbox) -> Iterator[int]:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    from upvest_verify.adapters.starlette import UpvestWebhookMiddleware

    async def hook(request: Request) -> JSONResponse:
        return JSONResponse(_answer(request.scope["upvest_verify"]))

    app = Starlette(routes=[Route(HOOK_PATH, hook, methods=["POST"])])
    app.add_middleware(UpvestWebhookMiddleware, verifier=_verifier(sandbox), paths=["/webhooks/*"])
    with run_uvicorn(app) as port:
        yield port


@contextlib.contextmanager
def _flask(sandbox: Sandbox) -> Iterator[int]:
    pytest.importorskip("flask", reason="the flask extra is not installed")
    from flask import Flask, g

    from upvest_verify.adapters.flask import UpvestVerify, require_upvest_signature

    app = Flask("sandbox_receiver")
    UpvestVerify(app, verifier=_verifier(sandbox))

    @app.post(HOOK_PATH)
    @require_upvest_signature
    def hook() -> Any:
        return _answer(g.upvest_webhook)

    with run_werkzeug(app) as port:
        yield port


@contextlib.contextmanager
def _django(sandbox: Sandbox) -> Iterator[int]:
    pytest.importorskip("django", reason="the django extra is not installed")
    pytest.importorskip("werkzeug", reason="the Django receiver is served by Werkzeug")
    process = subprocess.Popen(
        [sys.executable, str(HERE / "django_receiver.py"), sandbox.jwks_url],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    watchdog = threading.Timer(STARTUP_TIMEOUT, process.kill)  # bounds the readline below
    watchdog.start()
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        watchdog.cancel()
        if not line.strip().isdigit():
            process.kill()
            _, errors = process.communicate(timeout=STARTUP_TIMEOUT)
            pytest.fail(f"the Django receiver did not start: {errors}")
        yield int(line)
    finally:
        watchdog.cancel()
        process.terminate()
        process.communicate(timeout=STARTUP_TIMEOUT)


RECEIVERS = {"starlette": _starlette, "flask": _flask, "django": _django}


@pytest.fixture(scope="module")
def shared() -> Iterator[Sandbox]:
    """One emulator for the module's receivers (a Django child process starts once)."""
    with Sandbox(port=0, time_scale=0.01, allow_http=True) as sandbox:
        yield sandbox


@pytest.fixture(scope="module", params=sorted(RECEIVERS))
def receiver_url(request: pytest.FixtureRequest, shared: Sandbox) -> Iterator[str]:
    """One adapter's receiver, verifying with the shared emulator's keys."""
    with RECEIVERS[request.param](shared) as port:
        yield f"http://localhost:{port}{HOOK_PATH}"


@pytest.fixture
def hook_id(shared: Sandbox, receiver_url: str) -> Iterator[str]:
    """A fresh subscription to the receiver, disabled again after the test."""
    hook = shared.add_webhook(receiver_url, delay="1s")
    yield str(hook["id"])
    shared.update_webhook(hook["id"], enabled=False)


@pytest.mark.parametrize("dialect", ["upvest-v6", "rfc9421/raw/content-digest"])
def test_adapter_accepts_deliveries(shared: Sandbox, hook_id: str, dialect: str) -> None:
    """The adapter verifies the emulator's deliveries and sees every event, in order."""
    shared.dialect = dialect
    events = shared.emit([{"type": "ORDER.NEW"}, {"type": "ORDER.FILLED"}])
    [delivery] = shared.wait_for_deliveries(1, webhook_id=hook_id)
    assert delivery.status_codes == [200]
    answer = json.loads(delivery.attempts[0].response_body)
    assert answer == {"events": [e["id"] for e in events], "key_id": shared.signing_key.key_id}


def test_adapter_rejects_a_tampered_delivery(shared: Sandbox, hook_id: str) -> None:
    """A spoiled body is refused with ``digest_mismatch`` (401); the sound retry is accepted."""
    shared.tamper_next("body", webhook_id=hook_id)
    [event] = shared.emit("CASH_BALANCE.UPDATED")
    [delivery] = shared.wait_for_deliveries(1, webhook_id=hook_id)
    assert delivery.status_codes == [401, 200]
    refusal = json.loads(delivery.attempts[0].response_body)
    assert refusal["detail"] == "digest_mismatch"
    assert json.loads(delivery.attempts[1].response_body)["events"] == [event["id"]]


def test_receiver_follows_a_key_rotation(sb: Sandbox) -> None:
    """After a rotation the receiver's key cache fetches the new key and accepts again."""
    with _starlette(sb) as port:
        hook_id = sb.add_webhook(f"http://localhost:{port}{HOOK_PATH}", delay="1s")["id"]
        sb.emit("ORDER.NEW")
        sb.wait_for_deliveries(1, webhook_id=hook_id)
        new = sb.rotate_keys()
        sb.emit("ORDER.FILLED")
        second = sb.wait_for_deliveries(2, webhook_id=hook_id)[1]
    assert second.status_codes[-1] == 200
    # A refusal before that can only be the rate-limited refresh on the unknown kid.
    for attempt in second.attempts[:-1]:
        assert json.loads(attempt.response_body)["detail"] == "unknown_key"
    assert json.loads(second.attempts[-1].response_body)["key_id"] == new.key_id
