"""``benchmarks/ab_verify.py`` runs: a revision against the working tree, at a tiny size.

Only the shape of what it writes is checked, never a speed.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "ab_verify.py"

pytestmark = [
    pytest.mark.skipif(not SCRIPT.exists(), reason="no benchmarks/ beside tests/"),
    pytest.mark.skipif(
        shutil.which("git") is None or not (ROOT / ".git").exists(),
        reason="needs a git checkout (the script exports a revision with git archive)",
    ),
]


def test_compares_a_revision_with_the_working_tree(tmp_path: Path) -> None:
    """HEAD and the working tree both verify; every ratio is reported."""
    out = tmp_path / "ab.json"
    command = [sys.executable, str(SCRIPT), "--against", "HEAD", "--quick", "--sizes", "1K"]
    done = subprocess.run(
        [*command, "--json", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    document = json.loads(out.read_text(encoding="utf-8"))
    assert document["benchmark"] == "ab_verify"
    assert len(document["commit"]) == 40
    table = document["sizes"]["1 KiB"]
    assert set(table) == {"floor", "rev str", "rev bytes", "now str", "now bytes"}
    assert table["floor"]["fastest/floor"] == 1.0
    for name in ("now str", "now bytes"):
        assert table[name]["paired/rev"] > 0
    assert "rev = HEAD" in done.stdout


def test_an_unknown_revision_is_a_clear_error() -> None:
    """A revision git does not know ends the script with its message, not a traceback."""
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--against", "no-such-revision-xyz", "--quick"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    assert "--against no-such-revision-xyz" in done.stderr
    assert "Traceback" not in done.stderr
