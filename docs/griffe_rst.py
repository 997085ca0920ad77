"""Griffe extension: render the package's reST-flavoured Google docstrings in Markdown.

The docstrings follow Google style (``Args:``, ``Returns:``, ``Raises:``) but cross-reference
with Sphinx roles (``:class:`KeySet```, ``:meth:`~upvest_verify.jwks.JWKSCache.current```) and
introduce code with reST literal blocks (``Example::`` and an indented block). mkdocstrings
would print both verbatim, so this extension rewrites each docstring once it is loaded:

* a role becomes an optional mkdocs-autorefs link (``<autoref ... optional>``): it links when
  the target is rendered somewhere in the site and stays plain code otherwise, so an unknown
  target never breaks ``mkdocs build --strict``;
* a reST literal block becomes a fenced ``python`` block.

Names are resolved the way Sphinx would: in the scope of the object that carries the
docstring, then mapped from the private module that defines an object to the public module
that exports it (``upvest_verify._keyset.KeySet`` is rendered as ``upvest_verify.KeySet``).
Loaded by ``mkdocs.yml`` (``plugins.mkdocstrings.handlers.python.options.extensions``).
"""

from __future__ import annotations

import html
import re
from typing import Any

import griffe

ROLE = re.compile(r":(?:py:)?(?:class|func|meth|attr|mod|data|exc|obj|const):`(?P<body>[^`]+)`")
"""A Sphinx cross-reference role: ``:class:`target```, ``:meth:`~a.b.c```."""

LITERAL_INTRO = re.compile(r"^(?P<indent>[ \t]*)(?P<text>.*?)::[ \t]*$")
"""A line that introduces a reST literal block: ``Example::`` or a paragraph ending in ``::``."""


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def fence_literal_blocks(text: str) -> str:
    """Turn reST literal blocks (``...::`` and an indented block) into fenced Python code.

    Args:
        text: A docstring.

    Returns:
        The docstring with each literal block fenced at its paragraph's indentation.
    """
    lines = text.splitlines()
    out: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        match = LITERAL_INTRO.match(line)
        # A literal block: the intro line, one or more blank lines, then deeper indentation.
        j = i + 1
        while j < len(lines) and not lines[j].strip():
            j += 1
        if (
            match is None
            or line.rstrip().endswith(":::")
            or j == i + 1
            or j >= len(lines)
            or _indent(lines[j]) <= _indent(line)
        ):
            out.append(line)
            i += 1
            continue
        indent, intro = match.group("indent"), match.group("text").rstrip()
        if intro:
            # "Example::" reads "Example:"; "see below ::" reads "see below".
            out.append(f"{indent}{intro}{'' if intro.endswith(' ') else ':'}".rstrip())
            out.append("")
        block_indent = _indent(lines[j])
        k = j
        block: list[str] = []
        while k < len(lines) and (not lines[k].strip() or _indent(lines[k]) >= block_indent):
            block.append(lines[k])
            k += 1
        while block and not block[-1].strip():
            block.pop()
        out.append(f"{indent}```python")
        out.extend(f"{indent}{b[block_indent:]}" if b.strip() else "" for b in block)
        out.append(f"{indent}```")
        if k < len(lines):
            out.append("")
        i = k
    return "\n".join(out)


class RestRoles(griffe.Extension):
    """Rewrite Sphinx roles and reST literal blocks in every docstring of the package."""

    def __init__(self) -> None:
        super().__init__()
        self._public: dict[str, str] = {}

    def on_package(self, *, pkg: griffe.Module, **kwargs: Any) -> None:
        """Map private definitions to their public names, then rewrite the docstrings."""
        self._public = {}
        self._collect_public(pkg)
        for obj in self._objects(pkg):
            if obj.docstring is not None:
                obj.docstring.value = self.rewrite(obj, obj.docstring.value)

    # ------------------------------------------------------------------ public names

    def _collect_public(self, module: griffe.Module) -> None:
        # A public module's exported alias names its definition in a private module:
        # link to the public name, which is the one the reference pages render.
        if not any(part.startswith("_") for part in module.path.split(".")):
            for name, member in module.members.items():
                if name.startswith("_"):
                    continue
                target = member.target_path if isinstance(member, griffe.Alias) else member.path
                self._public.setdefault(target, f"{module.path}.{name}")
        for sub in module.modules.values():
            self._collect_public(sub)

    def _objects(self, obj: griffe.Object) -> list[griffe.Object]:
        found = [obj]
        for member in obj.members.values():
            if not member.is_alias:
                found.extend(self._objects(member))  # type: ignore[arg-type]
        return found

    def public_path(self, path: str) -> str:
        """The public name of ``path`` (or of its longest known prefix), else ``path``."""
        parts = path.split(".")
        for cut in range(len(parts), 0, -1):
            head = ".".join(parts[:cut])
            if head in self._public:
                return ".".join([self._public[head], *parts[cut:]])
        return path

    def resolve(self, obj: griffe.Object, target: str) -> str:
        """The full dotted path ``target`` names in ``obj``'s scope (best effort)."""
        target = target.strip().rstrip("()")
        if target.startswith("."):  # relative to the current package
            package = obj.package.path if obj.is_module else obj.module.package.path
            return package + target
        head, _, rest = target.partition(".")
        scope: griffe.Object | None = obj if obj.is_class or obj.is_module else obj.parent
        while scope is not None:
            try:
                found = scope.resolve(head)
            except (griffe.NameResolutionError, KeyError, ValueError):
                scope = scope.parent
                continue
            return f"{found}.{rest}" if rest else found
        return target

    # ------------------------------------------------------------------ rewriting

    def rewrite(self, obj: griffe.Object, text: str) -> str:
        """Rewrite one docstring: roles to optional links, literal blocks to fences."""
        text = fence_literal_blocks(text)

        def link(match: re.Match[str]) -> str:
            body = match.group("body").strip()
            shown = body.lstrip("~!")
            if body.startswith("~"):
                shown = shown.rsplit(".", 1)[-1]
            shown = shown.lstrip(".")
            identifier = self.public_path(self.resolve(obj, body.lstrip("~!")))
            return (
                f'<autoref identifier="{html.escape(identifier)}" optional>'
                f"<code>{html.escape(shown)}</code></autoref>"
            )

        # Leave fenced code untouched: a role inside an example is literal text there.
        pieces = re.split(r"(^[ \t]*```.*?^[ \t]*```)", text, flags=re.DOTALL | re.MULTILINE)
        return "".join(
            piece if piece.lstrip().startswith("```") else ROLE.sub(link, piece) for piece in pieces
        )
