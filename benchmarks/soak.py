"""Long-running memory, fault and soak runs for the verifier and its JWKS cache.

The long versions of ``tests/adversarial/test_faults.py`` and
``tests/adversarial/test_h_load.py`` (threat-model.md §6 groups F and H). Run from the
repository root::

    python benchmarks/soak.py --quick            # every section, small (under a minute)
    nice -n 10 python benchmarks/soak.py         # the long form (about 20 minutes)
    python benchmarks/soak.py --only soak --soak-seconds 120
    PYTHONPATH=/path/to/other/checkout/src python benchmarks/soak.py --quick

Without ``PYTHONPATH`` it uses the installed ``upvest_verify``, else this tree's
``src/``. The load harness is ``tests/adversarial/load_helpers.py`` (loaded by path),
which uses only the public API plus a counting wrapper around the ECDSA primitive.

Sections (``--only`` picks some):

* ``memory``: 100,000 distinct webhooks, each signed and then verified with real
  ECDSA through a JWKS-cached ``Verifier``; traced (``tracemalloc``) and RSS growth
  from the end of a 10 % warm-up to the end.
* ``hostile``: 10,000 distinct hostile requests three ways: unknown kids, garbage
  headers and well-formed wrong signatures on one URL (ECDSA calls counted against
  the candidates' budget); 10,000 distinct huge URLs (16-64 KiB); 10,000 distinct
  1-2 KiB URLs (what the URL memo may keep, up to its cap).
* ``faults``: every fault scenario (endpoint up, refusing, dropping, 500, stalling,
  garbage, rotating; cold and warm) with 500 concurrent verifications, through a
  thread pool and through asyncio tasks, ``--fault-repeats`` times each.
* ``lag``: event-loop lag (p50/p99/max of a 1 ms sleeper) while 500 verifications
  run offloaded (``run_sync=asyncio.to_thread``) and inline, and verifications per
  second with 1, 2 and 4 threads.
* ``soak``: ``--soak-seconds`` (default 600) on the real monotonic clock: the key
  endpoint cycles through up, 500, garbage, stalling, refusing and dropping; keys
  rotate every cycle; each round mixes valid webhooks, unknown-kid noise and hostile
  requests, alternately through threads and a fresh event loop. Memory is sampled
  every 30 s from the end of the first cycle.

Every section checks its rules (no false accept or reject, no exception but
``VerificationError``, fetches within the cache's bounds, memory growth within the
bound printed next to it); the exit status is 1 if any check failed.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import importlib.util
import json
import os
import platform
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if importlib.util.find_spec("upvest_verify") is None:  # not installed: use the source tree
    sys.path.insert(0, str(ROOT / "src"))

import upvest_verify  # noqa: E402
from upvest_verify.testing import sign_webhook  # noqa: E402


def _load_helpers() -> ModuleType:
    path = ROOT / "tests" / "adversarial" / "load_helpers.py"
    spec = importlib.util.spec_from_file_location("load_helpers", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["load_helpers"] = module
    spec.loader.exec_module(module)
    return module


lh = _load_helpers()

KIB = 1024
MIB = 1024 * 1024
FAILURES: list[str] = []


def check(ok: bool, what: str) -> str:
    """Record a failed check; return a verdict word for the report."""
    if not ok:
        FAILURES.append(what)
    return "ok" if ok else "FAILED"


def fmt_bytes(n: int | None) -> str:
    """Bytes as KiB or MiB."""
    if n is None:
        return "n/a"
    return f"{n / MIB:.2f} MiB" if abs(n) >= MIB else f"{n / KIB:.1f} KiB"


def growth_line(label: str, growth: int, bound: int, rss_kib: int | None, what: str) -> str:
    """``label`` traced growth against ``bound`` (checked), and RSS growth."""
    verdict = check(growth < bound, what)
    rss = fmt_bytes((rss_kib or 0) * KIB)
    return f"{label} {fmt_bytes(growth)} (bound {fmt_bytes(bound)}: {verdict}), RSS growth {rss}"


def header(title: str) -> None:
    """Print a section title."""
    print(f"\n== {title} " + "=" * max(0, 74 - len(title)), flush=True)


# ---- memory: valid webhooks, real ECDSA ---------------------------------------------------------


def _sign_batch(pem: bytes, kid: str, start: int, count: int) -> list[tuple[Any, ...]]:
    """Sign webhooks ``start`` .. ``start + count`` (in a worker process)."""
    from upvest_verify.testing import SigningKey

    key = SigningKey.from_pem(pem, key_id=kid)
    out = []
    for i in range(start, start + count):
        body = {"payload": [{"id": f"soak-{i}", "type": "ORDER.FILLED", "n": i}]}
        webhook = sign_webhook(
            body,
            key=key,
            created=lh.REFERENCE_NOW,
            url=lh.WEBHOOK_URL,
            dialect="rfc9421" if i % 2 else "upvest-v6",
            encoding="raw" if i % 3 == 0 else "der",
            nonce=f"soak{i:x}",
        )
        out.append((webhook.method, webhook.url, tuple(webhook.headers), webhook.body))
    return out


def signed_stream(n: int, key: Any, start: int = 0, batch: int = 500) -> Iterator[Any]:
    """``n`` distinct webhooks, each freshly signed (own body and nonce), as requests.

    A worker process signs, a few batches ahead, so the ECDSA signing neither runs
    under ``tracemalloc`` nor doubles the run time; each request is unpickled here,
    while tracing, and dropped once verified.
    """
    import multiprocessing

    pem = key.to_pem()
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(1, mp_context=context) as pool:
        pending: list[concurrent.futures.Future[list[tuple[Any, ...]]]] = []
        offsets = iter(range(start, start + n, batch))

        def submit() -> None:
            offset = next(offsets, None)
            if offset is not None:
                count = min(batch, start + n - offset)
                pending.append(pool.submit(_sign_batch, pem, key.key_id, offset, count))

        for _ in range(3):
            submit()
        while pending:
            signed = pending.pop(0).result()
            submit()
            for method, url, headers, body in signed:
                yield lh.Request("valid", method, url, headers, body, frozenset({lh.ACCEPTED}), 2)
            del signed


def section_memory(n: int) -> None:
    """``n`` distinct valid webhooks, real ECDSA: traced and RSS growth after warm-up."""
    header(f"memory: {n:,} verifications (real ECDSA, distinct webhooks)")
    key = lh.load_keys()["a"]
    warm = max(1, n // 10)
    tally = lh.Tally()
    started = time.perf_counter()
    with (
        lh.quiet_library_logs(),
        lh.Harness([key]) as h,
        lh.counting_verify_primitive() as calls,
        lh.MemoryProbe() as memory,
    ):
        lh.verify_stream(h.verifier, signed_stream(warm, key), tally)
        memory.mark()
        done = warm
        step = max(1, (n - warm) // 4)
        while done < n:
            batch = min(step, n - done)
            lh.verify_stream(h.verifier, signed_stream(batch, key, start=done), tally)
            done += batch
            print(
                f"  {done:>9,} verified  traced growth {fmt_bytes(memory.sample(str(done))):>10}"
                f"  RSS growth {fmt_bytes((memory.rss_growth_kib() or 0) * KIB):>10}",
                flush=True,
            )
        growth, rss = memory.growth(), memory.rss_growth_kib()
        fetches, http = h.source.calls, h.server.requests
    seconds = time.perf_counter() - started
    bound = 256 * KIB
    accepted = tally.count("valid", "accepted")
    print(f"  verdicts: {tally.by_kind()}  ECDSA calls: {calls.count:,}")
    print(
        f"  fetches: {fetches} (HTTP {http})  [{seconds:.0f} s, {n / seconds:,.0f} verifications/s]"
    )
    print("  " + growth_line("traced growth after warm-up:", growth, bound, rss, "memory: growth"))
    check(accepted == n and not tally.problems(), f"memory: verdicts {tally.problems()[:3]}")
    check(fetches == 1, f"memory: {fetches} fetches")


# ---- hostile requests -------------------------------------------------------------------------


def _hostile_run(label: str, requests: Iterator[Any], warm: Iterator[Any], bound: int) -> None:
    key_tally = lh.Tally()
    started = time.perf_counter()
    with (
        lh.quiet_library_logs(),
        lh.Harness([lh.load_keys()["a"]]) as h,
        lh.counting_verify_primitive() as calls,
        lh.MemoryProbe() as memory,
    ):
        lh.verify_stream(h.verifier, warm, key_tally)
        memory.mark()
        calls.count = 0
        tally = lh.Tally()
        budget = 0
        candidates = 0

        def counted() -> Iterator[Any]:
            nonlocal budget, candidates
            for r in requests:
                budget += r.candidates
                candidates += 1 if r.candidates else 0
                yield r

        lh.verify_stream(h.verifier, counted(), tally)
        growth, rss = memory.growth(), memory.rss_growth_kib()
        fetches = h.source.calls
    seconds = time.perf_counter() - started
    total = tally.count()
    print(f"  {label}: {total:,} requests in {seconds:.1f} s ({1e6 * seconds / total:.0f} µs each)")
    kinds = tally.by_kind()
    for kind, verdicts in kinds.items():
        print(f"    {kind:<18} {verdicts}")
    print(
        f"    ECDSA calls {calls.count:,} (budget {budget:,} for {candidates:,} candidates: "
        f"{check(calls.count <= budget, f'hostile {label}: ECDSA over budget')}), "
        f"fetches {fetches} ({check(fetches <= 3, f'hostile {label}: fetches')})"
    )
    print("    " + growth_line("traced growth", growth, bound, rss, f"hostile {label}: growth"))
    check(
        not tally.problems() and tally.count(verdict="accepted") == 0,
        f"hostile {label}: {tally.problems()[:3]}",
    )


def section_hostile(n: int) -> None:
    """Hostile requests on one URL, on huge distinct URLs, and on short distinct URLs."""
    header(f"hostile: {n:,} distinct requests, three ways")
    key = lh.load_keys()["a"]
    warm = max(1, n // 20)
    weights = [1.0] * len(lh.CHEAP_HOSTILE_KINDS) + [0.2, 0.03]
    kinds = [*lh.CHEAP_HOSTILE_KINDS, "candidate", "many_labels"]
    _hostile_run(
        "one URL",
        lh.hostile_requests(n, key=key, seed=2, kinds=kinds, weights=weights),
        lh.hostile_requests(warm, key=key, seed=1, kinds=kinds, weights=weights),
        1 * MIB,
    )
    _hostile_run(
        "huge URLs (16-64 KiB)",
        lh.hostile_requests(n, key=key, seed=4, huge_url=16 * KIB),
        lh.hostile_requests(warm, key=key, seed=3, huge_url=16 * KIB),
        1 * MIB,
    )
    # 1-2 KiB URLs fit the URL memo: it may keep up to its cap (1,024 entries, each the
    # URL and its split path), about 5 MiB; past that it starts over.
    _hostile_run(
        "short URLs (0.5-2 KiB)",
        lh.hostile_requests(n, key=key, seed=6, huge_url=512),
        lh.hostile_requests(warm, key=key, seed=5, huge_url=512),
        8 * MIB,
    )


# ---- fault scenarios --------------------------------------------------------------------------


def section_faults(repeats: int, runtimes: list[str], n: int) -> None:
    """Every fault scenario with ``n`` concurrent verifications."""
    header(f"faults: {len(lh.FAULT_SCENARIOS)} scenarios x {runtimes} x {repeats}, {n} concurrent")
    for name in lh.FAULT_SCENARIOS:
        for runtime in runtimes:
            for _ in range(repeats):
                result = lh.run_fault_scenario(name, runtime, n=n)
                problems = result.problems()
                verdict = check(not problems, f"faults {name}/{runtime}: {problems[:3]}")
                print(f"  {verdict:<6} {result.summary()}", flush=True)


# ---- event-loop lag and thread scaling --------------------------------------------------------


def section_lag(n: int) -> None:
    """Event-loop lag with offloaded and inline verification; throughput per thread count."""
    header(f"lag: event loop during {n} concurrent averify() calls")
    key = lh.load_keys()["a"]
    requests = lh.cycle(lh.signed_pool(key), n)
    with lh.quiet_library_logs(), lh.Harness([key]) as h:
        h.cache.refresh()

        async def run(offload: bool) -> tuple[Any, float, int]:
            probe = lh.LagProbe(interval=0.001)
            probe.start()
            await asyncio.sleep(0.01)
            started = time.perf_counter()
            run_sync = asyncio.to_thread if offload else None
            results = await asyncio.gather(
                *(
                    h.verifier.averify(r.method, r.url, r.headers, r.body, run_sync=run_sync)
                    for r in requests
                ),
                return_exceptions=True,
            )
            seconds = time.perf_counter() - started
            await probe.stop()
            ok = sum(1 for r in results if isinstance(r, upvest_verify.VerifiedWebhook))
            return probe, seconds, ok

        for offload in (True, False):
            probe, seconds, ok = asyncio.run(run(offload))
            label = "offloaded (to_thread)" if offload else "inline"
            print(
                f"  {label:<22} {ok}/{n} verified in {seconds:.2f} s; lag p50 "
                f"{1e3 * probe.percentile(0.5):.2f} ms, p99 {1e3 * probe.percentile(0.99):.2f} ms, "
                f"max {1e3 * max(probe.lags or [0.0]):.2f} ms over {len(probe.lags)} ticks"
            )
            check(ok == n, f"lag: {n - ok} verifications failed ({label})")

        header("throughput: Verifier.verify from a thread pool")
        for workers in (1, 2, 4):
            batch = lh.cycle(lh.signed_pool(key), 2000)
            started = time.perf_counter()
            with concurrent.futures.ThreadPoolExecutor(workers) as pool:
                list(
                    pool.map(lambda r: h.verifier.verify(r.method, r.url, r.headers, r.body), batch)
                )
            seconds = time.perf_counter() - started
            print(f"  {workers} thread(s): {len(batch) / seconds:,.0f} verifications/s")
    print(f"  (cores available: {os.cpu_count()})")


# ---- soak -------------------------------------------------------------------------------------


def section_soak(seconds: float, segment: float) -> None:
    """The H8 soak on the real monotonic clock."""
    header(f"soak: {seconds:.0f} s, segment {segment:.0f} s (cycle {10 * segment:.0f} s)")
    print(
        "  schedule per cycle:",
        ", ".join(m + (f" [{e}]" if e else "") for m, e in lh.SOAK_SCHEDULE),
    )

    def sample(rounds: int, wall: float, growth: int, rss_kib: int | None) -> None:
        print(
            f"  t={wall:6.0f} s  rounds {rounds:>7,}  traced growth {fmt_bytes(growth):>10}"
            f"  RSS growth {fmt_bytes((rss_kib or 0) * KIB):>10}",
            flush=True,
        )

    started = time.perf_counter()
    result = lh.run_soak(
        seconds=seconds,
        segment=segment,
        real_clock=True,
        burst=24,
        workers=8,
        on_sample=sample,
        sample_every=min(30.0, max(5.0, seconds / 10)),
    )
    wall = time.perf_counter() - started
    total = result.tally.count()
    rounds, rotations = result.rounds, result.rotations
    print(f"  {rounds:,} rounds, {total:,} requests in {wall:.0f} s; {rotations} key rotations")
    for kind, verdicts in result.tally.by_kind().items():
        print(f"    {kind:<18} {verdicts}")
    fetches_ok = check(result.fetches <= result.max_fetches, "soak: fetches")
    print(
        f"  fetches {result.fetches} (HTTP {result.http_requests}; allowed "
        f"{result.max_fetches}: {fetches_ok}); cache stats {result.stats}"
    )
    bound = 1 * MIB
    line = growth_line(
        "traced growth after the first cycle",
        result.growth,
        bound,
        result.rss_growth_kib,
        "soak: growth",
    )
    print("  " + line)
    problems = result.problems()
    print(f"  rule violations: {problems or 'none'}")
    check(not problems, f"soak: {problems[:3]}")


# ---- main -------------------------------------------------------------------------------------

SECTIONS = ("memory", "hostile", "faults", "lag", "soak")


def main(argv: list[str] | None = None) -> int:
    """Parse the arguments, run the sections, print the report; 1 if a check failed."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, under a minute")
    parser.add_argument("--only", action="append", choices=SECTIONS, help="run only these sections")
    parser.add_argument("--verifications", type=int, help="memory: webhooks (default 100,000)")
    parser.add_argument("--hostile", type=int, help="hostile: requests per run (default 10,000)")
    parser.add_argument("--fault-repeats", type=int, help="faults: runs per scenario (default 3)")
    parser.add_argument(
        "--concurrency", type=int, default=500, help="faults and lag: concurrent verifications"
    )
    parser.add_argument("--soak-seconds", type=float, help="soak: wall-clock seconds (default 600)")
    parser.add_argument(
        "--segment", type=float, help="soak: seconds per schedule segment (default 6)"
    )
    parser.add_argument("--json", type=Path, help="also write the failed checks as JSON here")
    args = parser.parse_args(argv)

    quick = args.quick
    sections = args.only or list(SECTIONS)
    print(
        f"upvest_verify {upvest_verify.__version__} from {Path(upvest_verify.__file__).parent}; "
        f"Python {platform.python_version()}; {os.cpu_count()} cores; load {os.getloadavg()}"
    )
    started = time.perf_counter()
    runners: dict[str, Callable[[], None]] = {
        "memory": lambda: section_memory(args.verifications or (2_000 if quick else 100_000)),
        "hostile": lambda: section_hostile(args.hostile or (400 if quick else 10_000)),
        "faults": lambda: section_faults(
            args.fault_repeats or 1 if quick else args.fault_repeats or 3,
            ["threads"] if quick else ["threads", "asyncio"],
            args.concurrency,
        ),
        "lag": lambda: section_lag(args.concurrency),
        "soak": lambda: section_soak(
            args.soak_seconds or (12.0 if quick else 600.0), args.segment or (1.0 if quick else 6.0)
        ),
    }
    for name in SECTIONS:
        if name in sections:
            runners[name]()
    header(f"done in {time.perf_counter() - started:.0f} s; load {os.getloadavg()}")
    print(f"failed checks: {FAILURES or 'none'}")
    if args.json:
        args.json.write_text(json.dumps({"failed": FAILURES}, indent=2))
    return 1 if FAILURES else 0


if __name__ == "__main__":
    sys.exit(main())
