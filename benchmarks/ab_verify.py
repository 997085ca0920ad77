"""Before and after in one process: ``Verifier.verify`` of a git revision against the working tree.

On a shared or virtual machine the cost of the same call drifts by several percent
from one minute to the next, more than the change being measured. Running "before"
and "after" as two commands (``farm-bench``, ``hyperfine``, two ``bench_verify.py``
runs) compares two different minutes of the machine. This script puts both in one
interpreter, beside the floor, and interleaves them batch by batch:

1. ``git archive REV src/upvest_verify`` into a temporary folder, renamed to the
   package ``upvest_verify_rev`` (every ``upvest_verify`` word in its sources is
   rewritten, so it imports only itself);
2. one signed RFC 9421 webhook per body size, verified by both packages' ``Verifier``
   with ``str`` header pairs and with ASGI ``bytes`` lines, and by the floor (SHA-512
   of the body plus one ``cryptography`` P-521 verify, as in ``bench_verify.py``);
3. rounds of short batches, the order rotating each round, the collector off.

Printed per size and contender: the fastest batch and the median, each over the
floor, and the median of the per-round ratio to the floor and to the same headers
under ``REV``. A ratio below 1.00 in the last column means the working tree is
faster.

Run from the repository root::

    python benchmarks/ab_verify.py --against 58a9211
    python benchmarks/ab_verify.py --against HEAD~3 --sizes 1K,10K --rounds 60 --json ab.json

Not part of the test suite, but for ``tests/test_ab_verify.py``, which runs ``--quick`` once.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import io
import re
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
if importlib.util.find_spec("upvest_verify") is None:  # not installed: use the source tree
    sys.path.insert(0, str(HERE.parent / "src"))
sys.path.insert(0, str(HERE))

from _common import (  # noqa: E402 - after the path set-up above
    ROOT,
    describe_machine,
    machine_line,
    parse_sizes,
    size_label,
    write_json,
)

PACKAGE = "upvest_verify"
RENAMED = "upvest_verify_rev"
_WORD = re.compile(rf"\b{PACKAGE}\b")


def export_revision(rev: str, into: Path) -> str:
    """Write ``rev``'s ``src/upvest_verify`` under ``into`` as the package ``upvest_verify_rev``.

    Args:
        rev: Any git revision (``HEAD~1``, a commit, a tag).
        into: An empty folder; it goes on ``sys.path``.

    Returns:
        The full commit id of ``rev``.

    Raises:
        SystemExit: ``rev`` is unknown or has no ``src/upvest_verify``.
    """
    git = shutil.which("git")
    if git is None:
        raise SystemExit("--against needs git on PATH")
    try:
        commit = subprocess.run(  # noqa: S603 - git, with a revision the user named
            [git, "rev-parse", "--verify", f"{rev}^{{commit}}"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        archive = subprocess.run(  # noqa: S603 - git, with the commit it resolved
            [git, "archive", "--format=tar", commit, f"src/{PACKAGE}"],
            cwd=ROOT,
            capture_output=True,
            check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError) as e:
        detail = getattr(e, "stderr", b"") or b""
        text = detail.decode(errors="replace") if isinstance(detail, bytes) else detail
        raise SystemExit(f"--against {rev}: {text.strip() or e}") from e
    prefix = f"src/{PACKAGE}/"
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        for member in tar.getmembers():
            if not member.isfile() or not member.name.startswith(prefix):
                continue
            target = into / RENAMED / member.name[len(prefix) :]
            target.parent.mkdir(parents=True, exist_ok=True)
            extracted = tar.extractfile(member)
            assert extracted is not None
            data = extracted.read()
            if target.suffix in (".py", ".pyi"):
                data = _WORD.sub(RENAMED, data.decode("utf-8")).encode("utf-8")
            target.write_bytes(data)
    if not (into / RENAMED / "__init__.py").exists():
        raise SystemExit(f"--against {rev}: no src/{PACKAGE}/__init__.py at {commit[:12]}")
    return commit


def contenders(size: int, before: Any, after: Any) -> dict[str, Callable[[], object]]:
    """The floor and both packages' ``Verifier.verify`` for one signed body size.

    Args:
        size: Body size in bytes.
        before: The package ``upvest_verify_rev``.
        after: The working tree's ``upvest_verify``.

    Returns:
        Name to zero-argument call; each has been checked to verify once.
    """
    from _cases import URL, build_case, floor_fn

    from upvest_verify.testing import generate_key, make_jwks

    key = generate_key()
    case = build_case(size, key)
    jwks = make_jwks(key)
    body, str_lines = case.body, case.rfc_headers
    byte_lines = [(name.encode("latin-1"), value.encode("latin-1")) for name, value in str_lines]
    public_key = key.private_key.public_key()
    calls: dict[str, Callable[[], object]] = {
        "floor": floor_fn(body, case.rfc_base, case.rfc_der, public_key, "sha512")  # type: ignore[arg-type]
    }
    for label, package in (("rev", before), ("now", after)):
        verifier = package.Verifier(package.KeySet.from_jwks(jwks))
        for kind, lines in (("str", str_lines), ("bytes", byte_lines)):

            def call(verifier: Any = verifier, lines: Any = lines) -> object:
                return verifier.verify("POST", URL, lines, body)

            result = call()
            if getattr(result, "key_id", None) != key.kid:
                raise SystemExit(f"{label} {kind} did not verify the {size_label(size)} webhook")
            calls[f"{label} {kind}"] = call
    return calls


def interleave(
    calls: dict[str, Callable[[], object]], rounds: int, batch_ms: float
) -> dict[str, list[float]]:
    """Per-call microseconds of every contender, ``rounds`` batches each, order rotating.

    The timing loop is ``bench_verify.py``'s (:func:`bench_verify.run_interleaved`).

    Args:
        calls: Name to zero-argument call.
        rounds: Batches per contender.
        batch_ms: Target length of one batch.

    Returns:
        Name to the per-call time of each batch, in round order.
    """
    from bench_verify import Contender, run_interleaved

    contenders = [Contender(name, call, check=lambda: True) for name, call in calls.items()]
    run_interleaved(contenders, rounds, batch_ms, warmup=3)
    return {c.name: [ns / 1e3 for ns in c.samples] for c in contenders}


def _paired(a: Sequence[float], b: Sequence[float]) -> float:
    return statistics.median(x / y for x, y in zip(a, b, strict=True))


def figures(samples: dict[str, list[float]]) -> dict[str, dict[str, float]]:
    """Ratios for each contender: to the floor, and ``now`` to ``rev`` with the same headers.

    Args:
        samples: What :func:`interleave` returned.

    Returns:
        Name to ``fastest_us``, ``median_us``, ``fastest/floor``, ``paired/floor``
        and, for ``now``, ``paired/rev``.
    """
    floor = samples["floor"]
    out: dict[str, dict[str, float]] = {}
    for name, xs in samples.items():
        row = {
            "fastest_us": round(min(xs), 2),
            "median_us": round(statistics.median(xs), 2),
            "fastest/floor": round(min(xs) / min(floor), 4),
            "paired/floor": round(_paired(xs, floor), 4),
        }
        if name.startswith("now "):
            row["paired/rev"] = round(_paired(xs, samples["rev " + name[4:]]), 4)
        out[name] = row
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """Run the comparison and print the table.

    Args:
        argv: Command-line arguments.

    Returns:
        The exit status: 0 (it reports; it never judges).
    """
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--against", default="HEAD", help="git revision to compare with")
    parser.add_argument("--sizes", default="10K", help="body sizes (default 10K)")
    parser.add_argument("--rounds", type=int, default=None, help="batches per contender")
    parser.add_argument("--quick", action="store_true", help="a few short rounds: a smoke test")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args(argv)
    try:
        sizes = parse_sizes(args.sizes)
    except ValueError as e:
        parser.error(f"--sizes: {e}")
    if min(sizes) < 64:
        parser.error("--sizes: each at least 64 bytes")
    rounds = args.rounds or (4 if args.quick else 80)
    batch_ms = 2.0 if args.quick else 12.0
    machine = describe_machine()
    print(machine_line(machine))
    with tempfile.TemporaryDirectory(prefix="ab-verify-") as folder:
        commit = export_revision(args.against, Path(folder))
        sys.path.insert(0, folder)
        before = importlib.import_module(RENAMED)
        after = importlib.import_module(PACKAGE)
        print(
            f"rev = {args.against} ({commit[:12]}), now = the working tree; {rounds} rounds of"
            f" ~{batch_ms:g} ms batches, interleaved, order rotating, gc off"
        )
        results: dict[str, Any] = {}
        for size in sizes:
            samples = interleave(contenders(size, before, after), rounds, batch_ms)
            table = figures(samples)
            results[size_label(size)] = table
            print(f"\n{size_label(size)} body")
            print(
                f"  {'':10} {'fastest µs':>10} {'median µs':>10} {'fastest/floor':>13}"
                f" {'paired/floor':>12} {'paired now/rev':>14}"
            )
            for name, row in table.items():
                against = f"{row['paired/rev']:14.3f}" if "paired/rev" in row else " " * 14
                print(
                    f"  {name:10} {row['fastest_us']:10.1f} {row['median_us']:10.1f}"
                    f" {row['fastest/floor']:13.3f} {row['paired/floor']:12.3f} {against}"
                )
    if args.json:
        write_json(
            args.json,
            {
                "benchmark": "ab_verify",
                "machine": machine,
                "against": args.against,
                "commit": commit,
                "rounds": rounds,
                "batch_ms": batch_ms,
                "sizes": results,
            },
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
