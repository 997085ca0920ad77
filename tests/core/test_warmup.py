"""``warm_up()`` and ``Verifier.warm_up()``: the first verification after them loads nothing.

What "primed" means is checked in fresh interpreters: after the warm-up, the first
verification of a real webhook imports no module, compiles no regular expression
and builds no fast-path plan. The time it saves is measured by
``benchmarks/bench_cold.py``, never asserted here.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import upvest_verify
from upvest_verify import KeySet, Policy, Verifier, _fast, _verify
from upvest_verify.testing import SigningKey, make_jwks, sign_webhook

# Runs in a fresh interpreter: argv = case file, how to warm up ("none", "function",
# "method"). Prints what the first verification of the case still had to do.
_CHILD = r"""
import json, re, sys
case_path, how = sys.argv[1], sys.argv[2]
import upvest_verify
if how == "function":
    upvest_verify.warm_up()
    before = set(sys.modules)  # the key set and the verifier are built after this
from upvest_verify import KeySet, Verifier
import upvest_verify._fast as fast
with open(case_path, encoding="utf-8") as f:
    case = json.load(f)
verifier = Verifier(KeySet.from_jwks(case["jwks"]))
if how == "method":
    verifier.warm_up()
if how != "function":
    before = set(sys.modules)
compiler = getattr(re, "_compiler", None) or __import__("sre_compile")
real_compile, compiled, plans = compiler.compile, [], []
def count_regex(*args, **kwargs):
    compiled.append(str(args[0]))
    return real_compile(*args, **kwargs)
real_plan = fast._compile
def count_plan(*args, **kwargs):
    plans.append(args[0])
    return real_plan(*args, **kwargs)
compiler.compile, fast._compile = count_regex, count_plan
webhook = verifier.verify("POST", case["url"], [tuple(h) for h in case["headers"]], case["body"].encode())
compiler.compile, fast._compile = real_compile, real_plan
print(json.dumps({
    "dialect": str(webhook.dialect),
    "modules": sorted(set(sys.modules) - before),
    "regex": compiled,
    "plans": plans,
}))
"""


def _first_verification(
    tmp_path: Path,
    key: SigningKey,
    dialect: str,
    how: str,
    url: str = "https://app.example.org/hooks",
) -> Any:
    signed = sign_webhook(
        {"payload": []},
        key=key,
        url=url,
        dialect=dialect,  # type: ignore[arg-type]
        ttl=3600,
    )
    case = tmp_path / "case.json"
    case.write_text(
        json.dumps(
            {
                "jwks": json.dumps(make_jwks(key)),
                "url": signed.url,
                "headers": [list(h) for h in signed.headers],
                "body": signed.body.decode(),
            }
        ),
        encoding="utf-8",
    )
    out = subprocess.run(
        [sys.executable, "-c", _CHILD, str(case), how],
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
    )
    return json.loads(out.stdout)


@pytest.mark.parametrize("dialect", ["upvest-v6", "rfc9421"])
@pytest.mark.parametrize("how", ["function", "method"])
def test_first_verification_after_warm_up_loads_nothing(
    tmp_path: Path, p521_key: SigningKey, dialect: str, how: str
) -> None:
    """After the warm-up the first webhook imports, compiles and plans nothing.

    The webhook covers what ``sign_webhook`` covers by default (Upvest's usual head);
    its key, URL and signature parameters differ from the built-in ones.
    """
    seen = _first_verification(tmp_path, p521_key, dialect, how)
    assert seen["dialect"].startswith(dialect)
    assert seen["modules"] == []
    assert seen["regex"] == []
    assert seen["plans"] == []


def test_without_warm_up_the_first_verification_builds_its_plan(
    tmp_path: Path, p521_key: SigningKey
) -> None:
    """The probe above sees first-use work: without a warm-up the plan is built then."""
    seen = _first_verification(tmp_path, p521_key, "upvest-v6", "none")
    assert len(seen["plans"]) == 1


def test_another_head_after_warm_up_builds_only_its_plan(
    tmp_path: Path, p521_key: SigningKey
) -> None:
    """A head the warm-up did not see (here with @query) costs its plan, nothing else."""
    url = "https://app.example.org/hooks?tenant=7"
    seen = _first_verification(tmp_path, p521_key, "upvest-v6", "method", url)
    assert (seen["modules"], seen["regex"], len(seen["plans"])) == ([], [], 1)


@pytest.mark.parametrize(
    "policy",
    [
        Policy(),
        Policy(dialect="rfc9421"),
        Policy(dialect="upvest-v6", signature_encoding="der"),
        Policy(required_components=("@method", "@path", "@authority")),
        Policy(max_window=2, labels=("upvest",)),
    ],
    ids=["default", "rfc9421-only", "v6-only", "requires-authority", "refuses-every-sample"],
)
def test_warm_up_accepts_any_policy(policy: Policy) -> None:
    """A policy that refuses the built-in webhooks falls back to the default policy."""
    upvest_verify.warm_up(policy)
    Verifier(KeySet(), policy=policy).warm_up()


def test_verifier_warm_up_primes_its_own_policy() -> None:
    """The fast path's per-policy memo is left bound to the verifier's policy."""
    policy = Policy(skew=5)
    Verifier(KeySet(), policy=policy).warm_up()
    head = 'sig1=("@method" "@path" "content-type" "content-length" "digest" "date")'
    plan = _fast._PLANS[head]  # the head of the built-in Upvest v6 webhook
    assert plan
    assert plan.bound is not None
    assert plan.bound.policy is policy


def test_warm_up_goes_through_both_paths(monkeypatch: pytest.MonkeyPatch) -> None:
    """Accepted samples take the fast path (str and ASGI bytes headers) and the strict one."""
    import upvest_verify.verifier as verifier_module

    fast_results: list[object] = []
    strict_results: list[object] = []
    asgi: list[object] = []
    fast_verify, verify_message = _fast.fast_verify, verifier_module.verify_message
    bytes_fields = _fast._bytes_fields

    def fast(*args: Any, **kwargs: Any) -> Any:
        fast_results.append(fast_verify(*args, **kwargs))
        return fast_results[-1]

    def strict(*args: Any, **kwargs: Any) -> Any:
        strict_results.append(verify_message(*args, **kwargs))
        return strict_results[-1]

    def fields(*args: Any) -> Any:
        asgi.append(bytes_fields(*args))
        return asgi[-1]

    monkeypatch.setattr(verifier_module, "fast_verify", fast)
    monkeypatch.setattr(verifier_module, "verify_message", strict)
    monkeypatch.setattr(_fast, "_bytes_fields", fields)
    upvest_verify.warm_up()
    assert sum(r is not None for r in fast_results) == 3  # v6, RFC 9421, RFC 9421 as bytes
    assert len(strict_results) == 1  # the repeated header line (the unknown key raised)
    assert any(a is not None for a in asgi)


class _NoKeys:
    """A key provider that must not be asked: the warm-up does no I/O."""

    def current(self) -> KeySet:
        raise AssertionError("warm_up asked the key provider for keys")

    def refresh_for(self, kid: str) -> KeySet | None:
        raise AssertionError("warm_up asked the key provider for a refresh")


def test_verifier_warm_up_leaves_the_key_provider_alone() -> None:
    """Verifier.warm_up() uses the built-in key, never the verifier's provider."""
    Verifier(_NoKeys()).warm_up()


def test_warm_up_fails_loudly_when_nothing_verifies(monkeypatch: pytest.MonkeyPatch) -> None:
    """An installation that cannot verify the built-in webhooks raises RuntimeError."""
    monkeypatch.setattr(_fast, "verify_signature", lambda key, signature, message: False)
    monkeypatch.setattr(_verify, "verify_signature", lambda key, signature, message: False)
    with pytest.raises(RuntimeError, match=r"warm-up webhook 'Upvest v6' did not verify"):
        upvest_verify.warm_up()


def test_warm_up_is_public() -> None:
    """warm_up is exported at the package root and documented."""
    assert "warm_up" in upvest_verify.__all__
    assert upvest_verify.warm_up.__doc__
    assert Verifier.warm_up.__doc__
