"""``python -m benchmarks`` runs end to end: a smoke test at tiny sizes, no load generator.

The harness is run as a user runs it, from the repository root in a child process;
only the shape of what it writes is checked, never a speed.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.skipif(
    not (ROOT / "benchmarks" / "__main__.py").exists(), reason="no benchmarks/ beside tests/"
)


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], Path, str]:
    """One quick run of every default section: the JSON, its folder and the output."""
    out = tmp_path_factory.mktemp("bench")
    command = [sys.executable, "-m", "benchmarks", "--quick", "--sizes", "256,1K"]
    command += ["--load-generator", "none", "--hostile-targets", "none"]
    command += ["--out", str(out), "--name", "smoke"]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    document = json.loads((out / "smoke.json").read_text(encoding="utf-8"))
    return document, out, done.stdout


def test_results_describe_the_machine(run: tuple[dict[str, Any], Path, str]) -> None:
    """The JSON names the CPU, Python, OpenSSL and library versions."""
    document, _, _ = run
    assert document["schema"] == 1
    assert document["quick"] is True
    machine = document["machine"]
    for key in ("cpu_model", "cpu_count", "python", "openssl_cryptography", "load_average"):
        assert key in machine
    assert machine["versions"]["cryptography"]
    assert machine["versions"]["upvest-verify"]


def test_every_section_reports(run: tuple[dict[str, Any], Path, str]) -> None:
    """Each default section ran and left its figures; throughput is skipped, with why."""
    document, _, stdout = run
    sections = document["sections"]
    expected = {"verify", "cold", "hostile", "rotation", "throughput", "receivers", "memory"}
    assert set(sections) == expected
    measured = ["verify", "cold", "hostile", "rotation"]
    for name in ("receivers", "memory"):
        if importlib.util.find_spec("starlette") is not None:
            measured.append(name)
        else:  # the core-only environment: the middleware cannot be measured
            assert sections[name]["status"] == "skipped"
            assert "Starlette" in sections[name]["reason"]
    for name in measured:
        assert sections[name]["status"] == "ok", name
        assert sections[name]["results"], name
    assert sections["throughput"]["status"] == "skipped"
    assert "load generator" in sections["throughput"]["reason"]
    assert "throughput: skipped" in stdout


def test_verify_figures_per_size(run: tuple[dict[str, Any], Path, str]) -> None:
    """Verification cost per body size: the floor, ours and the ratios between them."""
    document, _, _ = run
    results = document["sections"]["verify"]["results"]
    assert [entry["size"] for entry in results["sizes"]] == [256, 1024]
    for entry in results["sizes"]:
        for name in ("floor", "Verifier", "verify()", "v6 floor", "v6 Verifier"):
            assert entry["contenders"][name]["median_us"] > 0
        assert entry["ratios"]["ours/floor"]["paired_median"] > 0
        peer = results["peer"] is not None
        assert ("peer" in entry["contenders"]) is peer


def test_cold_start_figures(run: tuple[dict[str, Any], Path, str]) -> None:
    """Import times against the floor's, and first against warm verification."""
    document, _, _ = run
    results = document["sections"]["cold"]["results"]
    lines = results["imports"]["lines"]
    assert {"floor", "import upvest_verify", "verify-ready"} <= set(lines)
    assert lines["import upvest_verify"]["ratio_to_floor"]["n"] == results["imports"]["runs"]
    modes = results["first_verify"]["modes"]
    assert set(modes) == {"floor", "ours", "ours + warm_up"}
    assert modes["ours + warm_up"]["warm_up_ms"]["median"] > 0
    assert modes["ours + warm_up"]["first_loaded_modules"] == []
    assert results["import_costs"]


def test_memory_figures(run: tuple[dict[str, Any], Path, str]) -> None:
    """Peak extra memory per contender for a 1 MiB body, and RSS samples over the run."""
    document, _, _ = run
    if importlib.util.find_spec("starlette") is None:
        pytest.skip("Starlette is not installed: the memory section is skipped")
    results = document["sections"]["memory"]["results"]
    assert results["body_bytes"] == 1024 * 1024
    per_request = results["per_request"]
    for name in ("verify, str headers", "middleware, one message", "middleware, 64 KiB chunks"):
        assert per_request[name]["peak_extra_bytes"]["median"] > 0, name
    assert per_request["middleware, 64 KiB chunks"]["ratio"] >= 1  # the chunks are joined
    flatness = results["flatness"]
    assert flatness["requests"] == 2000
    assert [s["requests"] for s in flatness["samples"]] == list(range(0, 2001, 100))
    assert set(results["targets"]) >= {"middleware_ratio", "ratio_met", "flat"}


def test_a_plot_is_written(run: tuple[dict[str, Any], Path, str]) -> None:
    """With matplotlib, the PNG named in the JSON exists and is a PNG."""
    if importlib.util.find_spec("matplotlib") is None:
        pytest.skip("matplotlib is not installed (the bench dependency group has it)")
    document, out, _ = run
    assert document["plot"] == "smoke.png"
    assert (out / "smoke.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
