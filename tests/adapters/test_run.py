"""Running the check from async code and the shared ASGI wiring (``adapters/_run.py``)."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import importlib.util
import subprocess
import sys
import threading
from collections.abc import Callable
from typing import Any

import pytest

from upvest_verify import (
    ConfigurationError,
    KeySet,
    Reason,
    VerificationError,
    VerifiedWebhook,
    Verifier,
)
from upvest_verify.adapters._body import IncompleteBody
from upvest_verify.adapters._run import (
    SCOPE_KEY,
    STATE_KEY,
    ASGIVerification,
    Offloader,
    store_result,
    verify_async,
)
from upvest_verify.testing import SignedWebhook, generate_key, make_key_set, sign_webhook

needs_anyio = pytest.mark.skipif(
    importlib.util.find_spec("anyio") is None,
    reason="anyio is not installed (the starlette/fastapi extras bring it)",
)

KEY = generate_key()
URL = "http://app.internal/webhooks/upvest"


class SyncOnlyProvider:
    """A key provider with only the synchronous interface (may block on I/O)."""

    def __init__(self, keys: KeySet) -> None:
        self.keys = keys
        self.threads: list[int] = []

    def current(self) -> KeySet:
        self.threads.append(threading.get_ident())
        return self.keys

    def refresh_for(self, kid: str) -> KeySet | None:
        return None


def signed() -> SignedWebhook:
    """A fresh valid webhook for URL."""
    return sign_webhook({"payload": []}, key=KEY, url=URL)


def scope_for(webhook: SignedWebhook) -> dict[str, Any]:
    """An ASGI scope carrying ``webhook``'s method, target and header lines."""
    return {
        "type": "http",
        "scheme": "http",
        "method": webhook.method,
        "path": webhook.path,
        "raw_path": webhook.path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [(k.lower().encode(), v.encode()) for k, v in webhook.headers],
        "client": ("10.1.2.3", 50000),
        "server": ("10.0.0.9", 80),
    }


def counting_runner(seen: list[str]) -> Callable[..., Any]:
    """A run_sync that records that it was used and runs the call inline."""

    async def run_sync(check: Callable[[], VerifiedWebhook]) -> VerifiedWebhook:
        seen.append("offloaded")
        return check()

    return run_sync


def test_verify_async_with_a_key_set() -> None:
    """A key set verifies through averify; the result carries the key id."""
    webhook = signed()
    verifier = Verifier(make_key_set(KEY))
    result = asyncio.run(
        verify_async(verifier, "POST", URL, webhook.headers, webhook.body, run_sync=None)
    )
    assert result.key_id == KEY.kid


def test_verify_async_offloads_a_sync_only_provider() -> None:
    """A provider without acurrent runs the whole verify through run_sync (its I/O too)."""
    webhook = signed()
    provider = SyncOnlyProvider(make_key_set(KEY))
    seen: list[str] = []
    verifier = Verifier(provider)
    result = asyncio.run(
        verify_async(verifier, "POST", URL, webhook.headers, webhook.body, counting_runner(seen))
    )
    assert result.key_id == KEY.kid
    assert seen == ["offloaded"]
    inline = asyncio.run(
        verify_async(verifier, "POST", URL, webhook.headers, webhook.body, run_sync=None)
    )
    assert inline.key_id == KEY.kid


def thread_id() -> Any:
    """The calling thread's id (stands in for a check)."""
    return threading.get_ident()


def test_offloader_runs_in_a_worker_thread_per_loop() -> None:
    """The check runs off the event loop's thread; a second event loop works too (H7)."""
    offloader = Offloader(2)

    async def run() -> tuple[int, Any]:
        return threading.get_ident(), await offloader(thread_id)

    for _ in range(2):  # a second loop is served by the same threads
        loop_thread, worker = asyncio.run(run())
        assert worker != loop_thread


def test_offloader_threads_are_shared_per_size_and_bounded() -> None:
    """Offloaders of one size share one pool; it never runs more threads than its size."""
    assert Offloader(3).max_threads == 3
    assert Offloader(None).max_threads is None
    first, second = Offloader(3), Offloader(3)
    barrier = threading.Barrier(3, timeout=10)
    running = 0
    most = 0
    lock = threading.Lock()

    def check() -> Any:
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
        with contextlib.suppress(threading.BrokenBarrierError):
            barrier.wait()  # the first three meet: all three threads run at once
        with lock:
            running -= 1
        return threading.get_ident()

    async def run() -> set[Any]:
        calls = [first(check) if i % 2 else second(check) for i in range(12)]
        return set(await asyncio.gather(*calls))

    workers = asyncio.run(run())
    assert most == 3
    assert len(workers) == 3
    names = {t.name for t in threading.enumerate() if t.name.startswith("upvest-verify-3-")}
    assert names == {"upvest-verify-3-1", "upvest-verify-3-2", "upvest-verify-3-3"}


def test_offloader_start_starts_every_thread() -> None:
    """start() starts the whole pool before the first check (for start-up)."""
    Offloader(5).start()
    names = {t.name for t in threading.enumerate() if t.name.startswith("upvest-verify-5-")}
    assert len(names) == 5


class Boom(Exception):
    """An error raised inside a check."""


def test_offloader_raises_the_checks_error_and_keeps_serving() -> None:
    """An exception in the check is raised in the caller; the worker serves the next one."""
    offloader = Offloader(1)

    def fail() -> Any:
        raise Boom("inside")

    def stop() -> Any:
        raise StopIteration  # a future cannot hold it: it arrives as a RuntimeError

    async def run() -> Any:
        with pytest.raises(Boom, match="inside"):
            await asyncio.wait_for(offloader(fail), 10)
        with pytest.raises(RuntimeError, match="StopIteration"):
            await asyncio.wait_for(offloader(stop), 10)
        return await asyncio.wait_for(offloader(thread_id), 10)

    assert asyncio.run(run()) != threading.get_ident()


def test_offloader_runs_the_check_in_a_copy_of_the_callers_context() -> None:
    """Context variables set by the caller are seen by the check; its own changes stay there."""
    var: contextvars.ContextVar[str] = contextvars.ContextVar("var", default="unset")
    offloader = Offloader(1)

    def check() -> Any:
        seen = var.get()
        var.set("changed in the worker")
        return seen

    async def run() -> tuple[Any, str]:
        var.set("caller")
        return await offloader(check), var.get()

    assert asyncio.run(run()) == ("caller", "caller")


def test_a_cancelled_caller_stops_waiting_and_the_pool_goes_on() -> None:
    """Cancelling the caller ends its wait at once; the check's late result is dropped."""
    offloader = Offloader(1)
    release = threading.Event()

    def slow() -> Any:
        release.wait(10)
        return "late"

    async def run() -> Any:
        task = asyncio.create_task(offloader(slow))
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        release.set()
        return await offloader(thread_id)  # queued behind the slow one, then served

    assert asyncio.run(run()) != threading.get_ident()


def test_a_result_for_a_closed_loop_is_dropped() -> None:
    """A check finishing after its event loop closed does not break the worker."""
    offloader = Offloader(1)
    release = threading.Event()
    finished = threading.Event()

    def slow() -> Any:
        release.wait(10)
        finished.set()
        return "late"

    loop = asyncio.new_event_loop()
    task = loop.create_task(offloader(slow))
    loop.run_until_complete(asyncio.sleep(0.05))
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        loop.run_until_complete(task)
    loop.close()
    release.set()
    assert finished.wait(10)
    assert asyncio.run(offloader(thread_id)) != threading.get_ident()


@needs_anyio
def test_offloader_outside_asyncio_uses_anyio() -> None:
    """Without a running asyncio loop (trio, through anyio) the check goes to anyio's threads."""
    offloader = Offloader(2)
    calls: list[Any] = []

    async def fake_run_sync(check: Callable[[], Any]) -> Any:
        calls.append(check)
        return check()

    import anyio.to_thread

    async def run() -> Any:
        return await offloader(thread_id)

    original = anyio.to_thread.run_sync
    anyio.to_thread.run_sync = fake_run_sync  # type: ignore[assignment]
    try:
        coroutine = run()
        with pytest.raises(StopIteration) as stop:  # drive it without an event loop
            coroutine.send(None)
    finally:
        anyio.to_thread.run_sync = original
    assert stop.value.value == threading.get_ident()
    assert calls == [thread_id]


@pytest.mark.parametrize("max_threads", [0, -1, True, 1.5, "4"])
def test_offloader_refuses_bad_thread_counts(max_threads: Any) -> None:
    """max_threads must be a positive int or None."""
    with pytest.raises(ConfigurationError):
        Offloader(max_threads)


@needs_anyio
def test_offloader_without_limit_uses_anyio_default() -> None:
    """max_threads=None offloads through anyio's shared default limiter."""
    assert asyncio.run(Offloader(None)(thread_id)) != threading.get_ident()


@needs_anyio
def test_asgi_verification_create_and_verify() -> None:
    """create() wires limit, URL rebuilder and offloader; verify() checks an ASGI request."""
    verifier = Verifier(make_key_set(KEY))
    check = ASGIVerification.create(verifier, max_body_size=100, max_threads=1)
    assert (check.verifier, check.max_body_size) == (verifier, 100)
    assert isinstance(check.run_sync, Offloader)
    assert ASGIVerification.create(verifier, offload=False).run_sync is None
    assert ASGIVerification.create(verifier).max_body_size == verifier.policy.max_body_size
    webhook = signed()
    scope = scope_for(webhook)  # the signed headers carry Host: app.internal
    assert asyncio.run(check.verify(scope, webhook.body)).key_id == KEY.kid
    with pytest.raises(VerificationError) as info:
        asyncio.run(check.verify(scope, webhook.body + b" "))
    assert info.value.reason is Reason.DIGEST_MISMATCH


class TracingVerifier(Verifier):
    """A subclass wrapping averify: the adapters must keep calling it."""

    __slots__ = ("traced",)

    def __init__(self, keys: Any) -> None:
        super().__init__(keys)
        self.traced = 0

    async def averify(self, *args: Any, **kwargs: Any) -> VerifiedWebhook:
        self.traced += 1
        return await super().averify(*args, **kwargs)


def test_a_key_set_without_replay_store_verifies_in_one_call() -> None:
    """direct: Verifier.verify as one call, on the loop's thread inline, in a worker
    thread offloaded; not with a key provider, a replay store or an overridden averify."""
    from upvest_verify.ledger import MemoryReplayStore

    keys = make_key_set(KEY)
    threads: list[int] = []

    class Recording(Verifier):
        __slots__ = ()

        def verify(self, *args: Any, **kwargs: Any) -> VerifiedWebhook:
            threads.append(threading.get_ident())
            return super().verify(*args, **kwargs)

    webhook = signed()
    for offload in (False, True):
        check = ASGIVerification.create(Recording(keys), offload=offload)
        assert check.direct

        async def run(check: ASGIVerification = check) -> int:
            result = await check.verify(scope_for(webhook), webhook.body)
            assert result.key_id == KEY.kid
            return threading.get_ident()

        loop_thread = asyncio.run(run())
        assert (threads.pop() == loop_thread) is (not offload)
    assert not ASGIVerification.create(Verifier(SyncOnlyProvider(keys))).direct
    assert not ASGIVerification.create(Verifier(keys, replay_store=MemoryReplayStore())).direct
    tracing = TracingVerifier(keys)
    check = ASGIVerification.create(tracing)
    assert not check.direct
    assert asyncio.run(check.verify(scope_for(webhook), webhook.body)).key_id == KEY.kid
    assert tracing.traced == 1


def test_verify_takes_the_head_already_read() -> None:
    """verify() and body_reader() use the head the caller read instead of the scope's lines."""
    from upvest_verify.adapters._asgi import read_head

    check = ASGIVerification.create(Verifier(make_key_set(KEY)), offload=False)
    webhook = signed()
    scope = scope_for(webhook)
    head = read_head(scope)
    scope["headers"] = []  # only the head has them now
    assert asyncio.run(check.verify(scope, webhook.body, head)).key_id == KEY.kid
    reader = check.body_reader(scope, head)
    reader.feed(webhook.body)
    assert reader.finish() == webhook.body


@pytest.mark.parametrize("offload", [1, "auto", None])
def test_offload_must_be_a_bool(offload: Any) -> None:
    """offload is True or False; anything else is refused when the adapter is built."""
    with pytest.raises(ConfigurationError, match="offload"):
        ASGIVerification.create(Verifier(make_key_set(KEY)), offload=offload)


@pytest.mark.parametrize(
    "options",
    [
        {"max_body_size": 0},
        {"max_threads": 0},
        {"public_url": "ftp://x"},
        {"trusted_proxies": ["not-an-ip"]},
        {"proxy_headers": "x-real-ip"},
    ],
)
def test_asgi_verification_refuses_bad_options(options: dict[str, Any]) -> None:
    """Every option is validated when the adapter is built."""
    with pytest.raises(ConfigurationError):
        ASGIVerification.create(Verifier(make_key_set(KEY)), **options)


@pytest.mark.parametrize(
    ("lines", "declared_ok"),
    [
        ([(b"content-length", b"4")], True),
        ([(b"Content-Length", b"4")], True),
        ([], False),
        ([(b"content-length", b"4"), (b"content-length", b"4")], False),
    ],
)
def test_body_reader_uses_a_single_content_length(
    lines: list[tuple[bytes, bytes]], declared_ok: bool
) -> None:
    """One Content-Length line is the declared length; none or several leave only the limit."""
    check = ASGIVerification.create(Verifier(make_key_set(KEY)), max_body_size=10)
    reader = check.body_reader({"headers": lines})
    reader.feed(b"ab")
    if declared_ok:
        with pytest.raises(IncompleteBody, match="Content-Length declared 4"):
            reader.finish()
    else:
        assert reader.finish() == b"ab"
    with pytest.raises(VerificationError) as info:
        check.body_reader({"headers": [(b"content-length", b"11")]})
    assert info.value.reason is Reason.BODY_TOO_LARGE


def test_store_result() -> None:
    """The verified webhook lands in scope["upvest_verify"] and the request state."""
    verifier = Verifier(make_key_set(KEY))
    webhook = signed()
    result = verifier.verify("POST", URL, webhook.headers, webhook.body)
    scope: dict[str, Any] = {"state": {"other": 1}}
    store_result(scope, result)
    assert scope[SCOPE_KEY] is result
    assert scope["state"] == {"other": 1, STATE_KEY: result}


def test_shared_helpers_import_no_framework() -> None:
    """The shared helper modules load no web framework and no anyio when imported."""
    modules = ", ".join(
        f"upvest_verify.adapters.{name}"
        for name in ("_asgi", "_body", "_reject", "_run", "_settings", "_url")
    )
    forbidden = ("starlette", "fastapi", "flask", "werkzeug", "django", "anyio", "asgiref")
    code = f"import sys, {modules}; print(sorted(m for m in {forbidden!r} if m in sys.modules))"
    out = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True, timeout=60
    )
    assert out.stdout.strip() == "[]"
