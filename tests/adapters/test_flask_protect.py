"""``UpvestVerify(app)`` alone protects its paths: no decorator, real Werkzeug and gunicorn.

Every request to a path of ``UPVEST_VERIFY_PATHS`` is verified before routing
decides anything, so no view on such a path can be reached unverified: refusals
are answered and logged, anything but ``POST`` is 405, and the decorator on such a
path adds no second verification.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("flask", reason="the flask extra is not installed")
pytest.importorskip("asgiref", reason="Flask's async views need asgiref (flask[async])")
httpx = pytest.importorskip("httpx", reason="the real-server tests send requests with httpx")

from adapter_support import (  # noqa: E402
    OTHER_KEY,
    SIGNING_KEY,
    LogWaiter,
    assert_problem,
    raw_request,
    run_gunicorn,
    run_werkzeug,
    tamper_signature,
    wire_headers,
)
from delivery_support import (  # noqa: E402
    Script,
    Target,
    check_held,
    check_inbox,
    check_once,
    check_own_way,
    check_process_completes_each,
    check_replay_recorded,
    check_retry_after_failure,
    free,
)
from flask import Flask, request  # noqa: E402

import upvest_verify  # noqa: E402
from upvest_verify import Reason, VerifiedWebhook, Verifier  # noqa: E402
from upvest_verify.adapters.flask import (  # noqa: E402
    UpvestVerify,
    get_delivery,
    get_webhook,
    require_upvest_signature,
)
from upvest_verify.ledger import BaseLedger, MemoryLedger, MemoryReplayStore  # noqa: E402
from upvest_verify.testing import make_jwks, make_key_set, sample_events, sign_webhook  # noqa: E402

HERE = Path(__file__).resolve().parent
OLD = 1_700_000_000  # a created time far outside any window

# What each kind of webhook must get from a receiver protected by the extension alone.
EXPECTED: dict[str, tuple[int, str | None]] = {
    "valid": (200, None),
    "tampered": (401, Reason.DIGEST_MISMATCH.value),
    "bad_signature": (401, Reason.BAD_SIGNATURE.value),
    "expired": (401, Reason.EXPIRED.value),
    "unknown_key": (401, Reason.UNKNOWN_KEY.value),
    "unsigned": (401, Reason.MISSING_SIGNATURE.value),
}


class CountingVerifier(Verifier):
    """A verifier that counts its verifications."""

    __slots__ = ("calls",)

    def __init__(self, **options: Any) -> None:
        super().__init__(make_key_set(SIGNING_KEY), **options)
        self.calls = 0

    def verify(self, *args: Any, **kwargs: Any) -> VerifiedWebhook:
        self.calls += 1
        return super().verify(*args, **kwargs)


def verdicts(base_url: str, path: str = "/webhooks/upvest") -> dict[str, Any]:
    """Send one webhook of each kind of ``EXPECTED`` to ``path``; the responses by kind."""
    url = base_url + path
    valid = sign_webhook(sample_events(2), key=SIGNING_KEY, url=url)
    sent = {
        "valid": valid,
        "tampered": valid.replace_body(valid.body.replace(b"EUR", b"USD")),
        "bad_signature": tamper_signature(valid),
        "expired": sign_webhook(sample_events(1), key=SIGNING_KEY, url=url, created=OLD),
        "unknown_key": sign_webhook(sample_events(1), key=OTHER_KEY, url=url),
    }
    with httpx.Client(base_url=base_url, timeout=15) as client:
        answers = {
            kind: client.post(path, content=s.body, headers=wire_headers(s))
            for kind, s in sent.items()
        }
        answers["unsigned"] = client.post(
            path, content=valid.body, headers={"content-type": "application/json"}
        )
    answers["valid_body"] = valid.body
    return answers


def assert_verdicts(answers: dict[str, Any]) -> None:
    """Each kind got its status; refusals are problem documents with their reason."""
    for kind, (status, reason) in EXPECTED.items():
        if reason is None:
            assert answers[kind].status_code == status, (kind, answers[kind].text)
        else:
            assert_problem(answers[kind], status, reason)


def receiver(**options: Any) -> tuple[Flask, list[Any]]:
    """A Flask app whose webhook views carry no decorator; calls recorded in the list."""
    app = Flask("protected")
    app.config.update(options.pop("config", {"UPVEST_VERIFY_JWKS": make_jwks(SIGNING_KEY)}))
    UpvestVerify(app, **options)
    calls: list[Any] = []

    @app.post("/webhooks/upvest")
    def hook() -> Any:
        webhook = get_webhook()
        calls.append(webhook)
        return {"length": len(request.get_data()), "events": len(request.get_json()["payload"])}

    @app.post("/elsewhere")
    def elsewhere() -> Any:
        calls.append(get_webhook())
        return "elsewhere"

    return app, calls


# --------------------------------------------------------------------------- the verdicts


def test_extension_alone_protects_the_default_path(security_log: LogWaiter) -> None:
    """No decorator: valid 200; tampered, bad, expired, unknown-key and unsigned 401, logged."""
    app, calls = receiver()
    with run_werkzeug(app) as url:
        answers = verdicts(url)
    assert_verdicts(answers)
    assert answers["valid"].json() == {"length": len(answers["valid_body"]), "events": 2}
    [webhook] = calls
    assert isinstance(webhook, VerifiedWebhook)
    for _, reason in EXPECTED.values():
        if reason is not None:
            security_log.wait_for(f"reason={reason}")


@pytest.fixture(scope="module")
def gunicorn_url() -> Iterator[str]:
    """gunicorn_flask_protected_app.py (no decorator anywhere) under gunicorn's sync worker."""
    pytest.importorskip("gunicorn", reason="the gunicorn tests need gunicorn (tests-servers)")
    env = {
        "UPVEST_VERIFY_JWKS": json.dumps(make_jwks(SIGNING_KEY)),
        "PYTHONPATH": os.pathsep.join([str(Path(upvest_verify.__file__).parents[1]), str(HERE)]),
    }
    with run_gunicorn("gunicorn_flask_protected_app:app", env, cwd=str(HERE)) as url:
        yield url


def test_gunicorn_extension_alone_protects_the_default_path(gunicorn_url: str) -> None:
    """The same verdicts under gunicorn; an unprotected path stays open."""
    answers = verdicts(gunicorn_url)
    assert_verdicts(answers)
    assert answers["valid"].json() == {
        "length": len(answers["valid_body"]),
        "key_id": SIGNING_KEY.kid,
    }
    with httpx.Client(base_url=gunicorn_url, timeout=15) as client:
        assert client.post("/elsewhere", content=b"{}").json() == {"verified": False}


# --------------------------------------------------------------------------- no way around


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD"])
def test_anything_but_post_on_a_protected_path_is_405(method: str) -> None:
    """The route allows POST only, yet the answer is the adapters' 405, not Flask's."""
    app, calls = receiver()
    with run_werkzeug(app) as url:
        status, body, headers = raw_request(url, method, "/webhooks/upvest", [])
    assert status == 405
    assert headers["allow"] == "POST"
    assert headers["content-type"] == "application/problem+json"
    if method != "HEAD":
        assert json.loads(body)["detail"] == "method_not_allowed"
    assert calls == []


def test_protected_subtree_without_a_view() -> None:
    """Under ``"/hooks/*"`` a path with no view is verified first: 405, 401, then 404."""
    app, calls = receiver(
        config={"UPVEST_VERIFY_JWKS": make_jwks(SIGNING_KEY), "UPVEST_VERIFY_PATHS": ["/hooks/*"]}
    )
    with run_werkzeug(app) as url, httpx.Client(base_url=url, timeout=15) as client:
        assert_problem(client.get("/hooks/none"), 405, "method_not_allowed")
        assert_problem(client.post("/hooks/none", content=b"{}"), 401, "missing_signature")
        signed = sign_webhook(sample_events(1), key=SIGNING_KEY, url=url + "/hooks/none")
        assert (
            client.post(signed.path, content=signed.body, headers=wire_headers(signed)).status_code
            == 404
        )
        # /webhooks/upvest is no longer among the paths: its undecorated view is open.
        assert client.post("/webhooks/upvest", json={"payload": []}).status_code == 200
    assert calls == [None]


@pytest.mark.parametrize("target", ["/webhooks/%75pvest", "/webhooks/upvest/"])
def test_variants_of_a_protected_path_are_protected(target: str) -> None:
    """A percent-encoded or slash-ended spelling of the path cannot skip verification."""
    app, calls = receiver()
    with run_werkzeug(app) as url:
        status, body, _ = raw_request(url, "POST", target, [("content-length", "2")], b"{}")
    assert (status, json.loads(body)["detail"]) == (401, "missing_signature")
    assert calls == []


def test_decorator_on_a_protected_path_verifies_once() -> None:
    """A decorated view on a protected path: one verification, and the view runs once."""
    counting = CountingVerifier()
    app = Flask("twice")
    UpvestVerify(app, verifier=counting)
    seen: list[Any] = []

    @app.post("/webhooks/upvest")
    @require_upvest_signature
    @require_upvest_signature
    def hook() -> Any:
        seen.append(get_webhook())
        return {}

    with run_werkzeug(app) as url:
        answers = verdicts(url)
    assert_verdicts(answers)
    assert counting.calls == len(EXPECTED)  # each request verified once
    assert len(seen) == 1


def test_the_decorators_ledger_is_used_on_a_protected_path() -> None:
    """``@require_upvest_signature(ledger=...)`` on a protected path: the hook admits with it."""
    own, app_ledger = MemoryLedger(), MemoryLedger()
    app = Flask("own-ledger")
    UpvestVerify(app, verifier=Verifier(make_key_set(SIGNING_KEY)), ledger=app_ledger)
    script = Script()

    @app.post("/webhooks/upvest")
    @require_upvest_signature(ledger=own)
    def hook() -> Any:
        return script.run(get_delivery())

    with run_werkzeug(app) as url:
        target = Target(url, "/webhooks/upvest", script, own)
        check_once(target)
        batch = target.batch(2)
        assert target.send(batch)[0] == 200
    assert {own.acquire(i) for i in batch.ids} == {"done"}
    assert all(free(app_ledger, i) for i in batch.ids)  # the app's ledger never saw them


# --------------------------------------------------------------------------- with a ledger

VIEWS = ["/webhooks/upvest", "/webhooks/async"]


def ledger_receiver(script: Script, **options: Any) -> Flask:
    """Undecorated sync and async views under ``/webhooks/*``, running ``script``."""
    app = Flask("protected_ledger")
    app.config.update(options.pop("config", {}))
    app.config["UPVEST_VERIFY_PATHS"] = ["/webhooks/*"]
    UpvestVerify(app, verifier=options.pop("verifier", None) or CountingVerifier(), **options)

    @app.post(VIEWS[0])
    def hook() -> Any:
        return script.run(get_delivery())

    @app.post(VIEWS[1])
    async def ahook() -> Any:
        return await script.arun(get_delivery())

    return app


@pytest.fixture(scope="module")
def ledger_target() -> Iterator[Target]:
    """One receiver with a memory ledger and no decorator, for the module."""
    script, ledger = Script(), MemoryLedger()
    with run_werkzeug(ledger_receiver(script, ledger=ledger)) as url:
        yield Target(url, VIEWS[0], script, ledger)


@pytest.fixture(params=VIEWS, ids=["sync", "async"])
def target(ledger_target: Target, request: pytest.FixtureRequest) -> Target:
    """The receiver, sending to its sync or its async view."""
    return ledger_target.on(request.param)


def test_ledger_once_without_a_decorator(target: Target) -> None:
    """The hook admits: the view gets the delivery; a retry is 200 already_processed."""
    check_once(target)


def test_ledger_retry_without_a_decorator(target: Target) -> None:
    """A 500 from the view releases the claims left open (settled by the answer)."""
    check_retry_after_failure(target)


def test_ledger_held_and_own_way_without_a_decorator(target: Target) -> None:
    """503 in_progress for a held event; open claims completed by a 2xx, released otherwise."""
    check_held(target)
    check_own_way(target)
    check_process_completes_each(target)


@pytest.mark.parametrize("view", VIEWS)
def test_exception_that_propagates_releases_the_claims(view: str) -> None:
    """With PROPAGATE_EXCEPTIONS no after_request runs: the teardown releases the claims."""
    script, ledger = Script(), MemoryLedger()
    app = ledger_receiver(script, ledger=ledger, config={"PROPAGATE_EXCEPTIONS": True})
    with run_werkzeug(app) as url:
        target = Target(url, view, script, ledger)
        batch = target.batch(3)
        script.reset(mode="own", fail_on=batch.ids[1])  # no process(): the claims stay open
        assert target.send(batch)[0] == 500
        assert script.handled == batch.ids[:1]
        assert all(free(ledger, i) for i in batch.ids)  # released, none left held or done
        check_retry_after_failure(target)


def test_replay_store_and_inbox_without_a_decorator(tmp_path: Path) -> None:
    """The hook records signatures after 2xx only, and queues in inbox mode."""
    script, ledger = Script(), MemoryLedger()
    store = CountingVerifier(replay_store=MemoryReplayStore())
    with run_werkzeug(ledger_receiver(script, ledger=ledger, verifier=store)) as url:
        for view in VIEWS:
            check_replay_recorded(Target(url, view, script, ledger))
    inbox: BaseLedger = MemoryLedger()
    with run_werkzeug(ledger_receiver(script, ledger=inbox, inbox=True)) as url:
        check_inbox(Target(url, VIEWS[0], script, inbox))
