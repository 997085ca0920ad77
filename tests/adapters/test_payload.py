"""A correctly signed body that is not a ``{"payload": [...]}`` envelope, in every adapter.

A handler reading ``webhook.events`` of such a body used to end in a 500, which
Upvest retries forever while holding back later deliveries. The adapters answer
400 ``invalid_payload`` instead and log it at ERROR on ``upvest_verify.delivery``
with the key id and the body length, never the body (the delivery stays with
Upvest until the receiver reads it; acknowledging it is the handler's decision,
through ``webhook.envelope_error``). A ``PayloadError`` that is not about the
verified body stays the handler's own 500. Real servers: Werkzeug, uvicorn (FastAPI:
``test_fastapi.py``, whose endpoints need module-level names).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import pytest

httpx = pytest.importorskip("httpx", reason="the real-server tests send requests with httpx")

from adapter_support import SIGNING_KEY, LogWaiter, run_uvicorn, run_werkzeug  # noqa: E402
from payload_support import (  # noqa: E402
    ODD_BODIES,
    assert_refused_and_logged,
    check_lenient_and_own,
    check_receiver,
    delivery_log_capture,
    send,
)

from upvest_verify import PayloadError, Verifier  # noqa: E402
from upvest_verify.ledger import MemoryLedger  # noqa: E402
from upvest_verify.testing import make_key_set  # noqa: E402


@pytest.fixture
def delivery_log() -> Iterator[LogWaiter]:
    """Records of ``upvest_verify.delivery`` (waitable across server threads)."""
    with delivery_log_capture() as log:
        yield log


# --------------------------------------------------------------------------- Flask


def flask_receiver(calls: list[Any], **options: Any) -> Any:
    """The extension over ``/webhooks/*`` plus a decorated view elsewhere."""
    pytest.importorskip("flask", reason="the flask extra is not installed")
    pytest.importorskip("asgiref", reason="Flask's async views need asgiref (flask[async])")
    from flask import Flask

    from upvest_verify.adapters.flask import UpvestVerify, get_webhook, require_upvest_signature

    app = Flask("payload")
    app.config["UPVEST_VERIFY_PATHS"] = ["/webhooks/*"]
    UpvestVerify(app, verifier=Verifier(make_key_set(SIGNING_KEY)), **options)

    def events(kind: str) -> Any:
        webhook = get_webhook()
        assert webhook is not None
        calls.append(kind)
        return {"events": len(webhook.events)}

    @app.post("/webhooks/sync")
    def hook() -> Any:
        return events("sync")

    @app.post("/webhooks/async")
    async def ahook() -> Any:
        return events("async")

    @app.post("/decorated")
    @require_upvest_signature
    def decorated() -> Any:
        return events("decorated")

    @app.post("/webhooks/lenient")
    def lenient() -> Any:
        webhook = get_webhook()
        assert webhook is not None
        if webhook.envelope_error is not None:
            return {"other_shape": webhook.json()}
        return {"events": len(webhook.events)}

    @app.post("/webhooks/own-error")
    def own_error() -> Any:
        raise PayloadError("the handler's own parsing failed")

    return app


def test_flask_answers_400_for_a_body_that_is_not_an_envelope(delivery_log: LogWaiter) -> None:
    """Extension hook (sync, async views) and decorator: 400 invalid_payload, logged, no 500."""
    calls: list[Any] = []
    with run_werkzeug(flask_receiver(calls)) as url:
        check_receiver(
            url, ["/webhooks/sync", "/webhooks/async", "/decorated"], delivery_log, calls
        )
        check_lenient_and_own(url, "/webhooks")


def test_flask_with_a_ledger_refuses_before_the_view(delivery_log: LogWaiter) -> None:
    """With a ledger the events are parsed at admission: 400, logged, the view never runs."""
    calls: list[Any] = []
    with run_werkzeug(flask_receiver(calls, ledger=MemoryLedger())) as url:
        for path in ("/webhooks/sync", "/decorated"):
            for body in ODD_BODIES.values():
                assert_refused_and_logged(send(url, path, body), delivery_log, body)
    assert calls == []


# --------------------------------------------------------------------------- Django


@contextlib.contextmanager
def django_server(kind: str, **keys: Any) -> Iterator[str]:
    """Django with django_payload_urls under Werkzeug (WSGI) or uvicorn (ASGI)."""
    pytest.importorskip("django", reason="the django extra is not installed")
    pytest.importorskip("asgiref", reason="the django extra is not installed")
    from receivers import django_setup

    django_setup()
    from django.core.handlers.asgi import ASGIHandler
    from django.core.handlers.wsgi import WSGIHandler
    from django.test import override_settings

    verifier = Verifier(make_key_set(SIGNING_KEY))
    settings = {"VERIFIER": verifier, "PATHS": ["/webhooks/*"], **keys}
    with override_settings(ROOT_URLCONF="django_payload_urls", UPVEST_VERIFY=settings):
        server = run_uvicorn(ASGIHandler()) if kind == "asgi" else run_werkzeug(WSGIHandler())
        with server as url:
            yield url


@pytest.mark.parametrize("kind", ["wsgi", "asgi"])
def test_django_answers_400_for_a_body_that_is_not_an_envelope(
    kind: str, delivery_log: LogWaiter
) -> None:
    """Middleware (sync, async views) and decorator: 400 invalid_payload, logged, no 500."""
    with django_server(kind) as url:
        import django_payload_urls

        django_payload_urls.CALLS.clear()
        paths = ["/webhooks/sync", "/webhooks/async", "/decorated/sync", "/decorated/async"]
        check_receiver(url, paths, delivery_log, django_payload_urls.CALLS)
        check_lenient_and_own(url, "/webhooks")


@pytest.mark.parametrize("kind", ["wsgi", "asgi"])
def test_django_with_a_ledger_refuses_before_the_view(kind: str, delivery_log: LogWaiter) -> None:
    """With a ledger: 400 at admission, logged with the key id; the view never runs."""
    with django_server(kind, LEDGER=MemoryLedger()) as url:
        import django_payload_urls

        django_payload_urls.CALLS.clear()
        for path in ("/webhooks/sync", "/decorated/async"):
            for body in ODD_BODIES.values():
                assert_refused_and_logged(send(url, path, body), delivery_log, body)
        assert django_payload_urls.CALLS == []
