"""Webhook receivers of every adapter on real loopback servers (not a test module).

:func:`serve` starts one receiver: Starlette or FastAPI on uvicorn, Flask on Werkzeug
or gunicorn, Django under WSGI (Werkzeug) or ASGI (uvicorn). Each handler records
what reached it, each verifier counts its calls, and :meth:`Receiver.send` puts a
signed webhook on the wire as it was signed (or with another method, target, extra
lines or chunked). Used by the end-to-end adversarial tests of group G.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from adapter_support import (
    SIGNING_KEY,
    raw_request,
    run_gunicorn,
    run_uvicorn,
    run_werkzeug,
    wire_headers,
)

import upvest_verify
from upvest_verify import KeySet, Policy, VerifiedWebhook, Verifier
from upvest_verify.testing import (
    SignedWebhook,
    make_jwks,
    make_key_set,
    sample_events,
    sign_webhook,
)

HERE = Path(__file__).resolve().parent
SOURCE_TREE = str(Path(upvest_verify.__file__).resolve().parents[1])
"""Where the ``upvest_verify`` under test lives; child servers import the same one."""
LIMIT = 8192
WEBHOOK = "/webhooks/upvest"
METHODS = ["GET", "HEAD", "OPTIONS", "POST", "PUT", "DELETE"]
NO_LENGTH = ["@method", "@path", "content-type", "content-digest", "date"]
IN_PROCESS = ["starlette", "fastapi", "flask", "django-wsgi", "django-asgi"]
Answer = tuple[int, bytes, dict[str, str]]

NEEDS: dict[str, tuple[str, ...]] = {
    "starlette": ("starlette", "anyio", "uvicorn"),
    "fastapi": ("fastapi", "anyio", "uvicorn"),
    "flask": ("flask",),
    "flask-gunicorn": ("flask", "gunicorn"),
    "django-wsgi": ("django", "asgiref", "werkzeug"),
    "django-asgi": ("django", "asgiref", "uvicorn"),
}


def need(name: str) -> None:
    """Skip, with the reason shown, when the receiver's framework or server is missing."""
    for module in NEEDS[name]:
        pytest.importorskip(module, reason=f"the {name} receiver needs {module}")


class CountingVerifier(Verifier):
    """The receivers' verifier: the test key, an 8 KiB body limit, and a call count."""

    __slots__ = ("calls",)

    def __init__(self, keys: Any = None) -> None:
        keys = make_key_set(SIGNING_KEY) if keys is None else keys
        super().__init__(keys, policy=Policy(max_body_size=LIMIT))
        self.calls = 0

    def verify(self, *args: Any, **kwargs: Any) -> VerifiedWebhook:
        self.calls += 1
        return super().verify(*args, **kwargs)

    async def averify(self, *args: Any, **kwargs: Any) -> VerifiedWebhook:
        self.calls += 1
        return await super().averify(*args, **kwargs)


class ExplodingVerifier(CountingVerifier):
    """A verifier that raises from inside (G13 fault injection)."""

    __slots__ = ()

    def verify(self, *args: Any, **kwargs: Any) -> VerifiedWebhook:
        raise RuntimeError("boom")

    async def averify(self, *args: Any, **kwargs: Any) -> VerifiedWebhook:
        raise RuntimeError("boom")


class CrashingKeys:
    """A key provider that raises inside the verifier's flow (G13 fault injection)."""

    def current(self) -> KeySet:
        raise RuntimeError("boom")

    def refresh_for(self, kid: str) -> KeySet | None:
        raise RuntimeError("boom")

    async def acurrent(self) -> KeySet:
        raise RuntimeError("boom")

    async def arefresh_for(self, kid: str) -> KeySet | None:
        raise RuntimeError("boom")


@dataclass
class Receiver:
    """A served webhook receiver: where to send, what reached its handler, its verifier."""

    name: str
    url: str
    path: str
    calls: list[dict[str, Any]] | None  # None: the handler runs in another process
    verifier: Any
    mount: str = ""
    mount_in_target: bool = False  # WSGI mounts see the prefix; uvicorn's root_path does not

    def sign(
        self, body: Any = None, path: str | None = None, *, mounted: bool = True, **kw: Any
    ) -> SignedWebhook:
        """Sign a webhook (RFC 9421 dialect by default) for ``path`` under the mount."""
        kw.setdefault("dialect", "rfc9421")
        url = self.url + (self.mount if mounted else "") + (path or self.path)
        body = sample_events(2) if body is None else body
        return sign_webhook(body, key=SIGNING_KEY, url=url, **kw)

    def send(
        self,
        signed: SignedWebhook,
        *,
        method: str = "POST",
        target: str | None = None,
        extra: Sequence[tuple[str, str]] = (),
        pieces: int = 0,
    ) -> Answer:
        """Send ``signed`` as signed (or as ``method``/``target``), optionally chunked."""
        headers = wire_headers(signed, drop=("content-length",) if pieces else ())
        path = target or signed.path.removeprefix(self.mount)
        if self.mount_in_target:
            path = self.mount + path
        return raw_request(self.url, method, path, [*headers, *extra], signed.body, pieces=pieces)

    def handled(self) -> int:
        """How many requests reached the handler (0 when not observable)."""
        return len(self.calls) if self.calls is not None else 0


def problem(answer: Answer, status: int, reason: str) -> None:
    """Assert a generic problem+json answer carrying exactly ``reason`` and nothing else."""
    code, body, headers = answer
    assert code == status, body
    assert headers["content-type"].startswith("application/problem+json")
    document = json.loads(body)
    assert set(document) == {"type", "title", "status", "detail"}
    assert (document["type"], document["status"], document["detail"]) == (
        "about:blank",
        status,
        reason,
    )


def _record(calls: list[dict[str, Any]], body: bytes, document: Any, webhook: Any) -> None:
    calls.append({"body": body, "json": document, "webhook": webhook})


def _starlette_app(verifier: Verifier, calls: list[dict[str, Any]]) -> Any:
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    from upvest_verify.adapters.starlette import UpvestWebhookMiddleware

    async def hook(request: Any) -> Any:
        body = await request.body()
        _record(calls, body, await request.json(), request.scope["upvest_verify"])
        return JSONResponse({"ok": True})

    app = Starlette(
        routes=[
            Route(WEBHOOK, hook, methods=METHODS),
            Route("/webhooks/t/{r:path}", hook, methods=["POST"]),
        ]
    )
    app.add_middleware(
        UpvestWebhookMiddleware, verifier=verifier, paths=["/webhooks/*"], max_body_size=LIMIT
    )
    return app


def _fastapi_app(verifier: Verifier, calls: list[dict[str, Any]]) -> Any:
    from fastapi import FastAPI, Request

    from upvest_verify.adapters.fastapi import UpvestWebhook, UpvestWebhookMiddleware

    app = FastAPI()
    app.add_middleware(
        UpvestWebhookMiddleware, verifier=verifier, paths=["/webhooks/*"], max_body_size=LIMIT
    )

    async def hook(webhook: Any, request: Any) -> dict[str, bool]:
        body = await request.body()
        _record(calls, body, await request.json(), webhook)
        return {"ok": True}

    # Postponed annotations resolve in module globals, where FastAPI is not imported.
    hook.__annotations__ = {"webhook": UpvestWebhook, "request": Request, "return": dict}
    app.api_route(WEBHOOK, methods=METHODS)(hook)
    app.api_route("/webhooks/t/{r:path}", methods=["POST"])(hook)
    return app


def _flask_app(verifier: Verifier, calls: list[dict[str, Any]]) -> Any:
    from flask import Flask, g, request

    from upvest_verify.adapters.flask import UpvestVerify, require_upvest_signature

    app = Flask("g_adapters")
    UpvestVerify(app, verifier=verifier)

    # Every method reaches the decorator (no automatic OPTIONS), so it decides alone (G9).
    @app.route(WEBHOOK, methods=METHODS)
    @app.route("/webhooks/t/<path:r>", methods=["POST"])
    @require_upvest_signature
    def hook(r: str = "") -> Any:
        _record(calls, request.get_data(), request.get_json(), g.upvest_webhook)
        return {"ok": True}

    return app


def _not_found(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    start_response("404 Not Found", [("content-type", "text/plain")])
    return [b"not mounted here"]


def _mounted(app: Any, mount: str) -> Any:
    """``app`` under ``mount`` (SCRIPT_NAME), as a WSGI dispatcher would mount it."""
    from werkzeug.middleware.dispatcher import DispatcherMiddleware

    return DispatcherMiddleware(_not_found, {mount: app}) if mount else app


def build_app(name: str, verifier: Verifier, calls: list[dict[str, Any]]) -> Any:
    """The ``starlette``, ``fastapi`` or ``flask`` receiver app, recording into ``calls``."""
    builders = {"starlette": _starlette_app, "fastapi": _fastapi_app, "flask": _flask_app}
    return builders[name](verifier, calls)


@contextlib.contextmanager
def serve(
    name: str,
    verifier: Any = None,
    *,
    mount: str = "",
    tweak: Callable[[Any], None] | None = None,
    django: dict[str, Any] | None = None,
) -> Iterator[Receiver]:
    """Serve a fresh receiver ``name``; ``tweak`` may change the app, ``django`` overrides
    Django settings."""
    need(name)
    if name == "flask-gunicorn":
        env = {
            "UPVEST_VERIFY_JWKS": json.dumps(make_jwks(SIGNING_KEY)),
            "PYTHONPATH": os.pathsep.join([SOURCE_TREE, str(HERE)]),
        }
        with run_gunicorn("gunicorn_flask_app:app", env, str(HERE)) as url:
            yield Receiver(name, url, WEBHOOK, None, None)
    elif name.startswith("django"):
        with _django(name, verifier, mount, django or {}) as receiver:
            yield receiver
    else:
        calls: list[dict[str, Any]] = []
        verifier = CountingVerifier() if verifier is None else verifier
        app = build_app(name, verifier, calls)
        if tweak is not None:
            tweak(app)
        if name == "flask":
            with run_werkzeug(_mounted(app, mount)) as url:
                yield Receiver(name, url, WEBHOOK, calls, verifier, mount, True)
        else:
            with run_uvicorn(app, root_path=mount) as url:
                yield Receiver(name, url, WEBHOOK, calls, verifier, mount)


def django_setup() -> Any:
    """Set Django up with the adapter tests' settings; return that settings module."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "django_settings")
    import django

    django.setup()
    import django_settings

    return django_settings


@contextlib.contextmanager
def _django(name: str, verifier: Any, mount: str, overrides: dict[str, Any]) -> Iterator[Receiver]:
    ds = django_setup()
    from django.core.handlers.asgi import ASGIHandler
    from django.core.handlers.wsgi import WSGIHandler
    from django.test import override_settings

    if verifier is not None:
        overrides = {"UPVEST_VERIFY": {"VERIFIER": verifier, "PATHS": ["/webhooks/*"]}, **overrides}
    with override_settings(**overrides):
        ds.CALLS.clear()
        ds.COUNTING.calls = 0
        verifier = verifier or ds.COUNTING
        if name == "django-asgi":
            with run_uvicorn(ASGIHandler(), root_path=mount) as url:
                yield Receiver(name, url, "/webhooks/sync", ds.CALLS, verifier, mount)
        else:
            with run_werkzeug(_mounted(WSGIHandler(), mount)) as url:
                yield Receiver(name, url, "/webhooks/sync", ds.CALLS, verifier, mount, True)
