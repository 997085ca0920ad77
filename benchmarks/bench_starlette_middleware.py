"""Throughput and event-loop lag of the Starlette middleware on uvicorn (threat-model.md H3).

Starts uvicorn in a child process (one per mode) on 127.0.0.1 with an ephemeral
port, drives it from this process over loopback, and prints requests/s plus the
server's event-loop lag and a health endpoint's latency measured while the
webhooks are verified. The load comes from threads sending prepared requests
over keep-alive sockets, so the client costs little CPU next to the server, or
from an HTTP load generator, ``hey`` or ``wrk`` (Debian: ``apt-get install hey``),
which sends one signed webhook over and over::

    python benchmarks/bench_starlette_middleware.py --requests 3000 --concurrency 16
    python benchmarks/bench_starlette_middleware.py --load hey --json throughput.json

Modes: ``offload`` (verify in the middleware's worker threads, one per core: the
default), ``offload-anyio`` (the hand-off the middleware used before its own pool:
``anyio.to_thread.run_sync`` under a per-loop limiter of one thread per core),
``offload-1`` (one worker thread), ``offload-40`` (anyio's shared 40-thread
limiter), ``inline`` (verify on the
event loop), ``bare`` (no middleware: the cost of the server and client alone).
Not part of the test suite; numbers depend on the machine.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

MODES = ("offload", "offload-1", "offload-anyio", "offload-40", "inline", "bare")
LOADS = ("python", "hey", "wrk")
WEBHOOK = "/webhooks/upvest"


# --------------------------------------------------------------------------- server side


def build_app(mode: str) -> Any:
    """The receiver: a webhook endpoint, a health endpoint and a loop-lag monitor."""
    from starlette.applications import Starlette
    from starlette.middleware import Middleware
    from starlette.requests import Request
    from starlette.responses import JSONResponse, PlainTextResponse, Response
    from starlette.routing import Route

    from upvest_verify import KeySet, Verifier
    from upvest_verify.adapters.starlette import UpvestWebhookMiddleware

    lags: list[float] = []
    tick = 0.005

    async def monitor() -> None:
        # How late does a 5 ms sleep wake up? That delay is what every other
        # request on this event loop waits, too.
        loop = asyncio.get_running_loop()
        while True:
            start = loop.time()
            await asyncio.sleep(tick)
            lags.append(loop.time() - start - tick)

    async def webhook(request: Request) -> Response:
        body = await request.body()
        return PlainTextResponse(str(len(body)))

    async def health(request: Request) -> Response:
        return PlainTextResponse("ok")

    async def lag(request: Request) -> Response:
        values = sorted(lags)
        lags.clear()
        if not values:
            return JSONResponse({})
        return JSONResponse(
            {
                "samples": len(values),
                "p50_ms": 1000 * values[len(values) // 2],
                "p99_ms": 1000 * values[int(len(values) * 0.99)],
                "max_ms": 1000 * values[-1],
            }
        )

    from contextlib import asynccontextmanager

    @asynccontextmanager
    async def lifespan(app: Any) -> Any:
        task = asyncio.create_task(monitor())
        yield
        task.cancel()

    middleware = []
    if mode != "bare":
        verifier = Verifier(KeySet.from_jwks(os.environ["BENCH_JWKS"]))
        options: dict[str, Any] = {"offload": mode != "inline"}
        if mode == "offload-40":
            options["max_threads"] = None  # anyio's shared limiter: 40 threads
        elif mode == "offload-1":
            options["max_threads"] = 1  # one worker thread: a core left to the loop
        kind = _anyio_hand_off() if mode == "offload-anyio" else UpvestWebhookMiddleware
        middleware.append(Middleware(kind, verifier=verifier, **options))
    return Starlette(
        routes=[
            Route("/webhooks/upvest", webhook, methods=["POST"]),
            Route("/health", health),
            Route("/lag", lag),
        ],
        middleware=middleware,
        lifespan=lifespan,
    )


def _anyio_per_loop() -> Callable[[Callable[[], Any]], Any]:
    """``anyio.to_thread.run_sync`` under a per-event-loop limiter of one thread per core."""
    import weakref

    import anyio
    import anyio.to_thread

    limiters: weakref.WeakKeyDictionary[object, anyio.CapacityLimiter] = weakref.WeakKeyDictionary()

    async def run_sync(check: Callable[[], Any]) -> Any:
        loop = asyncio.get_running_loop()
        limiter = limiters.get(loop)
        if limiter is None:
            limiter = limiters[loop] = anyio.CapacityLimiter(os.cpu_count() or 2)
        return await anyio.to_thread.run_sync(check, limiter=limiter)

    return run_sync


def _anyio_hand_off() -> type:
    from upvest_verify.adapters.starlette import UpvestWebhookMiddleware

    class AnyioHandOff(UpvestWebhookMiddleware):
        """The middleware with the hand-off it used before its worker-thread pool."""

        def __init__(self, app: Any, **options: Any) -> None:
            super().__init__(app, **options)
            # A benchmark-only swap of the offloader (the setup is a frozen dataclass).
            object.__setattr__(self._check, "run_sync", _anyio_per_loop())

    return AnyioHandOff


def serve(mode: str) -> None:
    """Run uvicorn on an ephemeral port and print the port on stdout."""
    import uvicorn

    # proto=IPPROTO_TCP so that asyncio enables TCP_NODELAY on accepted connections.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind(("127.0.0.1", 0))
    print(sock.getsockname()[1], flush=True)
    config = uvicorn.Config(build_app(mode), log_level="warning", access_log=False, ws="none")
    uvicorn.Server(config).run(sockets=[sock])


# --------------------------------------------------------------------------- client side


class _Connection:
    """A keep-alive HTTP/1.1 connection sending prepared requests (cheap on the client)."""

    def __init__(self, port: int) -> None:
        self._sock = socket.create_connection(("127.0.0.1", port))
        self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._buffer = b""

    def exchange(self, request: bytes) -> int:
        """Send one request; read the whole response; return its status."""
        self._sock.sendall(request)
        while b"\r\n\r\n" not in self._buffer:
            self._buffer += self._recv()
        head, _, rest = self._buffer.partition(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        while len(rest) < length:
            rest += self._recv()
        self._buffer = rest[length:]
        return int(head.split(b" ", 2)[1])

    def _recv(self) -> bytes:
        data: bytes = self._sock.recv(65536)
        if not data:
            raise ConnectionError("server closed the connection")
        return data

    def close(self) -> None:
        self._sock.close()


def _wire(signed: Any) -> bytes:
    lines = [f"POST {signed.path} HTTP/1.1", "Host: 127.0.0.1"]
    lines += [f"{k}: {v}" for k, v in signed.headers if k != "host"]
    body: bytes = signed.body
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def _probing(port: int, load: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """Run ``load`` while probing /health; add the probes' latency and the loop lag."""
    health = b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    done = threading.Event()
    probes: list[float] = []

    def probe() -> None:
        connection = _Connection(port)
        try:
            while not done.is_set():
                start = time.perf_counter()
                connection.exchange(health)
                probes.append(time.perf_counter() - start)
                time.sleep(0.002)
        finally:
            connection.close()

    import httpx

    # The measurement's own floor: the same server idle for a second, nothing but the
    # monitor on its loop. The monitor's 5 ms sleep already wakes up late by up to a
    # millisecond (asyncio rounds the epoll timeout up to whole milliseconds), plus
    # whatever the machine's scheduler adds.
    lag_connection = _Connection(port)
    lag_connection.exchange(b"GET /lag HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")  # reset
    time.sleep(1.0)
    idle = httpx.get(f"http://127.0.0.1:{port}/lag").json()
    lag_connection.exchange(b"GET /lag HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")  # reset
    prober = threading.Thread(target=probe)
    prober.start()
    try:
        result = load()
    finally:
        done.set()
        prober.join()
        lag_connection.close()
    lag = httpx.get(f"http://127.0.0.1:{port}/lag").json()
    probes.sort()
    return {
        **result,
        "health_p50_ms": 1000 * probes[len(probes) // 2] if probes else None,
        "health_p99_ms": 1000 * probes[int(len(probes) * 0.99)] if probes else None,
        "health_max_ms": 1000 * probes[-1] if probes else None,
        "loop_lag": lag,
        "loop_lag_idle": idle,
    }


def drive(port: int, signed: list[Any], requests: int, concurrency: int) -> dict[str, Any]:
    """Send ``requests`` webhooks over ``concurrency`` connections; probe /health meanwhile."""
    wires = [_wire(s) for s in signed]
    counter = iter(range(requests))
    lock = threading.Lock()
    failures = 0

    def worker() -> None:
        nonlocal failures
        connection = _Connection(port)
        try:
            while True:
                with lock:
                    i = next(counter, None)
                if i is None:
                    return
                if connection.exchange(wires[i % len(wires)]) != 200:
                    with lock:
                        failures += 1
        finally:
            connection.close()

    def load() -> dict[str, Any]:
        workers = [threading.Thread(target=worker) for _ in range(concurrency)]
        start = time.perf_counter()
        for t in workers:
            t.start()
        for t in workers:
            t.join()
        elapsed = time.perf_counter() - start
        return {"requests": requests, "requests_per_s": requests / elapsed, "failures": failures}

    return _probing(port, load)


_UNITS = {"us": 1e-3, "µs": 1e-3, "ms": 1.0, "s": 1000.0, "secs": 1000.0}


def _ms(number: str, unit: str) -> float:
    return float(number) * _UNITS[unit]


def parse_hey(output: str) -> dict[str, Any]:
    """Read ``hey``'s summary: requests/s, latency percentiles, non-200 responses.

    Args:
        output: What ``hey`` printed.

    Returns:
        ``requests``, ``requests_per_s``, ``failures`` (responses other than 200 and
        errors), ``latency_p50_ms``, ``latency_p99_ms``.

    Raises:
        ValueError: The output has no ``Requests/sec`` line.
    """
    rate = re.search(r"Requests/sec:\s*([0-9.]+)", output)
    if rate is None:
        raise ValueError(f"no Requests/sec in hey's output: {output[-500:]!r}")
    statuses = {int(c): int(n) for c, n in re.findall(r"\[(\d{3})\]\s+(\d+) responses", output)}
    _, _, error_part = output.partition("Error distribution:")
    errors = sum(int(n) for n in re.findall(r"^\s+\[(\d+)\]\s", error_part, re.MULTILINE))
    latency = dict(re.findall(r"(\d+)% in ([0-9.]+) secs", output))
    return {
        "requests": sum(statuses.values()) + errors,
        "requests_per_s": float(rate.group(1)),
        "failures": sum(n for c, n in statuses.items() if c != 200) + errors,
        "latency_p50_ms": 1000 * float(latency["50"]) if "50" in latency else None,
        "latency_p99_ms": 1000 * float(latency["99"]) if "99" in latency else None,
    }


def parse_wrk(output: str) -> dict[str, Any]:
    """Read ``wrk --latency``'s summary, like :func:`parse_hey`.

    Raises:
        ValueError: The output has no ``Requests/sec`` line.
    """
    rate = re.search(r"Requests/sec:\s*([0-9.]+)", output)
    if rate is None:
        raise ValueError(f"no Requests/sec in wrk's output: {output[-500:]!r}")
    total = re.search(r"(\d+) requests in", output)
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s*(\d+)", output)
    socket_errors = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output
    )
    latency = {
        p: _ms(n, u) for p, n, u in re.findall(r"^\s+(\d+)%\s+([0-9.]+)(us|ms|s)\s*$", output, re.M)
    }
    return {
        "requests": int(total.group(1)) if total else None,
        "requests_per_s": float(rate.group(1)),
        "failures": (int(non_2xx.group(1)) if non_2xx else 0)
        + (sum(map(int, socket_errors.groups())) if socket_errors else 0),
        "latency_p50_ms": latency.get("50"),
        "latency_p99_ms": latency.get("99"),
    }


def _lua_string(text: str) -> str:
    # Lua accepts JSON's escapes for the ASCII these header values are made of.
    return json.dumps(text)


def drive_tool(tool: str, port: int, signed: Any, args: argparse.Namespace) -> dict[str, Any]:
    """Load the server with ``hey`` (``--requests``) or ``wrk`` (``--seconds``).

    Both send the same signed webhook over and over (the bench app keeps no replay
    store), over ``--concurrency`` keep-alive connections.
    """
    path = shutil.which(tool)
    if path is None:
        raise RuntimeError(f"{tool} is not on PATH")
    url = f"http://127.0.0.1:{port}{WEBHOOK}"
    # The tools set Host and Content-Length themselves; hey takes the type with -T.
    headers = [(k, v) for k, v in signed.headers if k not in ("host", "content-length")]
    with tempfile.TemporaryDirectory() as folder:
        body = Path(folder) / "body.json"
        body.write_bytes(signed.body)
        if tool == "hey":
            command = [path, "-n", str(args.requests), "-c", str(args.concurrency), "-m", "POST"]
            command += ["-T", "application/json", "-D", str(body)]
            for name, value in headers:
                if name != "content-type":
                    command += ["-H", f"{name}: {value}"]
            command.append(url)
            timeout = 60 + args.requests / 50
        else:
            script = Path(folder) / "webhook.lua"
            lines = ['wrk.method = "POST"', f"local f = io.open({_lua_string(str(body))}, 'rb')"]
            lines += ["wrk.body = f:read('*a')", "f:close()"]
            lines += [f"wrk.headers[{_lua_string(k)}] = {_lua_string(v)}" for k, v in headers]
            script.write_text("\n".join(lines) + "\n", encoding="utf-8")
            threads = str(max(1, min(args.concurrency, os.cpu_count() or 1)))
            command = [path, "-t", threads, "-c", str(args.concurrency)]
            command += ["-d", f"{args.seconds:g}s", "--latency", "-s", str(script), url]
            timeout = 60 + 2 * args.seconds

        def load() -> dict[str, Any]:
            out = subprocess.run(  # noqa: S603 - the load generator found on PATH
                command, capture_output=True, text=True, timeout=timeout
            )
            if out.returncode != 0:
                raise RuntimeError(f"{tool} failed: {(out.stderr or out.stdout)[-500:]}")
            return parse_hey(out.stdout) if tool == "hey" else parse_wrk(out.stdout)

        return _probing(port, load)


def run_mode(mode: str, signed: list[Any], jwks: str, args: argparse.Namespace) -> dict[str, Any]:
    """Start a server for ``mode``, load it, stop it."""
    env = {**os.environ, "BENCH_JWKS": jwks}
    process = subprocess.Popen(  # noqa: S603 - runs this very script
        [sys.executable, __file__, "--serve", mode], env=env, stdout=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout is not None
        port = int(process.stdout.readline())
        _wait_ready(f"http://127.0.0.1:{port}")
        if args.load == "python":
            results = [
                drive(port, signed, args.requests, args.concurrency) for _ in range(args.rounds)
            ]
        else:
            results = [drive_tool(args.load, port, signed[0], args) for _ in range(args.rounds)]
        best = max(results, key=lambda r: r["requests_per_s"])
        best["requests_per_s_all"] = [round(r["requests_per_s"]) for r in results]
        best["requests_per_s_median"] = statistics.median(r["requests_per_s"] for r in results)
        return best
    finally:
        process.terminate()
        process.wait(timeout=15)


def _wait_ready(url: str) -> None:
    import httpx

    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            httpx.get(url + "/health", timeout=1)
            return
        except httpx.TransportError:
            time.sleep(0.05)
    raise RuntimeError("server did not start")


def main(argv: list[str] | None = None) -> int:
    """Parse arguments; serve (child) or benchmark every mode (parent).

    Returns:
        0, or 1 if a mode could not be measured or some webhooks were refused.
    """
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--serve", choices=MODES, help=argparse.SUPPRESS)
    parser.add_argument("--requests", type=int, default=2000, help="per round (python, hey)")
    parser.add_argument("--seconds", type=float, default=5.0, help="per round (wrk)")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    parser.add_argument(
        "--load", choices=LOADS, default="python", help="load generator (default: python threads)"
    )
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args(argv)
    if args.serve:
        serve(args.serve)
        return 0
    if args.load != "python" and shutil.which(args.load) is None:
        parser.error(f"{args.load} is not on PATH (Debian: apt-get install {args.load})")

    from upvest_verify.testing import generate_key, make_jwks, sample_events, sign_webhook

    key = generate_key()
    jwks = json.dumps(make_jwks(key))
    # @authority is not covered by default, so one set of signatures (reused in turn;
    # there is no replay cache) serves every server instance whatever its port.
    signed = [
        sign_webhook(sample_events(2), key=key, url="http://127.0.0.1/webhooks/upvest", ttl=3600)
        for _ in range(64)
    ]
    amount = f"{args.seconds:g} s" if args.load == "wrk" else f"{args.requests} requests"
    print(
        f"cpus={os.cpu_count()} load={args.load} {amount} x {args.rounds} rounds"
        f" concurrency={args.concurrency}"
    )
    results: dict[str, Any] = {}
    status = 0
    for mode in args.modes:
        try:
            result = run_mode(mode, signed, jwks, args)
        except (RuntimeError, ValueError, OSError, subprocess.TimeoutExpired) as e:
            print(f"{mode}: not measured ({e})")
            results[mode] = {"error": str(e)}
            status = 1
            continue
        status |= result["failures"] > 0
        results[mode] = result
        print(mode, json.dumps(result, default=lambda v: round(v, 2)))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        document = {
            "benchmark": "throughput",
            "receiver": "starlette middleware on uvicorn",
            "load": args.load,
            "concurrency": args.concurrency,
            "requests": None if args.load == "wrk" else args.requests,
            "seconds": args.seconds if args.load == "wrk" else None,
            "rounds": args.rounds,
            "modes": results,
        }
        args.json.write_text(json.dumps(document, indent=1) + "\n", encoding="utf-8")
    return status


if __name__ == "__main__":
    sys.exit(main())
