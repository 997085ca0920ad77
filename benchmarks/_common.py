"""Helpers every benchmark script shares: body sizes, summary statistics, the machine.

Standard library only at import time, so that ``bench_cold.py`` can import it
without loading what it measures.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

__all__ = [
    "ROOT",
    "SRC",
    "child_env",
    "describe_machine",
    "machine_line",
    "parse_size",
    "parse_sizes",
    "size_label",
    "summary",
    "write_json",
]

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"

_SIZE = re.compile(r"(?i)\s*(\d+(?:\.\d+)?)\s*(?:([kmg])(?:i?b)?|b)?\s*")
_UNITS = {None: 1, "k": 1024, "m": 1024**2, "g": 1024**3}
_VERSIONS = (
    "upvest-verify",
    "cryptography",
    "http-message-signatures",
    "http-sf",
    "starlette",
    "uvicorn",
    "anyio",
    "httpx",
    "flask",
    "django",
    "gunicorn",
    "matplotlib",
)


def parse_size(text: str) -> int:
    """Parse a body size: ``512``, ``1K``, ``10K``, ``1M``, ``1KiB``, ``1.5k``, ``64B``.

    ``K``, ``M`` and ``G`` are binary (1024-based), with or without ``B``/``iB``.

    Args:
        text: The size.

    Returns:
        The size in bytes.

    Raises:
        ValueError: Not a size, or not a positive whole number of bytes.
    """
    match = _SIZE.fullmatch(text)
    if match is None:
        raise ValueError(f"not a size: {text!r} (examples: 512, 1K, 10K, 1M)")
    number, unit = match.groups()
    value = float(number) * _UNITS[unit.lower() if unit else None]
    if value != int(value) or value < 1:
        raise ValueError(f"not a positive whole number of bytes: {text!r}")
    return int(value)


def parse_sizes(text: str) -> tuple[int, ...]:
    """Parse a comma-separated list of sizes (``"1K,10K,1M"``), see :func:`parse_size`."""
    return tuple(parse_size(part) for part in text.split(",") if part.strip())


def size_label(size: int) -> str:
    """``1 KiB``, ``10 KiB``, ``1 MiB``, or bytes when not a whole number of KiB."""
    if size >= 1024**2 and size % 1024**2 == 0:
        return f"{size // 1024**2} MiB"
    if size >= 1024 and size % 1024 == 0:
        return f"{size // 1024} KiB"
    return f"{size} B"


def summary(values: Iterable[float], digits: int = 4) -> dict[str, Any]:
    """``{"n", "min", "median", "max"}`` of some measurements, rounded."""
    data = sorted(values)
    if not data:
        return {"n": 0, "min": None, "median": None, "max": None}
    return {
        "n": len(data),
        "min": round(data[0], digits),
        "median": round(statistics.median(data), digits),
        "max": round(data[-1], digits),
    }


def child_env(**extra: str) -> dict[str, str]:
    """The environment for a child Python that imports ``upvest_verify``.

    This tree's ``src/`` goes on ``PYTHONPATH`` when the package is not installed
    (a clean checkout), so every child measures the same code as the parent.
    """
    env = {**os.environ, **extra}
    import importlib.util

    if importlib.util.find_spec("upvest_verify") is None:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(SRC), env.get("PYTHONPATH")]))
    return env


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _tool_version(name: str) -> str | None:
    path = shutil.which(name)
    if path is None:
        return None
    if name == "wrk":
        out = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=10)  # noqa: S603
        first = (out.stdout or out.stderr).splitlines()
        return first[0].strip() if first else path
    return path  # hey has no --version


def describe_machine() -> dict[str, Any]:
    """The facts a benchmark result needs next to it.

    Returns:
        CPU model and count, OS, Python, OpenSSL (as ``cryptography`` links it, and
        as ``ssl`` does), the versions of the libraries involved (``None`` if not
        installed), where ``upvest_verify`` is imported from, the load generators
        found on ``PATH``, and the load average.
    """
    versions: dict[str, str | None] = {}
    for name in _VERSIONS:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    try:
        from cryptography.hazmat.backends.openssl.backend import backend

        crypto_openssl: str | None = backend.openssl_version_text()
    except Exception:  # pragma: no cover - cryptography missing or without OpenSSL
        crypto_openssl = None
    import ssl

    env = child_env()
    where = subprocess.run(
        [sys.executable, "-c", "import upvest_verify; print(upvest_verify.__file__)"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    ).stdout.strip()
    try:
        load: list[float] | None = [round(x, 2) for x in os.getloadavg()]
    except OSError:  # pragma: no cover - not on every platform
        load = None
    return {
        "cpu_model": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "machine": platform.machine(),
        "system": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "python_implementation": platform.python_implementation(),
        "openssl_cryptography": crypto_openssl,
        "openssl_ssl": ssl.OPENSSL_VERSION,
        "versions": versions,
        "upvest_verify_from": str(Path(where).parent) if where else None,
        "load_generators": {name: _tool_version(name) for name in ("hey", "wrk")},
        "load_average": load,
    }


def machine_line(info: dict[str, Any]) -> str:
    """One printable line of :func:`describe_machine`'s facts."""
    v = info["versions"]
    load = info.get("load_average")
    return (
        f"Python {info['python']} ({info['python_implementation']}), cryptography "
        f"{v.get('cryptography')} ({info['openssl_cryptography']}), {info['cpu_count']} CPUs "
        f"({info['cpu_model']}), {info['system']}"
        + (", load average {:.2f} {:.2f} {:.2f}".format(*load) if load else "")
    )


def write_json(path: Path, document: dict[str, Any]) -> None:
    """Write ``document`` as indented JSON, creating the parent folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=1, sort_keys=False) + "\n", encoding="utf-8")
