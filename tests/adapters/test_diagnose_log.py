"""The security log explains proxy and body mistakes, on real servers of every adapter.

A ``bad_signature`` or ``digest_mismatch`` caused by a deployment mistake is logged
with what was rebuilt and a hint naming the setting to change: the full webhook URL
as ``public_url`` (Starlette), a forgotten ``path_prefix`` (Flask), an internal host
over http behind a proxy nobody trusts (Django, WSGI and ASGI), a body a middleware
re-encoded (Starlette). A forgery under a correct configuration gets no hint; the log
never holds the body, the signature or other secrets; the signature base only when
its logger is explicitly set to ``DEBUG``.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from typing import Any

import pytest

httpx = pytest.importorskip("httpx", reason="the real-server tests send requests with httpx")

from adapter_support import (  # noqa: E402
    SIGNING_KEY,
    WEBHOOK_PATH,
    LogWaiter,
    asgi_call,
    run_uvicorn,
    run_werkzeug,
    wire_headers,
)

import upvest_verify.verifier as verifier_module  # noqa: E402
from upvest_verify import Reason, Verifier  # noqa: E402
from upvest_verify.adapters import _explain  # noqa: E402
from upvest_verify.diagnosis import diagnose  # noqa: E402
from upvest_verify.testing import (  # noqa: E402
    SignedWebhook,
    generate_key,
    make_jwks,
    make_key_set,
    sample_events,
    sign_webhook,
)

PUBLIC = "https://hooks.example.com"
URL_COMPONENTS = ["@method", "@scheme", "@authority", "@path", "content-digest"]
PATH_COMPONENTS = ["@method", "@path", "content-type", "content-digest"]
FORGER = generate_key(kid=SIGNING_KEY.key_id)  # the receivers' kid, another key


def _need(*modules: str) -> None:
    for module in modules:
        pytest.importorskip(module, reason=f"this test needs {module}")


def _sign(url: str, components: list[str], key: Any = SIGNING_KEY, **kw: Any) -> SignedWebhook:
    return sign_webhook(
        sample_events(2), key=key, url=url, components=components, dialect="rfc9421", **kw
    )


def _rejection(security_log: LogWaiter, reason: Reason) -> str:
    """The formatted rejection line for ``reason`` (formatting runs the diagnosis)."""
    record = security_log.wait_for(f"reason={reason.value}")
    return logging.Formatter("%(levelname)s %(name)s %(message)s").format(record)


def assert_hint(line: str, *fragments: str) -> None:
    """``line`` carries a hint containing every fragment (hints exist only with diagnoses)."""
    hints = line.split(" hint=")[1:]
    assert hints, f"no hint in {line!r}"
    assert any(all(f in hint for f in fragments) for hint in hints), line


@pytest.fixture
def bases_logged() -> Iterator[None]:
    """Opt in to the signature bases: the base logger's own level set to DEBUG."""
    logger = logging.getLogger(_explain.BASE_LOGGER)
    logger.setLevel(logging.DEBUG)
    try:
        yield
    finally:
        logger.setLevel(logging.NOTSET)


# --------------------------------------------------------------------------- Starlette


def _starlette_app(**options: Any) -> Any:
    from starlette.applications import Starlette
    from starlette.middleware import Middleware
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    from upvest_verify.adapters.starlette import UpvestWebhookMiddleware

    async def webhook(request: Request) -> Response:
        return JSONResponse({"events": len(request.state.upvest_webhook.events)})

    middleware = [
        Middleware(UpvestWebhookMiddleware, verifier=Verifier(make_key_set(SIGNING_KEY)), **options)
    ]
    return Starlette(routes=[Route(WEBHOOK_PATH, webhook, methods=["POST"])], middleware=middleware)


class _PrettyPrintJSON:
    """An ASGI middleware placed before the verifier that re-serialises the JSON body."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        chunks = []
        while True:
            message = await receive()
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        pretty = json.dumps(json.loads(b"".join(chunks)), indent=2).encode()
        sent = False

        async def replay() -> Any:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": pretty, "more_body": False}
            return await receive()

        # A careful rewriter: Content-Length follows the new body.
        headers = [(k, v) for k, v in scope["headers"] if k != b"content-length"]
        headers.append((b"content-length", str(len(pretty)).encode()))
        await self.app({**scope, "headers": headers}, replay, send)


def test_full_webhook_url_as_public_url(security_log: LogWaiter) -> None:
    """Starlette: public_url with the webhook path doubles the path; the hint gives the fix."""
    _need("starlette", "anyio", "uvicorn")
    app = _starlette_app(public_url=PUBLIC + WEBHOOK_PATH)
    signed = _sign(PUBLIC + WEBHOOK_PATH, PATH_COMPONENTS)
    with run_uvicorn(app) as url, httpx.Client(base_url=url) as client:
        response = client.post(WEBHOOK_PATH, content=signed.body, headers=wire_headers(signed))
    assert response.status_code == 401
    line = _rejection(security_log, Reason.BAD_SIGNATURE)
    assert "rebuilt='POST https://hooks.example.com/webhooks/upvest/webhooks/upvest'" in line
    assert (
        "url_settings=(public_url='https://hooks.example.com' path_prefix='/webhooks/upvest'"
        in line
    )
    assert_hint(
        line,
        "public_url should be scheme://host[/prefix] only",
        "public_url='https://hooks.example.com'",
    )


def test_forgery_with_correct_settings_gets_no_hint(security_log: LogWaiter) -> None:
    """Starlette: a forged signature under the right public_url is explained, without a hint."""
    _need("starlette", "anyio", "uvicorn")
    app = _starlette_app(public_url=PUBLIC)
    forged = _sign(PUBLIC + WEBHOOK_PATH, URL_COMPONENTS, key=FORGER)
    with run_uvicorn(app) as url, httpx.Client(base_url=url) as client:
        response = client.post(WEBHOOK_PATH, content=forged.body, headers=wire_headers(forged))
    assert response.status_code == 401
    line = _rejection(security_log, Reason.BAD_SIGNATURE)
    assert "rebuilt='POST https://hooks.example.com/webhooks/upvest'" in line
    assert "tried='rfc9421/exact upvest-v6/exact'" in line
    assert f"body_bytes={len(forged.body)} content_length='{len(forged.body)}'" in line
    assert "peer='127.0.0.1'" in line
    assert "hint=" not in line


def test_body_reencoded_by_a_middleware(security_log: LogWaiter) -> None:
    """Starlette behind a body-rewriting middleware: digest_mismatch says the JSON was redone."""
    _need("starlette", "anyio", "uvicorn")
    app = _PrettyPrintJSON(_starlette_app(public_url=PUBLIC))
    signed = _sign(PUBLIC + WEBHOOK_PATH, URL_COMPONENTS)
    with run_uvicorn(app) as url, httpx.Client(base_url=url) as client:
        response = client.post(WEBHOOK_PATH, content=signed.body, headers=wire_headers(signed))
    assert response.status_code == 401
    line = _rejection(security_log, Reason.DIGEST_MISMATCH)
    assert "tried='none (the digest is checked first)'" in line
    assert_hint(line, "its JSON was parsed and serialised again", "verify the raw bytes")


def test_the_log_holds_no_secrets(security_log: LogWaiter) -> None:
    """Neither the body, the Signature value, the query text nor other header values are logged."""
    _need("starlette", "anyio", "uvicorn")
    app = _starlette_app()  # no settings: the internal URL gets a hint
    signed = _sign(
        PUBLIC + WEBHOOK_PATH + "?token=s3cr3t",
        [*URL_COMPONENTS, "@query", "authorization"],
        headers=[("authorization", "Bearer t0ken-value")],
    )
    with run_uvicorn(app) as url, httpx.Client(base_url=url) as client:
        response = client.post(
            WEBHOOK_PATH + "?token=s3cr3t",
            content=signed.body,
            headers=[*wire_headers(signed), ("cookie", "session=c00kie")],
        )
    assert response.status_code == 401
    line = _rejection(security_log, Reason.BAD_SIGNATURE)
    assert_hint(line, "set public_url='https://<your public host>'")
    signature = (signed.header("signature") or "").split(":")[1]
    body_text = signed.body.decode()
    for secret in ("s3cr3t", "t0ken", "c00kie", signature[:16], body_text[:30], "sha-512=:"):
        assert secret not in line
    assert "@signature-params" not in line
    assert not [r for r in security_log.records if r.name == _explain.BASE_LOGGER]


def test_bases_only_when_their_logger_is_set_to_debug(
    security_log: LogWaiter, bases_logged: None
) -> None:
    """With the base logger at DEBUG the bases tried are logged, on that logger only."""
    _need("starlette", "anyio")
    app = _starlette_app(public_url=PUBLIC)
    forged = _sign(PUBLIC + WEBHOOK_PATH, URL_COMPONENTS, key=FORGER)
    headers = [(k.encode(), v.encode()) for k, v in wire_headers(forged)]
    message = {"type": "http.request", "body": forged.body, "more_body": False}
    status, _, _ = asgi_call(app, WEBHOOK_PATH, headers, [message], offload=False)
    assert status == 401
    bases = [r for r in security_log.records if r.name == _explain.BASE_LOGGER]
    assert [r.levelname for r in bases] == ["DEBUG", "DEBUG"]
    assert forged.base.decode() in bases[0].getMessage()
    assert "(rfc9421/exact)" in bases[0].getMessage()
    assert "@signature-params" not in _rejection(security_log, Reason.BAD_SIGNATURE)


def test_root_at_debug_does_not_log_bases(security_log: LogWaiter) -> None:
    """An inherited DEBUG level (root, upvest_verify) is not the opt-in."""
    _need("starlette", "anyio")
    app = _starlette_app(public_url=PUBLIC)
    forged = _sign(PUBLIC + WEBHOOK_PATH, URL_COMPONENTS, key=FORGER)
    headers = [(k.encode(), v.encode()) for k, v in wire_headers(forged)]
    message = {"type": "http.request", "body": forged.body, "more_body": False}
    library = logging.getLogger("upvest_verify")
    library.setLevel(logging.DEBUG)
    try:
        asgi_call(app, WEBHOOK_PATH, headers, [message])
    finally:
        library.setLevel(logging.NOTSET)
    assert not [r for r in security_log.records if r.name == _explain.BASE_LOGGER]


def test_the_diagnosis_runs_only_when_the_line_is_written(
    security_log: LogWaiter, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Hostile floods: no diagnosis when the level is off; once per record however formatted."""
    _need("starlette", "anyio")
    calls: list[object] = []
    real = diagnose

    def counting(*args: Any, **kwargs: Any) -> Any:
        calls.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(_explain, "diagnose", counting)
    app = _starlette_app(public_url=PUBLIC)
    forged = _sign(PUBLIC + WEBHOOK_PATH, URL_COMPONENTS, key=FORGER)
    headers = [(k.encode(), v.encode()) for k, v in wire_headers(forged)]
    message = {"type": "http.request", "body": forged.body, "more_body": False}
    security = logging.getLogger("upvest_verify.security")
    security.setLevel(logging.ERROR)
    try:
        assert asgi_call(app, WEBHOOK_PATH, headers, [message])[0] == 401
    finally:
        security.setLevel(logging.NOTSET)
    assert (security_log.records, calls) == ([], [])
    assert asgi_call(app, WEBHOOK_PATH, headers, [message])[0] == 401
    _rejection(security_log, Reason.BAD_SIGNATURE)
    _rejection(security_log, Reason.BAD_SIGNATURE)
    assert len(calls) == 1  # formatted by several handlers, diagnosed once


# --------------------------------------------------------------------------- Flask


def _flask_app(**config: Any) -> Any:
    from flask import Flask

    from upvest_verify.adapters.flask import UpvestVerify, require_upvest_signature

    app = Flask("upvest_diagnose_test")
    app.config.update(config)
    UpvestVerify(app, verifier=Verifier(make_key_set(SIGNING_KEY)))

    @app.post(WEBHOOK_PATH)
    @require_upvest_signature
    def receive() -> Any:
        return {}

    return app


def test_forgotten_path_prefix(security_log: LogWaiter) -> None:
    """Flask behind a proxy that strips /api and says so: the hint names path_prefix."""
    _need("flask", "werkzeug")
    signed = _sign(PUBLIC + "/api" + WEBHOOK_PATH, PATH_COMPONENTS)
    forwarded = [("x-forwarded-for", "198.51.100.7"), ("x-forwarded-prefix", "/api")]
    with run_werkzeug(_flask_app()) as url, httpx.Client(base_url=url) as client:
        response = client.post(
            WEBHOOK_PATH, content=signed.body, headers=[*wire_headers(signed), *forwarded]
        )
    assert response.status_code == 401
    line = _rejection(security_log, Reason.BAD_SIGNATURE)
    assert_hint(line, "stripped the path prefix '/api'", "set path_prefix='/api'")
    assert "peer='127.0.0.1'" in line


def test_forgotten_path_prefix_without_a_prefix_field(security_log: LogWaiter) -> None:
    """Flask behind a proxy that says nothing of the prefix: its fields still point there."""
    _need("flask", "werkzeug")
    signed = _sign(PUBLIC + "/api" + WEBHOOK_PATH, PATH_COMPONENTS)
    forwarded = [("x-forwarded-for", "198.51.100.7"), ("x-forwarded-proto", "https")]
    with run_werkzeug(_flask_app()) as url, httpx.Client(base_url=url) as client:
        response = client.post(
            WEBHOOK_PATH, content=signed.body, headers=[*wire_headers(signed), *forwarded]
        )
    assert response.status_code == 401
    line = _rejection(security_log, Reason.BAD_SIGNATURE)
    assert_hint(line, "came through a proxy", "set path_prefix='/<prefix>'")


def test_prefix_configured_fixes_it(security_log: LogWaiter) -> None:
    """With the hinted setting the same webhook verifies."""
    _need("flask", "werkzeug")
    signed = _sign(PUBLIC + "/api" + WEBHOOK_PATH, PATH_COMPONENTS)
    app = _flask_app(UPVEST_VERIFY_PATH_PREFIX="/api")
    with run_werkzeug(app) as url, httpx.Client(base_url=url) as client:
        response = client.post(WEBHOOK_PATH, content=signed.body, headers=wire_headers(signed))
    assert response.status_code == 200, response.text
    assert security_log.records == []


# --------------------------------------------------------------------------- Django


@pytest.fixture(scope="module")
def django_ready() -> None:
    """Django configured with the adapter tests' settings module."""
    _need("django", "asgiref", "werkzeug", "uvicorn")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "django_settings")
    import django  # type: ignore[import-untyped,unused-ignore]

    django.setup()


@pytest.mark.parametrize("kind", ["wsgi", "asgi"])
def test_internal_host_behind_an_untrusted_proxy(
    kind: str, django_ready: None, security_log: LogWaiter
) -> None:
    """Django: http to 127.0.0.1 with X-Forwarded-Host nobody trusts: trusted_proxies or public_url."""
    from django.core.handlers.asgi import ASGIHandler  # type: ignore[import-untyped,unused-ignore]
    from django.core.handlers.wsgi import WSGIHandler  # type: ignore[import-untyped,unused-ignore]
    from django.test import override_settings  # type: ignore[import-untyped,unused-ignore]

    config = {"JWKS": make_jwks(SIGNING_KEY), "PATHS": ["/webhooks/*"]}
    signed = _sign(PUBLIC + "/webhooks/sync", URL_COMPONENTS)
    forwarded = [("x-forwarded-host", "hooks.example.com"), ("x-forwarded-proto", "https")]
    serve = run_uvicorn(ASGIHandler()) if kind == "asgi" else run_werkzeug(WSGIHandler())
    with override_settings(UPVEST_VERIFY=config), serve as url, httpx.Client(base_url=url) as c:
        response = c.post(
            "/webhooks/sync", content=signed.body, headers=[*wire_headers(signed), *forwarded]
        )
    assert response.status_code == 401
    line = _rejection(security_log, Reason.BAD_SIGNATURE)
    assert "rebuilt='POST http://127.0.0.1:" in line
    assert_hint(
        line,
        "(a loopback address, port ",
        "scheme http",
        "X-Forwarded-Host='hooks.example.com'",
        "set trusted_proxies=['127.0.0.1']",
        "set public_url=",
    )


# --------------------------------------------------------------------------- without the feature


def test_these_hints_do_not_exist_without_the_diagnosis(
    security_log: LogWaiter, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without the kept context (the library before diagnoses) the hint checks above fail."""
    _need("flask", "werkzeug")
    monkeypatch.setattr(verifier_module, "remember_failure", lambda *args: None)
    signed = _sign(PUBLIC + "/api" + WEBHOOK_PATH, PATH_COMPONENTS)
    forwarded = [("x-forwarded-prefix", "/api")]
    with run_werkzeug(_flask_app()) as url, httpx.Client(base_url=url) as client:
        client.post(WEBHOOK_PATH, content=signed.body, headers=[*wire_headers(signed), *forwarded])
    line = _rejection(security_log, Reason.BAD_SIGNATURE)
    assert "rebuilt=" not in line
    with pytest.raises(AssertionError):
        assert_hint(line, "set path_prefix='/api'")
