"""Worst-case CPU cost of a webhook request WITHOUT a valid signature (threat-model.md K9, H6).

Every hostile request names a ``keyid`` that IS in the key set and a current
``created``, so only the cheap checks (sizes, parsing, policy, time window, key
lookup, digest) stand between it and ECDSA; its signature is a real P-521 ``r||s``
over something else, so every ECDSA verification it reaches runs in full and fails.
Headers stay within 64 KiB. The attacks:

* ``dict-keys``: 29 covered ``"x-dict";key="kN"`` members of one ~56 KB dictionary
  field (plus ``@method @path content-digest``: 32 components);
* ``query-params``: 28 covered ``"@query-param";name="qN"`` over a ~56 KB query;
* ``four-labels``: 4 signatures, each covering 14 dictionary members and 14 query
  parameters (a ~28 KB field and a ~28 KB query);
* ``repeated-lines``: ``dict-keys`` with its field sent as 20 lines of ~2.8 KB (a WSGI
  server joins them into one value);
* ``huge-input``: a ~60 KiB ``Signature-Input`` of thousands of components;
* ``four-fields-at-cap``: 4 signatures, each covering one member of its own ~15 KB
  dictionary field: just under a 16 KiB cap on what one signature's components read;
* ``baseline``: an ordinary webhook (six components) with a bad signature.

Measured per attack: CPU time and ECDSA verifications (the library's verify primitive,
wrapped) per request, in-process through :meth:`Verifier.verify` and over HTTP on
127.0.0.1 for each adapter, each server in a child process whose CPU is its own
``time.process_time`` (all threads; cross-checked with ``/proc/<pid>/stat``).
Requests go one at a time, each on a new connection; the servers' header limits are
raised to let 64 KiB in, so the verifier, not the server, is measured. Target: at
most 4 ECDSA verifications and 5 ms of CPU beyond them per request (in-process).

Run from the repository root, against any source tree::

    python benchmarks/bench_hostile.py --quick                       # < 60 s
    PYTHONPATH=/tmp/tree/src python benchmarks/bench_hostile.py      # another tree

Not part of the test suite; numbers depend on the machine.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import hashlib
import http.client
import importlib.util
import json
import os
import platform
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

if importlib.util.find_spec("upvest_verify") is None:  # not installed: use the source tree
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import upvest_verify
from upvest_verify import KeySet, VerificationError, Verifier

HERE = Path(__file__).resolve().parent
WEBHOOK = "/webhooks/upvest"
STATS = "/bench/stats"
AUTHORITY = "hooks.example.com"
TARGETS = ("starlette", "fastapi", "flask-werkzeug", "flask-gunicorn", "django-wsgi")
ATTACKS = (
    *("dict-keys", "query-params", "four-labels", "repeated-lines", "huge-input"),
    *("four-fields-at-cap", "baseline"),
)
ORDINARY = [f'"{c}"' for c in ("@method", "@path", "content-type", "content-length")]
ORDINARY += ['"content-digest"', '"date"']  # the six components of an ordinary webhook
TIMEOUT = 30.0
Limit = tuple[int, float]  # most requests, most seconds (at least two requests)
MAX_HEADER_EVENT = 256 * 1024  # uvicorn/h11: room for 64 KiB of headers and a long query


# --------------------------------------------------------------------------- ECDSA counting


def install_ecdsa_counter() -> Callable[[], int] | None:
    """Wrap the library's ECDSA verify primitive wherever it is held; return a reader.

    Returns ``None`` when the source tree has no such primitive (then counts are n/a).
    """
    crypto = sys.modules.get("upvest_verify._crypto")  # imported by upvest_verify itself
    original = getattr(crypto, "verify_signature", None)
    if original is None:
        return None
    count = [0]

    def counting(*args: Any, **kwargs: Any) -> Any:
        count[0] += 1
        return original(*args, **kwargs)

    holders = [m for n, m in list(sys.modules.items()) if n.startswith("upvest_verify")]
    for module in holders:
        if getattr(module, "verify_signature", None) is original:
            module.verify_signature = counting  # type: ignore[attr-defined]
    return lambda: count[0]


# --------------------------------------------------------------------------- hostile requests


@dataclass(frozen=True)
class Request:
    """One request: method, origin-form target, header lines and body."""

    method: str
    target: str
    headers: list[tuple[str, str]]
    body: bytes

    @property
    def size(self) -> int:
        """Size of the request line's target and the header lines as sent."""
        return len(self.target) + sum(len(k) + len(v) + 4 for k, v in self.headers)


def garbage_signature() -> str:
    """A real P-521 ``r||s`` (132 bytes) over other bytes: ECDSA runs in full and fails."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

    der = ec.generate_private_key(ec.SECP521R1()).sign(b"other", ec.ECDSA(hashes.SHA512()))
    r, s = decode_dss_signature(der)
    return base64.b64encode(r.to_bytes(66, "big") + s.to_bytes(66, "big")).decode()


def _members(size: int, name: str = "k", separator: str = ", ") -> str:
    """``k0=vxx..0, k1=vxx..1, ...`` (an SF dictionary) or ``q0=...&q1=...`` of ``size`` chars."""
    members: list[str] = []
    total = 0
    while total < size:
        members.append(f"{name}{len(members)}=v{str(len(members)).rjust(18, 'x')}")
        total += len(members[-1]) + len(separator)
    return separator.join(members)


def _signature_input(label: str, components: Sequence[str], kid: str, now: int) -> str:
    inner = " ".join(components)
    return f'{label}=({inner});created={now};expires={now + 600};keyid="{kid}";nonce="n-{label}"'


def build_attacks(kid: str, now: int, signature: str) -> dict[str, Request]:
    """The hostile requests of every attack, for key ``kid`` at time ``now``."""
    body = b'{"payload":[]}'
    digest = base64.b64encode(hashlib.sha512(body).digest()).decode()
    common = [
        ("content-type", "application/json"),
        ("content-length", str(len(body))),
        ("content-digest", f"sha-512=:{digest}:"),
        ("date", "Tue, 01 Dec 2026 00:00:00 GMT"),
    ]
    base = ['"@method"', '"@path"', '"content-digest"']
    keys = [f'"x-dict";key="k{i}"' for i in range(4000)]
    params = [f'"@query-param";name="q{i}"' for i in range(2000)]

    def signed(
        target: str, extra: list[tuple[str, str]], inputs: list[tuple[str, list[str]]]
    ) -> Request:
        lines = [*common, *extra]
        lines.append(
            ("signature-input", ", ".join(_signature_input(lb, c, kid, now) for lb, c in inputs))
        )
        lines.append(("signature", ", ".join(f"{lb}=:{signature}:" for lb, _ in inputs)))
        return Request("POST", target, lines, body)

    big, query = _members(56_000), _members(56_000, "q", "&")
    half_dict, half_query = _members(28_000), _members(28_000, "q", "&")
    with_query = ['"@method"', '"@path"', '"@query"', '"content-digest"']
    four = [
        (f"sig{n}", [*with_query, *keys[14 * n : 14 * n + 14], *params[14 * n : 14 * n + 14]])
        for n in range(1, 5)
    ]
    huge = [*base]  # a Signature-Input of about 60 KiB
    while sum(len(c) + 1 for c in huge) < 60_000:
        huge.append(keys[len(huge) - len(base)])
    # 20 lines of one dictionary; the covered keys k0..k28 are in the first.
    pieces = [_members(2_800, "k" if n == 0 else f"r{n}k") for n in range(20)]
    return {
        "dict-keys": signed(WEBHOOK, [("x-dict", big)], [("sig1", [*base, *keys[:29]])]),
        "query-params": signed(f"{WEBHOOK}?{query}", [], [("sig1", [*with_query, *params[:28]])]),
        "four-labels": signed(f"{WEBHOOK}?{half_query}", [("x-dict", half_dict)], four),
        "repeated-lines": signed(
            WEBHOOK, [("x-dict", p) for p in pieces], [("sig1", [*base, *keys[:29]])]
        ),
        "huge-input": signed(WEBHOOK, [("x-dict", _members(500))], [("sig1", huge)]),
        "four-fields-at-cap": signed(
            WEBHOOK,
            [(f"x-d{n}", _members(15_000)) for n in range(1, 5)],
            [(f"sig{n}", [*base, f'"x-d{n}";key="k{n}"']) for n in range(1, 5)],
        ),
        "baseline": signed(WEBHOOK, [], [("sig1", ORDINARY)]),
    }


# --------------------------------------------------------------------------- measurement


@dataclass
class Cell:
    """The figures of one attack on one target."""

    requests: int = 0
    cpu_ms: float = float("nan")
    ecdsa: float | None = None
    verdict: str = "?"
    proc_ms: float | None = None


def ecdsa_cost_ms(rounds: int) -> float:
    """CPU milliseconds of one failing P-521/SHA-512 verify in ``cryptography``."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP521R1()).public_key()
    der = ec.generate_private_key(ec.SECP521R1()).sign(b"x", ec.ECDSA(hashes.SHA512()))
    start = time.process_time()
    for _ in range(rounds):
        with contextlib.suppress(InvalidSignature):
            key.verify(der, b"y" * 2000, ec.ECDSA(hashes.SHA512()))
    return 1000 * (time.process_time() - start) / rounds


Counter = Callable[[], int] | None


def measure_in_process(
    verifier: Verifier, request: Request, counter: Counter, limit: Limit
) -> Cell:
    """CPU and ECDSA per call of ``verifier.verify`` on ``request`` (up to ``limit`` calls/s)."""
    url = f"https://{AUTHORITY}{request.target}"
    cell = Cell()

    def once() -> None:
        try:
            verifier.verify(request.method, url, request.headers, request.body)
            cell.verdict = "ACCEPTED"
        except VerificationError as e:
            cell.verdict = e.reason.value

    once()  # warm: caches, learned layouts
    ecdsa0 = counter() if counter else 0
    wall_end = time.monotonic() + limit[1]
    start = time.process_time()
    while cell.requests < limit[0] and (cell.requests < 2 or time.monotonic() < wall_end):
        once()
        cell.requests += 1
    cell.cpu_ms = 1000 * (time.process_time() - start) / cell.requests
    if counter:
        cell.ecdsa = (counter() - ecdsa0) / cell.requests
    return cell


def _send(port: int, request: Request) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT)
    try:
        conn.putrequest(request.method, request.target, skip_accept_encoding=True)
        for name, value in request.headers:
            conn.putheader(name, value)
        conn.endheaders(request.body or None)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def _stats(port: int) -> dict[str, Any]:
    status, body = _send(port, Request("GET", STATS, [], b""))
    if status != 200:
        raise RuntimeError(f"stats endpoint answered {status}: {body[:200]!r}")
    stats: dict[str, Any] = json.loads(body)
    return stats


def _proc_cpu_ms(pid: int) -> float | None:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    # fields[11], fields[12]: utime and stime in clock ticks (proc(5), counted after ")").
    return 1000 * (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure_http(port: int, request: Request, limit: Limit) -> Cell:
    """Server CPU and ECDSA per request over loopback (up to ``limit`` requests/s)."""
    cell = Cell()
    for _ in range(2):  # warm
        status, body = _send(port, request)
    before = _stats(port)
    proc0 = _proc_cpu_ms(before["pid"])
    wall_end = time.monotonic() + limit[1]
    while cell.requests < limit[0] and (cell.requests < 2 or time.monotonic() < wall_end):
        status, body = _send(port, request)
        cell.requests += 1
    after = _stats(port)
    proc1 = _proc_cpu_ms(before["pid"])
    cell.cpu_ms = 1000 * (after["cpu"] - before["cpu"]) / cell.requests
    if before["ecdsa"] is not None:
        cell.ecdsa = (after["ecdsa"] - before["ecdsa"]) / cell.requests
    if proc0 is not None and proc1 is not None:
        cell.proc_ms = (proc1 - proc0) / cell.requests
    try:
        cell.verdict = f"{status} {json.loads(body).get('detail', '')}".strip()
    except ValueError:
        cell.verdict = f"{status} (not a problem document)"
    return cell


# --------------------------------------------------------------------------- servers (children)


def _verifier_from_env() -> Verifier:
    return Verifier(KeySet.from_jwks(os.environ["BENCH_JWKS"]))


def _stats_document(counter: Callable[[], int] | None) -> dict[str, Any]:
    return {
        "pid": os.getpid(),
        "cpu": time.process_time(),
        "ecdsa": counter() if counter else None,
        "module": upvest_verify.__file__,
    }


def starlette_app(fastapi: bool = False) -> Any:
    """The Starlette (or FastAPI) receiver with the middleware and a stats endpoint."""
    counter = install_ecdsa_counter()
    verifier = _verifier_from_env()
    from starlette.responses import JSONResponse

    async def stats(request: Any) -> Any:
        return JSONResponse(_stats_document(counter))

    async def hook(request: Any) -> Any:
        return JSONResponse({"ok": True})

    if fastapi:
        from fastapi import FastAPI, Request

        from upvest_verify.adapters.fastapi import UpvestWebhookMiddleware

        app: Any = FastAPI()
        hook.__annotations__ = stats.__annotations__ = {"request": Request}
        app.post(WEBHOOK)(hook)
        app.get(STATS)(stats)
    else:
        from starlette.applications import Starlette
        from starlette.routing import Route

        from upvest_verify.adapters.starlette import UpvestWebhookMiddleware

        app = Starlette(routes=[Route(WEBHOOK, hook, methods=["POST"]), Route(STATS, stats)])
    app.add_middleware(UpvestWebhookMiddleware, verifier=verifier, paths=[WEBHOOK])
    return app


def flask_app() -> Any:
    """The Flask receiver (also gunicorn's ``bench_hostile:flask_app()``)."""
    counter = install_ecdsa_counter()
    from flask import Flask

    from upvest_verify.adapters.flask import UpvestVerify, require_upvest_signature

    app = Flask("bench_hostile")
    UpvestVerify(app, verifier=_verifier_from_env())

    @app.post(WEBHOOK)
    @require_upvest_signature
    def hook() -> Any:
        return {"ok": True}

    @app.get(STATS)
    def stats() -> Any:
        return _stats_document(counter)

    return app


def django_app() -> Any:
    """The Django receiver (WSGI) with the middleware and a stats view."""
    counter = install_ecdsa_counter()
    import types

    import django
    from django.conf import settings
    from django.http import JsonResponse
    from django.urls import path

    urls = sys.modules["bench_hostile_urls"] = types.ModuleType("bench_hostile_urls")
    settings.configure(
        DEBUG=False,
        SECRET_KEY="bench-hostile",  # noqa: S106 - a loopback benchmark server
        ALLOWED_HOSTS=["*"],
        ROOT_URLCONF="bench_hostile_urls",
        INSTALLED_APPS=[],
        MIDDLEWARE=["upvest_verify.adapters.django.UpvestWebhookMiddleware"],
        UPVEST_VERIFY={"VERIFIER": _verifier_from_env(), "PATHS": [WEBHOOK]},
        USE_TZ=True,
    )
    django.setup()
    urls.urlpatterns = [  # type: ignore[attr-defined]
        path(WEBHOOK.lstrip("/"), lambda request: JsonResponse({"ok": True})),
        path(STATS.lstrip("/"), lambda request: JsonResponse(_stats_document(counter))),
    ]
    from django.core.handlers.wsgi import WSGIHandler

    return WSGIHandler()


def serve(kind: str, fd: int) -> None:
    """Child process: serve ``kind`` on the inherited listening socket ``fd``."""
    import logging

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    logging.getLogger("upvest_verify.security").setLevel(logging.CRITICAL)
    if kind in ("starlette", "fastapi"):
        import uvicorn

        config = uvicorn.Config(
            starlette_app(fastapi=kind == "fastapi"),
            http="h11",
            h11_max_incomplete_event_size=MAX_HEADER_EVENT,
            log_level="error",
            access_log=False,
            lifespan="off",
            ws="none",
        )
        uvicorn.Server(config).run(sockets=[socket.socket(fileno=fd)])
        return
    from werkzeug.serving import make_server

    app = flask_app() if kind == "flask-werkzeug" else django_app()
    make_server("127.0.0.1", 0, app, threaded=True, fd=fd).serve_forever()


@contextlib.contextmanager
def running(kind: str, jwks: str) -> Iterator[int]:
    """Serve ``kind`` in a child process on an ephemeral loopback port; yield the port."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    sock.set_inheritable(True)
    port = sock.getsockname()[1]
    tree = str(Path(upvest_verify.__file__).resolve().parents[1])
    env = {
        **os.environ,
        "BENCH_JWKS": jwks,
        "PYTHONPATH": os.pathsep.join([tree, str(HERE), os.environ.get("PYTHONPATH", "")]),
    }
    if kind == "flask-gunicorn":
        command = [
            sys.executable, "-m", "gunicorn", "--bind", f"fd://{sock.fileno()}",
            "--workers", "1", "--log-level", "error",
            "--limit-request-line", "0", "--limit-request-field_size", "131072",
            "--limit-request-fields", "32768", "bench_hostile:flask_app()",
        ]  # fmt: skip
    else:
        command = [sys.executable, __file__, "--serve", kind, "--fd", str(sock.fileno())]
    process = subprocess.Popen(  # noqa: S603 - this script or gunicorn, on loopback
        command, env=env, pass_fds=(sock.fileno(),), cwd=str(HERE), stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + TIMEOUT
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"{kind} exited with {process.returncode} during start-up")
            try:
                _stats(port)
                break
            except (OSError, RuntimeError, http.client.HTTPException):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        yield port
    finally:
        process.terminate()
        try:
            process.wait(timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=TIMEOUT)
        sock.close()


# --------------------------------------------------------------------------- report


def _cell_text(cell: Cell | None) -> str:
    if cell is None:
        return "-"
    ecdsa = "n/a" if cell.ecdsa is None else f"{cell.ecdsa:.1f}"
    return f"{cell.cpu_ms:8.2f} / {ecdsa}"


def print_report(
    results: dict[str, dict[str, Cell]],
    targets: Sequence[str],
    attacks: dict[str, Request],
    ecdsa_ms: float,
) -> None:
    """Print the per-attack table, the verdicts and the target check."""
    columns = ["in-process", *targets]
    width = 18
    print()
    print("CPU ms per request / ECDSA verifications per request")
    print(f"{'attack':<19} {'size':>8}  " + "".join(f"{c:>{width}}" for c in columns))
    for name, request in attacks.items():
        row = [_cell_text(results.get(c, {}).get(name)) for c in columns]
        size = f"{request.size // 1024} KiB"
        print(f"{name:<19} {size:>8}  " + "".join(f"{r:>{width}}" for r in row))
    print()
    print("verdicts (in-process: reason; servers: status and detail)")
    for name in attacks:
        seen: dict[str, list[str]] = {}
        for column in columns:
            cell = results.get(column, {}).get(name)
            if cell is not None:
                seen.setdefault(cell.verdict, []).append(column)
        text = "; ".join(f"{verdict} ({', '.join(where)})" for verdict, where in seen.items())
        print(f"  {name:<19} {text}")
    print()
    print(f"one P-521 verify (cryptography, failing): {ecdsa_ms:.2f} ms CPU")
    print()
    print("CPU ms per request beyond its ECDSA verifications (target in-process: <= 5 ms, <= 4)")
    print(f"{'attack':<19} {'':>8}  " + "".join(f"{c:>{width}}" for c in columns))
    for name in attacks:
        row = []
        for column in columns:
            cell = results.get(column, {}).get(name)
            if cell is None:
                row.append("-")
                continue
            beyond = cell.cpu_ms - (cell.ecdsa or 0) * ecdsa_ms
            over = beyond > 5 or (cell.ecdsa or 0) > 4
            flag = (" OVER" if over else "   ok") if column == "in-process" else ""
            row.append(f"{beyond:8.2f}{flag}")
        print(f"{name:<19} {'':>8}  " + "".join(f"{r:>{width}}" for r in row))
    gaps = [
        abs(cell.proc_ms - cell.cpu_ms)
        for column in targets
        for cell in results.get(column, {}).values()
        if cell.proc_ms is not None
    ]
    if gaps:
        print(f"/proc/<pid>/stat agrees within {max(gaps):.1f} ms per request (10 ms ticks)")


def main(argv: Sequence[str] | None = None) -> int:
    """Measure every attack in-process and on every target; print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="few requests (under a minute)")
    parser.add_argument("--targets", nargs="*", choices=TARGETS, default=list(TARGETS))
    parser.add_argument("--attacks", nargs="*", choices=ATTACKS, default=list(ATTACKS))
    parser.add_argument("--requests", type=int, help="most requests per attack and target")
    parser.add_argument("--seconds", type=float, help="most seconds per attack and target")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    parser.add_argument("--serve", choices=TARGETS, help=argparse.SUPPRESS)
    parser.add_argument("--fd", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        serve(args.serve, args.fd)
        return 0
    limit = (
        args.requests or (8 if args.quick else 100),
        args.seconds or (0.8 if args.quick else 8.0),
    )

    from upvest_verify.testing import generate_key, make_jwks, make_key_set

    key = generate_key(kid="bench-hostile-key")
    jwks = json.dumps(make_jwks(key))
    signature = garbage_signature()

    def fresh() -> dict[str, Request]:
        # ``created`` is now for every target: a run outlasts the policy's maximum age.
        made = build_attacks(key.kid, int(time.time()), signature)
        return {name: request for name, request in made.items() if name in args.attacks}

    attacks = fresh()
    print(f"upvest_verify from {Path(upvest_verify.__file__).resolve().parent}")
    print(
        f"python {platform.python_version()}, {platform.machine()}, cpus={os.cpu_count()}, "
        f"load={os.getloadavg()[0]:.2f}, limit={limit[0]} requests or {limit[1]} s per cell"
    )
    ecdsa_ms = ecdsa_cost_ms(20 if args.quick else 200)
    results: dict[str, dict[str, Cell]] = {"in-process": {}}
    counter = install_ecdsa_counter()
    verifier = Verifier(make_key_set(key))
    for name, request in attacks.items():
        results["in-process"][name] = measure_in_process(verifier, request, counter, limit)
    baseline = results["in-process"].get("baseline")
    if counter is None or (baseline is not None and not baseline.ecdsa):
        print("WARNING: the ECDSA counter sees no verification; counts are not trustworthy")
    for target in args.targets:
        try:
            with running(target, jwks) as port:
                module = _stats(port)["module"]
                if Path(module).resolve() != Path(upvest_verify.__file__).resolve():
                    print(f"{target}: WARNING: serves upvest_verify from {module}")
                results[target] = {n: measure_http(port, r, limit) for n, r in fresh().items()}
        except (RuntimeError, OSError) as e:
            print(f"{target}: not measured ({e})")
    print_report(results, [t for t in args.targets if t in results], attacks, ecdsa_ms)
    if args.json:
        figures = {t: {a: vars(c) for a, c in cells.items()} for t, cells in results.items()}
        args.json.write_text(json.dumps({"ecdsa_ms": ecdsa_ms, "results": figures}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
