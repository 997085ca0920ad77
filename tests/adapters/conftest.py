"""Fixtures for the adapter tests.

Nothing is left out silently: a test module whose framework or server is missing
skips itself with ``pytest.importorskip`` at its top, and the skip and its reason
show in the ``-ra`` summary. The helper modules (``adapter_support.py``,
``django_settings.py``, ``gunicorn_flask_app.py``) are not test modules, so pytest
never collects them.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
from adapter_support import OTHER_KEY, SIGNING_KEY, LogWaiter

from upvest_verify import Verifier
from upvest_verify.testing import SigningKey, make_key_set


@pytest.fixture(scope="session")
def signing_key() -> SigningKey:
    """The key the receivers trust."""
    return SIGNING_KEY


@pytest.fixture(scope="session")
def other_key() -> SigningKey:
    """A key the receivers do not know."""
    return OTHER_KEY


@pytest.fixture(scope="session")
def verifier() -> Verifier:
    """A verifier trusting the session signing key."""
    return Verifier(make_key_set(SIGNING_KEY))


@pytest.fixture
def security_log() -> Iterator[LogWaiter]:
    """Capture ``upvest_verify.security`` records (waitable across server threads)."""
    logger = logging.getLogger("upvest_verify.security")
    handler = LogWaiter()
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
