"""pytest plugin: the ``upvest_sandbox`` fixture, a running emulator per test.

Registered through the ``pytest11`` entry point, so installing ``upvest-verify`` is
enough. Loading the plugin imports only pytest and this module; Starlette, uvicorn
and httpx (the ``sandbox`` extra) are imported when a test first uses the fixture,
so projects without the extra are unaffected::

    def test_receiver(upvest_sandbox, live_server_url):
        hook = upvest_sandbox.add_webhook(live_server_url + "/webhooks/upvest")
        upvest_sandbox.emit("ORDER.FILLED")
        [delivery] = upvest_sandbox.wait_for_deliveries(1)

    @pytest.mark.upvest_sandbox(dialect="rfc9421", time_scale=0.001)
    def test_other_dialect(upvest_sandbox): ...

The fixture's emulator listens on 127.0.0.1 on a free port, accepts
``http://localhost:<port>`` subscriptions (``allow_http=True``) and runs with
``time_scale`` from the ``upvest_sandbox_time_scale`` ini option (default 0.01). The
``upvest_sandbox`` marker passes keyword arguments to
:class:`~upvest_verify.sandbox.Sandbox`, overriding those defaults.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from upvest_verify.sandbox import Sandbox

__all__ = ["pytest_addoption", "pytest_configure", "upvest_sandbox"]

_INI_TIME_SCALE = "upvest_sandbox_time_scale"


def pytest_addoption(parser: pytest.Parser) -> None:
    """Register the ``upvest_sandbox_time_scale`` ini option."""
    parser.addini(
        _INI_TIME_SCALE,
        "time scale of the upvest_sandbox fixture's emulator (delays and back-offs)",
        default="0.01",
    )


def pytest_configure(config: pytest.Config) -> None:
    """Register the ``upvest_sandbox`` marker (``--strict-markers`` safe)."""
    config.addinivalue_line(
        "markers",
        "upvest_sandbox(**options): keyword arguments for the upvest_sandbox fixture's Sandbox",
    )


@pytest.fixture
def upvest_sandbox(request: pytest.FixtureRequest) -> Iterator[Sandbox]:
    """A running :class:`~upvest_verify.sandbox.Sandbox` on loopback, stopped after the test."""
    from upvest_verify.sandbox import Sandbox  # the extra is needed from here on

    options: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": 0,
        "time_scale": float(request.config.getini(_INI_TIME_SCALE)),
        "allow_http": True,
    }
    marker = request.node.get_closest_marker("upvest_sandbox")
    if marker is not None:
        options.update(marker.kwargs)
    with Sandbox(**options) as sandbox:
        yield sandbox
