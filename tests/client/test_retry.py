"""Retries: which outcomes, how long to wait, the bounds; 429, 5xx and lost connections.

Upvest's emulator answers neither 429 nor 502-504, so these tests script the
answers with ``httpx.MockTransport``; waits are recorded, never slept.
"""

from __future__ import annotations

import email.utils
from typing import Any

import pytest

httpx = pytest.importorskip("httpx", reason="the management client needs the [client] extra")

from upvest_verify.client import (  # noqa: E402
    NotFound,
    RateLimited,
    RetryPolicy,
    ServerError,
    UpvestConnectionError,
    Webhook,
)
from upvest_verify.client._retry import parse_retry_after, retry_delay  # noqa: E402
from upvest_verify.errors import ConfigurationError  # noqa: E402

from .client_support import (  # noqa: E402
    Driver,
    ScriptedUpvest,
    Sleeps,
    json_response,
    problem,
    webhook_doc,
)

POLICY = RetryPolicy(jitter=False)


@pytest.mark.parametrize(
    ("method", "status", "attempt", "expected"),
    [
        ("POST", 429, 1, 0.5),
        ("PATCH", 429, 2, 1.0),
        ("GET", 503, 1, 0.5),
        ("GET", 502, 2, 1.0),
        ("DELETE", 504, 3, 2.0),
        ("GET", None, 1, 0.5),  # connection error
        ("DELETE", None, 2, 1.0),
        ("POST", 503, 1, None),
        ("PATCH", 502, 1, None),
        ("POST", None, 1, None),
        ("GET", 500, 1, None),
        ("GET", 400, 1, None),
        ("GET", 401, 1, None),
        ("GET", 404, 1, None),
        ("GET", 503, 4, None),  # attempts used up
    ],
)
def test_retry_delay_rules(method: str, status: int | None, attempt: int, expected: Any) -> None:
    """429 on every method; 502-504 and lost connections on GET/DELETE only; doubling waits."""
    got = retry_delay(POLICY, attempt=attempt, method=method, status=status, elapsed=0.0)
    assert got == expected


def test_retry_delay_bounds_and_jitter() -> None:
    """max_backoff caps a wait, Retry-After lengthens it, max_total and max_retry_after end it."""
    policy = RetryPolicy(max_attempts=20, backoff=1, max_backoff=4, jitter=False, max_total=30)
    assert retry_delay(policy, attempt=10, method="GET", status=503, elapsed=0) == 4
    assert retry_delay(policy, attempt=1, method="GET", status=429, elapsed=0, retry_after=7) == 7
    assert retry_delay(policy, attempt=1, method="GET", status=503, elapsed=29.5) is None
    assert (
        retry_delay(policy, attempt=1, method="GET", status=429, elapsed=0, retry_after=61) is None
    )
    jittered = RetryPolicy(backoff=2)
    low = retry_delay(jittered, attempt=1, method="GET", status=503, elapsed=0, random=0.0)
    high = retry_delay(jittered, attempt=1, method="GET", status=503, elapsed=0, random=0.999)
    assert low == 1.0
    assert high is not None
    assert 1.99 < high < 2.0
    assert RetryPolicy.off().max_attempts == 1
    with pytest.raises(ConfigurationError):
        RetryPolicy(max_attempts=0)
    with pytest.raises(ConfigurationError):
        RetryPolicy(backoff=-1)


def test_parse_retry_after() -> None:
    """Delay-seconds and HTTP-dates (RFC 9110 §10.2.3); anything else is ignored."""
    now = 1_700_000_000.0
    assert parse_retry_after("3", now) == 3.0
    assert parse_retry_after(" 120 ", now) == 120.0
    date = email.utils.formatdate(now + 30, usegmt=True)
    assert parse_retry_after(date, now) == 30.0
    assert parse_retry_after(email.utils.formatdate(now - 30, usegmt=True), now) == 0.0
    for junk in (None, "", "soon", "-1", "1.5"):
        assert parse_retry_after(junk, now) is None


def _webhooks(driver: Driver, server: ScriptedUpvest, sleeps: Sleeps, **kwargs: Any) -> Any:
    return driver.scripted(server, sleep=sleeps, **kwargs)


def _nonce(request: Any) -> str:
    return str(request.headers["signature-input"]).rsplit('nonce="', 1)[1].rstrip('"')


def test_429_with_retry_after_is_retried_on_post(driver: Driver) -> None:
    """A create answered 429 Retry-After: 3 waits 3 s and is sent again, signed afresh."""
    server = ScriptedUpvest(
        [problem(429, "Too Many Requests", **{"retry-after": "3"})],
        default=lambda request: json_response(201, webhook_doc()),
    )
    sleeps = Sleeps()
    with _webhooks(driver, server, sleeps) as client:
        webhook = driver.run(client.webhooks.create(title="t", url="https://a.example/h"))
    assert isinstance(webhook, Webhook)
    assert sleeps.waits == [3.0]
    first, second = server.api_requests()
    assert (first.method, second.method) == ("POST", "POST")
    assert first.content == second.content
    assert _nonce(first) != _nonce(second)
    assert first.headers["signature"] != second.headers["signature"]


def test_503_on_get_is_retried(driver: Driver) -> None:
    """GET answered 503, 503, then 200: two doubling waits, three signed attempts."""
    server = ScriptedUpvest(
        [problem(503, "Service Unavailable"), problem(503, "Service Unavailable")],
        default=lambda request: json_response(200, webhook_doc()),
    )
    sleeps = Sleeps()
    with _webhooks(driver, server, sleeps) as client:
        webhook = driver.run(client.webhooks.get(webhook_doc()["id"]))
    assert webhook.id == webhook_doc()["id"]
    assert sleeps.waits == [0.5, 1.0]
    attempts = server.api_requests()
    assert len(attempts) == 3
    assert len({_nonce(r) for r in attempts}) == 3
    assert server.tokens_issued == 1


def test_503_on_post_is_not_retried(driver: Driver) -> None:
    """A create answered 503 may have been processed: raised at once, sent once."""
    server = ScriptedUpvest([problem(503, "Service Unavailable")])
    sleeps = Sleeps()
    with _webhooks(driver, server, sleeps) as client, pytest.raises(ServerError) as info:
        driver.run(client.webhooks.create(title="t", url="https://a.example/h"))
    assert info.value.status == 503
    assert sleeps.waits == []
    assert len(server.api_requests()) == 1


@pytest.mark.parametrize("status", [502, 504])
def test_gateway_errors_on_delete_are_retried(driver: Driver, status: int) -> None:
    """DELETE is idempotent: 502 and 504 are retried."""
    server = ScriptedUpvest(
        [problem(status, "gateway")], default=lambda request: httpx.Response(204)
    )
    sleeps = Sleeps()
    with _webhooks(driver, server, sleeps) as client:
        assert driver.run(client.webhooks.delete(webhook_doc()["id"])) is None
    assert sleeps.waits == [0.5]
    assert [r.method for r in server.api_requests()] == ["DELETE", "DELETE"]


def test_connection_error_on_get_is_retried(driver: Driver) -> None:
    """A lost connection on GET is retried."""
    server = ScriptedUpvest(
        [httpx.ConnectError("connection refused"), httpx.ReadTimeout("slow")],
        default=lambda request: json_response(200, {"keys": []}),
    )
    sleeps = Sleeps()
    with _webhooks(driver, server, sleeps) as client:
        result = driver.run(client.fetch_jwks())
    assert result.body == b'{"keys": []}'
    assert sleeps.waits == [0.5, 1.0]


def test_connection_error_on_post_is_not_retried(driver: Driver) -> None:
    """A lost connection on a write raises UpvestConnectionError at once, cause kept."""
    server = ScriptedUpvest([httpx.ReadError("connection reset")])
    sleeps = Sleeps()
    with _webhooks(driver, server, sleeps) as client, pytest.raises(UpvestConnectionError) as info:
        driver.run(client.webhooks.test(webhook_doc()["id"]))
    assert isinstance(info.value.__cause__, httpx.ReadError)
    assert (info.value.method, info.value.path) == ("POST", f"/webhooks/{webhook_doc()['id']}/test")
    assert "connection reset" in str(info.value)
    assert sleeps.waits == []


def test_attempts_are_bounded(driver: Driver) -> None:
    """A GET that keeps failing is sent max_attempts times, then its last error is raised."""
    server = ScriptedUpvest(default=lambda request: problem(503, "down"))
    sleeps = Sleeps()
    with _webhooks(driver, server, sleeps) as client, pytest.raises(ServerError):
        driver.run(client.webhooks.list())
    assert len(server.api_requests()) == 4
    assert sleeps.waits == [0.5, 1.0, 2.0]


def test_total_time_is_bounded(driver: Driver) -> None:
    """A Retry-After that would end past max_total is not waited for."""
    server = ScriptedUpvest(default=lambda request: problem(429, "slow", **{"retry-after": "20"}))
    sleeps = Sleeps()
    policy = RetryPolicy(jitter=False, max_total=10)
    with (
        _webhooks(driver, server, sleeps, retry=policy) as client,
        pytest.raises(RateLimited) as info,
    ):
        driver.run(client.webhooks.list())
    assert info.value.retry_after == 20.0
    assert sleeps.waits == []
    assert len(server.api_requests()) == 1


def test_retries_off_with_one_setting(driver: Driver) -> None:
    """retry=None: the first 429 is raised."""
    server = ScriptedUpvest([problem(429, "slow", **{"retry-after": "1"})])
    sleeps = Sleeps()
    with _webhooks(driver, server, sleeps, retry=None) as client, pytest.raises(RateLimited):
        driver.run(client.webhooks.list())
    assert sleeps.waits == []
    assert len(server.api_requests()) == 1


def test_429_on_the_token_request_is_retried(driver: Driver) -> None:
    """The token request answered 429: the call waits and tries again, token included."""
    server = ScriptedUpvest(
        token_replies=[problem(429, "slow", **{"retry-after": "2"})],
        default=lambda request: json_response(200, webhook_doc()),
    )
    sleeps = Sleeps()
    with _webhooks(driver, server, sleeps) as client:
        driver.run(client.webhooks.get(webhook_doc()["id"]))
    assert sleeps.waits == [2.0]
    assert [r.url.path for r in server.requests] == [
        "/auth/token",
        "/auth/token",
        f"/webhooks/{webhook_doc()['id']}",
    ]


def test_errors_that_are_final_are_not_retried(driver: Driver) -> None:
    """404 is final on any method."""
    server = ScriptedUpvest([problem(404, "Webhook not found")])
    sleeps = Sleeps()
    with _webhooks(driver, server, sleeps) as client, pytest.raises(NotFound):
        driver.run(client.webhooks.get(webhook_doc()["id"]))
    assert sleeps.waits == []


def test_lost_connection_on_the_token_request(driver: Driver) -> None:
    """The token request's connection drops: a GET retries (a new token request), a POST not."""
    server = ScriptedUpvest(
        token_replies=[httpx.ConnectError("refused")],
        default=lambda request: json_response(200, webhook_doc()),
    )
    sleeps = Sleeps()
    with _webhooks(driver, server, sleeps) as client:
        driver.run(client.webhooks.get(webhook_doc()["id"]))
        assert sleeps.waits == [0.5]
        assert [r.url.path for r in server.requests][:2] == ["/auth/token", "/auth/token"]
        server.token_replies.append(httpx.ConnectError("refused"))
        with pytest.raises(UpvestConnectionError, match="refused"):
            driver.run(client.webhooks.create(title="t", url="https://a.example/h"))
        # the abandoned token request left nothing behind: the next write gets a token
        driver.run(client.webhooks.update(webhook_doc()["id"], title="u"))
    assert server.tokens_issued == 2


def test_retries_are_logged_without_secrets(
    driver: Driver, caplog: pytest.LogCaptureFixture
) -> None:
    """Each retry is logged with the call, the outcome and the wait."""
    server = ScriptedUpvest(
        [problem(503, "down")], default=lambda request: json_response(200, webhook_doc())
    )
    caplog.set_level("INFO", logger="upvest_verify.client")
    with _webhooks(driver, server, Sleeps()) as client:
        driver.run(client.webhooks.get(webhook_doc()["id"]))
    [record] = [r for r in caplog.records if r.name == "upvest_verify.client"]
    assert record.getMessage() == (
        f"GET /webhooks/{webhook_doc()['id']}: HTTP 503, attempt 2 of 4 in 0.50 s"
    )
