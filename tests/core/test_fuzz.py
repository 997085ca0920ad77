"""Property tests (A16): any mutation gives a clean VerificationError; covered changes never pass."""

from __future__ import annotations

import pytest
from core_helpers import REFERENCE_NOW, no_swallowed_errors
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from upvest_verify import KeySet, VerificationError, verify
from upvest_verify.testing import (
    SignedWebhook,
    SigningKey,
    generate_key,
    make_key_set,
    sign_webhook,
)

KEY: SigningKey = generate_key()
KEYS: KeySet = make_key_set(KEY)
SIGNED: dict[str, SignedWebhook] = {
    d: sign_webhook(
        b'{"payload":[{"id":"1","type":"A.B"}]}',
        key=KEY,
        dialect=d,
        created=REFERENCE_NOW,  # type: ignore[arg-type]
    )
    for d in ("upvest-v6", "rfc9421")
}
COVERED = ("content-type", "content-length", "date", "digest", "content-digest")
PRINTABLE = st.characters(min_codepoint=0x21, max_codepoint=0x7E)
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def attempt(
    s: SignedWebhook, headers: list[tuple[str, str]], body: bytes, method: str, url: str
) -> bool:
    """Verify and return whether it was accepted; fail on any exception verify() did not anticipate."""
    with no_swallowed_errors():
        try:
            verify(method, url, headers, body, keys=KEYS, now=REFERENCE_NOW)
        except VerificationError:
            return False
    return True


def replace_char(text: str, index: int, char: str) -> str | None:
    """Replace one character, or None if that would not change the text."""
    i = index % len(text)
    if text[i] == char:
        return None
    return text[:i] + char + text[i + 1 :]


@pytest.mark.parametrize("dialect", sorted(SIGNED))
@FUZZ
@given(data=st.data())
def test_covered_changes_are_never_accepted(dialect: str, data: st.DataObject) -> None:
    """Changing one visible character of the body, method, path or a covered header is rejected."""
    s = SIGNED[dialect]
    headers, body, method, url = list(s.headers), s.body, s.method, s.url
    target = data.draw(st.sampled_from(["body", "method", "path", "header"]))
    index = data.draw(st.integers(min_value=0, max_value=10_000))
    char = data.draw(PRINTABLE)
    if target == "body":
        i = index % len(body)
        if body[i] == ord(char):
            return
        body = body[:i] + char.encode() + body[i + 1 :]
    elif target == "method":
        changed = replace_char(method, index, char)
        if changed is None:
            return
        method = changed
    elif target == "path":
        path = s.path
        changed = replace_char(path, index, char)
        if (
            changed is None
            or changed.lstrip("/") == path.lstrip("/")
            or "?" in changed
            or "#" in changed
        ):
            return
        url = url.removesuffix(path) + ("/" if not changed.startswith("/") else "") + changed
    else:
        names = [n for n, _ in headers if n in COVERED]
        name = data.draw(st.sampled_from(names))
        value = dict(headers)[name]
        changed = replace_char(value, index, char)
        if changed is None:
            return
        headers = [(n, changed if n == name else v) for n, v in headers]
    assert not attempt(s, headers, body, method, url)


@pytest.mark.parametrize("dialect", sorted(SIGNED))
@pytest.mark.parametrize("field", ["signature-input", "signature", "digest", "content-digest"])
@FUZZ
@given(
    cut=st.integers(min_value=0, max_value=400),
    junk=st.text(alphabet=st.characters(min_codepoint=0, max_codepoint=0x2FF), max_size=12),
)
def test_mutated_signature_headers_fail_cleanly(
    dialect: str, field: str, cut: int, junk: str
) -> None:
    """Splicing arbitrary text into signature headers never raises anything but VerificationError."""
    s = SIGNED[dialect]
    headers = []
    for name, value in s.headers:
        if name == field:
            i = cut % (len(value) + 1)
            value = value[:i] + junk + value[i:]
        headers.append((name, value))
    attempt(s, headers, s.body, s.method, s.url)


def test_a_crash_inside_verify_fails_these_tests(monkeypatch: pytest.MonkeyPatch) -> None:
    """The fuzz helper notices an unexpected exception that verify() turned into a reject."""
    from upvest_verify import _sfv

    def crash(*args: object, **kwargs: object) -> object:
        raise ZeroDivisionError("parser bug")

    monkeypatch.setattr(_sfv, "parse_dictionary", crash)
    s = SIGNED["rfc9421"]
    headers = [(n, v + " ") if n == "signature-input" else (n, v) for n, v in s.headers]
    with pytest.raises(AssertionError, match="ZeroDivisionError"):
        attempt(s, [*headers, ("signature", "x=:AA==:")], s.body, s.method, s.url)
