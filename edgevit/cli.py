"""The ``edgevit`` command line. Thin: each command parses, calls one library function, renders.

Errors map to messages in one table (``_EXIT_CODES``): usage errors exit 2, failures exit 1.
Every command takes ``--json`` for machine-readable output.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import sys
import warnings

import click

from .errors import EdgeVitError, EdgeVitWarning

# Before torch loads: with OpenMP's default spin-waiting, PyTorch on a busy 2-core machine runs
# several times slower (measured: 104 ms instead of 2.8 ms per digits-tiny image; 819 vs 161 ms
# for DeiT-S). Passive waiting costs ~10 % on an idle machine. An explicit setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

# exception type -> (exit status, label[, how to fix]). The first matching entry wins. A type whose
# library loads lazily is named "module.QualName" (matched on the exception's class hierarchy), so
# importing the CLI does not import that library.
_EXIT_CODES: list[tuple] = [
    (EdgeVitError, 1, "error"),
    (ValueError, 2, "invalid value"),
    (FileNotFoundError, 1, "file not found", "check the path"),
    (PermissionError, 1, "permission denied", "check the path's permissions, or use another path"),
    (NotADirectoryError, 1, "not a directory", "a part of the path is a file; use another path"),
    (IsADirectoryError, 1, "is a directory", "give a file, not a directory"),
    ("PIL.UnidentifiedImageError", 1, "not a readable image",  # an OSError: before OSError
     "give a PNG, JPEG, BMP, ... image or a .npy array"),
    ("PIL.Image.DecompressionBombError", 1, "image too large", "downscale the image first"),
    (OSError, 1, "system error", "check the path, its permissions and the free disk space"),
]


def _exit_entry(exc: BaseException) -> tuple | None:
    """The first ``_EXIT_CODES`` entry that matches ``exc``, or None."""
    names = {f"{c.__module__}.{c.__qualname__}" for c in type(exc).__mro__}
    for entry in _EXIT_CODES:
        kind = entry[0]
        if kind in names if isinstance(kind, str) else isinstance(exc, kind):
            return entry
    return None


def _error_message(exc: BaseException, hint: str | None) -> str:
    """``exc`` as one line: for an OSError the path and the system's reason, the option that gave
    the path, and how to fix it."""
    if not isinstance(exc, OSError) or exc.filename is None:
        text = str(exc) or type(exc).__name__
    else:
        path = os.fsdecode(exc.filename)
        text = f"{path}{f' -> {os.fsdecode(exc.filename2)}' if exc.filename2 else ''}: {exc.strerror or exc}"
        option = _option_of(path)
        if option:
            text += f" (from {option})"
    return f"{text.rstrip('.')}; {hint}" if hint else text


def _option_of(path: str) -> str | None:
    """The current command's option or argument whose value is ``path`` or a folder above it."""
    ctx = click.get_current_context(silent=True)
    if ctx is None:
        return None
    for param in ctx.command.params:
        values = ctx.params.get(param.name)
        for value in values if isinstance(values, (tuple, list)) else (values,):
            if isinstance(value, str) and value and (path == value or path.startswith(value.rstrip(os.sep) + os.sep)):
                return param.opts[-1] if isinstance(param, click.Option) else (param.metavar or param.name.upper())
    return None


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
        except Exception as exc:
            entry = _exit_entry(exc)
            if entry is None:  # not in the table: a bug, keep its traceback
                raise
            _, code, label, *hint = entry
            message = _error_message(exc, hint[0] if hint else None)
            ctx = click.get_current_context(silent=True)
            if ctx is not None and ctx.params.get("as_json"):
                click.echo(json.dumps({"ok": False, "error": label, "type": type(exc).__name__, "message": message}))
            click.secho(f"edgevit: {label}: {message}", fg="red", err=True)
            sys.exit(code)

    return wrapper


json_option = click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
preprocessed_option = click.option(
    "--preprocessed", is_flag=True,
    help=".npy/.npz arrays are model input already (normalized N,C,H,W); default: raw pixels on 0..pixel_max.")
verify_hash_option = click.option(
    "--verify-hash/--no-verify-hash", "verify_hash", default=True, show_default=True,
    help="Check each file an edgevit.json lists against its recorded sha256 before use.")


class _ActivationChoice(click.Choice):
    """click.Choice over ``edgevit.models.vit.ACTIVATIONS``, read when the option is parsed or its
    help shown: importing the CLI must not import torch (``edgevit predict`` runs without it)."""

    def __init__(self) -> None:
        super().__init__(())

    @property
    def choices(self) -> tuple:
        from .models.vit import ACTIVATIONS

        return tuple(ACTIVATIONS)

    @choices.setter
    def choices(self, value) -> None:  # click.Choice.__init__ assigns; the list is read when used
        pass


MODEL_OVERRIDES = ("num_heads", "act", "img_size")


def model_override_options(fn):
    """--num-heads, --act, --img-size: what a checkpoint's tensors cannot tell (and the size to
    deploy at), passed to :func:`edgevit.load_model` as config overrides. The command receives
    them as one ``model_overrides`` dict (only the options given)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        overrides = {}
        for name in MODEL_OVERRIDES:
            value = kwargs.pop(name)
            if value is not None:
                overrides[name] = value
        return fn(*args, model_overrides=overrides, **kwargs)

    opts = [
        click.option("--num-heads", type=click.IntRange(min=1), metavar="N",
                     help="Attention heads of a checkpoint that does not record them (a state dict: guessed as "
                          "dim/64 otherwise)."),
        click.option("--act", type=_ActivationChoice(),
                     help="MLP activation the weights cannot tell, e.g. quick_gelu for OpenAI CLIP towers."),
        click.option("--img-size", type=click.IntRange(min=1), metavar="PX",
                     help="Load at this input size (a learned pos_embed is resampled, as timm does).")]
    for opt in reversed(opts):
        wrapper = opt(wrapper)
    return wrapper


def finish(data, as_json: bool, render, ok: bool, failure: str, lines: list[str]) -> None:
    """Print ``data`` as JSON or ``render()`` it; when not ``ok``, list ``lines`` on stderr and exit 1."""
    if as_json:
        emit_json(data)
    else:
        render()
    if not ok:
        click.secho(f"edgevit: {failure}", fg="red", err=True)
        for line in lines:
            click.secho(f"  {line}", fg="red", err=True)
        sys.exit(1)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="edgevit")
@click.pass_context
def main(ctx: click.Context) -> None:
    """edgevit: train or load a ViT, export it through ONNX to TensorRT, and prove nothing broke."""
    ctx.with_resource(_print_edgevit_warnings())


@contextlib.contextmanager
def _print_edgevit_warnings():
    """Print edgevit's own warnings (EdgeVitWarning) as one ``edgevit: warning:`` line on stderr;
    other warnings keep Python's format."""
    with warnings.catch_warnings():
        python_show = warnings.showwarning

        def show(message, category, filename, lineno, file=None, line=None):
            if issubclass(category, EdgeVitWarning):
                click.secho(f"edgevit: warning: {message}", fg="yellow", err=True)
            else:
                python_show(message, category, filename, lineno, file, line)

        warnings.showwarning = show
        warnings.simplefilter("default", EdgeVitWarning)
        yield


def _console():
    """A rich console; piped output gets 200 columns, so tables are not squeezed into 80 and cut."""
    from rich.console import Console

    console = Console()
    return console if console.is_terminal else Console(width=max(console.width, 200))


def table(title: str, columns: list[str], rows: list[list]) -> None:
    """Render a terminal table (rich)."""
    from rich.table import Table

    tbl = Table(title=title)
    for col in columns:
        tbl.add_column(col)
    for row in rows:
        tbl.add_row(*[str(v) for v in row])
    _console().print(tbl)


# ---------------------------------------------------------------- models, info
@main.command("models")
@json_option
@handle_errors
def models_cmd(as_json: bool) -> None:
    """List the named model variants."""
    from .models import get_variant, list_variants, macs_per_image
    from .models.info import model_family, output_kind

    rows = []
    for name in list_variants():
        v = get_variant(name)
        c = v.config
        rows.append({"name": name, "family": model_family(c), "img_size": c.img_size, "patch_size": c.patch_size,
                     "embed_dim": c.embed_dim, "depth": c.depth, "num_heads": c.num_heads, "tokens": c.num_tokens,
                     "num_classes": c.num_classes, "output": output_kind(c),
                     "gmacs": round(macs_per_image(c) / 1e9, 4), "description": v.description})
    if as_json:
        emit_json(rows)
        return
    table("edgevit model variants (tokens: patches + class/distillation/register tokens)",
          ["name", "family", "img", "patch", "dim", "depth", "heads", "tokens", "classes", "output", "GMACs"],
          [[r["name"], r["family"], r["img_size"], r["patch_size"], r["embed_dim"], r["depth"], r["num_heads"],
            r["tokens"], r["num_classes"], r["output"], r["gmacs"]] for r in rows])


@main.command("info")
@click.argument("source")
@click.option("--arch", help="Variant name for a timm state dict (inferred from shapes otherwise).")
@model_override_options
@json_option
@handle_errors
def info_cmd(source: str, arch: str | None, as_json: bool, model_overrides: dict) -> None:
    """Family, output (logits or features), parameters, GMACs, tokens, heads, input spec and TensorRT
    fused-MHA eligibility of SOURCE (a checkpoint, variant or hub name)."""
    from .models.info import model_info

    info = model_info(source, arch=arch, model_overrides=model_overrides)
    if as_json:
        emit_json(info)
        return
    rows = [[k, v] for k, v in info.items() if not isinstance(v, dict)]
    for k, v in info["fused_mha"].items():
        rows.append([f"fused_mha.{k}", v])
    table(f"edgevit info: {source}", ["field", "value"], rows)


# ---------------------------------------------------------------- train, eval
@main.command("train")
@click.option("--model", help="Variant name, or checkpoint / hub name (timm/NAME.TAG, hf-hub:ORG/REPO) to fine-tune.")
@click.option("--arch", help="Variant a timm state dict belongs to.")
@click.option("--data", help="'digits' (bundled), an ImageFolder, or a .npz (raw pixels; see --preprocessed).")
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
@click.option("--resume", help="Continue the run in this directory (with its recorded --model, --data, ...).")
@click.option("--force", is_flag=True, help="Write into a run directory that already holds checkpoints.")
@model_override_options
@preprocessed_option
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
               f"{result.val_accuracy:.4f} at epoch {result.best_epoch}, {result.wall_time_s:.1f} s "
               f"on {result.device} x{result.world_size}")
    click.echo(f"checkpoint: {result.checkpoint}")


@main.command("eval")
@click.argument("source")
@click.option("--data", default="digits", show_default=True, help="'digits', an ImageFolder, or a .npz with labels.")
@click.option("--split", type=click.Choice(["train", "val", "test", "all"]), default="test", show_default=True)
@click.option("--arch", help="Variant a timm state dict belongs to.")
@click.option("--batch-size", type=int, default=256, show_default=True)
@model_override_options
@preprocessed_option
@json_option
@handle_errors
def eval_cmd(source: str, data: str, split: str, arch: str | None, batch_size: int, preprocessed: bool,
             as_json: bool, model_overrides: dict) -> None:
    """Top-1/top-5 accuracy of SOURCE on labelled data, with a confusion summary."""
    from .evaluate import evaluate

    report = evaluate(source, data=data, split=split, arch=arch, batch_size=batch_size, preprocessed=preprocessed,
                      model_overrides=model_overrides)
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
# ---------------------------------------------------------------- precision graphs
def _precision_options(fn):
    """Options shared by ``quantize`` and ``export --precision``."""
    opts = [
        click.option("--io-dtype", type=click.Choice(["fp32", "fp16", "bf16"]), default="fp32", show_default=True,
                     help="Graph input/output type of the fp16/bf16 graphs."),
        click.option("--int8-base", type=click.Choice(["fp16", "fp32"]), default="fp16", show_default=True,
                     help="Precision of everything int8/fp8 does not quantize."),
        click.option("--quantize-attention", is_flag=True,
                     help="Also Q/DQ the two attention MatMuls (TensorRT's INT8 fused MHA placement)."),
        click.option("--quantize-patch-embed", is_flag=True, help="Also Q/DQ the patch-embedding Conv."),
        click.option("--exclude", multiple=True, metavar="PATTERN",
                     help="Keep matching nodes (fnmatch on names like blocks.11.mlp.fc2) unquantized; repeatable."),
        click.option("--calib-data", default="digits", show_default=True,
                     help="Calibration images: 'digits' (train split), an ImageFolder (train split) or .npy/.npz "
                          "(raw pixels; see --preprocessed)."),
        click.option("--calib-samples", type=int, default=512, show_default=True),
        click.option("--calib-batch", type=int, default=32, show_default=True),
        click.option("--calib-method", type=click.Choice(["minmax", "percentile", "entropy", "mse"]),
                     default="percentile", show_default=True),
        click.option("--percentile", type=float, default=99.99, show_default=True),
        click.option("--calib-cache", type=click.Path(dir_okay=False),
                     help="Calibration cache JSON (default OUTDIR/calibration.json); reused while valid."),
        click.option("--data", "gate_data", default="digits", show_default=True,
                     help="Labelled held-out data of the accuracy gate (its test split)."),
        preprocessed_option,
        click.option("--max-drop", type=float, default=1.0, show_default=True, help="Top-1 budget in points."),
        click.option("--sensitivity", is_flag=True, help="Report per-layer sensitivity of int8/fp8."),
        click.option("--auto-exclude", is_flag=True,
                     help="Keep the most sensitive layers unquantized, one at a time, until the gate passes."),
        click.option("--no-gate", is_flag=True, help="Skip the gate (recorded as not verified)."),
    ]
    for opt in reversed(opts):
        fn = opt(fn)
    return fn


@main.command("export")
@click.argument("source")
@click.option("-o", "--output", required=True, type=click.Path(file_okay=False),
              help="Output directory: model.onnx and edgevit.json are written there.")
@click.option("--arch", help="Variant name for a timm state dict (inferred from shapes otherwise).")
@click.option("--opset", type=int, help="ONNX opset (default: 18 for decomposed attention, 23 for fused; 17 up to the newest "
                   "the installed exporter writes).")
@click.option("--attention", type=click.Choice(["decomposed", "fused"]), default=None,
              help="decomposed: MatMul-Softmax-MatMul, Q pre-scaled (default; TensorRT 10.3 parses it). "
                   "fused: the opset-23 Attention op (TensorRT >= 10.14).")
@click.option("--batch", "batch", metavar="MIN,OPT,MAX",
              help="Dynamic batch bounds, recorded for TensorRT profiles (default 1,1,32).")
@click.option("--static-batch", type=int, metavar="N", help="Fix the batch to N instead of a dynamic batch.")
@click.option("--output-kind", "output_kind", type=click.Choice(["logits", "features", "tokens"]),
              help="The graph's output: logits (a classifier, the default for one), features (a headless model's "
                   "pooled embedding, its default) or tokens (the patch tokens (batch, patches, dim), class and "
                   "register tokens dropped, for dense heads).")
@click.option("--no-simplify", is_flag=True, help="Skip onnxslim.")
@click.option("--force", is_flag=True, help="Overwrite model.onnx / edgevit.json in OUTPUT.")
@click.option("--engine", "engine", is_flag=True,
              help="Then build a TensorRT engine OUTPUT/model.plan from the export (same as edgevit build).")
@click.option("--precision", "precision", default="fp32", show_default=True,
              help="Comma list of fp32, fp16, bf16, int8, fp8: graphs to write (see edgevit quantize).")
@_precision_options
@model_override_options
@json_option
@handle_errors
def export_cmd(source: str, output: str, arch: str | None, opset: int | None, attention: str | None,
               batch: str | None, static_batch: int | None, output_kind: str | None, no_simplify: bool, force: bool,
               engine: bool, precision: str, as_json: bool, model_overrides: dict, **qopts) -> None:
    """Export SOURCE (variant name, checkpoint, or hub name: timm/NAME.TAG, hf-hub:ORG/REPO) to
    OUTPUT/model.onnx, verified against PyTorch."""
    from .export.onnx import DEFAULT_ATTENTION, ExportConfig, export_onnx, parse_batch
    from .export.quantize import quantize

    if engine:  # fail before the (slow) export when TensorRT is missing
        from .tensorrt._bindings import import_tensorrt

        import_tensorrt()
    if batch is not None and static_batch is not None:
        raise ValueError("give either --batch MIN,OPT,MAX or --static-batch N, not both")
    options = {"attention": attention or DEFAULT_ATTENTION, "opset": opset, "static_batch": static_batch,
               "simplify": not no_simplify, "output": output_kind}
    if batch is not None:
        options["batch"] = parse_batch(batch)
    precisions = _parse_precisions(precision)
    # every option is checked before the export writes anything
    qconfig = _quantize_config(precisions, qopts, not as_json) if precisions != ("fp32",) else None
    result = export_onnx(source, output, ExportConfig(**options), arch=arch, force=force,
                         model_overrides=model_overrides)
    if qconfig is not None:
        quantized = quantize(output, qconfig, force=force)
        _finish_quantize(quantized, as_json, {**result.to_dict(), "ok": quantized.ok})
        if as_json:
            return
    built = None
    if engine:
        from .tensorrt.build import build_engine

        built = build_engine(output, os.path.join(output, "model.plan"), force=force)
    if as_json:
        emit_json({**result.to_dict(), **({"engine": built.to_dict()} if built else {})})
        return
    art = result.manifest.artifact(precision="fp32", format="onnx")
    b = result.manifest.batch
    rows = [["onnx", result.onnx_path], ["manifest", result.manifest_path],
            ["opset / attention", f"{result.manifest.export['opset']} / {result.manifest.export['attention']}"],
            ["batch", f"dynamic {b['min']}..{b['max']} (opt {b['opt']})" if b["dynamic"] else f"static {b['min']}"],
            ["sha256", art.sha256[:16] + "..."], ["external data", ", ".join(art.external_data) or "no"],
            ["simplified", "yes" if result.simplify.get("applied") else "no"]]
    out = result.manifest.outputs[0]
    rows.insert(2, ["output", f"{out['name']} [{', '.join(map(str, out['shape']))}]"])
    for check in result.verification.get("checks", []):
        agree = (f"top-1 agree {check['top1_agree']:.3f}" if "top1_agree" in check else
                 f"cos min {check['min_cosine']:.6f}" + (f", k-NN@{check['knn_k']} agree {check['knn_agree']:.3f}"
                                                          if check["knn_k"] else ""))
        rows.append([f"vs PyTorch: {check['input']}",
                     f"max abs {check['max_abs']:.2e}, rel {check['max_rel_to_scale']:.1e}, {agree}"])
    table(f"edgevit export: {source}", ["field", "value"], rows)
    for note in result.warnings:
        click.secho(f"note: {note}", fg="yellow", err=True)
    if result.lint and result.lint.findings:
        _lint_table(result.lint)
    if built is not None:
        _render_build(built)


def _quantize_config(precisions, opts: dict, progress: bool):
    from .calibration import CalibrationConfig
    from .export.quantize import QuantizeConfig

    return QuantizeConfig(
        precisions=precisions, io_dtype=opts["io_dtype"], int8_base=opts["int8_base"],
        quantize_attention=opts["quantize_attention"], quantize_patch_embed=opts["quantize_patch_embed"],
        exclude=tuple(opts["exclude"]), calibration=CalibrationConfig(opts["calib_method"], opts["percentile"]),
        calib_data=opts["calib_data"], calib_samples=opts["calib_samples"], calib_batch=opts["calib_batch"],
        calib_cache=opts["calib_cache"], data=opts["gate_data"], preprocessed=opts["preprocessed"],
        max_drop=opts["max_drop"],
        gate=not opts["no_gate"], sensitivity=opts["sensitivity"], auto_exclude=opts["auto_exclude"],
        verify_hash=opts.get("verify_hash", True), progress=progress)


def _render_quantize(result) -> None:
    output = next((e["gate"]["output"] for e in result.entries.values() if e["gate"].get("output")), "logits")
    features = output != "logits"  # features / tokens: no labels, judged by cosine and k-NN agreement with fp32
    knn = next((e["gate"]["agreement_metric"] for e in result.entries.values() if "agreement_metric" in e["gate"]),
               "k-NN")
    rows = []
    for p, e in result.entries.items():
        g = e["gate"]
        verdict = g["verdict"] + (": " + "; ".join(g["reasons"]) if g.get("reasons") else "")
        if "top1" in g:
            rows.append([p, e["path"], f"{g['top1']:.4f}", f"{g['drop_points']:+.2f}", f"{g['agreement']:.4f}",
                         f"{g['max_abs']:.3g}", verdict])
        elif "min_cosine" in g:
            rows.append([p, e["path"], f"{g['min_cosine']:.5f}", f"{g['mean_cosine']:.5f}", f"{g['agreement']:.4f}",
                         f"{g['max_abs']:.3g}", verdict])
        else:
            rows.append([p, e["path"], "-", "-", "-", "-", g["verdict"]])
    accuracy = ["cos min", "cos mean", f"{knn} agree"] if features else ["top-1", "drop (pts)", "agree"]
    table(f"precision graphs in {result.outdir} (gate vs fp32 on ONNX Runtime CPU)",
          ["precision", "file", *accuracy, "max |d|", "gate"], rows)
    if features:
        from .metrics import KNN_AGREEMENT

        click.echo(f"{output} have no labels: the gate compares each graph's {output} with the fp32 graph's: lowest "
                   f"per-sample cosine >= min_cosine and {knn} agreement >= min_agreement of the precision's "
                   f"tolerance ({KNN_AGREEMENT})")
    for p, e in result.entries.items():
        if e.get("sensitivity"):
            table(f"{p} sensitivity: one layer quantized at a time (worst first)",
                  ["layer", "cos min" if features else "drop (pts)", "agree"],
                  [[r["layer"], f"{r['min_cosine']:.5f}" if features else f"{r['drop_points']:+.2f}",
                    f"{r['agreement']:.4f}"] for r in e["sensitivity"][:8]])
        if e.get("auto_excluded"):
            click.echo(f"{p}: auto-excluded {', '.join(e['auto_excluded'])}")
    if result.calibration:
        c = result.calibration
        click.echo(f"calibration: {c['method']} on {c['data']} ({'cache hit' if c['cache_hit'] else 'computed'}: "
                   f"{c['cache']})")


def _finish_quantize(result, as_json: bool, extra: dict | None = None) -> None:
    failed = [f"{p}: " + "; ".join(e["gate"]["reasons"]) for p, e in result.entries.items()
              if e["gate"]["verdict"] == "failed"]
    finish({**(extra or {}), "quantize": result.to_dict(), "ok": result.ok}, as_json,
           lambda: _render_quantize(result), result.ok,
           "accuracy gate failed (recorded as failed in the manifest); try --auto-exclude, another "
           "--calib-method, or a larger --max-drop:", failed)


def _parse_precisions(text: str) -> tuple[str, ...]:
    from .export.precision import PRECISIONS

    values = _csv(text) or ()
    bad = [p for p in values if p not in PRECISIONS]
    if bad or not values:
        raise ValueError(f"--precision takes a comma list of {', '.join(PRECISIONS)}; got {text!r}")
    return values


@main.command("quantize")
@click.argument("source", metavar="MODEL.onnx|OUTDIR")
@click.option("--precision", "precision", default="fp16,bf16,int8,fp8", show_default=True,
              help="Comma list of fp32, fp16, bf16, int8, fp8.")
@_precision_options
@click.option("--force", is_flag=True, help="Overwrite existing model.<precision>.onnx files.")
@verify_hash_option
@json_option
@handle_errors
def quantize_cmd(source: str, precision: str, force: bool, as_json: bool, **opts) -> None:
    """Write fp16/bf16/int8/fp8 graphs beside an exported model.onnx, each gated on labelled data."""
    from .export.quantize import quantize

    result = quantize(source, _quantize_config(_parse_precisions(precision), opts, not as_json), force=force)
    _finish_quantize(result, as_json)


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
              help="'random' (seeded normal), 'digits', an ImageFolder directory or a .npy/.npz (raw pixels; "
                   "see --preprocessed).")
@preprocessed_option
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
@model_override_options
@click.option("--report", "report_path", type=click.Path(dir_okay=False), help="Also write the JSON report here.")
@click.option("--force", is_flag=True, help="Overwrite an existing --report file.")
@verify_hash_option
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
    finish(data, as_json, lambda: _render_verify(report), report.ok,
           f"verification failed ({len(report.failures)} check(s)):", report.failures)


def _render_verify(report) -> None:
    def e(v):
        return "-" if v is None else f"{v:.2e}"

    def cos(v):
        return "-" if v is None else f"{v:.6f}"

    tol = report.tolerance
    rows = []
    features = report.output != "logits"
    for name, s in report.outputs.items():
        if features:
            rows.append([name, e(s["max_abs"]), e(s["max_rel"]), e(s["mean_abs"]), cos(s["cosine_min"]),
                         cos(s["cosine_mean"]), f"{s['knn_agreement']:.4f}" if s.get("knn_k") else "-"])
            continue
        agree = (f"{s['top1_agreement']:.4f}/{s['top5_agreement']:.4f}" if "top1_agreement" in s else "-")
        acc = (f"{s['accuracy_reference']:.4f}/{s['accuracy_candidate']:.4f}" if "accuracy_reference" in s else "-")
        rows.append([name, e(s["max_abs"]), e(s["max_rel"]), e(s["mean_abs"]), cos(s["cosine_min"]), agree, acc])
    click.echo(f"reference {report.reference['source']} [{report.reference.get('runner')}]")
    click.echo(f"candidate {report.candidate['source']} [{report.candidate.get('runner')}], precision "
               f"{report.precision}")
    agreement = "k-NN agreement" if features else "top-1 agreement"
    click.echo(f"data: {report.data['description']}; tolerance: atol {tol['atol']:g}, rtol {tol['rtol']:g}, "
               f"min cosine {tol['min_cosine']:g}, min {agreement} {tol['min_agreement']:g}")
    if features:
        k = next((s.get("knn_k") for s in report.outputs.values()), None) or "k"
        table("final outputs", ["output", "max abs", "max rel", "mean abs", "cos min", "cos mean",
                                f"k-NN@{k} agree"], rows)
        from .metrics import KNN_AGREEMENT

        click.echo(f"{report.output} have no labels: judged by per-sample cosine similarity and {KNN_AGREEMENT}")
    else:
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


# ---------------------------------------------------------------- TensorRT engines, runtime
def _render_build(result) -> None:
    art, rep = result.artifact, result.report
    mode = art["build_mode"]
    rows = [["engine", result.engine_path], ["fusion report", result.report_path], ["manifest", result.manifest_path],
            ["precision", art["precision"]],
            ["build", ("strongly typed" if mode["strongly_typed"] else f"flags {mode['flags'] or 'none'}")],
            ["profile (batch)", f"{art['profile']['min']} / {art['profile']['opt']} / {art['profile']['max']}"],
            ["TensorRT (CUDA) / driver CUDA", f"{art['tensorrt_version']} ({art.get('tensorrt_cuda_major') or '?'}) / "
                                              f"{art.get('cuda_driver_version') or '?'}"],
            ["GPU", f"{art['gpu_name']} (sm {art['compute_capability']})"],
            ["fused attention", f"{rep['fused_attention_layers']} kernel(s), blocks {rep['fused_attention_blocks']}"
                                + (f"; NOT fused: blocks {rep['unfused_attention_blocks']}"
                                   if rep.get("unfused_attention_blocks") else "")],
            ["seconds", f"{result.seconds:.1f}"]]
    table("edgevit build", ["field", "value"], rows)
    groups = rep.get("precision_by_group") or {}
    if groups:
        table("precision per layer group", ["group", "layers by precision"],
              [[g, ", ".join(f"{p} {n}" for p, n in sorted(c.items()))] for g, c in groups.items()])
    if rep.get("blocks"):
        table("attention per block (from the kernels TensorRT chose)", ["block", "fused", "kernel"],
              [[b, {True: "yes", False: "NO", None: "unknown"}[v["fused"]],
                v["kernel"] or ", ".join(v["unfused_kernels"][:2]) or "-"] for b, v in rep["blocks"].items()])
    if rep.get("placement"):
        p = rep["placement"]
        click.echo(f"DLA placement (inspector): {len(p['dla'])} layer(s) on DLA, {len(p['gpu'])} on the GPU")
    if result.dla_fallback:
        table("layers that fall back to the GPU (not DLA-capable)", ["layer", "type"],
              [[d["layer"], d["type"]] for d in result.dla_fallback])


@main.command("build")
@click.argument("source", metavar="MODEL.onnx|OUTDIR")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="Engine file to write (.plan).")
@click.option("--precision", type=click.Choice(["fp32", "fp16", "bf16", "int8", "fp8", "int4", "mixed"]),
              help="Which ONNX artifact of OUTDIR to build (default: the only one, else fp32).")
@click.option("--batch", "batch", metavar="MIN,OPT,MAX", help="Override the manifest's batch profile (inside it).")
@click.option("--workspace", "workspace_mib", type=int, metavar="MIB", help="Builder workspace limit in MiB.")
@click.option("--opt-level", "optimization_level", type=click.IntRange(0, 5),
              help="Builder optimization level 0..5 (TensorRT default 3).")
@click.option("--timing-cache", type=click.Path(dir_okay=False), help="Timing cache file, loaded and saved.")
@click.option("--dla-core", type=int, metavar="N", help="Build for DLA core N, with GPU fallback (Jetson AGX/NX).")
@click.option("--version-compatible", is_flag=True, help="Build a version-compatible engine (opt-in).")
@click.option("--hardware-compat", "hardware_compatibility", default="none", show_default=True,
              type=click.Choice(["none", "ampere_plus", "same_compute_capability"]),
              help="Hardware-compatibility level (opt-in).")
@click.option("--weakly-typed", is_flag=True,
              help="TensorRT 10 only: FP16/BF16 builder flags instead of the default strong typing (recorded).")
@click.option("--force", is_flag=True, help="Overwrite an existing engine.")
@verify_hash_option
@json_option
@handle_errors
def build_cmd(source: str, output: str, batch: str | None, force: bool, verify_hash: bool, as_json: bool,
              **opts) -> None:
    """Build a TensorRT engine from an exported ONNX graph (or OUTDIR), with a fusion report."""
    from .tensorrt.build import EngineBuildConfig, build_engine

    if batch is not None:
        from .export.onnx import parse_batch

        opts["batch"] = parse_batch(batch)
    result = build_engine(source, output, EngineBuildConfig(**opts), force=force, verify_hash=verify_hash)
    if as_json:
        emit_json(result.to_dict())
        return
    _render_build(result)


@main.command("predict")
@click.argument("model", metavar="ENGINE|ONNX")
@click.argument("images", nargs=-1, required=True)
@click.option("--topk", type=int, default=5, show_default=True)
@preprocessed_option
@click.option("--threads", type=int, help="ONNX Runtime intra-op threads.")
@verify_hash_option
@json_option
@handle_errors
def predict_cmd(model: str, images: tuple[str, ...], topk: int, preprocessed: bool, threads: int | None,
                verify_hash: bool, as_json: bool) -> None:
    """Top-k labels and latency for IMAGE files (PNG, JPEG, ...; 8- or 16-bit) or .npy/.npz arrays."""
    from .errors import OutputKindError
    from .runtime import Engine

    with Engine.load(model, threads=threads, verify_hash=verify_hash) as engine:
        if engine.output_kind != "logits":
            raise OutputKindError(f"{model} outputs {engine.output_kind}, not class logits, so there is nothing to "
                                  f"rank; run `edgevit embed {model} IMAGE... -o embeddings.npy` for its "
                                  f"{engine.output_kind}")
        rows = []
        for item in images:
            top = engine.predict(item, topk=topk, preprocessed=preprocessed)
            for i, t in enumerate(top):
                name = item if len(top) == 1 else f"{item}[{i}]"
                rows.append({"input": name, "topk": t, "latency_ms": engine.last_latency_ms / len(top)})
        if as_json:
            emit_json({"ok": True, "model": model, "backend": engine.backend, "predictions": rows})
            return
        table(f"edgevit predict: {model} ({engine.backend})", ["input", "top-1", "prob", f"top-{topk}", "latency ms"],
              [[r["input"], r["topk"][0]["label"], f"{r['topk'][0]['prob']:.4f}",
                ", ".join(f"{t['label']}:{t['prob']:.3f}" for t in r["topk"]), f"{r['latency_ms']:.2f}"]
               for r in rows])


@main.command("embed")
@click.argument("model", metavar="ENGINE|ONNX")
@click.argument("images", nargs=-1, required=True)
@click.option("-o", "--output", type=click.Path(dir_okay=False),
              help="Write the embeddings to this .npy file: float32 (inputs, dim), or (inputs, patches, dim) for "
                   "a tokens export, in input order.")
@click.option("--force", is_flag=True, help="Overwrite an existing --output file.")
@preprocessed_option
@click.option("--threads", type=int, help="ONNX Runtime intra-op threads.")
@verify_hash_option
@json_option
@handle_errors
def embed_cmd(model: str, images: tuple[str, ...], output: str | None, force: bool, preprocessed: bool,
              threads: int | None, verify_hash: bool, as_json: bool) -> None:
    """Embeddings of IMAGE files (PNG, JPEG, ...) or .npy/.npz arrays from a headless model's engine or
    ONNX (its features, or its patch tokens): shape and L2 norm per input; -o saves them as .npy."""
    import numpy as np

    from ._io import atomic_path, check_writable
    from .runtime import Engine

    if output is not None:
        if not output.endswith(".npy"):
            raise ValueError(f"-o/--output {output}: embeddings are written as a numpy array; give a .npy file name")
        check_writable(output, force)  # before the run
    with Engine.load(model, threads=threads, verify_hash=verify_hash) as engine:
        kind, rows, arrays = engine.output_kind, [], []
        for item in images:
            emb = engine.embed(item, preprocessed=preprocessed)
            for i, vector in enumerate(emb):
                norm = np.linalg.norm(vector, axis=-1).mean()  # tokens: the mean per-token norm
                rows.append({"input": item if len(emb) == 1 else f"{item}[{i}]", "shape": list(vector.shape),
                             "norm": float(norm), "latency_ms": engine.last_latency_ms / len(emb)})
            arrays.append(emb)
        backend = engine.backend
    result = np.concatenate(arrays)
    if output is not None:
        with atomic_path(output, force=force) as tmp, open(tmp, "wb") as handle:
            np.save(handle, result)
    if as_json:
        emit_json({"ok": True, "model": model, "backend": backend, "output": kind, "shape": list(result.shape),
                   "file": output, "embeddings": rows})
        return
    norm = "mean token L2 norm" if kind == "tokens" else "L2 norm"
    table(f"edgevit embed: {model} ({backend}, {kind})", ["input", "shape", norm, "latency ms"],
          [[r["input"], "x".join(map(str, r["shape"])), f"{r['norm']:.4f}", f"{r['latency_ms']:.2f}"] for r in rows])
    click.echo(f"{kind} {list(result.shape)}" + (f" written to {output}" if output else
                                                   "; pass -o FILE.npy to save them"))


# ---------------------------------------------------------------- bench
def _int_list(value: str | None, option: str) -> tuple:
    if not value:
        return ()
    try:
        out = tuple(int(v) for v in value.split(",") if v.strip())
    except ValueError:
        raise click.BadParameter(f"expected comma-separated integers such as 1,2,4,8, got {value!r}",
                                 param_hint=option) from None
    if any(v < 1 for v in out):
        raise click.BadParameter(f"batch sizes must be >= 1, got {value!r}", param_hint=option)
    return out


@main.command("bench")
@click.argument("sources", nargs=-1, required=True, metavar="OUTDIR|ARTIFACT...")
@click.option("--data", default="digits", show_default=True,
              help="Labelled data for top-1: 'digits', an ImageFolder, a .npz (raw pixels; see --preprocessed), "
                   "or 'random'.")
@preprocessed_option
@click.option("--samples", type=int, default=512, show_default=True, help="At most this many images for accuracy.")
@click.option("--warmup-s", type=float, default=0.2, show_default=True, help="Warm-up seconds per measurement.")
@click.option("--iterations", type=int, help="Timed calls per measurement (default 50).")
@click.option("--duration-s", type=float, help="Time each measurement for this many seconds instead of --iterations.")
@click.option("--time-limit-s", type=float, default=10.0, show_default=True,
              help="Stop a measurement after this many seconds (once 5 calls were timed).")
@click.option("--threads", type=int, help="CPU threads for PyTorch and ONNX Runtime (default: all available).")
@click.option("--batch", type=int, help="Throughput batch (default: the manifest profile's max, or 32).")
@click.option("--batch-sweep", metavar="1,2,4,...", help="Also measure latency at these batch sizes.")
@click.option("--noise-cv", type=float, default=0.10, show_default=True,
              help="Flag a measurement as noisy when its coefficient of variation exceeds this.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True,
              help="auto: PyTorch CUDA rows when a GPU is visible; cpu: none.")
@click.option("--provider", "providers", multiple=True, type=click.Choice(["cpu", "cuda", "tensorrt"]),
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

    from .bench import REPORT_FILES, BenchConfig, run_bench
    from ._io import check_output_dir, check_writable

    if opts["iterations"] is not None and opts["duration_s"] is not None:
        raise click.UsageError("give either --iterations or --duration-s, not both")
    config = BenchConfig(batch_sweep=_int_list(batch_sweep, "--batch-sweep"), providers=providers or None,
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
    finish(report.to_dict(), as_json, lambda: _render_bench(report), report.ok,
           f"bench: {len(report.failures)} row(s) failed:", report.failures)


def _render_bench(report) -> None:
    m = report.machine
    click.echo(f"CPU {m.get('cpu')} ({m.get('cpu_cores')} cores, {report.config.get('threads')} threads); "
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
    _console().print(tbl)
    if report.data.get("output", "logits") != "logits":
        click.echo(report.data["agreement"])
    for row in report.rows:
        if row["status"] != "ok":
            click.echo(f"{row['status']}: {row['name']}: {row['reason']}")
    for note in report.warnings:
        click.secho(f"warning: {note}", fg="yellow", err=True)
    if report.files:
        click.echo("report: " + ", ".join(v for v in report.files.values() if v))


# ---------------------------------------------------------------- demo
@main.command("demo")
@click.option("-o", "--output", help="Run directory (default: runs/demo-<timestamp>).")
@click.option("--checkpoint", help="Use this digits-tiny checkpoint instead of training or the cached one.")
@click.option("--retrain", is_flag=True, help="Train even when a cached checkpoint exists.")
@click.option("--epochs", type=int, help="Training epochs (default: the tuned default).")
@click.option("--iterations", "bench_iterations", type=int, default=30, show_default=True,
              help="Timed calls per bench measurement.")
@click.option("--force", is_flag=True, help="Write into a non-empty run directory.")
@json_option
@handle_errors
def demo_cmd(as_json: bool, **opts) -> None:
    """Train (or reuse) digits-tiny, export all five precisions with the gate, build engines when
    TensorRT exists, verify (attention included) and print the bench table."""
    from .demo import DemoConfig, run_demo

    result = run_demo(DemoConfig(progress=not as_json, **opts), echo=lambda m: click.echo(m, err=True))

    def render() -> None:
        if result.bench is not None:
            _render_bench(result.bench)
        rows = [[s["step"], s["status"], f"{s['seconds']:.1f}", s.get("reason") or s.get("summary", "")]
                for s in result.steps]
        table(f"edgevit demo: {result.run_dir} ({result.seconds:.0f} s)", ["step", "status", "s", "note"], rows)

    finish(result.to_dict(), as_json, render, result.ok, "demo: a step failed:",
           [f"{s['step']}: {s.get('reason', '')}" for s in result.steps if s["status"] == "failed"])
