"""The ``/webhooks`` endpoints over real HTTP against the emulator, sync and async."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from typing import Any

import pytest

pytest.importorskip("httpx", reason="the management client needs the [client] extra (httpx)")
pytest.importorskip("starlette", reason="the emulator needs the [sandbox] extra")
pytest.importorskip("uvicorn", reason="the emulator needs the [sandbox] extra")

from upvest_verify.client import (
    BadRequest,
    Forbidden,
    NotFound,
    UpvestAPIError,
    Webhook,
    WebhookPage,
)

from .client_support import Driver, Recorder

URL = "https://tenant.example/webhooks/upvest"


def _create(driver: Driver, client: Any, title: str = "User webhook", **kwargs: Any) -> Webhook:
    kwargs.setdefault("url", URL)
    webhook = driver.run(client.webhooks.create(title=title, **kwargs))
    assert isinstance(webhook, Webhook)
    return webhook


def test_create_returns_a_disabled_webhook(driver: Driver, sandbox: Any, tenant: Any) -> None:
    """POST /webhooks sends exactly the given fields and answers 201 with a disabled webhook."""
    recorder = Recorder()
    with driver.client(sandbox.base_url, tenant, recorder) as client:
        webhook = _create(driver, client, types=["USER"], delay="2s", max_package_size=51200)
    post = recorder.api_requests()[-1]
    assert (post.method, post.path, post.status) == ("POST", "/webhooks", 201)
    assert post.headers["content-type"] == "application/json"
    assert json.loads(post.body) == {
        "title": "User webhook",
        "url": URL,
        "type": ["USER"],
        "config": {"delay": "2s", "max_package_size": 51200},
    }
    assert webhook.enabled is False
    assert (webhook.title, webhook.url, webhook.types) == ("User webhook", URL, ("USER",))
    assert (webhook.delay, webhook.max_package_size) == ("2s", 51200)
    assert uuid.UUID(webhook.id)
    for stamp in (webhook.created_at, webhook.updated_at):
        assert stamp.tzinfo is not None
        assert stamp.utcoffset() == dt.timedelta(0)
    assert webhook.extras == {}


def test_lifecycle_enable_disable_get_update_test_delete(
    driver: Driver, sandbox: Any, tenant: Any
) -> None:
    """Every single-webhook endpoint, with the status and body each one sends."""
    recorder = Recorder()
    with driver.client(sandbox.base_url, tenant, recorder) as client:
        created = _create(driver, client, types=["USER", "ORDER"])
        enabled = driver.run(client.webhooks.enable(created.id))
        assert enabled.enabled is True
        disabled = driver.run(client.webhooks.disable(created.id))
        assert disabled.enabled is False
        fetched = driver.run(client.webhooks.get(created.id))
        assert fetched == disabled
        updated = driver.run(client.webhooks.update(created.id, title="Users"))
        assert updated.title == "Users"
        assert (updated.url, updated.types, updated.id) == (URL, ("USER", "ORDER"), created.id)
        assert updated.updated_at >= created.created_at
        assert driver.run(client.webhooks.test(created.id)) is None
        assert driver.run(client.webhooks.delete(created.id)) is None
        with pytest.raises(NotFound) as info:
            driver.run(client.webhooks.get(created.id))

    calls = [
        (s.method, s.path.replace(created.id, "{id}"), s.status) for s in recorder.api_requests()
    ]
    assert calls == [
        ("POST", "/webhooks", 201),
        ("PATCH", "/webhooks/{id}", 200),
        ("PATCH", "/webhooks/{id}", 200),
        ("GET", "/webhooks/{id}", 200),
        ("PATCH", "/webhooks/{id}", 200),
        ("POST", "/webhooks/{id}/test", 202),
        ("DELETE", "/webhooks/{id}", 204),
        ("GET", "/webhooks/{id}", 404),
    ]
    patches = [json.loads(s.body) for s in recorder.api_requests() if s.method == "PATCH"]
    assert patches == [{"enabled": True}, {"enabled": False}, {"title": "Users"}]
    for seen in recorder.api_requests():
        if seen.method in ("GET", "DELETE") or seen.path.endswith("/test"):
            assert seen.body == b""
            assert "content-digest" not in seen.headers
    error = info.value
    assert (error.status, error.detail, error.type) == (404, "Webhook not found", "not_found")
    assert error.request_id is not None
    assert uuid.UUID(error.request_id)
    assert error.method == "GET"
    assert error.path == f"/webhooks/{created.id}"


def test_update_sends_config_fields_alone(driver: Driver, sandbox: Any, tenant: Any) -> None:
    """A PATCH of one config field sends that field only; the other keeps its value."""
    recorder = Recorder()
    with driver.client(sandbox.base_url, tenant, recorder) as client:
        created = _create(driver, client, delay="3s", max_package_size=2048)
        updated = driver.run(client.webhooks.update(created.id, delay="10s"))
    assert json.loads(recorder.api_requests()[-1].body) == {"config": {"delay": "10s"}}
    assert (updated.delay, updated.max_package_size) == ("10s", 2048)


def test_missing_webhook_on_every_id_endpoint(driver: Driver, sandbox: Any, tenant: Any) -> None:
    """get, update, delete and test of an unknown id raise NotFound (404)."""
    missing = str(uuid.uuid4())
    with driver.client(sandbox.base_url, tenant) as client:
        calls = [
            lambda: client.webhooks.get(missing),
            lambda: client.webhooks.update(missing, title="x"),
            lambda: client.webhooks.delete(missing),
            lambda: client.webhooks.test(missing),
        ]
        for call in calls:
            with pytest.raises(NotFound) as info:
                driver.run(call())
            assert info.value.status == 404


def test_list_sorts_orders_and_pages(driver: Driver, sandbox: Any, tenant: Any) -> None:
    """sort/order/offset/limit reach the API; .data and .meta come back."""
    recorder = Recorder()
    titles = ["delta", "alpha", "echo", "charlie", "bravo"]
    with driver.client(sandbox.base_url, tenant, recorder) as client:
        for title in titles:
            _create(driver, client, title=title)
        page = driver.run(client.webhooks.list(sort="title", order="DESC"))
        tail = driver.run(client.webhooks.list(sort="title", order="ASC", offset=3, limit=10))
        empty = driver.run(client.webhooks.list(offset=10))
    assert isinstance(page, WebhookPage)
    assert [w.title for w in page.data] == sorted(titles, reverse=True)
    assert [w.title for w in page] == [w.title for w in page.data]
    assert (page.meta.count, page.meta.total_count) == (5, 5)
    assert (page.meta.sort, page.meta.order, page.meta.offset, page.meta.limit) == (
        "title",
        "DESC",
        0,
        100,
    )
    assert [w.title for w in tail.data] == ["delta", "echo"]
    assert (tail.meta.offset, tail.meta.limit, tail.meta.count) == (3, 10, 2)
    assert (len(empty), empty.meta.total_count) == (0, 5)
    queries = [s.query for s in recorder.api_requests() if s.method == "GET"]
    assert queries == [
        "sort=title&order=DESC&offset=0&limit=100",
        "sort=title&order=ASC&offset=3&limit=10",
        "offset=10&limit=100",
    ]


def test_iter_follows_every_page(driver: Driver, sandbox: Any, tenant: Any) -> None:
    """iter() walks page after page until total_count, one request per page."""
    recorder = Recorder()
    with driver.client(sandbox.base_url, tenant, recorder) as client:
        created = [_create(driver, client, title=f"hook {i}").id for i in range(7)]
        walked = driver.collect(client.webhooks.iter(sort="created_at", page_size=3))
        exact = driver.collect(client.webhooks.iter(page_size=7))
    assert [w.id for w in walked] == created
    assert [w.id for w in exact] == created
    pages = [s.query for s in recorder.api_requests() if s.method == "GET"]
    assert pages == [
        "sort=created_at&offset=0&limit=3",
        "sort=created_at&offset=3&limit=3",
        "sort=created_at&offset=6&limit=3",
        "offset=0&limit=7",
    ]


def test_iter_of_no_webhooks(driver: Driver, sandbox: Any, tenant: Any) -> None:
    """A tenant without webhooks: one request, nothing yielded."""
    recorder = Recorder()
    with driver.client(sandbox.base_url, tenant, recorder) as client:
        assert driver.collect(client.webhooks.iter()) == []
    assert len(recorder.api_requests()) == 1


def test_extras_reach_upvest_and_unknown_response_fields_are_kept(
    driver: Driver, sandbox: Any, tenant: Any
) -> None:
    """extras are sent as given; a response field the client does not know is kept."""
    recorder = Recorder()
    with driver.client(sandbox.base_url, tenant, recorder) as client:
        webhook = _create(driver, client, types=["ALL"], extras={"exclude_type": ["USER"]})
    assert json.loads(recorder.api_requests()[-1].body)["exclude_type"] == ["USER"]
    assert webhook.extras == {"exclude_type": ["USER"]}


def test_upvest_validation_error_is_a_bad_request(
    driver: Driver, sandbox: Any, tenant: Any
) -> None:
    """A field Upvest refuses (passed through extras) comes back as BadRequest (400)."""
    with driver.client(sandbox.base_url, tenant) as client, pytest.raises(BadRequest) as info:
        _create(driver, client, extras={"colour": "red"})
    error = info.value
    assert isinstance(error, UpvestAPIError)
    assert error.status == 400
    assert error.detail == "unknown fields: colour"
    assert error.request_id is not None
    assert "unknown fields: colour" in str(error)


def test_write_without_admin_scope_is_forbidden(driver: Driver, sandbox: Any, tenant: Any) -> None:
    """With one read-only scope set configured, reads work and writes raise Forbidden (403)."""
    recorder = Recorder()
    with driver.client(sandbox.base_url, tenant, recorder, scopes="webhooks:read") as client:
        assert len(driver.run(client.webhooks.list())) == 0
        with pytest.raises(Forbidden) as info:
            _create(driver, client)
    assert info.value.status == 403
    assert "webhooks:admin" in (info.value.detail or "")
    scopes = [s.form["scope"] for s in recorder.token_requests()]
    assert scopes == [["webhooks:read"]]
