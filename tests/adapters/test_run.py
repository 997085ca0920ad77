"""Running the check from async code and the shared ASGI wiring (``adapters/_run.py``)."""

from __future__ import annotations

import asyncio
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


@needs_anyio
def test_offloader_runs_in_a_worker_thread_per_loop() -> None:
    """The check runs off the event loop's thread; a second event loop works too (H7)."""
    offloader = Offloader(2)

    async def run() -> tuple[int, Any]:
        return threading.get_ident(), await offloader(thread_id)

    for _ in range(2):  # a second loop must not reuse the first loop's limiter
        loop_thread, worker = asyncio.run(run())
        assert worker != loop_thread


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
        for name in ("_body", "_reject", "_run", "_settings", "_url")
    )
    forbidden = ("starlette", "fastapi", "flask", "werkzeug", "django", "anyio", "asgiref")
    code = f"import sys, {modules}; print(sorted(m for m in {forbidden!r} if m in sys.modules))"
    out = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True, timeout=60
    )
    assert out.stdout.strip() == "[]"
