"""The Flask extension and decorator on a real Werkzeug server (threat-model.md §6 G1-G5, G9-G13)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("flask", reason="the flask extra is not installed")
httpx = pytest.importorskip("httpx", reason="the real-server tests send requests with httpx")

from adapter_support import (  # noqa: E402
    SIGNING_KEY,
    LogWaiter,
    assert_problem,
    chunks,
    raw_request,
    run_gunicorn,
    run_werkzeug,
    send_partial_then_close,
    short_body_wsgi,
    tamper_signature,
    wire_headers,
)
from flask import Flask, g, request  # noqa: E402

import upvest_verify  # noqa: E402
from upvest_verify import ConfigurationError, Policy, Reason, VerifiedWebhook, Verifier  # noqa: E402
from upvest_verify.adapters.flask import (  # noqa: E402
    EXTENSION_KEY,
    UpvestVerify,
    current_webhook,
    require_upvest_signature,
)
from upvest_verify.testing import (  # noqa: E402
    SignedWebhook,
    make_jwks,
    make_key_set,
    sample_events,
    sign_webhook,
)

LIMIT = 8192
NO_LENGTH = ["@method", "@path", "content-type", "digest", "date"]


class CountingVerifier(Verifier):
    """A verifier that counts its verifications."""

    __slots__ = ("calls",)

    def __init__(self) -> None:
        super().__init__(make_key_set(SIGNING_KEY), policy=Policy(max_body_size=LIMIT))
        self.calls = 0

    def verify(self, *args: Any, **kwargs: Any) -> VerifiedWebhook:
        self.calls += 1
        return super().verify(*args, **kwargs)


class ExplodingVerifier(Verifier):
    """A verifier whose internals crash (G13)."""

    __slots__ = ()

    def verify(self, *args: Any, **kwargs: Any) -> VerifiedWebhook:
        raise RuntimeError("boom")


def make_app(
    *, config: dict[str, Any] | None = None, verifier: Verifier | None = None, init: bool = True
) -> Flask:
    """A receiver whose views record calls in ``app.extensions["calls"]``."""
    app = Flask("upvest_flask_test")
    app.config.update(config or {})
    if init:
        UpvestVerify(app, verifier=verifier)
    calls: list[dict[str, Any]] = []
    app.extensions["calls"] = calls

    @app.post("/webhooks/upvest")
    @require_upvest_signature
    def sync_view() -> Any:
        webhook = current_webhook()
        calls.append(
            {"body": request.get_data(), "webhook": webhook, "g": g.upvest_webhook is webhook}
        )
        return {"events": len(webhook.events)}

    @app.post("/webhooks/async")
    @require_upvest_signature
    async def async_view() -> Any:
        calls.append({"body": request.get_data(), "json": request.get_json()})
        return {"events": len(g.upvest_webhook.events)}

    @app.route("/webhooks/any", methods=["GET", "POST", "PUT", "DELETE"])
    @require_upvest_signature
    def any_method() -> Any:
        calls.append({"method": request.method})
        return {}

    @app.post("/other")
    def other() -> Any:
        calls.append({"other": request.get_data()})
        return "other"

    return app


@pytest.fixture(scope="module")
def counting() -> CountingVerifier:
    """The verifier behind the shared server."""
    return CountingVerifier()


@pytest.fixture(scope="module")
def app(counting: CountingVerifier) -> Flask:
    """The shared receiver app."""
    return make_app(verifier=counting)


@pytest.fixture(scope="module")
def base_url(app: Flask) -> Iterator[str]:
    """The shared receiver on Werkzeug's threaded server."""
    with run_werkzeug(app) as url:
        yield url


@pytest.fixture
def calls(app: Flask, counting: CountingVerifier) -> list[dict[str, Any]]:
    """What reached the views in this test."""
    app.extensions["calls"].clear()
    counting.calls = 0
    result: list[dict[str, Any]] = app.extensions["calls"]
    return result


@pytest.fixture
def client(base_url: str) -> Iterator[Any]:
    """A client for the shared server."""
    with httpx.Client(base_url=base_url, timeout=15) as c:
        yield c


def sign(base_url: str, path: str = "/webhooks/upvest", body: Any = None, **kw: Any) -> Any:
    """Sign a webhook for ``path`` on the server."""
    body = sample_events(2) if body is None else body
    return sign_webhook(body, key=SIGNING_KEY, url=base_url + path, **kw)


def post(client: Any, signed: SignedWebhook, **kw: Any) -> Any:
    """Send a signed webhook."""
    return client.post(signed.path, content=signed.body, headers=wire_headers(signed), **kw)


def padded(size: int) -> bytes:
    """A JSON envelope of exactly ``size`` bytes."""
    empty = len(b'{"payload":[],"pad":""}')
    return json.dumps({"payload": [], "pad": "x" * (size - empty)}, separators=(",", ":")).encode()


def test_valid_webhook_reaches_sync_view(
    client: Any, base_url: str, calls: list[dict[str, Any]]
) -> None:
    """A valid webhook runs the view, which reads the same bytes and finds g.upvest_webhook."""
    signed = sign(base_url)
    response = post(client, signed)
    assert response.status_code == 200, response.text
    assert response.json() == {"events": 2}
    [call] = calls
    assert call["body"] == signed.body
    assert call["webhook"].key_id == SIGNING_KEY.kid
    assert call["g"] is True


def test_valid_webhook_reaches_async_view(
    client: Any, base_url: str, calls: list[dict[str, Any]]
) -> None:
    """The decorator works on async views too."""
    signed = sign(base_url, "/webhooks/async", dialect="rfc9421", encoding="raw")
    response = post(client, signed)
    assert response.status_code == 200, response.text
    assert calls == [{"body": signed.body, "json": json.loads(signed.body)}]


@pytest.mark.parametrize("path", ["/webhooks/upvest", "/webhooks/async"])
def test_tampering_is_rejected(
    client: Any, base_url: str, calls: list[dict[str, Any]], path: str
) -> None:
    """A changed body or signature is refused with its reason; the view never runs."""
    signed = sign(base_url, path)
    changed = signed.replace_body(signed.body.replace(b"EUR", b"USD"))
    assert_problem(post(client, changed), 401, Reason.DIGEST_MISMATCH)
    assert_problem(post(client, tamper_signature(signed)), 401, Reason.BAD_SIGNATURE)
    assert_problem(client.post(path, content=b"{}"), 401, Reason.MISSING_SIGNATURE)
    assert calls == []


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE"])
def test_other_methods_get_405(
    client: Any, base_url: str, calls: list[dict[str, Any]], method: str
) -> None:
    """Only POST is accepted on a decorated view, even with a valid signature (G9)."""
    signed = sign(base_url, "/webhooks/any")
    response = client.request(
        method, signed.path, content=signed.body, headers=wire_headers(signed)
    )
    assert_problem(response, 405, "method_not_allowed")
    assert response.headers["allow"] == "POST"
    assert calls == []


def test_undecorated_routes_are_untouched(
    client: Any, calls: list[dict[str, Any]], counting: CountingVerifier
) -> None:
    """Routes without the decorator see their body and no verification happens."""
    assert client.post("/other", content=b"hello").text == "other"
    assert calls == [{"other": b"hello"}]
    assert counting.calls == 0


def test_body_at_limit_and_above(client: Any, base_url: str, calls: list[dict[str, Any]]) -> None:
    """A body of exactly the limit verifies; one byte more is 413 body_too_large (G3)."""
    assert post(client, sign(base_url, body=padded(LIMIT))).status_code == 200
    assert_problem(post(client, sign(base_url, body=padded(LIMIT + 1))), 413, "body_too_large")
    assert len(calls) == 1


def test_chunked_bodies(client: Any, base_url: str, calls: list[dict[str, Any]]) -> None:
    """Chunked bodies verify in many pieces and are cut off at the limit (G3)."""
    good = sign(base_url, body=sample_events(20), components=NO_LENGTH)
    response = client.post(
        good.path,
        content=chunks(good.body, 500),
        headers=wire_headers(good, drop=("content-length",)),
    )
    assert response.status_code == 200, response.text
    assert calls[0]["body"] == good.body
    big = sign(base_url, body=padded(LIMIT + 1), components=NO_LENGTH)
    response = client.post(
        big.path, content=chunks(big.body, 10), headers=wire_headers(big, drop=("content-length",))
    )
    assert_problem(response, 413, Reason.BODY_TOO_LARGE)
    assert len(calls) == 1


def test_chunked_body_without_input_terminated_is_digest_mismatch() -> None:
    """A server that does not terminate chunked input yields an empty body: digest_mismatch (G4)."""
    app = make_app(verifier=Verifier(make_key_set(SIGNING_KEY)))
    wsgi = app.wsgi_app

    def without_flag(environ: dict[str, Any], start_response: Any) -> Any:
        environ.pop("wsgi.input_terminated", None)
        return wsgi(environ, start_response)

    app.wsgi_app = without_flag  # type: ignore[method-assign]
    with run_werkzeug(app) as url, httpx.Client(base_url=url) as c:
        signed = sign(url, components=NO_LENGTH)
        response = c.post(
            signed.path,
            content=chunks(signed.body, 5),
            headers=wire_headers(signed, drop=("content-length",)),
        )
    assert_problem(response, 401, Reason.DIGEST_MISMATCH)
    assert app.extensions["calls"] == []


@pytest.mark.parametrize(
    ("path", "hook_first"), [("/webhooks/async", False), ("/webhooks/upvest", True)]
)
def test_form_read_before_the_decorator_fails_closed(
    security_log: LogWaiter, path: str, hook_first: bool
) -> None:
    """request.form touched in before_request makes the body unreadable: 500, view not run (G5).

    On a decorated view any hook runs first; on a protected path only a hook registered
    before the extension (the extension's own hook reads the body before later ones).
    """
    app = make_app(init=False)

    def touch_form() -> None:
        _ = request.form

    if hook_first:
        app.before_request(touch_form)
    UpvestVerify(app, verifier=Verifier(make_key_set(SIGNING_KEY)))
    if not hook_first:
        app.before_request(touch_form)

    with run_werkzeug(app) as url, httpx.Client(base_url=url) as c:
        signed = sign(url, path, body=b"a=1&b=2")
        headers = [
            (k, "application/x-www-form-urlencoded" if k == "content-type" else v)
            for k, v in wire_headers(signed)
        ]
        response = c.post(signed.path, content=signed.body, headers=headers)
    assert_problem(response, 500, "configuration_error")
    assert "request.form" not in response.text
    assert "request.form" in security_log.wait_for("configuration_error").getMessage()
    assert app.extensions["calls"] == []


def test_disconnect_mid_body_is_not_verified(
    base_url: str, calls: list[dict[str, Any]], counting: CountingVerifier, security_log: LogWaiter
) -> None:
    """A client that leaves mid-body is never verified and the view never runs (G2)."""
    signed = sign(base_url)
    send_partial_then_close(base_url, signed.path, wire_headers(signed))
    security_log.wait_for("incomplete_body")
    assert counting.calls == 0
    assert calls == []


@pytest.mark.parametrize("input_terminated", [False, True])
@pytest.mark.parametrize("path", ["/webhooks/upvest", "/webhooks/async"])
def test_body_shorter_than_content_length_is_400(input_terminated: bool, path: str) -> None:
    """A body ending before its Content-Length is 400 incomplete_body, whoever ends the input."""
    counting = CountingVerifier()
    app = make_app(verifier=counting)
    status, headers, body = short_body_wsgi(app, path, input_terminated=input_terminated)
    assert status == 400
    assert headers["content-type"].startswith("application/problem+json")
    assert json.loads(body)["detail"] == "incomplete_body"
    assert counting.calls == 0
    assert app.extensions["calls"] == []


def test_split_signature_lines_verify(
    client: Any, base_url: str, calls: list[dict[str, Any]]
) -> None:
    """Signature fields split over two lines (joined by the WSGI server) still verify (G10)."""
    signed = sign(base_url)
    extra = [
        ("signature-input", 'sig2=("@method");created=1700000000;keyid="nobody"'),
        ("signature", "sig2=:AAAA:"),
    ]
    response = client.post(
        signed.path, content=signed.body, headers=[*wire_headers(signed), *extra]
    )
    assert response.status_code == 200, response.text
    assert len(calls) == 1


def test_path_uses_the_raw_request_uri(
    client: Any, base_url: str, calls: list[dict[str, Any]]
) -> None:
    """@path is the raw REQUEST_URI, not Werkzeug's decoded PATH_INFO (G11)."""
    encoded = "/webhooks/%75pvest"
    signed = sign(base_url, encoded)
    status, body, _ = raw_request(base_url, "POST", encoded, wire_headers(signed), signed.body)
    assert status == 200, body
    assert len(calls) == 1


def test_verifier_crash_fails_closed() -> None:
    """An exception inside the verifier answers 500 internal_error; the view never runs (G13)."""
    app = make_app(verifier=ExplodingVerifier(make_key_set(SIGNING_KEY)))
    with run_werkzeug(app) as url, httpx.Client(base_url=url) as c:
        response = post(c, sign(url))
    assert_problem(response, 500, "internal_error")
    assert "boom" not in response.text
    assert app.extensions["calls"] == []


def test_decorator_without_extension_fails_closed() -> None:
    """A decorated view in an app without UpvestVerify answers 500 configuration_error."""
    app = make_app(init=False)
    with run_werkzeug(app) as url, httpx.Client(base_url=url) as c:
        response = post(c, sign(url))
    assert_problem(response, 500, "configuration_error")
    assert app.extensions["calls"] == []


@pytest.mark.parametrize(
    ("sent", "signed_as", "status"),
    [("post", "POST", 401), ("POST", "post", 401), ("post", "post", 200)],
)
def test_method_is_verified_as_received(
    base_url: str, calls: list[dict[str, Any]], sent: str, signed_as: str, status: int
) -> None:
    """The verifier gets REQUEST_METHOD as sent, not request.method's upper-cased copy (B19)."""
    signed = sign(base_url, method=signed_as)
    answer, body, _ = raw_request(base_url, sent, signed.path, wire_headers(signed), signed.body)
    assert answer == status, body
    if status == 401:
        assert json.loads(body)["detail"] == "bad_signature"
    assert len(calls) == (1 if status == 200 else 0)


# --------------------------------------------------------------------------- configuration


def served_verdict(config: dict[str, Any], url_for_signing: str | None = None) -> int:
    """Start an app built from ``config`` and return the status of one valid webhook."""
    app = make_app(config=config)
    with run_werkzeug(app) as url, httpx.Client(base_url=url) as c:
        target = url_for_signing or url
        signed = sign_webhook(
            sample_events(),
            key=SIGNING_KEY,
            url=target + "/webhooks/upvest",
            components=["@method", "@scheme", "@authority", "@path", "digest"],
        )
        response = c.post("/webhooks/upvest", content=signed.body, headers=wire_headers(signed))
    status: int = response.status_code
    return status


@pytest.mark.parametrize("form", ["dict", "json", "file"])
def test_verifier_built_from_config(tmp_path: Path, form: str) -> None:
    """UPVEST_VERIFY_JWKS as a dict, JSON text or file path builds a working verifier."""
    jwks: Any = make_jwks(SIGNING_KEY)
    if form == "json":
        jwks = json.dumps(jwks)
    elif form == "file":
        path = tmp_path / "jwks.json"
        path.write_text(json.dumps(jwks))
        jwks = str(path)
    assert served_verdict({"UPVEST_VERIFY_JWKS": jwks, "UPVEST_VERIFY_SKEW": "30"}) == 200


def test_public_url_from_config() -> None:
    """UPVEST_VERIFY_PUBLIC_URL rebuilds the URL Upvest called (scheme, authority, prefix)."""
    config = {
        "UPVEST_VERIFY_JWKS": make_jwks(SIGNING_KEY),
        "UPVEST_VERIFY_PUBLIC_URL": "https://hooks.example.com/in",
    }
    assert served_verdict(config, "https://hooks.example.com/in") == 200
    assert served_verdict(config) == 401


def test_policy_from_config_applies() -> None:
    """Policy fields in config reach the verifier (a tiny body limit refuses the webhook)."""
    app = make_app(
        config={"UPVEST_VERIFY_JWKS": make_jwks(SIGNING_KEY), "UPVEST_VERIFY_MAX_BODY_SIZE": 10}
    )
    assert app.extensions[EXTENSION_KEY].verifier.policy.max_body_size == 10
    with run_werkzeug(app) as url, httpx.Client(base_url=url) as c:
        assert_problem(post(c, sign(url)), 413, Reason.BODY_TOO_LARGE)


@pytest.mark.parametrize(
    "config",
    [
        {},
        {"UPVEST_VERIFY_JWKS": {"keys": []}},
        {"UPVEST_VERIFY_JWKS": "/nonexistent/jwks.json"},
        {"UPVEST_VERIFY_JWKS": "{not json"},
        {"UPVEST_VERIFY_JWKS": {"keys": []}, "UPVEST_VERIFY_JWKS_URL": "https://x/jwks"},
        {"UPVEST_VERIFY_JWKS_URL": "http://insecure.example/jwks"},
        {"UPVEST_VERIFY_JWKZ": {"keys": []}},
        {"UPVEST_VERIFY_SKEW": -1, "UPVEST_VERIFY_JWKS": {"keys": []}},
        {"UPVEST_VERIFY_VERIFIER": "no.such.module:verifier"},
        {"UPVEST_VERIFY_VERIFIER": "json:dumps"},
        {"UPVEST_VERIFY_PUBLIC_URL": "hooks.example.com", "UPVEST_VERIFY_JWKS": {"keys": []}},
    ],
    ids=[
        "no-key-source",
        "empty-jwks",
        "missing-file",
        "bad-json",
        "two-sources",
        "http-url",
        "typo",
        "negative-skew",
        "bad-import",
        "not-a-verifier",
        "bad-public-url",
    ],
)
def test_bad_config_raises_at_init(config: dict[str, Any]) -> None:
    """Invalid UPVEST_VERIFY_* config raises ConfigurationError from init_app."""
    with pytest.raises(ConfigurationError):
        make_app(config=config)


def test_verifier_in_code_excludes_key_config() -> None:
    """A verifier passed in code plus a key source in config is ambiguous: refused."""
    with pytest.raises(ConfigurationError):
        make_app(
            verifier=Verifier(make_key_set(SIGNING_KEY)),
            config={"UPVEST_VERIFY_JWKS": make_jwks(SIGNING_KEY)},
        )


def test_verifier_from_dotted_path() -> None:
    """UPVEST_VERIFY_VERIFIER may name a factory by dotted path."""
    app = make_app(config={"UPVEST_VERIFY_VERIFIER": f"{__name__}:verifier_factory"})
    assert isinstance(app.extensions[EXTENSION_KEY].verifier, Verifier)


def verifier_factory() -> Verifier:
    """Build a verifier (used through a dotted path)."""
    return Verifier(make_key_set(SIGNING_KEY))


def test_init_app_later_and_current_webhook_outside_view() -> None:
    """init_app registers state per app; current_webhook() outside a verified view raises."""
    ext = UpvestVerify(verifier=Verifier(make_key_set(SIGNING_KEY)))
    app = Flask("late")
    with pytest.raises(ConfigurationError):
        UpvestVerify.settings(app)
    ext.init_app(app)
    assert UpvestVerify.settings(app).verifier is ext._verifier
    with app.test_request_context("/"), pytest.raises(ConfigurationError):
        current_webhook()


# --------------------------------------------------------------------------- gunicorn


HERE = Path(__file__).resolve().parent


def gunicorn_env() -> dict[str, str]:
    """The environment of gunicorn_flask_app.py: the test key and this source tree."""
    return {
        "UPVEST_VERIFY_JWKS": json.dumps(make_jwks(SIGNING_KEY)),
        "PYTHONPATH": os.pathsep.join([str(Path(upvest_verify.__file__).parents[1]), str(HERE)]),
    }


@pytest.fixture(scope="module")
def gunicorn_url() -> Iterator[str]:
    """The receiver of gunicorn_flask_app.py under gunicorn's sync worker."""
    pytest.importorskip("gunicorn", reason="the gunicorn tests need gunicorn (tests-servers)")
    with run_gunicorn("gunicorn_flask_app:app", gunicorn_env(), cwd=str(HERE)) as url:
        yield url


def test_gunicorn_split_and_repeated_lines(gunicorn_url: str) -> None:
    """Under gunicorn (joins repeated lines with ",") split signature fields still verify (G10)."""
    signed = sign(gunicorn_url)
    extra = [
        ("signature-input", 'sig2=("@method");created=1700000000;keyid="nobody"'),
        ("signature", "sig2=:AAAA:"),
    ]
    with httpx.Client(base_url=gunicorn_url, timeout=15) as c:
        ok = c.post(signed.path, content=signed.body, headers=[*wire_headers(signed), *extra])
        forged = post(c, tamper_signature(signed))
    assert ok.status_code == 200, ok.text
    assert ok.json() == {"length": len(signed.body), "key_id": SIGNING_KEY.kid}
    assert_problem(forged, 401, Reason.BAD_SIGNATURE)


def test_gunicorn_lower_case_method(gunicorn_url: str) -> None:
    """gunicorn refuses a lower-case method itself (400); with it permitted, it is verified as sent."""
    signed = sign(gunicorn_url)
    status, _, _ = raw_request(gunicorn_url, "post", signed.path, wire_headers(signed), signed.body)
    assert status == 400
    permit = ("--permit-unconventional-http-method",)
    with run_gunicorn("gunicorn_flask_app:app", gunicorn_env(), str(HERE), permit) as url:
        upper = sign(url)
        lower = sign(url, method="post")
        status, body, _ = raw_request(url, "post", upper.path, wire_headers(upper), upper.body)
        assert (status, json.loads(body)["detail"]) == (401, "bad_signature")
        status, body, _ = raw_request(url, "post", lower.path, wire_headers(lower), lower.body)
        assert status == 200, body


def test_gunicorn_chunked_and_raw_uri(gunicorn_url: str) -> None:
    """gunicorn terminates chunked input (body verified) and passes RAW_URI for @path (G4, G11)."""
    signed = sign(gunicorn_url, components=NO_LENGTH)
    encoded = sign(gunicorn_url, "/webhooks/%75pvest")
    with httpx.Client(base_url=gunicorn_url, timeout=15) as c:
        chunked = c.post(
            signed.path,
            content=chunks(signed.body, 50),
            headers=wire_headers(signed, drop=("content-length",)),
        )
    assert chunked.status_code == 200, chunked.text
    status, body, _ = raw_request(
        gunicorn_url, "POST", encoded.path, wire_headers(encoded), encoded.body
    )
    assert status == 200, body
