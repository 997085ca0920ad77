"""The canonical-header fast path gives exactly the strict path's verdicts."""

from __future__ import annotations

import pytest
from core_helpers import REFERENCE_NOW
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import upvest_verify._verify as verify_module
from upvest_verify import KeySet, Policy, VerificationError, verify
from upvest_verify.testing import (
    SignedWebhook,
    SigningKey,
    generate_key,
    make_key_set,
    sign_webhook,
)

KEY: SigningKey = generate_key()
KEYS: KeySet = make_key_set(KEY)


def verdict(s: SignedWebhook, headers: list[tuple[str, str]], policy: Policy, fast: bool) -> str:
    """Verify with the fast path on or off; return the dialect or the reason."""
    verify_module._FAST_PATH = fast
    try:
        result = verify(
            s.method, s.url, headers, s.body, keys=KEYS, now=REFERENCE_NOW, policy=policy
        )
    except VerificationError as e:
        return e.reason.value
    finally:
        verify_module._FAST_PATH = True
    return str(result.dialect)


def test_fast_path_is_taken_for_canonical_headers() -> None:
    """A canonical Upvest webhook is handled without the strict Signature-Input parse."""
    s = sign_webhook(b"{}", key=KEY, created=REFERENCE_NOW)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(verify_module, "parse_signatures", None)  # would crash if called
        assert verify(s.method, s.url, s.headers, s.body, keys=KEYS, now=REFERENCE_NOW)


PARAM_ORDERS = st.permutations(["keyid", "created", "expires", "nonce"])
MUTATIONS = st.sampled_from(
    [
        lambda v: v,
        lambda v: v.replace("(", "( "),
        lambda v: v.replace('" "', '"  "'),
        lambda v: v.replace(";created=", ";created=0"),
        lambda v: v.replace(";created=", ";created=?1;x="),
        lambda v: v + ";created=1",
        lambda v: v + ';alg="ecdsa-p521-sha512"',
        lambda v: v + ';alg="ed25519"',
        lambda v: v + ';tag="a\\"b"',
        lambda v: v + ";crit=1",
        lambda v: v.replace('"@path"', '"@path" "@path"'),
        lambda v: v.replace('"@path"', '"@foo"'),
        lambda v: v.replace('"@path"', '"Content-Type"'),
        lambda v: v.replace('"@path"', '"@path";req'),
        lambda v: v.replace("sig1=", "sig2="),
        lambda v: v.replace('nonce="', 'nonce="x;y'),
        lambda v: v.replace('keyid="', 'keyid="'),
        lambda v: v + ', sig2=("@method");keyid="x";created=1',
        lambda v: v.replace('keyid="', 'keyid="00000000-'),
        lambda v: " " + v + " ",
    ]
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    order=PARAM_ORDERS,
    mutate=MUTATIONS,
    dialect=st.sampled_from(["upvest-v6", "rfc9421"]),
    labels=st.sampled_from([(), ("sig1",), ("sig2",)]),
    padding_cut=st.booleans(),
)
def test_fast_and_strict_paths_agree(
    order: list[str],
    mutate: object,
    dialect: str,
    labels: tuple[str, ...],
    padding_cut: bool,
) -> None:
    """For canonical and near-canonical headers both paths give the same verdict."""
    s = sign_webhook(
        b'{"payload":[]}',
        key=KEY,
        created=REFERENCE_NOW,
        dialect=dialect,  # type: ignore[arg-type]
        params_order=order,
    )
    si = mutate(s.header("signature-input") or "")  # type: ignore[operator]
    sig = s.header("signature") or ""
    if padding_cut:
        sig = sig.replace("=:", ":")
    headers = [(k, v) for k, v in s.headers if k not in ("signature-input", "signature")]
    headers += [("signature-input", si), ("signature", sig)]
    policy = Policy(labels=labels)
    assert verdict(s, headers, policy, fast=True) == verdict(s, headers, policy, fast=False)
