"""Body digests (``_digest.py``): checking received values and producing them."""

from __future__ import annotations

import base64
import hashlib

import pytest

from upvest_verify import Reason, VerificationError
from upvest_verify._digest import (
    BodyHasher,
    check_content_digest,
    check_legacy_digest,
    content_digest,
    legacy_digest,
)

BODY = b'{"key": "value"}'
# upvest-protocol.md §7/§8.1: Upvest's own worked example for this body.
UPVEST_SHA512 = (
    "Hd9/AvGZkbjitW1+Ml8Fg1ux1mtcDYe6mLQjDyoowIWa3LM/PmwN2v9O+MjtQGrCA3EQWUL54dlgxKHyYbrucw=="
)
UPVEST_SHA256 = "lyTB4g5uPk1/V+0l+dTvsAblCFkNUoyQ2ll/andcE+U="
SHA512 = base64.b64encode(hashlib.sha512(BODY).digest()).decode()
SHA256 = base64.b64encode(hashlib.sha256(BODY).digest()).decode()
OTHER512 = base64.b64encode(hashlib.sha512(b"other").digest()).decode()
OTHER256 = base64.b64encode(hashlib.sha256(b"other").digest()).decode()


def rejected(check: object, value: str) -> VerificationError:
    """The error a check raises for ``value`` against BODY."""
    with pytest.raises(VerificationError) as info:
        check(value, BodyHasher(BODY))  # type: ignore[operator]
    return info.value


def assert_error(error: VerificationError, reason: Reason, message: str) -> None:
    """The error has exactly this reason and message."""
    assert error.reason is reason
    assert error.message == message


# --- producing ------------------------------------------------------------------------


def test_produced_values_match_upvest_examples() -> None:
    """The produced Content-Digest and Digest equal Upvest's published values."""
    assert content_digest(BODY) == f"sha-512=:{UPVEST_SHA512}:"
    assert legacy_digest(BODY) == f"SHA-256={UPVEST_SHA256}"


def test_produced_values_with_other_algorithms() -> None:
    """Several algorithms are written in order, comma-separated, in each field's spelling."""
    assert content_digest(BODY, ["sha-256", "SHA-512"]) == (
        f"sha-256=:{SHA256}:, sha-512=:{SHA512}:"
    )
    assert legacy_digest(BODY, ("sha-512",)) == f"SHA-512={SHA512}"
    assert legacy_digest(BODY, "sha-256") == f"SHA-256={SHA256}"
    assert content_digest(BODY, ("sha-512",)) == content_digest(BODY)


@pytest.mark.parametrize("algorithms", [("md5",), (), ("sha-512", "sha")])
def test_produce_refuses_unsupported_algorithms(algorithms: tuple[str, ...]) -> None:
    """Only sha-512 and sha-256 can be produced, and at least one."""
    with pytest.raises(ValueError, match="digest algorithms must be among"):
        content_digest(BODY, algorithms)
    with pytest.raises(ValueError, match="digest algorithms must be among"):
        legacy_digest(BODY, algorithms)


def test_body_hasher_canonical_values_and_cache() -> None:
    """The hasher's canonical values are the produced ones; each digest is computed once."""
    hasher = BodyHasher(BODY)
    assert hasher.canonical_content_digest() == content_digest(BODY)
    assert hasher.canonical_legacy_digest() == legacy_digest(BODY)
    assert hasher.digest("sha-512") is hasher.digest("sha-512")


def test_produced_values_check_out() -> None:
    """What the producers write, the checkers accept."""
    check_content_digest(content_digest(BODY, ("sha-512", "sha-256")), BodyHasher(BODY))
    check_legacy_digest(legacy_digest(BODY, ("sha-256", "sha-512")), BodyHasher(BODY))


# --- Content-Digest ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        f"sha-512=:{SHA512}:",
        f"sha-256=:{SHA256}:, sha-512=:{SHA512}:",
        f"sha-512=:{SHA512}:, md5=:AAAA:",
        f"sha-512=:{SHA512}:;p=1",
        f"sha-512=:{SHA512.rstrip('=')}:",  # unpadded: RFC 8941 parsers SHOULD accept
    ],
    ids=["sha512", "both", "with-md5", "with-param", "unpadded"],
)
def test_content_digest_accepts(value: str) -> None:
    """sha-512 present and every supported algorithm present matches: accepted."""
    check_content_digest(value, BodyHasher(BODY))


@pytest.mark.parametrize("value", [f"sha-256=:{SHA256}:", f"sha-256=:{SHA256}:, md5=:AAAA:"])
def test_content_digest_without_sha512_is_not_enough(value: str) -> None:
    """RFC 9530 / R24: a correct sha-256 alone does not count; Content-Digest needs sha-512."""
    assert_error(
        rejected(check_content_digest, value),
        Reason.DIGEST_MISMATCH,
        "content-digest must carry sha-512",
    )


def test_content_digest_mismatch_messages() -> None:
    """A wrong value names the algorithm that failed."""
    assert_error(
        rejected(check_content_digest, f"sha-512=:{OTHER512}:"),
        Reason.DIGEST_MISMATCH,
        "content-digest sha-512 does not match the body",
    )
    assert_error(
        rejected(check_content_digest, f"sha-512=:{SHA512}:, sha-256=:{OTHER256}:"),
        Reason.DIGEST_MISMATCH,
        "content-digest sha-256 does not match the body",
    )


def test_content_digest_without_supported_algorithm() -> None:
    """Only md5 (or nothing known) is a mismatch: it proves nothing about the body."""
    assert_error(
        rejected(check_content_digest, "md5=:AAAA:"),
        Reason.DIGEST_MISMATCH,
        "content-digest has no supported algorithm (sha-512, sha-256)",
    )


def test_content_digest_upper_case_algorithm_is_not_supported() -> None:
    """RFC 9530 names are lower case: SHA-512 is not a dictionary key here."""
    error = rejected(check_content_digest, f"SHA-512=:{SHA512}:")
    assert error.reason is Reason.MALFORMED_HEADER


def test_content_digest_syntax_errors() -> None:
    """Bad syntax and duplicate members are malformed, not last-wins (D5)."""
    error = rejected(check_content_digest, "sha-512=:not base64:")
    assert error.reason is Reason.MALFORMED_HEADER
    assert error.message.startswith("content-digest: ")
    dup = rejected(check_content_digest, f"sha-512=:{OTHER512}:, sha-512=:{SHA512}:")
    assert dup.reason is Reason.MALFORMED_HEADER
    assert dup.message.startswith("content-digest: ")


def test_content_digest_member_must_be_bytes() -> None:
    """A member that is not a byte sequence is malformed."""
    assert_error(
        rejected(check_content_digest, f'sha-512="{SHA512}"'),
        Reason.MALFORMED_HEADER,
        "content-digest sha-512 is not a byte sequence",
    )
    assert_error(
        rejected(check_content_digest, f"sha-512=:{SHA512}:, md5=1"),
        Reason.MALFORMED_HEADER,
        "content-digest md5 is not a byte sequence",
    )


def test_content_digest_fast_form_bad_padding_goes_to_the_parser() -> None:
    """A single member with misplaced padding is judged by the strict parser."""
    error = rejected(check_content_digest, "sha-512=:AAA=A:")
    assert error.reason is Reason.MALFORMED_HEADER


# --- Digest (RFC 3230) ------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        f"SHA-256={SHA256}",
        f"sha-256={SHA256}",
        f"SHA-512={SHA512}",
        f"SHA-256={SHA256},SHA-512={SHA512}",
        f" \tSHA-256={SHA256} \t, MD5=abc",
        f"SHA-256={SHA256}, SHA-256={SHA256}",
        f"MD5=abc, UNIXsum=1, SHA-256={SHA256}",
    ],
    ids=["canonical", "lower", "sha512", "both", "whitespace-md5", "same-twice", "md5-first"],
)
def test_legacy_digest_accepts(value: str) -> None:
    """Case-insensitive tokens, lists, and unknown algorithms ignored."""
    check_legacy_digest(value, BodyHasher(BODY))


def test_legacy_digest_mismatch() -> None:
    """A wrong value names the algorithm; one bad algorithm fails the whole field."""
    assert_error(
        rejected(check_legacy_digest, f"SHA-256={OTHER256}"),
        Reason.DIGEST_MISMATCH,
        "digest sha-256 does not match the body",
    )
    assert_error(
        rejected(check_legacy_digest, f"SHA-256={SHA256}, SHA-512={OTHER512}"),
        Reason.DIGEST_MISMATCH,
        "digest sha-512 does not match the body",
    )
    assert_error(
        rejected(check_legacy_digest, "MD5=abc"),
        Reason.DIGEST_MISMATCH,
        "digest has no supported algorithm (sha-512, sha-256)",
    )


@pytest.mark.parametrize("value", ["SHA-256", "=abc", f"SHA-256={SHA256},"])
def test_legacy_digest_syntax(value: str) -> None:
    """Each instance must be <alg>=<value>."""
    assert_error(
        rejected(check_legacy_digest, value),
        Reason.MALFORMED_HEADER,
        "digest: expected <alg>=<value>",
    )


def test_legacy_digest_bad_base64() -> None:
    """A supported algorithm with non-base64 output is malformed."""
    assert_error(
        rejected(check_legacy_digest, "SHA-256=not*base64"),
        Reason.MALFORMED_HEADER,
        "digest sha-256 is not base64",
    )


def test_legacy_digest_only_space_and_tab_are_trimmed() -> None:
    """Other whitespace around an instance is not trimmed (RFC 9110 OWS is SP / HTAB)."""
    error = rejected(check_legacy_digest, f"\x0bSHA-256={SHA256}")
    assert error.reason is Reason.DIGEST_MISMATCH  # "\x0bsha-256" is no known algorithm
    error = rejected(check_legacy_digest, f"SHA-256={SHA256}\x0c")
    assert error.reason is Reason.MALFORMED_HEADER
    # Letters are not trimmed either: "XSHA-256" is an unknown algorithm.
    error = rejected(check_legacy_digest, f"XSHA-256={SHA256}")
    assert error.reason is Reason.DIGEST_MISMATCH


def test_legacy_digest_conflicting_duplicates() -> None:
    """The same algorithm twice with different values is malformed."""
    assert_error(
        rejected(check_legacy_digest, f"SHA-256={SHA256}, sha-256={OTHER256}"),
        Reason.MALFORMED_HEADER,
        "digest lists sha-256 twice with different values",
    )
