"""``upvest-verify listen``: relay, verify and forward, end to end against the emulator."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("click", reason="the command line needs the [cli] extra (click)")
pytest.importorskip("rich", reason="the command line needs the [cli] extra (rich)")
pytest.importorskip("starlette", reason="the emulator needs the [sandbox] extra (starlette)")
pytest.importorskip("uvicorn", reason="the emulator needs the [sandbox] extra (uvicorn)")
pytest.importorskip("httpx", reason="the client needs the [client] extra (httpx)")

from upvest_verify.cli.listen import forward_headers, relay_items
from upvest_verify.sandbox import Sandbox

from .helpers import invoke, receiver, write_credentials


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    """An emulator with a fast clock and short relay polls (no plain-HTTP subscriptions)."""
    with Sandbox(time_scale=0.01, relay_poll_timeout=0.2) as sb:
        yield sb


def _emit_once_listening(sb: Sandbox, kinds: list[str | None]) -> threading.Thread:
    """In the background: wait for the enabled relay subscription, then emit events."""

    def run() -> None:
        sb.wait_for(lambda _: any(w["enabled"] for w in sb.webhooks()), timeout=20)
        for n, tamper in enumerate(kinds, 1):
            if tamper is not None:
                sb.tamper_next(tamper)  # type: ignore[arg-type]
            sb.emit("ORDER.FILLED")
            sb.wait_for_deliveries(n, timeout=20)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_listen_verifies_and_forwards_the_exact_request(sandbox: Sandbox, tmp_path: Path) -> None:
    """Each relayed delivery is verified, forwarded byte for byte, and cleaned up after."""
    creds = write_credentials(tmp_path / "creds.json", sandbox)
    with receiver(status=200) as (url, received):
        thread = _emit_once_listening(sandbox, [None, None])
        done = invoke(
            "listen",
            "--credentials",
            str(creds),
            "--forward-to",
            url,
            "--count",
            "2",
            "--show-headers",
        )
        thread.join(20)
    assert done.code == 0, done.output
    assert done.output.count("verified dialect upvest-v6/der/digest") == 2
    assert "HTTP 200" in done.output
    assert "2 deliveries relayed, 2 verified" in done.output
    sent = [d.attempts[0] for d in sandbox.deliveries]
    assert [body for _, _, body in received.requests] == [a.body for a in sent]
    for (path, headers, _), attempt in zip(received.requests, sent, strict=True):
        assert path == "/hooks"
        forwarded = {k.lower(): v for k, v in headers}
        for name in ("signature", "signature-input", "digest", "content-type", "date"):
            assert forwarded[name] == attempt.header(name)
    assert sandbox.webhooks() == []  # the subscription is deleted on the way out
    assert sandbox.tenant.client_secret not in done.output


def test_listen_reports_a_tampered_delivery(sandbox: Sandbox, tmp_path: Path) -> None:
    """A delivery spoiled in transit is shown rejected with its reason; exit status 1."""
    creds = write_credentials(tmp_path / "creds.json", sandbox)
    thread = _emit_once_listening(sandbox, ["body"])
    done = invoke("listen", "--credentials", str(creds), "--count", "1")
    thread.join(20)
    assert done.code == 1
    assert "rejected digest_mismatch" in done.output
    assert "1 deliveries relayed, 0 verified" in done.output


def test_listen_without_a_relay(tmp_path: Path) -> None:
    """A server without the relay is reported as such, in one line."""
    with Sandbox(relay=False) as sb:
        creds = write_credentials(tmp_path / "creds.json", sb)
        done = invoke("listen", "--credentials", str(creds), "--count", "1")
    assert done.code == 1
    assert "error: the webhook relay is not available" in done.output
    assert "Traceback" not in done.output


def test_relay_items_reads_the_pull_items() -> None:
    """Go http.Header lists become pairs; the payload becomes the body bytes."""
    [item] = relay_items(
        [{"headers": {"A": ["1", "2"]}, "payload": "{}", "created_at": "2024-01-01T00:00:00Z"}]
    )
    assert item.headers == [("A", "1"), ("A", "2")]
    assert item.body == b"{}"
    for bad in ({}, [{"headers": {}}], [{"payload": "x", "headers": ["A: 1"]}]):
        with pytest.raises(ValueError, match="relay"):
            relay_items(bad)


def test_forward_headers_drops_hop_by_hop_fields() -> None:
    """Host, Content-Length and hop-by-hop fields are left to the forwarding client."""
    headers = [("Host", "x"), ("Content-Length", "2"), ("Connection", "close"), ("Digest", "d")]
    assert forward_headers(headers) == [("Digest", "d")]
