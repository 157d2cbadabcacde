"""``edgevit demo``: :func:`edgevit.demo.run_demo`, rendered as the bench table and a step table."""

from __future__ import annotations

from pathlib import Path

import click

from .._deps import require_export
from ..manifest import Manifest
from ._errors import handle_errors
from ._options import json_option, library_option
from ._render import finish, render_certificates, table
from .bench import render_bench


@click.command("demo")
@click.option("-o", "--output", help="Run directory (default: runs/demo-<timestamp>).")
@click.option("--checkpoint", help="Use this digits-tiny checkpoint instead of training or the cached one.")
@click.option("--retrain", is_flag=True, help="Train even when a cached checkpoint exists.")
@click.option("--epochs", type=int, help="Training epochs (default: the tuned default).")
@library_option("--iterations", "bench_iterations", type=int, default_from="edgevit.demo:DemoConfig.bench_iterations",
                help="Timed calls per bench measurement.")
@click.option("--force", is_flag=True, help="Write into a non-empty run directory.")
@json_option
@handle_errors
def demo_cmd(as_json: bool, **opts) -> None:
    """Train (or reuse) digits-tiny, export all five precisions with the gate, build engines when
    TensorRT exists, verify (attention included) and print the bench table."""
    require_export("the demo (it trains and exports a model)")
    from ..demo import DemoConfig, run_demo

    result = run_demo(DemoConfig(progress=not as_json, **opts), echo=lambda m: click.echo(m, err=True))

    def render() -> None:
        if result.bench is not None:
            render_bench(result.bench)
        rows = [[s["step"], s["status"], f"{s['seconds']:.1f}", s.get("reason") or s.get("summary", "")]
                for s in result.steps]
        table(f"edgevit demo: {result.run_dir} ({result.seconds:.0f} s)", ["step", "status", "s", "note"], rows)
        exported = Path(result.run_dir) / "export"
        if result.bench is None and Manifest.path_in(exported).exists():  # else the bench table's report shows them
            render_certificates(Manifest.load(exported).certificate_records())

    finish(result.to_dict(), as_json, render, result.ok, "demo: a step failed:",
           [f"{s['step']}: {s.get('reason', '')}" for s in result.steps if s["status"] == "failed"])
