"""Project-generated P-521 webhook vectors (every dialect, and the §8.3 negatives)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import pytest

from upvest_verify import KeySet, VerificationError, verify
from upvest_verify._message import normalise_fields, request_message
from upvest_verify._verify import parse_signature_input, signature_base

VECTORS = Path(__file__).resolve().parents[1] / "vectors"
DOC: dict[str, Any] = json.loads((VECTORS / "p521_generated.json").read_text(encoding="utf-8"))
KEYS = KeySet.from_jwks({"keys": [DOC["key"]]})
CASES = DOC["cases"]


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_generated_vector_verdict(case: dict[str, Any]) -> None:
    """Each vector gets exactly its recorded verdict: the dialect, or the reason code."""
    now = case.get("now", DOC["reference_now"])
    args = (case["method"], case["url"], case["headers"], case["body"].encode())
    if case["verdict"] == "accept":
        result = verify(*args, keys=KEYS, now=now)
        assert str(result.dialect) == case["dialect"]
        assert result.key_id == DOC["key"]["kid"]
    else:
        with pytest.raises(VerificationError) as info:
            verify(*args, keys=KEYS, now=now)
        assert info.value.reason.value == case["verdict"]


@pytest.mark.parametrize(
    "case",
    [c for c in CASES if c["verdict"] == "accept"],
    ids=[c["name"] for c in CASES if c["verdict"] == "accept"],
)
def test_generated_vector_base(case: dict[str, Any]) -> None:
    """The verifier rebuilds the recorded signature base byte for byte."""
    message = request_message(case["method"], case["url"], normalise_fields(case["headers"]))
    sig = parse_signature_input(message, "sig1")
    layout = case["dialect"].split("/")[0]
    assert signature_base(message, sig, layout) == case["expected_base"].encode()


def test_generator_is_reproducible() -> None:
    """Re-running the generator (RFC 6979 signing) gives the committed file exactly."""
    spec = importlib.util.spec_from_file_location(
        "make_p521_vectors", VECTORS / "make_p521_vectors.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.build() == DOC
