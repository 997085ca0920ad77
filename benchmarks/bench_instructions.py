"""Instructions and simulated cache misses per verification, counted by valgrind's cachegrind.

Timings on a shared or virtual machine drift by several percent; instruction counts do
not. This script runs each contender in a child interpreter under
``valgrind --tool=cachegrind --cache-sim=yes`` twice, once with ``--calls`` more calls
than the other, and divides the difference by those calls: interpreter start-up, imports
and set-up cancel out, and what is left is the cost of one call.

Contenders, with a signed 10 KiB RFC 9421 webhook (``_cases.build_case``):

* ``floor``: SHA-512 of the body and one ``cryptography`` P-521 verify;
* ``verify str`` / ``verify bytes``: ``Verifier.verify`` with ``str`` header pairs or
  ASGI ``bytes`` lines;
* ``asgi floor`` / ``asgi hand-written`` / ``middleware``: the in-process ASGI apps of
  ``bench_receivers.py`` (``_asgi_contenders.py``): a raw app doing the floor's work, a
  hand-written receiver of the real headers that validates nothing, and
  ``UpvestWebhookMiddleware(offload=False)`` (needs Starlette);
* with ``--against REV``: ``verify str`` / ``verify bytes`` of a git revision too
  (exported as in ``ab_verify.py``), for a before/after that no load can disturb.

Reported per call: instructions (``I refs``), first-level instruction and data cache
misses (``I1``, ``D1``) and last-level misses, each also as a ratio to its floor.
The instruction ratio is what the code asks of the CPU; the gap between it and the time
ratio of ``bench_verify.py`` is mostly the cache misses: next to the P-521 verify, the
interpreter's code and data no longer fit the first-level caches.

Run from the repository root::

    python benchmarks/bench_instructions.py                       # about 2 minutes
    python benchmarks/bench_instructions.py --against 58a9211 --json out.json
    python benchmarks/bench_instructions.py --quick               # a smoke run

Without ``valgrind`` on ``PATH`` it says so and exits 0. Not part of ``python -m
benchmarks`` (a full count takes minutes under valgrind) nor of the test suite;
``tests/test_bench_instructions.py`` checks how it reads cachegrind's summary.
"""

from __future__ import annotations

import argparse
import importlib.util
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
if importlib.util.find_spec("upvest_verify") is None:  # not installed: use the source tree
    sys.path.insert(0, str(HERE.parent / "src"))
sys.path.insert(0, str(HERE))

from _common import SRC, describe_machine, machine_line, write_json  # noqa: E402

# The child: set up one contender, call it CALLS times. Everything before the loop is
# the same in both runs of a contender, so it cancels out of the difference.
CHILD = """
import asyncio, hashlib, sys
sys.path[:0] = [{here!r}, {src!r}] + ([{rev_folder!r}] if {rev_folder!r} else [])
from _cases import URL, build_case
from upvest_verify.testing import generate_key, make_jwks
name, calls = {name!r}, {calls}
if name in ("asgi floor", "asgi hand-written", "middleware"):
    from _asgi_contenders import Receivers
    receivers = Receivers()
    app = receivers.apps[name.removeprefix("asgi ")]
    loop = asyncio.new_event_loop()
    loop.run_until_complete(receivers.batch(app, 2))
    loop.run_until_complete(receivers.batch(app, calls))
    assert receivers.answers == [] or set(receivers.answers) == {{200}}
    raise SystemExit(0)
key = generate_key()
case = build_case(10 * 1024, key)
body = case.body
if name == "floor":
    from _cases import floor_fn
    call = floor_fn(body, case.rfc_base, case.rfc_der, key.private_key.public_key(), "sha512")
else:
    package = __import__("upvest_verify_rev" if name.startswith("rev ") else "upvest_verify")
    verifier = package.Verifier(package.KeySet.from_jwks(make_jwks(key)))
    lines = case.rfc_headers
    if name.endswith("bytes"):
        lines = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in lines]
    def call():
        verifier.verify("POST", URL, lines, body)
call(); call()
for _ in range(calls):
    call()
"""

_COUNTS = {
    "instructions": re.compile(r"I\s+refs:\s+([\d,]+)"),
    "i1_misses": re.compile(r"I1\s+misses:\s+([\d,]+)"),
    "d1_misses": re.compile(r"D1\s+misses:\s+([\d,]+)"),
    "ll_misses": re.compile(r"LL\s+misses:\s+([\d,]+)"),
}


def run_child(valgrind: str, name: str, calls: int, rev_folder: str) -> dict[str, int]:
    """Totals of one child run under cachegrind.

    Args:
        valgrind: The ``valgrind`` executable.
        name: The contender.
        calls: Calls after set-up.
        rev_folder: The folder holding ``upvest_verify_rev``, or ``""``.

    Returns:
        The counts named in ``_COUNTS``.

    Raises:
        RuntimeError: The child failed, or cachegrind printed no counts.
    """
    code = CHILD.format(here=str(HERE), src=str(SRC), rev_folder=rev_folder, name=name, calls=calls)
    command = [valgrind, "--tool=cachegrind", "--cache-sim=yes", "--cachegrind-out-file=/dev/null"]
    done = subprocess.run(  # noqa: S603 - valgrind from PATH, this interpreter, our own code
        [*command, sys.executable, "-c", code], capture_output=True, text=True, timeout=900
    )
    if done.returncode != 0:
        raise RuntimeError(f"{name}: the child failed:\n{done.stderr[-2000:]}")
    return parse_counts(name, done.stderr)


def parse_counts(name: str, report: str) -> dict[str, int]:
    """The totals in cachegrind's summary (its standard error).

    Args:
        name: The contender, for the error message.
        report: What cachegrind printed.

    Returns:
        The counts named in ``_COUNTS``.

    Raises:
        RuntimeError: A count is missing (cachegrind run without ``--cache-sim=yes``?).
    """
    counts = {}
    for key, pattern in _COUNTS.items():
        match = pattern.search(report)
        if match is None:
            raise RuntimeError(f"{name}: cachegrind printed no {key}:\n{report[-2000:]}")
        counts[key] = int(match.group(1).replace(",", ""))
    return counts


def per_call(valgrind: str, name: str, base: int, calls: int, rev_folder: str) -> dict[str, float]:
    """One contender's counts per call: ``(run with base + calls) - (run with base)``."""
    low = run_child(valgrind, name, base, rev_folder)
    high = run_child(valgrind, name, base + calls, rev_folder)
    return {key: (high[key] - low[key]) / calls for key in _COUNTS}


def main(argv: Sequence[str] | None = None) -> int:
    """Count, print the table, optionally write JSON.

    Args:
        argv: Command-line arguments.

    Returns:
        0, also without valgrind (then nothing is counted); 1 if a child failed.
    """
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=None, help="calls counted per contender")
    parser.add_argument("--against", help="also count a git revision's Verifier.verify")
    parser.add_argument("--quick", action="store_true", help="few calls, no middleware")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args(argv)
    machine = describe_machine()
    print(machine_line(machine))
    valgrind = shutil.which("valgrind")
    if valgrind is None:
        print("valgrind is not on PATH: nothing counted (apt-get install valgrind)")
        if args.json:
            write_json(args.json, {"benchmark": "instructions", "skipped": "no valgrind"})
        return 0
    calls = args.calls or (4 if args.quick else 100)
    base = 2 if args.quick else 20
    names = ["floor", "verify str", "verify bytes"]
    if not args.quick and importlib.util.find_spec("starlette") is not None:
        names += ["asgi floor", "asgi hand-written", "middleware"]
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-instructions-") as folder:
        rev_folder = ""
        if args.against:
            from ab_verify import export_revision

            commit = export_revision(args.against, Path(folder))
            rev_folder = folder
            names += ["rev verify str", "rev verify bytes"]
            print(f"rev = {args.against} ({commit[:12]})")
        print(f"{calls} calls counted per contender (after {base}), 10 KiB webhook, cachegrind")
        rows: dict[str, dict[str, float]] = {}
        try:
            for name in names:
                rows[name] = per_call(valgrind, name, base, calls, rev_folder)
        except (RuntimeError, subprocess.TimeoutExpired) as e:
            print(f"FAIL {e}")
            return 1
    floors = {
        name: "asgi floor" if name.startswith(("asgi", "middleware")) else "floor" for name in rows
    }
    print(
        f"\n  {'per call':<18} {'instructions':>13} {'/ floor':>8} {'I1 misses':>10}"
        f" {'D1 misses':>10} {'LL misses':>10}"
    )
    figures: dict[str, Any] = {}
    for name, row in rows.items():
        ratio = row["instructions"] / rows[floors[name]]["instructions"]
        figures[name] = {**{k: round(v, 1) for k, v in row.items()}, "ratio": round(ratio, 4)}
        print(
            f"  {name:<18} {row['instructions']:13,.0f} {ratio:8.4f} {row['i1_misses']:10,.0f}"
            f" {row['d1_misses']:10,.0f} {row['ll_misses']:10,.0f}"
        )
    for kind in ("str", "bytes"):
        if f"rev verify {kind}" in rows:
            now, rev = rows[f"verify {kind}"], rows[f"rev verify {kind}"]
            change = now["instructions"] / rev["instructions"]
            figures[f"now/rev {kind}"] = round(change, 5)
            print(f"  now / rev, {kind} headers: {change:.5f} of the instructions")
    elapsed = time.perf_counter() - started
    print(f"\n{elapsed:.0f} s")
    if args.json:
        write_json(
            args.json,
            {
                "benchmark": "instructions",
                "machine": machine,
                "calls": calls,
                "against": args.against,
                "seconds": round(elapsed, 1),
                "contenders": figures,
            },
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
