"""Public docstrings and user-facing messages speak plain words, not internal labels.

The threat model names its cases ``A1``...``K11`` (``B14``, ``G9``, ``E2``...). A user
reading ``help()``, the API reference or an exception cannot look those up, so no
docstring of the public API may cite one: the modules without a private name part,
their public members, and the public methods and properties of their classes.
Comments may keep a reference such as "threat-model.md §5".
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import pytest

import upvest_verify

LABEL = re.compile(r"\b[A-KR][0-9]{1,2}\b")
"""A threat-model or requirement label: a letter A-K or R and one or two digits."""

ROOTS = (
    "upvest_verify",
    "upvest_verify.jwks",
    "upvest_verify.ledger",
    "upvest_verify.signing",
    "upvest_verify.testing",
    "upvest_verify.adapters",
    "upvest_verify.client",
    "upvest_verify.sandbox",
)


def public_modules() -> Iterator[ModuleType]:
    """Every importable module of the package without a private name part."""
    names = set(ROOTS)
    for info in pkgutil.walk_packages(upvest_verify.__path__, "upvest_verify."):
        if not any(part.startswith("_") for part in info.name.split(".")):
            names.add(info.name)
    for name in sorted(names):
        try:
            yield importlib.import_module(name)
        except ImportError:  # an extra that is not installed
            continue


def _own(obj: object, module: ModuleType) -> bool:
    return getattr(obj, "__module__", "").startswith("upvest_verify")


def _members(cls: type) -> Iterator[tuple[str, Any]]:
    for name, member in vars(cls).items():
        if name.startswith("_") and name != "__init__":
            continue
        if isinstance(member, (staticmethod, classmethod)):
            member = member.__func__
        if isinstance(member, property):
            yield name, member.fget
        elif inspect.isfunction(member):
            yield name, member


def docstrings() -> Iterator[tuple[str, str]]:
    """``(qualified name, docstring)`` of the public API."""
    seen: set[int] = set()
    for module in public_modules():
        yield module.__name__, module.__doc__ or ""
        names = getattr(module, "__all__", None)
        if names is None:
            names = [n for n in vars(module) if not n.startswith("_")]
        for name in names:
            try:
                obj = getattr(module, name, None)
            except ImportError:  # a lazily loaded name whose extra is not installed
                continue
            if obj is None or id(obj) in seen or not _own(obj, module):
                continue
            seen.add(id(obj))
            where = f"{module.__name__}.{name}"
            if inspect.isclass(obj):
                yield where, inspect.getdoc(obj) or ""
                for member_name, member in _members(obj):
                    yield f"{where}.{member_name}", inspect.getdoc(member) or ""
            elif inspect.isfunction(obj) or inspect.ismethod(obj):
                yield where, inspect.getdoc(obj) or ""


def test_no_public_docstring_cites_an_internal_label() -> None:
    """No docstring of the public API cites a threat-model label such as ``B14`` or ``K9``."""
    found = []
    checked = 0
    for where, text in docstrings():
        checked += 1
        for match in LABEL.finditer(text):
            found.append(f"{where}: {match.group()}")
    assert checked > 200, "the scan found too little to be trusted"
    assert not found, "internal labels in public docstrings:\n" + "\n".join(sorted(set(found)))


@pytest.mark.parametrize("text", ["see B14", "(K9)", "G13: fail closed", "E2 boundary", "R3)"])
def test_the_pattern_catches_labels(text: str) -> None:
    """The pattern is the one the rule names, and it matches the labels in use."""
    assert LABEL.search(text)


@pytest.mark.parametrize("text", ["RFC 9421", "P-521", "SHA-512", "HTTP/1.1", "b64"])
def test_the_pattern_leaves_plain_words(text: str) -> None:
    """Standards and algorithm names are not labels."""
    assert not LABEL.search(text)
