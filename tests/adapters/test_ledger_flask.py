"""Flask: ``UpvestVerify``/``@require_upvest_signature`` with an event ledger, on Werkzeug."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("flask", reason="the flask extra is not installed")
pytest.importorskip("asgiref", reason="Flask's async views need asgiref (flask[async])")

from adapter_support import SIGNING_KEY, run_werkzeug
from delivery_support import (
    Script,
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
from flask import Flask

from upvest_verify import ConfigurationError, Verifier
from upvest_verify.adapters.flask import (
    UpvestVerify,
    get_delivery,
    get_webhook,
    require_upvest_signature,
)
from upvest_verify.ledger import BaseLedger, MemoryLedger, MemoryReplayStore, SQLiteLedger
from upvest_verify.testing import make_jwks, make_key_set

VIEWS = ["/webhooks/upvest", "/webhooks/async"]


def build(script: Script, *, view_ledger: BaseLedger | None = None, **options: Any) -> Flask:
    """A sync and an async view under the decorator, both running ``script``.

    ``options`` go to ``UpvestVerify``, except ``config``: ``UPVEST_VERIFY_*`` values.
    """
    app = Flask("ledger_tests")
    app.config.update(options.pop("config", {}))
    UpvestVerify(app, **options)

    @app.post(VIEWS[0])
    @require_upvest_signature
    def hook() -> Any:
        webhook = get_webhook()
        delivery = get_delivery()
        assert webhook is not None
        assert delivery is None or delivery.webhook is webhook
        return script.run(delivery)

    @app.post(VIEWS[1])
    @require_upvest_signature
    async def ahook() -> Any:
        return await script.arun(get_delivery())

    @app.post("/webhooks/own-ledger")
    @require_upvest_signature(ledger=view_ledger)
    def own() -> Any:
        return script.run(get_delivery())

    return app


def ledger_of(app: Flask) -> BaseLedger:
    """The ledger the extension built from config."""
    ledger = UpvestVerify.settings(app).ledger
    assert ledger is not None
    return ledger


@contextlib.contextmanager
def serve(**options: Any) -> Iterator[Target]:
    """Serve a fresh Flask receiver; yield its target (with the extension's ledger)."""
    script = Script()
    app = build(script, **options)
    with run_werkzeug(app) as url:
        yield Target(url, VIEWS[0], script, ledger_of(app))


def verifier(**options: Any) -> Verifier:
    """A verifier trusting the test key."""
    return Verifier(make_key_set(SIGNING_KEY), **options)


@pytest.fixture(scope="module")
def receiver() -> Iterator[Target]:
    """One Flask receiver with a memory ledger for the module."""
    with serve(verifier=verifier(), ledger=MemoryLedger()) as target:
        yield target


@pytest.fixture(params=VIEWS, ids=["sync", "async"])
def target(receiver: Target, request: pytest.FixtureRequest) -> Target:
    """The receiver, sending to its sync or its async view."""
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


def test_ledger_per_view() -> None:
    """``@require_upvest_signature(ledger=...)`` admits through that ledger, not the app's."""
    own = MemoryLedger()
    with serve(verifier=verifier(), ledger=MemoryLedger(), view_ledger=own) as target:
        view = target.on("/webhooks/own-ledger")
        view.ledger = own
        check_once(view)
        check_held(view)


@pytest.mark.parametrize("scheme", ["memory", "sqlite"])
def test_ledger_from_config_url(scheme: str, tmp_path: Path) -> None:
    """``UPVEST_VERIFY_LEDGER`` as a URL: memory:// or sqlite:///path."""
    url = "memory://" if scheme == "memory" else f"sqlite:///{tmp_path / 'events.sqlite3'}"
    config = {"UPVEST_VERIFY_JWKS": json.dumps(make_jwks(SIGNING_KEY)), "UPVEST_VERIFY_LEDGER": url}
    with serve(config=config) as target:
        assert isinstance(target.ledger, MemoryLedger if scheme == "memory" else SQLiteLedger)
        check_once(target)
        check_retry_after_failure(target.on(VIEWS[1]))


def test_redis_ledger_from_config_url(redis_url: str) -> None:
    """``UPVEST_VERIFY_LEDGER = "redis://..."`` on a real redis-server, sync and async views.

    Each async view runs in an event loop of its own, so the ledger is used through its
    blocking calls there: the second request would fail with a client bound to the first.
    """
    config = {"UPVEST_VERIFY_LEDGER": redis_url}
    with serve(verifier=verifier(), config=config) as target:
        try:
            for view in VIEWS:
                check_once(target.on(view))
                check_retry_after_failure(target.on(view))
            check_held(target.on(VIEWS[1]))
        finally:
            target.ledger.close()


def test_redis_down() -> None:
    """A Redis server that cannot be reached: 503 ledger_unavailable with Retry-After."""
    config = {"UPVEST_VERIFY_LEDGER": f"redis://127.0.0.1:{closed_port()}/0"}
    with serve(verifier=verifier(), config=config) as target:
        check_outage(target)
        check_outage(target.on(VIEWS[1]))


def test_inbox(tmp_path: Path) -> None:
    """``UPVEST_VERIFY_INBOX`` queues the events and answers 200 queued without the view."""
    config = {
        "UPVEST_VERIFY_LEDGER": f"sqlite:///{tmp_path / 'inbox.sqlite3'}",
        "UPVEST_VERIFY_INBOX": "true",
    }
    with serve(verifier=verifier(), config=config) as target:
        check_inbox(target)
        check_inbox(target.on(VIEWS[1]))


def test_replay_store_records_after_2xx_only() -> None:
    """The verifier's replay store learns a signature after a 2xx answer, never after a 500."""
    store = verifier(replay_store=MemoryReplayStore())
    with serve(verifier=store, ledger=MemoryLedger()) as target:
        check_replay_recorded(target)
        check_replay_recorded(target.on(VIEWS[1]))


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"config": {"UPVEST_VERIFY_LEDGER": "ftp://nowhere"}}, "E008: LEDGER: unknown ledger"),
        ({"config": {"UPVEST_VERIFY_LEDGER": 42}}, "E008: LEDGER: must be a ledger"),
        ({"config": {"UPVEST_VERIFY_INBOX": "yes"}}, "E008: INBOX needs a LEDGER"),
        ({"config": {"UPVEST_VERIFY_INBOX": "maybe"}}, "E008: INBOX must be true or false"),
        (
            {"ledger": MemoryLedger(), "config": {"UPVEST_VERIFY_LEDGER": "memory://"}},
            "E008: a ledger was passed in code",
        ),
    ],
    ids=["bad-url", "not-a-ledger", "inbox-alone", "inbox-not-bool", "ledger-twice"],
)
def test_bad_ledger_config(options: dict[str, Any], message: str) -> None:
    """Bad ledger settings fail at init_app with the E008 code."""
    with pytest.raises(ConfigurationError, match=message):
        build(Script(), verifier=verifier(), **options)


def test_decorator_checks_its_ledger() -> None:
    """``@require_upvest_signature(ledger=...)`` refuses what is not a ledger at once."""
    with pytest.raises(ConfigurationError, match="ledger must be"):
        require_upvest_signature(ledger="memory://")  # type: ignore[call-overload]
