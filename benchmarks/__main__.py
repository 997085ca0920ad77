"""Run every benchmark, write one JSON file of results and a PNG of the main figures.

From the repository root (a clean checkout works: the scripts fall back to ``src/``)::

    python -m benchmarks                     # everything (about 10 minutes)
    python -m benchmarks --quick             # small sizes, few rounds (under 30 s)
    python -m benchmarks --only verify cold  # some sections
    python -m benchmarks --with-soak         # also the 15-minute soak

Sections, each its own script run in a child process (its output streams through):

* ``verify``: ``bench_verify.py``: ours against the floor and ``http-message-signatures``
  across body sizes (``--sizes``, default ``1K,10K,1M``; quick ``1K,4K``);
* ``cold``: ``bench_cold.py``: import time against the floor's imports, first against
  warm verification with and without ``warm_up()``;
* ``hostile``: ``bench_hostile.py``: CPU per request without a valid signature,
  in-process and over HTTP on every adapter (``--hostile-targets none``: in-process);
* ``rotation``: ``bench_rotation.py``: key rotation and unknown-kid floods;
* ``throughput``: ``bench_starlette_middleware.py`` driven by ``hey`` or ``wrk``
  found on ``PATH`` (``apt-get install -y hey``); skipped, and said so, without one;
* ``receivers``: ``bench_receivers.py``: the ASGI middleware in-process against a
  hand-written floor receiver, the first request after start-up; with ``hey``, also
  offloading against inline verification under load and one against two workers
  (uvicorn, gunicorn, Flask, Django), each per busy core;
* ``memory``: ``bench_memory.py``: peak extra memory per request for a 1 MiB webhook
  (``Verifier.verify``, the ASGI middleware, Flask, Django, the floor) and RSS over
  100,000 requests through the middleware (quick: 2,000);
* ``soak``: ``soak.py``, only with ``--with-soak`` or ``--only soak``.

Writes ``benchmarks/results/<UTC time>.json`` (``--out`` for another folder): the
machine (CPU model and count, Python, OpenSSL, library versions, load average), the
command, and per section its status (``ok``, ``failed``, ``skipped`` with the
reason), seconds and figures; and ``<UTC time>.png`` when matplotlib is installed.
The exit status is 1 if a section failed.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.util
import json
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ._common import child_env, describe_machine, machine_line, parse_sizes, write_json
from ._plot import have_matplotlib, render

HERE = Path(__file__).resolve().parent
SECTIONS = ("verify", "cold", "hostile", "rotation", "throughput", "receivers", "memory", "soak")
DEFAULT_SECTIONS = ("verify", "cold", "hostile", "rotation", "throughput", "receivers", "memory")
LOAD_GENERATORS = ("hey", "wrk")
SCHEMA = 1


def find_load_generator(choice: str) -> str | None:
    """``hey`` or ``wrk`` as asked, or the first on ``PATH`` for ``auto``; ``None`` if absent."""
    if choice == "none":
        return None
    names = LOAD_GENERATORS if choice == "auto" else (choice,)
    return next((name for name in names if shutil.which(name)), None)


def _command(section: str, args: argparse.Namespace, out: Path, tool: str | None) -> list[str]:
    """The child command line of one section."""
    quick: bool = args.quick
    base = [sys.executable]
    if section == "verify":
        sizes = args.sizes or ("1K,4K" if quick else "1K,10K,1M")
        extra = ["--quick"] if quick else []
        return [*base, str(HERE / "bench_verify.py"), "--sizes", sizes, *extra, "--json", str(out)]
    if section == "cold":
        extra = ["--quick"] if quick else []
        return [*base, str(HERE / "bench_cold.py"), *extra, "--json", str(out)]
    if section == "hostile":
        targets = [] if args.hostile_targets == ["none"] else args.hostile_targets
        extra = ["--quick"] if quick else []
        if targets is not None:
            extra += ["--targets", *targets]
        return [*base, str(HERE / "bench_hostile.py"), *extra, "--json", str(out)]
    if section == "rotation":
        extra = ["--quick"] if quick else []
        return [*base, str(HERE / "bench_rotation.py"), *extra, "--json", str(out)]
    if section == "throughput":
        assert tool is not None
        amount = ["--requests", "500", "--seconds", "1", "--rounds", "1"] if quick else []
        script = str(HERE / "bench_starlette_middleware.py")
        return [*base, script, "--load", tool, *amount, "--json", str(out)]
    if section == "receivers":
        # Its server sections need hey; without it only the in-process ones run.
        extra = ["--quick"] if quick else []
        extra += ["--load-generator", "hey" if tool == "hey" else "none"]
        return [*base, str(HERE / "bench_receivers.py"), *extra, "--json", str(out)]
    if section == "memory":
        extra = ["--quick"] if quick else []
        return [*base, str(HERE / "bench_memory.py"), *extra, "--json", str(out)]
    extra = ["--quick"] if quick else []
    return [*base, str(HERE / "soak.py"), *extra, "--json", str(out)]


def run_section(
    section: str, args: argparse.Namespace, folder: Path, tool: str | None
) -> dict[str, Any]:
    """Run one section's script; return its status, seconds, command and figures."""
    out = folder / f"{section}.json"
    command = _command(section, args, out, tool)
    print(f"\n=== {section}: {' '.join(command[1:])}", flush=True)
    started = time.perf_counter()
    try:
        code = subprocess.run(  # noqa: S603 - this interpreter and this folder's scripts
            command, env=child_env(), timeout=args.timeout, check=False
        ).returncode
    except subprocess.TimeoutExpired:
        code = None
    entry: dict[str, Any] = {
        "status": "ok" if code == 0 else "failed",
        "exit_code": code,
        "seconds": round(time.perf_counter() - started, 1),
        "command": [Path(command[1]).name, *command[2:-2]],
    }
    if code is None:
        entry["reason"] = f"timed out after {args.timeout:g} s"
    if out.exists():
        entry["results"] = json.loads(out.read_text(encoding="utf-8"))
        entry["results"].pop("machine", None)  # once, at the top
    return entry


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--quick", action="store_true", help="small sizes and few rounds")
    parser.add_argument("--only", nargs="+", choices=SECTIONS, help="run only these sections")
    parser.add_argument("--skip", nargs="+", choices=SECTIONS, default=[], help="leave these out")
    parser.add_argument("--with-soak", action="store_true", help="also run the long soak")
    parser.add_argument("--sizes", help="body sizes for verify, e.g. 1K,10K,1M (bytes, K, M)")
    parser.add_argument(
        "--load-generator",
        choices=("auto", *LOAD_GENERATORS, "none"),
        default="auto",
        help="for throughput: auto picks hey, then wrk, from PATH; none skips throughput",
    )
    parser.add_argument(
        "--hostile-targets",
        nargs="+",
        metavar="TARGET",
        help="bench_hostile.py targets (default: all of them); 'none' for in-process only",
    )
    parser.add_argument(
        "--out", type=Path, default=HERE / "results", help="folder for the JSON and PNG"
    )
    parser.add_argument("--name", help="file name stem (default: the UTC time)")
    parser.add_argument("--no-plot", action="store_true", help="write no PNG")
    parser.add_argument("--timeout", type=float, default=3600.0, help="seconds allowed per section")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the chosen sections and write the results; return 1 if one failed."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.sizes:
        try:
            parse_sizes(args.sizes)
        except ValueError as e:
            parser.error(f"--sizes: {e}")
    chosen = list(args.only or DEFAULT_SECTIONS)
    if args.with_soak and "soak" not in chosen:
        chosen.append("soak")
    chosen = [s for s in chosen if s not in args.skip]
    created = dt.datetime.now(dt.timezone.utc)
    stem = args.name or created.strftime("%Y%m%dT%H%M%SZ")
    machine = describe_machine()
    print(machine_line(machine))
    tool = find_load_generator(args.load_generator)
    document: dict[str, Any] = {
        "schema": SCHEMA,
        "created": created.isoformat(timespec="seconds"),
        "command": ["python", "-m", "benchmarks", *(sys.argv[1:] if argv is None else argv)],
        "quick": args.quick,
        "machine": machine,
        "sections": {},
        "plot": None,
    }
    failed = False
    with tempfile.TemporaryDirectory() as folder:
        for section in chosen:
            if section == "throughput" and tool is None:
                reason = (
                    "no load generator: --load-generator none"
                    if args.load_generator == "none"
                    else f"no load generator ({args.load_generator}) on PATH;"
                    " install one (Debian: apt-get install -y hey) to measure throughput"
                )
                print(f"\n=== throughput: skipped: {reason}", flush=True)
                document["sections"][section] = {"status": "skipped", "reason": reason}
                continue
            if section in ("receivers", "memory") and importlib.util.find_spec("starlette") is None:
                reason = "Starlette is not installed: pip install -e '.[starlette]'"
                print(f"\n=== {section}: skipped: {reason}", flush=True)
                document["sections"][section] = {"status": "skipped", "reason": reason}
                continue
            entry = run_section(section, args, Path(folder), tool)
            failed |= entry["status"] != "ok"
            document["sections"][section] = entry
    json_path = args.out / f"{stem}.json"
    if args.no_plot:
        print("\nno plot (--no-plot)")
    elif not have_matplotlib():
        print("\nmatplotlib is not installed: no plot (pip install matplotlib)")
    else:
        png = render(document, args.out / f"{stem}.png")
        document["plot"] = png.name
        print(f"\nplot: {png}")
    write_json(json_path, document)
    print(f"results: {json_path}")
    for section, entry in document["sections"].items():
        reason = f" ({entry['reason']})" if entry.get("reason") else ""
        print(f"  {section:<10} {entry['status']}{reason}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
