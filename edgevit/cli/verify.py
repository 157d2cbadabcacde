"""``edgevit verify``: :func:`edgevit.verify.verify` and its report."""

from __future__ import annotations

import json

import click

from ..formats import ARTIFACT_FORMATS, ONNX_PRECISIONS
from ..output_kinds import OutputKind
from ..runtime.onnxruntime_runner import PROVIDERS, QDQ_MODES
from ._errors import handle_errors
from ._options import (
    csv_list,
    json_option,
    library_option,
    model_override_options,
    preprocessed_option,
    verify_hash_option,
)
from ._render import finish, render_certificates, table, to_jsonable


@click.command("verify")
@click.argument("reference")
@click.argument("candidate", required=False)
@library_option("--data", default_from="edgevit.verify.run:VerifyConfig.data",
              help="'random' (seeded normal), 'digits', an ImageFolder directory or a .npy/.npz (raw pixels; "
                   "see --preprocessed).")
@preprocessed_option
@library_option("--samples", type=int, default_from="edgevit.verify.run:VerifyConfig.samples", help="How many inputs to compare on.")
@library_option("--batch-size", type=int, default_from="edgevit.verify.run:VerifyConfig.batch_size")
@library_option("--seed", type=int, default_from="edgevit.verify.run:VerifyConfig.seed", help="Seed of --data random.")
@click.option("--precision", type=click.Choice(ONNX_PRECISIONS),
              help="Candidate precision: picks the OUTDIR artifact and the tolerance row (default: detected).")
@click.option("--format", "fmt", type=click.Choice(list(ARTIFACT_FORMATS)),
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
@library_option("--device", default_from="edgevit.verify.run:VerifyConfig.device", help="PyTorch device: cpu or cuda[:N].")
@library_option("--dtypes", default_from="edgevit.verify.run:VerifyConfig.dtypes", show=",".join,
              help="PyTorch candidate with --attention: dtypes to check, comma-separated.")
@click.option("--backends", help="PyTorch candidate with --attention: subset of "
              "flash,efficient,cudnn,math,naive (default: all).")
@click.option("--provider", type=click.Choice(list(PROVIDERS)), default="cpu", show_default=True,
              help="ONNX Runtime execution provider.")
@click.option("--threads", type=int, help="ONNX Runtime intra-op threads.")
@library_option("--qdq", type=click.Choice(list(QDQ_MODES)), default_from="edgevit.verify.run:VerifyConfig.qdq",
              help="How int8/fp8 Q/DQ graphs run: exact (the arithmetic the graph defines, as TensorRT computes it; "
              "the same verdict on every CPU) or kernels (as this CPU's ONNX Runtime int8 kernels run it).")
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
    from .._io import check_writable, write_text_atomic
    from ..verify import VerifyConfig, verify

    if report_path:
        check_writable(report_path, force)
    config = VerifyConfig(format=fmt, dtypes=csv_list(dtypes) or (), backends=csv_list(backends), providers=provider,
                          **opts)
    report = verify(reference, candidate, config)
    data = report.to_dict()
    if report_path:
        write_text_atomic(report_path, json.dumps(data, indent=2, default=to_jsonable) + "\n", force=force)
    finish(data, as_json, lambda: _render_verify(report), report.ok,
           f"verification failed ({len(report.failures)} check(s)):", report.failures)


def _render_verify(report) -> None:
    def e(v):
        return "-" if v is None else f"{v:.2e}"

    def cos(v):
        return "-" if v is None else f"{v:.6f}"

    tol = report.tolerance
    rows = []
    features = not OutputKind(report.output).classes
    for name, c in report.outputs.items():
        if features:
            rows.append([name, e(c.max_abs), e(c.max_rel), e(c.mean_abs), cos(c.cosine_min),
                         cos(c.cosine_mean), f"{c.knn_agreement:.4f}" if c.knn_k else "-"])
            continue
        agree = f"{c.top1_agreement:.4f}/{c.top5_agreement:.4f}" if c.top1_agreement is not None else "-"
        acc = (f"{c.accuracy_reference:.4f}/{c.accuracy_candidate:.4f}" if c.accuracy_reference is not None
               else "-")
        rows.append([name, e(c.max_abs), e(c.max_rel), e(c.mean_abs), cos(c.cosine_min), agree, acc])
    click.echo(f"reference {report.reference['source']} [{report.reference.get('runner')}]")
    click.echo(f"candidate {report.candidate['source']} [{report.candidate.get('runner')}], precision "
               f"{report.precision}")
    agreement = "k-NN agreement" if features else "top-1 agreement"
    click.echo(f"data: {report.data['description']}; tolerance: atol {tol['atol']:g}, rtol {tol['rtol']:g}, "
               f"min cosine {tol['min_cosine']:g}, min {agreement} {tol['min_agreement']:g}")
    if report.arithmetic:
        click.echo(f"Q/DQ run as: {report.arithmetic}")
    if features:
        k = next((c.knn_k for c in report.outputs.values()), None) or "k"
        table("final outputs", ["output", "max abs", "max rel", "mean abs", "cos min", "cos mean",
                                f"k-NN@{k} agree"], rows)
        from ..metrics import KNN_AGREEMENT

        click.echo(f"{report.output} have no labels: judged by per-sample cosine similarity and {KNN_AGREEMENT}")
    else:
        table("final outputs", ["output", "max abs", "max rel", "mean abs", "cos min", "agree t1/t5",
                                "acc ref/cand"], rows)
    render_certificates(report.certificates)
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
