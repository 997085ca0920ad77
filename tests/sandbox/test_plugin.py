"""The ``upvest_sandbox`` pytest fixture, used the way a project's own tests use it."""

from __future__ import annotations

import pytest

pytest.importorskip("starlette", reason="the sandbox extra (starlette) is not installed")
pytest.importorskip("uvicorn", reason="the sandbox extra (uvicorn) is not installed")
httpx = pytest.importorskip("httpx", reason="the sandbox extra (httpx) is not installed")

from sandbox_support import Recorder, serve, verify_received  # noqa: E402

from upvest_verify.sandbox import Sandbox  # noqa: E402


def test_fixture_delivers_to_a_receiver(upvest_sandbox: Sandbox) -> None:
    """The fixture is a running emulator on loopback that delivers to localhost receivers."""
    assert upvest_sandbox.base_url.startswith("http://127.0.0.1:")
    assert upvest_sandbox.time_scale == 0.01
    recorder = Recorder()
    with serve(recorder) as port:
        upvest_sandbox.add_webhook(f"http://localhost:{port}/webhooks/upvest")
        [event] = upvest_sandbox.emit("ORDER.FILLED")
        [delivery] = upvest_sandbox.wait_for_deliveries(1)
    assert delivery.event_ids == [event["id"]]
    result = verify_received(
        recorder.requests[0], f"http://localhost:{port}", upvest_sandbox.key_set()
    )
    assert result.events[0].type == "ORDER.FILLED"
    status = httpx.get(upvest_sandbox.base_url + "/_sandbox/tenants", trust_env=False)
    assert status.json()[0]["client_id"] == upvest_sandbox.tenant.client_id


@pytest.mark.upvest_sandbox(time_scale=0.5, dialect="rfc9421", allow_http=False)
def test_marker_passes_options(upvest_sandbox: Sandbox) -> None:
    """``@pytest.mark.upvest_sandbox(...)`` overrides the fixture's Sandbox options."""
    assert upvest_sandbox.time_scale == 0.5
    assert str(upvest_sandbox.dialect) == "rfc9421/der/content-digest"
    assert upvest_sandbox.allow_http is False
