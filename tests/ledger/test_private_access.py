"""No ledger module reads another object's private attributes.

Each inbox store gets what it may use of its ledger as an explicit access object
(``MemoryLedgerAccess``, ``SQLiteLedgerAccess``, ``RedisLedgerAccess``), never the
ledger's underscore attributes.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import upvest_verify.ledger

LEDGER = Path(upvest_verify.ledger.__file__).resolve().parent
MODULES = sorted(LEDGER.glob("*.py"))


def foreign_private(source: str) -> list[str]:
    """Every ``x._name`` in ``source`` whose ``x`` is not ``self``, ``cls`` or ``cls(...)``.

    An alternative constructor may finish the instance it just built with ``cls(...)``.
    """
    tree = ast.parse(source)
    built: set[tuple[int, str]] = set()  # (function line, local name bound to cls(...))
    owner: dict[int, int] = {}  # node id -> line of the innermost enclosing function
    for func in ast.walk(tree):
        if isinstance(func, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for node in ast.walk(func):
                owner[id(node)] = func.lineno
                if (
                    isinstance(node, ast.Assign)
                    and isinstance(node.value, ast.Call)
                    and isinstance(node.value.func, ast.Name)
                    and node.value.func.id == "cls"
                ):
                    built |= {(func.lineno, t.id) for t in node.targets if isinstance(t, ast.Name)}
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Attribute) or not node.attr.startswith("_"):
            continue
        if node.attr.startswith("__"):
            continue
        base = node.value
        if isinstance(base, ast.Name) and (
            base.id in ("self", "cls") or (owner.get(id(node)), base.id) in built
        ):
            continue
        found.append((node.lineno, ast.unparse(node)))
    return [f"{line}: {text}" for line, text in sorted(found)]


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.name)
def test_no_module_reads_private_attributes_of_other_objects(path: Path) -> None:
    assert foreign_private(path.read_text(encoding="utf-8")) == []


def test_the_check_sees_a_store_reaching_into_its_ledger() -> None:
    source = (
        "class Store:\n"
        "    def take(self):\n"
        "        with self._ledger._lock:\n"
        "            return ledger._clock()\n"
        "    @classmethod\n"
        "    def make(cls):\n"
        "        made = cls()\n"
        "        made._url = other._url\n"
        "        return made\n"
    )
    assert foreign_private(source) == [
        "3: self._ledger._lock",
        "4: ledger._clock",
        "8: other._url",
    ]
