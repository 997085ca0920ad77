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
