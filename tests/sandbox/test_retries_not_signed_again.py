"""Retries the emulator does not sign again, past the receiver's time window (end to end).

Whether Upvest signs each retry afresh is unknown. If it does not, its back-off soon
outlasts ``max_age`` and every later attempt is ``expired``: the tenant's queue is
blocked for good. With ``Verifier(late_retries=ledger)`` the authentic retry is
accepted, marked late, and its events go through the ledger once.

The receiver reads a hand-moved clock, so that "twenty minutes later" takes no time;
the emulator resends the first attempt's headers (``resign_retries=False``).
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("starlette", reason="the sandbox extra (starlette) is not installed")
pytest.importorskip("uvicorn", reason="the sandbox extra (uvicorn) is not installed")
pytest.importorskip("httpx", reason="the sandbox extra (httpx) is not installed")

from sandbox_support import run_uvicorn

from upvest_verify import Verifier
from upvest_verify.jwks import JWKSCache, URLKeySource
from upvest_verify.ledger import BaseLedger, SQLiteLedger
from upvest_verify.sandbox import Sandbox
from upvest_verify.testing import ManualClock

HOOK_PATH = "/webhooks/upvest"
LATER = 20 * 60  # seconds the receiver's clock jumps after the first attempt


class Receiver:
    """A Starlette receiver whose first answer is a 500, after which its clock jumps."""

    def __init__(self) -> None:
        self.clock = ManualClock(time.time())
        self.handled: list[str] = []
        self.late: list[bool] = []
        self.failures_left = 1


@contextlib.contextmanager
def receiver(sandbox: Sandbox, ledger: BaseLedger, *, late: bool) -> Iterator[tuple[Receiver, int]]:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    from upvest_verify.adapters.starlette import (
        UpvestWebhookMiddleware,
        get_delivery,
        get_webhook,
    )

    state = Receiver()
    keys = JWKSCache(URLKeySource(sandbox.jwks_url, allow_insecure_loopback=True))
    verifier = Verifier(keys, clock=state.clock, late_retries=ledger if late else None)

    async def hook(request: Request) -> JSONResponse:
        delivery = get_delivery(request)
        webhook = get_webhook(request)
        assert delivery is not None
        assert webhook is not None
        if state.failures_left:
            state.failures_left -= 1
            state.clock.advance(LATER)  # the retry arrives long after it was signed
            return JSONResponse({"error": "handler failed"}, status_code=500)
        state.late.append(webhook.late)
        state.handled.extend(event.id for event in delivery.events)
        return JSONResponse({"handled": len(delivery.events)})

    app = Starlette(routes=[Route(HOOK_PATH, hook, methods=["POST"])])
    app.add_middleware(UpvestWebhookMiddleware, verifier=verifier, ledger=ledger)
    with run_uvicorn(app) as port:
        yield state, port


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    """An emulator that resends the first attempt's headers on every retry."""
    with Sandbox(port=0, time_scale=0.01, allow_http=True, resign_retries=False) as sb:
        yield sb


def test_an_old_authentic_retry_is_accepted_late_and_processed_once(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    """500, then the unchanged retry twenty minutes later: 200, events handled once."""
    ledger = SQLiteLedger(tmp_path / "events.sqlite3")
    with receiver(sandbox, ledger, late=True) as (state, port):
        hook_id = sandbox.add_webhook(f"http://localhost:{port}{HOOK_PATH}", delay="1s")["id"]
        events = sandbox.emit([{"type": "ORDER.NEW"}, {"type": "ORDER.FILLED"}])
        [delivery] = sandbox.wait_for_deliveries(1, webhook_id=hook_id)
    first, *_, last = delivery.attempts
    assert first.headers == last.headers  # not signed again
    assert delivery.status_codes == [500, 200]
    assert state.late == [True]
    assert state.handled == [event["id"] for event in events]
    assert json.loads(last.response_body) == {"handled": 2}
    ledger.close()


def test_without_the_opt_in_the_same_retry_expires(sandbox: Sandbox, tmp_path: Path) -> None:
    """The same story without ``late_retries``: every later attempt is ``expired``."""
    ledger = SQLiteLedger(tmp_path / "events.sqlite3")
    with receiver(sandbox, ledger, late=False) as (state, port):
        hook_id = sandbox.add_webhook(f"http://localhost:{port}{HOOK_PATH}", delay="1s")["id"]
        sandbox.emit("ORDER.NEW")

        def three_attempts(found: list[Any]) -> list[Any]:
            return [d for d in found if d.webhook_id == hook_id and len(d.attempts) >= 3]

        [delivery] = sandbox.wait_for(three_attempts, 10.0)
    codes = delivery.status_codes
    assert codes[0] == 500, codes
    assert set(codes[1:]) == {401}, codes
    for attempt in delivery.attempts[1:]:
        assert json.loads(attempt.response_body)["detail"] == "expired"
    assert state.handled == []
    ledger.close()
