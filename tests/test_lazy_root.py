"""The package root imports its names on first use (PEP 562), and only then.

``import upvest_verify`` loads the exceptions alone; the verifier, ``cryptography``,
the JWK importer and the key cache load when a name that needs them is used.
Each check runs in a fresh interpreter, since this one has imported everything.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import upvest_verify


def _loaded(code: str, modules: tuple[str, ...]) -> dict[str, bool]:
    """Run ``code`` in a fresh interpreter; which of ``modules`` it left loaded."""
    probe = (
        f"{code}\nimport sys, json\nprint(json.dumps({{m: m in sys.modules for m in {modules!r}}}))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], check=True, capture_output=True, text=True, timeout=60
    )
    loaded: dict[str, bool] = json.loads(out.stdout)
    return loaded


HEAVY = (
    "cryptography",
    "joserfc",
    "dataclasses",
    "upvest_verify._crypto",
    "upvest_verify._keyset",
    "upvest_verify.verifier",
    "upvest_verify.jwks",
    "asyncio",
    "ssl",
    "http.client",
    "concurrent.futures",
    "cryptography.hazmat.primitives.serialization",
    "cryptography.hazmat.backends.openssl.backend",
)


def test_import_loads_only_the_exceptions() -> None:
    """``import upvest_verify`` loads none of the verification machinery."""
    loaded = _loaded("import upvest_verify", (*HEAVY, "upvest_verify.errors"))
    assert loaded.pop("upvest_verify.errors")
    assert [name for name, present in loaded.items() if present] == []


def test_verifier_names_load_the_verifier_but_not_the_key_cache() -> None:
    """Importing what verification needs leaves the JWKS cache and its I/O unloaded."""
    loaded = _loaded("from upvest_verify import KeySet, Verifier, verify", HEAVY)
    assert loaded["upvest_verify.verifier"]
    assert loaded["cryptography"]
    assert not loaded["joserfc"]  # imported by the first JWKS load (or warm_up)
    # Loaded with the first key (the backend) or to hash one (serialization).
    assert not loaded["cryptography.hazmat.backends.openssl.backend"]
    assert not loaded["cryptography.hazmat.primitives.serialization"]
    for name in ("upvest_verify.jwks", "asyncio", "ssl", "http.client", "concurrent.futures"):
        assert not loaded[name], name


def test_the_key_cache_loads_on_use_without_asyncio_or_tls() -> None:
    """``upvest_verify.JWKSCache`` loads the cache; its HTTP and TLS wait for a fetch."""
    loaded = _loaded("import upvest_verify\nupvest_verify.JWKSCache", HEAVY)
    assert loaded["upvest_verify.jwks"]
    for name in ("asyncio", "ssl", "http.client"):
        assert not loaded[name], name


def test_every_public_name_resolves_to_the_defining_object() -> None:
    """Each lazy name is the object its module defines, presented as the package's own."""
    from upvest_verify import _LAZY

    assert set(_LAZY) <= set(upvest_verify.__all__)
    for name, module in _LAZY.items():
        defined = getattr(__import__(f"upvest_verify{module}", fromlist=["_"]), name)
        assert getattr(upvest_verify, name) is defined
        assert defined.__module__ == "upvest_verify"


def test_unknown_names_fail_as_usual() -> None:
    """An unknown attribute is an AttributeError; ``from ... import`` of it an ImportError."""
    with pytest.raises(AttributeError, match="has no attribute 'Verifer'"):
        upvest_verify.Verifer  # noqa: B018
    with pytest.raises(ImportError):
        from upvest_verify import Verifer  # noqa: F401


def test_dir_and_star_import_list_every_public_name() -> None:
    """``dir()`` and ``from upvest_verify import *`` see the lazy names too."""
    assert set(upvest_verify.__all__) <= set(dir(upvest_verify))
    namespace: dict[str, object] = {}
    exec("from upvest_verify import *", namespace)  # noqa: S102
    assert set(upvest_verify.__all__) <= set(namespace)
