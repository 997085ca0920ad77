"""No module of the package reads or writes another module's private attributes.

A module may use ``x._name`` only for a ``_name`` it defines itself (a method, a
class or module attribute, a slot, an attribute it assigns): the classes of one
module may see each other's insides, other modules go through a public or an
explicit access interface (as the ledgers hand their inbox stores an access object).
Importing a private name from another module is refused the same way.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import upvest_verify

PACKAGE = Path(upvest_verify.__file__).resolve().parent
MODULES = sorted(PACKAGE.rglob("*.py"))

# Private names of other libraries that are theirs to offer.
ALLOWED = {
    "_replace",  # namedtuple's public method
    "_dont_enforce_csrf_checks",  # Django's CSRF opt-out flag, as its own test client sets it
}


def _defined(tree: ast.Module) -> set[str]:
    """The private names ``tree`` defines: functions, classes, slots, assigned attributes."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            names.add(node.attr)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            slots = any(isinstance(t, ast.Name) and t.id == "__slots__" for t in targets)
            if slots and node.value is not None:
                names |= {
                    c.value
                    for c in ast.walk(node.value)
                    if isinstance(c, ast.Constant) and isinstance(c.value, str)
                }
    return {n for n in names if n.startswith("_")}


def _is_module(package: Path, node: ast.ImportFrom, name: str) -> bool:
    """Whether ``from ... import name`` names a module (``from . import _sfv``)."""
    base = package
    for _ in range(max(node.level - 1, 0)):
        base = base.parent
    if node.module:
        base = base.joinpath(*node.module.split("."))
    return (base / f"{name}.py").exists() or (base / name / "__init__.py").exists()


def foreign_private(source: str, package: Path = PACKAGE) -> list[str]:
    """Every use in ``source`` of a private name that ``source`` does not define.

    Args:
        source: A module's text.
        package: The folder of its package, against which relative imports resolve.

    Returns:
        ``"line: expression"`` for each ``x._name`` (``x`` not ``self`` or ``cls``)
        and each ``from m import _name`` of anything but a module.
    """
    tree = ast.parse(source)
    own = _defined(tree) | ALLOWED
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute):
            name = node.attr
            if not name.startswith("_") or name.startswith("__") or name in own:
                continue
            if isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"):
                continue
            found.append((node.lineno, ast.unparse(node)))
        elif isinstance(node, ast.ImportFrom):
            for alias in node.names:
                name = alias.name
                private = name.startswith("_") and not name.startswith("__")
                if private and not _is_module(package, node, name):
                    module = "." * node.level + (node.module or "")
                    found.append((node.lineno, f"from {module} import {name}"))
    return [f"{line}: {text}" for line, text in sorted(found)]


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_module_uses_another_modules_private_names(path: Path) -> None:
    assert foreign_private(path.read_text(encoding="utf-8"), path.parent) == []


def test_the_check_sees_a_reach_into_another_module() -> None:
    source = (
        "from ._memory import _lease_end\n"
        "class Store:\n"
        "    __slots__ = ('_ledger',)\n"
        "    def take(self, ledger):\n"
        "        with self._ledger._lock:\n"
        "            return ledger._clock() + self._ledger._take()\n"
        "    def _take(self):\n"
        "        return 0\n"
    )
    assert foreign_private(source) == [
        "1: from ._memory import _lease_end",
        "5: self._ledger._lock",
        "6: ledger._clock",
    ]


def test_the_check_lets_a_module_use_what_it_defines() -> None:
    source = (
        "from . import _sfv\n"
        "class Box:\n"
        "    _shared = 1\n"
        "    def __init__(self):\n"
        "        self._inner = 0\n"
        "    def __eq__(self, other):\n"
        "        return self._inner == other._inner and other._shared == Box._shared\n"
        "def made():\n"
        "    box = Box()\n"
        "    box._inner = 2\n"
        "    return box, _sfv.parse\n"
    )
    assert foreign_private(source) == []
