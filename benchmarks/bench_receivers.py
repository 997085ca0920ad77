"""Webhook receivers side by side: the ASGI middleware against a hand-written floor,
offloading under load, and multi-core deployments.

Run from the repository root::

    python benchmarks/bench_receivers.py                 # every section (about 10 minutes, 2 cores)
    python benchmarks/bench_receivers.py --quick         # a smoke run (under a minute)
    python benchmarks/bench_receivers.py --only inprocess first --runs 5 --json out.json

Sections (``--only`` picks some; every ratio is measured side by side in one process
or one set of servers, rounds interleaved, and reported as min / median / max over
``--runs`` runs or rounds, with the load average before and after):

* ``inprocess``: a signed 10 KiB webhook through ASGI apps called directly (a scope,
  ``receive`` and ``send``; no server): the **floor** (a raw ASGI app that reads the
  body, hashes it with SHA-512 and does one P-521 verify with ``cryptography``), the
  **middleware** (``UpvestWebhookMiddleware(offload=False)`` in front of a raw app
  that reads the replayed body), **verify** (a raw app calling
  ``Verifier.verify`` with the scope's bytes header lines), and a **hand-written**
  receiver for this one webhook shape (splits the headers, rebuilds the base, checks the
  digest and the signature, and nothing else). Then the same paths with
  the ECDSA verify stubbed out, and each piece of the middleware timed alone: the
  Python that remains beyond the floor.
* ``first``: fresh interpreters start the middleware (inline and offloaded) through
  ``lifespan.startup``, then time the first webhook against the median of the next
  ones; the same without a lifespan (no warm-up).
* ``offload`` (needs ``hey``): uvicorn, one worker, modes ``inline``, ``offload``
  (the worker-thread pool, one thread per core), ``offload-1`` (one worker thread),
  ``offload-anyio`` (the previous hand-off,
  ``anyio.to_thread.run_sync`` under a per-loop limiter) and ``bare`` (no
  middleware), loaded by ``hey`` saturating (``-c 16``) and paced (``-c 4`` at half of
  inline's rate), while ``/health`` is probed and the event loop's lag sampled.
* ``multicore`` (needs ``hey``): one and two workers of uvicorn (``--workers``),
  gunicorn with ``uvicorn_worker.UvicornWorker``, Flask on gunicorn's sync workers
  and Django on uvicorn and on gunicorn, with and without keep-alive: requests/s,
  server CPU (every process of the server, from ``/proc``), ``hey``'s CPU, and
  requests/s per busy core; plus whether accepted sockets have ``TCP_NODELAY``.

Modes and figures are explained in benchmarks/README.md. Not part of the test suite.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import hashlib
import importlib.util
import json
import shutil
import statistics
import subprocess
import sys
import time
import timeit
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

if importlib.util.find_spec("upvest_verify") is None:  # not installed: use the source tree
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _asgi_contenders import END, SIZE, START, Receivers
from _common import child_env, describe_machine, summary, write_json
from _receiver_servers import load_average, multicore_section, offload_section

HERE = Path(__file__).resolve().parent
SECTIONS = ("inprocess", "first", "offload", "multicore")


async def _interleaved(
    receivers: Receivers, rounds: int, batch_ms: float
) -> dict[str, list[float]]:
    apps = receivers.apps
    names = list(apps)
    sizes = {}
    for name in names:
        per_call = await receivers.batch(apps[name], 5)
        sizes[name] = max(1, round(batch_ms * 1e6 / per_call))
    samples: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds):
        for i in range(len(names)):
            name = names[(r + i) % len(names)]
            samples[name].append(await receivers.batch(apps[name], sizes[name]))
    return samples


RATIOS = (
    ("middleware", "floor"),
    ("verify", "floor"),
    ("hand-written", "floor"),
    ("verify", "hand-written"),
    ("middleware", "hand-written"),
)


def _ratios(samples: dict[str, list[float]], name: str, against: str) -> dict[str, float]:
    paired = [a / b for a, b in zip(samples[name], samples[against], strict=True)]
    return {
        "paired_median": statistics.median(paired),
        "fastest": min(samples[name]) / min(samples[against]),
        "median_us": statistics.median(samples[name]) / 1000,
    }


def inprocess_section(
    runs: int, rounds: int, batch_ms: float, handoffs: int = 20000
) -> dict[str, Any]:
    """Floor, middleware and verify, interleaved; then the stubbed profile and hand-offs."""
    receivers = Receivers()
    loop = asyncio.new_event_loop()
    problems = loop.run_until_complete(receivers.check())
    if problems:
        raise RuntimeError("; ".join(problems))
    load_before = load_average()
    per_run = []
    gc_was_on = gc.isenabled()
    gc.disable()
    try:
        for run in range(runs):
            samples = loop.run_until_complete(_interleaved(receivers, rounds, batch_ms))
            entry: dict[str, Any] = {"floor_median_us": statistics.median(samples["floor"]) / 1000}
            for name, against in RATIOS:
                entry[f"{name}/{against}"] = _ratios(samples, name, against)
            per_run.append(entry)
            shown = "; ".join(
                f"{n}/{a} {entry[f'{n}/{a}']['paired_median']:.4f}"
                f" (fastest {entry[f'{n}/{a}']['fastest']:.4f})"
                for n, a in RATIOS
            )
            print(f"  run {run + 1}: floor {entry['floor_median_us']:.1f} us; {shown}", flush=True)
    finally:
        if gc_was_on:
            gc.enable()
    result: dict[str, Any] = {
        "body_bytes": SIZE,
        "runs": per_run,
        "load_average": [load_before, load_average()],
    }
    for name in (f"{n}/{a}" for n, a in RATIOS):
        result[name] = {
            key: summary(run[name][key] for run in per_run) for key in ("paired_median", "fastest")
        }
    result["profile"] = stubbed_profile(receivers, loop)
    loop.close()
    result["handoff"] = handoff_figures(handoffs)
    return result


def stubbed_profile(receivers: Receivers, loop: asyncio.AbstractEventLoop) -> dict[str, Any]:
    """The Python beyond the floor: the three paths with the ECDSA verify stubbed out,
    warm, and each piece of the middleware's own work timed alone (nanoseconds)."""
    import upvest_verify._fast as fast
    from upvest_verify.adapters._asgi import asgi_route_path, read_head
    from upvest_verify.adapters._body import BodyReader
    from upvest_verify.adapters._run import store_result

    real = fast.verify_signature
    fast.verify_signature = lambda key, signature, base: True  # type: ignore[assignment]
    floor_app = receivers.apps["floor"]
    sha512 = hashlib.sha512

    async def floor_without_ecdsa(scope: dict[str, Any], receive: Any, send: Any) -> None:
        sha512((await receive())["body"]).digest()
        await send(START)
        await send(END)

    receivers.apps["floor"] = floor_without_ecdsa
    hand_written_keys = dict(receivers.hand_written_keys)
    receivers.hand_written_keys.update(dict.fromkeys(hand_written_keys, lambda *_: None))
    try:
        # The fastest of 20 batches per path, the paths interleaved batch by batch so
        # that a slower spell of a shared machine falls on all of them alike.
        batches: dict[str, list[float]] = {name: [] for name in receivers.apps}
        for _ in range(20):
            for name, app in receivers.apps.items():
                batches[name].append(loop.run_until_complete(receivers.batch(app, 500)))
        warm = {name: min(times) / 1000 for name, times in batches.items()}
        middleware = receivers.middleware
        check = middleware._check
        scope = dict(receivers.scope)
        head = read_head(scope)
        body = receivers.body
        pieces = {
            "route: asgi_route_path + PathMatcher": lambda: middleware._paths(
                asgi_route_path(scope)
            ),
            "read_head: one dict() of the header lines": lambda: read_head(scope),
            "URLRebuilder.from_asgi": lambda: check.url.from_asgi(scope, head),
            "body rules (BodyReader.whole)": lambda: BodyReader.whole(
                check.max_body_size, head.declared, body
            ),
            "store_result": lambda: store_result(scope, None),  # type: ignore[arg-type]
            "verifier: _header_dict of the head's dict": lambda: fast._header_dict(head.fields),
            "verifier: _header_dict of the scope's list": lambda: fast._header_dict(
                receivers.scope["headers"]
            ),
        }
        timed = {}
        for name, call in pieces.items():
            number = 20000
            best = min(timeit.repeat(call, number=number, repeat=5))
            timed[name] = round(best / number * 1e9)
    finally:
        fast.verify_signature = real
        receivers.apps["floor"] = floor_app
        receivers.hand_written_keys.update(hand_written_keys)
    result = {
        "per_request_us_without_ecdsa": {k: round(v, 2) for k, v in warm.items()},
        "middleware_beyond_verify_us": round(warm["middleware"] - warm["verify"], 2),
        "verify_beyond_floor_us": round(warm["verify"] - warm["floor"], 2),
        "hand_written_beyond_floor_us": round(warm["hand-written"] - warm["floor"], 2),
        "pieces_ns": timed,
    }
    print(
        "  without the ECDSA verify (warm, us per request):", result["per_request_us_without_ecdsa"]
    )
    for name, ns in timed.items():
        print(f"    {name:<48} {ns:6d} ns")
    return result


# --------------------------------------------------------------------------- hand-off


def handoff_figures(calls: int) -> dict[str, Any]:
    """CPU per hand-off of an empty check to a worker thread and back, per mechanism.

    The middleware's pool (``Offloader(2)``), asyncio's ``run_in_executor`` with a
    2-thread pool, and ``anyio.to_thread.run_sync`` under a per-loop limiter of 2 (the
    previous hand-off); one caller at a time, and 16 at once. Process CPU time (every
    thread) over the calls, so the hand-off's wake-ups and GIL transfers count too.
    """
    import os
    from concurrent.futures import ThreadPoolExecutor

    import anyio
    import anyio.to_thread

    from upvest_verify.adapters._run import Offloader

    pool = Offloader(2)
    executor = ThreadPoolExecutor(2)

    def check() -> None:
        return None

    async def via_executor(fn: Callable[[], None]) -> None:
        await asyncio.get_running_loop().run_in_executor(executor, fn)

    async def run(callers: int) -> dict[str, float]:
        limiter = anyio.CapacityLimiter(2)

        async def via_anyio(fn: Callable[[], None]) -> None:
            await anyio.to_thread.run_sync(fn, limiter=limiter)

        mechanisms = {"pool": pool, "run_in_executor": via_executor, "anyio": via_anyio}
        figures = {}
        for name, offload in mechanisms.items():

            async def caller(offload: Any = offload) -> None:
                for _ in range(calls // callers):
                    await offload(check)

            await caller()  # threads started, code warm
            before = os.times()
            await asyncio.gather(*(caller() for _ in range(callers)))
            after = os.times()
            cpu = (after.user - before.user) + (after.system - before.system)
            figures[name] = round(cpu / calls * 1e6, 1)
        return figures

    try:
        result = {
            "calls": calls,
            "cpu_us_per_handoff_one_caller": asyncio.run(run(1)),
            "cpu_us_per_handoff_16_callers": asyncio.run(run(16)),
        }
    finally:
        executor.shutdown()
    print("  CPU per hand-off, one caller (us):", result["cpu_us_per_handoff_one_caller"])
    print("  CPU per hand-off, 16 callers (us):", result["cpu_us_per_handoff_16_callers"])
    return result


# --------------------------------------------------------------------------- first request

_FIRST_CHILD = r"""
import asyncio, json, os, statistics, sys, time
import upvest_verify
from upvest_verify import KeySet, Verifier
from upvest_verify.adapters.starlette import UpvestWebhookMiddleware

spec = json.loads(os.environ["BENCH_FIRST"])
keys = KeySet.from_jwks(spec["jwks"])
headers = [(k.encode(), v.encode()) for k, v in spec["headers"]]
body = spec["body"].encode()
answers = []

async def inner(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            await send({"type": message["type"] + ".complete"})
            if message["type"] == "lifespan.shutdown":
                return
    await receive()
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})

async def main():
    middleware = UpvestWebhookMiddleware(inner, verifier=Verifier(keys), offload=spec["offload"])
    scope = {"type": "http", "method": "POST", "scheme": "http", "path": "/webhooks/upvest",
             "raw_path": b"/webhooks/upvest", "query_string": b"", "root_path": "",
             "headers": headers, "server": ("127.0.0.1", 80), "client": ("127.0.0.1", 5000)}
    message = {"type": "http.request", "body": body, "more_body": False}
    async def receive():
        return message
    async def send(m):
        if m["type"] == "http.response.start":
            answers.append(m["status"])
    started = 0.0
    if spec["lifespan"]:
        queue = asyncio.Queue()
        done = asyncio.Queue()
        for kind in ("lifespan.startup", "lifespan.shutdown"):
            queue.put_nowait({"type": kind})
        async def send_lifespan(m):
            await done.put(m)
        task = asyncio.create_task(middleware({"type": "lifespan"}, queue.get, send_lifespan))
        t = time.perf_counter()
        assert (await done.get())["type"] == "lifespan.startup.complete"
        started = time.perf_counter() - t
    times = []
    for _ in range(spec["requests"]):
        t = time.perf_counter()
        await middleware(dict(scope), receive, send)
        times.append(time.perf_counter() - t)
    if spec["lifespan"]:
        await done.get()
        await task
    assert answers == [200] * spec["requests"], answers
    print(json.dumps({"startup_ms": started * 1000, "first_ms": times[0] * 1000,
                      "warm_ms": statistics.median(times[1:]) * 1000}))

asyncio.run(main())
"""


def first_section(interpreters: int, requests: int) -> dict[str, Any]:
    """First webhook against warm ones, in fresh interpreters, per mode."""
    from upvest_verify.testing import generate_key, make_jwks, sign_webhook

    key = generate_key()
    signed = sign_webhook(
        b'{"payload":[]}', key=key, url="http://127.0.0.1/webhooks/upvest", ttl=3600
    )
    modes = {
        "inline, lifespan (warm-up)": (False, True),
        "offload, lifespan (warm-up)": (True, True),
        "inline, no lifespan": (False, False),
        "offload, no lifespan": (True, False),
    }
    samples: dict[str, list[dict[str, float]]] = {name: [] for name in modes}
    load_before = load_average()
    for i in range(interpreters):
        for name, (offload, lifespan) in modes.items():
            spec = {
                "jwks": json.dumps(make_jwks(key)),
                "headers": list(signed.headers),
                "body": signed.body.decode(),
                "offload": offload,
                "lifespan": lifespan,
                "requests": requests,
            }
            out = subprocess.run(  # noqa: S603 - this interpreter, code from this file
                [sys.executable, "-c", _FIRST_CHILD],
                env=child_env(BENCH_FIRST=json.dumps(spec)),
                capture_output=True,
                text=True,
                timeout=120,
                check=True,
            )
            samples[name].append(json.loads(out.stdout))
        print(f"  interpreter round {i + 1}/{interpreters} done", flush=True)
    result: dict[str, Any] = {"interpreters": interpreters, "requests": requests, "modes": {}}
    for name, runs in samples.items():
        ratios = [r["first_ms"] / r["warm_ms"] for r in runs]
        entry = {
            "first/warm": summary(ratios, 3),
            "first_ms": summary((r["first_ms"] for r in runs), 3),
            "warm_ms": summary((r["warm_ms"] for r in runs), 3),
            "startup_ms": summary((r["startup_ms"] for r in runs), 2),
        }
        result["modes"][name] = entry
        print(
            f"  {name:<30} first/warm {entry['first/warm']['min']:.2f}"
            f" / {entry['first/warm']['median']:.2f} / {entry['first/warm']['max']:.2f}"
            f"  (warm {entry['warm_ms']['median']:.2f} ms,"
            f" lifespan startup {entry['startup_ms']['median']:.1f} ms)"
        )
    result["load_average"] = [load_before, load_average()]
    return result


# --------------------------------------------------------------------------- main


def main(argv: Sequence[str] | None = None) -> int:
    """Run the chosen sections; return 1 if one failed."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="few rounds and requests")
    parser.add_argument("--only", nargs="+", choices=SECTIONS, help="run only these sections")
    parser.add_argument("--runs", type=int, help="runs of inprocess, rounds of the server runs")
    parser.add_argument("--requests", type=int, help="hey requests per server measurement")
    parser.add_argument(
        "--load-generator",
        choices=("auto", "hey", "none"),
        default="auto",
        help="hey for the server sections; none (or no hey on PATH) skips them",
    )
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        from _receiver_servers import serve

        serve(args.serve)
        return 0
    quick = args.quick
    runs = args.runs or (1 if quick else 3)
    hey = None if args.load_generator == "none" else shutil.which("hey")
    document: dict[str, Any] = {"benchmark": "receivers", "machine": describe_machine()}
    sections: dict[str, Any] = {}
    status = 0
    for section in args.only or SECTIONS:
        print(f"\n--- {section} (load average {load_average()})", flush=True)
        started = time.perf_counter()
        try:
            if section == "inprocess":
                figures = inprocess_section(
                    runs, 9 if quick else 101, 10.0, 2000 if quick else 20000
                )
            elif section == "first":
                figures = first_section(2 if quick else 7, 20 if quick else 60)
            elif hey is None:
                reason = (
                    "no hey on PATH" if args.load_generator != "none" else "--load-generator none"
                )
                print(f"  skipped: {reason} (Debian: apt-get install -y hey)")
                sections[section] = {"status": "skipped", "reason": reason}
                continue
            elif section == "offload":
                figures = offload_section(hey, runs, args.requests or (400 if quick else 3000))
            else:
                figures = multicore_section(hey, runs, args.requests or (300 if quick else 2500))
        except (RuntimeError, OSError, ValueError, subprocess.SubprocessError) as e:
            print(f"  failed: {e}")
            sections[section] = {"status": "failed", "reason": str(e)}
            status = 1
            continue
        seconds = round(time.perf_counter() - started, 1)
        sections[section] = {"status": "ok", "seconds": seconds, "results": figures}
    document["sections"] = sections
    if args.json:
        write_json(args.json, document)
    return status


if __name__ == "__main__":
    sys.exit(main())
