"""Adapter settings: key sources, policy coercion and problem codes (``adapters/_settings.py``)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from upvest_verify import ConfigurationError, Policy, Verifier
from upvest_verify.adapters._settings import load_settings, settings_problems
from upvest_verify.jwks import JWKSCache
from upvest_verify.testing import generate_key, make_jwks, make_key_set

KEY = generate_key()


def test_settings_build_a_verifier_with_policy() -> None:
    """Settings strings are coerced to policy types and reach the verifier."""
    settings = load_settings(
        {
            "JWKS": json.dumps(make_jwks(KEY)),
            "SKEW": "5",
            "MAX_AGE": "1.5",
            "MAX_WINDOW": "none",
            "REQUIRE_NONCE": "yes",
            "LABELS": "sig1, sig2",
            "REQUIRED_COMPONENTS": ["@method", "@path", "@authority"],
            "PATHS": "/in",
        }
    )
    policy = settings.verifier.policy
    assert (policy.skew, policy.max_age, policy.max_window) == (5, 1.5, None)
    assert policy.require_nonce is True
    assert policy.labels == ("sig1", "sig2")
    assert policy.required_components == ("@method", "@path", "@authority")
    assert settings.paths("/in")
    assert settings.max_body_size == policy.max_body_size


def test_settings_with_policy_object_and_keys() -> None:
    """POLICY and KEYS (a provider) are accepted as objects."""
    policy = Policy(skew=1)
    settings = load_settings({"KEYS": make_key_set(KEY), "POLICY": policy})
    assert settings.verifier.policy is policy


def test_jwks_url_builds_a_cache() -> None:
    """JWKS_URL builds a JWKSCache-backed verifier without fetching at start-up."""
    settings = load_settings({"JWKS_URL": "https://jwks.example/keys.json"})
    assert isinstance(settings.verifier.keys, JWKSCache)


@pytest.mark.parametrize(
    ("values", "code"),
    [
        ({"KEYS": "json:loads"}, "E004"),
        ({"KEYS": 3}, "E004"),
        ({"JWKS": 3}, "E004"),
        ({"JWKS_URL": 3}, "E004"),
        ({"JWKS_URL": "ftp://x"}, "E004"),
        ({"VERIFIER": "nodots"}, "E004"),
        ({"POLICY": "strict", "JWKS": "{}"}, "E005"),
        ({"POLICY": Policy(), "SKEW": 1, "JWKS": "{}"}, "E005"),
        ({"SKEW": "soon", "JWKS": "{}"}, "E005"),
    ],
)
def test_settings_problems(values: dict[str, Any], code: str) -> None:
    """Each unusable setting is reported with its code, without raising."""
    assert code in [c for c, _ in settings_problems(values)]
    with pytest.raises(ConfigurationError, match=code):
        load_settings(values)


def test_verifier_given_in_code() -> None:
    """With a verifier from code, only adapter options may be configured."""
    verifier = Verifier(make_key_set(KEY))
    assert load_settings({"PATHS": ["/x"]}, verifier=verifier).verifier is verifier
    assert [c for c, _ in settings_problems({"SKEW": 3}, verifier=verifier)] == ["E003"]


# ---- the management client as key source (CLIENT_ID, CLIENT_SECRET, SIGNING_KEY...) ----------

CLIENT_KEY = generate_key()
CLIENT_SETTINGS: dict[str, Any] = {
    "CLIENT_ID": "7c8f0e32-8d47-4c8e-9d4a-0c1e1c2d3e4f",
    "CLIENT_SECRET": "secret",
    "SIGNING_KEY": CLIENT_KEY.to_pem().decode(),
    "SIGNING_KEY_ID": CLIENT_KEY.key_id,
    "BASE_URL": "sandbox",
}


def test_client_settings_build_a_cache_without_fetching() -> None:
    """CLIENT_ID and friends give a JWKSCache over the client's key source; nothing is fetched."""
    pytest.importorskip("httpx", reason="the management client needs the [client] extra")
    from upvest_verify.client import UpvestKeySource

    settings = load_settings(CLIENT_SETTINGS)
    cache = settings.verifier.keys
    assert isinstance(cache, JWKSCache)
    assert isinstance(cache._source, UpvestKeySource)
    assert cache.stats.fetches == 0


@pytest.mark.parametrize(
    ("changes", "fragment"),
    [
        ({"CLIENT_SECRET": None}, "CLIENT_SECRET"),
        ({"BASE_URL": None}, "BASE_URL"),
        ({"SIGNING_KEY_ID": None}, "SIGNING_KEY_ID"),
        ({"BASE_URL": "http://sandbox.upvest.co"}, "base_url"),
        ({"SIGNING_KEY": "-----BEGIN PRIVATE KEY-----\ngarbage\n-----END PRIVATE KEY-----"}, "PEM"),
        ({"SIGNING_KEY": "/nonexistent/key.pem"}, "cannot be read"),
        ({"SIGNING_KEY_PASSWORD": "pw"}, "not encrypted"),
        ({"SIGNING_KEY": 42}, "SIGNING_KEY must be"),
    ],
)
def test_client_settings_problems(changes: dict[str, Any], fragment: str) -> None:
    """Incomplete or unusable client settings are E004 problems naming what is wrong."""
    pytest.importorskip("httpx", reason="the management client needs the [client] extra")
    values = {k: v for k, v in {**CLIENT_SETTINGS, **changes}.items() if v is not None}
    found = settings_problems(values)
    assert [code for code, _ in found] == ["E004"]
    assert fragment in found[0][1]
    assert "secret" not in found[0][1].replace("CLIENT_SECRET", "")


def test_client_settings_need_client_id_and_no_second_source() -> None:
    """Client keys without CLIENT_ID, or CLIENT_ID beside another source, are reported."""
    orphan = {k: v for k, v in CLIENT_SETTINGS.items() if k != "CLIENT_ID"}
    assert [c for c, _ in settings_problems({**orphan, "JWKS": json.dumps(make_jwks(KEY))})] == [
        "E004"
    ]
    both = {**CLIENT_SETTINGS, "JWKS": json.dumps(make_jwks(KEY))}
    assert [c for c, _ in settings_problems(both)] == ["E003"]


def test_client_settings_verify_webhooks_from_the_emulator(tmp_path: Any) -> None:
    """End to end: settings from PEM text, an escaped env value or a file; keys fetched on use."""
    pytest.importorskip("httpx", reason="the management client needs the [client] extra")
    pytest.importorskip("starlette", reason="the emulator needs the [sandbox] extra")
    pytest.importorskip("uvicorn", reason="the emulator needs the [sandbox] extra")
    from upvest_verify.sandbox import Sandbox
    from upvest_verify.testing import sign_webhook

    with Sandbox(port=0, time_scale=0.01) as sb:
        tenant = sb.tenant
        pem = tenant.signing_key.to_pem(password="pw").decode()
        key_file = tmp_path / "tenant.pem"
        key_file.write_text(pem)
        common = {
            "CLIENT_ID": tenant.client_id,
            "CLIENT_SECRET": tenant.client_secret,
            "SIGNING_KEY_ID": tenant.signing_key.key_id,
            "SIGNING_KEY_PASSWORD": "pw",
            "BASE_URL": sb.base_url,
        }
        webhook = sign_webhook({"payload": []}, key=sb.signing_key)
        for key in (pem, pem.replace("\n", "\\n"), str(key_file), key_file):
            verifier = load_settings({**common, "SIGNING_KEY": key}).verifier
            try:
                verified = verifier.verify(
                    webhook.method, webhook.url, webhook.headers, webhook.body
                )
            finally:
                verifier.keys._source.client.close()
            assert verified.key_id == sb.signing_key.key_id


def test_flask_config_keys_reach_the_client() -> None:
    """Flask's UPVEST_VERIFY_CLIENT_ID... config keys build the client-backed verifier."""
    pytest.importorskip("httpx", reason="the management client needs the [client] extra")
    flask = pytest.importorskip("flask", reason="the flask extra is not installed")
    from upvest_verify.adapters.flask import UpvestVerify

    app = flask.Flask(__name__)
    app.config.update({f"UPVEST_VERIFY_{k}": v for k, v in CLIENT_SETTINGS.items()})
    settings = UpvestVerify(app).settings(app)
    assert isinstance(settings.verifier.keys, JWKSCache)
