"""``benchmarks/bench_instructions.py``: cachegrind's summary read right, per-call arithmetic.

No valgrind is run here (a real run takes minutes); a canned summary stands in for it.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "bench_instructions.py"

pytestmark = pytest.mark.skipif(not SCRIPT.exists(), reason="no benchmarks/ beside tests/")

SUMMARY = """\
==4242== Cachegrind, a high-precision tracing profiler
==4242== I refs:        709,940,175
==4242== I1  misses:      6,336,347
==4242== LLi misses:         34,105
==4242== I1  miss rate:        0.89%
==4242== LLi miss rate:        0.00%
==4242==
==4242== D refs:        301,237,886  (197,560,117 rd   + 103,677,769 wr)
==4242== D1  misses:      6,776,685  (  5,995,592 rd   +     781,093 wr)
==4242== LLd misses:        311,576  (     67,608 rd   +     243,968 wr)
==4242==
==4242== LL refs:        13,113,032  ( 12,331,939 rd   +     781,093 wr)
==4242== LL misses:         345,681  (    101,713 rd   +     243,968 wr)
"""


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    """The script, imported as a module (it puts benchmarks/ on sys.path itself)."""
    spec = importlib.util.spec_from_file_location("bench_instructions", SCRIPT)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_reads_the_totals_not_the_per_level_lines(bench: ModuleType) -> None:
    """I refs, I1, D1 and LL misses; never LLi/LLd (which share the words) nor miss rates."""
    counts = bench.parse_counts("floor", SUMMARY)
    assert counts == {
        "instructions": 709_940_175,
        "i1_misses": 6_336_347,
        "d1_misses": 6_776_685,
        "ll_misses": 345_681,
    }


def test_a_missing_count_names_the_contender(bench: ModuleType) -> None:
    """Without the cache simulation there are no miss lines: a clear error, not a zero."""
    only_refs = "==1== I refs:        709,940,175\n"
    with pytest.raises(RuntimeError, match="middleware: cachegrind printed no i1_misses"):
        bench.parse_counts("middleware", only_refs)


def test_per_call_is_the_difference_over_the_extra_calls(
    bench: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Start-up and set-up cancel out: (run with base + calls) - (run with base), / calls."""
    totals = {
        2: {"instructions": 1_000, "i1_misses": 10, "d1_misses": 20, "ll_misses": 5},
        12: {"instructions": 51_000, "i1_misses": 110, "d1_misses": 20, "ll_misses": 15},
    }
    seen: list[tuple[str, int, str]] = []

    def fake_run(valgrind: str, name: str, calls: int, rev_folder: str) -> dict[str, int]:
        seen.append((name, calls, rev_folder))
        return totals[calls]

    monkeypatch.setattr(bench, "run_child", fake_run)
    row = bench.per_call("valgrind", "verify str", 2, 10, "")
    assert row == {"instructions": 5_000, "i1_misses": 10, "d1_misses": 0, "ll_misses": 1}
    assert seen == [("verify str", 2, ""), ("verify str", 12, "")]


def test_without_valgrind_it_says_so_and_counts_nothing(
    bench: ModuleType,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """No valgrind on PATH: exit 0, the reason printed and in the JSON."""
    monkeypatch.setattr(bench.shutil, "which", lambda name: None)
    out = tmp_path / "i.json"
    assert bench.main(["--quick", "--json", str(out)]) == 0
    assert "valgrind is not on PATH" in capsys.readouterr().out
    assert '"skipped": "no valgrind"' in out.read_text(encoding="utf-8")
