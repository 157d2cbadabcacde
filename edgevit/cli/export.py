"""``edgevit export``, ``edgevit quantize`` and ``edgevit lint``: the ONNX export, the precision
graphs with their accuracy gate, and the TensorRT-aware graph checks."""

from __future__ import annotations

import sys

import click

from .._deps import require_export
from ..formats import BASE_PRECISION
from ..input_contract import FLOAT_INPUT
from ..output_kinds import OUTPUT_KINDS
from ..tolerances import Verdict
from ._errors import handle_errors
from ._options import (
    LibraryChoice,
    LibraryDefaultInHelp,
    json_option,
    library_option,
    model_override_options,
    parse_precisions,
    precision_options,
    verify_hash_option,
)
from ._render import emit_json, finish, table
from .deploy import render_build


@click.command("export")
@click.argument("source")
@click.option("-o", "--output", required=True, type=click.Path(file_okay=False),
              help="Output directory: model.onnx and edgevit.json are written there.")
@click.option("--arch", help="Variant name for a timm state dict (inferred from shapes otherwise).")
@click.option("--opset", type=int, help="ONNX opset (default: 18 for decomposed attention, 23 for fused; 17 up to the newest "
                   "the installed exporter writes).")
@library_option("--attention", type=LibraryChoice("edgevit.export.tensorrt_ops:ATTENTION_FORMS"),
                default_from="edgevit.export.tensorrt_ops:DEFAULT_ATTENTION",
                help="decomposed: MatMul-Softmax-MatMul, Q pre-scaled (JetPack 6's TensorRT parses it). "
                     "fused: the opset-23 Attention op (TensorRT >= 10.14).")
@click.option("--batch", "batch", metavar="MIN,OPT,MAX", cls=LibraryDefaultInHelp, default_from="edgevit.specs:DEFAULT_BATCH",
              show=lambda bounds: ",".join(map(str, bounds)),
              help="Dynamic batch bounds, recorded for TensorRT profiles (default {default}).")
@click.option("--static-batch", type=int, metavar="N", help="Fix the batch to N instead of a dynamic batch.")
@click.option("--output-kind", "output_kind", type=click.Choice(list(OUTPUT_KINDS)),
              help="The graph's output: logits (a classifier, the default for one), features (a headless model's "
                   "pooled embedding, its default) or tokens (the patch tokens (batch, patches, dim), class and "
                   "register tokens dropped, for dense heads).")
@library_option("--input", "input_kind", type=LibraryChoice("edgevit.input_contract:INPUT_KINDS"),
                default_from="edgevit.input_contract:FLOAT_INPUT",
                help="The graph's input: float (normalized float32 NCHW, default) or uint8 (raw pixels at the model's "
                     "input size; the graph casts, scales by 1/pixel_max, normalizes and transposes itself).")
@library_option("--input-layout", "input_layout", type=LibraryChoice("edgevit.input_contract:LAYOUTS"),
                default_from="edgevit.input_contract:DEFAULT_RAW_LAYOUT",
                help="Layout of a raw-pixel (--input uint8) input: NHWC (decoders, cameras) or NCHW.")
@click.option("--no-simplify", is_flag=True, help="Skip onnxslim.")
@click.option("--force", is_flag=True, help="Overwrite model.onnx / edgevit.json in OUTPUT.")
@click.option("--engine", "engine", is_flag=True,
              help="Then build a TensorRT engine OUTPUT/model.plan from the export (same as edgevit build).")
@click.option("--precision", "precision", default=BASE_PRECISION, show_default=True,
              help="Comma list of fp32, fp16, bf16, int8, fp8: graphs to write (see edgevit quantize).")
@precision_options
@model_override_options
@json_option
@handle_errors
def export_cmd(source: str, output: str, arch: str | None, opset: int | None, attention: str | None,
               batch: str | None, static_batch: int | None, output_kind: str | None, no_simplify: bool, force: bool,
               engine: bool, precision: str, as_json: bool, model_overrides: dict, input_kind: str | None = None,
               input_layout: str | None = None, size_range: tuple | None = None, **qopts) -> None:
    """Export SOURCE (variant name, checkpoint, or hub name: timm/NAME.TAG, hf-hub:ORG/REPO) to
    OUTPUT/model.onnx, verified against PyTorch."""
    require_export("exporting a PyTorch model to ONNX")
    from ..export.onnx import ExportConfig
    from ..export.pipeline import export_pipeline
    from ..specs import parse_batch

    if batch is not None and static_batch is not None:
        raise ValueError("give either --batch MIN,OPT,MAX or --static-batch N, not both")
    given = click.get_current_context().get_parameter_source("input_layout") is click.core.ParameterSource.COMMANDLINE
    if given and input_kind in (None, FLOAT_INPUT):
        raise click.UsageError("--input-layout is the layout of a raw-pixel input: give it with --input uint8 "
                               "(a float input is always NCHW)")
    options = {"attention": attention, "opset": opset, "static_batch": static_batch, "simplify": not no_simplify,
               "output": output_kind, "input": input_kind, "input_layout": input_layout, "size_range": size_range}
    options = {k: v for k, v in options.items() if v is not None or k not in ("input", "input_layout")}
    if batch is not None:
        options["batch"] = parse_batch(batch)
    precisions = parse_precisions(precision)
    # every option is checked before the export writes anything
    qconfig = _quantize_config(precisions, qopts, not as_json) if precisions != (BASE_PRECISION,) else None
    done = export_pipeline(source, output, ExportConfig(**options), quantize=qconfig, engine=engine, arch=arch,
                           force=force, model_overrides=model_overrides)
    if done.quantize is not None:
        _finish_quantize(done.quantize, as_json, done.to_dict())
    if as_json:
        if done.quantize is None:
            emit_json(done.to_dict())
        return
    result, built = done.export, done.engine
    art = result.manifest.artifact(precision=BASE_PRECISION, format="onnx")
    b = result.manifest.batch
    rows = [["onnx", result.onnx_path], ["manifest", result.manifest_path],
            ["opset / attention", f"{result.manifest.export['opset']} / {result.manifest.export['attention']}"],
            ["batch", f"dynamic {b.min}..{b.max} (opt {b.opt})" if b.dynamic else f"static {b.min}"],
            ["sha256", art.sha256[:16] + "..."], ["external data", ", ".join(art.external_data) or "no"],
            ["simplified", "yes" if result.simplify.get("applied") else "no"]]
    out, inp = result.manifest.outputs[0], result.manifest.inputs[0]
    rows.insert(2, ["output", f"{out.name} [{', '.join(map(str, out.shape))}]"])
    rows.insert(2, ["input", f"{inp.name} {inp.dtype} {inp.layout} ({', '.join(map(str, inp.shape))})"
                    + (" raw pixels (normalized inside the graph)" if inp.normalized is False else " normalized")
                    + (" height, width {}..{} px".format(*inp.extra["size_range"]["height"])
                       if "size_range" in inp.extra else "")])
    for check in result.verification.get("checks", []):
        agree = (f"top-1 agree {check['top1_agreement']:.3f}" if "top1_agreement" in check else
                 f"cos min {check['cosine_min']:.6f}" + (f", k-NN@{check['knn_k']} agree {check['knn_agreement']:.3f}"
                                                         if check["knn_k"] else ""))
        rows.append([f"vs PyTorch: {check['input']}",
                     f"max abs {check['max_abs']:.2e}, rel {check['max_rel_to_scale']:.1e}, {agree}"])
    raw = result.verification.get("consumer")
    if raw:
        rows.append([f"{raw['consumer']} input vs PyTorch + edgevit preprocessing",
                     f"{raw['verdict']}: max abs {raw['max_abs']:.2e} (fp32 atol {raw['atol']:g}), top-1 agree "
                     f"{raw['top1_agreement'] if raw['top1_agreement'] is not None else '-'} on {raw['samples']} "
                     f"images ({raw['images']})"])
    table(f"edgevit export: {source}", ["field", "value"], rows)
    for note in result.warnings:
        click.secho(f"note: {note}", fg="yellow", err=True)
    if result.lint and result.lint.findings:
        lint_table(result.lint)
    if built is not None:
        render_build(built)


def _quantize_config(precisions, opts: dict, progress: bool):
    from ..precision import QuantizeConfig
    from ..precision.calibration import CalibrationConfig

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
    gates = [e["gate"] for e in result.entries.values()]
    judged_features = next((g for g in gates if g.features), None)
    features = judged_features is not None  # features / tokens: no labels, judged by cosine and k-NN agreement
    output = judged_features.comparison.output if features else "logits"
    knn = judged_features.comparison.agreement_metric if features else "k-NN"
    rows = []
    for p, e in result.entries.items():
        g = e["gate"]
        verdict = g.verdict.value + (": " + "; ".join(g.reasons) if g.reasons else "")
        c = g.comparison
        if c is None:
            rows.append([p, e["path"], "-", "-", "-", "-", g.verdict.value])
        elif g.features:
            rows.append([p, e["path"], f"{c.cosine_min:.5f}", f"{c.cosine_mean:.5f}", f"{g.agreement:.4f}",
                         f"{c.max_abs:.3g}", verdict])
        else:
            rows.append([p, e["path"], f"{g.top1:.4f}", f"{g.drop_points:+.2f}", f"{g.agreement:.4f}",
                         f"{c.max_abs:.3g}", verdict])
    accuracy = ["cos min", "cos mean", f"{knn} agree"] if features else ["top-1", "drop (pts)", "agree"]
    table(f"precision graphs in {result.outdir} (gate vs fp32 on ONNX Runtime CPU)",
          ["precision", "file", *accuracy, "max |d|", "gate"], rows)
    if features:
        from ..metrics import KNN_AGREEMENT

        click.echo(f"{output} have no labels: the gate compares each graph's {output} with the fp32 graph's: lowest "
                   f"per-sample cosine >= min_cosine and {knn} agreement >= min_agreement of the precision's "
                   f"tolerance ({KNN_AGREEMENT})")
    judged = next((g.arithmetic for g in gates if g.arithmetic), None)
    if judged:
        click.echo(f"int8/fp8 graphs judged by their {judged}")
    for p, e in result.entries.items():
        if e.get("sensitivity"):
            table(f"{p} sensitivity: one layer quantized at a time (worst first)",
                  ["layer", "cos min" if features else "drop (pts)", "agree"],
                  [[r["layer"], f"{r['cosine_min']:.5f}" if features else f"{r['drop_points']:+.2f}",
                    f"{r['agreement']:.4f}"] for r in e["sensitivity"][:8]])
        if e.get("auto_excluded"):
            click.echo(f"{p}: auto-excluded {', '.join(e['auto_excluded'])}")
    if result.calibration:
        c = result.calibration
        click.echo(f"calibration: {c['method']} on {c['data']} ({'cache hit' if c['cache_hit'] else 'computed'}: "
                   f"{c['cache']})")


def _finish_quantize(result, as_json: bool, extra: dict | None = None) -> None:
    failed = [f"{p}: " + "; ".join(e["gate"].reasons) for p, e in result.entries.items()
              if e["gate"].verdict is Verdict.FAILED]
    finish({**(extra or {}), "quantize": result.to_dict(), "ok": result.ok}, as_json,
           lambda: _render_quantize(result), result.ok,
           "accuracy gate failed (recorded as failed in the manifest); try --auto-exclude, another "
           "--calib-method, or a larger --max-drop:", failed)


@click.command("quantize")
@click.argument("source", metavar="MODEL.onnx|OUTDIR")
@library_option("--precision", "precision", default_from="edgevit.precision.pipeline:QuantizeConfig.precisions",
                show=",".join, help="Comma list of fp32, fp16, bf16, int8, fp8.")
@precision_options
@click.option("--force", is_flag=True, help="Overwrite existing model.<precision>.onnx files.")
@verify_hash_option
@json_option
@handle_errors
def quantize_cmd(source: str, precision: str, force: bool, as_json: bool, **opts) -> None:
    """Write fp16/bf16/int8/fp8 graphs beside an exported model.onnx, each gated on labelled data."""
    require_export("quantizing an export")
    from ..precision import quantize

    result = quantize(source, _quantize_config(parse_precisions(precision), opts, not as_json), force=force)
    _finish_quantize(result, as_json)


def lint_table(report) -> None:
    table(f"edgevit lint (TensorRT {report.tensorrt_version}): {report.path}", ["severity", "code", "message"],
          [[f.severity, f.code, f.message] for f in report.findings])


@click.command("lint")
@click.argument("model_path", metavar="MODEL.onnx", type=click.Path())
@library_option("--trt-version", "tensorrt_version", default_from="edgevit.export.tensorrt_ops:DEFAULT_TENSORRT_VERSION",
                help="TensorRT version to check against (the default: JetPack 6's).")
@json_option
@handle_errors
def lint_cmd(model_path: str, tensorrt_version: str, as_json: bool) -> None:
    """ViT- and TensorRT-aware checks of an ONNX graph; exit status 1 when there are errors."""
    from ..export.lint import lint_onnx

    report = lint_onnx(model_path, tensorrt_version=tensorrt_version)
    if as_json:
        emit_json(report.to_dict())
    elif report.findings:
        lint_table(report)
    else:
        click.echo(f"{model_path}: no findings (TensorRT {tensorrt_version})")
    if not report.ok:
        if not as_json:
            click.secho(f"edgevit: lint: {len(report.errors)} error(s)", fg="red", err=True)
        sys.exit(1)
