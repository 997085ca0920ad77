"""Peak extra memory of a receiver for a large webhook body, per request and over many.

Run from the repository root::

    python benchmarks/bench_memory.py                  # 100,000 requests: a few minutes
    python benchmarks/bench_memory.py --quick          # 2,000 requests: under 15 s
    python benchmarks/bench_memory.py --requests 5000 --body 256K --json out.json

Target (reported, never asserted): for a 1 MiB body, the ASGI middleware's peak extra
memory per request at most 1.5 x the body, and flat over 100,000 requests.

* **Per request** (``tracemalloc``): the peak during one call minus the traced size
  just before it, the body, chunks, scope and messages allocated beforehand; median /
  body. ``Verifier.verify`` (``str`` and ASGI ``bytes`` header lines); the floor (a raw
  ASGI app joining the chunks, SHA-512, one P-521 verify); a Starlette app alone;
  ``UpvestWebhookMiddleware(offload=False)`` in front of it and in front of a raw app
  joining the chunks like the floor; each ASGI one with the body in one message and in
  64 KiB messages. Flask and Django (WSGI, with and without verification) if installed.
* **Flatness**: ``--requests`` webhooks through the inline middleware (64 KiB messages,
  real ECDSA, tracemalloc off) after 200 warm ones; RSS and Python's live blocks every
  1/20 of the run, growth and least-squares slope. Flat: fitted growth below one body.

Exit status 0 whether the target is met or not; 1 on an error, a valid webhook not
answered 200, or a tampered body not answered 401. benchmarks/README.md explains the
method and the figures. Not part of the test suite.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import gc
import hashlib
import importlib.util
import logging
import os
import statistics
import sys
import time
import tracemalloc
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

if importlib.util.find_spec("upvest_verify") is None:  # not installed: use the source tree
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _cases import make_body
from _common import describe_machine, parse_size, size_label, summary, write_json

from upvest_verify import Policy, VerificationError, Verifier
from upvest_verify.testing import generate_key, make_key_set, sign_webhook

HOST = "hooks.example.com"
PATH = "/webhooks/upvest"
URL = f"https://{HOST}{PATH}"
CHUNK = 64 * 1024
TARGET_RATIO = 1.5
WARM_CALLS = 3
FLAT_WARM_UP = 200
SAMPLES = 20
WSGI_ADDED = ("host", "content-type", "content-length")
DISCONNECT = {"type": "http.disconnect"}
END = {"type": "http.response.body", "body": b"ok"}


def _start(status: int) -> dict[str, Any]:
    return {"type": "http.response.start", "status": status, "headers": []}


@dataclass
class Contender:
    """One way to receive the webhook: ``run(prepare(body))`` answers an HTTP status.

    ``prepare`` builds what the server hands over (outside the measurement); a
    contender that ``verifies`` must answer a tampered body 401.
    """

    name: str
    prepare: Callable[[bytes], Any]
    run: Callable[[Any], int]
    verifies: bool = True


class Case:
    """A signed RFC 9421 webhook (``Content-Digest``) of ``size`` bytes, and its verifier."""

    def __init__(self, size: int) -> None:
        key, created = generate_key(), int(time.time())
        self.size, self.body = size, make_body(size)
        self.tampered = self.body[:-1] + b" "
        signed = sign_webhook(self.body, key=key, url=URL, dialect="rfc9421", created=created)
        self.headers = list(signed.headers)
        self.raw_headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in self.headers]
        # For the WSGI request builders, which add Host, Content-Type and Content-Length.
        self.wsgi_headers = [(k, v) for k, v in self.headers if k not in WSGI_ADDED]
        self.base = signed.base
        self.der = base64.b64decode(str(signed.header("signature")).split(":")[1])
        self.public_key: Any = key.private_key.public_key()
        policy = Policy(max_body_size=max(Policy().max_body_size, size))
        # A fixed clock: the signature stays valid however long the run takes.
        self.verifier = Verifier(make_key_set(key), policy=policy, clock=lambda: float(created))
        self.scope: dict[str, Any] = {"type": "http", "asgi": {"version": "3.0"}, "method": "POST"}
        self.scope.update(http_version="1.1", scheme="https", path=PATH, raw_path=PATH.encode())
        self.scope.update(query_string=b"", root_path="", headers=self.raw_headers)
        self.scope.update(server=(HOST, 443), client=("127.0.0.1", 50000))
        self.loop = asyncio.new_event_loop()

    def call_asgi(self, app: Any, messages: list[dict[str, Any]]) -> int:
        """One request through an ASGI app in-process; the answer's status."""
        pending, status = iter(messages), 0

        async def receive() -> dict[str, Any]:
            return next(pending, DISCONNECT)

        async def send(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]

        self.loop.run_until_complete(app(dict(self.scope), receive, send))
        return status


async def read(receive: Any) -> bytes:
    """The body from ``receive()``, its chunks joined (one message is not copied)."""
    chunks = []
    while (message := await receive()).get("more_body"):
        chunks.append(message["body"])
    return b"".join([*chunks, message.get("body", b"")])


def one_message(body: bytes) -> list[dict[str, Any]]:
    """The body in one ``http.request`` message."""
    return [{"type": "http.request", "body": body, "more_body": False}]


def chunked(body: bytes) -> list[dict[str, Any]]:
    """The body in 64 KiB ``http.request`` messages (``more_body=True`` but the last)."""
    parts = [body[i : i + CHUNK] for i in range(0, len(body), CHUNK)] or [b""]
    last = len(parts) - 1
    return [{"type": "http.request", "body": p, "more_body": i < last} for i, p in enumerate(parts)]


# --------------------------------------------------------------------------- the contenders


def asgi_contenders(case: Case) -> tuple[list[Contender], Any]:
    """``Verifier.verify``, the floor, the Starlette app and the middleware; the middleware."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from starlette.requests import Request

    from upvest_verify.adapters.starlette import UpvestWebhookMiddleware

    verifier, size, algorithm = case.verifier, case.size, ec.ECDSA(hashes.SHA512())
    sha512, expected = hashlib.sha512, hashlib.sha512(case.body).digest()

    async def floor(scope: Any, receive: Any, send: Any) -> None:
        ok = sha512(await read(receive)).digest() == expected
        case.public_key.verify(case.der, case.base, algorithm)
        await send(_start(200 if ok else 401))
        await send(END)

    async def app(scope: Any, receive: Any, send: Any) -> None:
        body = await Request(scope, receive).body()  # joins [body, b""]: always a copy
        await send(_start(200 if len(body) == size else 500))
        await send(END)

    async def raw(scope: Any, receive: Any, send: Any) -> None:
        await send(_start(200 if len(await read(receive)) == size else 500))
        await send(END)

    middleware = UpvestWebhookMiddleware(app, verifier=verifier, offload=False)
    bare = UpvestWebhookMiddleware(raw, verifier=verifier, offload=False)

    def verifying(headers: Any) -> Callable[[bytes], int]:
        def run(body: bytes) -> int:
            try:
                verifier.verify("POST", URL, headers, body)
            except VerificationError:
                return 401
            return 200

        return run

    def asgi(app: Any) -> Callable[[list[dict[str, Any]]], int]:
        return lambda messages: case.call_asgi(app, messages)

    def same(body: bytes) -> bytes:
        return body

    return [
        Contender("verify, str headers", same, verifying(case.headers)),
        Contender("verify, ASGI bytes headers", same, verifying(case.raw_headers)),
        Contender("floor, one message", one_message, asgi(floor)),
        Contender("floor, 64 KiB chunks", chunked, asgi(floor)),
        Contender("Starlette app, one message", one_message, asgi(app), verifies=False),
        Contender("Starlette app, 64 KiB chunks", chunked, asgi(app), verifies=False),
        Contender("middleware, one message", one_message, asgi(middleware)),
        Contender("middleware, 64 KiB chunks", chunked, asgi(middleware)),
        Contender("middleware, raw app, one", one_message, asgi(bare)),
        Contender("middleware, raw app, 64K", chunked, asgi(bare)),
    ], middleware


def flask_contenders(case: Case) -> list[Contender]:
    """Flask with and without ``UpvestVerify``, called as a WSGI app."""
    from flask import Flask, request
    from werkzeug.test import EnvironBuilder

    from upvest_verify.adapters.flask import UpvestVerify

    def wsgi(protected: bool) -> Callable[[dict[str, Any]], int]:
        app = Flask(f"bench_memory_{protected}")
        if protected:
            UpvestVerify(app, verifier=case.verifier)
        app.post(PATH)(lambda: ("ok", 200 if len(request.get_data()) == case.size else 500))

        def run(environ: dict[str, Any]) -> int:
            status = []
            answer = app(environ, lambda s, h, e=None: status.append(int(s.split()[0])))
            b"".join(answer)
            answer.close()
            return status[0]

        return run

    headers, kind = case.wsgi_headers, "application/json"

    def prepare(body: bytes) -> dict[str, Any]:
        built = EnvironBuilder(
            PATH, f"https://{HOST}", method="POST", content_type=kind, headers=headers, data=body
        )
        return built.get_environ()

    return [
        Contender("Flask, no verification", prepare, wsgi(False), verifies=False),
        Contender("Flask + UpvestVerify", prepare, wsgi(True)),
    ]


def django_contenders(case: Case) -> list[Contender]:
    """Django's view alone and behind the middleware, on ``RequestFactory`` requests."""
    import django
    from django.conf import settings

    if not settings.configured:
        settings.configure(
            DEBUG=False,
            SECRET_KEY="bench-memory",  # noqa: S106 - nothing is served
            ALLOWED_HOSTS=[HOST],
            USE_TZ=True,
            DATA_UPLOAD_MAX_MEMORY_SIZE=max(2621440, case.size + 1),
            UPVEST_VERIFY={"VERIFIER": case.verifier, "PATHS": [PATH]},
        )
        django.setup()
    from django.http import HttpResponse
    from django.test import RequestFactory

    from upvest_verify.adapters.django import UpvestWebhookMiddleware

    def view(request: Any) -> Any:
        return HttpResponse("ok", status=200 if len(request.body) == case.size else 500)

    factory, headers = RequestFactory(), dict(case.wsgi_headers, host=HOST)

    def prepare(body: bytes) -> Any:
        kind = "application/json"
        return factory.post(PATH, body, content_type=kind, secure=True, headers=headers)

    middleware = UpvestWebhookMiddleware(view)
    return [
        Contender("Django, no verification", prepare, lambda r: view(r).status_code, False),
        Contender("Django + middleware", prepare, lambda r: middleware(r).status_code),
    ]


FRAMEWORKS = {"flask": ("Flask", flask_contenders), "django": ("Django", django_contenders)}


# --------------------------------------------------------------------------- measuring


def check(contenders: Sequence[Contender], case: Case) -> list[str]:
    """Every contender answers 200; the verifying ones refuse a tampered body (401)."""
    problems = []
    security = logging.getLogger("upvest_verify.security")
    level = security.level
    security.setLevel(logging.CRITICAL)  # the expected refusals need not be printed
    try:
        for c in contenders:
            if (status := c.run(c.prepare(case.body))) != 200:
                problems.append(f"{c.name} answered {status} to a valid webhook")
            if c.verifies and (status := c.run(c.prepare(case.tampered))) != 401:
                problems.append(f"{c.name} answered {status} to a tampered body")
    finally:
        security.setLevel(level)
    return problems


def peak_extra(contender: Contender, body: bytes, reps: int) -> dict[str, Any]:
    """Traced peak during one call over the traced size before it, ``reps`` times."""
    traced = tracemalloc.get_traced_memory
    for _ in range(WARM_CALLS):
        contender.run(contender.prepare(body))
    peaks = []
    gc.collect()
    gc.disable()  # no collection frees older garbage during a call and hides its peak
    start = traced()[0]
    try:
        for _ in range(reps):
            prepared = contender.prepare(body)
            before = traced()[0]
            tracemalloc.reset_peak()
            status = contender.run(prepared)
            peaks.append(traced()[1] - before)
            del prepared
            if status != 200:
                raise RuntimeError(f"{contender.name} answered {status} while measured")
    finally:
        gc.enable()
    gc.collect()
    return {
        "peak_extra_bytes": summary(peaks, 0),
        "ratio": round(statistics.median(peaks) / len(body), 3),
        "retained_per_call_bytes": round((traced()[0] - start) / reps),
    }


def rss_bytes() -> int | None:
    """Resident set size now (``/proc/self/statm``), or ``None`` where there is none."""
    try:
        with open("/proc/self/statm", encoding="ascii") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


def _sample(requests: int) -> dict[str, Any]:
    rss = rss_bytes()
    gc.collect()  # the live blocks, not garbage awaiting a full collection
    return {"requests": requests, "rss_bytes": rss, "python_blocks": sys.getallocatedblocks()}


def flatness(case: Case, middleware: Any, n: int) -> dict[str, Any]:
    """``n`` requests through the inline middleware, sampling RSS every ``n / 20``."""
    for _ in range(FLAT_WARM_UP):
        if (status := case.call_asgi(middleware, chunked(case.body))) != 200:
            raise RuntimeError(f"the middleware answered {status} during the warm-up")
    every, refused, samples = max(1, n // SAMPLES), 0, [_sample(0)]
    started = time.perf_counter()
    for i in range(1, n + 1):
        refused += case.call_asgi(middleware, chunked(case.body)) != 200
        if i % every == 0 or i == n:
            samples.append(_sample(i))
            rss = (samples[-1]["rss_bytes"] or 0) / 2**20
            print(f"  {i:>8,} requests: RSS {rss:8.2f} MiB,"
                  f" {samples[-1]['python_blocks']:>9,} Python blocks", flush=True)  # fmt: skip
    seconds = time.perf_counter() - started
    if refused:
        raise RuntimeError(f"the middleware refused {refused} of {n} valid webhooks")
    result: dict[str, Any] = {"requests": n, "warm_up": FLAT_WARM_UP, "body_bytes": case.size}
    result.update(delivery="64 KiB messages", ms_per_request=round(seconds * 1000 / n, 3))
    result["samples"] = samples
    result["python_blocks_growth"] = samples[-1]["python_blocks"] - samples[0]["python_blocks"]
    if any(s["rss_bytes"] is None for s in samples):
        return {**result, "rss": "not available (no /proc/self/statm)"}
    xs = [float(s["requests"]) for s in samples]
    ys = [float(s["rss_bytes"]) for s in samples]
    slope = statistics.linear_regression(xs, ys).slope
    result.update(rss_growth_bytes=int(ys[-1] - ys[0]), rss_range_bytes=int(max(ys) - min(ys)))
    result.update(slope_bytes_per_1000=round(slope * 1000, 1), fitted_growth_bytes=round(slope * n))
    return {**result, "flat": abs(slope * n) < case.size}


# --------------------------------------------------------------------------- main


def _kib(n: float) -> str:
    return f"{n / 1024:,.1f}"


def measure(size: int, reps: int, requests: int) -> dict[str, Any]:
    """Check every contender, measure each per request, then run the flatness loop."""
    case = Case(size)
    contenders, middleware = asgi_contenders(case)
    skipped = {}
    for module, (name, build) in FRAMEWORKS.items():
        if importlib.util.find_spec(module) is None:
            skipped[module] = f"{name} is not installed: pip install -e '.[{module}]'"
            continue
        try:
            contenders += build(case)
        except Exception as e:  # a framework that cannot be set up is skipped, with why
            skipped[module] = f"could not be set up: {type(e).__name__}: {e}"
    problems = check(contenders, case)
    if problems:
        raise RuntimeError("; ".join(problems))
    gc.collect()
    gc.freeze()  # what set-up allocated: out of every later collection's way
    label = size_label(size)
    print(f"per request, {label} body: peak extra over {reps} calls (KiB), ratio = median / body")
    print(f"  {'contender':<28} {'min':>9} {'median':>9} {'max':>9} {'ratio':>6} {'retained':>9}")
    per_request: dict[str, Any] = {}
    tracemalloc.start()
    try:
        for c in contenders:
            entry = per_request[c.name] = peak_extra(c, case.body, reps)
            low, mid, high = (_kib(entry["peak_extra_bytes"][k]) for k in ("min", "median", "max"))
            print(f"  {c.name:<28} {low:>9} {mid:>9} {high:>9} {entry['ratio']:>6.3f}"
                  f" {_kib(entry['retained_per_call_bytes']):>9}", flush=True)  # fmt: skip
    finally:
        tracemalloc.stop()
    for module, reason in skipped.items():
        print(f"  {module}: skipped: {reason}")
    ratio = {name: entry["ratio"] for name, entry in per_request.items()}
    worst = max(ratio["middleware, one message"], ratio["middleware, 64 KiB chunks"])
    own = max(ratio["middleware, raw app, one"], ratio["middleware, raw app, 64K"])
    print(f"\nflatness: {requests:,} requests of {label} through the inline middleware")
    flat = flatness(case, middleware, requests)
    if "flat" in flat:
        print(
            f"  RSS growth {_kib(flat['rss_growth_bytes'])} KiB from the first sample to the last,"
            f" slope {flat['slope_bytes_per_1000']:,.1f} B per 1,000 requests,"
            f" Python blocks {flat['python_blocks_growth']:+,}; {flat['ms_per_request']} ms/request"
        )
    verdict = {True: "met", False: "MISSED"}
    print(
        f"\ntarget: peak extra <= {TARGET_RATIO} x body: middleware + Starlette app {worst:.3f}"
        f" ({verdict[worst <= TARGET_RATIO]}), middleware + raw app {own:.3f}"
        f" ({verdict[own <= TARGET_RATIO]}); flat over {requests:,} requests: {flat.get('flat')}"
    )
    targets: dict[str, Any] = {"ratio_max": TARGET_RATIO, "middleware_ratio": worst}
    targets.update(ratio_met=worst <= TARGET_RATIO, middleware_own_ratio=own)
    targets.update(own_ratio_met=own <= TARGET_RATIO, flat=flat.get("flat"))
    targets["stated_for"] = "1 MiB body, 100,000 requests"
    figures: dict[str, Any] = {"body_bytes": size, "chunk_bytes": CHUNK, "reps": reps}
    figures.update(per_request=per_request, skipped=skipped, flatness=flat, targets=targets)
    return figures


def main(argv: Sequence[str] | None = None) -> int:
    """Measure and report; return 1 if something failed, 0 otherwise (targets or not)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="2,000 requests, 5 calls each")
    parser.add_argument("--requests", type=int, help="flatness requests (default 100,000)")
    parser.add_argument("--body", default="1M", help="body size: bytes, K or M (default 1M)")
    parser.add_argument("--reps", type=int, help="measured calls per contender (default 20)")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args(argv)
    try:
        size = parse_size(args.body)
    except ValueError as e:
        parser.error(f"--body: {e}")
    requests = args.requests or (2000 if args.quick else 100_000)
    reps = args.reps or (5 if args.quick else 20)
    if requests < 1 or reps < 1 or size < 1024:
        parser.error("--requests and --reps must be at least 1, --body at least 1K")
    document: dict[str, Any] = {"benchmark": "memory", "machine": describe_machine()}
    started, status = time.perf_counter(), 0
    if importlib.util.find_spec("starlette") is None:
        document.update(status="failed", reason="needs Starlette: pip install -e '.[starlette]'")
        print(document["reason"])
        status = 1
    else:
        try:
            document.update(status="ok", **measure(size, reps, requests))
        except Exception as e:  # reported, and the exit status says so
            print(f"failed: {type(e).__name__}: {e}")
            document.update(status="failed", reason=f"{type(e).__name__}: {e}")
            status = 1
    document["seconds"] = round(time.perf_counter() - started, 1)
    if args.json:
        write_json(args.json, document)
    return status


if __name__ == "__main__":
    sys.exit(main())
