"""Fixtures for the management-client tests: one emulator per module, a tenant per test.

The emulator needs the ``sandbox`` extra and the client needs httpx; each test module
skips itself with ``pytest.importorskip`` and a reason, and the extras are imported
inside the fixtures only, never when this file loads.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from upvest_verify.sandbox import Sandbox


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    """A running emulator on 127.0.0.1, shared by the tests of one module."""
    from upvest_verify.sandbox import Sandbox

    with Sandbox(port=0, time_scale=0.01) as sb:
        yield sb


@pytest.fixture
def tenant(sandbox: Sandbox) -> Any:
    """A fresh tenant (client id, secret, request-signing key) for one test."""
    return sandbox.add_tenant()


@pytest.fixture(params=["sync", "async"])
def driver(request: pytest.FixtureRequest) -> Iterator[Any]:
    """Runs the test once with ``UpvestClient`` and once with ``AsyncUpvestClient``."""
    from .client_support import Driver

    drive = Driver(request.param)
    yield drive
    drive.close()
