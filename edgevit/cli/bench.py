"""``edgevit bench``: :func:`edgevit.bench.run_bench` and its table (shared with ``edgevit demo``)."""

from __future__ import annotations

import click

from ..runtime.onnxruntime_runner import PROVIDERS
from ._errors import handle_errors
from ._options import (
    LibraryChoice,
    int_list,
    json_option,
    library_option,
    model_override_options,
    preprocessed_option,
    verify_hash_option,
)
from ._render import console, finish, render_certificates


@click.command("bench")
@click.argument("sources", nargs=-1, required=True, metavar="OUTDIR|ARTIFACT...")
@library_option("--data", default_from="edgevit.bench.run:BenchConfig.data",
              help="Labelled data for top-1: 'digits', an ImageFolder, a .npz (raw pixels; see --preprocessed), "
                   "or 'random'.")
@preprocessed_option
@library_option("--samples", type=int, default_from="edgevit.bench.run:BenchConfig.samples", help="At most this many images for accuracy.")
@library_option("--warmup-s", type=float, default_from="edgevit.bench.run:BenchConfig.warmup_s", help="Warm-up seconds per measurement.")
@click.option("--iterations", type=int, help="Timed calls per measurement (default 50).")
@click.option("--duration-s", type=float, help="Time each measurement for this many seconds instead of --iterations.")
@library_option("--time-limit-s", type=float, default_from="edgevit.bench.run:BenchConfig.time_limit_s",
              help="Stop a measurement after this many seconds (once 5 calls were timed).")
@click.option("--threads", type=int, help="CPU threads for PyTorch and ONNX Runtime (default: all available).")
@click.option("--batch", type=int, help="Throughput batch (default: the manifest profile's max, or 32).")
@click.option("--batch-sweep", metavar="1,2,4,...", help="Also measure latency at these batch sizes.")
@library_option("--noise-cv", type=float, default_from="edgevit.bench.run:BenchConfig.noise_cv",
              help="Flag a measurement as noisy when its coefficient of variation exceeds this.")
@library_option("--device", type=LibraryChoice("edgevit.bench.run:DEVICES"),
                default_from="edgevit.bench.run:BenchConfig.device",
              help="auto: PyTorch CUDA rows when a GPU is visible; cpu: none.")
@click.option("--provider", "providers", multiple=True, type=click.Choice(list(PROVIDERS)),
              help="ONNX Runtime providers (repeatable; default cpu, plus cuda when installed).")
@click.option("--no-cuda-graphs", is_flag=True, help="Skip the PyTorch CUDA-graph rows.")
@click.option("--reference", help="Checkpoint of the PyTorch reference (default: the manifest's model.source).")
@click.option("--arch", help="Variant a timm state dict belongs to.")
@model_override_options
@click.option("--attention", is_flag=True, help="Append the per-block attention check for each ONNX artifact.")
@click.option("--report-dir", type=click.Path(file_okay=False),
              help="Where bench.json/.csv/.md/.png go (default: the first OUTDIR, or the first artifact's directory).")
@click.option("--no-report", is_flag=True, help="Write no report files.")
@click.option("--force", is_flag=True, help="Overwrite existing report files.")
@verify_hash_option
@json_option
@handle_errors
def bench_cmd(sources: tuple, batch_sweep: str | None, providers: tuple, no_cuda_graphs: bool,
              report_dir: str | None, no_report: bool, force: bool, as_json: bool, **opts) -> None:
    """Latency, throughput and accuracy of every artifact of OUTDIR (or of each ARTIFACT) next to
    the PyTorch reference, in one table; writes bench.json, bench.csv, bench.md and bench.png.
    Exit status 1 when a row failed."""
    from pathlib import Path

    from .._io import check_output_dir, check_writable
    from ..bench import REPORT_FILES, BenchConfig, run_bench

    if opts["iterations"] is not None and opts["duration_s"] is not None:
        raise click.UsageError("give either --iterations or --duration-s, not both")
    config = BenchConfig(batch_sweep=int_list(batch_sweep, "--batch-sweep"), providers=providers or None,
                         cuda_graphs=not no_cuda_graphs, **opts)
    if not no_report:
        if report_dir is None:
            first = Path(sources[0])
            report_dir = str(first if first.is_dir() else first.parent)
        check_output_dir(report_dir, "--report-dir")  # refuse before spending minutes on timing
        for name in REPORT_FILES.values():
            check_writable(Path(report_dir) / name, force)
    progress = None if as_json else (lambda name: click.echo(f"benchmarking {name} ...", err=True))
    report = run_bench(list(sources), config, progress=progress)
    if not no_report:
        report.write(report_dir, force=force)
    finish(report.to_dict(), as_json, lambda: render_bench(report), report.ok,
           f"bench: {len(report.failures)} row(s) failed:", report.failures)


def render_bench(report) -> None:
    m = report.machine
    click.echo(f"CPU {m.get('cpu')} ({m.get('cpu_cores')} cores, {report.config.get('threads')} threads; "
               f"{'/'.join(m.get('cpu_isa') or []) or 'instruction set unknown'}); "
               f"GPU {m.get('gpu') or 'none'}, driver {m.get('driver')}, CUDA {m.get('cuda')}, "
               f"TensorRT {m.get('tensorrt')}; torch {m.get('torch')}, onnxruntime {m.get('onnxruntime')}")
    jet = m.get("jetson")
    if jet:
        click.echo(f"Jetson {jet.get('model')}: power mode {(jet.get('nvpmodel') or {}).get('mode_name')}, "
                   f"clocks at max: {(jet.get('jetson_clocks') or {}).get('at_max')}")
    click.echo(f"data: {report.data.get('description')}; reference: {report.reference.get('row')}")
    from rich.table import Table

    cols, cells = report.table_rows()
    tbl = Table(title="edgevit bench")
    for i, col in enumerate(cols):
        tbl.add_column(col, no_wrap=i == 0, justify="left" if i < 2 else "right")
    for row in cells:
        tbl.add_row(*row)
    console().print(tbl)
    if report.features:
        click.echo(report.data["agreement"])
    if report.exact_note():
        click.echo(report.exact_note())
    if report.memory_note():
        click.echo(report.memory_note())
    for row in report.rows:
        if row.status != "ok":
            click.echo(f"{row.status}: {row.name}: {row.reason}")
    render_certificates(report.certificates)
    for note in report.warnings:
        click.secho(f"warning: {note}", fg="yellow", err=True)
    if report.files:
        click.echo("report: " + ", ".join(v for v in report.files.values() if v))
