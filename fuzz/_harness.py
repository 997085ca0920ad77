"""Shared plumbing of the fuzz targets in this folder.

Every ``fuzz_<target>.py`` defines three things and calls :func:`main`:

* ``test_one_input(data: bytes) -> None``: the target. It returns normally for
  every input the library handles correctly and raises for a finding (a crash,
  an exception that ``verify()`` swallowed, a mutated message that was accepted).
  It needs nothing but the standard library and ``upvest_verify``, so the same
  function runs under atheris/libFuzzer, in pure-Python replay, and in
  ``tests/test_fuzz_smoke.py``.
* ``seeds() -> Iterator[bytes]``: the initial corpus, derived at run time from the
  test vectors (``tests/vectors/*.json`` and, when present, the structured-field
  suite in ``../shared/vectors``). Nothing from those folders is copied here.
* optionally ``describe(data: bytes) -> str``: a readable account of what an input
  means, for turning a crash file into a unit test.

Command line (see README.md)::

    python fuzz/fuzz_sfv.py [libFuzzer flags] [corpus_dir ...]   # fuzz (needs atheris)
    python fuzz/fuzz_sfv.py crash-<sha1>                          # libFuzzer replay
    python fuzz/fuzz_sfv.py --replay FILE_OR_DIR ...             # pure Python, no atheris
    python fuzz/fuzz_sfv.py --describe FILE                       # print the decoded input
    python fuzz/fuzz_sfv.py --write-seeds DIR                     # only write the seed corpus
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

FUZZ_DIR = Path(__file__).resolve().parent
ROOT = FUZZ_DIR.parent
VECTORS = ROOT / "tests" / "vectors"
# The external conformance data lives beside the repository (as for the tests);
# UPVEST_SHARED_VECTORS points elsewhere.
SHARED_VECTORS = Path(os.environ.get("UPVEST_SHARED_VECTORS", ROOT.parent / "shared" / "vectors"))
SF_SUITE = SHARED_VECTORS / "structured-field-tests"

Target = Callable[[bytes], None]
T = TypeVar("T")


# ---------------------------------------------------------------------------
# Findings
# ---------------------------------------------------------------------------


class Finding(AssertionError):
    """A property of the library was violated (not a crash of the harness)."""


class SwallowedError(Finding):
    """``verify()`` met an unexpected exception and turned it into a reject.

    The original exception is chained as ``__cause__``, so its traceback is shown.
    """


class _Spy(logging.Handler):
    """Collects the exceptions the library logs with a traceback."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.caught: list[BaseException] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info and record.exc_info[1] is not None:
            self.caught.append(record.exc_info[1])


@contextlib.contextmanager
def no_swallowed_errors() -> Iterator[None]:
    """Raise :class:`SwallowedError` if the library logged an unexpected exception.

    ``verify()`` fails closed: an exception it did not anticipate becomes
    ``malformed_header`` and is logged with ``logger.exception`` on the
    ``upvest_verify`` logger. Fuzzing only for "no exception but
    VerificationError" would therefore never see such a crash; this spy does.
    """
    spy = _Spy()
    logger = logging.getLogger("upvest_verify")
    logger.addHandler(spy)
    try:
        yield
    finally:
        logger.removeHandler(spy)
    if spy.caught:
        first = spy.caught[0]
        raise SwallowedError(f"verify() swallowed {first!r}") from first


# ---------------------------------------------------------------------------
# Structured decoding of fuzz bytes (a pure-Python FuzzedDataProvider)
# ---------------------------------------------------------------------------


class ByteReader:
    """Reads small decisions from the fuzz input; returns zeros once it is used up.

    atheris.FuzzedDataProvider would do, but this one also runs where atheris is
    not installed (the smoke test) and decodes an input identically everywhere,
    so a crash file means the same thing in every mode.
    """

    __slots__ = ("data", "pos")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def remaining(self) -> int:
        """Bytes not yet consumed."""
        return len(self.data) - self.pos

    def byte(self) -> int:
        """The next byte, or 0 at the end."""
        if self.pos >= len(self.data):
            return 0
        b = self.data[self.pos]
        self.pos += 1
        return b

    def uint16(self) -> int:
        """The next two bytes as a big-endian integer."""
        return (self.byte() << 8) | self.byte()

    def below(self, n: int) -> int:
        """An integer in ``range(n)`` (one byte when ``n <= 256``)."""
        if n <= 1:
            return 0
        return (self.byte() if n <= 256 else self.uint16()) % n

    def pick(self, options: Sequence[T]) -> T:
        """One of ``options``."""
        return options[self.below(len(options))]

    def take(self, max_len: int) -> bytes:
        """A length byte (capped at ``max_len``) and that many bytes."""
        n = self.below(max_len + 1)
        chunk = self.data[self.pos : self.pos + n]
        self.pos += len(chunk)
        return chunk

    def rest(self) -> bytes:
        """Everything left."""
        chunk = self.data[self.pos :]
        self.pos = len(self.data)
        return chunk


# Fragments that matter to structured fields, RFC 9421 and the policy. Byte-level
# mutation alone would need many steps to write most of them.
TOKENS: tuple[str, ...] = (
    '"',
    "(",
    ")",
    ";",
    "=",
    ":",
    ",",
    ", ",
    " ",
    "  ",
    "\t",
    "\r\n ",
    "\n",
    "\r",
    "\x00",
    "\x7f",
    "\xe9",
    "\xff",
    "\u2028",
    "\u212a",
    "\ufeff",
    "?",
    "#",
    "/",
    "//",
    "%2F",
    "%",
    "%%",
    "@",
    "*",
    "\\",
    '\\"',
    "sig1",
    "sig2",
    "sig1=",
    "=:",
    "==",
    "=:AAAA:",
    "()",
    "sig1=()",
    '"@method"',
    '"@path"',
    '"@query"',
    '"@authority"',
    '"@target-uri"',
    '"@request-target"',
    '"@scheme"',
    '"@status"',
    '"@query-param";name="a"',
    '"@query-param"',
    '"@signature-params"',
    '"content-digest"',
    '"content-digest";sf',
    '"digest"',
    '"Content-Digest"',
    '"content-type"',
    '"date"',
    '"host"',
    ";sf",
    ";bs",
    ';key="sha-512"',
    ";req",
    ";tr",
    ";name=",
    ";keyid=",
    ';keyid="fuzz-p521"',
    ";created=",
    ";created=1700000000",
    ";expires=1700000060",
    ";expires=",
    ";nonce=",
    ';nonce="n"',
    ';alg="ecdsa-p521-sha512"',
    ';alg="hmac-sha256"',
    ';alg="ed25519"',
    ';tag="x"',
    "sha-512=",
    "sha-256=",
    "SHA-256=",
    "SHA-512=",
    "md5=",
    "?1",
    "?0",
    "-",
    "-0",
    "0",
    "1",
    "00",
    "999999999999999",
    "1000000000000000",
    "1.5",
    "0.001",
    '%"',
    '%"%c3%a9"',
    "@1700000000",
    "Token",
    "MIGHAkIA",
    "AAAA",
    "A" * 64,
    "x" * 300,
)


def insert(text: str, pos: int, fragment: str) -> str:
    """``text`` with ``fragment`` inserted at ``pos`` (taken modulo ``len + 1``)."""
    i = pos % (len(text) + 1)
    return text[:i] + fragment + text[i:]


def mutate_text(text: str, r: ByteReader, donors: tuple[str, ...] = ()) -> str:
    """Apply one byte-level or dictionary mutation chosen by ``r`` to ``text``.

    Characters are code points 0-255 (what a server hands over as ISO-8859-1),
    except the dictionary's few non-Latin-1 ones.

    Args:
        text: The value to mutate.
        r: The decision source.
        donors: Other values to splice from (other headers, other seeds).

    Returns:
        The mutated value (possibly equal to ``text``).
    """
    op = r.below(13)
    n = len(text)
    pos = r.uint16() % (n + 1)
    if op == 0:  # overwrite one character
        if n == 0:
            return chr(r.byte())
        i = pos % n
        return text[:i] + chr(r.byte()) + text[i + 1 :]
    if op == 1:  # insert raw bytes
        return insert(text, pos, r.take(16).decode("latin-1"))
    if op == 2:  # delete a run
        return text[:pos] + text[pos + 1 + r.below(16) :]
    if op == 3:  # insert a dictionary token
        return insert(text, pos, r.pick(TOKENS))
    if op == 4:  # replace a run with a dictionary token
        return text[:pos] + r.pick(TOKENS) + text[pos + 1 + r.below(8) :]
    if op == 5:  # truncate
        return text[:pos]
    if op == 6:  # swap the case of one character
        if n == 0:
            return text
        i = pos % n
        return text[:i] + text[i].swapcase() + text[i + 1 :]
    if op == 7:  # duplicate a slice of itself
        start = r.uint16() % (n + 1)
        return insert(text, pos, text[start : start + 1 + r.below(64)])
    if op == 8:  # replace everything
        return r.pick(TOKENS) if r.byte() & 1 else r.take(64).decode("latin-1")
    if op == 9:  # whitespace around the value (OWS, HTAB, obs-fold)
        ws = r.pick((" ", "\t", "\r\n ", "\n\t", "  "))
        return ws + text if r.byte() & 1 else text + ws
    if op == 10:  # change a number in place (created, expires, content-length...)
        digits_at = [i for i, c in enumerate(text) if "0" <= c <= "9"]
        if not digits_at:
            return insert(text, pos, str(r.byte()))
        i = digits_at[pos % len(digits_at)]
        return text[:i] + str((int(text[i]) + 1 + r.below(9)) % 10) + text[i + 1 :]
    if op == 11 and donors:  # splice a piece of another value
        donor = r.pick(donors)
        start = r.uint16() % (len(donor) + 1)
        return insert(text, pos, donor[start : start + 1 + r.byte()])
    # op 12 (or 11 without donors): exchange two characters
    if n < 2:
        return text
    i, j = pos % n, r.uint16() % n
    chars = list(text)
    chars[i], chars[j] = chars[j], chars[i]
    return "".join(chars)


def as_bytes(text: str) -> bytes:
    """ISO-8859-1 when possible (what a server sends), else UTF-8."""
    try:
        return text.encode("latin-1")
    except UnicodeEncodeError:
        return text.encode("utf-8")


# ---------------------------------------------------------------------------
# Test vectors (read at run time, never copied into the repository)
# ---------------------------------------------------------------------------


def load_json(path: Path) -> Any:
    """Parse one JSON file."""
    with path.open(encoding="utf-8") as f:
        return json.load(f)


def http_vectors() -> list[dict[str, Any]]:
    """The message-signature vectors of ``tests/vectors`` (RFC 9421, draft-06)."""
    return [
        load_json(p)
        for p in sorted(VECTORS.glob("*.json"))
        if p.name.startswith(("rfc9421_", "draft06_"))
    ]


def p521_vectors() -> dict[str, Any]:
    """``tests/vectors/p521_generated.json``."""
    return load_json(VECTORS / "p521_generated.json")  # type: ignore[no-any-return]


def sf_suite_cases() -> list[dict[str, Any]]:
    """Every case of the httpwg structured-field suite, or ``[]`` when it is absent."""
    if not SF_SUITE.is_dir():
        return []
    cases: list[dict[str, Any]] = []
    for path in sorted(SF_SUITE.glob("*.json")):
        data = load_json(path)
        if isinstance(data, list):
            cases += [c for c in data if isinstance(c, dict)]
    return cases


# ---------------------------------------------------------------------------
# Running a target
# ---------------------------------------------------------------------------


@contextlib.contextmanager
def instrumented(enabled: bool) -> Iterator[None]:
    """Instrument ``upvest_verify`` for coverage when fuzzing under atheris.

    The fuzz files import the library inside this block. It does nothing when
    the file is imported as a module (the smoke test) or atheris is missing.
    """
    if enabled and not {"--replay", "--describe", "--write-seeds"} & set(sys.argv[1:2]):
        try:
            import atheris
        except ImportError:
            pass
        else:
            with atheris.instrument_imports(include=["upvest_verify"]):
                yield
            return
    yield


def write_seeds(directory: Path, seeds: Iterable[bytes]) -> int:
    """Write each seed as ``seed-<sha1>`` into ``directory``; return how many are new."""
    directory.mkdir(parents=True, exist_ok=True)
    new = 0
    for data in seeds:
        path = directory / f"seed-{hashlib.sha1(data).hexdigest()}"  # noqa: S324 - a file name
        if not path.exists():
            path.write_bytes(data)
            new += 1
    return new


def _files(paths: list[str]) -> Iterator[Path]:
    for p in map(Path, paths):
        if p.is_dir():
            yield from sorted(q for q in p.iterdir() if q.is_file())
        else:
            yield p


def replay(target: Target, paths: list[str]) -> None:
    """Run ``target`` once per file, in plain Python; the first failure propagates."""
    count = 0
    for path in _files(paths):
        data = path.read_bytes()
        try:
            target(data)
        except BaseException:
            print(f"FAILED on {path} ({len(data)} bytes)", file=sys.stderr)
            raise
        count += 1
    print(f"replayed {count} input(s) without a finding", file=sys.stderr)


def main(
    name: str,
    target: Target,
    seeds: Callable[[], Iterable[bytes]],
    describe: Callable[[bytes], str] | None = None,
) -> None:
    """Command-line entry point of a fuzz file (see the module docstring)."""
    argv = sys.argv[1:]
    if argv[:1] == ["--describe"]:
        for path in _files(argv[1:]):
            data = path.read_bytes()
            print(f"# {path}\n{describe(data) if describe else repr(data)}")
        return
    if argv[:1] == ["--write-seeds"]:
        out = Path(argv[1] if len(argv) > 1 else FUZZ_DIR / "corpus" / name)
        print(f"{write_seeds(out, seeds())} new seed(s) in {out}", file=sys.stderr)
        return
    if argv[:1] == ["--replay"]:
        replay(target, argv[1:] or [str(FUZZ_DIR / "corpus" / name)])
        return
    try:
        import atheris
    except ImportError:
        sys.exit(
            "atheris is not installed: pip install atheris (or use --replay FILES, "
            "or run tests/test_fuzz_smoke.py)"
        )
    positional = [a for a in argv if not a.startswith("-")]
    directories = [Path(a) for a in positional if not Path(a).is_file()]
    if not positional:
        default = FUZZ_DIR / "corpus" / name
        directories = [default]
        sys.argv.append(str(default))
    if directories:
        # Fuzzing (not a replay of single files): seed the first corpus directory.
        written = write_seeds(directories[0], seeds())
        print(f"INFO: {written} new seed(s) written to {directories[0]}", file=sys.stderr)
    atheris.Setup(sys.argv, target)
    atheris.Fuzz()
