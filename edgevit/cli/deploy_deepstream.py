"""``edgevit deploy deepstream``: a Gst-nvinfer config for an export, checked with nvinfer's formula
(:mod:`edgevit.deploy.deepstream`). Attached to the ``deploy`` group with one line."""

from __future__ import annotations

import click

from ..formats import ONNX_PRECISIONS, PRECISION_TABLE
from ._errors import handle_errors
from ._options import json_option, verify_hash_option
from ._render import emit_json, table


def render_deepstream(result) -> None:
    cert = result.certificate
    props = result.properties
    rows = [["written to", str(result.directory)],
            ["files", ", ".join(p.name for p in result.files)],
            ["artifact", f"{cert.artifact}"],
            ["network-type", props["network-type"] + (" (classifier)" if props["network-type"] == "1"
                                                      else " (other; output-tensor-meta=1)")],
            ["network-mode", props["network-mode"]],
            ["infer-dims (C;H;W)", props["infer-dims"]],
            ["model-color-format", props["model-color-format"]],
            ["net-scale-factor", props["net-scale-factor"]],
            ["offsets", props["offsets"]],
            ["batch-size", props["batch-size"]],
            ["std fold", (f"1/std {cert.details['fold']['std']} into {cert.details['fold']['initializer']}"
                          if cert.details["fold"].get("folded") else "none (engine; one std for every channel)")]]
    table("edgevit deploy deepstream", ["field", "value"], rows)
    from ..certificates import CERTIFICATE_COLUMNS

    table("preprocessing certificate", CERTIFICATE_COLUMNS, [cert.row()])
    click.echo(f"checked on {cert.samples} images ({cert.details['data']}), atol {cert.atol:g}; "
               "DeepStream and TensorRT were not run here: run it with deepstream-app or gst-launch-1.0 "
               f"(nvinfer config-file-path={result.config})")


@click.command("deepstream")
@click.argument("outdir", metavar="OUTDIR")
@click.option("-o", "--output", required=True, type=click.Path(file_okay=False),
              help="Directory to write the nvinfer config, its graph and labels into.")
@click.option("--precision", type=click.Choice(ONNX_PRECISIONS),
              help="Which ONNX graph of OUTDIR (default: fp32). nvinfer has network-modes for "
                   + ", ".join(p.name for p in PRECISION_TABLE if p.nvinfer_mode is not None) + ".")
@click.option("--artifact", type=click.Path(dir_okay=False, exists=True),
              help="A file of OUTDIR instead of --precision (an ONNX graph, or a TensorRT engine of a model "
                   "whose std is one value for every channel).")
@click.option("--batch-size", type=int, help="nvinfer batch-size, inside the export's batch profile (default: its OPT).")
@click.option("--data", help="Images the config is checked on: 'digits', an ImageFolder or .npy/.npz of raw pixels "
                             "(default: the digits, for models they fit).")
@click.option("--samples", type=click.IntRange(1), help="How many images to check on (default 256).")
@click.option("--force", is_flag=True, help="Replace an existing output directory.")
@verify_hash_option
@json_option
@handle_errors
def deepstream_cmd(outdir: str, output: str, precision, artifact, batch_size, data, samples, force: bool,
                   verify_hash: bool, as_json: bool) -> None:
    """Write a DeepStream Gst-nvinfer config (exact: 1/std folded into the graph) and check it with
    nvinfer's formula on ONNX Runtime."""
    from ..deploy.deepstream import write_deepstream

    progress = None if as_json else (lambda msg: click.echo(msg, err=True))
    result = write_deepstream(outdir, output, precision=precision, artifact=artifact, batch_size=batch_size,
                              force=force, data=data, samples=samples, verify_hash=verify_hash, progress=progress)
    if as_json:
        emit_json({"ok": True, **result.to_dict()})
    else:
        render_deepstream(result)


__all__ = ["deepstream_cmd", "render_deepstream"]
