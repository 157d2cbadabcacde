"""Which rows a bench run has: the sources resolved to artifacts, the PyTorch reference, and one
planned row per (artifact, provider), each with the target that will run it or why it cannot.

Rows, in this order:

- ``torch`` eager on CPU, fp32, SDPA attention: the reference (from ``model.source`` of the
  manifest when that checkpoint loads; otherwise the row is skipped with the reason and the
  first ok fp32 ONNX row becomes the reference for agreement and speed-up);
- with ``torch.cuda.is_available()``: PyTorch CUDA at fp32, fp16 and bf16 with SDPA, each eager
  and as a replayed CUDA graph (``variant`` "eager" / "cuda-graph");
- one row per graph artifact (ONNX) and ONNX Runtime provider (CPU; CUDA too when installed);
- one row per engine artifact (TensorRT: ``skipped`` with the install command when TensorRT is absent).

Each file's rows are run by the runner of its format's row (:data:`edgevit.formats.ARTIFACT_FORMATS`).

A manifest-listed file that is missing or whose sha256 differs is a ``failed`` row, never run.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from .._io import is_edgevit_internal
from ..errors import EdgeVitError, ManifestError
from ..formats import ARTIFACT_FORMATS, BASE_PRECISION, FLOAT_PRECISIONS, MANIFEST_NAME, QUANTIZED, find_format
from ..output_kinds import OutputKind, kind_of_output_name
from ..resolved import Resolved
from ..runtime.onnxruntime_runner import JUDGED_BY, PROVIDERS
from ..specs import BatchRange
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
    contract: object = None  # a raw-pixel graph's edgevit.input_contract.InputContract (None: float input)


def resolve_sources(sources) -> list[Resolved]:
    """Every artifact file of ``sources`` (export OUTDIRs, each giving every file its manifest lists, or
    artifact files, a file beside a manifest taking its entry), as :meth:`edgevit.manifest.Manifest.resolve`
    names them; the files are not checked yet (each row checks its own: :func:`_integrity_problem`)."""
    from ..manifest import Manifest

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
            # unchecked: each row's file is checked as it is planned (_integrity_problem)
            out.extend(Resolved(manifest.root / art.path, art.format, manifest, art) for art in manifest.artifacts)
            continue
        if path.exists() and find_format(path) is None:
            known = ", ".join(f"{f.what} ({', '.join(f.suffixes)})" for f in ARTIFACT_FORMATS.values())
            raise ValueError(f"{path}: not an artifact file ({known}) "
                             f"or an export directory with an {MANIFEST_NAME} manifest")
        # the file's sha256 is checked per row (_integrity_problem), so a changed file fails its rows only
        out.append(Manifest.resolve(path, verify_hash=False, listed=False))
    return out


def manifests_of(resolved: list[Resolved]) -> list:
    """The manifests of the benchmarked files, each once, in order."""
    return list({id(r.manifest): r.manifest for r in resolved if r.manifest is not None}.values())


def batch_profile(manifests: list) -> BatchRange | None:
    """The first batch range of ``manifests`` (:func:`manifests_of`), or None."""
    return next((m.batch for m in manifests if m.batch is not None), None)


def check_batch(b: int, profile: BatchRange | None, what: str) -> None:
    """ValueError when batch ``b`` (the option ``what``) is outside the export's batch range."""
    if profile is None:
        return
    lo, hi = profile.min, profile.max
    if not profile.is_dynamic and b != lo:
        raise ValueError(f"{what} {b}: the artifacts have a static batch of {lo}; only batch {lo} can run")
    if not lo <= b <= hi:
        raise ValueError(f"{what} {b} is outside the export's batch profile {lo}..{hi} "
                         f"(manifest batch min {lo}, max {hi}); choose a batch in that range or re-export "
                         "with --batch MIN,OPT,MAX")


def output_kind(manifests: list, model, resolved: list[Resolved] = ()) -> OutputKind:
    """What the benchmarked artifacts output: the manifests' ``model.output`` (logits before it was
    recorded; a listed graph's own output rank where it disagrees: :meth:`Manifest.check_artifact`), else
    the reference model's ``output_kind``, else an ONNX graph's output name."""
    for r in resolved:
        if r.listed and r.artifact_format.graph:
            with contextlib.suppress(EdgeVitError):  # a bad file is its row's failure, reported there
                r.manifest.check_artifact(r.entry, verify_hash=False)
    recorded = {m.output_kind for m in manifests}
    if len(recorded) > 1:
        raise ValueError(f"the sources output {' and '.join(sorted(recorded))}: their rows cannot be compared; "
                         "benchmark the exports of each output kind separately")
    if recorded:
        return recorded.pop()
    if model is not None:
        return model.output_kind
    with contextlib.suppress(Exception):
        import onnx

        for r in resolved:
            if r.artifact_format.graph:
                names = [o.name for o in onnx.load(str(r.path), load_external_data=False).graph.output]
                return kind_of_output_name(names[0] if names else None)
    return OutputKind.LOGITS


def shape_from_onnx(resolved: list[Resolved]) -> tuple | None:
    """The (C, H, W) input shape of the first ONNX graph whose input dims are all fixed."""
    with contextlib.suppress(Exception):
        import onnx

        for r in resolved:
            if not r.artifact_format.graph:
                continue
            with contextlib.suppress(Exception):
                m = onnx.load(str(r.path), load_external_data=False)
                dims = m.graph.input[0].type.tensor_type.shape.dim
                shape = tuple(d.dim_value if d.HasField("dim_value") else None for d in dims)[1:]
                if shape and all(isinstance(d, int) and d > 0 for d in shape):
                    return shape
    return None


def _ort_providers(cfg: BenchConfig, machine: dict) -> list[str]:
    if cfg.providers is not None:
        return list(cfg.providers)
    out = ["cpu"]
    if PROVIDERS["cuda"][0] in machine.get("onnxruntime_providers", []) and cfg.device != "cpu":
        out.append("cuda")
    return out


def _size_mb(found: Resolved) -> float | None:
    """The file's size with its external data (:attr:`Resolved.files`), in MB; None when none exists."""
    sizes = [p.stat().st_size for p in found.files if p.exists()]
    return round(sum(sizes) / 1e6, 4) if sizes else None


def _integrity_problem(found: Resolved, verify_hash: bool) -> str | None:
    """Why a manifest-listed file must not be benchmarked (missing, or its sha256 differs from
    the recorded one: :meth:`edgevit.manifest.Manifest.check_artifact`), else None."""
    if not found.listed:
        return None
    try:
        found.manifest.check_artifact(found.entry, verify_hash)
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


def plan_rows(resolved: list[Resolved], model, ref_source, ref_reason, cfg: BenchConfig, machine: dict, threads: int,
              output: str = "logits") -> list[Plan]:
    """One :class:`Plan` per row, in the module docstring's order."""
    from ..runtime import get_runner

    tokens = not OutputKind(output).own  # the PyTorch rows run model.forward_tokens, as the tokens graph does
    plans: list[Plan] = []
    if cfg.include_reference:
        size = None
        if ref_source and Path(ref_source).is_file():
            size = round(Path(ref_source).stat().st_size / 1e6, 4)
        row = BenchRow(name="torch cpu fp32", backend="torch", device="cpu", format="checkpoint", precision=BASE_PRECISION,
                       artifact=ref_source, variant="eager", reference=True, size_mb=size)
        if model is None:
            plans.append(Plan(row, status="skipped", error=f"no PyTorch reference: {ref_reason}"))
        else:
            plans.append(Plan(row, make=lambda: RunnerTarget(
                lambda: get_runner("torch", model, attention="sdpa", device="cpu", dtype=BASE_PRECISION,
                                   output=output if tokens else None))))
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
    for found in resolved:
        file = found.path.resolve()
        if file in seen:
            continue
        seen.add(file)
        problem = _integrity_problem(found, cfg.verify_hash)  # hashed once
        checked = replace(found, hash_checked=found.listed and cfg.verify_hash and problem is None)
        plans.extend(_file_plans(checked, file, providers, threads, problem))
    return plans


def _file_plans(found: Resolved, file: Path, providers: list[str], threads: int, problem: str | None) -> list[Plan]:
    """The rows of one artifact file, run by its format's runner (:data:`edgevit.formats.ARTIFACT_FORMATS`):
    a graph once per ONNX Runtime provider, an engine once; a file that failed its check gives failed rows."""
    from ..runtime import runner_for_format

    from ..input_contract import contract_of

    fmt, precision = found.artifact_format, found.precision or "unknown"
    contract = contract_of(found.manifest) if found.entry is not None else None  # raw pixels: fed their pixels

    def target(**options):
        return lambda: RunnerTarget(lambda: runner_for_format(fmt.name, file, contract=contract, **options))

    common = {"format": fmt.name, "backend": fmt.runner, "precision": precision, "artifact": str(found.path),
              "size_mb": _size_mb(found)}
    if not fmt.graph:
        record = found.record  # checked against this machine
        recorded = record.device_memory_bytes if record is not None else None  # as built; replaced when it runs
        row = BenchRow(name=f"{fmt.label} {precision} {found.path.name}", device="cuda", **common,
                       device_memory_mb=None if recorded is None else round(recorded / 1e6, 3))
        return [Plan(row, status="failed", error=problem) if problem else
                Plan(row, make=target(manifest_entry=record, plan_options=found.plan_options))]
    plans = []
    for prov in providers:
        row = BenchRow(name=f"{fmt.label} {prov} {precision} {found.path.name}",
                       device="cpu" if prov == "cpu" else "cuda", provider=prov, **common)
        if problem:
            plans.append(Plan(row, status="failed", error=problem))
            continue
        exact = (target(providers="cpu", threads=threads, qdq=JUDGED_BY)  # a Q/DQ graph: judged as the graph defines it
                 if prov == "cpu" and precision in QUANTIZED else None)
        plans.append(Plan(row, onnx_path=file, exact=exact, make=target(providers=prov, threads=threads),
                          contract=contract))
    return plans


__all__ = ["Plan", "TORCH_CUDA_DTYPES", "batch_profile", "check_batch", "manifests_of", "output_kind", "plan_rows",
           "resolve_sources", "shape_from_onnx"]
