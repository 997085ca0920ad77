"""FastAPI: the middleware with an event ledger and the ``UpvestDelivery`` dependency, on uvicorn."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("fastapi", reason="the fastapi extra is not installed")
pytest.importorskip("uvicorn", reason="the real-server tests need uvicorn (group tests-servers)")

from adapter_support import SIGNING_KEY, run_uvicorn
from delivery_support import (
    Script,
    Target,
    check_held,
    check_inbox,
    check_once,
    check_outage,
    check_own_way,
    check_process_completes_each,
    check_retry_after_failure,
    unopenable_sqlite,
)
from fastapi import FastAPI
from fastapi.responses import JSONResponse

from upvest_verify import Verifier
from upvest_verify.adapters.fastapi import (
    Delivery,
    UpvestDelivery,
    UpvestWebhook,
    UpvestWebhookMiddleware,
)
from upvest_verify.ledger import BaseLedger, MemoryLedger, SQLiteLedger
from upvest_verify.testing import make_key_set

VIEWS = ["/webhooks/upvest", "/webhooks/sync"]


def build(verifier: Verifier, script: Script, **options: Any) -> FastAPI:
    """An async and a sync endpoint taking ``UpvestDelivery``, both running ``script``."""
    app = FastAPI()
    app.add_middleware(UpvestWebhookMiddleware, verifier=verifier, paths=["/webhooks/*"], **options)

    async def hook(delivery: Any, webhook: Any) -> JSONResponse:
        assert delivery.webhook is webhook
        document, status = await script.arun(delivery)
        return JSONResponse(document, status)

    def sync_hook(delivery: Any) -> JSONResponse:
        document, status = script.run(delivery)
        return JSONResponse(document, status)

    # Postponed annotations resolve in module globals; set the dependencies explicitly.
    hook.__annotations__ = {"delivery": UpvestDelivery, "webhook": UpvestWebhook}
    sync_hook.__annotations__ = {"delivery": UpvestDelivery}
    app.post(VIEWS[0])(hook)
    app.post(VIEWS[1])(sync_hook)
    return app


@contextlib.contextmanager
def serve(ledger: BaseLedger | None, **options: Any) -> Iterator[Target]:
    """Serve a fresh FastAPI receiver admitting through ``ledger``; yield its target."""
    script = Script()
    app = build(Verifier(make_key_set(SIGNING_KEY)), script, ledger=ledger, **options)
    with run_uvicorn(app) as url:
        yield Target(url, VIEWS[0], script, MemoryLedger() if ledger is None else ledger)


@pytest.fixture(scope="module")
def receiver() -> Iterator[Target]:
    """One FastAPI receiver with a memory ledger for the module."""
    with serve(MemoryLedger()) as target:
        yield target


@pytest.fixture(params=VIEWS, ids=["async", "sync"])
def target(receiver: Target, request: pytest.FixtureRequest) -> Target:
    """The receiver, sending to its async or its sync endpoint."""
    return receiver.on(request.param)


def test_once(target: Target) -> None:
    """A delivery is processed once; its retry is answered 200 already_processed."""
    check_once(target)


def test_retry_runs_only_unfinished_events(target: Target) -> None:
    """A handler failing on event 2 of 3: 500, and the retry runs events 2 and 3 only."""
    check_retry_after_failure(target)


def test_held_event(target: Target) -> None:
    """An event another worker holds: 503 in_progress, Retry-After, claims released."""
    check_held(target)


def test_process_completes_each_event(target: Target) -> None:
    """delivery.process completes each event at once: a later 500 does not undo it."""
    check_process_completes_each(target)


def test_events_handled_without_process(target: Target) -> None:
    """Open claims are completed by a 2xx answer and released by any other."""
    check_own_way(target)


def test_sqlite_ledger_and_outage(tmp_path: Path) -> None:
    """An SQLite ledger gives the same guarantees; an unusable one answers 503."""
    with serve(SQLiteLedger(tmp_path / "events.sqlite3")) as target:
        check_once(target)
        check_retry_after_failure(target.on(VIEWS[1]))
    with serve(SQLiteLedger(unopenable_sqlite(tmp_path))) as target:
        check_outage(target)


def test_inbox() -> None:
    """inbox=True queues the events and answers 200 queued without the endpoint."""
    with serve(MemoryLedger(), inbox=True) as target:
        check_inbox(target)


def test_delivery_dependency_needs_a_ledger() -> None:
    """UpvestDelivery without a ledger on the middleware fails closed: 500 configuration_error."""
    with serve(None) as target:
        status, body, headers = target.send(target.batch(1))
    assert status == 500
    assert headers["content-type"].startswith("application/problem+json")
    assert body["detail"] == "configuration_error"
    assert target.script.calls == 0


def test_exports() -> None:
    """The FastAPI module offers the same Delivery, accessors and dependency."""
    from upvest_verify.adapters import fastapi, starlette

    assert fastapi.Delivery is starlette.Delivery is Delivery
    assert fastapi.get_delivery is starlette.get_delivery
    assert fastapi.get_webhook is starlette.get_webhook
    assert callable(fastapi.upvest_delivery)
