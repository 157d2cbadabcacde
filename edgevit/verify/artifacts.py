"""What each side of a comparison is and how to run it.

:func:`resolve_artifact` classifies what the user gave (a checkpoint or variant name, an ONNX
file, a TensorRT engine, an export OUTDIR with its manifest) as an :class:`Artifact`: its kind,
its precision (recorded in a manifest, else read off the graph) and its manifest. The helpers
below read from the artifacts what a comparison needs: which runner runs it, what it outputs,
its preprocessing and its class names.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ..errors import EdgeVitError, OnnxModelError
from ..formats import ENGINE_SUFFIXES, FLOAT_PRECISIONS, MANIFEST_NAME, ONNX_PRECISIONS
from ..metrics import FEATURE_OUTPUTS
from ..runtime.onnxruntime_runner import JUDGED_BY


@dataclass
class Artifact:
    """What one side of a comparison is and how to run it."""

    kind: str  # "torch", "onnx" or "engine"
    source: str
    precision: str = "fp32"
    path: Path | None = None
    manifest: dict | None = None
    model: object = None  # the loaded VisionTransformer for torch artifacts
    entry: object = None  # the manifest's record of ``path`` (edgevit.manifest.Artifact), or None

    def to_dict(self) -> dict:
        return {"kind": self.kind, "source": self.source, "precision": self.precision,
                "path": str(self.path) if self.path else None}


def detect_onnx_precision(path: str | os.PathLike) -> str:
    """An ONNX graph's precision read off the graph (:func:`edgevit.onnx_graph.graph_precision`):
    fp8 / int8 Q/DQ, fp16 / bf16 weights, else fp32 (also for a file that does not parse: its runner
    reports that properly)."""
    from ..onnx_graph import graph_facts

    facts = graph_facts(path)
    return facts["precision"] if facts is not None else "fp32"


def resolve_artifact(source, precision: str | None = None, role: str = "candidate", arch: str | None = None,
                     format: str | None = None, verify_hash: bool = True, model_overrides: dict | None = None
                     ) -> Artifact:
    """Classify ``source`` (checkpoint / variant / ONNX / engine / export OUTDIR with manifest).

    An OUTDIR gives its manifest's artifact of ``precision`` and ``format``
    (:meth:`edgevit.manifest.Manifest.resolve`: the ONNX graph unless ``format="tensorrt"``, fp32
    unless ``precision`` is given or only one artifact matches). A bare
    ONNX file's or engine's precision comes from a manifest beside it that lists it, else from
    its graph (:func:`detect_onnx_precision`); an engine no manifest lists needs ``precision``.
    A file a manifest lists is checked against its recorded sha256 unless ``verify_hash=False``
    (:meth:`edgevit.manifest.Manifest.check_artifact`).
    """
    from ..manifest import Manifest
    from ..models import VisionTransformer, load_model

    if precision is not None and precision not in ONNX_PRECISIONS:
        raise ValueError(f"precision must be one of {list(ONNX_PRECISIONS)}, got {precision!r}")
    if isinstance(source, VisionTransformer):
        return Artifact("torch", "<model>", precision or "fp32", model=source.eval())
    text = str(source)
    path = Path(text)
    if path.is_dir() and Manifest.path_in(path).is_file():
        manifest, art, file = Manifest.resolve(path, precision, format, verify_hash=verify_hash)
        kind = "onnx" if art.format == "onnx" else "engine"
        return Artifact(kind, text, art.precision, path=file, manifest=manifest, entry=art)
    if path.suffix == ".onnx":
        if not path.exists():
            raise OnnxModelError(f"{path}: no such ONNX file")
        if path.is_dir():
            raise OnnxModelError(f"{path}: is a directory, not an ONNX file")
        manifest, entry, _ = Manifest.resolve(path, verify_hash=verify_hash, listed=False)
        prec = precision or (entry.precision if entry else detect_onnx_precision(path))
        return Artifact("onnx", text, prec, path=path, manifest=manifest, entry=entry)
    if path.suffix in ENGINE_SUFFIXES:
        if not path.exists():
            raise OnnxModelError(f"{path}: no such TensorRT engine file")
        manifest, entry, _ = Manifest.resolve(path, verify_hash=verify_hash, listed=False)
        if precision is None and entry is None:
            raise OnnxModelError(
                f"{path}: no {MANIFEST_NAME} beside it records this engine, so its precision (and tolerance row) "
                "is unknown; pass --precision, or verify the engine in the directory `edgevit build` wrote it to"
            )
        return Artifact("engine", text, precision or entry.precision, path=path, manifest=manifest, entry=entry)
    if role == "candidate" and text == "torch":
        raise ValueError("'torch' as CANDIDATE is resolved by verify() (the reference model in PyTorch)")
    if precision is not None and precision not in FLOAT_PRECISIONS:
        raise ValueError(f"a PyTorch {role} runs in {list(FLOAT_PRECISIONS)}, not {precision!r}")
    model = load_model(text, arch=arch, **(model_overrides or {}))
    return Artifact("torch", text, precision or "fp32", path=path if path.exists() else None, model=model)


def output_kind(art: Artifact) -> str:
    """What ``art`` outputs: "logits", "features" or "tokens" (a PyTorch model's ``output_kind``, the
    manifest's ``model.output``, else the ONNX graph's output name)."""
    if art.kind == "torch":
        return art.model.output_kind
    if art.manifest is not None:
        return art.manifest.output_kind
    if art.kind == "onnx":
        import onnx

        try:
            names = [o.name for o in onnx.load(str(art.path), load_external_data=False).graph.output]
        except Exception:  # unreadable: the runner reports it properly
            names = []
        if len(names) == 1 and names[0] in FEATURE_OUTPUTS:
            return names[0]
    return "logits"


def source_model(manifests, arch: str | None = None, overrides: dict | None = None, verify_hash: bool = True):
    """(model, source, note): the PyTorch model the first of ``manifests`` that names one was exported
    from (``model.source``, relative to the manifest and checked against its sha256: ArtifactIntegrityError
    unless ``verify_hash`` is False), with a note for the report (an unchecked checkpoint) or None; or
    (None, None, why not) when no manifest names a checkpoint that loads. A variant name is skipped: it
    means random weights, not the exported ones."""
    from ..models import list_variants, load_model
    from ..models.hub import is_hub_name

    tried = []
    for m in manifests:
        if m is None:
            continue
        src = (m.model or {}).get("source")
        if not isinstance(src, str) or src.startswith("<"):
            tried.append(f"manifest source {src!r} is not a file")
            continue
        if src in list_variants():
            tried.append(f"manifest source {src!r} is a variant name (random weights, not the exported ones)")
            continue
        cand, note = m.source_checkpoint(verify_hash)
        if cand is None and is_hub_name(src):
            cand, note = src, None
        if cand is None:
            tried.append(note)
            continue
        try:
            return load_model(cand, arch=(m.model or {}).get("arch") or arch,
                              **((m.model or {}).get("overrides") or overrides or {})), str(cand), note
        except EdgeVitError as exc:
            tried.append(f"{cand}: {exc}")
    return None, None, "; ".join(dict.fromkeys(tried)) or "no manifest names the checkpoint"


def runner_for(art: Artifact, device: str, providers, threads, attention: str | None, output: str = "logits",
               qdq: str = JUDGED_BY):
    """The runner (:func:`edgevit.runtime.get_runner`) that runs ``art``, not yet entered; an ONNX graph's
    Q/DQ run as ``qdq`` says (:data:`edgevit.runtime.onnxruntime_runner.QDQ_MODES`)."""
    from ..runtime import get_runner

    if art.kind == "torch":
        return get_runner("torch", art.model, attention=attention, device=device, dtype=art.precision,
                          output="tokens" if output == "tokens" else None)
    if art.kind == "onnx":
        return get_runner("onnxruntime", art.path, providers=providers, threads=threads, qdq=qdq)
    # the engine's record (TensorRT version, GPU, version-compatible, DLA core) is checked against this machine
    return get_runner("tensorrt", art.path, manifest_entry=art.entry.to_dict() if art.entry is not None else None)


def preprocessing_of(*arts: Artifact):
    """The :class:`edgevit.data.Preprocessing` of the first artifact that records one (its model's,
    else its manifest's), or None."""
    from ..data.preprocess import Preprocessing

    for art in arts:
        if art.model is not None and getattr(art.model, "preprocessing", None) is not None:
            return art.model.preprocessing
        pre = art.manifest.preprocessing if art.manifest is not None else None
        if isinstance(pre, dict):
            try:
                return Preprocessing.from_dict(pre)
            except (TypeError, ValueError):
                continue
    return None


def labels_of(*arts: Artifact) -> list[str] | None:
    """The model's class names: a PyTorch artifact's, else a manifest's."""
    for art in arts:
        labels = getattr(art.model, "labels", None) or (art.manifest.labels if art.manifest is not None else None)
        if labels:
            return list(labels)
    return None


__all__ = ["Artifact", "detect_onnx_precision", "labels_of", "output_kind", "preprocessing_of", "resolve_artifact",
           "runner_for"]
