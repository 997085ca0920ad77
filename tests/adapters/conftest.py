"""Fixtures for the adapter tests; modules whose framework is missing are not collected."""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Iterator

import pytest

from upvest_verify import Verifier
from upvest_verify.testing import SigningKey, make_key_set


def _missing(*modules: str) -> bool:
    return any(importlib.util.find_spec(m) is None for m in modules)


collect_ignore: list[str] = ["adapter_support.py", "django_settings.py", "gunicorn_flask_app.py"]
if _missing("starlette", "anyio", "uvicorn", "httpx"):
    collect_ignore.append("test_starlette.py")
if _missing("fastapi", "starlette", "anyio", "uvicorn", "httpx"):
    collect_ignore.append("test_fastapi.py")
if _missing("flask", "werkzeug", "httpx"):
    collect_ignore.append("test_flask.py")
if _missing("django", "asgiref", "uvicorn", "werkzeug", "httpx"):
    collect_ignore.append("test_django.py")

# Imported after the checks above: the helpers need no framework themselves.
from adapter_support import OTHER_KEY, SIGNING_KEY, LogWaiter  # noqa: E402


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
