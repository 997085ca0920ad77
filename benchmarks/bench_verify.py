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
import importlib.util
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
from _cases import (
    HAVE_PEER,
    SIZES,
    URL,
    V6,
    Case,
    PeerRequest,
    build_case,
    floor_fn,
    peer_verifier,
)
from _common import describe_machine, parse_sizes, size_label, write_json
from cryptography.exceptions import InvalidSignature as CryptoInvalidSignature
from cryptography.hazmat.primitives.asymmetric import ec

from upvest_verify import VerifiedWebhook, Verifier, verify
from upvest_verify.testing import generate_key

__all__ = ["Contender", "machine_info", "main", "negative_checks", "time_batch"]


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


def time_batch(fn: Callable[[], object], n: int) -> float:
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
    sizes = [max(1, round(batch_ms * 1e6 / time_batch(c.fn, 5))) for c in contenders]
    k = len(contenders)
    for r in range(rounds):
        for i in range(k):
            j = (r + i) % k
            contenders[j].samples.append(time_batch(contenders[j].fn, sizes[j]))


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
