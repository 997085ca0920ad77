"""Adversarial plan, group G: the adapters end to end on real loopback servers.

One test (or parametrised set) per case G1-G15 of threat-model.md §6. Each refusal
asserts the HTTP status, the exact reason code in the problem document and that the
handler never ran. Receivers (``tests/adapters/receivers.py``): Starlette and FastAPI
on uvicorn, Flask on Werkzeug (and gunicorn for G10), Django under WSGI (Werkzeug)
and ASGI (uvicorn). A receiver whose framework or server is missing is skipped with
its reason.
"""

from __future__ import annotations

import dataclasses
import inspect
import io
import json
import logging
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

# The adapter tests' helpers, receivers and Django settings, imported under the same
# names as there, so both suites share one signing key and one Django setup.
ADAPTER_TESTS = Path(__file__).resolve().parents[1] / "adapters"
if str(ADAPTER_TESTS) not in sys.path:
    sys.path.insert(0, str(ADAPTER_TESTS))

from adapter_support import (  # noqa: E402
    SIGNING_KEY,
    LogWaiter,
    asgi_call,
    send_partial_then_close,
    tamper_signature,
    wire_headers,
)
from receivers import (  # noqa: E402
    IN_PROCESS,
    LIMIT,
    NO_LENGTH,
    WEBHOOK,
    CountingVerifier,
    CrashingKeys,
    ExplodingVerifier,
    Receiver,
    build_app,
    django_setup,
    need,
    problem,
    serve,
)

from upvest_verify import ConfigurationError  # noqa: E402
from upvest_verify.testing import SignedWebhook, make_jwks, sample_events, sign_webhook  # noqa: E402

WITH_AUTHORITY = ["@method", "@authority", "@path", "content-type", "content-digest"]


@pytest.fixture(scope="module", params=IN_PROCESS)
def shared(request: pytest.FixtureRequest) -> Iterator[Receiver]:
    """One receiver of each kind, served for the whole module."""
    with serve(request.param) as receiver:
        yield receiver


@pytest.fixture
def receiver(shared: Receiver) -> Receiver:
    """The shared receiver with its call log and verification count reset."""
    assert shared.calls is not None
    shared.calls.clear()
    shared.verifier.calls = 0
    return shared


@pytest.fixture
def security_log() -> Iterator[LogWaiter]:
    """Records of ``upvest_verify.security`` (waitable across server threads)."""
    logger = logging.getLogger("upvest_verify.security")
    handler = LogWaiter()
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)


# --------------------------------------------------------------------------- G1-G4: the body


@pytest.mark.parametrize("dialect", ["rfc9421", "upvest-v6"])
def test_g1_handler_reads_the_verified_bytes_again(receiver: Receiver, dialect: str) -> None:
    """G1: after verification the handler reads the body and its JSON again: identical bytes."""
    signed = receiver.sign(dialect=dialect)
    status, body, _ = receiver.send(signed)
    assert status == 200, body
    [call] = receiver.calls or []
    assert call["body"] == signed.body
    assert call["json"] == json.loads(signed.body)
    assert call["webhook"].body == signed.body


@pytest.mark.parametrize("name", ["starlette", "fastapi"])
def test_g2_thousand_chunks_verify_and_a_disconnect_never_does(
    name: str, security_log: LogWaiter
) -> None:
    """G2: a body in 1,000 chunks verifies whole; a disconnect mid-body is never verified."""
    with serve(name) as r:
        signed = r.sign(sample_events(20), components=NO_LENGTH)
        assert len(signed.body) > 1000
        status, body, _ = r.send(signed, pieces=1000)
        assert status == 200, body
        assert [c["body"] for c in r.calls or []] == [signed.body]
        (r.calls or []).clear()
        r.verifier.calls = 0
        send_partial_then_close(r.url, signed.path, wire_headers(signed))
        security_log.wait_for("client disconnected")
        assert (r.verifier.calls, r.handled()) == (0, 0)


def test_g3_body_over_the_limit_is_413(receiver: Receiver) -> None:
    """G3: a declared or chunked body over the limit is 413 body_too_large; no handler."""
    big = receiver.sign(b'{"pad":"' + b"x" * LIMIT + b'"}', components=NO_LENGTH)
    problem(receiver.send(big), 413, "body_too_large")
    if receiver.name == "django-wsgi":
        # Django reads no chunked body under WSGI: empty, so never "no body" (G4).
        problem(receiver.send(big, pieces=10), 401, "digest_mismatch")
    else:
        problem(receiver.send(big, pieces=10), 413, "body_too_large")
    assert receiver.handled() == 0


def test_g3_reading_stops_at_the_limit_plus_one() -> None:
    """G3: the ASGI middleware and the Flask decorator read at most limit + 1 bytes of a stream."""
    need("starlette")
    need("flask")
    from werkzeug.test import EnvironBuilder, run_wsgi_app

    calls: list[dict[str, Any]] = []
    pulled: list[int] = []

    def offered() -> Iterator[dict[str, Any]]:
        for _ in range(100):  # 100 kB on offer, 1 kB a message
            pulled.append(1000)
            yield {"type": "http.request", "body": b"x" * 1000, "more_body": True}

    status, _, body = asgi_call(
        build_app("starlette", CountingVerifier(), calls), WEBHOOK, [], offered()
    )
    assert (status, json.loads(body)["detail"]) == (413, "body_too_large")
    assert sum(pulled) <= LIMIT + 1000  # stopped at the message crossing the limit

    class Counting(io.BytesIO):
        taken = 0

        def read(self, size: int | None = -1) -> bytes:
            data = super().read(size)
            self.taken += len(data)
            return data

    stream = Counting(b"x" * 100_000)
    environ = EnvironBuilder(WEBHOOK, method="POST", input_stream=stream).get_environ()
    environ.pop("CONTENT_LENGTH", None)
    environ["wsgi.input_terminated"] = True
    _, status_line, _ = run_wsgi_app(build_app("flask", CountingVerifier(), calls), environ, True)
    assert status_line.startswith("413")
    assert stream.taken <= LIMIT + 1
    assert calls == []


@pytest.mark.parametrize("terminated", [True, False])
def test_g4_flask_chunked_body_needs_input_terminated(terminated: bool) -> None:
    """G4: chunked under Flask verifies with wsgi.input_terminated, else digest_mismatch."""

    def tweak(app: Any) -> None:
        inner = app.wsgi_app

        def wsgi(environ: dict[str, Any], start_response: Any) -> Any:
            if not terminated:
                environ.pop("wsgi.input_terminated", None)
            return inner(environ, start_response)

        app.wsgi_app = wsgi

    with serve("flask", tweak=tweak) as r:
        answer = r.send(r.sign(components=NO_LENGTH), pieces=5)
        if terminated:
            assert answer[0] == 200, answer[1]
        else:
            problem(answer, 401, "digest_mismatch")
        assert r.handled() == (1 if terminated else 0)


# --------------------------------------------------------------------------- G5-G8: frameworks


def test_g5_flask_form_read_first_fails_closed(security_log: LogWaiter) -> None:
    """G5: request.form read in before_request: 500 configuration_error, logged, no trace."""

    def tweak(app: Any) -> None:
        from flask import request

        def touch_form() -> None:
            _ = request.form

        # Before the extension's own hook, which would otherwise read the body first.
        app.before_request_funcs.setdefault(None, []).insert(0, touch_form)

    with serve("flask", tweak=tweak) as r:
        form = "application/x-www-form-urlencoded"
        answer = r.send(r.sign(b"a=1&b=2").replace_header("content-type", form))
        problem(answer, 500, "configuration_error")
        assert b"request.form" not in answer[1]
        assert "request.form" in security_log.wait_for("configuration_error").getMessage()
        assert r.handled() == 0


@pytest.mark.parametrize("name", ["django-wsgi", "django-asgi"])
def test_g6_django_post_read_first_fails_closed(name: str, security_log: LogWaiter) -> None:
    """G6: a middleware read request.POST first: 500 configuration_error; view not run."""
    need(name)
    middleware = ["django_settings.ReadPostMiddleware", *django_setup().MIDDLEWARE]
    form = b"--b\r\nContent-Disposition: form-data; name=a\r\n\r\n1\r\n--b--\r\n"
    with serve(name, django={"MIDDLEWARE": middleware}) as r:
        signed = r.sign(form).replace_header("content-type", "multipart/form-data; boundary=b")
        problem(r.send(signed), 500, "configuration_error")
        assert "request.POST" in security_log.wait_for("configuration_error").getMessage()
        assert r.handled() == 0


@pytest.mark.parametrize("name", ["django-wsgi", "django-asgi"])
def test_g7_django_data_upload_max_memory_size_is_413(name: str) -> None:
    """G7: a body above DATA_UPLOAD_MAX_MEMORY_SIZE is 413 body_too_large."""
    with serve(name, django={"DATA_UPLOAD_MAX_MEMORY_SIZE": 100}) as r:
        problem(r.send(r.sign()), 413, "body_too_large")
        assert r.handled() == 0


@pytest.mark.parametrize("name", ["django-wsgi", "django-asgi"])
def test_g8_django_sync_and_async_views_agree(name: str) -> None:
    """G8: middleware and decorator, sync and async views, WSGI and ASGI: the same verdicts."""
    expected = {"valid": 200, "body": 401, "signature": 401, "unsigned": 401, "get": 405}
    with serve(name) as r:
        for path in ["/webhooks/sync", "/webhooks/async", "/decorated/sync", "/decorated/async"]:
            signed = r.sign(path=path)
            verdicts = {
                "valid": r.send(signed)[0],
                "body": r.send(signed.replace_body(signed.body.replace(b"EUR", b"JPY")))[0],
                "signature": r.send(tamper_signature(signed))[0],
                "unsigned": r.send(signed.replace_header("signature", None))[0],
                "get": r.send(signed, method="GET")[0],
            }
            assert verdicts == expected, path
        assert r.handled() == 4


# --------------------------------------------------------------------------- G9-G11: the request


@pytest.mark.parametrize("method", ["GET", "HEAD", "OPTIONS", "PUT", "post"])
def test_g9_other_methods_never_reach_the_handler(receiver: Receiver, method: str) -> None:
    """G9: GET/HEAD/OPTIONS/PUT, or a POST signature replayed with another method: 405, or
    bad_signature where the framework routes ``post`` as POST; a PUT signature on POST fails."""
    answer = receiver.send(receiver.sign(), method=method)
    if method == "HEAD":
        assert (answer[0], answer[2]["allow"]) == (405, "POST")
    elif method == "post" and receiver.name.startswith(("flask", "django")):
        problem(answer, 401, "bad_signature")  # routed as POST, verified as sent (B19)
    else:
        problem(answer, 405, "method_not_allowed")
    problem(receiver.send(receiver.sign(method="PUT")), 401, "bad_signature")
    assert receiver.handled() == 0


@pytest.mark.parametrize("name", [*IN_PROCESS, "flask-gunicorn"])
def test_g10_repeated_covered_field_is_joined_per_rfc(name: str) -> None:
    """G10: a covered field on two lines verifies whatever the server's join; tampering never."""
    with serve(name) as r:
        trace = [("x-upvest-trace", "a"), ("x-upvest-trace", "b")]
        signed = r.sign(headers=trace, components=[*NO_LENGTH, "x-upvest-trace"])
        lines = [(k, "c" if (k, v) == trace[1] else v) for k, v in signed.headers]
        problem(r.send(dataclasses.replace(signed, headers=lines)), 401, "bad_signature")
        status, body, _ = r.send(signed)
        assert status == 200, body
        assert r.handled() == (0 if r.calls is None else 1)


@pytest.mark.parametrize("name", [*IN_PROCESS, "flask-gunicorn"])
def test_g10_split_signature_lines_verify(name: str) -> None:
    """G10: Signature and Signature-Input split over lines (an extra sig2) still verify."""
    with serve(name) as r:
        extra = [
            ("signature-input", 'sig2=("@method");created=1700000000;keyid="nobody"'),
            ("signature", "sig2=:AAAA:"),
        ]
        status, body, _ = r.send(r.sign(), extra=extra)
        assert status == 200, body


@pytest.mark.parametrize("mount", ["", "/api"])
@pytest.mark.parametrize("name", IN_PROCESS)
def test_g11_path_is_the_raw_path_under_the_mount(name: str, mount: str) -> None:
    """G11: @path is the raw path (with root_path/SCRIPT_NAME): B13 and B15 in every adapter."""
    raw = "/webhooks/t/a%2Fb%7Ec%C3%A9"
    with serve(name, mount=mount) as r:
        status, body, _ = r.send(r.sign(path=raw))
        assert status == 200, body
        decoded = r.sign(path="/webhooks/t/a/b~c%C3%A9")  # what a decoding adapter sees
        problem(r.send(decoded, target=raw), 401, "bad_signature")
        if mount:  # B15: signed for the URL without the mount point
            problem(r.send(r.sign(path=raw, mounted=False), target=raw), 401, "bad_signature")
        assert r.handled() == 1


# --------------------------------------------------------------------------- G12-G15


def test_g12_failures_are_generic_and_logged_without_secrets(
    receiver: Receiver, security_log: LogWaiter
) -> None:
    """G12: the answer carries only the reason; the log has reason and path, no secrets."""
    signed = tamper_signature(receiver.sign())
    token = "Bearer g12-secret-token"
    answer = receiver.send(signed, extra=[("authorization", token)])
    problem(answer, 401, "bad_signature")
    record = security_log.wait_for("reason=bad_signature")
    text = record.getMessage() + json.dumps(record.__dict__, default=str)
    assert receiver.path in record.getMessage()
    signature = (signed.header("signature") or "").split(":")[1]
    for secret in (signature[:16], "g12-secret"):
        assert secret not in text
        assert secret.encode() not in answer[1]
    assert receiver.handled() == 0


@pytest.mark.parametrize("fault", ["key-provider", "verifier"])
@pytest.mark.parametrize("name", IN_PROCESS)
def test_g13_exception_inside_the_verifier_fails_closed(name: str, fault: str) -> None:
    """G13: an exception inside the verification flow: 500 internal_error, handler not run."""
    verifier = CountingVerifier(CrashingKeys()) if fault == "key-provider" else ExplodingVerifier()
    with serve(name, verifier) as r:
        answer = r.send(r.sign())
        problem(answer, 500, "internal_error")
        assert b"boom" not in answer[1]
        assert r.handled() == 0


SWITCHES = [
    "UPVEST_VERIFY_DISABLED",
    "UPVEST_VERIFY_ENABLED",
    "UPVEST_VERIFY_SKIP",
    "UPVEST_VERIFY",
]


@pytest.mark.parametrize("name", IN_PROCESS)
def test_g14_verification_is_on_and_no_environment_turns_it_off(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """G14: adapters built with defaults verify; no environment variable switches them off."""
    for variable in SWITCHES:
        monkeypatch.setenv(variable, "0" if "ENABLED" in variable else "1")
    with serve(name) as r:
        problem(r.send(r.sign().replace_header("signature", None)), 401, "missing_signature")
        problem(r.send(tamper_signature(r.sign())), 401, "bad_signature")
        assert r.handled() == 0


@pytest.mark.parametrize("name", ["starlette", "fastapi", "flask", "django-wsgi"])
def test_g14_no_option_or_setting_disables_verification(name: str) -> None:
    """G14: no adapter option turns verification off; a config key trying to fails at start-up."""
    need(name)
    off = ("disable", "enable", "skip", "insecure", "verify_")
    if name in ("starlette", "fastapi"):
        from upvest_verify.adapters.fastapi import UpvestSignature, UpvestWebhookMiddleware

        for adapter in (UpvestWebhookMiddleware, UpvestSignature):
            options = inspect.signature(adapter).parameters
            assert not [o for o in options if any(word in o for word in off)]
    elif name == "flask":
        from flask import Flask

        from upvest_verify.adapters.flask import UpvestVerify

        app = Flask("g14")
        app.config.update(UPVEST_VERIFY_JWKS=make_jwks(SIGNING_KEY), UPVEST_VERIFY_DISABLED=True)
        with pytest.raises(ConfigurationError, match="DISABLED"):
            UpvestVerify(app)
    else:
        django_setup()
        from django.test import override_settings

        from upvest_verify.adapters.django import UpvestWebhookMiddleware as DjangoMiddleware

        off_switch = {"JWKS": make_jwks(SIGNING_KEY), "ENABLED": False}
        with override_settings(UPVEST_VERIFY=off_switch), pytest.raises(ConfigurationError):
            DjangoMiddleware(lambda request: None)


def _h2_headers(signed: SignedWebhook, authority: bytes) -> list[tuple[bytes, bytes]]:
    # As an HTTP/2 server may present them: lower-case names, pseudo-headers, no Host.
    pseudo = [(b":method", b"POST"), (b":scheme", b"http"), (b":path", signed.path.encode())]
    fields = [(k.lower().encode(), v.encode()) for k, v in wire_headers(signed)]
    return [*pseudo, (b":authority", authority), *fields]


def _verdict(answer: tuple[int, dict[str, str], bytes]) -> tuple[int, str]:
    status, _, body = answer
    return status, "" if status == 200 else json.loads(body)["detail"]


@pytest.mark.parametrize("name", ["starlette", "fastapi", "django-asgi"])
def test_g15_http2_scope_gets_the_http11_verdicts(name: str) -> None:
    """G15: an HTTP/2 scope (lower-case names, :authority, no Host) gets HTTP/1.1's verdicts.

    No HTTP/2 server is among the test dependencies, so the ASGI scope is built by hand
    the way a server passing HTTP/2 pseudo-headers through would build it.
    """
    need(name)
    calls: list[dict[str, Any]] = []
    path = WEBHOOK
    if name == "django-asgi":
        ds = django_setup()
        from django.core.handlers.asgi import ASGIHandler

        app, path, calls = ASGIHandler(), "/webhooks/sync", ds.CALLS
        calls.clear()
    else:
        app = build_app(name, CountingVerifier(), calls)
    authority = "localhost:8000"  # not the socket address the scope's "server" names
    signed = sign_webhook(
        sample_events(),
        key=SIGNING_KEY,
        url=f"http://{authority}{path}",
        dialect="rfc9421",
        components=WITH_AUTHORITY,
    )
    fixtures = {
        "valid": signed,
        "body": signed.replace_body(signed.body.replace(b"EUR", b"CHF")),
        "signature": tamper_signature(signed),
        "unsigned": signed.replace_header("signature", None),
    }
    verdicts: dict[str, dict[str, tuple[int, str]]] = {"1.1": {}, "2": {}}
    for label, fixture in fixtures.items():
        message = [{"type": "http.request", "body": fixture.body, "more_body": False}]
        h1 = [(k.lower().encode(), v.encode()) for k, v in wire_headers(fixture)]
        verdicts["1.1"][label] = _verdict(
            asgi_call(app, path, h1, message, host=authority.encode())
        )
        h2 = _h2_headers(fixture, authority.encode())
        verdicts["2"][label] = _verdict(
            asgi_call(app, path, h2, message, host=None, http_version="2")
        )
    assert verdicts["1.1"] == {
        "valid": (200, ""),
        "body": (401, "digest_mismatch"),
        "signature": (401, "bad_signature"),
        "unsigned": (401, "missing_signature"),
    }
    assert verdicts["2"] == verdicts["1.1"]
    assert len(calls) == 2
