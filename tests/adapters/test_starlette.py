"""The Starlette middleware on a real uvicorn server (threat-model.md §6 G1-G3, G9-G13, H3)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("starlette", reason="the starlette extra is not installed")
pytest.importorskip("anyio", reason="the starlette extra is not installed")
pytest.importorskip(
    "uvicorn", reason="the real-server tests need uvicorn (dependency group tests-servers)"
)
httpx = pytest.importorskip("httpx", reason="the real-server tests send requests with httpx")

from adapter_support import (  # noqa: E402
    SIGNING_KEY,
    WEBHOOK_PATH,
    LogWaiter,
    assert_problem,
    chunks,
    raw_request,
    run_uvicorn,
    send_partial_then_close,
    short_body_asgi,
    tamper_signature,
    wire_headers,
)
from starlette.applications import Starlette  # noqa: E402
from starlette.middleware import Middleware  # noqa: E402
from starlette.requests import Request  # noqa: E402
from starlette.responses import JSONResponse, PlainTextResponse, Response  # noqa: E402
from starlette.routing import Route  # noqa: E402

from upvest_verify import (  # noqa: E402
    ConfigurationError,
    Reason,
    VerificationError,
    VerifiedWebhook,
    Verifier,
)
from upvest_verify.adapters.starlette import UpvestWebhookMiddleware  # noqa: E402
from upvest_verify.testing import (  # noqa: E402
    SignedWebhook,
    make_key_set,
    sample_events,
    sign_webhook,
)

LIMIT = 8192
NO_LENGTH = ["@method", "@path", "content-type", "digest", "date"]


class CountingVerifier(Verifier):
    """A verifier that counts how often it was asked.

    With a key set and no replay store the middleware calls ``verify`` (one call, in
    a worker thread or on the loop); ``averify`` is left alone so that it does.
    """

    __slots__ = ("calls",)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.calls = 0

    def verify(self, *args: Any, **kwargs: Any) -> VerifiedWebhook:
        self.calls += 1
        return super().verify(*args, **kwargs)


class ExplodingVerifier(Verifier):
    """A verifier whose internals crash (G13 fault injection)."""

    __slots__ = ("error",)

    def __init__(self, error: Exception) -> None:
        super().__init__(make_key_set(SIGNING_KEY))
        self.error = error

    def verify(self, *args: Any, **kwargs: Any) -> VerifiedWebhook:
        raise self.error


class ExplodingAsyncVerifier(ExplodingVerifier):
    """The same, with ``averify`` overridden: the middleware then calls ``averify``."""

    __slots__ = ()

    async def averify(self, *args: Any, **kwargs: Any) -> VerifiedWebhook:
        raise self.error


def make_app(verifier: Verifier, **options: Any) -> Starlette:
    """A receiver recording what reached its endpoints in ``app.state.calls``."""
    calls: list[dict[str, Any]] = []

    async def webhook(request: Request) -> Response:
        body = await request.body()
        document = await request.json()
        result = request.scope["upvest_verify"]
        calls.append(
            {
                "method": request.method,
                "body": body,
                "json": document,
                "result": result,
                "state_is_result": request.state.upvest_webhook is result,
            }
        )
        return JSONResponse({"events": len(result.events)})

    async def other(request: Request) -> Response:
        body = await request.body()
        calls.append({"other": body, "verified": "upvest_verify" in request.scope})
        return PlainTextResponse(f"other {len(body)}")

    async def health(request: Request) -> Response:
        return PlainTextResponse("ok")

    options.setdefault("max_body_size", LIMIT)
    app = Starlette(
        routes=[
            Route(WEBHOOK_PATH, webhook, methods=["POST", "GET", "PUT", "DELETE"]),
            Route("/hooks/{tenant}", webhook, methods=["POST"]),
            Route("/other", other, methods=["POST"]),
            Route("/health", health),
        ],
        middleware=[
            Middleware(
                UpvestWebhookMiddleware,
                verifier=verifier,
                paths=[WEBHOOK_PATH, "/hooks/*"],
                **options,
            )
        ],
    )
    app.state.calls = calls
    return app


@pytest.fixture(scope="module")
def counting() -> CountingVerifier:
    """The verifier behind the shared server."""
    return CountingVerifier(make_key_set(SIGNING_KEY))


@pytest.fixture(scope="module")
def app(counting: CountingVerifier) -> Starlette:
    """The shared receiver app."""
    return make_app(counting)


@pytest.fixture(scope="module")
def base_url(app: Starlette) -> Iterator[str]:
    """The shared receiver, served by uvicorn for the whole module."""
    with run_uvicorn(app) as url:
        yield url


@pytest.fixture
def calls(app: Starlette, counting: CountingVerifier) -> list[dict[str, Any]]:
    """What reached the endpoints during this test."""
    app.state.calls.clear()
    counting.calls = 0
    result: list[dict[str, Any]] = app.state.calls
    return result


@pytest.fixture
def client(base_url: str) -> Iterator[Any]:
    """An HTTP client for the shared server."""
    with httpx.Client(base_url=base_url, timeout=15) as c:
        yield c


def sign(base_url: str, body: Any = None, path: str = WEBHOOK_PATH, **kw: Any) -> SignedWebhook:
    """Sign a webhook for ``path`` on the server at ``base_url``."""
    return sign_webhook(
        sample_events(2) if body is None else body, key=SIGNING_KEY, url=base_url + path, **kw
    )


def post(client: Any, signed: SignedWebhook, **kw: Any) -> Any:
    """POST a signed webhook as it was signed."""
    return client.post(signed.path, content=signed.body, headers=wire_headers(signed), **kw)


def padded(size: int) -> bytes:
    """A JSON envelope of exactly ``size`` bytes."""
    empty = len(b'{"payload":[],"pad":""}')
    return json.dumps({"payload": [], "pad": "x" * (size - empty)}, separators=(",", ":")).encode()


# --------------------------------------------------------------------------- G1: happy path


@pytest.mark.parametrize(
    ("dialect", "encoding"),
    [("upvest-v6", "der"), ("rfc9421", "raw"), ("rfc9421", "der")],
)
def test_valid_webhook_reaches_handler_with_identical_body(
    client: Any, base_url: str, calls: list[dict[str, Any]], dialect: str, encoding: str
) -> None:
    """A valid webhook reaches the endpoint, which reads the exact bytes and JSON (G1)."""
    signed = sign(base_url, dialect=dialect, encoding=encoding)
    response = post(client, signed)
    assert response.status_code == 200, response.text
    assert response.json() == {"events": 2}
    [call] = calls
    assert call["body"] == signed.body
    assert call["json"] == json.loads(signed.body)
    assert call["result"].key_id == SIGNING_KEY.kid
    assert call["result"].body == signed.body
    assert call["state_is_result"] is True


def test_many_chunks_are_reassembled(
    client: Any, base_url: str, calls: list[dict[str, Any]]
) -> None:
    """A body sent in 1,000 chunked-encoding pieces verifies and reaches the endpoint whole (G2)."""
    signed = sign(base_url, body=sample_events(20), components=NO_LENGTH)
    assert len(signed.body) > 1000
    response = client.post(
        signed.path,
        content=chunks(signed.body, 1000),
        headers=wire_headers(signed, drop=("content-length",)),
    )
    assert response.status_code == 200, response.text
    assert calls[0]["body"] == signed.body


def test_other_paths_pass_through_untouched(
    client: Any, calls: list[dict[str, Any]], counting: CountingVerifier
) -> None:
    """Unprotected paths get their body and no verification (no scope key, verifier idle)."""
    response = client.post("/other", content=b"plain body")
    assert response.status_code == 200
    assert response.text == "other 10"
    assert calls == [{"other": b"plain body", "verified": False}]
    assert client.get("/health").text == "ok"
    assert counting.calls == 0


def test_prefix_paths_are_protected(
    client: Any, base_url: str, calls: list[dict[str, Any]]
) -> None:
    """A ``/hooks/*`` entry protects every path below it."""
    assert_problem(client.post("/hooks/acme", content=b"{}"), 401, Reason.MISSING_SIGNATURE)
    signed = sign(base_url, path="/hooks/acme")
    assert post(client, signed).status_code == 200
    assert len(calls) == 1


# --------------------------------------------------------------------------- rejections


def test_tampered_body_is_rejected(client: Any, base_url: str, calls: list[dict[str, Any]]) -> None:
    """A changed body fails with 401 digest_mismatch and never reaches the endpoint."""
    signed = sign(base_url)
    tampered = signed.replace_body(signed.body.replace(b"EUR", b"USD"))
    assert_problem(post(client, tampered), 401, Reason.DIGEST_MISMATCH)
    assert calls == []


def test_tampered_signature_is_rejected(
    client: Any, base_url: str, calls: list[dict[str, Any]]
) -> None:
    """A flipped signature bit fails with 401 bad_signature."""
    assert_problem(post(client, tamper_signature(sign(base_url))), 401, Reason.BAD_SIGNATURE)
    assert calls == []


@pytest.mark.parametrize(
    ("change", "status", "reason"),
    [
        ({"signature": None}, 401, Reason.MISSING_SIGNATURE),
        ({"signature-input": "sig1=(", "signature": "sig1=:AAAA:"}, 400, Reason.MALFORMED_HEADER),
    ],
)
def test_broken_headers_are_rejected(
    client: Any,
    base_url: str,
    calls: list[dict[str, Any]],
    change: dict[str, str | None],
    status: int,
    reason: Reason,
) -> None:
    """Missing or malformed signature fields answer their reason code and status."""
    signed = sign(base_url)
    for name, value in change.items():
        signed = signed.replace_header(name, value)
    assert_problem(post(client, signed), status, reason)
    assert calls == []


def test_unknown_key_and_expired_are_rejected(
    client: Any, base_url: str, other_key: Any, calls: list[dict[str, Any]]
) -> None:
    """A foreign key gives unknown_key, an old signature expired (both 401)."""
    foreign = sign_webhook(sample_events(), key=other_key, url=base_url + WEBHOOK_PATH)
    assert_problem(post(client, foreign), 401, Reason.UNKNOWN_KEY)
    old = sign(base_url, created=1_600_000_000)
    assert_problem(post(client, old), 401, Reason.EXPIRED)
    assert calls == []


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "HEAD", "OPTIONS"])
def test_other_methods_get_405(
    client: Any, base_url: str, calls: list[dict[str, Any]], method: str
) -> None:
    """Non-POST requests on the webhook path get 405 with Allow: POST, even when signed (G9)."""
    signed = sign(base_url)
    response = client.request(
        method, WEBHOOK_PATH, content=signed.body, headers=wire_headers(signed)
    )
    assert response.status_code == 405
    assert response.headers["allow"] == "POST"
    if method != "HEAD":
        assert_problem(response, 405, "method_not_allowed")
    assert calls == []


def test_post_signature_replayed_as_put_is_refused(
    client: Any, base_url: str, calls: list[dict[str, Any]]
) -> None:
    """A signature made for PUT is refused on POST (bad_signature) and PUT is refused (405)."""
    put = sign(base_url, method="PUT")
    response = client.post(put.path, content=put.body, headers=wire_headers(put))
    assert_problem(response, 401, Reason.BAD_SIGNATURE)
    assert client.put(put.path, content=put.body, headers=wire_headers(put)).status_code == 405
    assert calls == []


@pytest.mark.parametrize(
    ("sent", "signed_as", "status", "reason"),
    [
        ("post", "POST", 405, "method_not_allowed"),
        ("post", "post", 405, "method_not_allowed"),
        ("POST", "post", 401, "bad_signature"),
    ],
)
def test_method_is_taken_as_received(
    base_url: str,
    calls: list[dict[str, Any]],
    sent: str,
    signed_as: str,
    status: int,
    reason: str,
) -> None:
    """uvicorn passes ``post`` as sent: it is not POST (405); a signature over ``post`` fails (B19)."""
    signed = sign(base_url, method=signed_as)
    answer, body, _ = raw_request(base_url, sent, WEBHOOK_PATH, wire_headers(signed), signed.body)
    assert (answer, json.loads(body)["detail"]) == (status, reason)
    assert calls == []


def test_rejections_are_logged_without_secrets(
    client: Any, base_url: str, security_log: LogWaiter
) -> None:
    """Each rejection logs reason and path on upvest_verify.security, never the signature (G12)."""
    signed = tamper_signature(sign(base_url))
    post(client, signed)
    record = security_log.wait_for("bad_signature")
    text = record.getMessage()
    assert WEBHOOK_PATH in text
    signature = (signed.header("signature") or "").split(":")[1]
    assert signature[:20] not in text
    assert record.levelname == "WARNING"


# --------------------------------------------------------------------------- G3: size limit


def test_body_at_the_limit_is_accepted(
    client: Any, base_url: str, calls: list[dict[str, Any]]
) -> None:
    """A body of exactly max_body_size bytes verifies."""
    signed = sign(base_url, body=padded(LIMIT))
    assert len(signed.body) == LIMIT
    assert post(client, signed).status_code == 200
    assert calls[0]["body"] == signed.body


def test_content_length_above_the_limit_is_413(
    client: Any, base_url: str, calls: list[dict[str, Any]]
) -> None:
    """A declared body one byte over the limit gets 413 body_too_large."""
    signed = sign(base_url, body=padded(LIMIT + 1))
    assert_problem(post(client, signed), 413, Reason.BODY_TOO_LARGE)
    assert calls == []


def test_chunked_body_crossing_the_limit_is_413(
    client: Any, base_url: str, calls: list[dict[str, Any]]
) -> None:
    """A chunked body crossing the limit gets 413 without a Content-Length to go by."""
    signed = sign(base_url, body=padded(LIMIT + 1), components=NO_LENGTH)
    response = client.post(
        signed.path,
        content=chunks(signed.body, 8),
        headers=wire_headers(signed, drop=("content-length",)),
    )
    assert_problem(response, 413, Reason.BODY_TOO_LARGE)
    assert calls == []


def test_chunked_body_at_the_limit_is_accepted(
    client: Any, base_url: str, calls: list[dict[str, Any]]
) -> None:
    """A chunked body of exactly the limit verifies."""
    signed = sign(base_url, body=padded(LIMIT), components=NO_LENGTH)
    response = client.post(
        signed.path,
        content=chunks(signed.body, 50),
        headers=wire_headers(signed, drop=("content-length",)),
    )
    assert response.status_code == 200, response.text
    assert calls[0]["body"] == signed.body


# --------------------------------------------------------------------------- G2: disconnect


def test_disconnect_mid_body_never_verifies(
    base_url: str, calls: list[dict[str, Any]], counting: CountingVerifier, security_log: LogWaiter
) -> None:
    """A client leaving mid-body aborts: no verification, no handler call (G2)."""
    signed = sign(base_url)
    send_partial_then_close(base_url, WEBHOOK_PATH, wire_headers(signed))
    security_log.wait_for("client disconnected")
    assert counting.calls == 0
    assert calls == []


def test_body_shorter_than_content_length_is_400() -> None:
    """A body the server ends before its Content-Length is 400 incomplete_body, never verified."""
    counting = CountingVerifier(make_key_set(SIGNING_KEY))
    app = make_app(counting)
    status, headers, body = short_body_asgi(app, WEBHOOK_PATH)
    assert status == 400
    assert headers["content-type"].startswith("application/problem+json")
    assert json.loads(body)["detail"] == "incomplete_body"
    assert counting.calls == 0
    assert app.state.calls == []


# --------------------------------------------------------------------------- G10, G11


def test_repeated_header_lines_are_all_read(
    client: Any, base_url: str, calls: list[dict[str, Any]]
) -> None:
    """Split Signature lines and a repeated covered field verify with the RFC 9421 join (G10)."""
    signed = sign(
        base_url,
        headers=[("x-upvest-trace", "a"), ("x-upvest-trace", "b")],
        components=["@method", "@path", "content-digest", "x-upvest-trace"],
        dialect="rfc9421",
    )
    extra = [
        ("signature-input", 'sig2=("@method");created=1700000000;keyid="nobody"'),
        ("signature", "sig2=:AAAA:"),
    ]
    response = client.post(
        signed.path, content=signed.body, headers=[*wire_headers(signed), *extra]
    )
    assert response.status_code == 200, response.text
    assert len(calls) == 1


def test_path_comes_from_raw_path(base_url: str, calls: list[dict[str, Any]]) -> None:
    """The signed @path is the raw, still percent-encoded path, not the decoded one (G11)."""
    encoded = "/webhooks/%75pvest"
    signed = sign(base_url, path=encoded)
    status, body, _ = raw_request(base_url, "POST", encoded, wire_headers(signed), signed.body)
    assert status == 200, body
    # RFC 9421 signs the raw path (only draft-06 bases may also match the decoded one).
    decoded = sign(base_url, path=WEBHOOK_PATH, dialect="rfc9421")
    status, body, _ = raw_request(base_url, "POST", encoded, wire_headers(decoded), decoded.body)
    assert status == 401
    assert json.loads(body)["detail"] == "bad_signature"
    assert len(calls) == 1


def test_root_path_is_part_of_the_signed_path() -> None:
    """Under ``--root-path /api`` the signed @path includes the prefix the proxy stripped."""
    app = make_app(Verifier(make_key_set(SIGNING_KEY)))
    with run_uvicorn(app, root_path="/api") as url, httpx.Client(base_url=url) as c:
        signed = sign_webhook(sample_events(), key=SIGNING_KEY, url=url + "/api" + WEBHOOK_PATH)
        response = c.post(WEBHOOK_PATH, content=signed.body, headers=wire_headers(signed))
        assert response.status_code == 200, response.text
        unprefixed = sign_webhook(sample_events(), key=SIGNING_KEY, url=url + WEBHOOK_PATH)
        response = c.post(WEBHOOK_PATH, content=unprefixed.body, headers=wire_headers(unprefixed))
        assert_problem(response, 401, Reason.BAD_SIGNATURE)
    assert len(app.state.calls) == 1


PUBLIC = "https://hooks.example.com/upvest-in"
COVER_URL = ["@method", "@scheme", "@authority", "@path", "digest"]


def test_public_url_rebuilds_scheme_authority_and_prefix() -> None:
    """With public_url the URL Upvest called is rebuilt, including a stripped prefix."""
    app = make_app(Verifier(make_key_set(SIGNING_KEY)), public_url=PUBLIC)
    with run_uvicorn(app) as url, httpx.Client(base_url=url) as c:
        signed = sign_webhook(
            sample_events(), key=SIGNING_KEY, url=PUBLIC + WEBHOOK_PATH, components=COVER_URL
        )
        response = c.post(WEBHOOK_PATH, content=signed.body, headers=wire_headers(signed))
        assert response.status_code == 200, response.text
        local = sign_webhook(
            sample_events(), key=SIGNING_KEY, url=url + WEBHOOK_PATH, components=COVER_URL
        )
        response = c.post(WEBHOOK_PATH, content=local.body, headers=wire_headers(local))
        assert_problem(response, 401, Reason.BAD_SIGNATURE)


@pytest.mark.parametrize("trusted", [True, False])
def test_forwarded_fields_are_believed_only_from_trusted_proxies(trusted: bool) -> None:
    """X-Forwarded-Proto/Host/Prefix rebuild the URL only when the peer is a listed proxy."""
    proxies = ["127.0.0.0/8"] if trusted else ["10.0.0.0/8"]
    app = make_app(Verifier(make_key_set(SIGNING_KEY)), trusted_proxies=proxies)
    with run_uvicorn(app) as url, httpx.Client(base_url=url) as c:
        signed = sign_webhook(
            sample_events(), key=SIGNING_KEY, url=PUBLIC + WEBHOOK_PATH, components=COVER_URL
        )
        forwarded = [
            ("x-forwarded-proto", "https"),
            ("x-forwarded-host", "attacker.example, hooks.example.com"),
            ("x-forwarded-prefix", "/upvest-in"),
        ]
        response = c.post(
            WEBHOOK_PATH, content=signed.body, headers=[*wire_headers(signed), *forwarded]
        )
    if trusted:
        assert response.status_code == 200, response.text
    else:
        assert_problem(response, 401, Reason.BAD_SIGNATURE)


def test_rfc7239_forwarded_field_from_trusted_proxy() -> None:
    """With proxy_headers="forwarded" the last RFC 7239 element gives proto and host."""
    app = make_app(
        Verifier(make_key_set(SIGNING_KEY)),
        trusted_proxies=["127.0.0.1"],
        proxy_headers="forwarded",
        path_prefix="/upvest-in",
    )
    with run_uvicorn(app) as url, httpx.Client(base_url=url) as c:
        signed = sign_webhook(
            sample_events(), key=SIGNING_KEY, url=PUBLIC + WEBHOOK_PATH, components=COVER_URL
        )
        forwarded = (
            "forwarded",
            'for=1.2.3.4;proto=http;host=x, for=5.6.7.8;host="hooks.example.com";proto=https',
        )
        response = c.post(
            WEBHOOK_PATH, content=signed.body, headers=[*wire_headers(signed), forwarded]
        )
        assert response.status_code == 200, response.text


# --------------------------------------------------------------------------- G13: fail closed


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (RuntimeError("boom"), "internal_error"),
        (ConfigurationError("no keys"), "configuration_error"),
    ],
)
@pytest.mark.parametrize("kind", [ExplodingVerifier, ExplodingAsyncVerifier])
@pytest.mark.parametrize("offload", [True, False], ids=["offload", "inline"])
def test_verifier_crash_fails_closed(
    error: Exception, reason: str, kind: type[ExplodingVerifier], offload: bool
) -> None:
    """An exception inside the verifier answers 500 and never calls the endpoint (G13)."""
    app = make_app(kind(error), offload=offload)
    with run_uvicorn(app) as url, httpx.Client(base_url=url) as c:
        signed = sign_webhook(sample_events(), key=SIGNING_KEY, url=url + WEBHOOK_PATH)
        response = c.post(WEBHOOK_PATH, content=signed.body, headers=wire_headers(signed))
    assert_problem(response, 500, reason)
    assert "boom" not in response.text
    assert app.state.calls == []


def test_on_error_hook_answers_failures() -> None:
    """on_error builds the failure response; a crashing hook falls back to the default."""
    seen: list[str] = []

    async def hook(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, VerificationError)
        seen.append(exc.reason.value)
        if request.headers.get("x-crash-hook"):
            raise RuntimeError("hook broke")
        return PlainTextResponse("custom", status_code=418)

    app = make_app(Verifier(make_key_set(SIGNING_KEY)), on_error=hook)
    with run_uvicorn(app) as url, httpx.Client(base_url=url) as c:
        response = c.post(WEBHOOK_PATH, content=b"{}")
        assert (response.status_code, response.text) == (418, "custom")
        response = c.post(WEBHOOK_PATH, content=b"{}", headers={"x-crash-hook": "1"})
        assert_problem(response, 401, Reason.MISSING_SIGNATURE)
    assert seen == ["missing_signature", "missing_signature"]
    assert app.state.calls == []


# --------------------------------------------------------------------------- H3: concurrency


@pytest.mark.parametrize(
    "options",
    [{}, {"max_threads": None}, {"max_threads": 1}, {"offload": False}],
    ids=["threads-per-core", "anyio-limiter", "one-thread", "inline"],
)
def test_health_endpoint_answers_during_200_verifications(options: dict[str, Any]) -> None:
    """200 concurrent verifications all succeed while a health endpoint keeps answering (H3)."""
    app = make_app(Verifier(make_key_set(SIGNING_KEY)), **options)
    with run_uvicorn(app) as url:
        webhooks = [
            sign_webhook(sample_events(), key=SIGNING_KEY, url=url + WEBHOOK_PATH)
            for _ in range(200)
        ]

        async def run() -> tuple[list[int], list[int]]:
            limits = httpx.Limits(max_connections=64)
            async with httpx.AsyncClient(base_url=url, limits=limits, timeout=60) as c:
                done = asyncio.Event()

                async def deliver(s: SignedWebhook) -> int:
                    r = await c.post(WEBHOOK_PATH, content=s.body, headers=wire_headers(s))
                    status: int = r.status_code
                    return status

                async def probe() -> list[int]:
                    statuses: list[int] = []
                    while not done.is_set() or not statuses:
                        statuses.append((await c.get("/health")).status_code)
                    return statuses

                probe_task = asyncio.create_task(probe())
                results = await asyncio.gather(*(deliver(s) for s in webhooks))
                done.set()
                return list(results), await probe_task

        statuses, health = asyncio.run(run())
    assert statuses == [200] * 200
    assert health
    assert set(health) == {200}
    assert len(app.state.calls) == 200


# --------------------------------------------------------------------------- ASGI level


def test_non_http_scopes_pass_through(verifier: Verifier) -> None:
    """Websocket scopes reach the app with the original receive and send; lifespan
    messages reach it unchanged (the very objects), through a receive that warms up."""
    seen: list[tuple[str, Any, Any]] = []
    received: list[Any] = []

    async def inner(scope: Any, receive: Any, send: Any) -> None:
        seen.append((scope["type"], receive, send))
        if scope["type"] == "lifespan":
            received.append(await receive())
            received.append(await receive())

    middleware = UpvestWebhookMiddleware(inner, verifier=verifier)
    messages = [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}]
    queue = list(messages)

    async def receive() -> dict[str, Any]:
        return queue.pop(0)

    async def send(message: Any) -> None:
        pass

    for kind in ("lifespan", "websocket"):
        asyncio.run(middleware({"type": kind, "path": WEBHOOK_PATH}, receive, send))
    assert [kind for kind, _, _ in seen] == ["lifespan", "websocket"]
    assert seen[0][2] is send
    assert seen[1][1:] == (receive, send)
    assert received == messages
    assert all(a is b for a, b in zip(received, messages, strict=True))


def test_asgi_disconnect_after_partial_chunks_is_not_verified() -> None:
    """An http.disconnect after some body chunks ends the request with nothing sent (G2)."""
    counting = CountingVerifier(make_key_set(SIGNING_KEY))
    reached: list[bool] = []

    async def inner(scope: Any, receive: Any, send: Any) -> None:
        reached.append(True)

    middleware = UpvestWebhookMiddleware(inner, verifier=counting)
    messages = [
        {"type": "http.request", "body": b"{" * 10, "more_body": True},
        {"type": "http.request", "body": b"{" * 10, "more_body": True},
        {"type": "http.disconnect"},
    ]
    sent: list[Any] = []

    async def receive() -> Any:
        return messages.pop(0)

    async def send(message: Any) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "method": "POST",
        "path": WEBHOOK_PATH,
        "raw_path": WEBHOOK_PATH.encode(),
        "query_string": b"",
        "headers": [(b"host", b"x")],
    }
    asyncio.run(middleware(scope, receive, send))
    assert (reached, sent, counting.calls) == ([], [], 0)
    assert "upvest_verify" not in scope


@pytest.mark.parametrize(
    "options",
    [
        {"paths": ["webhooks"]},
        {"paths": ["/a/*/b"]},
        {"paths": []},
        {"max_body_size": 0},
        {"max_threads": 0},
        {"max_threads": True},
        {"public_url": "ftp://x"},
        {"trusted_proxies": ["not-an-ip"]},
        {"public_url": "https://x", "trusted_proxies": ["127.0.0.1"]},
        {"proxy_headers": "x-real-ip"},
        {"path_prefix": "no-slash"},
    ],
)
def test_bad_options_fail_at_construction(verifier: Verifier, options: dict[str, Any]) -> None:
    """Invalid middleware options raise ConfigurationError when the app is built."""

    async def inner(scope: Any, receive: Any, send: Any) -> None:
        pass

    with pytest.raises(ConfigurationError):
        UpvestWebhookMiddleware(inner, verifier=verifier, **options)


def test_verifier_must_be_a_verifier() -> None:
    """Passing something else than a Verifier is a configuration error."""

    async def inner(scope: Any, receive: Any, send: Any) -> None:
        pass

    with pytest.raises(ConfigurationError):
        UpvestWebhookMiddleware(inner, verifier=object())  # type: ignore[arg-type]
