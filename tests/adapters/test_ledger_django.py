"""Django: middleware and decorator with an event ledger, under WSGI (Werkzeug) and ASGI (uvicorn)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("django", reason="the django extra is not installed")
pytest.importorskip("asgiref", reason="the django extra is not installed")
pytest.importorskip("uvicorn", reason="the real-server tests need uvicorn (group tests-servers)")
pytest.importorskip("werkzeug", reason="the WSGI tests serve Django with Werkzeug's server")

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "django_settings")

import django  # type: ignore[import-untyped,unused-ignore]

django.setup()

import django_ledger_urls  # noqa: E402
from adapter_support import SIGNING_KEY, run_uvicorn, run_werkzeug  # noqa: E402
from delivery_support import (  # noqa: E402
    Target,
    check_held,
    check_inbox,
    check_once,
    check_outage,
    check_own_way,
    check_process_completes_each,
    check_replay_recorded,
    check_retry_after_failure,
    closed_port,
)
from django.core.handlers.asgi import ASGIHandler  # type: ignore[import-untyped,unused-ignore]  # noqa: E402
from django.core.handlers.wsgi import WSGIHandler  # type: ignore[import-untyped,unused-ignore]  # noqa: E402
from django.test import override_settings  # type: ignore[import-untyped,unused-ignore]  # noqa: E402

from upvest_verify import Verifier  # noqa: E402
from upvest_verify.adapters.django.checks import check_settings  # noqa: E402
from upvest_verify.adapters.django.conf import get_settings  # noqa: E402
from upvest_verify.ledger import (  # noqa: E402
    BaseLedger,
    MemoryLedger,
    MemoryReplayStore,
    SQLiteLedger,
)
from upvest_verify.testing import make_key_set  # noqa: E402

VIEWS = ["/webhooks/sync", "/webhooks/async", "/decorated/sync", "/decorated/async"]


def settings_with(**keys: Any) -> dict[str, Any]:
    """``UPVEST_VERIFY`` for these tests: the test key, ``/webhooks/*``, and ``keys``."""
    verifier = keys.pop("VERIFIER", None) or Verifier(make_key_set(SIGNING_KEY))
    return {"VERIFIER": verifier, "PATHS": ["/webhooks/*"], **keys}


def closing_lifespan(handler: Any) -> Any:
    """``handler`` plus an ASGI lifespan that closes the ledger's async connections at shutdown."""

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "lifespan":
            await handler(scope, receive, send)
            return
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                ledger = get_settings().ledger
                if ledger is not None:
                    await ledger.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return

    return app


@contextlib.contextmanager
def serve(kind: str, **keys: Any) -> Iterator[Target]:
    """Serve Django under ``kind`` ("wsgi" or "asgi") with ``UPVEST_VERIFY`` holding ``keys``."""
    with override_settings(ROOT_URLCONF="django_ledger_urls", UPVEST_VERIFY=settings_with(**keys)):
        ledger = get_settings().ledger
        assert ledger is not None
        if kind == "asgi":
            server = run_uvicorn(closing_lifespan(ASGIHandler()), lifespan="on")
        else:
            server = run_werkzeug(WSGIHandler())
        with server as url:
            yield Target(url, VIEWS[0], django_ledger_urls.SCRIPT, ledger)


@pytest.fixture(scope="module", params=["wsgi", "asgi"])
def receiver(request: pytest.FixtureRequest) -> Iterator[Target]:
    """Django with a memory ledger under WSGI and under ASGI."""
    with serve(request.param, LEDGER=MemoryLedger()) as target:
        yield target


@pytest.fixture(params=VIEWS, ids=lambda p: p.strip("/").replace("/", "-"))
def target(receiver: Target, request: pytest.FixtureRequest) -> Target:
    """The receiver, sending to a sync or async view behind the middleware or the decorator."""
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


def test_decorator_with_its_own_ledger(receiver: Target) -> None:
    """``@require_upvest_signature(ledger=...)`` admits through that ledger."""
    own = receiver.on("/decorated/own")
    own.ledger = django_ledger_urls.OWN_LEDGER
    check_once(own)
    check_held(own)


def ledger_url(scheme: str, tmp_path: Path, redis_url: str = "") -> str:
    """A ledger URL of ``scheme`` for these tests."""
    if scheme == "memory":
        return "memory://"
    if scheme == "sqlite":
        return f"sqlite:///{tmp_path / 'events.sqlite3'}"
    return redis_url


@pytest.mark.parametrize("kind", ["wsgi", "asgi"])
@pytest.mark.parametrize("scheme", ["memory", "sqlite", "redis"])
def test_ledger_from_settings_url(
    kind: str, scheme: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """``UPVEST_VERIFY["LEDGER"]`` as a URL (memory://, sqlite:///path, redis://...)."""
    redis_url = request.getfixturevalue("redis_url") if scheme == "redis" else ""
    with serve(kind, LEDGER=ledger_url(scheme, tmp_path, redis_url)) as target:
        try:
            check_once(target.on("/webhooks/async"))
            check_retry_after_failure(target.on("/decorated/async"))
            check_held(target)
        finally:
            target.ledger.close()


@pytest.mark.parametrize("kind", ["wsgi", "asgi"])
def test_redis_down(kind: str) -> None:
    """A Redis server that cannot be reached: 503 ledger_unavailable with Retry-After."""
    with serve(kind, LEDGER=f"redis://127.0.0.1:{closed_port()}/0") as target:
        for view in VIEWS:
            check_outage(target.on(view))


@pytest.mark.parametrize("kind", ["wsgi", "asgi"])
def test_inbox(kind: str, tmp_path: Path) -> None:
    """``INBOX`` queues the events and answers 200 queued without the view."""
    ledger = SQLiteLedger(tmp_path / "inbox.sqlite3")
    with serve(kind, LEDGER=ledger, INBOX=True) as target:
        check_inbox(target)
        check_inbox(target.on("/decorated/async"))


@pytest.mark.parametrize("kind", ["wsgi", "asgi"])
def test_replay_store_records_after_2xx_only(kind: str) -> None:
    """The verifier's replay store learns a signature after a 2xx answer, never after a 500."""
    verifier = Verifier(make_key_set(SIGNING_KEY), replay_store=MemoryReplayStore())
    with serve(kind, LEDGER=MemoryLedger(), VERIFIER=verifier) as target:
        for view in VIEWS:
            check_replay_recorded(target.on(view))


@pytest.mark.parametrize(
    ("keys", "message"),
    [
        ({"LEDGER": "ftp://nowhere"}, "LEDGER: unknown ledger URL scheme"),
        ({"LEDGER": "sqlite://host/x"}, "LEDGER: an SQLite ledger URL has no host"),
        ({"LEDGER": "os:getcwd"}, "LEDGER: must be a ledger"),
        ({"INBOX": True}, "INBOX needs a LEDGER"),
        ({"LEDGER": "memory://", "INBOX": "sometimes"}, "INBOX must be true or false"),
    ],
    ids=["scheme", "sqlite-host", "not-a-ledger", "inbox-alone", "inbox-not-bool"],
)
def test_system_check_e008(keys: dict[str, Any], message: str) -> None:
    """Bad LEDGER/INBOX settings are reported as upvest_verify.E008 at start-up."""
    with override_settings(UPVEST_VERIFY=settings_with(**keys)):
        [error] = check_settings()
    assert error.id == "upvest_verify.E008"
    assert message in error.msg


def test_ledger_object_path_and_factory() -> None:
    """LEDGER may be a ledger, or a dotted path to a ledger or to a factory of one."""
    for value in (MemoryLedger(), "upvest_verify.ledger:MemoryLedger"):
        with override_settings(UPVEST_VERIFY=settings_with(LEDGER=value)):
            assert [m.id for m in check_settings() if ".E" in m.id] == []
            ledger: BaseLedger | None = get_settings().ledger
            assert isinstance(ledger, MemoryLedger)
            assert ledger is value or isinstance(value, str)
