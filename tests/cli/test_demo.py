"""``upvest-verify demo``: emulator, receiver and management client, end to end."""

from __future__ import annotations

import time

import pytest

pytest.importorskip("click", reason="the command line needs the [cli] extra (click)")
pytest.importorskip("rich", reason="the command line needs the [cli] extra (rich)")
pytest.importorskip("starlette", reason="the demo needs the [sandbox] extra (starlette)")
pytest.importorskip("uvicorn", reason="the demo needs the [sandbox] extra (uvicorn)")
pytest.importorskip("httpx", reason="the demo needs the [client] extra (httpx)")

from upvest_verify.cli import demo

from .helpers import invoke


def test_demo_shows_every_verdict_and_exits_0() -> None:
    """The demo verifies each dialect, rejects spoiled deliveries, follows a rotation."""
    started = time.monotonic()
    done = invoke("demo")
    elapsed = time.monotonic() - started
    assert done.code == 0, done.output
    assert elapsed < 30
    out = done.output
    for dialect in (
        "upvest-v6/der/digest",
        "rfc9421/der/content-digest",
        "rfc9421/raw/content-digest",
    ):
        assert dialect in out
    for reason in ("digest_mismatch", "bad_signature", "expired"):
        assert f"rejected {reason}" in out
    assert "rotated its webhook key" in out
    assert "1 refetch, knows new key" in out
    assert "all 11 verdicts as expected" in out
    assert "FAIL" not in out
    assert "summary" in out


def test_demo_exits_1_when_a_verdict_is_unexpected(monkeypatch: pytest.MonkeyPatch) -> None:
    """A verdict other than the expected one fails the demo with exit status 1."""
    monkeypatch.setattr(demo, "TAMPERS", (("body", "body changed", "bad_signature"),))
    done = invoke("demo")
    assert done.code == 1
    assert "FAIL" in done.output
    assert "expected bad_signature" in " ".join(done.output.split())
    assert "some verdicts were not the expected ones" in done.output
