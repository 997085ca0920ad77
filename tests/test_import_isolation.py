"""``import upvest_verify`` pulls in no web framework, HTTP client, Redis or OpenTelemetry."""

from __future__ import annotations

import subprocess
import sys

FORBIDDEN = (
    "starlette",
    "fastapi",
    "flask",
    "django",
    "httpx",
    "redis",
    "anyio",
    "click",
    "rich",
    "opentelemetry",  # imported when a Verifier or JWKSCache is built, never before
)


def test_core_import_is_framework_free() -> None:
    """Importing the package and its core modules loads none of the optional dependencies."""
    code = (
        "import sys, upvest_verify, upvest_verify.jwks, upvest_verify.testing, "
        "upvest_verify.adapters, upvest_verify.ledger, upvest_verify.types;"
        f"print(sorted(m for m in {FORBIDDEN!r} if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True, timeout=60
    )
    assert out.stdout.strip() == "[]"


def test_ledger_import_leaves_redis_unloaded() -> None:
    """``upvest_verify.ledger`` loads redis only when ``RedisLedger`` is asked for."""
    code = (
        "import sys, upvest_verify.ledger;"
        "from upvest_verify.ledger import MemoryLedger, SQLiteLedger, ProcessReport;"
        f"print(sorted(m for m in {FORBIDDEN!r} if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True, timeout=60
    )
    assert out.stdout.strip() == "[]"
