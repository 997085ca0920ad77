"""Fixtures: a ledger factory over every backend (``redis_url`` comes from tests/conftest.py)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from ledger_support import LedgerFactory

from upvest_verify.ledger import BaseLedger, MemoryLedger, SQLiteLedger


@pytest.fixture
def namespace() -> str:
    """A Redis key prefix of this test's own."""
    return f"test-{uuid.uuid4().hex}"


@pytest.fixture(params=["memory", "sqlite", "redis"])
def backend(request: pytest.FixtureRequest) -> str:
    """The backend a contract test runs on."""
    return str(request.param)


@pytest.fixture
def make_ledger(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest, namespace: str
) -> Iterator[LedgerFactory]:
    """Build ledgers of the parametrised backend (SQLite and Redis ones share one store)."""
    made: list[BaseLedger] = []
    url = request.getfixturevalue("redis_url") if backend == "redis" else ""

    def factory(**options: float) -> BaseLedger:
        ledger: BaseLedger
        if backend == "memory":
            ledger = MemoryLedger(**options)
        elif backend == "sqlite":
            ledger = SQLiteLedger(tmp_path / "ledger.sqlite3", **options)
        else:
            from upvest_verify.ledger import RedisLedger

            ledger = RedisLedger.from_url(url, namespace=namespace, **options)
        made.append(ledger)
        return ledger

    yield factory
    for ledger in made:
        ledger.close()
