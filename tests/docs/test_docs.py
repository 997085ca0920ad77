"""The documentation runs: every code block of README.md and docs/**/*.md, and its tables.

Each Python block is one test, run in page order in one namespace per page (see
``docs_support``); ``console`` blocks run their ``upvest-verify`` lines. The other tests
keep the pages honest: no block of an unknown language (which would silently not run),
the reason-code table lists exactly :class:`~upvest_verify.Reason`, every page is in the
site's navigation, every public module has an API reference, README links resolve.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from docs_support import (
    DOCS,
    LANGUAGES_RUN,
    LANGUAGES_SHOWN,
    ROOT,
    SCRATCH,
    close_pages,
    documents,
    label,
    parse,
    run_example,
)
from sybil import Example

from upvest_verify import Reason

PAGES = {path: list(parse(path)) for path in documents()}
EXAMPLES = [(example, page) for page in PAGES.values() for example in page]


@pytest.fixture(scope="module", autouse=True)
def _scratch(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """A scratch folder per page; every page's resources stopped at the end."""
    SCRATCH.append(tmp_path_factory.mktemp("docs"))
    try:
        yield
    finally:
        close_pages()
        SCRATCH.pop()


@pytest.mark.parametrize(
    ("example", "page"), EXAMPLES, ids=[label(example) for example, _ in EXAMPLES]
)
def test_block(example: Example, page: list[Example]) -> None:
    """The block runs as written (after the blocks above it on its page)."""
    run_example(example, page)


# --------------------------------------------------------------------------- the pages

FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})(?P<info>[^`\n]*)$", re.MULTILINE)


def _fences(text: str) -> list[tuple[int, str]]:
    """``(line, language)`` of each opening fence (``""`` when unlabelled)."""
    found: list[tuple[int, str]] = []
    open_fence: str | None = None
    for match in FENCE.finditer(text):
        fence, info = match.group("fence"), match.group("info").strip()
        if open_fence is None:
            open_fence = fence
            line = text.count("\n", 0, match.start()) + 1
            found.append((line, info.split()[0] if info else ""))
        elif fence.startswith(open_fence[0]) and len(fence) >= len(open_fence) and not info:
            open_fence = None
    return found


@pytest.mark.parametrize("path", list(PAGES), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_block_runs_or_is_shown_on_purpose(path: Path) -> None:
    """Each fenced block is labelled, runs (python, console) or is of a shown-only kind."""
    fences = _fences(path.read_text(encoding="utf-8"))
    known = LANGUAGES_RUN + LANGUAGES_SHOWN
    odd = [(line, lang) for line, lang in fences if lang not in known]
    assert not odd, f"blocks of languages neither run nor shown-only (add one): {odd}"
    fenced_python = [line for line, lang in fences if lang == "python"]
    collected = [e.line for e in PAGES[path] if e.line in fenced_python]
    assert collected == fenced_python, "a python block is not collected"


def _table_rows(text: str, heading: str) -> list[list[str]]:
    section = text.split(heading, 1)[1]
    rows = []
    for line in section.splitlines()[1:]:
        if line.startswith("#"):
            break
        if line.startswith("|") and not set(line) <= set("|-: "):
            rows.append([cell.strip() for cell in line.strip("|").split("|")])
    return rows[1:]  # without the header row


def test_reason_reference_lists_exactly_the_enum() -> None:
    """docs/reference/reasons.md has one row per Reason, with its HTTP status."""
    text = (DOCS / "reference" / "reasons.md").read_text(encoding="utf-8")
    rows = _table_rows(text, "## Reason codes")
    listed = {row[0].strip("`"): int(row[1]) for row in rows}
    assert len(listed) == len(rows), "a reason is listed twice"
    assert listed == {reason.value: reason.status_code for reason in Reason}
    assert all(row[2] for row in rows), "every reason says what it means"


def test_every_page_is_in_the_navigation() -> None:
    """mkdocs.yml's nav names every page under docs/ and nothing else."""
    config = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    nav = config.split("\nnav:", 1)[1]
    named = set(re.findall(r":\s*([\w/.-]+\.md)\s*$", nav, flags=re.MULTILINE))
    named |= set(re.findall(r"^\s*-\s*([\w/.-]+\.md)\s*$", nav, flags=re.MULTILINE))
    pages = {str(p.relative_to(DOCS)) for p in DOCS.rglob("*.md")}
    assert named == pages


DOCUMENTED_ELSEWHERE = {
    "upvest_verify.verifier": "its names are rendered with the package (upvest_verify)",
    "upvest_verify.adapters": "a docstring only; each adapter has its own entry",
    "upvest_verify.cli": "the command line, documented on docs/guides/cli.md",
}


def _public_modules() -> set[str]:
    """Every module of the package without a private (underscore) name part."""
    src = ROOT / "src"
    found = set()
    for path in (src / "upvest_verify").rglob("*.py"):
        parts = path.relative_to(src).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        if any(part.startswith("_") for part in parts) or parts[-1] == "__main__":
            continue
        found.add(".".join(parts))
    return found


def test_every_public_module_has_an_api_reference() -> None:
    """Each public module is rendered by a ``::: module`` block of docs/reference/api/.

    A package's submodules are covered by the package's entry (the Django adapter's
    ``apps``, ``checks``...); the command line by its page.
    """
    text = "\n".join(p.read_text(encoding="utf-8") for p in (DOCS / "reference" / "api").glob("*"))
    rendered = set(re.findall(r"^::: ([\w.]+)\s*$", text, flags=re.MULTILINE))
    missing = {
        module
        for module in _public_modules()
        if not any(
            module == r or (r != "upvest_verify" and module.startswith(r + ".")) for r in rendered
        )
        and not any(module == d or module.startswith(d + ".") for d in DOCUMENTED_ELSEWHERE)
    }
    assert not missing, f"public modules without an API reference page: {sorted(missing)}"


@pytest.mark.parametrize("path", list(PAGES), ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(path: Path) -> None:
    """Every relative link of a page names an existing file (and README links into docs/)."""
    text = path.read_text(encoding="utf-8")
    text = re.sub(r"^(`{3,}).*?^\1", "", text, flags=re.DOTALL | re.MULTILINE)  # not in code
    broken = []
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+:", target) or target.startswith("#"):
            continue
        file = target.split("#", 1)[0]
        if not (path.parent / file).exists():
            broken.append(target)
    assert not broken


def test_configuration_reference_lists_every_setting() -> None:
    """docs/reference/configuration.md names every key the adapters accept."""
    pytest.importorskip("upvest_verify.adapters._settings")
    from upvest_verify.adapters._settings import SETTING_NAMES

    text = (DOCS / "reference" / "configuration.md").read_text(encoding="utf-8")
    named = set(re.findall(r"`([A-Z][A-Z0-9_]+)`", text))
    assert set(SETTING_NAMES) - named == set()
