"""The Starlette middleware at start-up: the warm-up on ``lifespan.startup`` (real uvicorn)."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import AsyncIterator
from typing import Any

import pytest

pytest.importorskip("starlette", reason="the starlette extra is not installed")
pytest.importorskip("anyio", reason="the starlette extra is not installed")
pytest.importorskip(
    "uvicorn", reason="the real-server tests need uvicorn (dependency group tests-servers)"
)
httpx = pytest.importorskip("httpx", reason="the real-server tests send requests with httpx")

from adapter_support import SIGNING_KEY, WEBHOOK_PATH, LogWaiter, run_uvicorn, wire_headers  # noqa: E402
from starlette.applications import Starlette  # noqa: E402
from starlette.middleware import Middleware  # noqa: E402
from starlette.requests import Request  # noqa: E402
from starlette.responses import PlainTextResponse, Response  # noqa: E402
from starlette.routing import Route  # noqa: E402

from upvest_verify import Verifier  # noqa: E402
from upvest_verify.adapters.starlette import UpvestWebhookMiddleware  # noqa: E402
from upvest_verify.testing import make_key_set, sample_events, sign_webhook  # noqa: E402


class WarmUpSpy(Verifier):
    """A verifier recording each warm-up and the thread it ran on."""

    __slots__ = ("error", "threads")

    def __init__(self, error: Exception | None = None) -> None:
        super().__init__(make_key_set(SIGNING_KEY))
        self.threads: list[int] = []
        self.error = error

    def warm_up(self) -> None:
        self.threads.append(threading.get_ident())
        if self.error is not None:
            raise self.error
        super().warm_up()


def lifespan_app(verifier: Verifier, own: bool, **options: Any) -> tuple[Starlette, list[str]]:
    """A Starlette app behind the middleware, with or without a lifespan of its own.

    ``/thread`` answers the ident of the thread its event loop runs on.
    """
    events: list[str] = []

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        events.append("startup")
        yield
        events.append("shutdown")

    async def webhook(request: Request) -> Response:
        return PlainTextResponse(str(len(request.scope["upvest_verify"].events)))

    async def thread(request: Request) -> Response:
        return PlainTextResponse(str(threading.get_ident()))

    app = Starlette(
        routes=[Route(WEBHOOK_PATH, webhook, methods=["POST"]), Route("/thread", thread)],
        middleware=[Middleware(UpvestWebhookMiddleware, verifier=verifier, **options)],
        lifespan=lifespan if own else None,
    )
    return app, events


@pytest.mark.parametrize("own", [True, False], ids=["own-lifespan", "no-lifespan"])
@pytest.mark.parametrize("offload", [True, False], ids=["offload", "inline"])
def test_startup_warms_up_the_verifier(own: bool, offload: bool) -> None:
    """lifespan.startup (uvicorn, lifespan on) warms the verifier up once, before the
    first request: in a worker thread when offloading, on the event loop's thread
    inline; the app's own lifespan still runs, and webhooks are verified."""
    spy = WarmUpSpy()
    app, events = lifespan_app(spy, own, offload=offload)
    with run_uvicorn(app, lifespan="on") as url, httpx.Client(base_url=url) as c:
        assert len(spy.threads) == 1
        assert events == (["startup"] if own else [])
        loop_thread = int(c.get("/thread").text)
        signed = sign_webhook(sample_events(3), key=SIGNING_KEY, url=url + WEBHOOK_PATH)
        response = c.post(WEBHOOK_PATH, content=signed.body, headers=wire_headers(signed))
        assert (response.status_code, response.text) == (200, "3")
    assert events == (["startup", "shutdown"] if own else [])
    assert len(spy.threads) == 1
    assert (spy.threads[0] == loop_thread) is (not offload)


def test_a_failing_warm_up_is_logged_and_the_app_starts(security_log: LogWaiter) -> None:
    """A warm-up that raises is logged; startup completes and webhooks are still verified."""
    spy = WarmUpSpy(RuntimeError("broken OpenSSL"))
    app, events = lifespan_app(spy, own=True)
    with run_uvicorn(app, lifespan="on") as url, httpx.Client(base_url=url) as c:
        assert events == ["startup"]
        signed = sign_webhook(sample_events(1), key=SIGNING_KEY, url=url + WEBHOOK_PATH)
        response = c.post(WEBHOOK_PATH, content=signed.body, headers=wire_headers(signed))
        assert response.status_code == 200
    assert events == ["startup", "shutdown"]
    record = security_log.wait_for("could not warm up")
    assert record.exc_info is not None
    assert "broken OpenSSL" in str(record.exc_info[1])
