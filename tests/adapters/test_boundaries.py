"""Adapters share helpers, not each other's privates (architecture.md, hynek/svcs anchor)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import upvest_verify.adapters

ADAPTERS = Path(upvest_verify.adapters.__file__).resolve().parent
SHARED = sorted(p for p in ADAPTERS.glob("_*.py") if p.name != "__init__.py")
FRAMEWORK = sorted(
    p
    for p in [*ADAPTERS.glob("*.py"), *ADAPTERS.glob("django/*.py")]
    if not p.name.startswith("_") or p.parent.name == "django"
)
CORE_PUBLIC = {"upvest_verify", "upvest_verify.errors", "upvest_verify.types", "upvest_verify.jwks"}
# The failure diagnosis is public core API too (the rejection log explains refusals with it).
CORE_PUBLIC |= {"upvest_verify.diagnosis"}
# The event ledger sits beside the core (architecture.md); adapters use its public package.
LEDGER_PUBLIC = {"upvest_verify.ledger"}
# The management client sits below the adapters (architecture.md): settings may build a
# key source from it, imported lazily because it is an optional extra.
CLIENT_PUBLIC = {"upvest_verify.client"}

# The one private attribute an adapter still writes, and why: Django has no public
# per-request CSRF exemption; CsrfViewMiddleware, its test client and DRF all use it.
ALLOWED_PRIVATE_WRITES = {("django/middleware.py", "_dont_enforce_csrf_checks")}


def name(path: Path) -> str:
    """The path relative to the adapters package, for messages."""
    return path.relative_to(ADAPTERS).as_posix()


def first_party_imports(path: Path) -> list[tuple[str, list[str]]]:
    """``(module, imported names)`` for every ``upvest_verify`` import in ``path``."""
    found: list[tuple[str, list[str]]] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("upvest_verify"):
            found.append((node.module or "", [a.name for a in node.names]))
        elif isinstance(node, ast.Import):
            found += [(a.name, []) for a in node.names if a.name.startswith("upvest_verify")]
    return found


def test_the_layout_is_the_planned_one() -> None:
    """The shared helpers are the seven planned modules, each under 600 lines; _common is gone."""
    assert [p.name for p in SHARED] == [
        "_asgi.py",
        "_body.py",
        "_delivery.py",
        "_explain.py",
        "_reject.py",
        "_run.py",
        "_settings.py",
        "_url.py",
    ]
    assert not (ADAPTERS / "_common.py").exists()
    for path in SHARED:
        assert len(path.read_text(encoding="utf-8").splitlines()) < 600, name(path)


@pytest.mark.parametrize("path", FRAMEWORK, ids=name)
def test_adapter_imports_only_shared_helpers_and_the_public_core(path: Path) -> None:
    """An adapter imports shared helpers, the core's public API and its own package only."""
    own = name(path)
    for module, names in first_party_imports(path):
        if module in CORE_PUBLIC | LEDGER_PUBLIC:
            continue
        assert module.startswith("upvest_verify.adapters."), f"{own} imports {module}"
        target = module.removeprefix("upvest_verify.adapters.")
        if target.startswith("_"):
            assert all(not n.startswith("_") for n in names), f"{own}: private {names}"
        elif own.startswith("django/"):
            assert target.startswith("django"), f"{own} imports the {target} adapter"
        else:
            # fastapi.py re-exports the middleware and its accessors; nothing else crosses.
            assert (own, target) == ("fastapi.py", "starlette")
            assert names == ["UpvestWebhookMiddleware", "get_delivery", "get_webhook"]


@pytest.mark.parametrize("path", SHARED, ids=name)
def test_shared_helpers_import_no_adapter(path: Path) -> None:
    """A shared helper imports other shared helpers and the public core, never an adapter."""
    for module, _ in first_party_imports(path):
        target = module.removeprefix("upvest_verify.adapters.")
        allowed = CORE_PUBLIC | LEDGER_PUBLIC
        allowed |= CLIENT_PUBLIC if path.name == "_settings.py" else set()
        assert module in allowed or target.startswith("_"), f"{name(path)} imports {module}"


@pytest.mark.parametrize("path", FRAMEWORK, ids=name)
def test_adapter_writes_no_framework_private_attribute(path: Path) -> None:
    """No adapter assigns an underscore attribute on a framework object (``request._body``)."""
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        targets = node.targets if isinstance(node, ast.Assign) else []
        if isinstance(node, (ast.AugAssign, ast.AnnAssign)):
            targets = [node.target]
        for target in targets:
            if (
                isinstance(target, ast.Attribute)
                and target.attr.startswith("_")
                and not (isinstance(target.value, ast.Name) and target.value.id in ("self", "cls"))
            ):
                assert (name(path), target.attr) in ALLOWED_PRIVATE_WRITES, (
                    f"{name(path)}:{node.lineno} writes .{target.attr}"
                )
