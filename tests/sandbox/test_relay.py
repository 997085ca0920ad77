"""The ``/events-acceptor-service/`` relay, driven the way Upvest's signing proxy drives it."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

pytest.importorskip("starlette", reason="the sandbox extra (starlette) is not installed")
pytest.importorskip("uvicorn", reason="the sandbox extra (uvicorn) is not installed")
httpx = pytest.importorskip("httpx", reason="the sandbox extra (httpx) is not installed")

from sandbox_support import ApiClient, assert_problem  # noqa: E402

from upvest_verify import Verifier  # noqa: E402
from upvest_verify.sandbox import Sandbox  # noqa: E402

RELAY = "/events-acceptor-service"


@pytest.fixture
def relay_api() -> Iterator[ApiClient]:
    """A client of an emulator that refuses plain-HTTP subscriptions, with short polls."""
    with Sandbox(time_scale=0.01, relay_poll_timeout=0.05) as sandbox:
        client = ApiClient(sandbox)
        yield client
        client.close()


def test_tunnel_flow(relay_api: ApiClient) -> None:
    """Health, open, subscribe, enable, poll, verify, delete: the proxy's tunnel sequence."""
    api, sb = relay_api, relay_api.sandbox
    assert api.http.get(sb.base_url + RELAY + "/health").status_code == 200  # unsigned
    token = api.token("webhooks:admin")
    opened = api.json("POST", RELAY + "/endpoints", "", token=token)  # Go marshals "" here
    assert opened.status_code == 201
    endpoint = opened.json()
    assert endpoint["url"].startswith("http://localhost:")
    request = {
        "title": "http signature webhook abcdefgh",
        "url": endpoint["url"],
        "type": ["ALL"],
        "config": {"delay": "1s", "max_package_size": 12400},
    }
    created = api.json("POST", "/webhooks", request, token=token)
    assert created.status_code == 201, created.text  # the relay URL passes without allow_http
    patched = api.json(
        "PATCH", f"/webhooks/{created.json()['id']}", {**request, "enabled": True}, token=token
    )
    assert patched.json()["enabled"] is True
    [event] = sb.emit("ORDER.FILLED")
    sb.wait_for_deliveries(1)
    items = api.send("GET", f"{RELAY}/endpoints/{endpoint['id']}", token=token).json()
    [item] = items
    assert set(item) == {"headers", "payload", "created_at"}
    assert item["headers"]["Content-Type"] == ["application/json"]
    headers = [(name, value) for name, values in item["headers"].items() for value in values]
    verified = Verifier(sb.key_set()).verify(
        "POST", endpoint["url"], headers, item["payload"].encode()
    )
    assert [e.id for e in verified.events] == [event["id"]]
    assert json.loads(item["payload"])["payload"][0]["webhook_id"] == created.json()["id"]
    # Polling again finds nothing new (after the short poll timeout).
    assert api.send("GET", f"{RELAY}/endpoints/{endpoint['id']}", token=token).json() == []
    closed = api.send("DELETE", f"{RELAY}/endpoints/{endpoint['id']}", token=token)
    assert closed.status_code == 204
    assert_problem(api.send("GET", f"{RELAY}/endpoints/{endpoint['id']}", token=token), 404)


def test_relay_needs_admin_and_owner(relay_api: ApiClient) -> None:
    """Endpoints need a signed ``webhooks:admin`` call, and belong to their tenant."""
    api, sb = relay_api, relay_api.sandbox
    assert_problem(api.send("POST", RELAY + "/endpoints", token=api.token("webhooks:read")), 403)
    assert_problem(api.http.post(sb.base_url + RELAY + "/endpoints"), 400)
    endpoint = api.send("POST", RELAY + "/endpoints", token=api.token()).json()
    other = ApiClient(sb, sb.add_tenant())
    path = f"{RELAY}/endpoints/{endpoint['id']}"
    assert_problem(other.send("GET", path, token=other.token()), 404)
    assert_problem(other.send("DELETE", path, token=other.token()), 404)
    other.close()
    assert_problem(api.http.post(sb.base_url + RELAY + "/inbox/unknown", content=b"{}"), 404)
