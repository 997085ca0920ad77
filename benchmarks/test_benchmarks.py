"""pytest-benchmark micro-benchmarks of the verify path and its floor.

Run from the repository root (``benchmarks/`` is outside ``testpaths``)::

    pytest benchmarks/ -p no:cacheprovider --benchmark-only

Groups: ``parse`` (Signature-Input parsing, base building), ``keys`` (warm lookup,
cold JWKS load), ``verify-10k`` (the full verify of a 10 KiB RFC 9421 webhook next
to its floor and the peer library) and ``verify-v6-10k`` (the Upvest v6 dialect).
Every benchmark asserts on its result, so a broken path fails instead of timing an
exception. ``bench_verify.py`` is the interleaved side-by-side comparison.

The plain tests at the end check the scripts' own plumbing (body sizes on the
command line); run them with ``pytest benchmarks/test_benchmarks.py -k sizes``.
``tests/test_benchmark_harness.py`` runs ``python -m benchmarks`` in the suite, and
``tests/test_benchmark_receivers.py`` the other ``bench_receivers.py`` sections at tiny
counts (the servers under ``hey``); the in-process smoke test here also checks its profile.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

if importlib.util.find_spec("upvest_verify") is None:  # not installed: use the source tree
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_verify
from _cases import SIZES, URL, Case, build_case, floor_fn, peer_verifier
from _common import parse_size, parse_sizes, size_label
from cryptography.hazmat.primitives.asymmetric import ec

from upvest_verify import KeySet, VerifiedWebhook, Verifier, _sfv, verify
from upvest_verify._message import normalise_fields, request_message
from upvest_verify._verify import parse_signature_input, signature_base
from upvest_verify.testing import SigningKey, generate_key, make_jwks

Benchmark = Callable[..., Any]  # pytest-benchmark's fixture: benchmark(fn, *args) -> fn's result


@pytest.fixture(scope="module")
def key() -> SigningKey:
    """A P-521 signing key for the module."""
    return generate_key("P-521")


@pytest.fixture(scope="module")
def case(key: SigningKey) -> Case:
    """The 10 KiB webhook of bench_verify.py, signed in every variant."""
    return build_case(10 * 1024, key)


def _public(key: SigningKey) -> ec.EllipticCurvePublicKey:
    public = key.private_key.public_key()
    assert isinstance(public, ec.EllipticCurvePublicKey)
    return public


def _field(case: Case, name: str) -> str:
    return next(v for k, v in case.rfc_headers if k == name)


# --- parsing and base building ----------------------------------------------


@pytest.mark.benchmark(group="parse")
def test_parse_signature_input(benchmark: Benchmark, case: Case) -> None:
    """Parsing the Signature-Input dictionary yields the sig1 inner list of six components."""
    value = _field(case, "signature-input")
    result = benchmark(_sfv.parse_dictionary, value, allow_duplicates=False)
    assert len(result["sig1"][0]) == 6


@pytest.mark.benchmark(group="parse")
def test_signature_base(benchmark: Benchmark, case: Case) -> None:
    """Building the base from a parsed signature input reproduces the signed base."""
    message = request_message("POST", URL, normalise_fields(case.rfc_headers))
    sig = parse_signature_input(message, "sig1")
    assert benchmark(signature_base, message, sig, "rfc9421") == case.rfc_base


@pytest.mark.benchmark(group="parse")
def test_parse_and_build_base(benchmark: Benchmark, case: Case) -> None:
    """Headers to base (normalise, parse both signature headers, validate, build) is exact."""

    def run() -> bytes:
        message = request_message("POST", URL, normalise_fields(case.rfc_headers))
        return signature_base(message, parse_signature_input(message, "sig1"), "rfc9421")

    assert benchmark(run) == case.rfc_base


# --- keys ---------------------------------------------------------------------


@pytest.mark.benchmark(group="keys")
def test_key_lookup_warm(benchmark: Benchmark, case: Case, key: SigningKey) -> None:
    """A warm KeySet.lookup returns the key for a known kid."""
    assert benchmark(case.keys.lookup, key.kid).kid == key.kid


@pytest.mark.benchmark(group="keys")
def test_keyset_from_jwks_cold(benchmark: Benchmark, key: SigningKey) -> None:
    """Loading a two-key JWKS document (JSON bytes, as fetched) yields both keys."""
    import json

    other = generate_key("P-521")
    document = json.dumps(make_jwks(key, other)).encode()
    keys = benchmark(KeySet.from_jwks, document)
    assert sorted(keys) == sorted([key.kid, other.kid])


# --- full verify, 10 KiB --------------------------------------------------------


@pytest.mark.benchmark(group="verify-10k")
def test_floor_10k(benchmark: Benchmark, case: Case, key: SigningKey) -> None:
    """The floor (SHA-512 of the body plus one P-521 verify) accepts the signed base."""
    floor = floor_fn(case.body, case.rfc_base, case.rfc_der, _public(key), "sha512")
    benchmark(floor)  # raises cryptography's InvalidSignature if the inputs were wrong
    assert case.rfc_der[:1] == b"\x30"


@pytest.mark.benchmark(group="verify-10k")
def test_verifier_10k(benchmark: Benchmark, case: Case, key: SigningKey) -> None:
    """A warm Verifier verifies the 10 KiB RFC 9421 webhook."""
    verifier = Verifier(case.keys)
    result = benchmark(verifier.verify, "POST", URL, case.rfc_headers, case.body)
    assert isinstance(result, VerifiedWebhook)
    assert (result.key_id, str(result.dialect)) == (key.kid, "rfc9421/der/content-digest")


@pytest.mark.benchmark(group="verify-10k")
def test_verify_function_10k(benchmark: Benchmark, case: Case) -> None:
    """Plain verify() verifies the 10 KiB RFC 9421 webhook."""
    result = benchmark(verify, "POST", URL, case.rfc_headers, case.body, keys=case.keys)
    assert str(result.dialect) == "rfc9421/der/content-digest"


@pytest.mark.benchmark(group="verify-10k")
def test_peer_10k(benchmark: Benchmark, case: Case, key: SigningKey) -> None:
    """http-message-signatures verifies the same webhook, Content-Digest included."""
    pytest.importorskip("http_message_signatures")
    peer = peer_verifier(key.kid, _public(key))
    results = benchmark(
        peer.verify, case.peer_request, body=case.body, require_components=("@method", "@path")
    )
    assert len(results) == 1
    assert results[0].body == case.body


# --- Upvest v6 dialect, 10 KiB ----------------------------------------------------


@pytest.mark.benchmark(group="verify-v6-10k")
def test_v6_floor_10k(benchmark: Benchmark, case: Case, key: SigningKey) -> None:
    """The v6 floor (SHA-256 of the body plus one P-521 verify) accepts the v6 base."""
    floor = floor_fn(case.body, case.v6_base, case.v6_der, _public(key), "sha256")
    benchmark(floor)
    assert case.v6_base.startswith(b"@method: POST\n")


@pytest.mark.benchmark(group="verify-v6-10k")
def test_v6_verifier_10k(benchmark: Benchmark, case: Case) -> None:
    """A warm Verifier verifies the 10 KiB Upvest v6 webhook after learning its layout."""
    verifier = Verifier(case.keys)
    result = benchmark(verifier.verify, "POST", URL, case.v6_headers, case.body)
    assert str(result.dialect) == "upvest-v6/der/digest"


# --- the scripts' plumbing (no pytest-benchmark) ------------------------------------


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("512", 512),
        ("1K", 1024),
        ("1k", 1024),
        ("10K", 10 * 1024),
        ("1M", 1024**2),
        ("1KiB", 1024),
        ("1kb", 1024),
        ("64B", 64),
        ("1.5K", 1536),
        (" 2M ", 2 * 1024**2),
    ],
)
def test_sizes_parse_as_the_help_says(text: str, size: int) -> None:
    """--sizes takes what its help shows (1K,10K,1M) as well as bytes."""
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "K", "1Q", "-1K", "0", "0.3", "1.0001K", "1 K B"])
def test_bad_sizes_are_refused(text: str) -> None:
    """A size that is not a positive whole number of bytes is a ValueError."""
    with pytest.raises(ValueError, match=r"size|bytes"):
        parse_size(text)


def test_size_lists_and_labels() -> None:
    """The default list of the help text round-trips through the labels."""
    assert parse_sizes("1K,10K,1M") == SIZES
    assert [size_label(s) for s in parse_sizes("1K,10K,1M,300")] == [
        "1 KiB",
        "10 KiB",
        "1 MiB",
        "300 B",
    ]


def test_bench_verify_runs_with_sizes_1k(tmp_path: Path) -> None:
    """``bench_verify.py --sizes 1K`` (it used to crash) runs and writes its figures."""
    out = tmp_path / "verify.json"
    assert bench_verify.main(["--sizes", "1K", "--quick", "--rounds", "2", "--json", str(out)]) == 0
    import json

    document = json.loads(out.read_text(encoding="utf-8"))
    assert [entry["size"] for entry in document["sizes"]] == [1024]
    assert {"floor", "Verifier", "verify()"} <= set(document["sizes"][0]["contenders"])


def test_bench_verify_refuses_a_bad_size() -> None:
    """A size it cannot read is a usage error (exit status 2), not a traceback."""
    with pytest.raises(SystemExit) as exc:
        bench_verify.main(["--sizes", "1K,lots"])
    assert exc.value.code == 2


# --- bench_receivers.py at tiny counts (no speed is checked) -----------------------


def test_receivers_inprocess_smoke() -> None:
    """Every contender answers 200 and is timed; the profile names the pieces."""
    import bench_receivers

    result = bench_receivers.inprocess_section(runs=1, rounds=2, batch_ms=0.5)
    assert len(result["runs"]) == 1
    for name in bench_receivers.RATIOS:
        assert result["/".join(name)]["paired_median"]["median"] > 0
    profile = result["profile"]
    assert set(profile["per_request_us_without_ecdsa"]) == {
        "floor",
        "hand-written",
        "middleware",
        "verify",
    }
    assert "read_head: one dict() of the header lines" in profile["pieces_ns"]
