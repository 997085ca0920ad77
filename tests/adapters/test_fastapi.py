"""The FastAPI dependencies (and re-exported middleware) on a real uvicorn server."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Annotated, Any

import pytest

pytest.importorskip("fastapi", reason="the fastapi extra is not installed")
pytest.importorskip("anyio", reason="the fastapi extra is not installed")
pytest.importorskip(
    "uvicorn", reason="the real-server tests need uvicorn (dependency group tests-servers)"
)
httpx = pytest.importorskip("httpx", reason="the real-server tests send requests with httpx")

from adapter_support import (  # noqa: E402
    SIGNING_KEY,
    assert_problem,
    chunks,
    run_uvicorn,
    short_body_asgi,
    wire_headers,
)
from fastapi import Depends, FastAPI, Request  # noqa: E402
from fastapi.responses import PlainTextResponse  # noqa: E402
from payload_support import check_lenient_and_own, check_receiver, delivery_log_capture  # noqa: E402
from pydantic import BaseModel  # noqa: E402

from upvest_verify import PayloadError, Reason, VerifiedWebhook, Verifier  # noqa: E402
from upvest_verify.adapters import starlette as starlette_adapter  # noqa: E402
from upvest_verify.adapters.fastapi import (  # noqa: E402
    UpvestSignature,
    UpvestWebhook,
    UpvestWebhookMiddleware,
    UpvestWebhookRejected,
    problem_exception_handler,
)
from upvest_verify.testing import SignedWebhook, make_key_set, sample_events, sign_webhook  # noqa: E402

LIMIT = 8192


class CountingVerifier(Verifier):
    """A verifier that counts its verifications."""

    __slots__ = ("calls",)

    def __init__(self) -> None:
        super().__init__(make_key_set(SIGNING_KEY))
        self.calls = 0

    async def averify(self, *args: Any, **kwargs: Any) -> VerifiedWebhook:
        self.calls += 1
        return await super().averify(*args, **kwargs)


class Envelope(BaseModel):
    """The Upvest body shape, parsed by FastAPI."""

    payload: list[dict[str, Any]]


COUNTING = CountingVerifier()
# Module level: with postponed annotations FastAPI resolves these names in module globals.
verified = UpvestSignature(COUNTING, max_body_size=LIMIT)
inline = UpvestSignature(COUNTING, offload=False)
Verified = Annotated[VerifiedWebhook, Depends(verified)]
Inline = Annotated[VerifiedWebhook, Depends(inline)]


def make_app(verifier: Verifier, *, problem_handler: bool) -> FastAPI:
    """A receiver with middleware-backed and stand-alone routes; calls go to app.state.calls."""
    app = FastAPI()
    app.add_middleware(UpvestWebhookMiddleware, verifier=verifier, paths=["/mw/*"])
    if problem_handler:
        app.add_exception_handler(UpvestWebhookRejected, problem_exception_handler)
    calls: list[dict[str, Any]] = []
    app.state.calls = calls

    @app.post("/mw/raw")
    async def mw_raw(webhook: UpvestWebhook, request: Request) -> dict[str, Any]:
        calls.append({"body": await request.body(), "webhook": webhook})
        return {"key_id": webhook.key_id}

    @app.post("/mw/model")
    async def mw_model(envelope: Envelope, webhook: UpvestWebhook) -> dict[str, Any]:
        calls.append({"envelope": envelope, "webhook": webhook})
        return {"events": len(envelope.payload)}

    @app.post("/uncovered")
    async def uncovered(webhook: UpvestWebhook) -> dict[str, Any]:
        calls.append({"webhook": webhook})
        return {}

    @app.api_route("/solo/raw", methods=["POST", "GET"])
    async def solo_raw(webhook: Verified, request: Request) -> dict[str, Any]:
        calls.append({"body": await request.body(), "webhook": webhook})
        return {"key_id": webhook.key_id}

    @app.post("/solo/model")
    async def solo_model(envelope: Envelope, webhook: Verified) -> dict[str, Any]:
        calls.append({"envelope": envelope, "webhook": webhook})
        return {"events": len(envelope.payload)}

    @app.post("/solo/inline")
    async def solo_inline(webhook: Inline) -> dict[str, Any]:
        calls.append({"webhook": webhook})
        return {}

    @app.post("/mw/both")
    async def both(webhook: Verified, again: UpvestWebhook) -> dict[str, Any]:
        calls.append({"same": webhook is again})
        return {}

    return app


@pytest.fixture(scope="module")
def counting() -> CountingVerifier:
    """The verifier behind the shared servers."""
    return COUNTING


@pytest.fixture(scope="module", params=[True, False], ids=["problem-handler", "default-handler"])
def served(request: pytest.FixtureRequest, counting: CountingVerifier) -> Iterator[Any]:
    """The receiver on uvicorn, with and without the problem+json exception handler."""
    app = make_app(counting, problem_handler=request.param)
    with run_uvicorn(app) as url:
        yield app, url, request.param


@pytest.fixture
def client(served: Any, counting: CountingVerifier) -> Iterator[Any]:
    """A client for the served app; the call log is cleared first."""
    app, url, _ = served
    app.state.calls.clear()
    counting.calls = 0
    with httpx.Client(base_url=url, timeout=15) as c:
        yield c


def sign(client: Any, path: str, body: Any = None, **kw: Any) -> SignedWebhook:
    """Sign a webhook for ``path`` on the client's server."""
    body = sample_events(2) if body is None else body
    return sign_webhook(body, key=SIGNING_KEY, url=f"{client.base_url}{path}".rstrip("/"), **kw)


def post(client: Any, signed: SignedWebhook) -> Any:
    """Send a signed webhook."""
    return client.post(signed.path, content=signed.body, headers=wire_headers(signed))


def assert_rejected(response: Any, served: Any, status: int, reason: Reason | str) -> None:
    """The full problem document, whether the app registered the problem handler or not."""
    assert_problem(response, status, reason)


def test_fastapi_module_reexports_the_middleware() -> None:
    """The FastAPI module exposes the very same middleware class."""
    assert UpvestWebhookMiddleware is starlette_adapter.UpvestWebhookMiddleware


def test_dependency_returns_the_middleware_result(client: Any, served: Any) -> None:
    """UpvestWebhook hands the endpoint the middleware's result; the body stays readable."""
    signed = sign(client, "/mw/raw")
    response = post(client, signed)
    assert response.status_code == 200, response.text
    assert response.json() == {"key_id": SIGNING_KEY.kid}
    [call] = served[0].state.calls
    assert call["body"] == signed.body
    assert call["webhook"].body == signed.body


def test_body_model_works_behind_the_middleware(client: Any, served: Any) -> None:
    """A pydantic body parameter is parsed from the replayed body."""
    response = post(client, sign(client, "/mw/model", body=sample_events(3)))
    assert response.status_code == 200, response.text
    assert response.json() == {"events": 3}


def test_middleware_rejects_before_the_route(client: Any, served: Any) -> None:
    """Middleware failures are full problem documents and the route never runs."""
    signed = sign(client, "/mw/raw")
    response = client.post(
        signed.path, content=signed.body.replace(b"EUR", b"CHF"), headers=wire_headers(signed)
    )
    assert_problem(response, 401, Reason.DIGEST_MISMATCH)
    assert served[0].state.calls == []


def test_dependency_without_middleware_fails_closed(client: Any, served: Any) -> None:
    """UpvestWebhook on a path the middleware does not cover answers 500, handler not run."""
    signed = sign(client, "/uncovered")
    assert_rejected(post(client, signed), served, 500, "configuration_error")
    assert served[0].state.calls == []


def test_standalone_dependency_verifies(client: Any, served: Any) -> None:
    """UpvestSignature verifies by itself and leaves the body readable for the endpoint."""
    signed = sign(client, "/solo/raw")
    response = post(client, signed)
    assert response.status_code == 200, response.text
    [call] = served[0].state.calls
    assert call["body"] == signed.body


@pytest.mark.parametrize("path", ["/solo/raw", "/solo/model", "/solo/inline"])
def test_standalone_dependency_rejects_tampering(client: Any, served: Any, path: str) -> None:
    """A tampered body is refused with digest_mismatch; the endpoint does not run."""
    signed = sign(client, path)
    response = client.post(
        signed.path, content=signed.body.replace(b"EUR", b"GBP"), headers=wire_headers(signed)
    )
    assert_rejected(response, served, 401, Reason.DIGEST_MISMATCH)
    assert served[0].state.calls == []


def test_standalone_dependency_with_body_model(client: Any, served: Any) -> None:
    """With a body model FastAPI reads the body first; the dependency verifies the cached bytes."""
    response = post(client, sign(client, "/solo/model", body=sample_events(4)))
    assert response.status_code == 200, response.text
    assert response.json() == {"events": 4}


def test_standalone_inline_verification(client: Any, served: Any) -> None:
    """offload=False verifies on the event loop with the same verdicts."""
    assert post(client, sign(client, "/solo/inline")).status_code == 200
    assert_rejected(client.post("/solo/inline", content=b"{}"), served, 401, "missing_signature")


@pytest.mark.parametrize("path", ["/mw/raw", "/solo/raw"])
def test_signature_over_lower_case_method_fails(client: Any, served: Any, path: str) -> None:
    """A POST whose signature covers ``post`` is refused: the method is verified as sent (B19)."""
    signed = sign(client, path, method="post")
    response = post(client, signed)
    if path.startswith("/mw/"):
        assert_problem(response, 401, Reason.BAD_SIGNATURE)
    else:
        assert_rejected(response, served, 401, Reason.BAD_SIGNATURE)
    assert served[0].state.calls == []


def test_standalone_dependency_refuses_get(client: Any, served: Any) -> None:
    """A GET on a route that allows it is still refused with 405 (G9)."""
    response = client.get("/solo/raw")
    assert_rejected(response, served, 405, "method_not_allowed")
    assert response.headers["allow"] == "POST"
    assert served[0].state.calls == []


def test_standalone_dependency_enforces_the_size_limit(client: Any, served: Any) -> None:
    """Declared and chunked bodies above max_body_size get 413 body_too_large (G3)."""
    big = json.dumps({"payload": [], "pad": "x" * LIMIT}).encode()
    signed = sign(client, "/solo/raw", body=big)
    assert_rejected(post(client, signed), served, 413, Reason.BODY_TOO_LARGE)
    response = client.post(
        signed.path,
        content=chunks(signed.body, 10),
        headers=wire_headers(signed, drop=("content-length",)),
    )
    assert_rejected(response, served, 413, Reason.BODY_TOO_LARGE)
    assert served[0].state.calls == []


def test_middleware_and_dependency_verify_once(
    client: Any, served: Any, counting: CountingVerifier
) -> None:
    """With both installed, the dependency reuses the middleware result: one verification."""
    response = post(client, sign(client, "/mw/both"))
    assert response.status_code == 200, response.text
    assert served[0].state.calls == [{"same": True}]
    assert counting.calls == 1


@pytest.mark.parametrize("path", ["/mw/raw", "/solo/raw"])
@pytest.mark.parametrize("problem_handler", [True, False])
def test_body_shorter_than_content_length_is_400(path: str, problem_handler: bool) -> None:
    """Middleware and stand-alone dependency answer a short body 400 incomplete_body, unverified."""
    counting = CountingVerifier()
    before = COUNTING.calls  # the stand-alone routes verify with the module's COUNTING
    app = make_app(counting, problem_handler=problem_handler)
    status, headers, body = short_body_asgi(app, path)
    assert status == 400
    assert headers["content-type"].startswith("application/problem+json")
    assert json.loads(body)["detail"] == "incomplete_body"
    assert (counting.calls, COUNTING.calls) == (0, before)
    assert app.state.calls == []


# --------------------------------------------------------------------------- problem documents


def test_an_apps_own_handler_for_rejections_is_kept() -> None:
    """The dependencies install the problem handler only where the app registered none."""
    app = FastAPI()

    async def custom(request: Request, exc: Exception) -> PlainTextResponse:
        assert isinstance(exc, UpvestWebhookRejected)
        return PlainTextResponse(f"custom {exc.rejection.reason}", exc.rejection.status)

    app.add_exception_handler(UpvestWebhookRejected, custom)

    @app.post("/solo/raw")
    async def solo_raw(webhook: Verified) -> dict[str, Any]:
        return {}

    with run_uvicorn(app) as url, httpx.Client(base_url=url, timeout=15) as c:
        response = c.post("/solo/raw", content=b"{}")
    assert (response.status_code, response.text) == (401, "custom missing_signature")


# --------------------------------------------------------------------------- bodies of another shape


def payload_app(calls: list[str]) -> FastAPI:
    """Views reading ``webhook.events``: behind the middleware, and with UpvestSignature."""
    app = FastAPI()
    app.add_middleware(
        UpvestWebhookMiddleware, verifier=Verifier(make_key_set(SIGNING_KEY)), paths=["/mw/*"]
    )

    @app.post("/mw/events")
    async def mw_events(webhook: UpvestWebhook) -> dict[str, int]:
        calls.append("mw")
        return {"events": len(webhook.events)}

    @app.post("/solo/events")
    def solo_events(webhook: Verified) -> dict[str, int]:
        calls.append("solo")
        return {"events": len(webhook.events)}

    @app.post("/mw/lenient")
    async def lenient(webhook: UpvestWebhook) -> Any:
        if webhook.envelope_error is not None:
            return {"other_shape": webhook.json()}
        return {"events": len(webhook.events)}

    @app.post("/mw/own-error")
    async def own_error(webhook: UpvestWebhook) -> Any:
        raise PayloadError("the handler's own parsing failed")

    return app


def test_a_body_that_is_not_an_envelope_is_400_not_500() -> None:
    """``webhook.events`` of another shape: 400 invalid_payload, logged; no handler registered."""
    calls: list[str] = []
    with delivery_log_capture() as log, run_uvicorn(payload_app(calls)) as url:
        check_receiver(url, ["/mw/events", "/solo/events"], log, calls)
        check_lenient_and_own(url, "/mw")
