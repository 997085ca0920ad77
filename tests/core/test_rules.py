"""The acceptance rules (``_rules.py``), tested directly at every boundary."""

from __future__ import annotations

from typing import Any

import pytest

from upvest_verify import Policy, Reason, VerificationError
from upvest_verify._components import Component, parse_component
from upvest_verify._rules import (
    DEFAULT_LAYOUTS,
    QUERY_COVERAGE,
    SIGNATURE_PARAMETERS,
    V6_FIRST,
    Coverage,
    bad_signature,
    check_params,
    choose_layouts,
    coverage_error,
    coverage_of,
    covered_size_error,
    head_error,
    key_error,
    label_allowed,
    order_labels,
    time_window_error,
)
from upvest_verify.testing import generate_key

NOW = 1_700_000_000
POLICY = Policy()


def comp(component: str, **params: Any) -> Component:
    """A validated component identifier."""
    return parse_component((component, params))


def cov(*names: str) -> Coverage:
    """The coverage of plain component names."""
    return Coverage.of(tuple(comp(n) for n in names))


def assert_error(
    error: VerificationError | None,
    reason: Reason,
    message: str,
    key_id: str | None = None,
    signed_at: int | None = None,
) -> None:
    """The rule returned exactly this error."""
    assert error is not None
    assert error.reason is reason
    assert error.message == message
    assert error.key_id == key_id
    assert error.signed_at == signed_at


# --- Coverage ---------------------------------------------------------------------------


def test_coverage_summary_of_plain_components() -> None:
    """Names, quoted identifiers and digest positions are read off the list."""
    c = cov("@method", "@path", "content-digest", "date")
    assert c.names == {"@method", "@path", "content-digest", "date"}
    assert c.quoted == ('"@method"', '"@path"', '"content-digest"', '"date"')
    assert c.digests == (2,)
    assert not c.covers_query
    assert c.first_layouts is DEFAULT_LAYOUTS


def test_coverage_names_only_plain_or_sf_components() -> None:
    """A component with ;key, ;bs or a query-param name does not count as covering its name."""
    c = Coverage.of(
        (
            comp("content-digest", sf=True),
            comp("digest", bs=True),
            comp("example-dict", key="a"),
            comp("@query-param", name="a"),
        )
    )
    assert c.names == {"content-digest"}
    assert c.digests == (0,)
    assert c.quoted[0] == '"content-digest";sf'


def test_coverage_digest_with_key_is_not_a_body_digest() -> None:
    """content-digest;key=... selects one member, so it does not cover the body."""
    c = Coverage.of((comp("content-digest", key="sha-512"), comp("digest")))
    assert c.digests == (1,)


@pytest.mark.parametrize("name", sorted(QUERY_COVERAGE))
def test_coverage_query_components(name: str) -> None:
    """@query, @target-uri and @request-target each cover the query."""
    assert cov("@method", name).covers_query


@pytest.mark.parametrize(
    ("names", "first"),
    [
        (("@method", "digest", "content-digest"), V6_FIRST),
        (("@method", "content-digest", "digest"), DEFAULT_LAYOUTS),
        (("@method",), DEFAULT_LAYOUTS),
    ],
    ids=["digest-first", "content-digest-first", "none"],
)
def test_coverage_first_layouts(names: tuple[str, ...], first: tuple[str, ...]) -> None:
    """The first covered digest field decides which layout is tried first."""
    assert cov(*names).first_layouts == first


def test_coverage_first_layouts_ignores_component_parameters() -> None:
    """A digest field with parameters still tells the layout order."""
    c = Coverage.of((comp("digest", bs=True),))
    assert c.first_layouts == V6_FIRST


# --- coverage_of ------------------------------------------------------------------------


def items(*names: str) -> list[Any]:
    """Parsed inner-list items without parameters."""
    return [(n, {}) for n in names]


def test_coverage_of_cap_boundary() -> None:
    """Exactly max_components is fine; one more is malformed; None means no cap."""
    assert len(coverage_of(items("a", "b", "c"), 3).components) == 3
    with pytest.raises(VerificationError) as info:
        coverage_of(items("a", "b", "c", "d"), 3)
    assert_error(info.value, Reason.MALFORMED_HEADER, "more than 3 covered components")
    assert len(coverage_of(items(*"abcdefgh"), None).components) == 8


def test_coverage_of_refuses_repeated_identifier() -> None:
    """The same name with the same parameters twice is malformed (RFC 9421 §2)."""
    with pytest.raises(VerificationError) as info:
        coverage_of([("date", {}), ("@method", {}), ("date", {})], None)
    assert_error(info.value, Reason.MALFORMED_HEADER, 'component "date" is listed twice')


def test_coverage_of_allows_same_name_with_other_parameters() -> None:
    """The same name with different parameters is two components."""
    c = coverage_of([("example-dict", {"key": "a"}), ("example-dict", {"key": "b"})], None)
    assert c.quoted == ('"example-dict";key="a"', '"example-dict";key="b"')


def test_coverage_of_parameter_order_does_not_make_a_new_identifier() -> None:
    """Parameters in another order are still the same identifier."""
    with pytest.raises(VerificationError, match="listed twice"):
        coverage_of([("a", {"sf": True, "req": True}), ("a", {"req": True, "sf": True})], None)


# --- check_params -----------------------------------------------------------------------


def params(**extra: Any) -> dict[str, Any]:
    """Valid parameters, with some replaced (``None`` removes)."""
    base: dict[str, Any] = {"keyid": "k", "created": NOW, "expires": NOW + 60, "nonce": "n"}
    base.update(extra)
    return {k: v for k, v in base.items() if v is not None}


def refused(p: dict[str, Any], policy: Policy = POLICY) -> VerificationError:
    """The error check_params raises."""
    with pytest.raises(VerificationError) as info:
        check_params(p, policy)
    return info.value


def test_check_params_accepts_every_registered_parameter() -> None:
    """keyid, created, expires, nonce, alg and tag are all allowed."""
    assert {"keyid", "created", "expires", "nonce", "alg", "tag"} == SIGNATURE_PARAMETERS
    check_params(params(alg="ecdsa-p521-sha512", tag="t"), POLICY)


def test_check_params_refuses_unknown() -> None:
    """An unregistered parameter is malformed."""
    assert_error(
        refused(params(context="x")),
        Reason.MALFORMED_HEADER,
        "unknown signature parameter 'context'",
    )


@pytest.mark.parametrize("name", ["created", "expires"])
@pytest.mark.parametrize("value", [True, -1, "1", 1.5], ids=["bool", "negative", "str", "float"])
def test_check_params_times_are_non_negative_ints(name: str, value: object) -> None:
    """created/expires must be real integers >= 0 (True == 1 in Python is refused)."""
    assert_error(
        refused(params(**{name: value})),
        Reason.MALFORMED_HEADER,
        f"signature parameter {name!r} must be a non-negative integer",
    )


def test_check_params_zero_times_are_integers() -> None:
    """0 is a valid integer for created and expires (the time window judges it)."""
    check_params(params(created=0, expires=0), POLICY)


@pytest.mark.parametrize("name", ["keyid", "nonce", "alg", "tag"])
def test_check_params_strings(name: str) -> None:
    """keyid, nonce, alg and tag must be strings."""
    assert_error(
        refused(params(**{name: 1})),
        Reason.MALFORMED_HEADER,
        f"signature parameter {name!r} must be a string",
    )


def test_check_params_keyid_required_and_bounded() -> None:
    """keyid is required and has 1 to 256 characters."""
    assert_error(
        refused(params(keyid=None)),
        Reason.MALFORMED_HEADER,
        "signature parameter 'keyid' is missing",
    )
    for bad in ("", "k" * 257):
        assert_error(
            refused(params(keyid=bad)),
            Reason.MALFORMED_HEADER,
            "signature parameter 'keyid' must have 1 to 256 characters",
        )
    check_params(params(keyid="k" * 256), POLICY)
    check_params(params(keyid="k"), POLICY)


def test_check_params_created_required_by_policy() -> None:
    """Without created: malformed by default, fine when the policy does not require it."""
    assert_error(
        refused(params(created=None)),
        Reason.MALFORMED_HEADER,
        "signature parameter 'created' is missing",
    )
    check_params(params(created=None), Policy(require_created=False))


def test_check_params_nonce_required_by_policy() -> None:
    """Without nonce: fine by default, malformed when the policy requires it."""
    check_params(params(nonce=None), POLICY)
    check_params(params(), Policy(require_nonce=True))
    assert_error(
        refused(params(nonce=None), Policy(require_nonce=True)),
        Reason.MALFORMED_HEADER,
        "signature parameter 'nonce' is missing",
    )


# --- time_window_error ------------------------------------------------------------------


WINDOW = Policy(skew=10, max_age=100, max_window=50)


def test_window_accepts_inside() -> None:
    """created now and expires in the future pass."""
    assert time_window_error(NOW, NOW + 30, NOW, WINDOW) is None
    assert time_window_error(None, None, NOW, WINDOW) is None


def test_window_created_in_future_boundary() -> None:
    """created == now + skew passes; one second later is created_in_future."""
    assert time_window_error(NOW + 10, None, NOW, WINDOW) is None
    assert_error(
        time_window_error(NOW + 11, None, NOW, WINDOW),
        Reason.CREATED_IN_FUTURE,
        f"created 11 s in the future (created={NOW + 11}, now={NOW}, skew=10 s)",
    )


def test_window_created_in_future_wins_over_expiry() -> None:
    """A future created is reported as such even when expires is also wrong."""
    error = time_window_error(NOW + 11, NOW + 5, NOW, WINDOW)
    assert error is not None
    assert error.reason is Reason.CREATED_IN_FUTURE


def test_window_expires_must_follow_created() -> None:
    """expires == created is expired; created + 1 passes."""
    assert_error(
        time_window_error(NOW, NOW, NOW, WINDOW),
        Reason.EXPIRED,
        f"expires={NOW} is not after created={NOW}",
    )
    assert time_window_error(NOW, NOW + 1, NOW, WINDOW) is None


def test_window_max_window_boundary() -> None:
    """expires - created == max_window passes; one more second is expired; None: no cap."""
    assert time_window_error(NOW, NOW + 50, NOW, WINDOW) is None
    assert_error(
        time_window_error(NOW, NOW + 51, NOW, WINDOW),
        Reason.EXPIRED,
        "validity window of 51 s exceeds 50 s",
    )
    assert time_window_error(NOW, NOW + 10**9, NOW, Policy(max_window=None)) is None


def test_window_expiry_boundary() -> None:
    """now == expires + skew passes (E2); one second later is expired."""
    assert time_window_error(NOW - 40, NOW - 10, NOW, WINDOW) is None
    assert_error(
        time_window_error(NOW - 40, NOW - 11, NOW, WINDOW),
        Reason.EXPIRED,
        f"expired 11 s ago (expires={NOW - 11}, now={NOW}, skew=10 s)",
        signed_at=NOW - 40,
    )


def test_window_expires_without_created() -> None:
    """expires alone is checked against now and skew only."""
    assert time_window_error(None, NOW - 10, NOW, WINDOW) is None
    error = time_window_error(None, NOW - 11, NOW, WINDOW)
    assert error is not None
    assert error.reason is Reason.EXPIRED


def test_window_max_age_boundary_without_expires() -> None:
    """Without expires, now - created == max_age passes; one second older is expired."""
    assert time_window_error(NOW - 100, None, NOW, WINDOW) is None
    assert_error(
        time_window_error(NOW - 101, None, NOW, WINDOW),
        Reason.EXPIRED,
        f"created 101 s ago, more than max_age=100 s (created={NOW - 101}, now={NOW})",
        signed_at=NOW - 101,
    )


def test_window_max_age_does_not_apply_when_expires_is_present() -> None:
    """With expires present, the sender's expiry rules and max_age is not consulted."""
    # created is older than max_age, but expires (within max_window) is still ahead.
    policy = Policy(skew=0, max_age=5, max_window=3600)
    assert time_window_error(NOW - 60, NOW + 60, NOW, policy) is None


def test_window_fractional_now() -> None:
    """now may be a float; the boundaries are compared exactly."""
    assert time_window_error(NOW, None, NOW - 10.0, WINDOW) is None
    assert time_window_error(NOW, None, NOW - 10.5, WINDOW) is not None


def test_window_messages_show_fractional_differences() -> None:
    """A fractional clock shows in the difference and in now, to the millisecond."""
    error = time_window_error(NOW, None, NOW - 10.5, WINDOW)
    assert error is not None
    assert error.message == (
        f"created 10.5 s in the future (created={NOW}, now={NOW - 10.5}, skew=10 s)"
    )


def test_window_messages_round_to_whole_seconds() -> None:
    """A difference under half a millisecond from a whole second prints without a point."""
    error = time_window_error(NOW, None, NOW - 10.0004, WINDOW)
    assert error is not None
    assert error.message == f"created 10 s in the future (created={NOW}, now={NOW - 10}, skew=10 s)"


def test_window_age_errors_carry_the_signing_instant() -> None:
    """Only an error of age alone, with created known, carries signed_at = created."""
    passed = time_window_error(NOW - 40, NOW - 11, NOW, WINDOW)
    too_old = time_window_error(NOW - 101, None, NOW, WINDOW)
    assert passed is not None
    assert too_old is not None
    assert (passed.signed_at, too_old.signed_at) == (NOW - 40, NOW - 101)
    no_created = time_window_error(None, NOW - 11, NOW, WINDOW)
    assert no_created is not None
    assert no_created.reason is Reason.EXPIRED
    assert no_created.signed_at is None


# --- labels -----------------------------------------------------------------------------


def test_label_allowed() -> None:
    """Any label without configured labels; only the configured ones otherwise."""
    assert label_allowed("x", POLICY)
    assert label_allowed("b", Policy(labels=("a", "b")))
    assert not label_allowed("c", Policy(labels=("a", "b")))


def order(labels: list[str], kids: dict[str, object], known: set[str], policy: Policy) -> list[str]:
    """order_labels over a label -> keyid table."""
    return order_labels(labels, kids.get, known.__contains__, policy)


def test_order_labels_none_paired() -> None:
    """No label in both headers is label_mismatch."""
    with pytest.raises(VerificationError) as info:
        order([], {}, set(), POLICY)
    assert_error(
        info.value,
        Reason.LABEL_MISMATCH,
        "no label appears in both Signature-Input and Signature",
    )


def test_order_labels_known_keys_then_sig1_then_header_order() -> None:
    """Known kids first, sig1 before others among equals, header order otherwise."""
    kids: dict[str, object] = {"a": "k1", "sig1": "k2", "b": "k3", "c": 7, "sig2": "k1"}
    got = order(["a", "b", "c", "sig1", "sig2"], kids, {"k1", "k3"}, Policy(max_signatures=10))
    assert got == ["a", "b", "sig2", "sig1", "c"]


def test_order_labels_sig1_first_when_all_known() -> None:
    """Among labels whose kids are all known, sig1 comes first."""
    got = order(["x", "sig1"], {"x": "k", "sig1": "k"}, {"k"}, POLICY)
    assert got == ["sig1", "x"]


def test_order_labels_capped() -> None:
    """At most max_signatures labels are tried."""
    labels = [f"s{i}" for i in range(6)]
    assert order(labels, {}, set(), Policy(max_signatures=2)) == ["s0", "s1"]
    assert len(order(labels, {}, set(), POLICY)) == 4


def test_order_labels_configured() -> None:
    """Configured labels are tried in their own order; absent ones are skipped."""
    got = order(["b", "a", "c"], {}, set(), Policy(labels=("c", "z", "a")))
    assert got == ["c", "a"]
    assert order(["b", "a"], {}, set(), Policy(labels=("a", "b"), max_signatures=1)) == ["a"]
    with pytest.raises(VerificationError) as info:
        order(["b"], {}, set(), Policy(labels=("a",)))
    assert_error(info.value, Reason.LABEL_MISMATCH, "none of the labels ['a'] is present")


# --- head and coverage ------------------------------------------------------------------


def test_head_error_component_cap() -> None:
    """More components than max_components is malformed; exactly that many is fine."""
    c = cov("@method", "@path", "date")
    assert head_error(c, Policy(max_components=3)) is None
    assert_error(
        head_error(c, Policy(max_components=2)),
        Reason.MALFORMED_HEADER,
        "more than 2 covered components",
    )


def test_head_error_required_components() -> None:
    """Every required component must be covered plainly."""
    assert head_error(cov("@method", "@path"), POLICY) is None
    assert_error(
        head_error(cov("@method"), POLICY),
        Reason.MISSING_COMPONENT,
        "'@path' is not covered",
    )
    assert head_error(cov("@method"), Policy(required_components=())) is None


def test_coverage_error_includes_head_error() -> None:
    """coverage_error reports what head_error reports."""
    error = coverage_error(cov("@method"), POLICY, has_body=False, has_query=False)
    assert error is not None
    assert error.reason is Reason.MISSING_COMPONENT


def test_coverage_error_body_needs_digest() -> None:
    """A non-empty body must be covered by a digest, unless the policy says otherwise."""
    c = cov("@method", "@path")
    assert coverage_error(c, POLICY, has_body=False, has_query=False) is None
    assert_error(
        coverage_error(c, POLICY, has_body=True, has_query=False),
        Reason.MISSING_COMPONENT,
        "the body is not covered by content-digest or digest",
    )
    assert coverage_error(c, Policy(require_digest=False), has_body=True, has_query=False) is None
    for digest in ("digest", "content-digest"):
        d = cov("@method", "@path", digest)
        assert coverage_error(d, POLICY, has_body=True, has_query=False) is None


def test_coverage_error_query_needs_coverage() -> None:
    """A query must be covered, unless the policy says otherwise."""
    c = cov("@method", "@path")
    assert_error(
        coverage_error(c, POLICY, has_body=False, has_query=True),
        Reason.MISSING_COMPONENT,
        "the query is not covered",
    )
    assert coverage_error(c, Policy(require_query=False), has_body=False, has_query=True) is None
    q = cov("@method", "@path", "@query")
    assert coverage_error(q, POLICY, has_body=False, has_query=True) is None


def test_coverage_error_body_is_checked_before_query() -> None:
    """With both uncovered, the body is reported."""
    error = coverage_error(cov("@method", "@path"), POLICY, has_body=True, has_query=True)
    assert error is not None
    assert "body" in error.message


# --- keys -------------------------------------------------------------------------------


P521 = generate_key("P-521", kid="k521").verifying_key
P256 = generate_key("P-256", kid="k256").verifying_key


def test_key_error_accepts_allowed_key() -> None:
    """An allowed key type with no alg, or the key's own registered alg, passes."""
    assert key_error(P521, "k521", None, POLICY) is None
    assert key_error(P256, "k256", P256.algorithm, Policy(key_types={"P-256"})) is None


def test_key_error_refuses_an_unregistered_alg_unless_allowed() -> None:
    """P-521 has no registered alg name: "ecdsa-p521-sha512" needs allow_unregistered_alg."""
    assert_error(
        key_error(P521, "k521", P521.algorithm, POLICY),
        Reason.UNSUPPORTED_ALGORITHM,
        "alg='ecdsa-p521-sha512' is not a registered name (Policy.allow_unregistered_alg)",
    )
    assert key_error(P521, "k521", P521.algorithm, Policy(allow_unregistered_alg=True)) is None


def test_key_error_refuses_key_type() -> None:
    """A key type outside the policy is unsupported_key."""
    assert_error(
        key_error(P256, "k256", None, POLICY),
        Reason.UNSUPPORTED_KEY,
        "key 'k256' is P-256, not allowed",
        key_id="k256",
    )
    assert key_error(P256, "k256", None, Policy(key_types={"P-256"})) is None


def test_key_error_refuses_contradicting_alg() -> None:
    """An alg that is not the key's algorithm is unsupported_algorithm."""
    assert_error(
        key_error(P521, "k521", "ecdsa-p256-sha256", POLICY),
        Reason.UNSUPPORTED_ALGORITHM,
        f"alg='ecdsa-p256-sha256' but key 'k521' is {P521.algorithm}",
    )


# --- layouts ----------------------------------------------------------------------------


def test_choose_layouts_fixed_dialect_wins() -> None:
    """A fixed dialect is the only layout, whatever the version header says."""
    c = cov("@method", "digest")
    assert choose_layouts(Policy(dialect="rfc9421"), "6", c, DEFAULT_LAYOUTS) == ("rfc9421",)
    assert choose_layouts(Policy(dialect="upvest-v6"), "15", c, V6_FIRST) == ("upvest-v6",)


def test_choose_layouts_version_header() -> None:
    """upvest-signature-version 6 or 15 picks one layout; other values are ignored."""
    c = cov("@method")
    assert choose_layouts(POLICY, "6", c, DEFAULT_LAYOUTS) == ("upvest-v6",)
    assert choose_layouts(POLICY, "15", c, DEFAULT_LAYOUTS) == ("rfc9421",)
    assert choose_layouts(POLICY, "7", c, V6_FIRST) == V6_FIRST


def test_choose_layouts_learnt_or_coverage() -> None:
    """Before anything is learnt the covered digest decides; then the learnt order."""
    v6 = cov("@method", "digest")
    assert choose_layouts(POLICY, None, v6, DEFAULT_LAYOUTS) == V6_FIRST
    assert choose_layouts(POLICY, None, cov("@method"), DEFAULT_LAYOUTS) == DEFAULT_LAYOUTS
    learnt = ("rfc9421", "upvest-v6")  # equal to the default, but learnt
    assert choose_layouts(POLICY, None, v6, learnt) is learnt  # type: ignore[arg-type]


def test_covered_size_error_boundaries() -> None:
    """Covered values up to max_covered_bytes and fields up to max_field_lines lines pass."""
    policy = Policy(max_covered_bytes=100, max_field_lines=3)
    assert covered_size_error(100, 3, policy) is None
    assert_error(
        covered_size_error(101, 3, policy),
        Reason.MALFORMED_HEADER,
        "covered values exceed 100 bytes",
    )
    assert_error(
        covered_size_error(100, 4, policy),
        Reason.MALFORMED_HEADER,
        "a covered field has more than 3 lines",
    )


def test_bad_signature_error() -> None:
    """bad_signature names the label, the key and the layouts tried."""
    assert_error(
        bad_signature("sig1", "k", ("rfc9421", "upvest-v6")),
        Reason.BAD_SIGNATURE,
        "signature 'sig1' does not verify with key 'k' (rfc9421/upvest-v6)",
        key_id="k",
    )
