"""Which rows a bench run has: the sources resolved to artifacts, the PyTorch reference, and one
planned row per (artifact, provider), each with the target that will run it or why it cannot.

Rows, in this order:

- ``torch`` eager on CPU, fp32, SDPA attention: the reference (from ``model.source`` of the
  manifest when that checkpoint loads; otherwise the row is skipped with the reason and the
  first ok fp32 ONNX row becomes the reference for agreement and speed-up);
- with ``torch.cuda.is_available()``: PyTorch CUDA at fp32, fp16 and bf16 with SDPA, each eager
  and as a replayed CUDA graph (``variant`` "eager" / "cuda-graph");
- one row per ONNX artifact and ONNX Runtime provider (CPU; CUDA too when installed);
- one row per TensorRT engine (``skipped`` with the install command when TensorRT is absent).

A manifest-listed file that is missing or whose sha256 differs is a ``failed`` row, never run.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from .._io import is_edgevit_internal
from ..errors import EdgeVitError, ManifestError
from ..formats import ENGINE_SUFFIXES, FLOAT_PRECISIONS, MANIFEST_NAME, QUANTIZED
from ..metrics import FEATURE_OUTPUTS
from ..runtime.onnxruntime_runner import JUDGED_BY
from .report import BenchRow
from .targets import RunnerTarget, Target, TorchCudaTarget

if TYPE_CHECKING:
    from .run import BenchConfig

TORCH_CUDA_DTYPES = FLOAT_PRECISIONS


@dataclass
class Plan:
    """One row to run: its description and how to build its target (or why it is skipped/failed)."""

    row: BenchRow
    make: Callable[[], Target] | None = None
    kind: str = "runner"  # "runner" | "torch-cuda"
    onnx_path: Path | None = None
    error: str | None = None
    status: str | None = None
    exact: Callable[[], Target] | None = None  # a Q/DQ graph on the CPU: the same graph, Q/DQ run exactly


@dataclass
class Unlisted:
    """A file no manifest lists: its precision detected from the graph, "unknown" for an engine."""

    path: str
    format: str
    precision: str
    external_data: list = field(default_factory=list)


def resolve_sources(sources) -> list[tuple]:
    """[(manifest | None, root, [manifest Artifact | Unlisted])] per source (an export OUTDIR or an
    artifact file; a file beside a manifest takes its manifest entry)."""
    from ..manifest import Manifest
    from ..verify import detect_onnx_precision

    if isinstance(sources, (str, os.PathLike)):
        sources = [sources]
    sources = list(sources)
    if not sources:
        raise ValueError("give at least one export OUTDIR or artifact file to benchmark")
    out = []
    for src in sources:
        path = Path(src)
        if path.is_dir():
            if not Manifest.path_in(path).is_file():
                listing = sorted(p.name for p in path.iterdir() if not is_edgevit_internal(p.name))[:10]
                raise ManifestError(
                    f"{path}: no {MANIFEST_NAME} manifest here (found: {listing or 'nothing'}); "
                    f"run `edgevit export CHECKPOINT -o {path}` first, or name artifact files")
            manifest = Manifest.load(path)
            if not manifest.artifacts:
                raise ManifestError(f"{path / MANIFEST_NAME}: lists no artifacts; run edgevit export first")
            out.append((manifest, manifest.root, list(manifest.artifacts)))
            continue
        if path.exists() and path.suffix not in (".onnx", *ENGINE_SUFFIXES):
            raise ValueError(f"{path}: not an ONNX file (.onnx), a TensorRT engine ({', '.join(ENGINE_SUFFIXES)}) "
                             f"or an export directory with an {MANIFEST_NAME} manifest")
        # the file's sha256 is checked per row (_integrity_problem), so a changed file fails its rows only
        manifest, entry, _ = Manifest.resolve(path, verify_hash=False, listed=False)
        if entry is None:
            fmt = "onnx" if path.suffix == ".onnx" else "tensorrt"
            entry = Unlisted(path.name, fmt, detect_onnx_precision(path) if fmt == "onnx" else "unknown")
        out.append((manifest, path.parent, [entry]))
    return out


def batch_profile(manifests: list) -> dict | None:
    """The first manifest's batch profile ({"min", "opt", "max", "dynamic"}), or None."""
    for m in manifests:
        if m is not None and m.batch:
            return m.batch
    return None


def check_batch(b: int, profile: dict | None, what: str) -> None:
    """ValueError when batch ``b`` (the option ``what``) is outside the export's batch profile."""
    if profile is None or not profile:
        return
    lo, hi = int(profile.get("min", 1)), int(profile.get("max", b))
    if not profile.get("dynamic", True) and b != lo:
        raise ValueError(f"{what} {b}: the artifacts have a static batch of {lo}; only batch {lo} can run")
    if not lo <= b <= hi:
        raise ValueError(f"{what} {b} is outside the export's batch profile {lo}..{hi} "
                         f"(manifest batch min {lo}, max {hi}); choose a batch in that range or re-export "
                         "with --batch MIN,OPT,MAX")


def reference_model(manifests: list, cfg: BenchConfig):
    """(model, source, reason): the PyTorch reference (``--reference``, else the manifests' checkpoint:
    :func:`edgevit.verify.artifacts.source_model`), or None and why not; with a model, ``reason`` is a
    note for the report's warnings (an unchecked checkpoint) or None."""
    from ..models import load_model
    from ..verify.artifacts import source_model

    if cfg.reference:
        return load_model(cfg.reference, arch=cfg.arch, **cfg.model_overrides), cfg.reference, None
    model, source, note = source_model(manifests, cfg.arch, cfg.model_overrides, cfg.verify_hash)
    if model is None:
        note = f"{note} (give --reference CHECKPOINT)"
    return model, source, note


def output_kind(manifests: list, model, resolved=()) -> str:
    """What the benchmarked artifacts output: the manifests' ``model.output`` (logits before it was
    recorded; a listed graph's own output rank where it disagrees: :meth:`Manifest.check_artifact`), else
    the reference model's ``output_kind``, else an ONNX graph's output name."""
    for m, _, arts in resolved:
        for art in arts:
            if m is not None and art.format == "onnx" and not isinstance(art, Unlisted):
                with contextlib.suppress(EdgeVitError):  # a bad file is its row's failure, reported there
                    m.check_artifact(art, verify_hash=False)
    recorded = {m.output_kind for m in manifests if m is not None}
    if len(recorded) > 1:
        raise ValueError(f"the sources output {' and '.join(sorted(recorded))}: their rows cannot be compared; "
                         "benchmark the exports of each output kind separately")
    if recorded:
        return recorded.pop()
    if model is not None:
        return model.output_kind
    with contextlib.suppress(Exception):
        import onnx

        for _, root, arts in resolved:
            for art in arts:
                if art.format == "onnx":
                    names = [o.name for o in onnx.load(str(Path(root) / art.path), load_external_data=False).graph.output]
                    return names[0] if names and names[0] in FEATURE_OUTPUTS else "logits"
    return "logits"


def shape_from_onnx(resolved) -> tuple | None:
    """The (C, H, W) input shape of the first ONNX artifact whose input dims are all fixed."""
    with contextlib.suppress(Exception):
        import onnx

        for _, root, arts in resolved:
            for art in arts:
                if art.format != "onnx":
                    continue
                with contextlib.suppress(Exception):
                    m = onnx.load(str(Path(root) / art.path), load_external_data=False)
                    dims = m.graph.input[0].type.tensor_type.shape.dim
                    shape = tuple(d.dim_value if d.HasField("dim_value") else None for d in dims)[1:]
                    if shape and all(isinstance(d, int) and d > 0 for d in shape):
                        return shape
    return None


def _ort_providers(cfg: BenchConfig, machine: dict) -> list[str]:
    if cfg.providers is not None:
        return list(cfg.providers)
    out = ["cpu"]
    if "CUDAExecutionProvider" in machine.get("onnxruntime_providers", []) and cfg.device != "cpu":
        out.append("cuda")
    return out


def _size_mb(root: Path, art) -> float | None:
    total = 0
    found = False
    for rel in [art.path, *art.external_data]:
        p = root / rel
        if p.exists():
            total += p.stat().st_size
            found = True
    return round(total / 1e6, 4) if found else None


def _integrity_problem(manifest, art, verify_hash: bool) -> str | None:
    """Why a manifest-listed file must not be benchmarked (missing, or its sha256 differs from
    the recorded one: :meth:`edgevit.manifest.Manifest.check_artifact`), else None."""
    if manifest is None or isinstance(art, Unlisted):
        return None
    try:
        manifest.check_artifact(art, verify_hash)
    except ManifestError as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


def _cuda_available(cfg: BenchConfig) -> bool:
    if cfg.device == "cpu":
        return False
    try:
        import torch

        cuda = torch.cuda.is_available()
    except ImportError:
        cuda = False
    if cfg.device == "cuda" and not cuda:
        raise EdgeVitError("--device cuda was asked for but torch.cuda.is_available() is False")
    return cuda


def plan_rows(resolved, model, ref_source, ref_reason, cfg: BenchConfig, machine: dict, threads: int,
              output: str = "logits") -> list[Plan]:
    """One :class:`Plan` per row, in the module docstring's order."""
    from ..runtime import get_runner

    def ort_target(file, provider, **options):
        return lambda: RunnerTarget(lambda: get_runner("onnxruntime", file, providers=provider, threads=threads,
                                                       **options))

    tokens = output == "tokens"  # the PyTorch rows run model.forward_tokens, as the tokens graph does
    plans: list[Plan] = []
    if cfg.include_reference:
        size = None
        if ref_source and Path(ref_source).is_file():
            size = round(Path(ref_source).stat().st_size / 1e6, 4)
        row = BenchRow(name="torch cpu fp32", backend="torch", device="cpu", format="checkpoint", precision="fp32",
                       artifact=ref_source, variant="eager", reference=True, size_mb=size)
        if model is None:
            plans.append(Plan(row, status="skipped", error=f"no PyTorch reference: {ref_reason}"))
        else:
            plans.append(Plan(row, make=lambda: RunnerTarget(
                lambda: get_runner("torch", model, attention="sdpa", device="cpu", dtype="fp32",
                                   output="tokens" if tokens else None))))
    if _cuda_available(cfg) and model is not None:
        for dtype in TORCH_CUDA_DTYPES:
            for graph in ((False, True) if cfg.cuda_graphs else (False,)):
                row = BenchRow(name=f"torch cuda {dtype}" + (" graph" if graph else ""), backend="torch",
                               device="cuda", format="checkpoint", precision=dtype, artifact=ref_source,
                               variant="cuda-graph" if graph else "eager",
                               size_mb=plans[0].row.size_mb if plans else None)
                plans.append(Plan(row, kind="torch-cuda",
                                  make=lambda d=dtype, g=graph: TorchCudaTarget(model, d, g, tokens=tokens)))
    providers = _ort_providers(cfg, machine)
    seen = set()
    for manifest, root, arts in resolved:
        for art in arts:
            file = (Path(root) / art.path).resolve()
            if file in seen:
                continue
            seen.add(file)
            size = _size_mb(Path(root), art)
            rel = str(Path(root) / art.path)
            problem = _integrity_problem(manifest, art, cfg.verify_hash)  # hashed once per file
            if art.format == "onnx":
                for prov in providers:
                    row = BenchRow(name=f"ort {prov} {art.precision} {Path(art.path).name}", backend="onnxruntime",
                                   device="cpu" if prov == "cpu" else "cuda", format="onnx",
                                   precision=art.precision, artifact=rel, provider=prov, size_mb=size)
                    if problem:
                        plans.append(Plan(row, status="failed", error=problem))
                        continue
                    exact = (ort_target(file, "cpu", qdq=JUDGED_BY)  # a Q/DQ graph: judged as the graph defines it
                             if prov == "cpu" and art.precision in QUANTIZED else None)
                    plans.append(Plan(row, onnx_path=file, exact=exact, make=ort_target(file, prov)))
            else:
                row = BenchRow(name=f"tensorrt {art.precision} {Path(art.path).name}", backend="tensorrt",
                               device="cuda", format="tensorrt", precision=art.precision, artifact=rel, size_mb=size)
                record = None if isinstance(art, Unlisted) else art.to_dict()  # checked against this machine
                plans.append(Plan(row, status="failed", error=problem) if problem else
                             Plan(row, make=lambda f=file, e=record: RunnerTarget(
                                 lambda: get_runner("tensorrt", f, manifest_entry=e))))
    return plans


__all__ = ["Plan", "TORCH_CUDA_DTYPES", "Unlisted", "batch_profile", "check_batch", "output_kind", "plan_rows",
           "reference_model", "resolve_sources", "shape_from_onnx"]
