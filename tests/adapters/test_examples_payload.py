"""The runnable receivers in ``examples/`` answer a signed body of another shape 400, not 500.

Each example admits through an event ledger, which reads the events before the
view runs: a body that is not a ``{"payload": [...]}`` envelope is refused 400
``invalid_payload`` (logged on ``upvest_verify.delivery``), as their docstrings say.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType

import pytest

httpx = pytest.importorskip("httpx", reason="the example tests send requests with httpx")

from adapter_support import SIGNING_KEY, assert_problem, run_uvicorn, run_werkzeug  # noqa: E402
from payload_support import ODD_BODIES, send  # noqa: E402

from upvest_verify.testing import make_jwks  # noqa: E402

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.fixture(autouse=True)
def keys_and_ledger(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The test key and an SQLite ledger in ``tmp_path``, announced as the examples read them."""
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps(make_jwks(SIGNING_KEY)))
    ledger = f"sqlite:///{tmp_path / 'events.sqlite3'}"
    for prefix in ("UPVEST_", "UPVEST_VERIFY_"):
        monkeypatch.setenv(prefix + "JWKS", str(path))
        monkeypatch.setenv(prefix + "LEDGER", ledger)


def load(name: str) -> ModuleType:
    """Import ``examples/<name>.py`` under a private module name."""
    spec = importlib.util.spec_from_file_location(
        f"upvest_example_payload_{name}", EXAMPLES / f"{name}.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def check(url: str) -> None:
    """Every odd body to the example's webhook path: 400 invalid_payload."""
    for body in ODD_BODIES.values():
        assert_problem(send(url, "/webhooks/upvest", body), 400, "invalid_payload")


@pytest.mark.parametrize("name", ["starlette_app", "fastapi_app"])
def test_asgi_examples(name: str) -> None:
    """The Starlette and FastAPI examples refuse another shape with 400."""
    pytest.importorskip(name.split("_")[0])
    pytest.importorskip("uvicorn")
    with run_uvicorn(load(name).app) as url:
        check(url)


def test_flask_example() -> None:
    """The Flask example refuses another shape with 400."""
    pytest.importorskip("flask")
    with run_werkzeug(load("flask_app").app) as url:
        check(url)
