"""The server sections of ``bench_receivers.py``: receivers on real servers under ``hey``.

Also the receivers those servers import (``starlette_app``, ``flask_app`` and
``django_app`` factories, configured from ``BENCH_*`` environment variables), so that
uvicorn and gunicorn can load them by name: ``_receiver_servers:flask_app()``.

Every server runs in its own session on 127.0.0.1 and a free port; its CPU time is
the sum over every process of the server (master and workers), read from
``/proc/<pid>/stat``, and ``hey``'s own CPU time comes from ``getrusage`` of the
children reaped while it ran.
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from _common import child_env, summary

HERE = Path(__file__).resolve().parent
WEBHOOK = "/webhooks/upvest"
_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def load_average() -> list[float] | None:
    """The 1, 5 and 15 minute load averages, rounded."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:  # pragma: no cover - not on every platform
        return None


# --------------------------------------------------------------------------- the receivers


def _jwks() -> str:
    return os.environ["BENCH_JWKS"]


def starlette_app() -> Any:
    """The Starlette receiver of ``bench_starlette_middleware.py`` (``BENCH_MODE``)."""
    from bench_starlette_middleware import build_app

    return build_app(os.environ.get("BENCH_MODE", "offload"))


def flask_app() -> Any:
    """A Flask receiver protected by ``UpvestVerify`` (WSGI, for gunicorn's sync workers)."""
    from flask import Flask, request

    from upvest_verify.adapters.flask import UpvestVerify

    app = Flask("bench")
    app.config["UPVEST_VERIFY_JWKS"] = _jwks()
    UpvestVerify(app)

    @app.post(WEBHOOK)
    def webhook() -> str:
        return str(len(request.get_data()))

    @app.get("/health")
    def health() -> str:
        return "ok"

    return app


def django_app() -> Any:
    """A Django receiver behind ``UpvestWebhookMiddleware`` (ASGI)."""
    import django
    from django.conf import settings

    if not settings.configured:
        settings.configure(
            DEBUG=False,
            SECRET_KEY="benchmark-only",  # noqa: S106 - a throwaway app on 127.0.0.1
            ALLOWED_HOSTS=["127.0.0.1"],
            ROOT_URLCONF=__name__,
            MIDDLEWARE=["upvest_verify.adapters.django.UpvestWebhookMiddleware"],
            UPVEST_VERIFY={"JWKS": _jwks(), "PATHS": [WEBHOOK]},
        )
        django.setup()
    from django.core.asgi import get_asgi_application

    return get_asgi_application()


def __getattr__(name: str) -> Any:
    # Django's URL conf (ROOT_URLCONF is this module), built only when Django asks.
    if name != "urlpatterns":
        raise AttributeError(name)
    from django.http import HttpResponse
    from django.urls import path

    def webhook(request: Any) -> Any:
        return HttpResponse(str(len(request.body)))

    def health(request: Any) -> Any:
        return HttpResponse("ok")

    return [path(WEBHOOK.lstrip("/"), webhook), path("health", health)]


def serve(mode: str) -> None:
    """``--serve MODE``: the Starlette receiver on uvicorn (one worker), port on stdout."""
    from bench_starlette_middleware import serve as serve_starlette

    serve_starlette(mode)


# --------------------------------------------------------------------------- measuring


def _stat(pid: int) -> tuple[int, float] | None:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return int(fields[1]), (int(fields[11]) + int(fields[12])) / _TICK


def tree_cpu(root: int) -> float:
    """CPU seconds (user + system) of ``root`` and every live process below it."""
    stats = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            stat = _stat(int(entry))
            if stat is not None:
                stats[int(entry)] = stat
    total, todo = 0.0, [root]
    while todo:
        pid = todo.pop()
        if pid in stats:
            total += stats[pid][1]
            todo += [child for child, (parent, _) in stats.items() if parent == pid]
    return total


def free_port() -> int:
    """A port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def running(command: list[str], env: dict[str, str], port: int | None) -> Iterator[tuple[Any, int]]:
    """Start a server in its own session; yield the process and its port; stop it."""
    with tempfile.TemporaryFile("w+") as errors:
        process = subprocess.Popen(  # noqa: S603 - this interpreter or a server from this venv
            command,
            env=env,
            cwd=HERE,
            stdout=subprocess.PIPE if port is None else subprocess.DEVNULL,
            stderr=errors,
            text=True,
            start_new_session=True,
        )
        try:
            try:
                if port is None:
                    assert process.stdout is not None
                    port = int(process.stdout.readline() or 0)
                _wait_ready(port, process)
            except RuntimeError as e:
                errors.seek(0)
                raise RuntimeError(
                    f"{' '.join(command[1:4])}...: {e}: {errors.read()[-800:]}"
                ) from e
            yield process, port
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)
            if process.stdout is not None:
                process.stdout.close()


def _wait_ready(port: int, process: Any) -> None:
    import httpx

    deadline = time.monotonic() + 60
    ready = 0
    while ready < 5:  # a few answers in a row: every worker of a pre-fork server is up
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}")
        if time.monotonic() > deadline:
            raise RuntimeError("server did not start within 60 s")
        try:
            answer = httpx.get(f"http://127.0.0.1:{port}/health")
        except httpx.TransportError:
            ready = 0
            time.sleep(0.1)
        else:
            ready = ready + 1 if answer.status_code == 200 else 0
    time.sleep(0.5)


def run_hey(
    hey: str,
    port: int,
    signed: Any,
    requests: int,
    concurrency: int,
    *,
    keepalive: bool = True,
    rate: float | None = None,
) -> dict[str, Any]:
    """Send ``signed`` ``requests`` times with hey; its figures and its own CPU seconds."""
    from bench_starlette_middleware import parse_hey

    headers = [(k, v) for k, v in signed.headers if k not in ("host", "content-length")]
    with tempfile.TemporaryDirectory() as folder:
        body = Path(folder) / "body.json"
        body.write_bytes(signed.body)
        command = [hey, "-n", str(requests), "-c", str(concurrency), "-m", "POST"]
        command += ["-T", "application/json", "-D", str(body)]
        if not keepalive:
            command.append("-disable-keepalive")
        if rate is not None:
            command += ["-q", f"{rate / concurrency:.2f}"]
        for name, value in headers:
            if name != "content-type":
                command += ["-H", f"{name}: {value}"]
        command.append(f"http://127.0.0.1:{port}{WEBHOOK}")
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        done = subprocess.run(  # noqa: S603 - hey from PATH
            command, capture_output=True, text=True, timeout=120 + requests / 20, check=False
        )
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise RuntimeError(f"hey failed: {(done.stderr or done.stdout)[-300:]}")
    figures = parse_hey(done.stdout)
    figures["hey_cpu_s"] = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return figures


def measure(
    process: Any, port: int, load: Callable[[], dict[str, Any]], *, probe: bool
) -> dict[str, Any]:
    """Run ``load`` against one server; add CPU figures (and probes of /health and /lag)."""
    from bench_starlette_middleware import _probing

    cpu = tree_cpu(process.pid)
    started = time.perf_counter()
    figures = _probing(port, load) if probe else load()
    wall = time.perf_counter() - started
    cpu = tree_cpu(process.pid) - cpu
    done = figures["requests"] or 1
    figures["seconds"] = wall
    figures["server_cores"] = cpu / wall
    figures["server_cpu_us_per_request"] = cpu / done * 1e6
    figures["hey_cores"] = figures["hey_cpu_s"] / wall
    figures["requests_per_busy_core"] = figures["requests_per_s"] / max(
        figures["server_cores"], 1e-9
    )
    if figures["failures"]:
        raise RuntimeError(f"{figures['failures']} requests failed")
    return figures


def _signed() -> tuple[str, Any]:
    from _cases import make_body

    from upvest_verify.testing import generate_key, make_jwks, sign_webhook

    key = generate_key()
    # @authority is not covered: one signature serves every server, whatever its port.
    signed = sign_webhook(make_body(10 * 1024), key=key, url=f"http://127.0.0.1{WEBHOOK}", ttl=3000)
    return json.dumps(make_jwks(key)), signed


def _line(label: str, f: dict[str, Any]) -> str:
    lag = f.get("loop_lag") or {}
    text = (
        f"  {label:<46} {f['requests_per_s']:7.0f}/s  p50 {f['latency_p50_ms']:6.1f} ms"
        f"  server {f['server_cores']:.2f} cores {f['server_cpu_us_per_request']:5.0f} us/req"
        f"  hey {f['hey_cores']:.2f} cores"
    )
    if lag:
        idle = f.get("loop_lag_idle") or {}
        text += (
            f"  lag p99 {lag.get('p99_ms', 0):5.1f} ms (idle {idle.get('p99_ms', 0):4.1f})"
            f"  /health p99 {f['health_p99_ms']:5.1f} ms"
        )
    return text


def _stats(rows: list[dict[str, Any]]) -> dict[str, Any]:
    keys = ("requests_per_s", "latency_p50_ms", "latency_p99_ms", "server_cores")
    keys += ("server_cpu_us_per_request", "hey_cores", "requests_per_busy_core")
    out = {key: summary((r[key] for r in rows if r.get(key) is not None), 2) for key in keys}
    lags = [r["loop_lag"] for r in rows if r.get("loop_lag")]
    if lags:
        out["loop_lag_p99_ms"] = summary((lag["p99_ms"] for lag in lags), 2)
        out["loop_lag_p50_ms"] = summary((lag["p50_ms"] for lag in lags), 2)
        idle = [r["loop_lag_idle"] for r in rows if r.get("loop_lag_idle")]
        if idle:  # the same server idle just before: the measurement's floor
            out["loop_lag_idle_p99_ms"] = summary((lag["p99_ms"] for lag in idle), 2)
        out["health_p99_ms"] = summary((r["health_p99_ms"] for r in rows), 2)
    return out


# --------------------------------------------------------------------------- offload


OFFLOAD_MODES = ("inline", "offload", "offload-1", "offload-anyio", "bare")


def offload_section(hey: str, rounds: int, requests: int) -> dict[str, Any]:
    """Inline against offloaded verification on one uvicorn worker, saturated and paced."""
    jwks, signed = _signed()
    env = child_env(BENCH_JWKS=jwks)
    script = str(HERE / "bench_receivers.py")
    load_before = load_average()
    rows: dict[str, dict[str, list[dict[str, Any]]]] = {
        load: {mode: [] for mode in OFFLOAD_MODES} for load in ("saturated", "paced")
    }
    with _servers(
        {mode: ([sys.executable, script, "--serve", mode], env, None) for mode in OFFLOAD_MODES}
    ) as servers:
        paced_rate: float | None = None
        for r in range(rounds):
            order = (
                OFFLOAD_MODES[r % len(OFFLOAD_MODES) :] + OFFLOAD_MODES[: r % len(OFFLOAD_MODES)]
            )
            for load in ("saturated", "paced"):
                for mode in order:
                    process, port = servers[mode]
                    if load == "saturated":
                        run = lambda port=port: run_hey(hey, port, signed, requests, 16)  # noqa: E731
                    else:
                        assert paced_rate is not None
                        count = max(50, int(paced_rate * 4))
                        run = lambda port=port, count=count, rate=paced_rate: run_hey(  # noqa: E731
                            hey, port, signed, count, 4, rate=rate
                        )
                    figures = measure(process, port, run, probe=True)
                    rows[load][mode].append(figures)
                    print(_line(f"{load}, {mode}", figures), flush=True)
                if load == "saturated" and paced_rate is None:
                    paced_rate = round(rows["saturated"]["inline"][0]["requests_per_s"] / 2, 1)
    result: dict[str, Any] = {"requests": requests, "rounds": rounds, "paced_rate": paced_rate}
    for load, modes in rows.items():
        result[load] = {mode: _stats(runs) for mode, runs in modes.items()}
    saturated = rows["saturated"]
    for mode in ("offload", "offload-1", "offload-anyio"):
        ratios = [
            a["requests_per_s"] / b["requests_per_s"]
            for a, b in zip(saturated[mode], saturated["inline"], strict=True)
        ]
        result[f"{mode}/inline requests_per_s"] = summary(ratios, 3)
        print(f"  {mode}/inline requests/s per round: {[round(x, 3) for x in ratios]}")
    result["load_average"] = [load_before, load_average()]
    return result


@contextmanager
def _servers(
    commands: dict[str, tuple[list[str], dict[str, str], int | None]],
) -> Iterator[dict[str, tuple[Any, int]]]:
    """Start every server (one after the other), yield them by name, stop them all."""
    from contextlib import ExitStack

    with ExitStack() as stack:
        servers = {
            name: stack.enter_context(running(command, env, port))
            for name, (command, env, port) in commands.items()
        }
        yield servers


# --------------------------------------------------------------------------- multi-core


def _multicore_commands(jwks: str) -> dict[str, tuple[list[str], dict[str, str], int | None]]:
    python = sys.executable
    commands: dict[str, tuple[list[str], dict[str, str], int | None]] = {}

    def uvicorn(name: str, factory: str, workers: int, mode: str = "offload") -> None:
        port = free_port()
        command = [python, "-m", "uvicorn", "--factory", f"_receiver_servers:{factory}"]
        command += ["--host", "127.0.0.1", "--port", str(port), "--workers", str(workers)]
        command += ["--log-level", "warning", "--no-access-log", "--lifespan", "auto"]
        commands[name] = (command, child_env(BENCH_JWKS=jwks, BENCH_MODE=mode), port)

    def gunicorn(
        name: str, factory: str, workers: int, worker: str | None, mode: str = "offload"
    ) -> None:
        port = free_port()
        command = [python, "-m", "gunicorn", "-w", str(workers), "-b", f"127.0.0.1:{port}"]
        command += ["--log-level", "warning", "--chdir", str(HERE)]
        if worker:
            command += ["-k", worker]
        command.append(f"_receiver_servers:{factory}()")
        commands[name] = (command, child_env(BENCH_JWKS=jwks, BENCH_MODE=mode), port)

    uvicorn("starlette uvicorn 1", "starlette_app", 1)
    uvicorn("starlette uvicorn --workers 2", "starlette_app", 2)
    gunicorn("starlette gunicorn+uvicorn 1", "starlette_app", 1, "uvicorn_worker.UvicornWorker")
    gunicorn("starlette gunicorn+uvicorn 2", "starlette_app", 2, "uvicorn_worker.UvicornWorker")
    gunicorn(
        "starlette inline gunicorn+uvicorn 1",
        "starlette_app",
        1,
        "uvicorn_worker.UvicornWorker",
        "inline",
    )
    gunicorn(
        "starlette inline gunicorn+uvicorn 2",
        "starlette_app",
        2,
        "uvicorn_worker.UvicornWorker",
        "inline",
    )
    gunicorn("flask gunicorn sync 1", "flask_app", 1, None)
    gunicorn("flask gunicorn sync 2", "flask_app", 2, None)
    uvicorn("django uvicorn 1", "django_app", 1)
    gunicorn("django gunicorn+uvicorn 1", "django_app", 1, "uvicorn_worker.UvicornWorker")
    gunicorn("django gunicorn+uvicorn 2", "django_app", 2, "uvicorn_worker.UvicornWorker")
    return commands


# (label, server, keep-alive); pairs of one and two workers are compared per busy core.
MULTICORE = (
    ("starlette, uvicorn, 1 worker", "starlette uvicorn 1", True),
    ("starlette, uvicorn --workers 2", "starlette uvicorn --workers 2", True),
    ("starlette, uvicorn, 1 worker, no keep-alive", "starlette uvicorn 1", False),
    ("starlette, uvicorn --workers 2, no keep-alive", "starlette uvicorn --workers 2", False),
    ("starlette, gunicorn + UvicornWorker, 1", "starlette gunicorn+uvicorn 1", True),
    ("starlette, gunicorn + UvicornWorker, 2", "starlette gunicorn+uvicorn 2", True),
    ("starlette inline, gunicorn + UvicornWorker, 1", "starlette inline gunicorn+uvicorn 1", True),
    ("starlette inline, gunicorn + UvicornWorker, 2", "starlette inline gunicorn+uvicorn 2", True),
    ("flask, gunicorn sync, 1", "flask gunicorn sync 1", True),
    ("flask, gunicorn sync, 2", "flask gunicorn sync 2", True),
    ("django, uvicorn, 1 worker", "django uvicorn 1", True),
    ("django, gunicorn + UvicornWorker, 1", "django gunicorn+uvicorn 1", True),
    ("django, gunicorn + UvicornWorker, 2", "django gunicorn+uvicorn 2", True),
)
PAIRS = (
    ("starlette, uvicorn --workers 2", "starlette, uvicorn, 1 worker"),
    (
        "starlette, uvicorn --workers 2, no keep-alive",
        "starlette, uvicorn, 1 worker, no keep-alive",
    ),
    ("starlette, gunicorn + UvicornWorker, 2", "starlette, gunicorn + UvicornWorker, 1"),
    (
        "starlette inline, gunicorn + UvicornWorker, 2",
        "starlette inline, gunicorn + UvicornWorker, 1",
    ),
    ("flask, gunicorn sync, 2", "flask, gunicorn sync, 1"),
    ("django, gunicorn + UvicornWorker, 2", "django, gunicorn + UvicornWorker, 1"),
)


def accepted_nodelay() -> dict[str, int]:
    """``TCP_NODELAY`` on a socket asyncio accepted, per kind of listening socket.

    uvicorn binds ``socket.socket(AF_INET)`` itself for ``--workers`` (protocol 0), and
    asyncio sets ``TCP_NODELAY`` only on sockets whose protocol is ``IPPROTO_TCP``;
    gunicorn sets it on its listener, and Linux passes it on to accepted sockets.
    """

    async def accepted(listener: socket.socket) -> int:
        seen: list[int] = []

        async def handle(reader: Any, writer: Any) -> None:
            sock = writer.get_extra_info("socket")
            seen.append(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
            writer.close()

        server = await asyncio.start_server(handle, sock=listener)
        reader, writer = await asyncio.open_connection(*listener.getsockname())
        await reader.read()
        writer.close()
        server.close()
        return 1 if seen and seen[0] else 0

    kinds: dict[str, Callable[[], socket.socket]] = {
        "uvicorn --workers (socket(AF_INET), protocol 0)": lambda: socket.socket(socket.AF_INET),
        "uvicorn, one worker (asyncio's own, IPPROTO_TCP)": lambda: socket.socket(
            socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP
        ),
        "gunicorn (TCP_NODELAY set on the listener)": _nodelay_listener,
    }
    result = {}
    for name, make in kinds.items():
        with make() as listener:
            listener.bind(("127.0.0.1", 0))
            listener.listen()
            result[name] = asyncio.run(accepted(listener))
    return result


def _nodelay_listener() -> socket.socket:
    sock = socket.socket(socket.AF_INET)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def multicore_section(hey: str, rounds: int, requests: int) -> dict[str, Any]:
    """One against two workers of each server, per busy core, keep-alive on and off."""
    nodelay = accepted_nodelay()
    for name, value in nodelay.items():
        print(f"  accepted socket TCP_NODELAY={value}: {name}")
    jwks, signed = _signed()
    load_before = load_average()
    rows: dict[str, list[dict[str, Any]]] = {label: [] for label, _, _ in MULTICORE}
    with _servers(_multicore_commands(jwks)) as servers:
        for _, port in servers.values():  # untimed: imports, first requests, JIT-free warm-up
            run_hey(hey, port, signed, 200, 8)
        for r in range(rounds):
            order = MULTICORE[r % len(MULTICORE) :] + MULTICORE[: r % len(MULTICORE)]
            for label, server, keepalive in order:
                process, port = servers[server]
                figures = measure(
                    process,
                    port,
                    lambda port=port, keepalive=keepalive: run_hey(  # type: ignore[misc]
                        hey, port, signed, requests, 16, keepalive=keepalive
                    ),
                    probe=False,
                )
                rows[label].append(figures)
                print(_line(label, figures), flush=True)
    result: dict[str, Any] = {
        "requests": requests,
        "rounds": rounds,
        "accepted_socket_nodelay": nodelay,
        "servers": {label: _stats(runs) for label, runs in rows.items()},
        "two_against_one": {},
    }
    for two, one in PAIRS:
        per_core = [
            a["requests_per_busy_core"] / b["requests_per_busy_core"]
            for a, b in zip(rows[two], rows[one], strict=True)
        ]
        rate = [
            a["requests_per_s"] / b["requests_per_s"]
            for a, b in zip(rows[two], rows[one], strict=True)
        ]
        result["two_against_one"][two] = {
            "per_busy_core": summary(per_core, 3),
            "requests_per_s": summary(rate, 3),
        }
        print(
            f"  {two} / {one}: per busy core {statistics.median(per_core):.3f},"
            f" requests/s {statistics.median(rate):.3f}"
        )
    result["load_average"] = [load_before, load_average()]
    return result
