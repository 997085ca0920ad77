"""Fixtures for the key-cache tests: a loopback JWKS server, keys and a fake clock."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from upvest_verify.jwks import JWKSCache

from .jwks_support import FakeClock, JWKKey, JWKSServer, make_key, running_server


@pytest.fixture
def server() -> Iterator[JWKSServer]:
    """A JWKS server on 127.0.0.1 with an ephemeral port, stopped after the test."""
    with running_server() as srv:
        yield srv


@pytest.fixture
def key_a() -> JWKKey:
    """A P-521 key with kid ``key-a``."""
    return make_key("key-a")


@pytest.fixture
def key_b() -> JWKKey:
    """A P-521 key with kid ``key-b``."""
    return make_key("key-b")


@pytest.fixture
def clock() -> FakeClock:
    """A fake monotonic clock the test advances by hand."""
    return FakeClock()


@pytest.fixture
def caches() -> Iterator[list[JWKSCache]]:
    """Caches to close after the test (stops background refreshers)."""
    made: list[JWKSCache] = []
    yield made
    for cache in made:
        cache.close()


@pytest.fixture(autouse=True)
def _quiet_jwks_logs(caplog: pytest.LogCaptureFixture) -> None:
    """Capture the library's log records at DEBUG for assertions."""
    caplog.set_level(logging.DEBUG, logger="upvest_verify")
