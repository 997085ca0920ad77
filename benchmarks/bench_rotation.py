"""Key rotation and unknown-kid floods through ``Verifier`` + ``JWKSCache`` (K4, F2, F3).

A loopback HTTP server on 127.0.0.1 (ephemeral port) serves the JWKS and counts
requests; the cache runs on a virtual monotonic clock the script moves, so "a key
published N seconds after a fetch" takes no waiting. Two measurements::

    python benchmarks/bench_rotation.py [--quick] [--src PATH] [--json PATH]

(a) **Rotation.** After a fetch of the cache's own (the cold start, or a TTL
    refresh), Upvest publishes a new key N seconds later and signs every webhook
    with it from then on, one every ``--interval`` seconds. Counted: the webhooks
    refused (``unknown_key``) before the first one is accepted (target 0), and the
    virtual seconds from publication to that first accept. Sync (``verify``) and
    async (``averify``).
(b) **Flood.** 2,000 webhooks under random unknown kids, from 16 threads and from
    2,000 asyncio tasks: once as one burst 2 s after a fetch, once spread evenly
    over four cooldowns. Counted: JWKS fetches the flood caused, the most fetches
    in any ``refresh_cooldown``-long window (target 1), the real time a refused
    webhook costs (p50/p99), and the WARNING lines logged for refused refreshes.

``--src`` imports ``upvest_verify`` from another source tree (e.g. an older
checkout, for before/after figures). Not part of the test suite; the counts do
not depend on the machine, the p50/p99 do.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import random
import statistics
import sys
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

SRC = Path(__file__).resolve().parents[1] / "src"


class VirtualClock:
    """A monotonic clock the benchmark moves by hand (thread-safe)."""

    def __init__(self, start: float = 1000.0) -> None:
        self._now = start
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> None:
        """Move the clock forward."""
        with self._lock:
            self._now += seconds


class JWKSServer:
    """A loopback HTTP server serving ``document``; records the virtual time of each request."""

    def __init__(self, clock: VirtualClock) -> None:
        self.document: dict[str, Any] = {"keys": []}
        self.fetch_times: list[float] = []
        self._lock = threading.Lock()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                with owner._lock:
                    owner.fetch_times.append(clock())
                    body = json.dumps(owner.document).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        class Server(ThreadingHTTPServer):
            daemon_threads = True

        self._httpd = Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}/auth/verify_keys"
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    @property
    def fetches(self) -> int:
        """Requests served so far."""
        with self._lock:
            return len(self.fetch_times)

    def close(self) -> None:
        """Stop serving."""
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(10)


class Bench:
    """One cache + verifier + server, on a virtual clock."""

    def __init__(self, cooldown: float) -> None:
        from upvest_verify import Verifier
        from upvest_verify.jwks import JWKSCache, URLKeySource
        from upvest_verify.testing import generate_key, make_jwks

        self.clock = VirtualClock()
        self.server = JWKSServer(self.clock)
        self.old = generate_key(kid="old-key")
        self.new = generate_key(kid="new-key")
        self.server.document = make_jwks(self.old)
        self._make_jwks = make_jwks
        source = URLKeySource(self.server.url, allow_insecure_loopback=True, timeout=5.0)
        self.cache = JWKSCache(
            source, refresh_cooldown=cooldown, monotonic=self.clock, wait_timeout=10
        )
        self.verifier = Verifier(self.cache)
        self.cooldown = cooldown

    def publish_new_key(self) -> None:
        """Serve the old and the new key from now on."""
        self.server.document = self._make_jwks(self.old, self.new)

    def close(self) -> None:
        """Stop the server."""
        self.server.close()


def signed(key: Any) -> Any:
    """A webhook signed now with ``key``."""
    from upvest_verify.testing import sample_events, sign_webhook

    return sign_webhook(sample_events(1), key=key)


def forge(template: Any, kid: str) -> Any:
    """``template`` with its keyid replaced by ``kid``."""
    from upvest_verify.testing import SignedWebhook

    value = next(v for k, v in template.headers if k.lower() == "signature-input")
    start = value.index('keyid="') + len('keyid="')
    original = value[start : value.index('"', start)]
    headers = [
        (k, v.replace(original, kid) if k.lower() == "signature-input" else v)
        for k, v in template.headers
    ]
    return SignedWebhook(template.method, template.url, headers, template.body, template.base)


# ---- (a) rotation latency ------------------------------------------------------------------


async def _rotation(
    bench: Bench, after: str, delay: float, interval: float, horizon: float, mode: str
) -> tuple[int, float | None]:
    from upvest_verify import KeyNotFound, Reason

    verifier, cache = bench.verifier, bench.cache

    async def run(webhook: Any) -> Any:
        if mode == "sync":
            return verifier.verify(*_parts(webhook))
        return await verifier.averify(*_parts(webhook))

    await run(signed(bench.old))  # the cold start
    if after == "ttl refresh":
        bench.clock.advance(301)
        stale = cache.current()
        await run(signed(bench.old))  # served stale; the TTL refresh runs detached
        deadline = time.monotonic() + 10
        while (await cache.acurrent()) is stale:  # bounded wait for the refresh
            if time.monotonic() > deadline:
                raise RuntimeError("the TTL refresh did not finish")
            await asyncio.sleep(0.005)
    bench.clock.advance(delay)
    bench.publish_new_key()
    refused, waited = 0, 0.0
    while waited <= horizon:
        try:
            await run(signed(bench.new))
        except KeyNotFound as e:
            if e.reason is not Reason.UNKNOWN_KEY:
                raise
            refused += 1
        else:
            return refused, waited
        bench.clock.advance(interval)
        waited += interval
    return refused, None


def rotation(
    after: str, delay: float, interval: float, horizon: float, mode: str, cooldown: float
) -> tuple[int, float | None]:
    """Refused webhooks before the first accept, and seconds from publication to it.

    Both paths run inside one event loop (so a detached refresh task lives on);
    ``sync`` calls the blocking ``verify()`` from it, as a sync app's thread would.
    """
    bench = Bench(cooldown)
    try:
        return asyncio.run(_rotation(bench, after, delay, interval, horizon, mode))
    finally:
        bench.close()


# ---- (b) unknown-kid flood -----------------------------------------------------------------


def _kids(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return [f"forged-{rng.getrandbits(64):016x}" for _ in range(n)]


def _refuse(verifier: Any, webhook: Any) -> float:
    from upvest_verify import KeyNotFound

    start = time.perf_counter()
    try:
        verifier.verify(webhook.method, webhook.url, webhook.headers, webhook.body)
    except KeyNotFound:
        return time.perf_counter() - start
    raise RuntimeError("a forged kid was accepted")


async def _arefuse(verifier: Any, webhook: Any) -> float:
    from upvest_verify import KeyNotFound

    start = time.perf_counter()
    try:
        await verifier.averify(webhook.method, webhook.url, webhook.headers, webhook.body)
    except KeyNotFound:
        return time.perf_counter() - start
    raise RuntimeError("a forged kid was accepted")


class _Count(logging.Handler):
    """Counts the library's WARNING lines and keeps the first one (instead of printing them)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.count = 0
        self.first = ""

    def emit(self, record: logging.LogRecord) -> None:
        self.count += 1
        self.first = self.first or record.getMessage()


def flood(
    n: int, threads: int, mode: str, spread: bool, cooldown: float
) -> tuple[int, int, int, float, float, int]:
    """Fetches caused, windows spanned, most fetches in one window, p50, p99 (ms), log lines."""
    bench = Bench(cooldown)
    logged = _Count()
    logging.getLogger("upvest_verify").addHandler(logged)
    try:
        verifier = bench.verifier
        verifier.verify(*_parts(signed(bench.old)))  # the cold start
        before = bench.server.fetches
        template = signed(bench.new)  # bench.new is never published: every kid is unknown
        webhooks = [forge(template, kid) for kid in _kids(n, seed=7)]
        duration = 4 * cooldown if spread else 0.0
        batches = 40 if spread else 1
        size = -(-n // batches)
        bench.clock.advance(2)
        start = bench.clock()
        costs: list[float] = []

        def batch(items: list[Any]) -> list[float]:
            if mode == "threads":
                with ThreadPoolExecutor(threads) as pool:
                    return list(pool.map(lambda w: _refuse(verifier, w), items))

            async def main() -> list[float]:
                return list(await asyncio.gather(*(_arefuse(verifier, w) for w in items)))

            return asyncio.run(main())

        for i in range(batches):
            costs += batch(webhooks[i * size : (i + 1) * size])
            if spread:
                bench.clock.advance(duration / batches)
        times = [t for t in bench.server.fetch_times[before:] if t >= start]
        windows = max(1, -(-int(duration) // int(cooldown))) if spread else 1
        worst = max((sum(1 for u in times if t <= u < t + cooldown) for t in times), default=0)
        costs.sort()
        p50 = 1000 * statistics.median(costs)
        p99 = 1000 * costs[min(len(costs) - 1, int(0.99 * len(costs)))]
        return len(times), windows, worst, p50, p99, logged.count
    finally:
        logging.getLogger("upvest_verify").removeHandler(logged)
        bench.close()


def _parts(webhook: Any) -> tuple[str, str, Any, bytes]:
    return webhook.method, webhook.url, webhook.headers, webhook.body


# ---- main ------------------------------------------------------------------------------------


def _table(rows: list[list[str]], header: list[str]) -> None:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, ["-" * w for w in widths], *rows]:
        print("  ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)))


def main(argv: Sequence[str] | None = None) -> int:
    """Run both measurements and print the figures.

    Returns:
        0 when every target is met (0 refusals at N >= 2 s, at most one fetch per
        cooldown window), else 1.
    """
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer cases, 400 kids")
    parser.add_argument("--src", type=Path, help="import upvest_verify from this source tree")
    parser.add_argument("--cooldown", type=float, default=30.0, help="refresh_cooldown (s)")
    parser.add_argument("--interval", type=float, default=0.25, help="seconds between webhooks")
    parser.add_argument("--kids", type=int, default=2000, help="forged kids per flood")
    parser.add_argument("--threads", type=int, default=16, help="threads of the thread flood")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(args.src.resolve() if args.src else SRC))
    import upvest_verify

    library = logging.getLogger("upvest_verify")
    library.addHandler(logging.NullHandler())  # counted below, not printed
    library.propagate = False

    print(f"upvest_verify from {Path(upvest_verify.__file__).parent}")
    quick: bool = args.quick
    delays = [2.0] if quick else [0.0, 0.5, 1.0, 2.0, 5.0, 10.0]
    afters = ["cold start"] if quick else ["cold start", "ttl refresh"]
    kids = min(args.kids, 400) if quick else args.kids
    ok = True

    print("\n(a) rotation: a key published N s after a fetch; a webhook under it every", end=" ")
    print(f"{args.interval} s (virtual time; refresh_cooldown={args.cooldown} s)\n")
    rows: list[list[str]] = []
    figures: dict[str, Any] = {"rotation": [], "flood": []}
    for after in afters:
        for mode in ("sync", "async"):
            for delay in delays:
                refused, latency = rotation(
                    after, delay, args.interval, 2 * args.cooldown, mode, args.cooldown
                )
                ok &= refused == 0 or delay < 2
                shown = "never" if latency is None else f"{latency:.2f}"
                rows.append([after, mode, f"{delay:g}", str(refused), shown])
                figures["rotation"].append(
                    {
                        "after": after,
                        "path": mode,
                        "published_after_s": delay,
                        "refused_before_accept": refused,
                        "seconds_to_first_accept": latency,
                    }
                )
    _table(rows, ["after", "path", "N (s)", "refused before accept", "s to first accept"])

    print(f"\n(b) flood: {kids} webhooks under random unknown kids, 2 s after a fetch\n")
    rows = []
    for spread in (False, True):
        for mode in ("threads", "tasks"):
            fetches, windows, worst, p50, p99, lines = flood(
                kids, args.threads, mode, spread, args.cooldown
            )
            ok &= worst <= 1
            figures["flood"].append(
                {
                    "arrival": "spread" if spread else "burst",
                    "callers": mode,
                    "webhooks": kids,
                    "fetches": fetches,
                    "cooldowns": windows,
                    "max_fetches_per_cooldown": worst,
                    "refusal_p50_ms": round(p50, 3),
                    "refusal_p99_ms": round(p99, 3),
                    "warnings": lines,
                }
            )
            rows.append(
                [
                    f"over {4 * args.cooldown:g} s" if spread else "one burst",
                    f"{args.threads} threads" if mode == "threads" else f"{kids} tasks",
                    str(fetches),
                    str(windows),
                    str(worst),
                    f"{p50:.2f}",
                    f"{p99:.2f}",
                    str(lines),
                ]
            )
    _table(
        rows,
        [
            "arrival",
            "callers",
            "fetches",
            "cooldowns",
            "max/cooldown",
            "p50 ms",
            "p99 ms",
            "warnings",
        ],
    )
    print("\ntargets:", "met" if ok else "NOT met")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        document = {"benchmark": "rotation", "targets_met": ok, **figures}
        args.json.write_text(json.dumps(document, indent=1) + "\n", encoding="utf-8")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
