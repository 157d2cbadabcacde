"""The ``edgevit`` command line. Thin: each command parses, calls one library function, renders.

Errors map to messages in one table (``_EXIT_CODES``): usage errors exit 2, failures exit 1.
Every command takes ``--json`` for machine-readable output.
"""

from __future__ import annotations

import functools
import json
import os
import sys

import click

from .errors import EdgeVitError

# exception type -> (exit status, label). The first matching entry wins.
_EXIT_CODES: list[tuple[type[BaseException], int, str]] = [
    (EdgeVitError, 1, "error"),
    (ValueError, 2, "invalid value"),
    (FileNotFoundError, 1, "file not found"),
]


def _to_jsonable(obj):
    if hasattr(obj, "to_dict"):
        return obj.to_dict()
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if hasattr(obj, "__fspath__"):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def emit_json(data) -> None:
    click.echo(json.dumps(data, indent=2, default=_to_jsonable))


def handle_errors(fn):
    """Turn library errors into one clear message on stderr and the table's exit status."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except click.exceptions.ClickException:
            raise
        except tuple(exc for exc, _, _ in _EXIT_CODES) as exc:
            for exc_type, code, label in _EXIT_CODES:
                if isinstance(exc, exc_type):
                    ctx = click.get_current_context(silent=True)
                    if ctx is not None and ctx.params.get("as_json"):
                        click.echo(json.dumps({"ok": False, "error": label, "type": type(exc).__name__,
                                               "message": str(exc)}))
                    click.secho(f"edgevit: {label}: {exc}", fg="red", err=True)
                    sys.exit(code)
            raise

    return wrapper


json_option = click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="edgevit")
def main() -> None:
    """edgevit: train or load a ViT, export it through ONNX to TensorRT, and prove nothing broke."""


def table(title: str, columns: list[str], rows: list[list]) -> None:
    """Render a terminal table (rich)."""
    from rich.console import Console
    from rich.table import Table

    tbl = Table(title=title)
    for col in columns:
        tbl.add_column(col)
    for row in rows:
        tbl.add_row(*[str(v) for v in row])
    Console().print(tbl)


# ---------------------------------------------------------------- models, info
@main.command("models")
@json_option
@handle_errors
def models_cmd(as_json: bool) -> None:
    """List the named model variants."""
    from .models import count_params, get_variant, list_variants, macs_per_image
    from .models.vit import VisionTransformer

    rows = []
    for name in list_variants():
        v = get_variant(name)
        c = v.config
        rows.append({"name": name, "img_size": c.img_size, "patch_size": c.patch_size, "embed_dim": c.embed_dim,
                     "depth": c.depth, "num_heads": c.num_heads, "num_classes": c.num_classes,
                     "gmacs": round(macs_per_image(c) / 1e9, 4), "description": v.description})
    if as_json:
        emit_json(rows)
        return
    table("edgevit model variants", ["name", "img", "patch", "dim", "depth", "heads", "classes", "GMACs"],
          [[r["name"], r["img_size"], r["patch_size"], r["embed_dim"], r["depth"], r["num_heads"],
            r["num_classes"], r["gmacs"]] for r in rows])


@main.command("info")
@click.argument("source")
@click.option("--arch", help="Variant name for a timm state dict (inferred from shapes otherwise).")
@json_option
@handle_errors
def info_cmd(source: str, arch: str | None, as_json: bool) -> None:
    """Parameters, GMACs, tokens, heads, input spec and TensorRT fused-MHA eligibility of SOURCE."""
    from .models.info import model_info

    info = model_info(source, arch=arch)
    if as_json:
        emit_json(info)
        return
    rows = [[k, v] for k, v in info.items() if not isinstance(v, dict)]
    for k, v in info["fused_mha"].items():
        rows.append([f"fused_mha.{k}", v])
    table(f"edgevit info: {source}", ["field", "value"], rows)


# ---------------------------------------------------------------- train, eval
@main.command("train")
@click.option("--model", help="Variant name or checkpoint to fine-tune.")
@click.option("--arch", help="Variant a timm state dict belongs to.")
@click.option("--data", help="'digits' (bundled), an ImageFolder, or a .npz.")
@click.option("--epochs", type=int, help="Epochs (default: the tuned default for digits-tiny).")
@click.option("--batch-size", type=int, help="Per process.")
@click.option("--lr", type=float, help="Peak learning rate (AdamW).")
@click.option("--weight-decay", type=float)
@click.option("--warmup-epochs", type=float)
@click.option("--schedule", type=click.Choice(["cosine", "onecycle"]))
@click.option("--label-smoothing", type=float)
@click.option("--augment", type=click.Choice(["affine", "shift", "none"]),
              help="Training augmentation.")
@click.option("--amp", type=click.Choice(["auto", "bf16", "fp16", "off"]),
              help="Mixed precision on CUDA (ignored on CPU).")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]))
@click.option("--seed", type=int)
@click.option("-o", "--output", help="Run directory (default: runs/train-<timestamp>).")
@click.option("--resume", help="Continue the run in this directory.")
@click.option("--force", is_flag=True, help="Write into a run directory that already holds checkpoints.")
@json_option
@handle_errors
def train_cmd(as_json: bool, **opts) -> None:
    """Train a ViT (digits-tiny on the bundled digits by default). Works under torchrun (DDP)."""
    from .train import TrainConfig, train

    # Options left out keep TrainConfig's tuned defaults (one place for them).
    cfg = TrainConfig(**{k: v for k, v in opts.items() if v is not None}, progress=None if not as_json else False)
    result = train(cfg)
    if int(os.environ.get("RANK", "0")) != 0:  # under torchrun, rank 0 reports
        return
    if as_json:
        emit_json({"ok": True, "test_accuracy": result.test_accuracy, "checkpoint": result.checkpoint,
                   "wall_time_s": round(result.wall_time_s, 2), **{k: v for k, v in result.to_dict().items()
                                                                  if k not in ("history",)}})
        return
    click.echo(f"test accuracy {result.test_accuracy:.4f} ({result.num_test} images), best val "
               f"{result.best_val_accuracy:.4f} at epoch {result.best_epoch}, {result.wall_time_s:.1f} s "
               f"on {result.device} x{result.world_size}")
    click.echo(f"checkpoint: {result.checkpoint}")


@main.command("eval")
@click.argument("source")
@click.option("--data", default="digits", show_default=True, help="'digits', an ImageFolder, or a .npz with labels.")
@click.option("--split", type=click.Choice(["train", "val", "test", "all"]), default="test", show_default=True)
@click.option("--arch", help="Variant a timm state dict belongs to.")
@click.option("--batch-size", type=int, default=256, show_default=True)
@json_option
@handle_errors
def eval_cmd(source: str, data: str, split: str, arch: str | None, batch_size: int, as_json: bool) -> None:
    """Top-1/top-5 accuracy of SOURCE on labelled data, with a confusion summary."""
    from .evaluate import evaluate

    report = evaluate(source, data=data, split=split, arch=arch, batch_size=batch_size)
    if as_json:
        emit_json(report.to_dict())
        return
    click.echo(f"{report.source} on {report.data}: top-1 {report.top1:.4f}, top-5 {report.top5:.4f} "
               f"({report.samples} images)")
    worst = sorted(report.per_class.items(), key=lambda kv: kv[1])[:5]
    table("lowest per-class accuracy", ["class", "accuracy"], [[k, f"{v:.4f}"] for k, v in worst])
    if report.confusions:
        table("most frequent confusions", ["true", "predicted", "count"],
              [[c["true"], c["predicted"], c["count"]] for c in report.confusions])


# ---------------------------------------------------------------- export, lint
@main.command("export")
@click.argument("source")
@click.option("-o", "--output", required=True, type=click.Path(file_okay=False),
              help="Output directory: model.onnx and edgevit.json are written there.")
@click.option("--arch", help="Variant name for a timm state dict (inferred from shapes otherwise).")
@click.option("--opset", type=int, help="ONNX opset (default: 18 for decomposed attention, 23 for fused; >= 17).")
@click.option("--attention", type=click.Choice(["decomposed", "fused"]), default=None,
              help="decomposed: MatMul-Softmax-MatMul, Q pre-scaled (default; TensorRT 10.3 parses it). "
                   "fused: the opset-23 Attention op (TensorRT >= 10.14).")
@click.option("--batch", "batch", metavar="MIN,OPT,MAX",
              help="Dynamic batch bounds, recorded for TensorRT profiles (default 1,1,32).")
@click.option("--static-batch", type=int, metavar="N", help="Fix the batch to N instead of a dynamic batch.")
@click.option("--no-simplify", is_flag=True, help="Skip onnxslim.")
@click.option("--force", is_flag=True, help="Overwrite model.onnx / edgevit.json in OUTPUT.")
@json_option
@handle_errors
def export_cmd(source: str, output: str, arch: str | None, opset: int | None, attention: str | None,
               batch: str | None, static_batch: int | None, no_simplify: bool, force: bool, as_json: bool) -> None:
    """Export SOURCE (variant name or checkpoint) to OUTPUT/model.onnx, verified against PyTorch."""
    from .export.onnx import DEFAULT_ATTENTION, ExportConfig, export_onnx, parse_batch

    if batch is not None and static_batch is not None:
        raise ValueError("give either --batch MIN,OPT,MAX or --static-batch N, not both")
    options = {"attention": attention or DEFAULT_ATTENTION, "opset": opset, "static_batch": static_batch,
               "simplify": not no_simplify}
    if batch is not None:
        options["batch"] = parse_batch(batch)
    result = export_onnx(source, output, ExportConfig(**options), arch=arch, force=force)
    if as_json:
        emit_json(result.to_dict())
        return
    art = result.manifest.artifact(precision="fp32", format="onnx")
    b = result.manifest.batch
    rows = [["onnx", result.onnx_path], ["manifest", result.manifest_path],
            ["opset / attention", f"{result.manifest.export['opset']} / {result.manifest.export['attention']}"],
            ["batch", f"dynamic {b['min']}..{b['max']} (opt {b['opt']})" if b["dynamic"] else f"static {b['min']}"],
            ["sha256", art.sha256[:16] + "..."], ["external data", ", ".join(art.external_data) or "no"],
            ["simplified", "yes" if result.simplify.get("applied") else "no"]]
    for check in result.verification.get("checks", []):
        rows.append([f"vs PyTorch: {check['input']}",
                     f"max abs {check['max_abs']:.2e}, rel {check['max_rel_to_scale']:.1e}, "
                     f"top-1 agree {check['top1_agree']:.3f}"])
    table(f"edgevit export: {source}", ["field", "value"], rows)
    for note in result.warnings:
        click.secho(f"note: {note}", fg="yellow", err=True)
    if result.lint and result.lint.findings:
        _lint_table(result.lint)


def _lint_table(report) -> None:
    table(f"edgevit lint (TensorRT {report.tensorrt_version}): {report.path}", ["severity", "code", "message"],
          [[f.severity, f.code, f.message] for f in report.findings])


@main.command("lint")
@click.argument("model_path", metavar="MODEL.onnx", type=click.Path())
@click.option("--trt-version", "tensorrt_version", default="10.3", show_default=True,
              help="TensorRT version to check against (10.3 = JetPack 6).")
@json_option
@handle_errors
def lint_cmd(model_path: str, tensorrt_version: str, as_json: bool) -> None:
    """ViT- and TensorRT-aware checks of an ONNX graph; exit status 1 when there are errors."""
    from .export.lint import lint_onnx

    report = lint_onnx(model_path, tensorrt_version=tensorrt_version)
    if as_json:
        emit_json(report.to_dict())
    elif report.findings:
        _lint_table(report)
    else:
        click.echo(f"{model_path}: no findings (TensorRT {tensorrt_version})")
    if not report.ok:
        if not as_json:
            click.secho(f"edgevit: lint: {len(report.errors)} error(s)", fg="red", err=True)
        sys.exit(1)


# ---------------------------------------------------------------- verify
def _csv(value: str | None) -> tuple | None:
    return tuple(v.strip() for v in value.split(",") if v.strip()) if value else None


@main.command("verify")
@click.argument("reference")
@click.argument("candidate", required=False)
@click.option("--data", default="random", show_default=True,
              help="'random' (seeded normal), 'digits', an ImageFolder directory or a preprocessed .npy.")
@click.option("--samples", type=int, default=64, show_default=True, help="How many inputs to compare on.")
@click.option("--batch-size", type=int, default=32, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of --data random.")
@click.option("--precision", type=click.Choice(["fp32", "fp16", "bf16", "int8", "fp8"]),
              help="Candidate precision: picks the OUTDIR artifact and the tolerance row (default: detected).")
@click.option("--format", "fmt", type=click.Choice(["onnx", "tensorrt"]),
              help="Which artifact of an OUTDIR to take (default: the ONNX one).")
@click.option("--atol", type=float, help="Override the absolute tolerance of final outputs.")
@click.option("--rtol", type=float, help="Override the relative tolerance of final outputs.")
@click.option("--min-cosine", type=float, help="Override the minimum per-sample cosine similarity.")
@click.option("--min-agreement", type=float, help="Override the minimum top-1 agreement (0..1).")
@click.option("--attn-atol", type=float, help="Override the absolute tolerance of attention outputs.")
@click.option("--attn-rtol", type=float, help="Override the relative tolerance of attention outputs.")
@click.option("--attn-min-cosine", type=float, help="Override the minimum cosine of attention outputs.")
@click.option("--attention", is_flag=True,
              help="Also compare every block's attention output with a float64 PyTorch math reference.")
@click.option("--device", default="cpu", show_default=True, help="PyTorch device: cpu or cuda[:N].")
@click.option("--dtypes", default="fp32,fp16,bf16", show_default=True,
              help="PyTorch candidate with --attention: dtypes to check, comma-separated.")
@click.option("--backends", help="PyTorch candidate with --attention: subset of "
              "flash,efficient,cudnn,math,naive (default: all).")
@click.option("--provider", type=click.Choice(["cpu", "cuda", "tensorrt"]), default="cpu", show_default=True,
              help="ONNX Runtime execution provider.")
@click.option("--threads", type=int, help="ONNX Runtime intra-op threads.")
@click.option("--arch", help="Variant a timm state dict belongs to.")
@click.option("--report", "report_path", type=click.Path(dir_okay=False), help="Also write the JSON report here.")
@click.option("--force", is_flag=True, help="Overwrite an existing --report file.")
@json_option
@handle_errors
def verify_cmd(reference: str, candidate: str | None, fmt: str | None, dtypes: str, backends: str | None,
               provider: str, report_path: str | None, force: bool, as_json: bool, **opts) -> None:
    """Compare CANDIDATE with REFERENCE on the same inputs; exit 1 if any check fails.

    REFERENCE: a checkpoint or variant (run in PyTorch) or an ONNX file. CANDIDATE: an ONNX
    file, a TensorRT engine, an export OUTDIR, a checkpoint, or omitted / 'torch' for the
    reference itself in PyTorch (with --attention: every SDPA backend at every --dtypes).
    """
    from ._io import check_writable, write_text_atomic
    from .verify import VerifyConfig, verify

    if report_path:
        check_writable(report_path, force)
    config = VerifyConfig(format=fmt, dtypes=_csv(dtypes) or (), backends=_csv(backends), providers=provider,
                          **opts)
    report = verify(reference, candidate, config)
    data = report.to_dict()
    if report_path:
        write_text_atomic(report_path, json.dumps(data, indent=2, default=_to_jsonable) + "\n", force=force)
    if as_json:
        emit_json(data)
    else:
        _render_verify(report)
    if not report.ok:
        click.secho(f"edgevit: verification failed ({len(report.failures)} check(s)):", fg="red", err=True)
        for line in report.failures:
            click.secho(f"  {line}", fg="red", err=True)
        sys.exit(1)


def _render_verify(report) -> None:
    def e(v):
        return "-" if v is None else f"{v:.2e}"

    def cos(v):
        return "-" if v is None else f"{v:.6f}"

    tol = report.tolerance
    rows = []
    for name, s in report.outputs.items():
        agree = (f"{s['top1_agreement']:.4f}/{s['top5_agreement']:.4f}" if "top1_agreement" in s else "-")
        acc = (f"{s['accuracy_reference']:.4f}/{s['accuracy_candidate']:.4f}" if "accuracy_reference" in s else "-")
        rows.append([name, e(s["max_abs"]), e(s["max_rel"]), e(s["mean_abs"]), cos(s["cosine_min"]), agree, acc])
    click.echo(f"reference {report.reference['source']} [{report.reference.get('runner')}]")
    click.echo(f"candidate {report.candidate['source']} [{report.candidate.get('runner')}], precision "
               f"{report.precision}")
    click.echo(f"data: {report.data['description']}; tolerance: atol {tol['atol']:g}, rtol {tol['rtol']:g}, "
               f"min cosine {tol['min_cosine']:g}, min top-1 agreement {tol['min_agreement']:g}")
    table("final outputs", ["output", "max abs", "max rel", "mean abs", "cos min", "agree t1/t5",
                            "acc ref/cand"], rows)
    att = report.attention
    if att:
        title = f"attention vs float64 math reference (block inputs: {att['block_input_source']})"
        if att["kind"] == "torch":
            cols = ["block", "dtype", "backend", "max abs", "mean abs", "cos min", "atol", "pass"]
            trows = [[r["block"], r["dtype"], r["backend"], e(r["max_abs"]), e(r["mean_abs"]), cos(r["cosine_min"]),
                      f"{r['atol']:g}", r["status"]] for r in att["rows"] if r["status"] != "skipped"]
            table(f"{title}, {att['device']}", cols, trows)
            table("attention summary (worst block per dtype and backend)",
                  ["dtype", "backend", "max abs", "mean abs", "cos min", "pass"],
                  [[r["dtype"], r["backend"], e(r.get("max_abs")), e(r.get("mean_abs")), cos(r.get("cosine_min")),
                    r["status"]] for r in att["summary"]])
            for r in att["rows"]:
                if r["status"] == "skipped":
                    click.echo(f"skipped {r['dtype']} {r['backend']}: {r['reason']}")
        else:
            cols = ["block", "form", "max abs", "mean abs", "cos min", "atol", "pass"]
            trows = [[r["block"], r["form"], e(r["max_abs"]), e(r["mean_abs"]), cos(r["cosine_min"]),
                      f"{r['atol']:g}", r["status"]] for r in att["rows"]]
            table(title, cols, trows)
        click.echo("attention tolerance: |cand - ref| <= atol + rtol*|ref| and cos min >= limit; "
                   + "; ".join(sorted({f"{r.get('dtype', report.precision)}: atol {r['atol']:g}, rtol {r['rtol']:g}, "
                                       f"cos {r['min_cosine']:g}" for r in att["rows"] if r["status"] != "skipped"})))
    verdict = "PASSED" if report.ok else "FAILED"
    click.secho(f"{verdict}: {sum(c.passed for c in report.checks)}/{len(report.checks)} checks "
                f"in {report.seconds:.1f} s", fg="green" if report.ok else "red")
