"""``upvest-verify webhooks ...`` and ``keys`` against the emulator, over real HTTP."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("click", reason="the command line needs the [cli] extra (click)")
pytest.importorskip("rich", reason="the command line needs the [cli] extra (rich)")
pytest.importorskip("starlette", reason="the emulator needs the [sandbox] extra (starlette)")
pytest.importorskip("uvicorn", reason="the emulator needs the [sandbox] extra (uvicorn)")
pytest.importorskip("httpx", reason="the client needs the [client] extra (httpx)")

from upvest_verify.sandbox import Sandbox

from .helpers import Outcome, invoke, write_credentials

URL = "http://localhost:8765/hooks"


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    """An emulator on 127.0.0.1 with a fast clock."""
    with Sandbox(time_scale=0.01, allow_http=True) as sb:
        yield sb


@pytest.fixture
def creds(sandbox: Sandbox, tmp_path: Path) -> Path:
    """The emulator tenant's credentials file."""
    return write_credentials(tmp_path / "creds.json", sandbox)


def _secrets_absent(sandbox: Sandbox, *outcomes: Outcome) -> None:
    for outcome in outcomes:
        assert sandbox.tenant.client_secret not in outcome.output
        assert "PRIVATE KEY" not in outcome.output
        assert "Bearer" not in outcome.output


def test_webhook_lifecycle(sandbox: Sandbox, creds: Path) -> None:
    """create, list, get, update, disable, enable, test and delete, each through the API."""
    c = ["--credentials", str(creds)]
    created = invoke(
        "webhooks",
        "create",
        *c,
        "--title",
        "Orders",
        "--url",
        URL,
        "--type",
        "ORDER",
        "--delay",
        "2s",
        "--allow-localhost",
        "--json",
    )
    assert created.code == 0, created.output
    hook = json.loads(created.output)
    assert hook["enabled"] is False  # new subscriptions start disabled
    assert hook["type"] == ["ORDER"]
    assert hook["config"]["delay"] == "2s"
    listed = invoke("webhooks", "list", *c, "--json")
    assert [w["id"] for w in json.loads(listed.output)] == [hook["id"]]
    table = invoke("webhooks", "list", *c, "--all")
    assert table.code == 0
    assert "Orders" in table.output
    got = invoke("webhooks", "get", *c, hook["id"])
    assert got.code == 0
    assert "Orders" in got.output
    updated = invoke("webhooks", "update", *c, hook["id"], "--title", "All orders", "--json")
    assert json.loads(updated.output)["title"] == "All orders"
    enabled = invoke("webhooks", "enable", *c, hook["id"], "--json")
    assert json.loads(enabled.output)["enabled"] is True
    assert sandbox.webhooks()[0]["enabled"] is True
    tested = invoke("webhooks", "test", *c, hook["id"])
    assert tested.code == 0
    assert "202" in tested.output
    [delivery] = sandbox.wait_for_deliveries(1, delivered=False)
    assert delivery.test
    disabled = invoke("webhooks", "disable", *c, hook["id"], "--json")
    assert json.loads(disabled.output)["enabled"] is False
    deleted = invoke("webhooks", "delete", *c, hook["id"])
    assert deleted.code == 0
    assert sandbox.webhooks() == []
    _secrets_absent(sandbox, created, listed, table, got, updated, enabled, tested, deleted)


def test_create_and_enable_at_once(sandbox: Sandbox, creds: Path) -> None:
    """create --enable PATCHes the new webhook enabled right away."""
    done = invoke(
        "webhooks",
        "create",
        "--credentials",
        str(creds),
        "--title",
        "t",
        "--url",
        URL,
        "--allow-localhost",
        "--enable",
        "--json",
    )
    assert done.code == 0, done.output
    assert json.loads(done.output)["enabled"] is True


def test_credentials_from_the_environment(sandbox: Sandbox, tmp_path: Path) -> None:
    """UPVEST_* variables, the signing key as a PEM path, are enough."""
    pem = tmp_path / "key.pem"
    pem.write_text(sandbox.tenant.private_key_pem())
    env = {
        "UPVEST_BASE_URL": sandbox.base_url,
        "UPVEST_CLIENT_ID": sandbox.tenant.client_id,
        "UPVEST_CLIENT_SECRET": sandbox.tenant.client_secret,
        "UPVEST_SIGNING_KEY": str(pem),
        "UPVEST_SIGNING_KEY_ID": sandbox.tenant.key_id,
    }
    done = invoke("webhooks", "list", "--json", env=env)
    assert done.code == 0, done.output
    assert json.loads(done.output) == []


def test_options_override_the_credentials_file(sandbox: Sandbox, creds: Path) -> None:
    """An option wins over the file: a wrong secret given explicitly fails with 401."""
    done = invoke(
        "webhooks", "list", "--credentials", str(creds), "--client-secret", "wrong-secret"
    )
    assert done.code == 1
    assert "401" in done.output
    assert "hint: check the client id, secret" in done.output
    assert "wrong-secret" not in done.output


def test_missing_credentials(tmp_path: Path) -> None:
    """Missing credentials are named in one line, with where to give them."""
    env = dict.fromkeys(
        (
            "UPVEST_BASE_URL",
            "UPVEST_CLIENT_ID",
            "UPVEST_CLIENT_SECRET",
            "UPVEST_SIGNING_KEY",
            "UPVEST_SIGNING_KEY_ID",
        ),
        "",
    )
    done = invoke("webhooks", "list", env=env)
    assert done.code == 2
    assert "missing credentials: --base-url" in done.output
    assert "--signing-key (UPVEST_SIGNING_KEY)" in done.output
    assert "Traceback" not in done.output


def test_unreadable_credentials_file(tmp_path: Path) -> None:
    """A credentials file that is not JSON is reported in one line."""
    bad = tmp_path / "bad.json"
    bad.write_text("nope")
    done = invoke("webhooks", "list", "--credentials", str(bad))
    assert done.code == 1
    assert "is not JSON" in done.output


def test_api_errors_are_one_line(sandbox: Sandbox, creds: Path) -> None:
    """A 404 from the API is an error line, not a traceback."""
    done = invoke(
        "webhooks", "get", "--credentials", str(creds), "00000000-0000-4000-8000-000000000000"
    )
    assert done.code == 1
    assert "error:" in done.output
    assert "404" in done.output
    assert "Traceback" not in done.output


def test_validation_errors_are_usage_mistakes(sandbox: Sandbox, creds: Path) -> None:
    """A bad --delay is refused before anything is sent (exit status 2)."""
    done = invoke(
        "webhooks",
        "create",
        "--credentials",
        str(creds),
        "--title",
        "t",
        "--url",
        URL,
        "--allow-localhost",
        "--delay",
        "99h",
    )
    assert done.code == 2
    assert "delay" in done.output
    assert sandbox.webhooks() == []


def test_update_needs_a_change(creds: Path) -> None:
    """update without a field to change is a usage mistake."""
    done = invoke("webhooks", "update", "--credentials", str(creds), "some-id")
    assert done.code == 2
    assert "nothing to change" in done.output


def test_keys_shows_the_published_keys(sandbox: Sandbox, creds: Path) -> None:
    """keys lists the webhook-signing keys; --json prints a public JWKS."""
    table = invoke("keys", "--credentials", str(creds))
    assert table.code == 0, table.output
    assert sandbox.signing_key.key_id[:8] in table.output
    raw = invoke("keys", "--credentials", str(creds), "--json")
    doc = json.loads(raw.output)
    assert [k["kid"] for k in doc["keys"]] == [sandbox.signing_key.key_id]
    assert all("d" not in k for k in doc["keys"])
    _secrets_absent(sandbox, table, raw)


def test_no_answer_from_the_base_url(creds: Path) -> None:
    """A base URL where nothing listens is one line with a hint."""
    done = invoke("keys", "--credentials", str(creds), "--base-url", "http://127.0.0.1:9")
    assert done.code == 1
    assert "error: no answer from http://127.0.0.1:9" in done.output
