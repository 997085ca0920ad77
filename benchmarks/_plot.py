"""The PNG of a ``python -m benchmarks`` run (matplotlib, imported only here).

Panels, each drawn when its section ran:

* cost per verification against body size: the floor, ``Verifier.verify`` and
  ``http-message-signatures`` (median µs per call, quartiles shaded);
* cold start: import time of the floor's modules and ours (median, min-max bars),
  and the first verification over a warm one, with and without ``warm_up()``;
* receiver throughput per mode (requests/s of the best round, every round as a dot).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["have_matplotlib", "render"]

_VERIFY_LINES = (
    ("floor", "floor (SHA-512 + one P-521 verify)", "black"),
    ("Verifier", "upvest-verify Verifier.verify", "tab:blue"),
    ("peer", "http-message-signatures", "tab:orange"),
)


def have_matplotlib() -> bool:
    """Whether matplotlib can be imported."""
    import importlib.util

    return importlib.util.find_spec("matplotlib") is not None


def _section(document: dict[str, Any], name: str) -> dict[str, Any] | None:
    section = document.get("sections", {}).get(name, {})
    results: dict[str, Any] | None = section.get("results")
    return results


def _size_text(size: int) -> str:
    if size >= 1024**2 and size % 1024**2 == 0:
        return f"{size // 1024**2} MiB"
    if size >= 1024 and size % 1024 == 0:
        return f"{size // 1024} KiB"
    return f"{size} B"


def _verify_panel(ax: Any, results: dict[str, Any]) -> None:
    sizes = [entry["size"] for entry in results["sizes"]]
    for name, label, color in _VERIFY_LINES:
        points = [
            (entry["size"], entry["contenders"][name])
            for entry in results["sizes"]
            if name in entry["contenders"]
        ]
        if not points:
            continue
        xs = [p[0] for p in points]
        ax.plot(xs, [p[1]["median_us"] for p in points], marker="o", label=label, color=color)
        ax.fill_between(
            xs,
            [p[1]["q1_us"] for p in points],
            [p[1]["q3_us"] for p in points],
            color=color,
            alpha=0.15,
        )
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xticks(sizes)
    ax.set_xticklabels([_size_text(s) for s in sizes])
    ax.set_xlabel("body size (RFC 9421 webhook, six covered components)")
    ax.set_ylabel("µs per verification (median)")
    ax.set_title("Cost per verification")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize="small")


def _cold_panel(ax: Any, results: dict[str, Any]) -> None:
    lines = results["imports"]["lines"]
    names = list(lines)
    medians = [lines[n]["ms"]["median"] for n in names]
    lows = [lines[n]["ms"]["median"] - lines[n]["ms"]["min"] for n in names]
    highs = [lines[n]["ms"]["max"] - lines[n]["ms"]["median"] for n in names]
    colors = ["black" if n == "floor" else "tab:blue" for n in names]
    ax.bar(range(len(names)), medians, yerr=[lows, highs], color=colors, alpha=0.8, capsize=3)
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels(names, rotation=15, fontsize="small")
    ax.set_ylabel("ms in a fresh interpreter (median, min-max)")
    for i, name in enumerate(names):
        ratio = lines[name].get("ratio_to_floor")
        if ratio:
            top = lines[name]["ms"]["max"]
            ax.annotate(f"{ratio['median']:.2f}x", (i, top), ha="center", va="bottom", fontsize=8)
    first = results.get("first_verify", {}).get("modes", {})
    ax.set_xlabel(
        "first / warm verification (median): "
        + ", ".join(
            f"{n} {e['first_over_warm']['median']:.2f}x"
            for n, e in first.items()
            if "first_over_warm" in e
        ),
        fontsize="small",
    )
    ax.set_title("Cold start: imports (ratio to the floor's, paired)")


def _throughput_panel(ax: Any, results: dict[str, Any] | None, reason: str | None) -> None:
    ax.set_title("Receiver throughput (Starlette middleware, uvicorn)")
    modes = {
        name: entry
        for name, entry in (results or {}).get("modes", {}).items()
        if "requests_per_s" in entry
    }
    if not modes:
        ax.text(0.5, 0.5, reason or "not measured", ha="center", va="center", wrap=True)
        ax.set_axis_off()
        return
    names = list(modes)
    ax.bar(range(len(names)), [modes[n]["requests_per_s"] for n in names], alpha=0.8)
    for i, name in enumerate(names):
        rounds = modes[name].get("requests_per_s_all", [])
        ax.scatter([i] * len(rounds), rounds, color="black", s=8, zorder=3)
        if modes[name].get("failures"):
            ax.annotate(f"{modes[name]['failures']} refused", (i, 0), ha="center", fontsize=8)
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels(names)
    load = (results or {}).get("load", "?")
    ax.set_ylabel(f"requests/s (load: {load}, concurrency {results.get('concurrency')})")
    ax.grid(True, axis="y", alpha=0.3)


def render(document: dict[str, Any], path: Path) -> Path:
    """Draw the run's panels into ``path`` (PNG).

    Args:
        document: The combined results of ``python -m benchmarks``.
        path: Where to write the PNG.

    Returns:
        ``path``.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    verify = _section(document, "verify")
    cold = _section(document, "cold")
    throughput_section = document.get("sections", {}).get("throughput", {})
    panels = [p for p in ("verify", "cold") if _section(document, p)] + ["throughput"]
    fig, axes = plt.subplots(1, len(panels), figsize=(6.5 * len(panels), 5.2), squeeze=False)
    for ax, panel in zip(axes[0], panels, strict=True):
        if panel == "verify" and verify:
            _verify_panel(ax, verify)
        elif panel == "cold" and cold:
            _cold_panel(ax, cold)
        else:
            _throughput_panel(
                ax, throughput_section.get("results"), throughput_section.get("reason")
            )
    machine = document.get("machine", {})
    versions = machine.get("versions", {})
    fig.suptitle(
        f"upvest-verify {versions.get('upvest-verify')} - {machine.get('cpu_model')}"
        f" x {machine.get('cpu_count')}, Python {machine.get('python')},"
        f" {machine.get('openssl_cryptography')} - {document.get('created', '')}"
        + (" (quick)" if document.get("quick") else ""),
        fontsize=10,
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
