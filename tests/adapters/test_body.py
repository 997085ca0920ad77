"""The one body rule every adapter reads under (``adapters/_body.py``)."""

from __future__ import annotations

import pytest

from upvest_verify import ConfigurationError, Policy, Reason, VerificationError, Verifier
from upvest_verify.adapters._body import (
    BodyReader,
    IncompleteBody,
    declared_length,
    refuse_declared,
    resolve_limit,
)
from upvest_verify.testing import generate_key, make_key_set

KEY = generate_key()


def test_declared_length() -> None:
    """Content-Length parses plain decimals only."""
    assert declared_length(b" 12 ") == 12
    assert declared_length(None) is None
    assert declared_length("1,2") is None
    assert declared_length("-1") is None
    assert declared_length(b"10240") == 10240
    assert declared_length(b"9" * 18) == int("9" * 18)
    assert declared_length(b"9" * 19) is None
    assert declared_length(b"\xb2") is None  # superscript two: a digit to str, not to bytes
    assert declared_length("\u0662") is None  # Arabic-Indic two


def read(limit: int, declared: int | None, *chunks: bytes) -> bytes:
    """Feed ``chunks`` to a fresh reader and finish it."""
    reader = BodyReader(limit, declared)
    for chunk in chunks:
        reader.feed(chunk)
    return reader.finish()


def test_body_in_pieces_up_to_the_limit() -> None:
    """Chunks are joined; a body of exactly the limit, declared or not, is accepted."""
    assert read(6, 6, b"ab", b"", b"cdef") == b"abcdef"
    assert read(6, None, b"abc", b"def") == b"abcdef"
    assert read(6, 0) == b""


def test_declared_length_over_the_limit_is_refused_before_reading() -> None:
    """A Content-Length above the limit is body_too_large as soon as the reader starts."""
    with pytest.raises(VerificationError) as info:
        BodyReader(6, 7)
    assert info.value.reason is Reason.BODY_TOO_LARGE


def test_reading_stops_at_the_first_byte_over_the_limit() -> None:
    """The chunk that crosses the limit raises body_too_large (G3)."""
    reader = BodyReader(6, None)
    reader.feed(b"abcdef")
    with pytest.raises(VerificationError) as info:
        reader.feed(b"g")
    assert info.value.reason is Reason.BODY_TOO_LARGE


@pytest.mark.parametrize(("declared", "chunks"), [(10, (b"abc",)), (3, ()), (2, (b"abc",))])
def test_body_not_matching_content_length_is_incomplete(
    declared: int, chunks: tuple[bytes, ...]
) -> None:
    """A body whose length differs from its Content-Length is IncompleteBody, never returned."""
    with pytest.raises(IncompleteBody):
        read(10, declared, *chunks)


@pytest.mark.parametrize(
    ("limit", "declared", "body", "outcome"),
    [
        (6, 6, b"abcdef", b"abcdef"),
        (6, None, b"abcdef", b"abcdef"),
        (6, None, b"", b""),
        (6, None, b"abcdefg", Reason.BODY_TOO_LARGE),
        (10, 4, b"abc", IncompleteBody),
        (10, 2, b"abc", IncompleteBody),
    ],
)
def test_a_body_in_one_piece_follows_the_same_rules(
    limit: int, declared: int | None, body: bytes, outcome: object
) -> None:
    """BodyReader.whole() answers as a reader fed the same body in one chunk would."""
    if isinstance(outcome, bytes):
        assert BodyReader.whole(limit, declared, body) is body
        assert read(limit, declared, body) == outcome
    elif outcome is IncompleteBody:
        with pytest.raises(IncompleteBody, match=f"declared {declared}"):
            BodyReader.whole(limit, declared, body)
        with pytest.raises(IncompleteBody, match=f"declared {declared}"):
            read(limit, declared, body)
    else:
        for run in (
            lambda: BodyReader.whole(limit, declared, body),
            lambda: read(limit, None, body),
        ):
            with pytest.raises(VerificationError) as info:
                run()
            assert info.value.reason is outcome


def test_a_bytes_like_body_in_one_piece_becomes_bytes() -> None:
    """A server handing over a bytearray or memoryview: the body goes on as bytes."""
    for body in (bytearray(b"abc"), memoryview(b"abc")):
        whole = BodyReader.whole(6, 3, body)  # type: ignore[arg-type]
        assert (type(whole), whole) == (bytes, b"abc")


def test_refuse_declared() -> None:
    """Only a declared length above the limit is refused."""
    refuse_declared(6, None)
    refuse_declared(6, 6)
    with pytest.raises(VerificationError) as info:
        refuse_declared(6, 7)
    assert info.value.reason is Reason.BODY_TOO_LARGE


def test_resolve_limit() -> None:
    """The limit defaults to the policy's; an explicit one must be a positive int."""
    verifier = Verifier(make_key_set(KEY), policy=Policy(max_body_size=1234))
    assert resolve_limit(verifier, None) == 1234
    assert resolve_limit(verifier, 10) == 10
    for bad in (0, -1, True, 1.5):
        with pytest.raises(ConfigurationError):
            resolve_limit(verifier, bad)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError):
        resolve_limit(object(), None)
