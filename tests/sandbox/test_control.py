"""The unsigned ``/_sandbox/`` control endpoints, over real HTTP."""

from __future__ import annotations

import asyncio

import pytest

pytest.importorskip("starlette", reason="the sandbox extra (starlette) is not installed")
pytest.importorskip("uvicorn", reason="the sandbox extra (uvicorn) is not installed")
httpx = pytest.importorskip("httpx", reason="the sandbox extra (httpx) is not installed")

from sandbox_support import ApiClient, Recorder, assert_problem  # noqa: E402

from upvest_verify.sandbox import Sandbox, Tenant  # noqa: E402
from upvest_verify.signing import SigningKey  # noqa: E402


def _post(sb: Sandbox, path: str, doc: object = None) -> httpx.Response:
    return httpx.post(sb.base_url + path, json=doc, trust_env=False)


def _get(sb: Sandbox, path: str) -> httpx.Response:
    return httpx.get(sb.base_url + path, trust_env=False)


def test_emit_one_or_many(sb: Sandbox) -> None:
    """``POST /_sandbox/events`` takes one event or a list; a missing object gets a sample."""
    one = _post(sb, "/_sandbox/events", {"type": "ORDER.FILLED"})
    assert one.status_code == 201
    [event] = one.json()
    assert set(event) == {"id", "created_at", "type", "object"}
    assert event["object"]["status"] == "FILLED"
    many = _post(
        sb,
        "/_sandbox/events",
        [
            {"type": "POSITION.UPDATED", "object": {"quantity": "1"}},
            {"type": "NEW_THING.HAPPENED"},
        ],
    )
    assert [e["object"].get("quantity") for e in many.json()] == ["1", None]
    assert many.json()[1]["object"]["status"] == "HAPPENED"


@pytest.mark.parametrize(
    "doc",
    [
        None,
        [],
        {"object": {}},
        {"type": "lowercase.type"},
        {"type": "ORDER.NEW", "object": []},
        {"type": "ORDER.NEW", "created_at": "yesterday"},
        {"type": "ORDER.NEW", "webhook_id": "x"},
    ],
    ids=["empty", "empty-list", "no-type", "bad-type", "bad-object", "bad-time", "extra"],
)
def test_emit_validation(module_sb: Sandbox, doc: object) -> None:
    """Malformed emit requests are 400 problems."""
    assert_problem(_post(module_sb, "/_sandbox/events", doc), 400)


def test_emit_for_another_tenant(sb: Sandbox, receiver: tuple[Recorder, str]) -> None:
    """``?client_id=`` emits for that tenant's subscriptions only; unknown ones are 400."""
    _, origin = receiver
    other = sb.add_tenant()
    theirs = sb.add_webhook(origin + "/theirs", tenant=other)
    sb.add_webhook(origin + "/ours")
    response = httpx.post(
        sb.base_url + "/_sandbox/events",
        params={"client_id": other.client_id},
        json={"type": "USER.CREATED"},
        trust_env=False,
    )
    assert response.status_code == 201
    [delivery] = sb.wait_for_deliveries(1)
    assert delivery.webhook_id == theirs["id"]
    assert delivery.client_id == other.client_id
    assert_problem(
        httpx.post(
            sb.base_url + "/_sandbox/events",
            params={"client_id": "nobody"},
            json={"type": "USER.CREATED"},
            trust_env=False,
        ),
        400,
    )


def test_deliveries_and_tamper(sb: Sandbox, receiver: tuple[Recorder, str]) -> None:
    """Tamper requests spoil the next attempt; deliveries list attempts and status codes."""
    recorder, origin = receiver
    recorder.statuses.append(401)
    hook = sb.add_webhook(origin + "/hook")
    assert _post(sb, "/_sandbox/tamper", {"kind": "signature"}).status_code == 202
    assert_problem(_post(sb, "/_sandbox/tamper", {"kind": "everything"}), 400)
    assert_problem(_post(sb, "/_sandbox/tamper", ["body"]), 400)
    _post(sb, "/_sandbox/events", {"type": "ORDER.NEW"})
    sb.wait_for_deliveries(1)
    listed = _get(sb, f"/_sandbox/deliveries?webhook_id={hook['id']}").json()
    [delivery] = listed
    assert [a["status_code"] for a in delivery["attempts"]] == [401, 200]
    assert [a["tampered"] for a in delivery["attempts"]] == ["signature", None]
    assert delivery["state"] == "delivered"
    assert _get(sb, "/_sandbox/deliveries?webhook_id=other").json() == []


def test_rotate_keys(sb: Sandbox) -> None:
    """``POST /_sandbox/rotate_keys`` publishes a new key; ``overlap: 0`` drops the old."""
    before = _get(sb, "/_sandbox/verify_keys").json()["keys"]
    rotated = _post(sb, "/_sandbox/rotate_keys").json()
    assert [k["kid"] for k in rotated["keys"]] == [before[0]["kid"], rotated["kid"]]
    again = _post(sb, "/_sandbox/rotate_keys", {"overlap": 0}).json()
    assert [k["kid"] for k in _get(sb, "/_sandbox/verify_keys").json()["keys"]] == [again["kid"]]
    assert sb.signing_key.key_id == again["kid"]
    assert_problem(_post(sb, "/_sandbox/rotate_keys", {"overlap": -1}), 400)


def test_tenants_and_their_keys(sb: Sandbox) -> None:
    """The tenant list hands out credentials and a private key that signs accepted calls."""
    [first] = _get(sb, "/_sandbox/tenants").json()
    assert first["client_id"] == sb.tenant.client_id
    created = _post(sb, "/_sandbox/tenants")
    assert created.status_code == 201
    doc = created.json()
    key = SigningKey.from_pem(doc["private_key_pem"], key_id=doc["key_id"])
    client = ApiClient(sb, Tenant(doc["client_id"], doc["client_secret"], key))
    token = client.token()
    assert (
        client.json(
            "POST", "/webhooks", {"title": "t", "url": "https://a.example/h"}, token=token
        ).status_code
        == 201
    )
    client.close()
    [listed] = _get(sb, "/_sandbox/webhooks").json()
    assert listed["client_id"] == doc["client_id"]
    assert len(_get(sb, "/_sandbox/tenants").json()) == 2


def test_control_endpoints_answer_loopback_only(sb: Sandbox) -> None:
    """A client outside loopback gets 403 from every control endpoint."""

    async def call() -> list[int]:
        transport = httpx.ASGITransport(app=sb.app, client=("192.0.2.10", 40000))
        async with httpx.AsyncClient(transport=transport, base_url="http://sandbox") as client:
            answers = [
                await client.get("/_sandbox/deliveries"),
                await client.post("/_sandbox/events", json={"type": "ORDER.NEW"}),
                await client.post("/_sandbox/rotate_keys"),
                await client.get("/_sandbox/tenants"),
            ]
        return [a.status_code for a in answers]

    assert asyncio.run(call()) == [403, 403, 403, 403]
    assert sb.deliveries == []
    assert _get(sb, "/_sandbox/deliveries").status_code == 200
