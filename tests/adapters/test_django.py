"""The Django middleware, decorator and checks under real WSGI and ASGI servers (G1-G13)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("django", reason="the django extra is not installed")
pytest.importorskip("asgiref", reason="the django extra is not installed")
pytest.importorskip(
    "uvicorn", reason="the real-server tests need uvicorn (dependency group tests-servers)"
)
pytest.importorskip("werkzeug", reason="the WSGI tests serve Django with Werkzeug's server")
httpx = pytest.importorskip("httpx", reason="the real-server tests send requests with httpx")

os.environ["DJANGO_SETTINGS_MODULE"] = "django_settings"

import django  # type: ignore[import-untyped,unused-ignore]  # noqa: E402

django.setup()

import django_settings  # noqa: E402
from adapter_support import (  # noqa: E402
    SIGNING_KEY,
    LogWaiter,
    assert_problem,
    chunks,
    raw_request,
    run_uvicorn,
    run_werkzeug,
    run_wsgiref,
    send_partial_then_close,
    short_body_asgi,
    short_body_wsgi,
    tamper_signature,
    wire_headers,
)
from django.core import checks  # type: ignore[import-untyped,unused-ignore]  # noqa: E402
from django.core.handlers.asgi import ASGIHandler  # type: ignore[import-untyped,unused-ignore]  # noqa: E402
from django.core.handlers.wsgi import WSGIHandler  # type: ignore[import-untyped,unused-ignore]  # noqa: E402
from django.test import override_settings  # type: ignore[import-untyped,unused-ignore]  # noqa: E402

from upvest_verify import ConfigurationError, Reason  # noqa: E402
from upvest_verify.adapters.django import UpvestWebhookMiddleware  # noqa: E402
from upvest_verify.adapters.django.checks import check_settings  # noqa: E402
from upvest_verify.adapters.django.conf import get_settings  # noqa: E402
from upvest_verify.testing import SignedWebhook, make_jwks, sample_events, sign_webhook  # noqa: E402

LIMIT = django_settings.LIMIT
NO_LENGTH = ["@method", "@path", "content-type", "digest", "date"]
VIEWS = ["/webhooks/sync", "/webhooks/async", "/decorated/sync", "/decorated/async"]


def serve(kind: str) -> Any:
    """A context manager serving a fresh Django handler under ``kind`` (wsgi, asgi, wsgiref)."""
    if kind == "asgi":
        return run_uvicorn(ASGIHandler())
    if kind == "wsgiref":
        return run_wsgiref(WSGIHandler())
    return run_werkzeug(WSGIHandler())


@pytest.fixture(scope="module", params=["wsgi", "asgi"])
def server(request: pytest.FixtureRequest) -> Iterator[tuple[str, str]]:
    """Django under Werkzeug (WSGI) and under uvicorn (ASGI)."""
    with serve(request.param) as url:
        yield request.param, url


@pytest.fixture
def calls() -> list[dict[str, Any]]:
    """What reached the views during this test."""
    django_settings.CALLS.clear()
    django_settings.COUNTING.calls = 0
    return django_settings.CALLS


@pytest.fixture
def client(server: tuple[str, str]) -> Iterator[Any]:
    """A client for the running server."""
    with httpx.Client(base_url=server[1], timeout=15) as c:
        yield c


def sign(url: str, path: str, body: Any = None, **kw: Any) -> SignedWebhook:
    """Sign a webhook for ``path`` on the server at ``url``."""
    return sign_webhook(
        sample_events(2) if body is None else body, key=SIGNING_KEY, url=url + path, **kw
    )


def post(client: Any, signed: SignedWebhook, **kw: Any) -> Any:
    """Send a signed webhook."""
    return client.post(signed.path, content=signed.body, headers=wire_headers(signed), **kw)


@pytest.mark.parametrize("path", VIEWS)
def test_valid_webhook_reaches_the_view(
    client: Any, server: tuple[str, str], calls: list[dict[str, Any]], path: str
) -> None:
    """Sync and async views, behind middleware or decorator, get the verified body (G1, G8)."""
    signed = sign(server[1], path)
    response = post(client, signed)
    assert response.status_code == 200, response.text
    kind = path.strip("/").replace("webhooks/", "").replace("/", "-")
    assert response.json() == {"kind": kind, "events": 2}
    [call] = calls
    assert call["body"] == signed.body
    assert call["webhook"].key_id == SIGNING_KEY.kid


@pytest.mark.parametrize("path", VIEWS)
def test_tampered_webhooks_are_rejected(
    client: Any, server: tuple[str, str], calls: list[dict[str, Any]], path: str
) -> None:
    """Body and signature tampering get 401 with their reason; no view runs (G8)."""
    signed = sign(server[1], path)
    changed = signed.replace_body(signed.body.replace(b"EUR", b"JPY"))
    assert_problem(post(client, changed), 401, Reason.DIGEST_MISMATCH)
    assert_problem(post(client, tamper_signature(signed)), 401, Reason.BAD_SIGNATURE)
    assert_problem(client.post(path, content=b"{}"), 401, Reason.MISSING_SIGNATURE)
    assert calls == []


@pytest.mark.parametrize("path", VIEWS)
def test_non_post_gets_405(client: Any, calls: list[dict[str, Any]], path: str) -> None:
    """GET and PUT on a protected view answer 405 with Allow: POST (G9)."""
    for method in ("GET", "PUT"):
        response = client.request(method, path)
        assert_problem(response, 405, "method_not_allowed")
        assert response.headers["allow"] == "POST"
    assert calls == []


def test_other_paths_are_untouched(client: Any, calls: list[dict[str, Any]]) -> None:
    """Paths outside PATHS are not verified (the GET reaches the view)."""
    assert client.get("/other").text == "other"
    assert calls == [{"kind": "other", "body": b""}]
    assert django_settings.COUNTING.calls == 0


@pytest.mark.parametrize("path", ["/webhooks/sync", "/decorated/async"])
def test_content_length_above_limit_is_413(
    client: Any, server: tuple[str, str], calls: list[dict[str, Any]], path: str
) -> None:
    """A declared body above the limit gets 413 before it is read (G3)."""
    big = json.dumps({"payload": [], "pad": "x" * LIMIT}).encode()
    assert_problem(post(client, sign(server[1], path, body=big)), 413, Reason.BODY_TOO_LARGE)
    assert calls == []


def test_body_of_exactly_the_limit_verifies(
    client: Any, server: tuple[str, str], calls: list[dict[str, Any]]
) -> None:
    """A body of exactly MAX_BODY_SIZE bytes is accepted."""
    empty = len(b'{"payload":[],"pad":""}')
    body = json.dumps({"payload": [], "pad": "x" * (LIMIT - empty)}, separators=(",", ":"))
    signed = sign(server[1], "/webhooks/sync", body=body.encode())
    assert len(signed.body) == LIMIT
    with override_settings(DATA_UPLOAD_MAX_MEMORY_SIZE=LIMIT):
        response = post(client, signed)
    assert response.status_code == 200, response.text
    assert calls[0]["body"] == signed.body


def test_data_upload_max_memory_size_is_413(
    client: Any, server: tuple[str, str], calls: list[dict[str, Any]]
) -> None:
    """A body above DATA_UPLOAD_MAX_MEMORY_SIZE maps RequestDataTooBig to 413 (G7)."""
    with override_settings(DATA_UPLOAD_MAX_MEMORY_SIZE=100):
        response = post(client, sign(server[1], "/webhooks/sync"))
    assert_problem(response, 413, Reason.BODY_TOO_LARGE)
    assert calls == []


def test_chunked_body(client: Any, server: tuple[str, str], calls: list[dict[str, Any]]) -> None:
    """ASGI reassembles a chunked body; WSGI Django sees none: digest_mismatch, never a pass."""
    signed = sign(server[1], "/webhooks/async", components=NO_LENGTH)
    response = client.post(
        signed.path,
        content=chunks(signed.body, 200),
        headers=wire_headers(signed, drop=("content-length",)),
    )
    if server[0] == "asgi":
        assert response.status_code == 200, response.text
        assert calls[0]["body"] == signed.body
    else:
        assert_problem(response, 401, Reason.DIGEST_MISMATCH)
        assert calls == []


def test_split_signature_lines_verify(
    client: Any, server: tuple[str, str], calls: list[dict[str, Any]]
) -> None:
    """Signature fields over two lines verify (joined by WSGI, kept apart by ASGI) (G10)."""
    signed = sign(server[1], "/webhooks/sync")
    extra = [
        ("signature-input", 'sig2=("@method");created=1700000000;keyid="nobody"'),
        ("signature", "sig2=:AAAA:"),
    ]
    response = client.post(
        signed.path, content=signed.body, headers=[*wire_headers(signed), *extra]
    )
    assert response.status_code == 200, response.text
    assert len(calls) == 1


def test_raw_path_is_signed_path(server: tuple[str, str], calls: list[dict[str, Any]]) -> None:
    """@path is the raw target (RAW_URI / raw_path), not the decoded path_info (G11)."""
    encoded = "/webhooks/%73ync"
    signed = sign(server[1], encoded)
    status, body, _ = raw_request(server[1], "POST", encoded, wire_headers(signed), signed.body)
    assert status == 200, body
    assert len(calls) == 1


@pytest.mark.parametrize("path", ["/webhooks/sync", "/decorated/async"])
@pytest.mark.parametrize(
    ("sent", "signed_as", "status"),
    [("post", "POST", 401), ("POST", "post", 401), ("post", "post", 200)],
)
def test_method_is_verified_as_received(
    server: tuple[str, str],
    calls: list[dict[str, Any]],
    path: str,
    sent: str,
    signed_as: str,
    status: int,
) -> None:
    """The verifier gets the method as sent (WSGI REQUEST_METHOD, ASGI scope), not Django's
    upper-cased request.method (B19)."""
    signed = sign(server[1], path, method=signed_as)
    answer, body, _ = raw_request(server[1], sent, path, wire_headers(signed), signed.body)
    assert answer == status, body
    if status == 401:
        assert json.loads(body)["detail"] == "bad_signature"
    assert len(calls) == (1 if status == 200 else 0)


def test_disconnect_mid_body_under_wsgi(
    calls: list[dict[str, Any]], security_log: LogWaiter
) -> None:
    """A WSGI client leaving mid-body gets no verification and no view call (G2)."""
    with serve("wsgi") as url:
        signed = sign(url, "/webhooks/sync")
        send_partial_then_close(url, signed.path, wire_headers(signed))
        security_log.wait_for("incomplete_body")
    assert django_settings.COUNTING.calls == 0
    assert calls == []


@pytest.mark.parametrize("kind", ["wsgi", "asgi"])
@pytest.mark.parametrize("path", VIEWS)
def test_body_shorter_than_content_length_is_400(
    kind: str, path: str, calls: list[dict[str, Any]]
) -> None:
    """Middleware and decorator answer a body shorter than its Content-Length 400 incomplete_body."""
    if kind == "asgi":
        status, headers, body = short_body_asgi(ASGIHandler(), path)
    else:
        status, headers, body = short_body_wsgi(WSGIHandler(), path)
    assert status == 400
    assert headers["content-type"].startswith("application/problem+json")
    assert json.loads(body)["detail"] == "incomplete_body"
    assert django_settings.COUNTING.calls == 0
    assert calls == []


def test_wsgiref_without_raw_uri(calls: list[dict[str, Any]]) -> None:
    """Under wsgiref (no RAW_URI/REQUEST_URI) the path is re-encoded from PATH_INFO."""
    with serve("wsgiref") as url, httpx.Client(base_url=url) as c:
        response = post(c, sign(url, "/decorated/sync"))
    assert response.status_code == 200, response.text
    assert len(calls) == 1


@pytest.mark.parametrize("kind", ["wsgi", "asgi"])
def test_post_read_before_verification_fails_closed(
    kind: str, calls: list[dict[str, Any]], security_log: LogWaiter
) -> None:
    """Middleware that read request.POST first (RawPostDataException) gives 500 (G6)."""
    middleware = ["django_settings.ReadPostMiddleware", *django_settings.MIDDLEWARE]
    boundary = "xyz"
    body = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="a"\r\n\r\n1\r\n--{boundary}--\r\n'
    )
    with override_settings(MIDDLEWARE=middleware), serve(kind) as url, httpx.Client() as c:
        signed = sign_webhook(
            body.encode(),
            key=SIGNING_KEY,
            url=url + "/webhooks/sync",
            headers=[("content-type", f"multipart/form-data; boundary={boundary}")],
        )
        headers = [(k, v) for k, v in wire_headers(signed) if k != "content-type"]
        headers.append(("content-type", f"multipart/form-data; boundary={boundary}"))
        response = c.post(url + signed.path, content=signed.body, headers=headers)
    assert_problem(response, 500, "configuration_error")
    assert "POST" not in response.text
    assert "request.POST" in security_log.wait_for("configuration_error").getMessage()
    assert calls == []


@pytest.mark.parametrize("kind", ["wsgi", "asgi"])
@pytest.mark.parametrize("path", ["/webhooks/sync", "/decorated/async"])
def test_verifier_crash_fails_closed(kind: str, path: str, calls: list[dict[str, Any]]) -> None:
    """An exception inside the verifier gives 500 internal_error; the view never runs (G13)."""
    config = {"VERIFIER": "django_settings:exploding", "PATHS": ["/webhooks/*"]}
    with override_settings(UPVEST_VERIFY=config), serve(kind) as url, httpx.Client() as c:
        signed = sign(url, path)
        response = c.post(url + signed.path, content=signed.body, headers=wire_headers(signed))
    assert_problem(response, 500, "internal_error")
    assert "boom" not in response.text
    assert calls == []


def test_jwks_and_public_url_settings(calls: list[dict[str, Any]]) -> None:
    """JWKS and PUBLIC_URL from settings: the URL Upvest called is rebuilt (ASGI)."""
    config = {
        "JWKS": json.dumps(make_jwks(SIGNING_KEY)),
        "PUBLIC_URL": "https://hooks.example.com/dj",
        "PATHS": ["/webhooks/*"],
    }
    with override_settings(UPVEST_VERIFY=config), serve("asgi") as url, httpx.Client() as c:
        signed = sign_webhook(
            sample_events(),
            key=SIGNING_KEY,
            url="https://hooks.example.com/dj/webhooks/sync",
            components=["@method", "@scheme", "@authority", "@path", "digest"],
        )
        response = c.post(url + "/webhooks/sync", content=signed.body, headers=wire_headers(signed))
    assert response.status_code == 200, response.text
    assert len(calls) == 1


def test_settings_are_read_once_and_reset_on_change() -> None:
    """get_settings() is cached and rebuilt after UPVEST_VERIFY changes."""
    first = get_settings()
    assert get_settings() is first
    with override_settings(UPVEST_VERIFY={"JWKS": make_jwks(SIGNING_KEY)}):
        assert get_settings() is not first
    assert get_settings().verifier is django_settings.COUNTING


def test_middleware_refuses_bad_settings() -> None:
    """The middleware raises ConfigurationError at start-up for unusable settings."""
    with override_settings(UPVEST_VERIFY={"PATHS": ["/x"]}), pytest.raises(ConfigurationError):
        UpvestWebhookMiddleware(lambda request: None)


# --------------------------------------------------------------------------- system checks


@pytest.mark.parametrize(
    ("value", "code"),
    [
        (None, "E001"),
        (["JWKS"], "E001"),
        ({"JWKS": {"keys": []}, "SKWE": 1}, "E002"),
        ({}, "E003"),
        ({"JWKS": {"keys": []}, "JWKS_URL": "https://x/jwks"}, "E003"),
        ({"JWKS": {"keys": []}}, "E004"),
        ({"JWKS": "/no/such/file.json"}, "E004"),
        ({"VERIFIER": "django_settings:nothing_here"}, "E004"),
        ({"JWKS": "{}", "DIALECT": "v7"}, "E005"),
        ({"VERIFIER": "django_settings:exploding", "SKEW": 5}, "E005"),
        ({"VERIFIER": "django_settings:exploding", "PATHS": ["no-slash"]}, "E006"),
        ({"VERIFIER": "django_settings:exploding", "TRUSTED_PROXIES": ["x"]}, "E007"),
    ],
)
def test_system_checks_report_bad_settings(value: Any, code: str) -> None:
    """Each kind of bad UPVEST_VERIFY setting yields its upvest_verify.E00x error."""
    overrides: dict[str, Any] = {"UPVEST_VERIFY": value}
    with override_settings(**overrides):
        ids = [m.id for m in check_settings()]
    assert f"upvest_verify.{code}" in ids


def test_system_checks_pass_and_warn() -> None:
    """Valid settings produce no error; a small or unlimited DATA_UPLOAD_MAX_MEMORY_SIZE warns."""
    assert check_settings() == []
    with override_settings(DATA_UPLOAD_MAX_MEMORY_SIZE=1024):
        assert [m.id for m in check_settings()] == ["upvest_verify.W001"]
    with override_settings(DATA_UPLOAD_MAX_MEMORY_SIZE=None):
        assert [m.id for m in check_settings()] == ["upvest_verify.W002"]


def test_system_checks_are_registered() -> None:
    """The app config registers the checks with Django's framework (security tag)."""
    with override_settings(UPVEST_VERIFY={}):
        ids = [m.id for m in checks.run_checks(tags=[checks.Tags.security])]
    assert "upvest_verify.E003" in ids
