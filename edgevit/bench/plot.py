"""bench.png: latency against batch per row, and accuracy against latency (matplotlib, the ``plot`` extra)."""

from __future__ import annotations

import os
from pathlib import Path

from .report import BenchReport


def write_plot(report: BenchReport, path: str | os.PathLike, force: bool = False) -> Path:
    """The PNG: p50 latency against batch per ok row; top-1 (or agreement) against batch-1 p50.

    Args:
        report: What :func:`edgevit.bench.run_bench` measured.
        path: The PNG to write (atomically).
        force: Overwrite an existing file.

    Raises:
        MissingDependencyError: matplotlib is not installed (``pip install 'edgevit[plot]'``).
        ArtifactExistsError: ``path`` exists and ``force`` is False.
    """
    from .._deps import require
    from .._io import atomic_path

    matplotlib = require("matplotlib", purpose="drawing the bench plot")
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt
    import matplotlib.ticker  # noqa: F401  (ScalarFormatter)

    ok = [r for r in report.rows if r.status == "ok" and r.latency_ms is not None]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 5))
    colors = {r.name: f"C{i % 10}" for i, r in enumerate(ok)}
    for r in ok:
        pts = {1: r.latency_ms.p50}
        if r.throughput is not None:
            pts[r.throughput.batch] = r.throughput.latency_ms.p50
        for s in r.sweep:
            pts[s.batch] = s.latency_ms.p50
        xs = sorted(pts)
        ax1.plot(xs, [pts[x] for x in xs], marker="o", label=r.name, color=colors[r.name])
    ax1.set_xscale("log", base=2)
    ax1.set_yscale("log")
    ax1.xaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
    ax1.yaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
    ax1.set_xlabel("batch")
    ax1.set_ylabel("p50 latency per batch (ms)")
    ax1.set_title("latency vs batch")
    if ok:
        ax1.legend(fontsize=7)
    labelled = any(r.top1 is not None for r in ok)
    for r in ok:
        y = r.top1 if labelled else r.agreement
        if y is None:
            continue
        ax2.scatter(r.latency_ms.p50, y, color=colors[r.name], label=r.name)  # colors match the left
    ax2.set_xscale("log")
    ax2.xaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
    ax2.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax2.set_xlabel("p50 latency at batch 1 (ms)")
    ax2.set_ylabel("top-1 accuracy" if labelled else
                   "k-NN@5 agreement with the reference" if report.features else "top-1 agreement with the reference")
    ax2.set_title("accuracy vs latency")
    ax2.grid(True, alpha=0.3)
    fig.suptitle(f"edgevit bench: {report.machine.get('gpu') or report.machine.get('cpu')}", fontsize=9)
    fig.tight_layout()
    with atomic_path(path, force=force) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
    return Path(path)


__all__ = ["write_plot"]
