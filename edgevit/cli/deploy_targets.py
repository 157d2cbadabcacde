"""``edgevit deploy TARGET``: the group of deploy targets (:data:`edgevit.deploy.TARGETS`, whose table its
help lists) and ``edgevit deploy triton``. Each target's command is attached to the group with one line."""

from __future__ import annotations

import shlex

import click

from ..formats import ONNX_PRECISIONS
from ._errors import handle_errors
from ._options import LibraryChoice, LibraryDefaultInHelp, int_list, json_option, library_option, verify_hash_option
from ._render import emit_json, table


class DeployGroup(click.Group):
    """The ``deploy`` group: its help lists what each target of :data:`edgevit.deploy.TARGETS` writes. (The
    ``edgevit`` group, a JsonErrorsGroup, answers usage errors of its subcommands with --json.)"""

    def format_help_text(self, ctx, formatter) -> None:
        super().format_help_text(ctx, formatter)
        from ..deploy import TARGETS

        with formatter.section("Targets"):
            formatter.write_dl([(t.name, t.writes) for t in TARGETS.values()])


@click.group("deploy", cls=DeployGroup)
def deploy_group() -> None:
    """Write what an application's runtime loads (a Triton model repository, a DeepStream nvinfer config)
    from an export, checked against the reference with that consumer's own preprocessing; the
    certificate is recorded in the export's manifest. Nothing here runs Triton, DeepStream or TensorRT."""


def render_triton(result) -> None:
    from ..certificates import CERTIFICATE_COLUMNS

    cfg = result.config
    spec = cfg.inputs[0]
    rows = [["model directory", str(result.model_dir)],
            ["files", ", ".join(str(p.relative_to(result.model_dir)) for p in result.files)],
            ["backend", "platform tensorrt_plan" if cfg.engine else "onnxruntime"
                        + (f" (TensorRT accelerator, precision_mode {cfg.precision_mode})" if cfg.precision_mode else "")],
            ["max_batch_size", str(cfg.max_batch_size) + ("" if cfg.batched else " (static batch)")],
            ["input", f"{spec.name} {spec.triton_type} {cfg.dims(spec)}"],
            *[["output", f"{t.name} {t.triton_type} {cfg.dims(t)}"
               + (" (label_filename labels.txt)" if t.name == cfg.label_output else "")]
              for t in cfg.outputs],
            ["dynamic_batching", (f"preferred {cfg.preferred}, max queue delay {cfg.queue_delay_us} us"
                                  if cfg.batched else "none (static batch)")],
            ["instance_group", f"{cfg.instances} x {cfg.kind.upper()}"]]
    table(f"edgevit deploy triton: {cfg.name}", ["field", "value"], rows)
    cert = result.certificate
    table("preprocessing certificate", CERTIFICATE_COLUMNS, [cert.row()])
    click.echo(f"checked on {cert.samples} images ({cert.details['data']}), atol {cert.atol:g}. Triton was not "
               f"run here: serve it with tritonserver --model-repository {shlex.quote(str(result.repository))}")


@deploy_group.command("triton")
@click.argument("outdir", metavar="OUTDIR")
@click.option("-o", "--output", "repository", required=True, type=click.Path(file_okay=False),
              help="The model repository (created if missing); the model goes to REPO/NAME.")
@click.option("--name", help="The model's name (its directory; default: <OUTDIR name>_<precision>).")
@click.option("--precision", type=click.Choice(ONNX_PRECISIONS), help="Which ONNX graph of OUTDIR (default: fp32).")
@click.option("--artifact", type=click.Path(dir_okay=False, exists=True),
              help="A file of OUTDIR instead of --precision: an ONNX graph, or a TensorRT engine (model.plan).")
@library_option("--instances", type=click.IntRange(1), default_from="edgevit.deploy.triton:write_triton.instances",
                help="Instances (instance_group count).")
@library_option("--kind", type=LibraryChoice("edgevit.deploy.triton:INSTANCE_KINDS"), default_from="edgevit.deploy.triton:write_triton.kind",
              help="Instance kind: KIND_GPU (ONNX: TensorRT accelerator offered) or KIND_CPU (ONNX only).")
@click.option("--max-batch-size", type=int, help="At most the batch profile's max (default: that max).")
@click.option("--preferred-batch-sizes", metavar="N,N,...",
              help="dynamic_batching preferred sizes, inside the profile (default: its OPT and max_batch_size).")
@library_option("--max-queue-delay-us", type=click.IntRange(0), default_from="edgevit.deploy.triton:write_triton.queue_delay_us",
              help="dynamic_batching max_queue_delay_microseconds.")
@click.option("--gpus", metavar="N,N,...", help="instance_group gpus (default: all).")
@click.option("--compute-capability", metavar="X.Y",
              help="The GPU the server runs on: an engine built for another one is refused.")
@click.option("--tensorrt-version", metavar="X.Y.Z",
              help="The server's TensorRT: an engine that cannot run on it is refused.")
@click.option("--data", help="Images the model is checked on: 'digits', an ImageFolder or .npy/.npz of raw pixels "
                             "(default: the digits, for models they fit).")
@click.option("--samples", type=click.IntRange(1), cls=LibraryDefaultInHelp,
              default_from="edgevit.deploy.common:DEFAULT_SAMPLES", help="How many images to check on (default {default}).")
@click.option("--force", is_flag=True, help="Replace an existing REPO/NAME.")
@verify_hash_option
@json_option
@handle_errors
def triton_cmd(outdir: str, repository: str, name, precision, artifact, instances: int, kind: str, max_batch_size,
               preferred_batch_sizes, max_queue_delay_us: int, gpus, compute_capability, tensorrt_version, data,
               samples, force: bool, verify_hash: bool, as_json: bool) -> None:
    """Write a Triton model repository entry (config.pbtxt, 1/model.onnx or 1/model.plan, labels.txt) and
    check the model with the config's shapes and types on ONNX Runtime."""
    from ..deploy.triton import write_triton

    preferred = list(int_list(preferred_batch_sizes, "--preferred-batch-sizes")) or None
    try:
        gpu_ids = [int(g) for g in gpus.split(",") if g.strip()] if gpus else None
    except ValueError:
        raise click.BadParameter(f"expected comma-separated GPU ids such as 0,1, got {gpus!r}", param_hint="--gpus") from None
    progress = None if as_json else (lambda msg: click.echo(msg, err=True))
    result = write_triton(outdir, repository, name=name, precision=precision, artifact=artifact, instances=instances,
                          kind=kind, max_batch_size=max_batch_size, preferred=preferred,
                          queue_delay_us=max_queue_delay_us, gpus=gpu_ids, compute_capability=compute_capability,
                          tensorrt_version=tensorrt_version, force=force, data=data, samples=samples,
                          verify_hash=verify_hash, progress=progress)
    if as_json:
        emit_json({"ok": True, **result.to_dict()})
    else:
        render_triton(result)


from .deploy_deepstream import deepstream_cmd  # noqa: E402

deploy_group.add_command(deepstream_cmd)

__all__ = ["deploy_group", "render_triton", "triton_cmd"]
