"""Shared fixtures: a fixed clock, test keys and the location of external vectors."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from upvest_verify import KeySet, Verifier
from upvest_verify.testing import SigningKey, generate_key, make_key_set

ROOT = Path(__file__).resolve().parents[1]
VECTORS = ROOT / "tests" / "vectors"
SHARED_VECTORS = ROOT.parent / "shared" / "vectors"

# A fixed "now" for every time-window test (E8): results never depend on the
# machine's clock or time zone.
REFERENCE_NOW = 1_700_000_000


def shared_vectors(*parts: str) -> Path:
    """Return a path under ../shared/vectors, skipping the test if it is absent."""
    path = SHARED_VECTORS.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"external vectors not found at {path} (they live beside the repository)")
    return path


@pytest.fixture
def reference_now() -> int:
    """The fixed Unix time all time-window tests run at."""
    return REFERENCE_NOW


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """The URL of one redis-server on a free 127.0.0.1 port, shared by the session's tests."""
    from redis_support import run_redis_server

    with run_redis_server() as url:
        yield url


@pytest.fixture(scope="session")
def p521_key() -> SigningKey:
    """A P-521 signing key shared by the session."""
    return generate_key(kid="9ed77463-c18e-4794-ab5c-17423f9b801a")


@pytest.fixture(scope="session")
def key_set(p521_key: SigningKey) -> KeySet:
    """A key set holding the public half of ``p521_key``."""
    return make_key_set(p521_key)


@pytest.fixture
def verifier(key_set: KeySet) -> Verifier:
    """A verifier with the default policy whose clock stands at REFERENCE_NOW."""
    return Verifier(key_set, clock=lambda: REFERENCE_NOW)
