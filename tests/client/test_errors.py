"""Error mapping: problem documents, non-JSON bodies, bad success bodies, the class tree."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

httpx = pytest.importorskip("httpx", reason="the management client needs the [client] extra")

from upvest_verify.client import (  # noqa: E402
    BadRequest,
    Forbidden,
    InvalidTitle,
    NotFound,
    RateLimited,
    ServerError,
    Unauthorised,
    UnexpectedResponse,
    UpvestAPIError,
    UpvestConnectionError,
    UpvestError,
    WebhookValidationError,
)
from upvest_verify.client._api import error_from_response  # noqa: E402

from .client_support import (  # noqa: E402
    Driver,
    FakeTenant,
    ScriptedUpvest,
    json_response,
    problem,
)


def _response(status: int, content: bytes, **headers: str) -> Any:
    request = httpx.Request("GET", "https://sandbox.upvest.co/webhooks")
    return httpx.Response(status, content=content, headers=headers, request=request)


@pytest.mark.parametrize(
    ("status", "cls"),
    [
        (400, BadRequest),
        (401, Unauthorised),
        (403, Forbidden),
        (404, NotFound),
        (429, RateLimited),
        (500, ServerError),
        (502, ServerError),
        (503, ServerError),
        (504, ServerError),
        (406, UpvestAPIError),
        (409, UpvestAPIError),
        (422, UpvestAPIError),
    ],
)
def test_status_maps_to_a_class_by_meaning(status: int, cls: type[UpvestAPIError]) -> None:
    """Each documented status gives the subclass a caller catches it by."""
    error = error_from_response(
        _response(status, b'{"type":"x","status":%d}' % status), method="GET", path="/w", now=0
    )
    assert type(error) is cls
    assert isinstance(error, UpvestError)
    assert error.status == status


def test_problem_document_members() -> None:
    """type, title, detail, instance and the upvest-request-id header are kept; extras too."""
    request_id = str(uuid.uuid4())
    body = (
        b'{"type":"https://docs.upvest.co/errors/unauthorised","status":401,'
        b'"title":"Unauthorized","detail":"Signature is incorrect","instance":"/webhooks",'
        b'"request_id":"other","hint":42}'
    )
    error = error_from_response(
        _response(401, body, **{"upvest-request-id": request_id}), method="GET", path="/w", now=0
    )
    assert isinstance(error, Unauthorised)
    assert error.type == "https://docs.upvest.co/errors/unauthorised"
    assert (error.title, error.detail, error.instance) == (
        "Unauthorized",
        "Signature is incorrect",
        "/webhooks",
    )
    assert error.request_id == request_id
    assert error.problem["hint"] == 42
    assert str(error) == (
        "GET /w: HTTP 401: Unauthorized - Signature is incorrect "
        f"(type https://docs.upvest.co/errors/unauthorised) [upvest-request-id {request_id}]"
    )


def test_problem_request_id_used_without_the_header() -> None:
    """Without the header, the problem's own request_id is reported."""
    error = error_from_response(
        _response(404, b'{"type":"not_found","status":404,"request_id":"r-1"}'),
        method="GET",
        path="/w",
        now=0,
    )
    assert error.request_id == "r-1"


@pytest.mark.parametrize(
    ("content", "media", "expected"),
    [
        (b"<html><body>502 Bad Gateway</body></html>", "text/html", "text/html body"),
        (b"upstream connect error", "text/plain", "upstream connect error"),
        (b"", "", "Bad Gateway"),
        (b"\xff\xfe garbage", "application/json", "garbage"),
        (b"[1, 2]", "application/json", "[1, 2]"),
    ],
)
def test_non_json_error_bodies_still_give_a_useful_error(
    content: bytes, media: str, expected: str
) -> None:
    """An HTML, text, empty or non-object body: the status line and an excerpt."""
    headers = {"content-type": media} if media else {}
    error = error_from_response(_response(502, content, **headers), method="GET", path="/w", now=0)
    assert isinstance(error, ServerError)
    assert error.detail is None
    assert "HTTP 502" in str(error)
    assert expected in str(error)


def test_long_bodies_are_cut() -> None:
    """An excerpt stays short."""
    error = error_from_response(
        _response(500, b"x" * 100_000, **{"content-type": "text/plain"}),
        method="GET",
        path="/w",
        now=0,
    )
    assert len(str(error)) < 400


def test_server_echoing_the_secret_is_redacted(driver: Driver) -> None:
    """Should the token endpoint echo the client secret, the error shows it blanked out."""
    tenant = FakeTenant()
    server = ScriptedUpvest(
        token_replies=[problem(400, f"bad client_secret {tenant.client_secret}")]
    )
    with driver.scripted(server, tenant=tenant) as client, pytest.raises(BadRequest) as info:
        driver.run(client.webhooks.list())
    assert tenant.client_secret not in str(info.value)
    assert tenant.client_secret not in repr(info.value.problem)
    assert "[redacted]" in str(info.value)


@pytest.mark.parametrize(
    ("reply", "fragment"),
    [
        (lambda: httpx.Response(200, content=b"<html>ok</html>"), "not JSON"),
        (lambda: json_response(200, {"id": "x"}), "webhook has no 'type'"),
        (lambda: json_response(200, [1]), "not a JSON object"),
    ],
)
def test_unreadable_success_is_unexpected_response(
    driver: Driver, reply: Any, fragment: str
) -> None:
    """A 2xx body that is not the documented object raises UnexpectedResponse."""
    server = ScriptedUpvest([reply()])
    with driver.scripted(server) as client, pytest.raises(UnexpectedResponse) as info:
        driver.run(client.webhooks.get("a8eb3540-5a84-40f9-b2bb-7f99f282fc5a"))
    assert info.value.status == 200
    assert fragment in str(info.value)


@pytest.mark.parametrize(
    ("doc", "fragment"),
    [
        ({"access_token": "", "expires_in": 60, "token_type": "bearer", "scope": "s"}, "access"),
        ({"access_token": "t", "expires_in": "60", "token_type": "bearer"}, "expires_in"),
        ({"access_token": "t", "expires_in": 60, "token_type": "mac"}, "bearer"),
    ],
)
def test_unusable_token_response(driver: Driver, doc: Any, fragment: str) -> None:
    """A token answer without a usable token is an UnexpectedResponse; the value is not shown."""
    server = ScriptedUpvest(token_replies=[json_response(200, doc)])
    with driver.scripted(server) as client, pytest.raises(UnexpectedResponse) as info:
        driver.run(client.webhooks.list())
    assert info.value.path == "/auth/token"
    assert fragment in str(info.value)


def test_the_tree() -> None:
    """Validation errors are ValueErrors; API and connection errors are UpvestErrors."""
    assert issubclass(InvalidTitle, WebhookValidationError)
    assert issubclass(WebhookValidationError, ValueError)
    assert not issubclass(WebhookValidationError, UpvestError)
    for cls in (BadRequest, Unauthorised, Forbidden, NotFound, RateLimited, ServerError):
        assert issubclass(cls, UpvestAPIError)
    assert issubclass(UnexpectedResponse, UpvestAPIError)
    assert issubclass(UpvestConnectionError, UpvestError)
    error = InvalidTitle("title", "too long")
    assert (error.field, str(error)) == ("title", "title: too long")
