"""Side-by-side benchmark of a full webhook verification against its cost floor and a peer.

Run from the repository root::

    python benchmarks/bench_verify.py            # full run (about a minute)
    python benchmarks/bench_verify.py --quick    # smoke test (< 20 s)
    python benchmarks/bench_verify.py --stages   # also break our overhead down per stage
    python benchmarks/bench_verify.py --sizes 1K,64K --json verify.json

The webhook covers six components, ``@method @path content-type content-length
content-digest date``, with an RFC 9421 (quoted) base, a DER signature and a P-521
key; the body is 1 KiB, 10 KiB or 1 MiB of JSON. Contenders, timed interleaved
(the order rotates every round, many rounds, median per-call time reported):

* **floor**: SHA-512 of the body plus one ``cryptography`` ECDSA P-521/SHA-512
  verify of a precomputed DER signature over the precomputed base. No
  verifier can do less and still check both the body and the signature.
* **Verifier**: ``Verifier(KeySet).verify(method, url, headers, body)``, warm (it
  has learned the base layout).
* **verify()**: plain ``upvest_verify.verify(..., keys=...)``.
* **peer**: PyPI ``http-message-signatures`` (``HTTPMessageVerifier``) with a P-521
  algorithm class defined here, a raw ``r||s`` signature over the same base, and
  ``verify(..., body=body)`` so that it checks ``Content-Digest`` against the body
  too (which it does only when given the body). Left out, with a notice, when the
  package is not installed.

The Upvest v6 dialect (``Digest: SHA-256=``, unquoted base lines) is measured in the
same rounds against its own floor (SHA-256 plus one verify); the peer cannot build
an unquoted base, so it has no v6 column.

Exit status is non-zero if any contender fails to verify its request, or if ours or the
peer accepts a tampered body or signature (the floor must reject a tampered base).
"""

from __future__ import annotations

import argparse
import base64
import gc
import hashlib
import importlib.util
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if importlib.util.find_spec("upvest_verify") is None:  # not installed: use the source tree
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import cryptography
from _common import describe_machine, parse_sizes, size_label, write_json
from cryptography.exceptions import InvalidSignature as CryptoInvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from upvest_verify import KeySet, VerifiedWebhook, Verifier, verify
from upvest_verify.testing import SigningKey, generate_key, make_key_set, sign_webhook

__all__ = [
    "COMPONENTS",
    "HAVE_PEER",
    "SIZES",
    "V6_COMPONENTS",
    "Case",
    "Contender",
    "PeerRequest",
    "build_case",
    "floor_fn",
    "machine_info",
    "main",
    "make_body",
    "negative_checks",
    "peer_verifier",
]

COMPONENTS = ("@method", "@path", "content-type", "content-length", "content-digest", "date")
"""The covered components of the RFC 9421 webhook."""

V6_COMPONENTS = ("@method", "@path", "content-type", "content-length", "digest", "date")
"""The covered components of the Upvest v6 webhook."""

SIZES = (1024, 10 * 1024, 1024 * 1024)
"""Body sizes in bytes."""

URL = "https://hooks.example.com/webhooks/upvest"
TTL = 3000  # seconds: the signatures must stay valid for the whole run
# Uncovered fields a webhook picks up on its way through a proxy; every verifier
# walks all header lines, so they belong in a realistic request.
EXTRA_HEADERS = (
    ("user-agent", "Upvest-Webhooks/1.0"),
    ("accept-encoding", "gzip"),
    ("x-forwarded-for", "203.0.113.7"),
    ("x-forwarded-proto", "https"),
)
_ECDSA_SHA512 = ec.ECDSA(hashes.SHA512())
V6 = "upvest-v6"
HAVE_PEER = importlib.util.find_spec("http_message_signatures") is not None
"""Whether the peer library is installed (its column is left out otherwise)."""


# ---------------------------------------------------------------------------
# The peer: http-message-signatures with a P-521 algorithm
# ---------------------------------------------------------------------------


@dataclass
class PeerRequest:
    """The minimal request object ``http-message-signatures`` resolves components from.

    Attributes:
        method: Upper-case method.
        url: Absolute URL.
        headers: Field name to value (``items()`` is all the peer reads).
    """

    method: str
    url: str
    headers: dict[str, str] = field(default_factory=dict)


def peer_verifier(kid: str, public_key: ec.EllipticCurvePublicKey) -> Any:
    """Build an ``HTTPMessageVerifier`` for ECDSA P-521/SHA-512 with one key.

    ``http-message-signatures`` ships P-256 and P-384 only; its ECDSA base class
    takes the curve, hash and scalar size from class attributes, so P-521 is a
    three-line subclass. It expects raw ``r||s`` signatures (RFC 9421 §3.3.4).

    Args:
        kid: The key id.
        public_key: The P-521 public key.

    Returns:
        The configured verifier.
    """
    from http_message_signatures import HTTPMessageVerifier, MappingKeyResolver
    from http_message_signatures._algorithms import _ECDSA

    class ECDSA_P521_SHA512(_ECDSA):
        algorithm_id = "ecdsa-p521-sha512"
        _curve = ec.SECP521R1
        _hash = hashes.SHA512
        _coordinate_size = 66

    return HTTPMessageVerifier(
        signature_algorithm=ECDSA_P521_SHA512,
        key_resolver=MappingKeyResolver(public_keys={kid: public_key}, private_keys={}),
    )


# ---------------------------------------------------------------------------
# Requests and contenders
# ---------------------------------------------------------------------------


def make_body(size: int) -> bytes:
    """Return a ``{"payload": [...]}`` JSON body of exactly ``size`` bytes.

    Args:
        size: Length in bytes (at least 64).

    Returns:
        The body.
    """
    event = {
        "id": "6b8b3f5e-7f0d-4f7a-9a53-0c1e7c2f6a11",
        "created_at": "2024-05-06T07:08:09.123456789Z",
        "type": "ORDER.FILLED",
        "object": {"id": "1f0e3c0a-2b5d-4c1e-8f7a-3d9b6e4c2a10", "status": "FILLED"},
        "webhook_id": "9df39835-8a1e-4a8c-9f1d-3c6f1f0f4d2b",
    }
    one = len(json.dumps(event, separators=(",", ":"))) + 1
    events = [event] * max(0, (size - 64) // one)
    head = json.dumps({"payload": events}, separators=(",", ":"))[:-1]
    pad = size - len(head) - len(',"pad":""}')
    if pad < 0:
        raise ValueError(f"size {size} is too small")
    body = (head + ',"pad":"' + "x" * pad + '"}').encode()
    assert len(body) == size
    return body


@dataclass
class Case:
    """One body size: the signed requests and the floor's precomputed inputs.

    Attributes:
        size: Body size in bytes.
        body: The body.
        key: The signing key.
        keys: The key set holding its public half.
        rfc_headers: Field lines of the RFC 9421 request (DER signature).
        rfc_base: Its signature base.
        rfc_der: The DER signature over ``rfc_base`` the floor verifies.
        peer_request: The same request with a raw ``r||s`` signature, for the peer.
        v6_headers: Field lines of the Upvest v6 request (DER signature).
        v6_base: Its signature base.
        v6_der: The DER signature over ``v6_base``.
    """

    size: int
    body: bytes
    key: SigningKey
    keys: KeySet
    rfc_headers: list[tuple[str, str]]
    rfc_base: bytes
    rfc_der: bytes
    peer_request: PeerRequest
    v6_headers: list[tuple[str, str]]
    v6_base: bytes
    v6_der: bytes


def _signature_bytes(headers: Sequence[tuple[str, str]]) -> bytes:
    value = next(v for k, v in headers if k == "signature")
    return base64.b64decode(value.split(":")[1])


def build_case(size: int, key: SigningKey) -> Case:
    """Sign the RFC 9421, peer and v6 requests for one body size.

    Args:
        size: Body size in bytes.
        key: A P-521 signing key.

    Returns:
        The case.
    """
    body = make_body(size)
    created = int(time.time())
    common: dict[str, Any] = {
        "key": key,
        "url": URL,
        "created": created,
        "ttl": TTL,
        "nonce": "b3f0c2d1e4a5968778695a4b3c2d1e0f",
        "headers": EXTRA_HEADERS,
    }
    rfc = sign_webhook(body, dialect="rfc9421", components=COMPONENTS, encoding="der", **common)
    raw = sign_webhook(body, dialect="rfc9421", components=COMPONENTS, encoding="raw", **common)
    v6 = sign_webhook(body, dialect="upvest-v6", components=V6_COMPONENTS, encoding="der", **common)
    assert raw.base == rfc.base, "the peer must verify the same base"
    return Case(
        size=size,
        body=body,
        key=key,
        keys=make_key_set(key),
        rfc_headers=list(rfc.headers),
        rfc_base=rfc.base,
        rfc_der=_signature_bytes(rfc.headers),
        peer_request=PeerRequest("POST", raw.url, dict(raw.headers)),
        v6_headers=list(v6.headers),
        v6_base=v6.base,
        v6_der=_signature_bytes(v6.headers),
    )


def floor_fn(
    body: bytes, base: bytes, der: bytes, public_key: ec.EllipticCurvePublicKey, sha: str
) -> Callable[[], None]:
    """Return the floor: one body hash plus one ECDSA P-521/SHA-512 verify.

    Args:
        body: The body to hash.
        base: The precomputed signature base.
        der: The precomputed DER signature.
        public_key: The key.
        sha: ``"sha512"`` (RFC 9421 ``Content-Digest``) or ``"sha256"`` (v6 ``Digest``).

    Returns:
        A zero-argument callable.
    """
    hasher = hashlib.sha512 if sha == "sha512" else hashlib.sha256
    verify_ecdsa = public_key.verify
    algorithm = _ECDSA_SHA512

    def floor() -> None:
        hasher(body).digest()
        verify_ecdsa(der, base, algorithm)

    return floor


@dataclass
class Contender:
    """A named zero-argument callable and its per-round per-call times (ns).

    Attributes:
        name: Column name.
        fn: The call to time.
        check: Runs the call once and returns True if it verified.
        samples: Per-call nanoseconds, one per round.
    """

    name: str
    fn: Callable[[], object]
    check: Callable[[], bool]
    samples: list[float] = field(default_factory=list)

    @property
    def median_us(self) -> float:
        """Median per-call time in microseconds."""
        return statistics.median(self.samples) / 1000

    @property
    def best_us(self) -> float:
        """Per-call time of the fastest batch, in microseconds."""
        return min(self.samples) / 1000


def _contenders(case: Case) -> list[Contender]:
    public_key = case.key.private_key.public_key()
    assert isinstance(public_key, ec.EllipticCurvePublicKey)
    body, keys = case.body, case.keys
    rfc_headers, v6_headers = case.rfc_headers, case.v6_headers
    rfc_verifier = Verifier(keys)
    v6_verifier = Verifier(keys)
    peer = peer_verifier(case.key.kid, public_key) if HAVE_PEER else None
    peer_request = case.peer_request
    peer_required = ("@method", "@path")

    def ok_ours(result: object, layout: str) -> bool:
        return isinstance(result, VerifiedWebhook) and result.dialect.layout == layout

    def peer_call() -> object:
        return peer.verify(peer_request, body=body, require_components=peer_required)

    def peer_ok() -> bool:
        results = peer_call()
        return bool(
            isinstance(results, list)
            and len(results) == 1
            and results[0].body == body
            and results[0].parameters.get("keyid") == case.key.kid
        )

    def floor_ok(fn: Callable[[], None]) -> bool:
        fn()  # raises cryptography's InvalidSignature if the precomputed inputs are wrong
        return True

    floor_rfc = floor_fn(body, case.rfc_base, case.rfc_der, public_key, "sha512")
    floor_v6 = floor_fn(body, case.v6_base, case.v6_der, public_key, "sha256")

    def rfc_verifier_call() -> object:
        return rfc_verifier.verify("POST", URL, rfc_headers, body)

    def rfc_verify_call() -> object:
        return verify("POST", URL, rfc_headers, body, keys=keys)

    def v6_verifier_call() -> object:
        return v6_verifier.verify("POST", URL, v6_headers, body)

    def v6_verify_call() -> object:
        return verify("POST", URL, v6_headers, body, keys=keys)

    contenders = [
        Contender("floor", floor_rfc, lambda: floor_ok(floor_rfc)),
        Contender("Verifier", rfc_verifier_call, lambda: ok_ours(rfc_verifier_call(), "rfc9421")),
        Contender("verify()", rfc_verify_call, lambda: ok_ours(rfc_verify_call(), "rfc9421")),
        Contender("peer", peer_call, peer_ok),
        Contender("v6 floor", floor_v6, lambda: floor_ok(floor_v6)),
        Contender("v6 Verifier", v6_verifier_call, lambda: ok_ours(v6_verifier_call(), V6)),
        Contender("v6 verify()", v6_verify_call, lambda: ok_ours(v6_verify_call(), V6)),
    ]
    return [c for c in contenders if c.name != "peer" or peer is not None]


def _tampered_signature(value: str) -> str:
    """Flip one bit inside the base64 of a ``label=:...:`` Signature value."""
    label, _, rest = value.partition("=:")
    raw = bytearray(base64.b64decode(rest.rstrip(":")))
    raw[len(raw) // 2] ^= 0x01
    return f"{label}=:{base64.b64encode(bytes(raw)).decode()}:"


def negative_checks(case: Case) -> list[str]:
    """Make sure every contender really checks: a tampered body or signature must fail.

    Args:
        case: The case whose requests to tamper with.

    Returns:
        Descriptions of tampered requests that were wrongly accepted (empty if none).
    """
    from upvest_verify import VerificationError

    public_key = case.key.private_key.public_key()
    assert isinstance(public_key, ec.EllipticCurvePublicKey)
    body = case.body[:-2] + b"y}"
    failures = []
    for name, headers in (("rfc9421", case.rfc_headers), ("v6", case.v6_headers)):
        bad_sig = [(k, _tampered_signature(v) if k == "signature" else v) for k, v in headers]
        for what, h, b in (("body", headers, body), ("signature", bad_sig, case.body)):
            try:
                verify("POST", URL, h, b, keys=case.keys)
            except VerificationError:
                continue
            except Exception as e:
                failures.append(f"ours ({name}) raised {type(e).__name__} on a tampered {what}")
                continue
            failures.append(f"ours ({name}) accepted a tampered {what}")
    if HAVE_PEER:
        failures += _peer_negative_checks(case, public_key, body)
    bad_base = case.rfc_base.replace(b"POST", b"PUT", 1)
    try:
        floor_fn(case.body, bad_base, case.rfc_der, public_key, "sha512")()
    except CryptoInvalidSignature:
        pass
    else:
        failures.append("the floor accepted a tampered base")
    return failures


def _peer_negative_checks(
    case: Case, public_key: ec.EllipticCurvePublicKey, body: bytes
) -> list[str]:
    from http_message_signatures import InvalidSignature as PeerInvalid

    failures = []
    peer = peer_verifier(case.key.kid, public_key)
    req = case.peer_request
    bad_req = PeerRequest(
        req.method,
        req.url,
        {k: _tampered_signature(v) if k == "signature" else v for k, v in req.headers.items()},
    )
    for what, r, b in (("body", req, body), ("signature", bad_req, case.body)):
        try:
            peer.verify(r, body=b, require_components=("@method", "@path"))
        except PeerInvalid:
            continue
        except Exception as e:
            failures.append(f"peer raised {type(e).__name__} on a tampered {what}")
            continue
        failures.append(f"peer accepted a tampered {what}")
    return failures


# ---------------------------------------------------------------------------
# Timing
# ---------------------------------------------------------------------------


def _time_batch(fn: Callable[[], object], n: int) -> float:
    """Per-call nanoseconds of ``n`` back-to-back calls, with the collector off.

    One untimed call comes first, so the batch starts in the contender's own
    steady state (caches and branch predictors as a receiver doing only this
    would have them), not in whatever the previous contender left behind.
    """
    clock = time.perf_counter_ns
    gc_was_on = gc.isenabled()
    gc.disable()
    try:
        fn()
        start = clock()
        for _ in range(n):
            fn()
        elapsed = clock() - start
    finally:
        if gc_was_on:
            gc.enable()
    return elapsed / n


def run_interleaved(
    contenders: Sequence[Contender], rounds: int, batch_ms: float, warmup: int
) -> None:
    """Time all contenders round by round, rotating their order every round.

    Args:
        contenders: What to time; samples are appended to each.
        rounds: Number of rounds.
        batch_ms: Target duration of each contender's batch in one round; every
            contender gets a batch size of its own, from its warm cost.
        warmup: Untimed calls per contender before the first round.
    """
    for c in contenders:
        for _ in range(warmup):
            c.fn()
    sizes = [max(1, round(batch_ms * 1e6 / _time_batch(c.fn, 5))) for c in contenders]
    k = len(contenders)
    for r in range(rounds):
        for i in range(k):
            j = (r + i) % k
            contenders[j].samples.append(_time_batch(contenders[j].fn, sizes[j]))


def _paired_ratio(a: Contender, b: Contender) -> tuple[float, float, float]:
    """Median and quartiles of the per-round ratio a/b (robust to load changing between rounds)."""
    ratios = sorted(x / y for x, y in zip(a.samples, b.samples, strict=True))
    if len(ratios) < 4:
        m = statistics.median(ratios)
        return m, ratios[0], ratios[-1]
    q1, q2, q3 = statistics.quantiles(ratios, n=4)
    return q2, q1, q3


def machine_info() -> str:
    """One line: Python, cryptography, OpenSSL and CPU facts, and the current load average."""
    from cryptography.hazmat.backends.openssl.backend import backend

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            cpu = next(
                (line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu
            )
    except OSError:
        pass
    return (
        f"Python {platform.python_version()} ({platform.python_implementation()}), "
        f"cryptography {cryptography.__version__} ({backend.openssl_version_text()}), "
        f"{os.cpu_count()} CPUs ({cpu}), {platform.system()} {platform.release()}"
        f"{_load()}"
    )


def _load() -> str:
    try:
        return ", load average {:.2f} {:.2f} {:.2f}".format(*os.getloadavg())
    except OSError:  # pragma: no cover - not on every platform
        return ""


# ---------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------


RATIOS = (
    ("ours/floor", "Verifier", "floor"),
    ("verify()/floor", "verify()", "floor"),
    ("peer/floor", "peer", "floor"),
    ("ours/peer", "Verifier", "peer"),
    ("v6 ours/floor", "v6 Verifier", "v6 floor"),
)
"""Ratios reported per size: (label, numerator contender, denominator contender)."""


def summarise(rows: Sequence[tuple[Case, Sequence[Contender]]]) -> list[dict[str, Any]]:
    """The figures of a run, one entry per body size, for ``--json`` and the plots.

    Args:
        rows: Each size's case and its timed contenders.

    Returns:
        Per size: ``size``; per contender the median, quartiles and fastest batch in
        µs per call; per ratio of :data:`RATIOS` the paired per-round median and
        quartiles, the ratio of medians and the ratio of the fastest batches.
    """
    out = []
    for case, cs in rows:
        by = {c.name: c for c in cs}
        contenders = {}
        for c in cs:
            q1, _median, q3 = (
                statistics.quantiles(c.samples, n=4) if len(c.samples) >= 2 else [c.samples[0]] * 3
            )
            contenders[c.name] = {
                "median_us": round(c.median_us, 3),
                "q1_us": round(q1 / 1000, 3),
                "q3_us": round(q3 / 1000, 3),
                "best_us": round(c.best_us, 3),
                "rounds": len(c.samples),
            }
        ratios = {}
        for label, a, b in RATIOS:
            if a in by and b in by:
                m, lo, hi = _paired_ratio(by[a], by[b])
                ratios[label] = {
                    "paired_median": round(m, 4),
                    "paired_q1": round(lo, 4),
                    "paired_q3": round(hi, 4),
                    "of_medians": round(by[a].median_us / by[b].median_us, 4),
                    "of_fastest": round(by[a].best_us / by[b].best_us, 4),
                }
        out.append({"size": case.size, "contenders": contenders, "ratios": ratios})
    return out


def _print_tables(rows: Sequence[tuple[Case, Sequence[Contender]]]) -> None:
    peer_note = "raw r||s" if HAVE_PEER else "not installed, left out"
    print(f"\nRFC 9421 webhook: quoted base, Content-Digest sha-512, DER (peer: {peer_note})")
    header = (
        f"{'size':>8} {'floor µs':>9} {'ours µs':>9} {'ours/floor':>10} {'verify() µs':>11}"
        f" {'peer µs':>9} {'peer/floor':>10} {'ours/peer':>9}"
    )
    print(header)
    print("-" * len(header))
    for case, cs in rows:
        by = {c.name: c for c in cs}
        floor, ours, plain, peer = by["floor"], by["Verifier"], by["verify()"], by.get("peer")
        peer_cells = (
            f" {peer.median_us:9.1f} {peer.median_us / floor.median_us:10.3f}"
            f" {ours.median_us / peer.median_us:9.3f}"
            if peer
            else f" {'-':>9} {'-':>10} {'-':>9}"
        )
        print(
            f"{size_label(case.size):>8} {floor.median_us:9.1f} {ours.median_us:9.1f}"
            f" {ours.median_us / floor.median_us:10.3f} {plain.median_us:11.1f}" + peer_cells
        )
    print("\nUpvest v6 webhook: unquoted base, Digest SHA-256, DER (peer: cannot build this base)")
    header = (
        f"{'size':>8} {'floor µs':>9} {'ours µs':>9} {'ours/floor':>10}"
        f" {'verify() µs':>11} {'verify()/floor':>14}"
    )
    print(header)
    print("-" * len(header))
    for case, cs in rows:
        by = {c.name: c for c in cs}
        floor, ours, plain = by["v6 floor"], by["v6 Verifier"], by["v6 verify()"]
        print(
            f"{size_label(case.size):>8} {floor.median_us:9.1f} {ours.median_us:9.1f}"
            f" {ours.median_us / floor.median_us:10.3f} {plain.median_us:11.1f}"
            f" {plain.median_us / floor.median_us:14.3f}"
        )
    pairs = [p for p in RATIOS if p[0] in ("ours/floor", "peer/floor", "v6 ours/floor")]
    print("\nPaired per-round ratios, median [quartiles] (robust to load changing between rounds):")
    for case, cs in rows:
        by = {c.name: c for c in cs}
        parts = []
        for label, a, b in pairs:
            if a in by and b in by:
                m, lo, hi = _paired_ratio(by[a], by[b])
                parts.append(f"{label} {m:.3f} [{lo:.3f}-{hi:.3f}]")
        print(f"  {size_label(case.size):>8}: " + ", ".join(parts))
    print("Ratios of the fastest batches (least disturbed by other work on the machine):")
    for case, cs in rows:
        by = {c.name: c for c in cs}
        parts = [
            f"{label} {by[a].best_us / by[b].best_us:.3f}"
            for label, a, b in pairs
            if a in by and b in by
        ]
        print(f"  {size_label(case.size):>8}: " + ", ".join(parts))


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark and print the table.

    Args:
        argv: Command-line arguments (``--quick``, ``--stages``, ``--rounds N``,
            ``--sizes 1K,10K,1M``, ``--json PATH``).

    Returns:
        The exit status: 0, or 1 if a contender failed to verify.
    """
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="few rounds: a smoke test")
    parser.add_argument("--rounds", type=int, default=None, help="rounds per size")
    parser.add_argument("--stages", action="store_true", help="per-stage breakdown at 10 KiB")
    parser.add_argument(
        "--sizes",
        default=None,
        help="comma-separated body sizes: bytes or with K/M (default 1K,10K,1M; at least 64)",
    )
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args(argv)
    rounds = args.rounds or (12 if args.quick else 201)
    batch_ms = 5.0 if args.quick else 10.0
    warmup = 5 if args.quick else 30
    try:
        sizes = parse_sizes(args.sizes) if args.sizes else SIZES
    except ValueError as e:
        parser.error(f"--sizes: {e}")
    if not sizes or min(sizes) < 64:
        parser.error("--sizes: give at least one size, each at least 64 bytes")

    print(machine_info())
    print(
        f"{rounds} rounds per size, contenders interleaved (order rotates each round), "
        f"~{batch_ms:g} ms batches after one untimed call, gc off while timing;"
        " medians of per-call time."
    )
    if not HAVE_PEER:
        print("http-message-signatures is not installed: the peer column is left out")
    key = generate_key("P-521")
    failures = 0
    rows: list[tuple[Case, list[Contender]]] = []
    started = time.perf_counter()
    for size in sizes:
        case = build_case(size, key)
        contenders = _contenders(case)
        for c in contenders:
            try:
                verified = c.check()
            except Exception as e:
                print(f"FAIL {c.name} @ {size_label(size)}: {type(e).__name__}: {e}")
                verified = False
            else:
                if not verified:
                    print(f"FAIL {c.name} @ {size_label(size)}: did not verify")
            failures += not verified
        for failure in negative_checks(case):
            print(f"FAIL @ {size_label(size)}: {failure}")
            failures += 1
        if failures:
            continue
        run_interleaved(contenders, rounds, batch_ms, warmup)
        for c in contenders:  # still valid after the timing loop (no expiry, no state drift)
            if not c.check():
                print(f"FAIL {c.name} @ {size_label(size)}: stopped verifying while timed")
                failures += 1
        rows.append((case, contenders))
    if failures:
        return 1

    _print_tables(rows)
    if args.stages:
        from verify_stages import print_stages

        for case, _cs in rows:
            if case.size == 10 * 1024 or len(rows) == 1:
                print_stages(case, args.quick)
    elapsed = time.perf_counter() - started
    print(f"\nall contenders verified; {elapsed:.1f} s{_load()}")
    if args.json:
        write_json(
            args.json,
            {
                "benchmark": "verify",
                "machine": describe_machine(),
                "rounds": rounds,
                "batch_ms": batch_ms,
                "peer": "http-message-signatures" if HAVE_PEER else None,
                "seconds": round(elapsed, 1),
                "sizes": summarise(rows),
            },
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
