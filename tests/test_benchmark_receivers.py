"""``benchmarks/bench_receivers.py`` and its servers at tiny counts: the code runs, no speed is checked.

The offload section starts real uvicorn servers on loopback and loads them with ``hey``
(``.ci/run`` installs it, as it installs redis-server); without ``hey`` on ``PATH`` that
test skips and says why. The in-process section runs in
``tests/test_benchmark_harness.py`` (``python -m benchmarks --quick``).
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import sys
from pathlib import Path
from types import ModuleType

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"

pytestmark = [
    pytest.mark.skipif(not BENCHMARKS.is_dir(), reason="no benchmarks/ beside tests/"),
    pytest.mark.skipif(
        importlib.util.find_spec("starlette") is None
        or importlib.util.find_spec("uvicorn") is None,
        reason="the receivers need Starlette and uvicorn: pip install -e '.[all]'",
    ),
]

needs_hey = pytest.mark.skipif(
    shutil.which("hey") is None, reason="hey is not on PATH (Debian: apt-get install -y hey)"
)


def _script(name: str) -> ModuleType:
    # The scripts import their siblings (_common, bench_verify) by bare name.
    if str(BENCHMARKS) not in sys.path:
        sys.path.insert(0, str(BENCHMARKS))
    return importlib.import_module(name)


def test_first_request_after_start_up() -> None:
    """Fresh interpreters time the first webhook after start-up, with and without lifespan."""
    result = _script("bench_receivers").first_section(interpreters=1, requests=3)
    assert len(result["modes"]) == 4
    for entry in result["modes"].values():
        assert entry["first/warm"]["n"] == 1
    assert result["modes"]["offload, lifespan (warm-up)"]["startup_ms"]["median"] > 0


def test_command_line_writes_json_and_skips_without_a_load_generator(tmp_path: Path) -> None:
    """The script's command line runs a section and writes its figures; no hey, no servers."""
    out = tmp_path / "receivers.json"
    argv = ["--quick", "--only", "inprocess", "offload", "--load-generator", "none"]
    assert _script("bench_receivers").main([*argv, "--json", str(out)]) == 0
    sections = json.loads(out.read_text(encoding="utf-8"))["sections"]
    assert sections["inprocess"]["status"] == "ok"
    assert sections["offload"] == {"status": "skipped", "reason": "--load-generator none"}


def test_accepted_sockets_nodelay() -> None:
    """Only a protocol-0 listener without TCP_NODELAY (uvicorn --workers) gives Nagle sockets."""
    assert list(_script("_receiver_servers").accepted_nodelay().values()) == [0, 1, 1]


@needs_hey
def test_offload_modes_under_hey() -> None:
    """Each offload mode serves a few webhooks under hey, with CPU, lag and idle-lag figures."""
    servers = _script("_receiver_servers")
    result = servers.offload_section(shutil.which("hey") or "hey", rounds=1, requests=48)
    for load in ("saturated", "paced"):
        assert set(result[load]) == set(servers.OFFLOAD_MODES)
        for figures in result[load].values():
            assert figures["requests_per_s"]["median"] > 0
            assert figures["server_cpu_us_per_request"]["median"] > 0
            assert figures["loop_lag_p99_ms"]["n"] == 1
            assert figures["loop_lag_idle_p99_ms"]["n"] == 1
    assert result["offload/inline requests_per_s"]["n"] == 1
