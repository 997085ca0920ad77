"""Per-stage breakdown of our cost beyond the floor (``bench_verify.py --stages``).

Kept apart from ``bench_verify.py``, which imports it only for ``--stages``.
"""

from __future__ import annotations

import hashlib
import statistics
import time
from collections.abc import Callable

from _cases import URL, Case
from _common import size_label
from bench_verify import time_batch

from upvest_verify import VerifiedWebhook, Verifier

__all__ = ["print_stages", "stage_fns"]


def stage_fns(case: Case) -> tuple[list[tuple[str, Callable[[], object]]], Callable[[], object]]:
    """The stages of the strict RFC 9421 verify path as separately callable pieces.

    Returns:
        ``(stages, full)``: named stage callables in execution order, each fed the
        output of the previous stages (precomputed), and the full ``Verifier.verify``.
    """
    from upvest_verify import Policy
    from upvest_verify._components import component_value
    from upvest_verify._crypto import decode_signature, verify_signature
    from upvest_verify._digest import BodyHasher, check_content_digest
    from upvest_verify._message import normalise_fields, request_message
    from upvest_verify._result import Dialect
    from upvest_verify._rules import (
        check_params,
        coverage_error,
        coverage_of,
        key_error,
        order_labels,
        time_window_error,
    )
    from upvest_verify._sfv import serialize_inner_list
    from upvest_verify._verify import parse_signature_input, parse_signatures, signature_base

    policy = Policy()
    body, keys, headers, kid = case.body, case.keys, case.rfc_headers, case.key.kid
    verifier = Verifier(keys, policy=policy)
    now = time.time()
    fields = normalise_fields(headers)
    message = request_message("POST", URL, fields)
    inputs, signatures = parse_signatures(message, policy)
    member = inputs["sig1"]
    items, params = member
    assert isinstance(items, list)
    sig = parse_signature_input(message, "sig1", policy)
    values = [component_value(message, c) for c in sig.components]
    digest_value = values[4][0]
    hasher = BodyHasher(body)
    hasher.digest("sha-512")  # the hash is the floor's; time only parsing and comparing
    key = keys.lookup(kid)
    der, _ = decode_signature(key.key_type, sig.signature, "auto")
    base = signature_base(message, sig, "rfc9421", values)
    assert base == case.rfc_base

    def checks() -> None:
        p = sig.params
        assert coverage_error(sig.coverage, policy, has_body=True, has_query=False) is None
        assert time_window_error(p.get("created"), p.get("expires"), now, policy) is None  # type: ignore[arg-type]
        found = keys.lookup(kid)
        assert key_error(found, kid, p.get("alg"), policy) is None

    def result() -> object:
        return VerifiedWebhook(
            key_id=kid,
            label=sig.label,
            covered_components=tuple(c.quoted for c in sig.components),
            created=sig.params.get("created"),  # type: ignore[arg-type]
            expires=sig.params.get("expires"),  # type: ignore[arg-type]
            nonce=sig.params.get("nonce"),  # type: ignore[arg-type]
            dialect=Dialect("rfc9421", "der", "content-digest"),
            body=body,
        )

    stages: list[tuple[str, Callable[[], object]]] = [
        ("header normalisation (normalise_fields)", lambda: normalise_fields(headers)),
        ("URL split + Message (request_message)", lambda: request_message("POST", URL, fields)),
        ("SF parsing, both headers (parse_signatures)", lambda: parse_signatures(message, policy)),
        (
            "label order (order_labels)",
            lambda: order_labels(
                [k for k in inputs if k in signatures],
                lambda label: inputs[label][1].get("keyid"),
                keys.__contains__,
                policy,
            ),
        ),
        ("  component ids (coverage_of)", lambda: coverage_of(items, policy.max_components)),
        ("  parameters (check_params)", lambda: check_params(params, policy)),
        ("  @signature-params (serialize_inner_list)", lambda: serialize_inner_list(items, params)),
        (
            "signature input, whole (parse_signature_input)",
            lambda: parse_signature_input(message, "sig1", policy),
        ),
        ("coverage + time + key lookup + alg", checks),
        (
            "component values (component_value x6)",
            lambda: [component_value(message, c) for c in sig.components],
        ),
        ("Content-Digest parse + compare", lambda: check_content_digest(digest_value, hasher)),
        ("DER check (decode_signature)", lambda: decode_signature("P-521", sig.signature, "auto")),
        ("base building (signature_base)", lambda: signature_base(message, sig, "rfc9421", values)),
        ("result object (VerifiedWebhook)", result),
        ("default Policy() (verify() only)", Policy),
        ("[floor] SHA-512 of the body", lambda: hashlib.sha512(body).digest()),
        ("[floor] ECDSA P-521 verify", lambda: verify_signature(key, der, base)),
    ]
    return stages, lambda: verifier.verify("POST", URL, headers, body)


def print_stages(case: Case, quick: bool) -> None:
    """Print what our path costs beyond the floor, whole and stage by stage.

    Everything is timed in isolation, interleaved round by round, with the ECDSA
    verify inside our path replaced by ``True``; the SHA-512 is subtracted from the
    whole-path lines. "In situ" runs the floor and then our stubbed path, minus the
    floor: our code as it runs for real, right after a P-521 verify has evicted its
    working set. The stage lines break down the strict path, which the fast path
    hands over to for anything but a canonical webhook. Medians and minima are both
    shown: on a loaded machine the minimum is the better estimate of intrinsic cost.
    """
    import upvest_verify._fast as fast
    import upvest_verify._verify as core
    from upvest_verify._crypto import verify_signature

    stages, full = stage_fns(case)
    key = case.keys.lookup(case.key.kid)
    body, base, der = case.body, case.rfc_base, case.rfc_der

    def floor() -> None:
        hashlib.sha512(body).digest()
        verify_signature(key, der, base)

    def floor_then_ours() -> None:
        floor()
        full()

    def strict() -> object:
        fast.ENABLED = False
        try:
            return full()
        finally:
            fast.ENABLED = True

    wholes = [
        ("fast path (Verifier.verify)", full),
        ("strict path (fast path off)", strict),
        ("[floor] SHA-512 + ECDSA verify", floor),
        ("floor, then the fast path", floor_then_ours),
    ]
    timed = [*stages, *wholes]
    samples: dict[str, list[float]] = {name: [] for name, _ in timed}
    repeats, number = (9, 20) if quick else (41, 60)
    real_verify = core.verify_signature  # type: ignore[attr-defined]
    core.verify_signature = lambda key, signature, message: True  # type: ignore[attr-defined]
    fast.verify_signature = core.verify_signature  # type: ignore[attr-defined]
    try:
        for _name, fn in timed:
            for _ in range(5):
                fn()
        for r in range(repeats):
            for i in range(len(timed)):
                name, fn = timed[(r + i) % len(timed)]
                samples[name].append(time_batch(fn, number))
    finally:
        core.verify_signature = real_verify  # type: ignore[attr-defined]
        fast.verify_signature = real_verify  # type: ignore[attr-defined]
    med = {name: statistics.median(v) / 1000 for name, v in samples.items()}
    low = {name: min(v) / 1000 for name, v in samples.items()}
    sha = "[floor] SHA-512 of the body"
    floor_name = "[floor] SHA-512 + ECDSA verify"
    print(
        f"\nCost beyond the floor, {size_label(case.size)} RFC 9421 webhook, µs per call"
        " (ECDSA stubbed in our path; interleaved rounds):"
    )
    print(f"  {'':<50} {'median':>8} {'min':>8}")
    for name, minus in (
        ("fast path (Verifier.verify)", sha),
        ("strict path (fast path off)", sha),
        ("floor, then the fast path", floor_name),
    ):
        label = "in situ: fast path right after a real verify" if minus == floor_name else name
        print(f"  {label:<50} {med[name] - med[minus]:8.2f} {low[name] - low[minus]:8.2f}")
    print("  strict path, stage by stage (indented lines are parts of the line below them):")
    for name, _ in stages:
        print(f"    {name:<48} {med[name]:8.2f} {low[name]:8.2f}")
    print(
        f"  budget for ours <= 1.05 x floor: {0.05 * med[floor_name]:.1f} µs"
        f" (median floor {med[floor_name]:.0f} µs)"
    )
