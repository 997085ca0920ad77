"""The one body rule every adapter reads under (``adapters/_body.py``)."""

from __future__ import annotations

import pytest

from upvest_verify import ConfigurationError, Policy, Reason, VerificationError, Verifier
from upvest_verify.adapters._body import (
    BodyReader,
    IncompleteBody,
    declared_length,
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
