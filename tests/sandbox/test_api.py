"""The emulated Investment API over real HTTP, called by a signed management client."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

pytest.importorskip("starlette", reason="the sandbox extra (starlette) is not installed")
pytest.importorskip("uvicorn", reason="the sandbox extra (uvicorn) is not installed")
httpx = pytest.importorskip("httpx", reason="the sandbox extra (httpx) is not installed")

from sandbox_support import ApiClient, assert_problem  # noqa: E402

from upvest_verify import KeySet  # noqa: E402
from upvest_verify.sandbox import Sandbox  # noqa: E402
from upvest_verify.signing import SigningKey  # noqa: E402

HOOK = {"title": "Orders", "url": "https://receiver.example/webhooks/upvest"}


@pytest.fixture(scope="module")
def shared(module_sb: Sandbox) -> Iterator[ApiClient]:
    """A client of one emulator shared by the module's stateless checks (fewer restarts)."""
    client = ApiClient(module_sb)
    yield client
    client.close()


@pytest.fixture(scope="module")
def admin(shared: ApiClient) -> str:
    """An admin token of the shared emulator's tenant."""
    return shared.token()


def _create(api: ApiClient, token: str, **fields: object) -> dict[str, object]:
    response = api.json("POST", "/webhooks", {**HOOK, **fields}, token=token)
    assert response.status_code == 201, response.text
    return dict(response.json())


# --------------------------------------------------------------------------- /auth/token


def test_token_is_issued_for_signed_form(api: ApiClient) -> None:
    """A signed form with the tenant's credentials gets a bearer token for the scopes."""
    response = api.token_response("webhooks:read webhooks:admin")
    assert response.status_code == 200
    doc = response.json()
    assert set(doc) == {"access_token", "expires_in", "token_type", "scope"}
    assert doc["token_type"] == "bearer"
    assert doc["expires_in"] == 1799
    assert doc["scope"] == "webhooks:read webhooks:admin"
    uuid.UUID(response.headers["upvest-request-id"])


@pytest.mark.parametrize(
    ("form", "status"),
    [
        ({"client_secret": "wrong"}, 401),
        ({"grant_type": "password"}, 400),
        ({"scope": "users:admin"}, 400),
        ({"scope": ""}, 400),
        ({"audience": "x"}, 400),
        ({"client_id": str(uuid.uuid4())}, 401),
    ],
    ids=["wrong-secret", "grant-type", "unknown-scope", "no-scope", "extra-field", "other-id"],
)
def test_token_form_is_validated(shared: ApiClient, form: dict[str, str], status: int) -> None:
    """A wrong secret or client id is 401; a malformed form is 400."""
    assert_problem(shared.token_response(**form), status)


def test_token_request_needs_client_id_and_signature(api: ApiClient, sb: Sandbox) -> None:
    """Without ``upvest-client-id`` 400; unsigned or signed by another key 401."""
    form = b"client_id=x&client_secret=y&grant_type=client_credentials&scope=webhooks:read"
    ctype = {"content-type": "application/x-www-form-urlencoded"}
    unsigned = api.http.post(sb.base_url + "/auth/token", content=form, headers=ctype)
    assert_problem(unsigned, 400, "Missing Client ID")
    headers = {**ctype, "upvest-client-id": sb.tenant.client_id}
    unsigned = api.http.post(sb.base_url + "/auth/token", content=form, headers=headers)
    assert_problem(unsigned, 401, "Signature is incorrect")
    stranger = sb.add_tenant()
    impostor = ApiClient(sb, stranger)
    # Signed with another tenant's key but claiming the default tenant's id.
    impostor.tenant = type(stranger)(sb.tenant.client_id, "", stranger.signing_key)
    assert_problem(impostor.token_response(), 401, "Signature is incorrect")
    impostor.close()


def test_v6_signature_without_version_field_is_accepted(sb: Sandbox) -> None:
    """Without ``upvest-signature-version`` the emulator reads a v6 signature, like Upvest."""
    client = ApiClient(sb, v6=True)
    token = client.token("webhooks:read")
    assert client.send("GET", "/webhooks", token=token).status_code == 200
    client.close()


def test_expired_token_is_refused(api: ApiClient, sb: Sandbox) -> None:
    """A token past its lifetime is 401; ``token_ttl`` sets the lifetime."""
    sb.token_ttl = 0.0
    response = api.token_response()
    assert response.json()["expires_in"] == 0
    token = response.json()["access_token"]
    assert_problem(api.send("GET", "/webhooks", token=token), 401)
    sb.token_ttl = 60.0
    assert api.send("GET", "/webhooks", token=api.token()).status_code == 200


def test_tokens_are_per_tenant(api: ApiClient, sb: Sandbox) -> None:
    """Another tenant's token is refused, and tenants see only their own webhooks."""
    other = ApiClient(sb, sb.add_tenant())
    other_token = other.token()
    assert_problem(api.send("GET", "/webhooks", token=other_token), 401)
    _create(api, api.token())
    listed = other.send("GET", "/webhooks", token=other_token).json()
    assert listed["meta"]["total_count"] == 0
    other.close()


# --------------------------------------------------------------------------- signature, scope


def test_every_call_checks_the_signature(api: ApiClient, sb: Sandbox) -> None:
    """A valid token without a valid signature is 401 "Signature is incorrect"."""
    token = api.token()
    headers = dict(api.headers(token))
    for method, path in [("GET", "/webhooks"), ("GET", "/auth/verify_keys")]:
        response = api.http.request(method, sb.base_url + path, headers=headers)
        assert_problem(response, 401, "Signature is incorrect")
    # A signed request whose body was changed afterwards.
    body = b'{"title":"x","url":"https://a.example/h"}'
    pairs = [*api.headers(token), ("content-type", "application/json")]
    from upvest_verify.signing import sign_upvest_request

    signed = sign_upvest_request(
        "POST", sb.base_url + "/webhooks", pairs, body, key=sb.tenant.signing_key
    )
    tampered = body.replace(b'"x"', b'"y"')
    response = api.http.post(signed.url, headers=signed.headers, content=tampered)
    assert_problem(response, 401, "Signature is incorrect")


def test_missing_or_bad_bearer_token_is_401(shared: ApiClient) -> None:
    """No token, or an unknown one, is 401 even with a valid signature."""
    assert_problem(shared.send("GET", "/webhooks"), 401)
    assert_problem(shared.send("GET", "/webhooks", token="ory_at_unknown"), 401)


def test_scopes_are_enforced(api: ApiClient) -> None:
    """A read token lists but cannot create (403); admin covers reading."""
    read = api.token("webhooks:read")
    assert api.send("GET", "/webhooks", token=read).status_code == 200
    assert_problem(api.json("POST", "/webhooks", HOOK, token=read), 403)
    admin = api.token("webhooks:admin")
    assert api.send("GET", "/auth/verify_keys", token=admin).status_code == 200


def test_accept_excluding_json_is_406(shared: ApiClient, admin: str) -> None:
    """An ``accept`` that rules out JSON is 406; ``*/*`` is fine."""
    headers = [*shared.headers(admin)[1:], ("accept", "application/pdf")]
    assert_problem(shared.send("GET", "/webhooks", token=admin, headers=headers), 406)
    headers = [*shared.headers(admin)[1:], ("accept", "text/html, */*;q=0.1")]
    assert shared.send("GET", "/webhooks", token=admin, headers=headers).status_code == 200


# --------------------------------------------------------------------------- verify_keys


def test_verify_keys_serves_a_p521_jwks_that_rotates(api: ApiClient, sb: Sandbox) -> None:
    """``GET /auth/verify_keys`` serves EC P-521 keys only; rotation adds one, keeps the old."""
    token = api.token("webhooks:read")
    first = api.send("GET", "/auth/verify_keys", token=token).json()
    assert [set(k) for k in first["keys"]] == [{"kid", "kty", "crv", "x", "y"}]
    assert first["keys"][0]["crv"] == "P-521"
    new = sb.rotate_keys(overlap=3600)
    second = api.send("GET", "/auth/verify_keys", token=token).json()
    assert [k["kid"] for k in second["keys"]] == [first["keys"][0]["kid"], new.key_id]
    assert sorted(KeySet.from_jwks(second)) == sorted(k["kid"] for k in second["keys"])
    sb.rotate_keys(overlap=0)
    third = api.send("GET", "/auth/verify_keys", token=token).json()
    assert len(third["keys"]) == 1


# --------------------------------------------------------------------------- /webhooks


def test_create_get_patch_delete(api: ApiClient) -> None:
    """The whole life of a subscription: 201 disabled, 200, 200 enabled, 204, then 404."""
    token = api.token()
    created = _create(api, token, type=["ORDER"], config={"delay": "2s", "max_package_size": 500})
    assert created["enabled"] is False
    assert created["type"] == ["ORDER"]
    assert created["config"] == {"delay": "2s", "max_package_size": 500}
    assert set(created) == {
        "id",
        "created_at",
        "updated_at",
        "title",
        "url",
        "enabled",
        "type",
        "config",
    }
    path = f"/webhooks/{created['id']}"
    assert api.send("GET", path, token=token).json() == created
    patched = api.json("PATCH", path, {"enabled": True, "config": {"delay": "1s"}}, token=token)
    assert patched.status_code == 200
    assert patched.json()["enabled"] is True
    assert patched.json()["config"] == {"delay": "1s", "max_package_size": 500}
    deleted = api.send("DELETE", path, token=token)
    assert deleted.status_code == 204
    assert deleted.content == b""
    assert "upvest-request-id" in deleted.headers
    assert_problem(api.send("GET", path, token=token), 404)
    assert_problem(api.send("DELETE", path, token=token), 404)


def test_create_defaults(api: ApiClient) -> None:
    """Title and url suffice: type ``["ALL"]`` and a default config."""
    created = _create(api, api.token())
    assert created["type"] == ["ALL"]
    assert created["config"] == {"delay": "5s", "max_package_size": 10240}


@pytest.mark.parametrize(
    "fields",
    [
        {"enabled": True},
        {"title": ""},
        {"title": "x" * 101},
        {"url": "http://receiver.example/h"},
        {"url": "https://127.0.0.1/h"},
        {"url": "https://[::1]/h"},
        {"url": "https://user:pw@receiver.example/h"},
        {"url": "https://receiver.example/" + "a" * 1000},
        {"type": ["ORDERS"]},
        {"type": []},
        {"type": "ALL"},
        {"config": {"delay": "0s"}},
        {"config": {"delay": "1h"}},
        {"config": {"delay": "100s"}},
        {"config": {"max_package_size": 99}},
        {"config": {"max_package_size": 1048577}},
        {"config": {"max_package_size": "1000"}},
        {"config": {"delay": "1s", "retries": 3}},
        {"url": None},
    ],
    ids=lambda f: next(iter(f)) + ":" + str(next(iter(f.values())))[:20],
)
def test_create_validation(shared: ApiClient, admin: str, fields: dict[str, object]) -> None:
    """Unknown fields, bad URLs, types, delays and sizes are 400."""
    doc = {**HOOK, **fields}
    if fields.get("url", "") is None:
        del doc["url"]
    assert_problem(shared.json("POST", "/webhooks", doc, token=admin), 400)


def test_create_needs_json(shared: ApiClient, admin: str) -> None:
    """A body that is not JSON, or not an object, or not labelled JSON, is 400."""
    headers = [*shared.headers(admin), ("content-type", "application/json")]
    assert_problem(shared.send("POST", "/webhooks", token=admin, body=b"{", headers=headers), 400)
    assert_problem(shared.json("POST", "/webhooks", [HOOK], token=admin), 400)
    text = [*shared.headers(admin), ("content-type", "text/plain")]
    assert_problem(shared.send("POST", "/webhooks", token=admin, body=b"{}", headers=text), 400)


def test_http_localhost_only_with_allow_http(api: ApiClient, sb: Sandbox) -> None:
    """``http://localhost:<port>`` is accepted only when the emulator allows plain HTTP."""
    token = api.token()
    assert _create(api, token, url="http://localhost:8080/h")["url"] == "http://localhost:8080/h"
    assert_problem(
        api.json("POST", "/webhooks", {**HOOK, "url": "http://localhost/h"}, token=token), 400
    )
    sb.allow_http = False
    assert_problem(
        api.json("POST", "/webhooks", {**HOOK, "url": "http://localhost:8080/h"}, token=token), 400
    )


@pytest.mark.parametrize(
    "fields",
    [{"enabled": "yes"}, {"id": str(uuid.uuid4())}, {"config": {"delay": "9"}}, {"type": ["X"]}],
    ids=["enabled", "id", "delay", "type"],
)
def test_patch_validation(shared: ApiClient, admin: str, fields: dict[str, object]) -> None:
    """PATCH rejects unknown fields and bad values with 400, and changes nothing."""
    created = _create(shared, admin)
    path = f"/webhooks/{created['id']}"
    assert_problem(shared.json("PATCH", path, fields, token=admin), 400)
    assert shared.send("GET", path, token=admin).json() == created


def test_malformed_and_unknown_ids(shared: ApiClient, admin: str) -> None:
    """A webhook id that is not a UUID is 400; an unknown one 404, on every id path."""
    api, token = shared, admin
    for method in ("GET", "DELETE"):
        assert_problem(api.send(method, "/webhooks/not-a-uuid", token=token), 400)
        assert_problem(api.send(method, f"/webhooks/{uuid.uuid4()}", token=token), 404)
    assert_problem(
        api.json("PATCH", f"/webhooks/{uuid.uuid4()}", {"enabled": True}, token=token), 404
    )
    assert_problem(api.send("POST", f"/webhooks/{uuid.uuid4()}/test", token=token), 404)


def test_list_pagination_and_sorting(api: ApiClient) -> None:
    """``GET /webhooks`` pages with offset/limit and sorts by the named field and order."""
    token = api.token()
    for title in ("b", "c", "a"):
        _create(api, token, title=title)
    page = api.send("GET", "/webhooks?sort=title&order=DESC&offset=1&limit=1", token=token)
    assert page.status_code == 200
    doc = page.json()
    assert doc["meta"] == {
        "offset": 1,
        "limit": 1,
        "count": 1,
        "total_count": 3,
        "sort": "title",
        "order": "DESC",
    }
    assert [w["title"] for w in doc["data"]] == ["b"]
    default = api.send("GET", "/webhooks", token=token).json()
    assert [w["title"] for w in default["data"]] == ["b", "c", "a"]
    assert default["meta"]["limit"] == 100
    empty = api.send("GET", "/webhooks?limit=0", token=token).json()
    assert (empty["meta"]["count"], empty["data"]) == (0, [])


@pytest.mark.parametrize(
    "query",
    ["sort=id", "order=asc", "offset=-1", "limit=1001", "limit=x"],
)
def test_list_query_validation(shared: ApiClient, admin: str, query: str) -> None:
    """Out-of-range or unknown list parameters are 400."""
    assert_problem(shared.send("GET", f"/webhooks?{query}", token=admin), 400)


def test_test_endpoint_answers_202_and_delivers(api: ApiClient, sb: Sandbox) -> None:
    """``POST /webhooks/{id}/test`` is 202 with no body, then a test event is delivered."""
    from sandbox_support import Recorder, serve

    recorder = Recorder()
    with serve(recorder) as port:
        token = api.token()
        created = _create(api, token, url=f"http://localhost:{port}/hook", config={"delay": "1s"})
        response = api.send("POST", f"/webhooks/{created['id']}/test", token=token)
        assert response.status_code == 202
        assert response.content == b""
        [delivery] = sb.wait_for_deliveries(1)
    assert delivery.test
    assert delivery.events[0]["type"] == "WEBHOOK.TEST"
    assert delivery.events[0]["webhook_id"] == created["id"]
    assert recorder.requests[0].json()["payload"][0]["id"] == delivery.events[0]["id"]


def test_unknown_route_and_method_are_problems(shared: ApiClient) -> None:
    """404 and 405 from the router are problem+json with a request id too."""
    assert_problem(shared.http.get(shared.sandbox.base_url + "/users"), 404)
    assert_problem(shared.http.put(shared.sandbox.base_url + "/webhooks"), 405)


def test_tenant_signing_key_can_be_supplied(sb: Sandbox) -> None:
    """A tenant added with its own (Ed25519) key signs with it; the emulator checks it."""
    key = SigningKey.generate("Ed25519")
    tenant = sb.add_tenant(signing_key=key, client_id=str(uuid.uuid4()))
    assert tenant.signing_key is key
    client = ApiClient(sb, tenant)
    assert client.send("GET", "/webhooks", token=client.token()).status_code == 200
    client.close()
    with pytest.raises(ValueError, match="exists"):
        sb.add_tenant(client_id=tenant.client_id)
