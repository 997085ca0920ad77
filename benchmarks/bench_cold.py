"""Cold start: import time against the floor's imports, and the first verification.

Run from the repository root::

    python benchmarks/bench_cold.py               # 15 fresh interpreters per line (~30 s)
    python benchmarks/bench_cold.py --quick       # 3 per line (a few seconds)
    python benchmarks/bench_cold.py --runs 31 --json cold.json
    python benchmarks/bench_cold.py --src /tmp/old-checkout/src   # another source tree

**Imports.** Each statement below runs in a fresh interpreter, timed with
``time.perf_counter`` around the statement inside the child (interpreter start-up
is the same for all and left out). One untimed run of each comes first with
bytecode writing on, so every line is timed with up-to-date ``.pyc`` files. The
runs interleave (floor, then each of ours, every round), and each of our times is
divided by the floor's time *of the same round*: the ratios cancel load that
changes between rounds. Lines:

* ``floor``: ``import hashlib, json, cryptography.hazmat.primitives.asymmetric.ec``,
  what the floor verification itself needs;
* ``import upvest_verify``: the package (its names load on first use);
* ``verify-ready``: ``from upvest_verify import KeySet, Verifier, verify``, what a
  receiver imports (and what the first-verification children below import);
* ``with JWKS cache``: the same plus ``JWKSCache, URLKeySource``.

One extra child runs the verify-ready import under ``python -X importtime`` and the
modules it loads beyond the floor's are listed by their own import time.

**First verification.** A fresh interpreter imports, loads the key (``KeySet.from_jwks``
for ours; a public key from its coordinates and an ECDSA object for the floor),
then times the first verification of a signed webhook (10 KiB body, Upvest v6
dialect by default) and ``--warm`` more; "warm" is the median of those. Modes:
``floor`` (SHA-256 or SHA-512 of the body plus one P-521 verify), ``ours``
(``Verifier.verify``), ``ours + warm_up`` (``Verifier.warm_up()`` first). The
modules and regular expressions the first verification still had to load are
counted. Targets: ``import upvest_verify`` at most 1.5 x the floor's imports; the
first verification after ``warm_up()`` at most 1.5 x a warm one.

Not part of the test suite; numbers depend on the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    child_env,
    describe_machine,
    machine_line,
    parse_size,
    size_label,
    summary,
    write_json,
)

__all__ = ["IMPORTS", "main", "measure_first_verify", "measure_imports"]

FLOOR = "floor"
IMPORTS: dict[str, str] = {
    FLOOR: "import hashlib, json, cryptography.hazmat.primitives.asymmetric.ec",
    "import upvest_verify": "import upvest_verify",
    "verify-ready": "from upvest_verify import KeySet, Verifier, verify",
    "with JWKS cache": (
        "from upvest_verify import KeySet, Verifier, verify, JWKSCache, URLKeySource"
    ),
}
"""The timed import statements, by line name."""

_TIME_IMPORT = (
    "import time\n_t0 = time.perf_counter()\n{statement}\n"
    "_t1 = time.perf_counter()\nprint(repr(_t1 - _t0))\n"
)

# The first-verification child. It reads the case (JSON) before timing anything;
# json is among the floor's imports, and imported by ours too.
_FIRST_VERIFY = r"""
import sys, time
clock = time.perf_counter
mode, path, warm = sys.argv[1], sys.argv[2], int(sys.argv[3])
t0 = clock()
if mode == "floor":
    import hashlib, json
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
else:
    import json
    from upvest_verify import KeySet, Verifier
t1 = clock()
with open(path, encoding="utf-8") as f:
    case = json.load(f)
body = case["body"].encode()
headers = [(k, v) for k, v in case["headers"]]
method, url = case["method"], case["url"]
t2 = clock()
if mode == "floor":
    key = ec.EllipticCurvePublicNumbers(case["x"], case["y"], ec.SECP521R1()).public_key()
    algorithm = ec.ECDSA(hashes.SHA512())
    hasher = getattr(hashlib, case["hash"])
    base, der = case["base"].encode(), bytes.fromhex(case["der"])
    def one():
        hasher(body).digest()
        key.verify(der, base, algorithm)
else:
    verifier = Verifier(KeySet.from_jwks(case["jwks"]))
    def one():
        verifier.verify(method, url, headers, body)
t3 = clock()
if mode == "warm_up":
    if not hasattr(verifier, "warm_up"):  # a source tree from before warm_up()
        print(json.dumps({"skipped": True}))
        sys.exit(0)
    verifier.warm_up()
t4 = clock()
import re
compiler = getattr(re, "_compiler", None) or __import__("sre_compile")
real_compile, compiled = compiler.compile, []
def counting(*args, **kwargs):
    compiled.append(args[0])
    return real_compile(*args, **kwargs)
compiler.compile = counting
modules = set(sys.modules)
t5 = clock()
one()
t6 = clock()
compiler.compile = real_compile
new_modules = sorted(set(sys.modules) - modules)
times = []
for _ in range(warm):
    a = clock()
    one()
    times.append(clock() - a)
times.sort()
print(json.dumps({
    "import_s": t1 - t0,
    "keys_s": t3 - t2,
    "warm_up_s": t4 - t3 if mode == "warm_up" else None,
    "first_s": t6 - t5,
    "warm_s": times[len(times) // 2],
    "to_first_s": (t6 - t0) - (t5 - t4) - (t2 - t1),
    "new_modules": new_modules,
    "regex_compiles": len(compiled),
}))
"""

MODES = {"floor": "floor", "ours": "ours", "ours + warm_up": "warm_up"}
"""First-verification modes: line name -> the child's mode argument."""


_SRC: list[str] = []  # --src: the source tree the children import instead


def _env() -> dict[str, str]:
    env = child_env()
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # keep .pyc files current, as in production
    if _SRC:
        env["PYTHONPATH"] = os.pathsep.join([*_SRC, env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env


def _run_child(code: str, args: Sequence[str] = (), timeout: float = 120) -> str:
    env = _env()
    out = subprocess.run(  # noqa: S603 - this interpreter, our own code
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
    )
    if out.returncode != 0:
        raise RuntimeError(f"child failed ({out.returncode}): {out.stderr.strip()[-2000:]}")
    return out.stdout


def measure_imports(runs: int) -> dict[str, Any]:
    """Time each statement of :data:`IMPORTS` in ``runs`` fresh interpreters each.

    Args:
        runs: Rounds; each round runs every statement once, the floor first.

    Returns:
        Per line: milliseconds (min/median/max) and, for ours, the per-round ratio to
        the floor (min/median/max); the raw milliseconds per round.
    """
    for statement in IMPORTS.values():  # write .pyc files; not timed
        _run_child(_TIME_IMPORT.format(statement=statement))
    raw: dict[str, list[float]] = {name: [] for name in IMPORTS}
    for _ in range(runs):
        for name, statement in IMPORTS.items():
            raw[name].append(1000 * float(_run_child(_TIME_IMPORT.format(statement=statement))))
    lines: dict[str, Any] = {}
    for name, values in raw.items():
        line: dict[str, Any] = {"statement": IMPORTS[name], "ms": summary(values, 2)}
        if name != FLOOR:
            ratios = [a / b for a, b in zip(values, raw[FLOOR], strict=True)]
            line["ratio_to_floor"] = summary(ratios, 3)
        line["ms_per_round"] = [round(v, 2) for v in values]
        lines[name] = line
    return {"runs": runs, "lines": lines}


def import_costs(top: int = 15) -> list[dict[str, Any]]:
    """The modules the verify-ready import loads beyond the floor's, by own import time.

    One child under ``-X importtime`` imports the floor's modules, then ours;
    ``-X importtime`` adds its own overhead, so the figures are relative.

    Returns:
        Up to ``top`` entries ``{"module", "self_us", "cumulative_us"}``.
    """
    env = _env()
    code = IMPORTS[FLOOR] + "\n" + IMPORTS["verify-ready"]
    out = subprocess.run(  # noqa: S603
        [sys.executable, "-X", "importtime", "-c", code],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    entries = []
    floor_done = False
    for line in out.stderr.splitlines():
        if not line.startswith("import time:") or "|" not in line:
            continue
        parts = line[len("import time:") :].split("|")
        if not parts[0].strip().isdigit():
            continue  # the header line
        name = parts[2].strip()
        if floor_done:
            entries.append(
                {"module": name, "self_us": int(parts[0]), "cumulative_us": int(parts[1])}
            )
        if name == "cryptography.hazmat.primitives.asymmetric.ec" and parts[2] == " " + name:
            floor_done = True  # the floor's last top-level import
    entries.sort(key=lambda e: -e["self_us"])
    return entries[:top]


def _case(size: int, dialect: str) -> dict[str, Any]:
    """Sign one webhook and gather what both children need (in this process)."""
    import base64

    from _cases import EXTRA_HEADERS, URL, make_body
    from cryptography.hazmat.primitives.asymmetric import ec

    from upvest_verify.testing import generate_key, make_jwks, sign_webhook

    key = generate_key("P-521")
    body = make_body(size)
    signed = sign_webhook(body, key=key, url=URL, dialect=dialect, ttl=3600, headers=EXTRA_HEADERS)
    public = key.private_key.public_key()
    assert isinstance(public, ec.EllipticCurvePublicKey)
    numbers = public.public_numbers()
    signature = next(v for k, v in signed.headers if k == "signature")
    der = base64.b64decode(signature.split(":")[1])
    return {
        "method": signed.method,
        "url": signed.url,
        "headers": [list(h) for h in signed.headers],
        "body": body.decode(),
        "jwks": json.dumps(make_jwks(key)),
        "x": numbers.x,
        "y": numbers.y,
        "base": signed.base.decode(),
        "der": der.hex(),
        "hash": "sha256" if dialect == "upvest-v6" else "sha512",
    }


def measure_first_verify(runs: int, warm: int, size: int, dialect: str) -> dict[str, Any]:
    """First against warm verification in ``runs`` fresh interpreters per mode.

    Args:
        runs: Fresh interpreters per mode (the modes interleave).
        warm: Timed verifications after the first; their median is "warm".
        size: Body size in bytes.
        dialect: ``"upvest-v6"`` or ``"rfc9421"``.

    Returns:
        Per mode: milliseconds for the import, the key load, ``warm_up()``, the first
        and a warm verification, start to first verification (import + key load +
        warm-up + first, without reading the case file), and the ratio first / warm
        (min/median/max over the interpreters), plus what the first verification
        still loaded (modules, regex compiles) in any run.
    """
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "case.json"
        path.write_text(json.dumps(_case(size, dialect)), encoding="utf-8")
        _run_child(_FIRST_VERIFY, ["warm_up", str(path), "3"])  # .pyc files; not timed
        results: dict[str, list[dict[str, Any]]] = {name: [] for name in MODES}
        for _ in range(runs):
            for name, mode in MODES.items():
                out = _run_child(_FIRST_VERIFY, [mode, str(path), str(warm)])
                results[name].append(json.loads(out))
    modes: dict[str, Any] = {}
    for name, all_rows in results.items():
        rows = [r for r in all_rows if not r.get("skipped")]
        if not rows:
            modes[name] = {"skipped": "the source tree has no Verifier.warm_up()"}
            continue
        entry: dict[str, Any] = {}
        for field in ("import_s", "keys_s", "warm_up_s", "first_s", "warm_s", "to_first_s"):
            values = [r[field] for r in rows if r[field] is not None]
            if values:
                entry[field.replace("_s", "_ms")] = summary((1000 * v for v in values), 3)
        entry["first_over_warm"] = summary((r["first_s"] / r["warm_s"] for r in rows), 3)
        entry["first_loaded_modules"] = sorted({m for r in rows for m in r["new_modules"]})
        entry["first_regex_compiles"] = max(r["regex_compiles"] for r in rows)
        modes[name] = entry
    return {
        "runs": runs,
        "warm_calls": warm,
        "body_bytes": size,
        "dialect": dialect,
        "modes": modes,
    }


def _print_imports(result: dict[str, Any]) -> None:
    print(f"\nImport time, {result['runs']} fresh interpreters per line, ms (min / median / max)")
    print(f"  {'line':<22} {'min':>7} {'median':>7} {'max':>7}   ratio to floor, paired")
    for name, line in result["lines"].items():
        ms = line["ms"]
        ratio = line.get("ratio_to_floor")
        extra = (
            f"   {ratio['min']:.2f} / {ratio['median']:.2f} / {ratio['max']:.2f}" if ratio else ""
        )
        print(f"  {name:<22} {ms['min']:7.1f} {ms['median']:7.1f} {ms['max']:7.1f}{extra}")


def _print_costs(costs: list[dict[str, Any]]) -> None:
    print("\nVerify-ready import beyond the floor's, by own time (-X importtime, inflated):")
    for entry in costs:
        print(f"  {entry['module']:<52} {entry['self_us']:>6} µs  ({entry['cumulative_us']} µs)")


def _print_first(result: dict[str, Any]) -> None:
    print(
        f"\nFirst verification in a fresh interpreter ({result['runs']} per mode, "
        f"{size_label(result['body_bytes'])} {result['dialect']} webhook), ms median"
        " [min-max]"
    )
    print(
        f"  {'mode':<16} {'import':>8} {'keys':>8} {'warm_up':>8} {'first':>8} {'warm':>8}"
        f" {'to first':>9}   first / warm"
    )
    for name, entry in result["modes"].items():
        if "skipped" in entry:
            print(f"  {name:<16} skipped: {entry['skipped']}")
            continue

        def cell(field: str, entry: dict[str, Any] = entry) -> str:
            stats = entry.get(field)
            return f"{stats['median']:8.2f}" if stats else f"{'-':>8}"

        ratio = entry["first_over_warm"]
        print(
            f"  {name:<16} {cell('import_ms')} {cell('keys_ms')} {cell('warm_up_ms')}"
            f" {cell('first_ms')} {cell('warm_ms')} {cell('to_first_ms'):>9}"
            f"   {ratio['median']:.2f} [{ratio['min']:.2f}-{ratio['max']:.2f}]"
        )
        if entry["first_loaded_modules"] or entry["first_regex_compiles"]:
            print(
                f"  {'':<16} first verification loaded {len(entry['first_loaded_modules'])}"
                f" modules, compiled {entry['first_regex_compiles']} regular expressions"
            )


def main(argv: Sequence[str] | None = None) -> int:
    """Measure and print; exit status 0 (the targets are reported, not enforced).

    Args:
        argv: Command-line arguments.

    Returns:
        0, or 1 if a child failed.
    """
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="3 interpreters per line")
    parser.add_argument("--runs", type=int, help="fresh interpreters per line (default 15)")
    parser.add_argument("--warm", type=int, help="warm verifications per interpreter (100)")
    parser.add_argument("--size", default="10K", help="body size of the webhook (default 10K)")
    parser.add_argument("--dialect", choices=("upvest-v6", "rfc9421"), default="upvest-v6")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    parser.add_argument("--src", type=Path, help="import upvest_verify from this source tree")
    args = parser.parse_args(argv)
    if args.src:
        _SRC[:] = [str(args.src.resolve())]
    runs = args.runs or (3 if args.quick else 15)
    warm = args.warm or (20 if args.quick else 100)
    size = parse_size(args.size)
    machine = describe_machine()
    print(machine_line(machine))
    started = time.perf_counter()
    try:
        imports = measure_imports(runs)
        costs = import_costs()
        first = measure_first_verify(runs, warm, size, args.dialect)
    except (RuntimeError, subprocess.TimeoutExpired) as e:
        print(f"FAIL: {e}")
        return 1
    _print_imports(imports)
    _print_costs(costs)
    _print_first(first)
    package = imports["lines"]["import upvest_verify"]["ratio_to_floor"]["median"]
    warmed = first["modes"]["ours + warm_up"].get("first_over_warm")
    after = f"{warmed['median']:.2f}" if warmed else "n/a"
    print(
        f"\ntargets: import upvest_verify / floor {package:.2f} (<= 1.5),"
        f" first / warm after warm_up {after} (<= 1.5); {time.perf_counter() - started:.0f} s"
    )
    if args.json:
        write_json(
            args.json,
            {
                "benchmark": "cold",
                "machine": machine,
                "imports": imports,
                "import_costs": costs,
                "first_verify": first,
            },
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
