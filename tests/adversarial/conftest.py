"""Fixtures for the adversarial tests: extra keys besides the trusted ``p521_key``."""

from __future__ import annotations

import pytest

from upvest_verify.testing import SigningKey, generate_key


@pytest.fixture(scope="session")
def attacker_key() -> SigningKey:
    """A P-521 key the verifier does not trust."""
    return generate_key(kid="attacker-0000-4000-8000-000000000000")


@pytest.fixture(scope="session")
def second_key() -> SigningKey:
    """Another P-521 key, trusted alongside ``p521_key`` during a rotation."""
    return generate_key(kid="2b7f0c64-7d2e-4f3a-9a51-5c1d8e0b6a43")
