"""The pytest plugin loads without the ``sandbox`` extra and imports nothing beyond the core."""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys

FORBIDDEN = ("starlette", "uvicorn", "httpx", "anyio", "h11", "fastapi", "flask", "django")


def test_plugin_import_pulls_in_no_extra() -> None:
    """Importing the plugin module (what pytest does at start-up) loads no extra."""
    code = (
        "import sys, upvest_verify.sandbox.pytest_plugin, upvest_verify.sandbox;"
        f"print(sorted(m for m in {FORBIDDEN!r} if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True, timeout=60
    )
    assert out.stdout.strip() == "[]"


def test_plugin_is_registered_as_entry_point() -> None:
    """The ``pytest11`` entry point names the plugin module."""
    points = importlib.metadata.entry_points(group="pytest11")
    assert {p.name: p.value for p in points}.get("upvest_sandbox") == (
        "upvest_verify.sandbox.pytest_plugin"
    )


def test_plugin_is_loaded(pytestconfig: object) -> None:
    """pytest has loaded the plugin into this very test run."""
    import pytest

    assert isinstance(pytestconfig, pytest.Config)
    assert pytestconfig.pluginmanager.has_plugin("upvest_sandbox")
