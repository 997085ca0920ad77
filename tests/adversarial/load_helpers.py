"""Load and fault harness for threat-model.md §6 groups F and H, and for ``benchmarks/soak.py``.

Everything runs through the public API (:class:`~upvest_verify.Verifier`,
:class:`~upvest_verify.jwks.JWKSCache`, :class:`~upvest_verify.jwks.URLKeySource`) against
a real JWKS server on 127.0.0.1; only :func:`counting_verify_primitive` reaches inside,
to count the ECDSA verifies:

* :class:`FaultyJWKSServer` serves a JWKS and can be up, refusing connections, dropping
  them, answering 500, answering slowly, answering garbage, or holding every request at
  a gate; it counts the requests it receives.
* :class:`CountingSource` wraps a key source and counts fetch attempts (a refused
  connection never reaches the server) and fetches still running.
* :func:`run_load` drives a plan of requests and steps with a thread pool
  (``Verifier.verify``) or asyncio tasks (``Verifier.averify``, verification offloaded
  to a worker thread) and returns a :class:`Tally` of verdicts.
* :func:`run_fault_scenario` runs one of :data:`FAULT_SCENARIOS` (500 concurrent
  verifications while the endpoint misbehaves) and reports verdicts and fetch counts.
* :func:`hostile_requests` yields distinct hostile requests (unknown kids, garbage
  headers, huge URLs, well-formed but wrong signatures), each with the verdicts allowed
  for it and the number of ECDSA verifies it may cost.
* :func:`counting_verify_primitive` counts (or stubs) the ECDSA verify primitive, and
  :class:`MemoryProbe` and :class:`LagProbe` measure memory growth and event-loop lag.
* :func:`run_soak` runs the H8 schedule: endpoint faults, key rotation, unknown-kid
  noise and hostile requests, on a simulated or the real monotonic clock.

It imports only the library and the standard library, so ``benchmarks/soak.py`` can
load it by path.
"""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import contextlib
import functools
import gc
import hashlib
import json
import logging
import math
import random
import re
import secrets
import sys
import threading
import time
import tracemalloc
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from upvest_verify import KeySet, Policy, VerificationError, Verifier
from upvest_verify.jwks import FetchResult, JWKSCache, URLKeySource
from upvest_verify.testing import ManualClock as FakeClock
from upvest_verify.testing import SigningKey, generate_key, make_jwks, sign_webhook

# Every wait is bounded by this; it is reached only when something is broken.
BOUND = 30.0
# The wall-clock time every webhook is created at and verified at.
REFERENCE_NOW = 1_700_000_000
WEBHOOK_URL = "https://receiver.example/webhooks/upvest"
JWKS_PATH = "/auth/verify_keys"

# The cache settings of the fault scenarios: threat-model.md §5 defaults (K4-K6).
TTL = 300.0
REFRESH_COOLDOWN = 30.0
FAILURE_COOLDOWN = 10.0
MAX_STALE = 86400.0
# The source's timeout while the endpoint stalls (5 s otherwise, never reached on loopback).
SLOW_FETCH_TIMEOUT = 0.25

# P-521 group order: a signature (r, s) with 0 < r, s < N is well-formed.
P521_ORDER = int(
    "01FF" + "FFFFFFFF" * 7 + "FFFFFFFA"
    "51868783BF2F966B7FCC0148F709A5D03BB5C9B8899C47AEBB6FB71E91386409",
    16,
)
assert P521_ORDER.bit_length() == 521

ACCEPTED = "accepted"
ANY_REJECT = "rejected"  # any VerificationError reason is allowed


# ---- clocks ----------------------------------------------------------------------------------


def wait_until(predicate: Callable[[], bool], bound: float = BOUND) -> bool:
    """Poll ``predicate`` until it holds or ``bound`` seconds passed; return its last value."""
    deadline = time.monotonic() + bound
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.002)
    return True


async def await_until(predicate: Callable[[], bool], bound: float = BOUND) -> bool:
    """Like :func:`wait_until`, yielding to the event loop between polls."""
    deadline = time.monotonic() + bound
    while not predicate():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.002)
    return True


# ---- the JWKS endpoint ---------------------------------------------------------------------

# Documents a broken key endpoint might answer with 200: none holds a usable key.
GARBAGE_BODIES: tuple[bytes, ...] = (
    b"<html><body>502 Bad Gateway</body></html>",
    b"[]",
    b"null",
    b'"keys"',
    b'{"keys": "none"}',
    b'{"keys": [1, "two", null, []]}',
    b'{"keys": []}',
    b'{"keys": [{"kty": "RSA", "kid": "rsa-1", "n": "AQAB", "e": "AQAB"}]}',
    b'{"keys": [{"kty": "EC", "crv": "P-521", "kid": "short", "x": "AA", "y": "AA"}]}',
    b'{"keys": [{"kty": "EC", "crv": "P-256", "kid": "p256"',
    b"\xff\xfe\x00garbage\x00",
    b'{"keys": [], "keys": {"kid": "dup"}}',
    b"1e999999",
    b"",
)

SERVER_MODES = ("up", "refused", "dropped", "error", "slow", "garbage")


class FaultyJWKSServer:
    """A JWKS server on 127.0.0.1 whose failures the caller controls.

    Modes: ``up`` (200 with the document), ``refused`` (the listening socket is
    closed, so connecting is refused; the same port is bound again on leaving the
    mode), ``dropped`` (the connection is closed without an answer), ``error`` (500),
    ``slow`` (waits ``slow_seconds``, then answers 200), ``garbage`` (200 with
    ``garbage``). :meth:`gate` holds every request until :meth:`release`.

    Attributes:
        requests: HTTP requests received (a refused connection is not one).
        served: 200 answers carrying the document.
        gate_expired: Requests a gate released only because its bound ran out.
    """

    def __init__(self) -> None:
        self.document = json.dumps({"keys": []}).encode()
        self.garbage = GARBAGE_BODIES[0]
        self.slow_seconds = 2.0
        self.cache_control: str | None = None
        self.requests = 0
        self.served = 0
        self.gate_expired = 0
        self.arrived = threading.Event()
        self._mode = "up"
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._open = threading.Event()
        self._open.set()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.port = 0
        self._listen()
        self.url = f"http://127.0.0.1:{self.port}{JWKS_PATH}"

    # -- lifecycle --

    def _listen(self) -> None:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                server._handle(self)

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request: Any, client_address: Any) -> None:
                pass  # clients that timed out break the pipe: expected

        httpd = Server(("127.0.0.1", self.port), Handler)
        self.port = httpd.server_address[1]
        thread = threading.Thread(
            target=httpd.serve_forever,
            kwargs={"poll_interval": 0.01},
            name="faulty-jwks-server",
            daemon=True,
        )
        thread.start()
        self._httpd, self._thread = httpd, thread

    def _close_listener(self) -> None:
        httpd, thread = self._httpd, self._thread
        self._httpd = self._thread = None
        if httpd is not None:
            httpd.shutdown()
            httpd.server_close()
        if thread is not None:
            thread.join(BOUND)

    def stop(self) -> None:
        """Release waiting handlers and close the listening socket."""
        self._stop.set()
        self._open.set()
        self._close_listener()

    def __enter__(self) -> FaultyJWKSServer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- control --

    @property
    def mode(self) -> str:
        """The current mode (see the class docstring)."""
        return self._mode

    @mode.setter
    def mode(self, mode: str) -> None:
        if mode not in SERVER_MODES:
            raise ValueError(f"unknown mode {mode!r}")
        with self._lock:
            old, self._mode = self._mode, mode
        if mode == "refused" and old != "refused":
            self._close_listener()
        elif mode != "refused" and old == "refused":
            self._listen()

    def publish(self, *keys: SigningKey) -> None:
        """Serve a JWKS holding exactly these keys from now on."""
        self.document = json.dumps(make_jwks(*keys)).encode()

    def gate(self) -> None:
        """Hold every request from now on until :meth:`release` (bounded by BOUND)."""
        self.arrived.clear()
        self._open.clear()

    def release(self) -> None:
        """Let held requests answer."""
        self._open.set()

    # -- serving --

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        with self._lock:
            self.requests += 1
        self.arrived.set()
        if not self._open.wait(BOUND):
            with self._lock:
                self.gate_expired += 1
        mode = self._mode
        if handler.path != JWKS_PATH:
            self._send(handler, 404, b"not found")
        elif mode == "dropped":
            handler.close_connection = True  # no status line: the client sees EOF
        elif mode == "error":
            self._send(handler, 500, b'{"error": "internal"}')
        elif mode == "garbage":
            self._send(handler, 200, self.garbage)
        else:
            if mode == "slow":
                self._stop.wait(self.slow_seconds)
            if self._send(handler, 200, self.document):
                with self._lock:
                    self.served += 1

    def _send(self, handler: BaseHTTPRequestHandler, status: int, body: bytes) -> bool:
        try:
            handler.send_response(status)
            handler.send_header("Content-Type", "application/json")
            handler.send_header("Content-Length", str(len(body)))
            if self.cache_control is not None:
                handler.send_header("Cache-Control", self.cache_control)
            handler.end_headers()
            handler.wfile.write(body)
            handler.wfile.flush()
        except OSError:
            return False
        return True


class CountingSource:
    """A key source wrapper counting fetch attempts (sync and async) and fetches running."""

    def __init__(self, inner: URLKeySource) -> None:
        self._inner = inner
        self._lock = threading.Lock()
        self.calls = 0
        self.running = 0

    def _enter(self) -> None:
        with self._lock:
            self.calls += 1
            self.running += 1

    def _exit(self) -> None:
        with self._lock:
            self.running -= 1

    def fetch(self) -> FetchResult:
        """Fetch through the wrapped source, counted."""
        self._enter()
        try:
            return self._inner.fetch()
        finally:
            self._exit()

    async def afetch(self) -> FetchResult:
        """Fetch through the wrapped source's async path, counted."""
        self._enter()
        try:
            return await self._inner.afetch()
        finally:
            self._exit()

    def idle(self) -> bool:
        """Whether no fetch is running."""
        return self.running == 0

    def use(self, inner: URLKeySource) -> None:
        """Fetch through ``inner`` from now on (e.g. one with a shorter timeout)."""
        self._inner = inner

    def __repr__(self) -> str:
        return f"CountingSource({self._inner!r})"


class Harness:
    """A server, a counting source, a cache on a fake (or the real) clock, and a verifier.

    Args:
        keys: Keys the server publishes at the start.
        fetch_timeout: The source's timeout in seconds.
        real_clock: Use ``time.monotonic`` instead of a :class:`FakeClock`.
        cache_options: Passed to :class:`JWKSCache` (TTL, cooldowns, ...).
    """

    def __init__(
        self,
        keys: Iterable[SigningKey] = (),
        *,
        fetch_timeout: float = 5.0,
        real_clock: bool = False,
        **cache_options: Any,
    ) -> None:
        self.server = FaultyJWKSServer()
        self.server.publish(*keys)
        self.fake_clock = None if real_clock else FakeClock()
        monotonic: Callable[[], float] = self.fake_clock or time.monotonic
        self.source = CountingSource(
            URLKeySource(self.server.url, allow_insecure_loopback=True, timeout=fetch_timeout)
        )
        options: dict[str, Any] = {
            "ttl": TTL,
            "min_ttl": min(60.0, cache_options.get("ttl", TTL)),
            "refresh_cooldown": REFRESH_COOLDOWN,
            "failure_cooldown": FAILURE_COOLDOWN,
            "max_stale": MAX_STALE,
            "wait_timeout": BOUND,
        }
        options.update(cache_options)
        self.cache = JWKSCache(self.source, monotonic=monotonic, **options)
        self.verifier = Verifier(self.cache, clock=lambda: REFERENCE_NOW)
        self.tally = Tally()  # a scenario's verdicts

    @property
    def clock(self) -> FakeClock:
        """The fake clock (only without ``real_clock``)."""
        assert self.fake_clock is not None
        return self.fake_clock

    def advance(self, seconds: float) -> None:
        """Move the cache's fake clock."""
        self.clock.advance(seconds)

    def fetch_timeout(self, seconds: float) -> None:
        """Give the key source a new timeout (the slow endpoint's runs use a short one)."""
        self.source.use(
            URLKeySource(self.server.url, allow_insecure_loopback=True, timeout=seconds)
        )

    def close(self) -> None:
        """Stop the cache's refresher and the server; wait for fetches still running."""
        self.server.release()
        wait_until(self.source.idle)
        self.cache.close()
        self.server.stop()

    def __enter__(self) -> Harness:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


# ---- requests and verdicts -------------------------------------------------------------------


@dataclass(frozen=True)
class Request:
    """One request to verify, with the verdicts it may get.

    Attributes:
        kind: A label for the tally (``valid``, ``noise``, ``unknown_kid``...).
        method: The method.
        url: The URL as received.
        headers: Header field lines.
        body: The raw body.
        allowed: Verdicts allowed: ``"accepted"``, reason codes, or ``"rejected"`` for
            any rejection.
        candidates: ECDSA verifies this request may cost at most.
    """

    kind: str
    method: str
    url: str
    headers: tuple[tuple[str, str], ...]
    body: bytes
    allowed: frozenset[str]
    candidates: int = 0

    def allows(self, verdict: str) -> bool:
        """Whether ``verdict`` is an allowed outcome."""
        if verdict in self.allowed:
            return True
        return ANY_REJECT in self.allowed and verdict != ACCEPTED and ":" not in verdict

    def header(self, name: str) -> str:
        """The first value of header ``name``."""
        return next(v for n, v in self.headers if n == name)

    def with_header(self, name: str, value: str | None) -> tuple[tuple[str, str], ...]:
        """The header lines with ``name`` replaced (``None``: removed)."""
        lines = [(n, v) for n, v in self.headers if n != name]
        if value is not None:
            lines.append((name, value))
        return tuple(lines)


def valid_request(webhook: Any, kind: str = "valid") -> Request:
    """A signed webhook as a request that must verify."""
    return Request(
        kind,
        webhook.method,
        webhook.url,
        tuple(webhook.headers),
        webhook.body,
        frozenset({ACCEPTED}),
        candidates=2,
    )


def with_kid(request: Request, kid: str, kind: str, allowed: Iterable[str]) -> Request:
    """The request with its ``keyid`` replaced: the signature no longer matters."""
    si = re.sub(r';keyid="[^"]*"', f';keyid="{kid}"', request.header("signature-input"))
    return Request(
        kind,
        request.method,
        request.url,
        request.with_header("signature-input", si),
        request.body,
        frozenset(allowed),
    )


def unknown_kid_noise(template: Request, n: int, *, prefix: str = "noise") -> list[Request]:
    """``n`` requests naming distinct unknown kids: each must get ``unknown_key``."""
    return [
        with_kid(template, f"{prefix}-{secrets.token_hex(8)}", "noise", {"unknown_key"})
        for _ in range(n)
    ]


@functools.cache
def load_keys() -> dict[str, SigningKey]:
    """Three P-521 keys for rotation: ``a`` (current), ``b`` (next), ``c`` (later)."""
    return {name: generate_key(kid=f"load-key-{name}") for name in ("a", "b", "c")}


@functools.cache
def signed_pool(key: SigningKey, n: int = 48, url: str = WEBHOOK_URL) -> tuple[Request, ...]:
    """:func:`build_pool`, cached per key for the whole run."""
    return build_pool(key, n, url)


def build_pool(key: SigningKey, n: int = 48, url: str = WEBHOOK_URL) -> tuple[Request, ...]:
    """``n`` distinct webhooks signed with ``key`` (both dialects, DER and raw)."""
    pool = []
    for i in range(n):
        body = {"payload": [{"id": f"{key.key_id}-{i}", "type": "ORDER.FILLED", "n": i}]}
        webhook = sign_webhook(
            body,
            key=key,
            url=url,
            created=REFERENCE_NOW,
            dialect="rfc9421" if i % 2 else "upvest-v6",
            encoding="raw" if i % 3 == 0 else "der",
        )
        pool.append(valid_request(webhook))
    return tuple(pool)


def cycle(pool: Sequence[Request], n: int, kind: str | None = None) -> list[Request]:
    """``n`` requests taken round-robin from ``pool`` (relabelled with ``kind``)."""
    out = [pool[i % len(pool)] for i in range(n)]
    if kind is not None:
        out = [
            Request(kind, r.method, r.url, r.headers, r.body, r.allowed, r.candidates) for r in out
        ]
    return out


def interleave(*groups: Sequence[Request]) -> list[Request]:
    """Merge request lists evenly, so every kind is spread over the whole burst."""
    total = sum(len(g) for g in groups)
    keyed = [
        ((i + 0.5) / len(g) + k * 1e-9, r)
        for k, g in enumerate(groups)
        for i, r in enumerate(g)
        if g
    ]
    keyed.sort(key=lambda item: item[0])
    assert len(keyed) == total
    return [r for _, r in keyed]


@dataclass
class Tally:
    """Verdicts by request kind; escaped exceptions are verdicts ``error:<type>``."""

    verdicts: Counter[tuple[str, str]] = field(default_factory=Counter)
    disallowed: Counter[tuple[str, str]] = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)

    def add(self, request: Request, verdict: str, error: str | None = None) -> None:
        """Record one verdict."""
        self.verdicts[request.kind, verdict] += 1
        if not request.allows(verdict):
            self.disallowed[request.kind, verdict] += 1
        if error is not None and len(self.errors) < 10:
            self.errors.append(error)

    def merge(self, other: Tally) -> None:
        """Add another tally's counts to this one."""
        self.verdicts.update(other.verdicts)
        self.disallowed.update(other.disallowed)
        self.errors.extend(other.errors[: max(0, 10 - len(self.errors))])

    def count(self, kind: str | None = None, verdict: str | None = None) -> int:
        """How many requests (of ``kind``) got ``verdict`` (any when ``None``)."""
        return sum(
            n
            for (k, v), n in self.verdicts.items()
            if (kind is None or k == kind) and (verdict is None or v == verdict)
        )

    def by_kind(self) -> dict[str, dict[str, int]]:
        """``{kind: {verdict: count}}``."""
        out: dict[str, dict[str, int]] = {}
        for (kind, verdict), n in sorted(self.verdicts.items()):
            out.setdefault(kind, {})[verdict] = n
        return out

    def problems(self) -> list[str]:
        """False accepts, false rejects, wrong reasons and escaped exceptions."""
        out = [f"{n} x {kind} -> {verdict}" for (kind, verdict), n in self.disallowed.items()]
        return out + [f"escaped: {e}" for e in self.errors]


def _verdict(fn: Callable[[], object]) -> tuple[str, str | None]:
    try:
        fn()
    except VerificationError as e:
        return str(e.reason.value), None
    except Exception as e:
        return f"error:{type(e).__name__}", repr(e)
    return ACCEPTED, None


async def _averdict(coro: Any) -> tuple[str, str | None]:
    try:
        await coro
    except VerificationError as e:
        return str(e.reason.value), None
    except Exception as e:
        return f"error:{type(e).__name__}", repr(e)
    return ACCEPTED, None


@dataclass(frozen=True)
class Step:
    """A plan item run between requests, once the requests before it are submitted.

    Attributes:
        action: What to do (rotate keys, move the clock, change the server's mode).
        drain: First wait until every request submitted so far has its verdict.
        settle: Then wait until no fetch is running.
        wait: Then wait (bounded) until this holds, e.g. a failure has been recorded.
        keys_until: After the action, wait (bounded) until this holds for the cache's
            current key set.
    """

    action: Callable[[], None] = lambda: None
    drain: bool = False
    settle: bool = False
    wait: Callable[[], bool] | None = None
    keys_until: Callable[[KeySet], bool] | None = None


PlanItem = Request | Step


def run_load(
    verifier: Verifier,
    plan: Sequence[PlanItem],
    runtime: str,
    *,
    source: CountingSource | None = None,
    workers: int = 32,
    offload: bool = True,
) -> Tally:
    """Verify every request of ``plan`` concurrently and tally the verdicts.

    ``threads``: a pool of ``workers`` threads calls ``Verifier.verify``. ``asyncio``:
    one task per request on a new event loop calls ``Verifier.averify``, the check
    offloaded with ``asyncio.to_thread`` unless ``offload`` is false. With ``source``,
    returns only once no fetch is running (a detached refresh included).
    """
    if runtime == "threads":
        return _run_threads(verifier, plan, source, workers)
    if runtime == "asyncio":
        return asyncio.run(_run_tasks(verifier, plan, source, offload))
    raise ValueError(f"unknown runtime {runtime!r}")


def _require(ok: bool, what: str) -> None:
    if not ok:
        raise TimeoutError(f"{what} after {BOUND} s")


def _cache_of(verifier: Verifier) -> JWKSCache:
    keys = verifier.keys
    assert isinstance(keys, JWKSCache)
    return keys


def _holds(predicate: Callable[[KeySet], bool], cache: JWKSCache) -> bool:
    return predicate(cache.current())


def _run_threads(
    verifier: Verifier, plan: Sequence[PlanItem], source: CountingSource | None, workers: int
) -> Tally:
    tally = Tally()
    futures: list[tuple[Request, concurrent.futures.Future[tuple[str, str | None]]]] = []

    def one(r: Request) -> tuple[str, str | None]:
        return _verdict(lambda: verifier.verify(r.method, r.url, r.headers, r.body))

    def drained() -> None:
        _, pending = concurrent.futures.wait([f for _, f in futures], timeout=BOUND)
        _require(not pending, f"{len(pending)} verifications still running")

    def settled() -> None:
        if source is not None:
            _require(wait_until(source.idle), "a JWKS fetch still running")

    with concurrent.futures.ThreadPoolExecutor(workers, thread_name_prefix="load") as pool:
        try:
            for item in plan:
                if isinstance(item, Request):
                    futures.append((item, pool.submit(one, item)))
                    continue
                if item.drain:
                    drained()
                if item.settle:
                    settled()
                if item.wait is not None:
                    _require(wait_until(item.wait), "a step's condition still false")
                item.action()
                if item.keys_until is not None:
                    changed = functools.partial(_holds, item.keys_until, _cache_of(verifier))
                    _require(wait_until(changed), "key set unchanged")
            drained()
            settled()
        finally:
            for _, f in futures:
                f.cancel()
    for request, future in futures:
        tally.add(request, *future.result())
    return tally


async def _run_tasks(
    verifier: Verifier, plan: Sequence[PlanItem], source: CountingSource | None, offload: bool
) -> Tally:
    tally = Tally()
    run_sync = asyncio.to_thread if offload else None
    tasks: list[tuple[Request, asyncio.Task[tuple[str, str | None]]]] = []

    async def drained() -> None:
        if tasks:
            _, pending = await asyncio.wait([t for _, t in tasks], timeout=BOUND)
            _require(not pending, f"{len(pending)} verifications still running")

    async def settled() -> None:
        if source is not None:
            _require(await await_until(source.idle), "a JWKS fetch still running")

    try:
        for item in plan:
            if isinstance(item, Request):
                coro = verifier.averify(
                    item.method, item.url, item.headers, item.body, run_sync=run_sync
                )
                tasks.append((item, asyncio.ensure_future(_averdict(coro))))
                continue
            await asyncio.sleep(0)  # let the requests submitted so far start
            if item.drain:
                await drained()
            if item.settle:
                await settled()
            if item.wait is not None:
                _require(await await_until(item.wait), "a step's condition still false")
            item.action()
            if item.keys_until is not None:
                cache = _cache_of(verifier)
                deadline = time.monotonic() + BOUND
                while not item.keys_until(await cache.acurrent()):
                    _require(time.monotonic() < deadline, "key set unchanged")
                    await asyncio.sleep(0.002)
        await drained()
        await settled()
    finally:
        for _, t in tasks:
            t.cancel()
    for request, task in tasks:
        tally.add(request, *task.result())
    return tally


# ---- fault scenarios (threat-model.md §6 F4-F8, F10, F2; H4, H5) --------------------------------


@dataclass
class ScenarioResult:
    """What a fault scenario saw.

    Attributes:
        name: The scenario.
        runtime: ``threads`` or ``asyncio``.
        tally: The verdicts.
        fetches: Fetch attempts (counted by the source: refused connections included).
        http_requests: Requests the server received.
        min_fetches: Fetches the cache's rules require.
        max_fetches: Fetches the cache's rules allow (ordinary fetches plus one
            unknown-kid refresh per cooldown window in which unknown kids were seen).
        stats: The cache's counters.
        seconds: Wall time (reported by the benchmark, never asserted).
    """

    name: str
    runtime: str
    tally: Tally
    fetches: int
    http_requests: int
    min_fetches: int
    max_fetches: int
    stats: dict[str, int]
    seconds: float

    def problems(self) -> list[str]:
        """Everything that broke a rule; empty when the scenario held."""
        out = self.tally.problems()
        if not self.min_fetches <= self.fetches <= self.max_fetches:
            out.append(f"{self.fetches} fetches, expected {self.min_fetches}..{self.max_fetches}")
        if self.http_requests > self.fetches:
            out.append(f"{self.http_requests} HTTP requests for {self.fetches} fetches")
        return out

    def summary(self) -> str:
        """One line for the benchmark's report."""
        verdicts = "; ".join(
            f"{kind}: " + ", ".join(f"{v}={n}" for v, n in counts.items())
            for kind, counts in self.tally.by_kind().items()
        )
        return (
            f"{self.name:<14} {self.runtime:<8} fetches={self.fetches} "
            f"(allowed {self.min_fetches}..{self.max_fetches}, http={self.http_requests}) "
            f"{verdicts} [{self.seconds:.2f} s]"
        )


def _burst(valid: Sequence[Request], noise: Sequence[Request]) -> list[Request]:
    return interleave(valid, noise)


def _split(n: int, noise_every: int) -> tuple[int, int]:
    noise = n // noise_every if noise_every else 0
    return n - noise, noise


def _warm(h: Harness) -> None:
    h.cache.refresh()
    assert h.source.calls == 1


def _scenario_up_cold(h: Harness, runtime: str, n: int, noise_every: int) -> tuple[int, int]:
    """Cold cache, endpoint up: one fetch serves every request (F1)."""
    pool = signed_pool(load_keys()["a"])
    valid_n, noise_n = _split(n, noise_every)
    plan = _burst(cycle(pool, valid_n), unknown_kid_noise(pool[0], noise_n))
    h.tally = run_load(h.verifier, plan, runtime, source=h.source)
    # The cold fetch; unknown kids may add one refresh in this cooldown window.
    return 1, 1 + (1 if noise_n else 0)


def _scenario_stale_on_error(
    mode: str, h: Harness, runtime: str, n: int, noise_every: int
) -> tuple[int, int]:
    """Warm, then the endpoint fails after the TTL: stale keys serve every valid webhook (F4).

    Then the endpoint recovers; after the failure cooldown one refresh succeeds.
    """
    pool = signed_pool(load_keys()["a"])
    _warm(h)
    h.server.mode = mode
    h.advance(TTL + 1)
    valid_n, noise_n = _split(n - n // 5, noise_every)
    plan: list[PlanItem] = list(_burst(cycle(pool, valid_n), unknown_kid_noise(pool[0], noise_n)))

    def recover() -> None:
        h.server.mode = "up"
        h.advance(FAILURE_COOLDOWN + 1)

    # Once the refresh has failed, still failing (failure cooldown): the stale set serves.
    plan.append(Step(drain=True, wait=lambda: h.cache.stats.failures >= 1))
    plan.extend(cycle(pool, n // 10))
    plan.append(Step(recover, drain=True))
    plan.extend(cycle(pool, n // 10))
    h.tally = run_load(h.verifier, plan, runtime, source=h.source)
    # Warm, the failed refresh, the successful one; unknown kids may add one refresh.
    return 3, 3 + (1 if noise_n else 0)


def _scenario_cold_down(
    mode: str, h: Harness, runtime: str, n: int, noise_every: int
) -> tuple[int, int]:
    """Cold cache, endpoint failing: ``keys_unavailable`` for all after one attempt (F5, K6)."""
    if mode == "slow":
        h.fetch_timeout(SLOW_FETCH_TIMEOUT)
    h.server.mode = mode
    plan = [
        Request(r.kind, r.method, r.url, r.headers, r.body, frozenset({"keys_unavailable"}))
        for r in cycle(signed_pool(load_keys()["a"]), n)
    ]
    h.tally = run_load(h.verifier, plan, runtime, source=h.source)
    return 1, 1


def _scenario_garbage_warm(h: Harness, runtime: str, n: int, noise_every: int) -> tuple[int, int]:
    """Warm, then another garbage document at every refresh: stale keys keep serving (F8)."""
    pool = signed_pool(load_keys()["a"])
    _warm(h)
    h.server.mode = "garbage"
    per_phase = max(1, n // len(GARBAGE_BODIES))
    plan: list[PlanItem] = []
    elapsed, windows, last_window = 0.0, 0, -1
    for i, shape in enumerate(GARBAGE_BODIES):
        step = TTL + 1 if i == 0 else FAILURE_COOLDOWN + 1
        elapsed += step

        def serve(shape: bytes = shape, step: float = step) -> None:
            h.server.garbage = shape
            h.advance(step)

        # Each phase starts once the previous phase's refresh has failed.
        plan.append(Step(serve, drain=True, wait=lambda i=i: h.cache.stats.failures >= i))
        valid_n, noise_n = _split(per_phase, noise_every)
        plan.extend(_burst(cycle(pool, valid_n), unknown_kid_noise(pool[0], noise_n)))
        window = int(elapsed // REFRESH_COOLDOWN)
        if noise_n and window != last_window:
            windows, last_window = windows + 1, window
    h.tally = run_load(h.verifier, plan, runtime, source=h.source)
    # Warm, then one failed refresh per document; unknown kids may add one refresh per
    # cooldown window they were seen in.
    return 1 + len(GARBAGE_BODIES), 1 + len(GARBAGE_BODIES) + windows


def _scenario_slow_warm(h: Harness, runtime: str, n: int, noise_every: int) -> tuple[int, int]:
    """Warm, then the endpoint stalls past the source's timeout: nobody waits for it (F6)."""
    pool = signed_pool(load_keys()["a"])
    _warm(h)
    h.fetch_timeout(SLOW_FETCH_TIMEOUT)
    h.server.mode = "slow"
    h.advance(TTL + 1)
    valid_n, noise_n = _split(n - n // 10, noise_every)
    plan: list[PlanItem] = list(_burst(cycle(pool, valid_n), unknown_kid_noise(pool[0], noise_n)))
    # Once the refresh has timed out, still stalling: the stale set serves.
    plan.append(Step(drain=True, wait=lambda: h.cache.stats.failures >= 1))
    plan.extend(cycle(pool, n // 10))
    h.tally = run_load(h.verifier, plan, runtime, source=h.source)
    return 2, 2 + (1 if noise_n else 0)


def _scenario_rotating(h: Harness, runtime: str, n: int, noise_every: int) -> tuple[int, int]:
    """Key B published, then used, then key A removed, all during the load (F2, F10, H5).

    A webhook signed with B is sent only once B has been published for longer than
    the refresh cooldown; A stops being used before it is removed, and once its
    removal has been fetched it must get ``unknown_key`` (removal is authoritative).
    """
    keys = load_keys()
    a_pool, b_pool = signed_pool(keys["a"]), signed_pool(keys["b"])
    _warm(h)
    quarter = n // 4
    valid_n, noise_n = _split(quarter, noise_every)
    plan: list[PlanItem] = list(
        _burst(cycle(a_pool, valid_n), unknown_kid_noise(a_pool[0], noise_n))
    )

    def publish_b() -> None:
        h.server.publish(keys["a"], keys["b"])
        h.advance(REFRESH_COOLDOWN + 1)

    plan.append(Step(publish_b))
    valid_n, noise_n = _split(2 * quarter, noise_every)
    both = interleave(cycle(a_pool, valid_n // 2), cycle(b_pool, valid_n - valid_n // 2))
    plan.extend(_burst(both, unknown_kid_noise(b_pool[0], noise_n)))

    def remove_a() -> None:
        h.server.publish(keys["b"])
        h.advance(TTL + 1)

    plan.append(Step(remove_a, drain=True, settle=True))
    valid_n, noise_n = _split(quarter, noise_every)
    plan.extend(_burst(cycle(b_pool, valid_n), unknown_kid_noise(b_pool[0], noise_n)))
    plan.append(Step(drain=True, settle=True, keys_until=lambda ks: keys["a"].key_id not in ks))
    plan.extend(
        Request("revoked", r.method, r.url, r.headers, r.body, frozenset({"unknown_key"}))
        for r in cycle(a_pool, 25)
    )
    h.tally = run_load(h.verifier, plan, runtime, source=h.source)
    # Warm, the refresh for B, the TTL refresh that drops A; unknown kids (noise, then
    # the revoked A) may add one refresh in each of the three cooldown windows.
    return 3, 6


FAULT_SCENARIOS: dict[str, Callable[[Harness, str, int, int], tuple[int, int]]] = {
    "up-cold": _scenario_up_cold,
    "refused-warm": functools.partial(_scenario_stale_on_error, "refused"),
    "dropped-warm": functools.partial(_scenario_stale_on_error, "dropped"),
    "error-warm": functools.partial(_scenario_stale_on_error, "error"),
    "slow-warm": _scenario_slow_warm,
    "garbage-warm": _scenario_garbage_warm,
    "rotating": _scenario_rotating,
    "refused-cold": functools.partial(_scenario_cold_down, "refused"),
    "error-cold": functools.partial(_scenario_cold_down, "error"),
    "slow-cold": functools.partial(_scenario_cold_down, "slow"),
    "garbage-cold": functools.partial(_scenario_cold_down, "garbage"),
}
"""Scenario name -> runner returning (min, max) fetches its rules allow."""


def run_fault_scenario(
    name: str, runtime: str, *, n: int = 500, noise_every: int = 10
) -> ScenarioResult:
    """Run one of :data:`FAULT_SCENARIOS` with ``n`` concurrent verifications.

    Every ``noise_every``-th request names an unknown kid (0: none). A slow endpoint
    stalls beyond the source's timeout (then :data:`SLOW_FETCH_TIMEOUT`, else 5 s).
    """
    keys = load_keys()
    started = time.perf_counter()
    with quiet_library_logs(), Harness([keys["a"]]) as h:
        h.server.slow_seconds = 4 * SLOW_FETCH_TIMEOUT
        low, high = FAULT_SCENARIOS[name](h, runtime, n, noise_every)
        result = ScenarioResult(
            name=name,
            runtime=runtime,
            tally=h.tally,
            fetches=h.source.calls,
            http_requests=h.server.requests,
            min_fetches=low,
            max_fetches=high,
            stats=h.cache.stats.as_dict(),
            seconds=0.0,
        )
    result.seconds = time.perf_counter() - started
    return result


# ---- hostile requests (A11, A15, C15, F3, H6) ------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _random_candidate_signature(rng: random.Random) -> bytes:
    # Raw r||s with 0 < r, s < n: decodes, so only ECDSA can refuse it.
    r = rng.randrange(1, P521_ORDER)
    s = rng.randrange(1, P521_ORDER)
    return r.to_bytes(66, "big") + s.to_bytes(66, "big")


def _params(si: str) -> str:
    return si[si.index(")") + 1 :]


def _replace_param(si: str, name: str, value: str) -> str:
    return re.sub(rf";{name}=(\"[^\"]*\"|[0-9]+)", f";{name}={value}", si)


_JUNK = 'abcdefghijklmnopqrstuvwxyz0123456789@;="(),:*-_ ./?%&+'


_JUNK_TABLE = bytes(ord(_JUNK[b % len(_JUNK)]) for b in range(256))


def _junk(rng: random.Random, n: int) -> str:
    return rng.randbytes(n).translate(_JUNK_TABLE).decode("ascii")


HOSTILE_KINDS = (
    "unknown_kid",
    "garbage_input",
    "garbage_signature",
    "expired",
    "future",
    "digest_mismatch",
    "missing_component",
    "bad_alg",
    "label_mismatch",
    "missing_signature",
    "oversized",
    "candidate",
    "many_labels",
)
"""Hostile request kinds; ``candidate`` and ``many_labels`` carry well-formed signatures."""

CHEAP_HOSTILE_KINDS = tuple(k for k in HOSTILE_KINDS if k not in ("candidate", "many_labels"))
"""The kinds that never reach ECDSA."""


def hostile_requests(
    n: int,
    *,
    key: SigningKey,
    seed: int = 0,
    kinds: Sequence[str] = HOSTILE_KINDS,
    weights: Sequence[float] | None = None,
    huge_url: int = 0,
    policy: Policy | None = None,
) -> Iterator[Request]:
    """Yield ``n`` distinct hostile requests (lazily: huge URLs are never all in memory).

    Each carries valid-looking labels and, but for ``unknown_kid``, the real ``keyid``
    of ``key``. ``huge_url`` > 0 gives each request its own URL of that many characters
    (and an unknown kid). ``candidates`` is the most ECDSA verifies the request may
    cost: 0 for every kind but ``candidate`` (one well-formed signature) and
    ``many_labels`` (20, of which the policy evaluates ``max_signatures``), each tried
    in at most two base layouts.
    """
    policy = policy or Policy()
    layouts = 2 if policy.dialect == "auto" else 1
    rng = random.Random(seed)
    templates = build_pool(key, 16)
    population = list(kinds)
    for i in range(n):
        (kind,) = rng.choices(population, weights=weights)
        t = templates[i % len(templates)]
        yield _hostile(kind, t, rng, i, layouts, policy.max_signatures, huge_url)


def _hostile(
    kind: str, t: Request, rng: random.Random, i: int, layouts: int, cap: int, huge_url: int
) -> Request:
    si = _replace_param(t.header("signature-input"), "nonce", f'"h{i}-{rng.getrandbits(64):x}"')
    sig = t.header("signature")
    url, body = t.url, t.body
    candidates = 0
    allowed: set[str] = {ANY_REJECT}
    headers = t.with_header("signature-input", si)
    if huge_url:
        kind = "huge_url"
        # Its own path of huge_url to 4 x huge_url characters (no query: a query
        # not covered would be refused before the key lookup).
        size = rng.randint(huge_url, 4 * huge_url)
        url = f"{WEBHOOK_URL}/{i}/{'x' * max(0, size - len(WEBHOOK_URL) - 12)}"
        si = re.sub(r';keyid="[^"]*"', f';keyid="u{i}-{rng.getrandbits(48):x}"', si)
        headers = t.with_header("signature-input", si)
        # unknown_key, or malformed_header where the covered @path passes the cap on
        # the total size of covered values (K9).
        allowed = {"unknown_key", "malformed_header"}
    elif kind == "unknown_kid":
        kid = f"{rng.getrandbits(128):032x}"[: rng.randint(8, 32)] + f"-{i}"
        headers = t.with_header("signature-input", re.sub(r';keyid="[^"]*"', f';keyid="{kid}"', si))
        allowed = {"unknown_key"}
    elif kind == "garbage_input":
        headers = t.with_header("signature-input", "sig1=" + _junk(rng, rng.randint(20, 3000)))
    elif kind == "garbage_signature":
        length = rng.choice([0, 1, 7, 64, 65, 131, 133, 139, 200])
        headers = tuple(
            (n, v if n != "signature" else f"sig1=:{_b64(rng.randbytes(length))}:")
            for n, v in headers
        )
        allowed = {"bad_signature", "malformed_header"}
    elif kind == "expired":
        si2 = _replace_param(si, "created", str(REFERENCE_NOW - 100_000 - i))
        si2 = _replace_param(si2, "expires", str(REFERENCE_NOW - 99_000 - i))
        headers = t.with_header("signature-input", si2)
        allowed = {"expired"}
    elif kind == "future":
        si2 = _replace_param(si, "created", str(REFERENCE_NOW + 3600 + i))
        si2 = _replace_param(si2, "expires", str(REFERENCE_NOW + 3660 + i))
        headers = t.with_header("signature-input", si2)
        allowed = {"created_in_future"}
    elif kind == "digest_mismatch":
        body = t.body[:-1] + b', "x": ' + str(i).encode() + b"}"
        allowed = {"digest_mismatch"}
    elif kind == "missing_component":
        headers = t.with_header("signature-input", 'sig1=("@method")' + _params(si))
        allowed = {"missing_component"}
    elif kind == "bad_alg":
        headers = t.with_header("signature-input", si + ';alg="hmac-sha256"')
        allowed = {"unsupported_algorithm"}
    elif kind == "label_mismatch":
        label = f"x{rng.getrandbits(32):x}"
        headers = tuple(
            (n, v if n != "signature" else label + v[v.index("=") :]) for n, v in headers
        )
        allowed = {"label_mismatch"}
    elif kind == "missing_signature":
        headers = tuple((n, v) for n, v in headers if n != "signature")
        allowed = {"missing_signature"}
    elif kind == "oversized":
        # A parameter beyond the header size cap (A11): refused before any parsing.
        tag = "t" * (20_000 + i % 97)
        headers = t.with_header("signature-input", f'{si};tag="{tag}"')
        allowed = {"malformed_header"}
    elif kind == "candidate":
        sig = f"sig1=:{_b64(_random_candidate_signature(rng))}:"
        headers = tuple((n, v if n != "signature" else sig) for n, v in headers)
        allowed = {"bad_signature"}
        candidates = layouts
    elif kind == "many_labels":
        head = si[: si.index(")") + 1].split("=", 1)[1]
        inputs, sigs = [], []
        for label_no in range(1, 21):
            params = _replace_param(_params(si), "nonce", f'"m{i}-{label_no}"')
            inputs.append(f"sig{label_no}={head}{params}")
            sigs.append(f"sig{label_no}=:{_b64(_random_candidate_signature(rng))}:")
        headers = tuple(
            (
                n,
                ", ".join(inputs)
                if n == "signature-input"
                else ", ".join(sigs)
                if n == "signature"
                else v,
            )
            for n, v in headers
        )
        allowed = {"bad_signature"}
        candidates = min(20, cap) * layouts
    else:
        raise ValueError(f"unknown hostile kind {kind!r}")
    return Request(kind, t.method, url, headers, body, frozenset(allowed), candidates)


# ---- the verify primitive ----------------------------------------------------------------------


@dataclass
class PrimitiveCalls:
    """Calls of the ECDSA verify primitive: how many, and from which threads."""

    count: int = 0
    thread_ids: Counter[int] = field(default_factory=Counter)
    order: list[int] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    sequence: Iterator[int] | None = None

    def record(self) -> None:
        """Count one call from the current thread."""
        with self.lock:
            self.count += 1
            self.thread_ids[threading.get_ident()] += 1
            if self.sequence is not None:
                self.order.append(next(self.sequence))


@contextlib.contextmanager
def counting_verify_primitive(
    result: bool | None = None, sequence: Iterator[int] | None = None
) -> Iterator[PrimitiveCalls]:
    """Count every call of the library's ECDSA verify primitive while the block runs.

    ``result=None`` calls the real primitive; ``True``/``False`` stub it out (no ECDSA:
    for memory runs that must be fast). Every ``upvest_verify`` module holding the
    primitive is patched, so none is missed; if none holds it, this fails loudly.
    """
    from upvest_verify import _crypto

    original = _crypto.verify_signature
    holders = [
        module
        for name, module in list(sys.modules.items())
        if (name == "upvest_verify" or name.startswith("upvest_verify."))
        and getattr(module, "verify_signature", None) is original
    ]
    if len([m for m in holders if m is not _crypto]) == 0:
        raise RuntimeError("no upvest_verify module calls _crypto.verify_signature")
    calls = PrimitiveCalls(sequence=sequence)

    def counting(key: Any, signature: bytes, message: bytes) -> bool:
        calls.record()
        if result is None:
            return original(key, signature, message)
        return result

    for module in holders:
        module.verify_signature = counting  # type: ignore[attr-defined]
    try:
        yield calls
    finally:
        for module in holders:
            module.verify_signature = original  # type: ignore[attr-defined]


# ---- probes ------------------------------------------------------------------------------------


@contextlib.contextmanager
def quiet_library_logs() -> Iterator[None]:
    """Keep the library's log records (fetch failures) out of the test runner's capture.

    The records are still created and handled (by a ``NullHandler``), so logging stays
    part of what is measured; only their retention by the runner is avoided.
    """
    logger = logging.getLogger("upvest_verify")
    handler = logging.NullHandler()
    propagate = logger.propagate
    logger.addHandler(handler)
    logger.propagate = False
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.propagate = propagate


def rss_kib() -> int | None:
    """Resident set size from ``/proc/self/status`` (KiB), or ``None`` elsewhere."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


class MemoryProbe:
    """Traced memory growth between a mark (after warm-up) and the end.

    Use as a context manager: tracing starts on entry (unless already on) and stops on
    exit. :meth:`mark` takes the baseline after a full garbage collection;
    :meth:`growth` the traced bytes added since.
    """

    def __init__(self) -> None:
        self._started = False
        self.baseline = 0
        self.rss_baseline: int | None = None
        self.samples: list[tuple[str, int, int | None]] = []

    def __enter__(self) -> MemoryProbe:
        if not tracemalloc.is_tracing():
            tracemalloc.start(1)
            self._started = True
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._started:
            tracemalloc.stop()

    @staticmethod
    def traced() -> int:
        """Bytes traced now, after a full collection."""
        gc.collect()
        return tracemalloc.get_traced_memory()[0]

    def mark(self) -> None:
        """Take the baseline."""
        self.baseline = self.traced()
        self.rss_baseline = rss_kib()
        self.samples.append(("mark", self.baseline, self.rss_baseline))

    def sample(self, label: str) -> int:
        """Record the growth since the baseline under ``label``; return it."""
        growth = self.traced() - self.baseline
        self.samples.append((label, growth, rss_kib()))
        return growth

    def growth(self) -> int:
        """Traced bytes added since the baseline."""
        return self.traced() - self.baseline

    def rss_growth_kib(self) -> int | None:
        """RSS added since the baseline (KiB), if readable."""
        now = rss_kib()
        if now is None or self.rss_baseline is None:
            return None
        return now - self.rss_baseline


class LagProbe:
    """Event-loop lag: a task sleeping ``interval`` seconds and recording the overshoot.

    ``sequence`` (shared with :func:`counting_verify_primitive`) orders its ticks among
    the primitive's calls, so a test can show the loop ran while verifications did.
    """

    def __init__(self, interval: float = 0.001, sequence: Iterator[int] | None = None) -> None:
        self.interval = interval
        self.lags: list[float] = []
        self.ticks: list[int] = []
        self.thread_id = 0
        self._sequence = sequence
        self._before = time.perf_counter()
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        self.thread_id = threading.get_ident()
        while True:
            self._before = time.perf_counter()
            await asyncio.sleep(self.interval)
            self.lags.append(max(0.0, time.perf_counter() - self._before - self.interval))
            if self._sequence is not None:
                self.ticks.append(next(self._sequence))

    def start(self) -> None:
        """Start probing on the running loop."""
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        """Stop probing; a tick still pending counts with the lag it has so far."""
        assert self._task is not None
        pending = time.perf_counter() - self._before - self.interval
        if pending > 0:
            self.lags.append(pending)
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task

    def percentile(self, q: float) -> float:
        """The ``q``-quantile (0..1) of the lags in seconds."""
        if not self.lags:
            return math.nan
        ordered = sorted(self.lags)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


# ---- memory runs (task: memory stays flat) ---------------------------------------------------


def distinct_valid_requests(n: int, *, key: SigningKey, start: int = 0) -> Iterator[Request]:
    """``n`` distinct webhooks (own nonce, body and digest) for a stubbed primitive.

    Only the signature is stale, which a stubbed primitive never looks at; everything
    else (parameters, digest, lengths) is what a sender would write for that body.
    """
    templates = signed_pool(key)
    for i in range(start, start + n):
        t = templates[i % len(templates)]
        body = json.dumps(
            {"payload": [{"id": f"m-{i}", "type": "POSITION.UPDATED", "n": i}]},
            separators=(",", ":"),
        ).encode()
        si = _replace_param(t.header("signature-input"), "nonce", f'"n{i:x}"')
        lines = []
        for name, value in t.headers:
            if name == "signature-input":
                value = si
            elif name == "digest":
                value = "SHA-256=" + _b64(hashlib.sha256(body).digest())
            elif name == "content-digest":
                value = f"sha-512=:{_b64(hashlib.sha512(body).digest())}:"
            elif name == "content-length":
                value = str(len(body))
            lines.append((name, value))
        yield Request("valid", t.method, t.url, tuple(lines), body, frozenset({ACCEPTED}), 2)


def verify_stream(verifier: Verifier, requests: Iterable[Request], tally: Tally) -> None:
    """Verify requests one after another (``Verifier.verify``) into ``tally``."""
    for r in requests:
        tally.add(r, *_verdict(lambda r=r: verifier.verify(r.method, r.url, r.headers, r.body)))


# ---- the soak (H8) -----------------------------------------------------------------------------

# One cycle of the soak schedule, in segments: the endpoint's mode, and the rotation
# event at the segment's start. A new key is published at segment 0, used from segment
# 3 (after more than TTL + refresh cooldown with the endpoint up), and the old key is
# removed at segment 5 (after every webhook signed with it has its verdict).
SOAK_SCHEDULE: tuple[tuple[str, str], ...] = (
    ("up", "publish-next"),
    ("up", ""),
    ("up", ""),
    ("up", "use-next"),
    ("error", ""),
    ("up", "remove-old"),
    ("garbage", ""),
    ("slow", ""),
    ("refused", ""),
    ("dropped", ""),
)


@dataclass
class SoakResult:
    """What a soak saw: verdicts, fetches, memory and its bound on fetches."""

    tally: Tally
    rounds: int
    simulated_seconds: float
    fetches: int
    http_requests: int
    max_fetches: int
    stats: dict[str, int]
    growth: int
    rss_growth_kib: int | None
    samples: list[tuple[str, int, int | None]]
    rotations: int

    def problems(self) -> list[str]:
        """Rule violations: false accepts or rejects, escaped exceptions, too many fetches."""
        out = self.tally.problems()
        if self.fetches > self.max_fetches:
            out.append(f"{self.fetches} fetches, at most {self.max_fetches} allowed")
        return out


def run_soak(
    *,
    rounds: int | None = None,
    seconds: float | None = None,
    segment: float = 30.0,
    round_step: float = 5.0,
    real_clock: bool = False,
    burst: int = 12,
    workers: int = 8,
    warmup_rounds: int | None = None,
    on_sample: Callable[[int, float, int, int | None], None] | None = None,
    sample_every: float = 30.0,
    fetch_timeout: float = 0.5,
) -> SoakResult:
    """Run the H8 schedule until ``rounds`` rounds or ``seconds`` of wall time pass.

    Each round sends a burst of valid webhooks, unknown-kid noise and hostile requests
    (alternately through threads and asyncio tasks on a new event loop). On a fake
    clock each round moves it by ``round_step`` seconds; with ``real_clock`` the cache
    runs on ``time.monotonic`` and the schedule on elapsed time, with the cache's
    settings scaled to ``segment`` (a segment is one refresh cooldown; TTL two).
    Memory is traced from the end of the first cycle (or ``warmup_rounds``). The key
    source times out after ``fetch_timeout`` seconds while the endpoint stalls, after
    5 s otherwise.
    """
    if rounds is None and seconds is None:
        raise ValueError("give rounds or seconds")
    ttl, cooldown, failure_cooldown = 2 * segment, segment, segment / 3
    keys = [generate_key(kid="soak-0")]
    tally = Tally()
    with (
        quiet_library_logs(),
        MemoryProbe() as memory,
        Harness(
            keys[:1],
            real_clock=real_clock,
            ttl=ttl,
            min_ttl=min(ttl, 1.0),
            refresh_cooldown=cooldown,
            failure_cooldown=failure_cooldown,
        ) as h,
    ):
        h.server.slow_seconds = 2 * fetch_timeout + 0.5
        for _ in range(3):  # start warm: a cold start under a failing endpoint is F5's case
            with contextlib.suppress(VerificationError):
                h.cache.refresh()
                break
        signing = keys[0]  # the key webhooks are signed with
        published = [keys[0]]
        rotations = 0
        cycle_len = segment * len(SOAK_SCHEDULE)
        start_wall = time.monotonic()
        start_clock = (h.fake_clock or time.monotonic)()
        last_segment = -1
        warmup = warmup_rounds
        next_sample = sample_every
        # Per signing key: its webhooks and a stream of hostile requests naming it. A
        # retired key's entries are dropped, so the harness itself keeps nothing.
        pools: dict[str, tuple[Request, ...]] = {}
        streams: dict[str, Iterator[Request]] = {}
        round_no = 0
        while True:
            wall = time.monotonic() - start_wall
            if rounds is not None and round_no >= rounds:
                break
            if seconds is not None and wall >= seconds:
                break
            if wall > (seconds or 0) + 3600:
                break  # a hard stop, whatever the arguments
            t = (h.fake_clock or time.monotonic)() - start_clock
            seg_no = int(t // segment)
            mode, event = SOAK_SCHEDULE[seg_no % len(SOAK_SCHEDULE)]
            if seg_no != last_segment:
                last_segment = seg_no
                if event == "publish-next":
                    new_key = generate_key(kid=f"soak-{rotations + 1}")
                    published = [published[-1], new_key]
                    h.server.publish(*published)
                elif event == "use-next" and len(published) == 2:
                    signing = published[1]
                elif event == "remove-old" and len(published) == 2:
                    old_kid = published[0].key_id
                    pools.pop(old_kid, None)
                    streams.pop(old_kid, None)
                    published = [published[1]]
                    h.server.publish(*published)
                    rotations += 1
                # A short timeout only while the endpoint stalls: elsewhere a fetch slowed
                # by a busy machine must not turn into a fault the schedule did not plan.
                h.fetch_timeout(fetch_timeout if mode == "slow" else 5.0)
                h.server.mode = mode
            if warmup is None and t >= cycle_len:
                warmup = round_no
            if warmup is not None and round_no == warmup:
                memory.mark()
            kid = signing.key_id
            if kid not in pools:
                pools[kid] = build_pool(signing)
                streams[kid] = hostile_requests(
                    sys.maxsize, key=signing, seed=rotations, kinds=CHEAP_HOSTILE_KINDS
                )
            pool, stream = pools[kid], streams[kid]
            valid_n = burst - burst // 3
            requests = interleave(
                cycle(pool, valid_n),
                unknown_kid_noise(pool[0], burst // 6, prefix=f"r{round_no}"),
                [next(stream) for _ in range(burst // 3 - burst // 6)],
            )
            runtime = "threads" if round_no % 2 == 0 else "asyncio"
            # Rounds do not wait for a detached refresh: an asyncio round's event loop may
            # close with its refresh still running (cancelled), as a restarting app's would.
            tally.merge(run_load(h.verifier, requests, runtime, workers=workers))
            round_no += 1
            if h.fake_clock is not None:
                h.advance(round_step)
            if on_sample is not None and memory.baseline and wall >= next_sample:
                next_sample += sample_every
                on_sample(round_no, wall, memory.growth(), memory.rss_growth_kib())
            del requests, pool, stream
        wait_until(h.source.idle)
        simulated = (h.fake_clock or time.monotonic)() - start_clock
        if not memory.baseline:
            memory.mark()
        growth = memory.growth()
        rss_growth = memory.rss_growth_kib()
        # Fetches the rules allow: one ordinary fetch per TTL or per failure cooldown
        # (whichever is shorter), one unknown-kid refresh per refresh cooldown, and the
        # first fetch.
        max_fetches = 1 + math.ceil(simulated / failure_cooldown) + math.ceil(simulated / cooldown)
        return SoakResult(
            tally=tally,
            rounds=round_no,
            simulated_seconds=simulated,
            fetches=h.source.calls,
            http_requests=h.server.requests,
            max_fetches=max_fetches,
            stats=h.cache.stats.as_dict(),
            growth=growth,
            rss_growth_kib=rss_growth,
            samples=memory.samples,
            rotations=rotations,
        )


__all__ = [
    "ACCEPTED",
    "BOUND",
    "CHEAP_HOSTILE_KINDS",
    "FAILURE_COOLDOWN",
    "FAULT_SCENARIOS",
    "GARBAGE_BODIES",
    "HOSTILE_KINDS",
    "REFERENCE_NOW",
    "REFRESH_COOLDOWN",
    "TTL",
    "WEBHOOK_URL",
    "CountingSource",
    "FakeClock",
    "FaultyJWKSServer",
    "Harness",
    "LagProbe",
    "MemoryProbe",
    "PrimitiveCalls",
    "Request",
    "ScenarioResult",
    "SoakResult",
    "Step",
    "Tally",
    "await_until",
    "build_pool",
    "counting_verify_primitive",
    "cycle",
    "distinct_valid_requests",
    "hostile_requests",
    "interleave",
    "load_keys",
    "quiet_library_logs",
    "rss_kib",
    "run_fault_scenario",
    "run_load",
    "run_soak",
    "signed_pool",
    "unknown_kid_noise",
    "valid_request",
    "verify_stream",
    "wait_until",
    "with_kid",
]
