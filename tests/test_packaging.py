"""Packaging metadata agrees with the code."""

from __future__ import annotations

from importlib import metadata
from pathlib import Path

import upvest_verify


def test_version_matches_metadata() -> None:
    """The installed distribution's version equals __version__."""
    assert metadata.version("upvest-verify") == upvest_verify.__version__


def test_package_is_typed() -> None:
    """The package ships a py.typed marker."""
    assert (Path(upvest_verify.__file__).parent / "py.typed").is_file()


def test_flask_extra_brings_what_async_views_need() -> None:
    """``pip install 'upvest-verify[flask]'`` is enough for ``async def`` views.

    Flask runs async views only with its own ``async`` extra (asgiref); without it
    every request to such a view is a 500.
    """
    requires = metadata.requires("upvest-verify") or []
    flask_reqs = [
        r
        for r in requires
        if r.startswith("flask") and r.replace("'", '"').endswith('extra == "flask"')
    ]
    assert any(r.startswith("flask[async]") for r in flask_reqs), flask_reqs
