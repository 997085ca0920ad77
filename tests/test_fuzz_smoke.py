"""A bounded run of the fuzz targets in fuzz/ (threat model A16), without atheris.

The long runs use atheris/libFuzzer (fuzz/README.md). Here the same target
functions, imported from the fuzz/ files, are driven by seeded random mutations
of their seed corpora, each target bounded by a number of inputs and by a time
budget (about 30 s in all), so the suite exercises them wherever it runs. A
failing input is written to a file and the message says how to replay it.

The tests at the end keep the accepted mutations that fuzzing found as
regression tests.
"""

from __future__ import annotations

import hashlib
import importlib
import random
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from upvest_verify import VerificationError, verify
from upvest_verify.signing import SignedRequest, sign_request
from upvest_verify.testing import SigningKey, generate_key, make_key_set

ROOT = Path(__file__).resolve().parents[1]
FUZZ_DIR = ROOT / "fuzz"
REFERENCE_NOW = 1_700_000_000

# (fuzz file, most inputs, most seconds): about 30 s in all on a slow machine.
BUDGETS = [
    ("fuzz_sfv", 150_000, 6.0),
    ("fuzz_signature_input", 50_000, 8.0),
    ("fuzz_verify", 20_000, 14.0),
]


def load(name: str) -> ModuleType:
    """Import ``fuzz/<name>.py`` (and the ``_harness`` beside it) from the repository."""
    if not (FUZZ_DIR / f"{name}.py").is_file():
        pytest.skip(f"fuzz/ not found at {FUZZ_DIR} (it is not part of the sdist)")
    sys.path.insert(0, str(FUZZ_DIR))
    try:
        return importlib.import_module(name)
    finally:
        sys.path.remove(str(FUZZ_DIR))


def havoc(seeds: list[bytes], tokens: list[bytes], rng: random.Random) -> Iterator[bytes]:
    """Endless random mutations of the seeds, a few edits each (libFuzzer-style)."""
    while True:
        if rng.random() < 0.05:
            yield rng.randbytes(rng.randrange(64))
            continue
        data = bytearray(rng.choice(seeds))
        for _ in range(rng.randint(1, 8)):
            op = rng.randrange(7)
            pos = rng.randrange(len(data) + 1)
            if op == 0 and data:
                data[pos % len(data)] = rng.randrange(256)
            elif op == 1:
                data[pos:pos] = rng.randbytes(rng.randint(1, 8))
            elif op == 2:
                del data[pos : pos + rng.randint(1, 16)]
            elif op == 3:
                data[pos:pos] = rng.choice(tokens)
            elif op == 4:
                other = rng.choice(seeds)
                start = rng.randrange(len(other) + 1)
                data[pos:pos] = other[start : start + rng.randint(1, 32)]
            elif op == 5 and data:
                data[pos % len(data)] ^= 1 << rng.randrange(8)
            else:
                data += rng.randbytes(rng.randint(1, 12))
        yield bytes(data)


def drive(module: ModuleType, max_runs: int, seconds: float, tmp_path: Path) -> int:
    """Run the module's target on its seeds, then on mutations; return the count."""
    harness = sys.modules["_harness"]
    seeds = list(module.seeds())
    assert seeds, f"{module.__name__} has no seeds: are tests/vectors present?"
    tokens = [t.encode("utf-8") for t in harness.TOKENS]
    rng = random.Random(f"{module.__name__}:20231114")
    deadline = time.monotonic() + seconds
    runs = 0
    inputs = iter(seeds)
    mutations = havoc(seeds, tokens, rng)
    while runs < max_runs and time.monotonic() < deadline:
        data = next(inputs, None) or next(mutations)
        try:
            module.test_one_input(data)
        except Exception as e:
            crash = tmp_path / f"crash-{hashlib.sha1(data).hexdigest()}"
            crash.write_bytes(data)
            raise AssertionError(
                f"{module.__name__} failed on input #{runs} ({len(data)} bytes), saved as {crash};"
                f" replay: python fuzz/{module.__name__}.py --replay {crash}"
                f" (--describe to decode it)"
            ) from e
        runs += 1
    return runs


@pytest.mark.parametrize(("name", "max_runs", "seconds"), BUDGETS)
def test_fuzz_target_smoke(name: str, max_runs: int, seconds: float, tmp_path: Path) -> None:
    """The target survives its seeds and a bounded number of random mutations."""
    runs = drive(load(name), max_runs, seconds, tmp_path)
    assert runs > 0


def test_the_smoke_run_detects_a_swallowed_crash(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A crash that verify() turns into malformed_header still fails the run."""
    from upvest_verify._rules import check_params as real

    module = load("fuzz_verify")

    def crashing(params: dict[str, object], policy: object) -> None:
        if not {"keyid", "created", "expires", "nonce"}.issuperset(params):
            raise IndexError("planted")
        real(params, policy)  # type: ignore[arg-type]

    # The strict path's reference to it (the fast path keeps the real one).
    monkeypatch.setattr("upvest_verify._verify.check_params", crashing)
    with pytest.raises(AssertionError, match="fuzz_verify failed") as info:
        drive(module, 2_000, 10.0, tmp_path)
    swallowed = info.value.__cause__
    assert type(swallowed).__name__ == "SwallowedError"
    assert repr(swallowed.__cause__) == "IndexError('planted')"  # type: ignore[union-attr]


def test_the_oracle_flags_an_accepted_change() -> None:
    """The covered-content oracle flags an accepted message whose covered header changed."""
    module = load("fuzz_verify")
    case = module.decode(bytes([0, 0, 0, 0, 0]))  # the first seed, unmutated
    result = module.run(case)
    module.check_accepted(case, result)
    case.request.headers = [
        (n, "text/plain" if n == "content-type" else v) for n, v in case.request.headers
    ]
    with pytest.raises(AssertionError, match="mutated message was accepted"):
        module.check_accepted(case, result)


# ---------------------------------------------------------------------------
# Reproducers of accepted mutations found by fuzz/fuzz_verify.py
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def key() -> SigningKey:
    """A P-521 signing key for the reproducers."""
    return generate_key(kid="fuzz-reproducer")


def _attempt(key: SigningKey, signed: SignedRequest, **changes: object) -> bool:
    """Verify ``signed`` with some parts replaced; True if it was accepted."""
    parts: dict[str, object] = {
        "method": signed.method,
        "url": signed.url,
        "headers": signed.headers,
    }
    parts.update(changes)
    try:
        verify(
            parts["method"],  # type: ignore[arg-type]
            parts["url"],  # type: ignore[arg-type]
            parts["headers"],  # type: ignore[arg-type]
            signed.body,
            keys=make_key_set(key),
            now=REFERENCE_NOW,
        )
    except VerificationError:
        return False
    return True


def _sign(key: SigningKey, url: str, headers: list[tuple[str, str]], *extra: str) -> SignedRequest:
    return sign_request(
        "POST",
        url,
        [*headers, ("content-type", "application/json")],
        b'{"payload":[]}',
        key=key,
        components=["@method", "@authority", "@path", *extra, "content-type"],
        created=REFERENCE_NOW,
        nonce="n",
    )


def _replace_header(signed: SignedRequest, name: str, value: str) -> list[tuple[str, str]]:
    return [(n, value if n == name else v) for n, v in signed.headers]


def test_reproducers_verify_unchanged(key: SigningKey) -> None:
    """The signed requests the reproducers start from are accepted as sent."""
    assert _attempt(key, _sign(key, "/webhooks/upvest", [("host", "hooks.example")]))
    assert _attempt(key, _sign(key, "https://hooks.example/w", [("x-hook", "1")], "x-hook"))


@pytest.mark.parametrize("suffix", ["\x0b", "\x0c", "\x1c", "\x85", "\xa0", "\r", "\n"])
def test_host_is_trimmed_of_ows_only(key: SigningKey, suffix: str) -> None:
    """Found by fuzz_verify.py: ``Host: hooks.example<VT>`` passes for ``hooks.example``."""
    signed = _sign(key, "/webhooks/upvest", [("host", "hooks.example")])
    assert not _attempt(
        key, signed, headers=_replace_header(signed, "host", "hooks.example" + suffix)
    )


@pytest.mark.parametrize("where", ["url", "host", "field-name"])
def test_non_ascii_is_not_folded_into_ascii(key: SigningKey, where: str) -> None:
    """Found while triaging fuzz_verify.py: ``hoo\\u212as.example`` passes for ``hooks.example``."""
    kelvin = "hoo\u212as.example"
    if where == "url":
        signed = _sign(key, "https://hooks.example/w", [])
        accepted = _attempt(key, signed, url=f"https://{kelvin}/w")
    elif where == "host":
        signed = _sign(key, "/w", [("host", "hooks.example")])
        accepted = _attempt(key, signed, headers=_replace_header(signed, "host", kelvin))
    else:
        signed = _sign(key, "https://hooks.example/w", [("x-hook", "1")], "x-hook")
        headers = [("x-hoo\u212a" if n == "x-hook" else n, v) for n, v in signed.headers]
        accepted = _attempt(key, signed, headers=headers)
    assert not accepted
