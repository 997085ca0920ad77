"""UpvestWebhookMiddleware with an event ledger, on uvicorn: each event processed once."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("starlette", reason="the starlette extra is not installed")
pytest.importorskip("uvicorn", reason="the real-server tests need uvicorn (group tests-servers)")

from adapter_support import SIGNING_KEY, run_uvicorn
from delivery_support import (
    Script,
    Target,
    assert_problem,
    check_held,
    check_inbox,
    check_once,
    check_outage,
    check_own_way,
    check_process_completes_each,
    check_replay_recorded,
    check_retry_after_failure,
    closed_port,
    unopenable_sqlite,
)
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from upvest_verify import ConfigurationError, Verifier
from upvest_verify.adapters.starlette import (
    UpvestWebhookMiddleware,
    get_delivery,
    get_webhook,
)
from upvest_verify.ledger import (
    BaseLedger,
    MemoryLedger,
    MemoryReplayStore,
    SQLiteLedger,
)
from upvest_verify.testing import make_key_set, sign_webhook

VIEWS = ["/webhooks/upvest", "/webhooks/sync"]


def build(verifier: Verifier, script: Script, **options: Any) -> Starlette:
    """An async and a sync endpoint behind the middleware, both running ``script``.

    At shutdown the ledger's async connections are closed in the server's event loop.
    """

    async def hook(request: Request) -> JSONResponse:
        assert get_webhook(request) is request.state.upvest_webhook
        document, status = await script.arun(get_delivery(request))
        return JSONResponse(document, status)

    def sync_hook(request: Request) -> JSONResponse:
        document, status = script.run(get_delivery(request))
        return JSONResponse(document, status)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        ledger = options.get("ledger")
        if ledger is not None:
            await ledger.aclose()

    app = Starlette(
        routes=[
            Route("/webhooks/upvest", hook, methods=["POST"]),
            Route("/webhooks/sync", sync_hook, methods=["POST"]),
        ],
        lifespan=lifespan,
    )
    app.add_middleware(UpvestWebhookMiddleware, verifier=verifier, paths=["/webhooks/*"], **options)
    return app


@contextlib.contextmanager
def serve(ledger: BaseLedger, verifier: Verifier | None = None, **options: Any) -> Iterator[Target]:
    """Serve a fresh receiver admitting through ``ledger``; yield its :class:`Target`."""
    verifier = verifier or Verifier(make_key_set(SIGNING_KEY))
    script = Script()
    with run_uvicorn(build(verifier, script, ledger=ledger, **options), lifespan="on") as url:
        yield Target(url, VIEWS[0], script, ledger)


@pytest.fixture(scope="module")
def receiver() -> Iterator[Target]:
    """One receiver with a memory ledger for the module (each test sends fresh events)."""
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
    """The adapter completes open claims on 2xx and releases them on any other answer."""
    check_own_way(target)


def test_redis_ledger(redis_url: str) -> None:
    """The same guarantees with a RedisLedger on a real redis-server."""
    from upvest_verify.ledger import RedisLedger

    ledger = RedisLedger.from_url(redis_url, namespace="starlette-adapter")
    try:
        with serve(ledger) as target:
            check_once(target)
            check_retry_after_failure(target)
            check_held(target.on("/webhooks/sync"))
    finally:
        ledger.close()


def test_redis_down() -> None:
    """A Redis server that cannot be reached: 503 ledger_unavailable with Retry-After."""
    from upvest_verify.ledger import RedisLedger

    url = f"redis://127.0.0.1:{closed_port()}/0"
    ledger = RedisLedger.from_url(url, socket_connect_timeout=2)
    with serve(ledger) as target:
        check_outage(target)


def test_sqlite_unusable(tmp_path: Path) -> None:
    """An SQLite file that cannot be opened: 503 ledger_unavailable."""
    with serve(SQLiteLedger(unopenable_sqlite(tmp_path))) as target:
        check_outage(target)


def test_inbox(tmp_path: Path) -> None:
    """inbox=True queues the events in the ledger and answers 200 without the app."""
    with serve(SQLiteLedger(tmp_path / "inbox.sqlite3"), inbox=True) as target:
        check_inbox(target)


def test_replay_store_records_after_2xx_only() -> None:
    """The verifier's replay store learns a signature after a 2xx answer, not after a 500."""
    verifier = Verifier(make_key_set(SIGNING_KEY), replay_store=MemoryReplayStore())
    with serve(MemoryLedger(), verifier) as target:
        check_replay_recorded(target)
        check_replay_recorded(target.on("/webhooks/sync"))


def test_replay_store_without_ledger() -> None:
    """Without a ledger the signature is still recorded after 2xx (and only then)."""
    verifier = Verifier(make_key_set(SIGNING_KEY), replay_store=MemoryReplayStore())
    script = Script()
    with run_uvicorn(build(verifier, script)) as url:
        target = Target(url, VIEWS[0], script, MemoryLedger())
        script.reset(status=500)
        batch = target.batch(1)
        assert target.send(batch)[:2] == (500, {"delivery": None})
        script.reset()
        assert target.send(batch)[0] == 200
        assert target.send(batch)[1]["detail"] == "replayed"


def test_body_without_events(receiver: Target) -> None:
    """A verified body that is no event envelope cannot be keyed: 400 invalid_payload."""
    receiver.script.reset()
    signed = sign_webhook({"hello": "world"}, key=SIGNING_KEY, url=receiver.url + VIEWS[0])
    assert_problem(receiver.send(signed), 400, "invalid_payload", retry_after=False)
    assert receiver.script.calls == 0


def test_options_are_checked() -> None:
    """A ledger that is not one, or inbox without a ledger, fails at start-up."""
    verifier = Verifier(make_key_set(SIGNING_KEY))
    with pytest.raises(ConfigurationError, match="ledger must be"):
        UpvestWebhookMiddleware(Starlette(), verifier=verifier, ledger="memory://")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="needs a ledger"):
        UpvestWebhookMiddleware(Starlette(), verifier=verifier, inbox=True)
