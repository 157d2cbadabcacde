"""What each side of a comparison is and how to run it.

:func:`resolve_artifact` classifies what the user gave (a checkpoint or variant name, an ONNX
file, a TensorRT engine, an export OUTDIR with its manifest) as a :class:`Side`: a PyTorch model,
or a file as :meth:`edgevit.manifest.Manifest.resolve` names it (its manifest, its entry, its
format and precision). The helpers below read from the sides what a comparison needs: which
runner runs it, what it outputs, its preprocessing and its class names.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from .._deps import EXPORT_EXTRA, has_module, require_export
from ..errors import EdgeVitError, OnnxModelError
from ..formats import BASE_PRECISION, FLOAT_PRECISIONS, MANIFEST_NAME, find_format
from ..formats import precision as lookup
from ..manifest import Manifest
from ..output_kinds import OutputKind, kind_of_output_name
from ..resolved import Resolved
from ..runtime.onnxruntime_runner import JUDGED_BY


@dataclass
class Side:
    """One side of a comparison: a PyTorch ``model``, or the file ``resolved`` names."""

    source: str
    precision: str = BASE_PRECISION
    path: Path | None = None
    model: object = None  # the loaded VisionTransformer for torch sides
    resolved: Resolved | None = None  # what Manifest.resolve found for a file or export directory

    @property
    def kind(self) -> str:
        """"torch" for a model, "onnx" for a file of a graph format, else "engine"."""
        if self.resolved is None:
            return "torch"
        return "onnx" if self.graph else "engine"

    @property
    def graph(self) -> bool:
        """A file of a graph format (its row's ``graph``: an ONNX graph), not a model or an engine."""
        return self.resolved is not None and self.resolved.artifact_format.graph

    @property
    def manifest(self) -> Manifest | None:
        return self.resolved.manifest if self.resolved is not None else None

    @property
    def score_bytes(self) -> int | None:
        """One image's attention-score bytes (``ViTConfig.score_bytes``) of the model or the manifest's config."""
        from ..models.config import ViTConfig

        if self.model is not None:
            return self.model.config.score_bytes
        return ViTConfig.score_bytes_of(self.manifest.model.config) if self.manifest is not None else None

    @property
    def entry(self):
        """The manifest's record of the file (:class:`edgevit.manifest.Artifact`), or None."""
        return self.resolved.entry if self.resolved is not None else None

    @property
    def input_contract(self):
        """The raw-pixel input contract of a listed artifact (:func:`edgevit.input_contract.contract_of`), or None
        for one that takes normalized float NCHW batches (and for a model or an unlisted file)."""
        from ..input_contract import contract_of

        return contract_of(self.manifest) if self.entry is not None else None

    def to_dict(self) -> dict:
        return {"kind": self.kind, "source": self.source, "precision": self.precision,
                "path": str(self.path) if self.path else None}


def _file_side(text: str, found: Resolved, precision: str | None = None) -> Side:
    """The side of a resolved file; an engine no manifest records needs ``precision``."""
    precision = precision or found.precision
    if precision is None:
        raise OnnxModelError(
            f"{found.path}: no {MANIFEST_NAME} beside it records this engine, so its precision (and tolerance row) "
            "is unknown; pass --precision, or verify the engine in the directory `edgevit build` wrote it to"
        )
    return Side(text, precision, path=found.path, resolved=found)


def resolve_artifact(source, precision: str | None = None, role: str = "candidate", arch: str | None = None,
                     format: str | None = None, verify_hash: bool = True, model_overrides: dict | None = None
                     ) -> Side:
    """Classify ``source`` (checkpoint / variant / artifact file / export OUTDIR with manifest).

    An OUTDIR gives its manifest's artifact of ``precision`` and ``format``
    (:meth:`edgevit.manifest.Manifest.resolve`: the ONNX graph unless ``format="tensorrt"``, fp32
    unless ``precision`` is given or only one artifact matches). A file of an artifact format
    (:data:`edgevit.formats.ARTIFACT_FORMATS`) takes its precision from ``precision``, else the
    manifest beside it that lists it, else its graph; an engine no manifest lists needs ``precision``.
    A file a manifest lists is checked against its recorded sha256 unless ``verify_hash=False``
    (:meth:`edgevit.manifest.Manifest.check_artifact`).
    """
    if precision is not None:
        lookup(precision, onnx=True)  # ValueError naming the ONNX precisions
    if _is_torch_model(source):
        return Side("<model>", precision or BASE_PRECISION, model=source.eval())
    text = str(source)
    path = Path(text)
    if path.is_dir() and Manifest.path_in(path).is_file():
        found = Manifest.resolve(path, precision, format, verify_hash=verify_hash)
        return _file_side(text, found)
    fmt = find_format(path)
    if fmt is not None:
        if not path.exists():
            raise OnnxModelError(f"{path}: no such {fmt.what}")
        if path.is_dir():
            raise OnnxModelError(f"{path}: is a directory, not an artifact file ({fmt.what})")
        return _file_side(text, Manifest.resolve(path, verify_hash=verify_hash, listed=False), precision)
    if role == "candidate" and text == "torch":
        raise ValueError("'torch' as CANDIDATE is resolved by verify() (the reference model in PyTorch)")
    if precision is not None and precision not in FLOAT_PRECISIONS:
        raise ValueError(f"a PyTorch {role} runs in {list(FLOAT_PRECISIONS)}, not {precision!r}")
    require_export(f"loading the PyTorch {role} {text}")
    from ..models import load_model

    model = load_model(text, arch=arch, **(model_overrides or {}))
    return Side(text, precision or BASE_PRECISION, path=path if path.exists() else None, model=model)


def _is_torch_model(obj) -> bool:
    """Whether ``obj`` is a loaded edgevit model, without importing torch: none exists unless
    edgevit.models was imported (a device install has no torch; issue 18 §5)."""
    models = sys.modules.get("edgevit.models")
    return models is not None and isinstance(obj, models.VisionTransformer)


def output_kind(art: Side) -> OutputKind:
    """What ``art`` outputs (a PyTorch model's ``output_kind``, the
    manifest's ``model.output``, else a graph's output name)."""
    if art.kind == "torch":
        return art.model.output_kind
    if art.manifest is not None:
        return art.manifest.output_kind
    if art.graph:
        import onnx

        try:
            names = [o.name for o in onnx.load(str(art.path), load_external_data=False).graph.output]
        except Exception:  # unreadable: the runner reports it properly
            names = []
        if len(names) == 1:
            return kind_of_output_name(names[0])
    return OutputKind.LOGITS


def source_model(manifests, reference=None, arch: str | None = None, overrides: dict | None = None,
                 verify_hash: bool = True):
    """(model, source, note): the PyTorch model an export came from, the one place that loads it (verify's
    attention reference, bench's reference row). ``reference`` (a loaded model, or a checkpoint or variant
    name to load) wins; else the first of ``manifests`` that names a checkpoint that loads (``model.source``,
    relative to the manifest and checked against its sha256: ArtifactIntegrityError unless ``verify_hash``
    is False). ``note`` is for the report (an unchecked checkpoint) or None; (None, None, why not) when no
    manifest names a checkpoint that loads. A variant name in a manifest is skipped: it means random
    weights, not the exported ones."""
    if _is_torch_model(reference):
        return reference, "<model>", None
    if reference:
        require_export(f"the PyTorch reference {reference}")
    elif not has_module("torch"):
        return None, None, f"PyTorch is not installed (the `{EXPORT_EXTRA}` extra: pip install 'edgevit[{EXPORT_EXTRA}]')"
    from ..models import list_variants, load_model
    from ..models.hub import is_hub_name

    if reference:
        return load_model(reference, arch=arch, **(overrides or {})), str(reference), None
    tried = []
    for m in manifests:
        if m is None:
            continue
        src = m.source.name
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
            return load_model(cand, arch=m.source.arch or arch,
                              **(m.source.overrides or overrides or {})), str(cand), note
        except EdgeVitError as exc:
            tried.append(f"{cand}: {exc}")
    return None, None, "; ".join(dict.fromkeys(tried)) or "no manifest names the checkpoint"


def runner_for(art: Side, device: str, providers, threads, attention: str | None, output: str = "logits",
               qdq: str = JUDGED_BY):
    """The runner that runs ``art``, not yet entered: PyTorch for a model, else the runner of its
    format's row (:func:`edgevit.runtime.runner_for_format`; a graph's Q/DQ run as ``qdq`` says,
    :data:`edgevit.runtime.onnxruntime_runner.QDQ_MODES`; an engine's record, its TensorRT version, GPU,
    version-compatible and DLA core, is checked against this machine)."""
    from ..runtime import get_runner, runner_for_format

    if art.kind == "torch":
        return get_runner("torch", art.model, attention=attention, device=device, dtype=art.precision,
                          output=None if OutputKind(output).own else output)
    return runner_for_format(art.resolved.format, art.path, providers=providers, threads=threads, qdq=qdq,
                             manifest_entry=art.resolved.record, contract=art.input_contract,
                             plan_options=art.resolved.plan_options)


def preprocessing_of(*arts: Side):
    """The :class:`edgevit.data.Preprocessing` of the first artifact that records one (its model's,
    else its manifest's), or None."""
    for art in arts:
        if art.model is not None and getattr(art.model, "preprocessing", None) is not None:
            return art.model.preprocessing
        if art.manifest is not None and art.manifest.preprocessing is not None:
            return art.manifest.preprocessing
    return None


def labels_of(*arts: Side) -> list[str] | None:
    """The model's class names: a PyTorch artifact's, else a manifest's."""
    for art in arts:
        labels = getattr(art.model, "labels", None) or (art.manifest.labels if art.manifest is not None else None)
        if labels:
            return list(labels)
    return None


__all__ = ["Side", "labels_of", "output_kind", "preprocessing_of", "resolve_artifact",
           "runner_for", "source_model"]
