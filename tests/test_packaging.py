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
