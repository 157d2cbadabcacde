"""``edgevit build``, ``edgevit predict`` and ``edgevit embed``: build a TensorRT engine, and run
an engine or ONNX graph on images."""

from __future__ import annotations

import click

from ..formats import PRECISIONS
from ..output_kinds import OutputKind
from ._errors import handle_errors
from ._options import (
    LibraryChoice,
    json_option,
    library_option,
    preprocessed_option,
    verify_hash_option,
)
from ._render import emit_json, table


def render_build(result) -> None:
    from ..tensorrt.record import EngineRecord

    art, rep = result.entry, result.report
    rec = EngineRecord.from_artifact(art)
    mode = rec.build_mode
    rows = [["engine", result.engine_path], ["fusion report", result.report_path], ["manifest", result.manifest_path],
            ["precision", art.precision],
            ["build", ("strongly typed" if mode["strongly_typed"] else f"flags {mode['flags'] or 'none'}")],
            ["profile (batch)", " / ".join(map(str, rec.profile))],
            ["plan / device memory (profile)", f"{(art.size_bytes or 0) / 1e6:.1f} MB / " + (
                "not reported" if rec.device_memory_bytes is None else f"{rec.device_memory_bytes / 1e6:.1f} MB")],
            ["TensorRT (CUDA) / driver CUDA", f"{rec.tensorrt_version} ({rec.tensorrt_cuda_major or '?'}) / "
                                              f"{rec.cuda_driver_version or '?'}"],
            ["GPU", f"{rec.gpu_name} (sm {rec.compute_capability})"],
            ["fused attention", f"{rep['fused_attention_layers']} kernel(s), blocks {rep['fused_attention_blocks']}"
                                + (f"; NOT fused: blocks {rep['unfused_attention_blocks']}"
                                   if rep.get("unfused_attention_blocks") else "")
                                + (f"; unknown: blocks {rep['unknown_attention_blocks']}"
                                   if rep.get("unknown_attention_blocks") else "")],
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


@click.command("build")
@click.argument("source", metavar="MODEL.onnx|OUTDIR")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="Engine file to write (.plan).")
@click.option("--precision", type=click.Choice(PRECISIONS),
              help="Which ONNX artifact of OUTDIR to build (default: the only one, else fp32).")
@click.option("--batch", "batch", metavar="MIN,OPT,MAX", help="Override the manifest's batch profile (inside it).")
@click.option("--workspace", "workspace_mib", type=int, metavar="MIB", help="Builder workspace limit in MiB.")
@click.option("--opt-level", "optimization_level", type=click.IntRange(0, 5),
              help="Builder optimization level 0..5 (TensorRT default 3).")
@click.option("--timing-cache", type=click.Path(dir_okay=False), help="Timing cache file, loaded and saved.")
@click.option("--dla-core", type=int, metavar="N", help="Build for DLA core N, with GPU fallback (Jetson AGX/NX); "
              "DLA needs one batch: --batch N,N,N or a --static-batch export.")
@click.option("--version-compatible", is_flag=True, help="Build a version-compatible engine (opt-in).")
@library_option("--hardware-compat", "hardware_compatibility", type=LibraryChoice("edgevit.tensorrt.rules:HW_COMPAT_LEVELS"),
                default_from="edgevit.tensorrt.build:EngineBuildConfig.hardware_compatibility",
                help="Hardware-compatibility level (opt-in).")
@click.option("--weakly-typed", is_flag=True,
              help="TensorRT 10 only: FP16/BF16 builder flags instead of the default strong typing (recorded).")
@click.option("--memory-budget", "memory_budget_mb", type=float, metavar="MB",
              help="Refuse (exit 1, nothing written) an engine whose plan plus its profile's device memory exceeds "
                   "MB (10^6 bytes): e.g. what an 8 GB Orin Nano leaves next to the camera pipeline.")
@click.option("--force", is_flag=True, help="Overwrite an existing engine.")
@verify_hash_option
@json_option
@handle_errors
def build_cmd(source: str, output: str, batch: str | None, force: bool, verify_hash: bool, as_json: bool,
              **opts) -> None:
    """Build a TensorRT engine from an exported ONNX graph (or OUTDIR), with a fusion report."""
    from ..tensorrt.build import EngineBuildConfig, build_engine

    if batch is not None:
        from ..specs import parse_batch  # no torch: build loads none

        opts["batch"] = parse_batch(batch)
    result = build_engine(source, output, EngineBuildConfig(**opts), force=force, verify_hash=verify_hash)
    if as_json:
        emit_json(result.to_dict())
        return
    render_build(result)


@click.command("predict")
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
    from ..errors import OutputKindError
    from ..runtime import Engine

    with Engine.load(model, threads=threads, verify_hash=verify_hash) as engine:
        if not engine.output_kind.classes:
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


@click.command("embed")
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
    from ..runtime.embeddings import check_embeddings_file, embed_files

    if output is not None:
        check_embeddings_file(output, force)  # before the run
    result = embed_files(model, images, preprocessed=preprocessed, threads=threads, verify_hash=verify_hash)
    if output is not None:
        result.save(output, force=force)
    if as_json:
        emit_json(result.to_dict(output))
        return
    kind, backend, rows = result.kind, result.backend, result.rows
    norm = "mean token L2 norm" if OutputKind(kind).rank > 2 else "L2 norm"  # a vector per patch
    table(f"edgevit embed: {model} ({backend}, {kind})", ["input", "shape", norm, "latency ms"],
          [[r["input"], "x".join(map(str, r["shape"])), f"{r['norm']:.4f}", f"{r['latency_ms']:.2f}"] for r in rows])
    click.echo(f"{kind} {list(result.array.shape)}" + (f" written to {output}" if output else
                                                         "; pass -o FILE.npy to save them"))
