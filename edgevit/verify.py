"""Compare two artifacts on the same inputs: final outputs, and per block the attention output.

``verify(reference, candidate)``: REFERENCE is a checkpoint / variant name (run in PyTorch,
math attention, fp32) or an ONNX file; CANDIDATE is an ONNX file, a TensorRT engine, an
export OUTDIR (its manifest's artifact for ``precision``, fp32 by default), or a checkpoint /
"torch" (the reference model in PyTorch, SDPA attention). Per output it reports max abs /
max rel / mean abs error, cosine similarity, top-1 and top-5 agreement, and with labels each
side's top-1 accuracy; it checks them against :data:`TOLERANCES`, the one table of limits,
keyed by the candidate's precision.

Every elementwise check is ``|cand - ref| <= atol + rtol * |ref|`` with both terms explicit
(never numpy's hidden default rtol). Cosine similarity is per sample over the flattened
output; the check uses the lowest. Top-1 agreement is the fraction of samples whose argmax
matches; top-5 agreement the mean fraction of the reference's top-5 classes found in the
candidate's top-5 (k = min(5, classes)).

``attention=True`` adds the per-block attention check (:func:`verify_attention_onnx`,
:func:`verify_attention_torch`): the attention output (softmax(QK^T/sqrt(d))·V, heads merged,
before the output projection) of every block is compared with a float64 PyTorch math
reference computed from the same block input.

Runnable standalone, with the same options as ``edgevit verify``::

    python -m edgevit.verify vit_base_patch16_224 --attention --device cuda --data random --json
"""

from __future__ import annotations

import copy
import math
import os
import time
import warnings
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from .errors import DataError, OnnxModelError, VerificationError
from .runtime.batching import batch_range, padded_chunks, run_batched
from .runtime.batching import single_input as _single_input
from .metrics import FEATURE_OUTPUTS, KNN_AGREEMENT, neighbour_agreement  # noqa: F401  (re-exported)
from .tolerances import TOLERANCES, Tolerance, get_tolerance  # noqa: F401  (re-exported: the table lives there)

PRECISIONS = ("fp32", "fp16", "bf16", "int8", "fp8")
ENGINE_SUFFIXES = (".plan", ".engine", ".trt")
MANIFEST_NAME = "edgevit.json"
BACKENDS = ("flash", "efficient", "cudnn", "math", "naive")
TORCH_DTYPES = ("fp32", "fp16", "bf16")


# ------------------------------------------------------------------------------ metrics
class _Accumulator:
    """Error statistics of one tensor pair, accumulated over batches (first axis = sample)."""

    def __init__(self, atol: float, rtol: float):
        self.atol, self.rtol = atol, rtol
        self.max_abs = 0.0
        self.max_rel = 0.0
        self.sum_abs = 0.0
        self.count = 0
        self.violations = 0
        self.cosines: list[np.ndarray] = []
        self.worst = None  # (excess, index, ref, cand)
        self.nonfinite = 0
        self.offset = 0

    def update(self, ref, cand) -> None:
        """Add one batch. Arrays or torch tensors; computed in float64 with torch (on the
        tensors' device, so GPU outputs are compared on the GPU)."""
        import torch

        ref = torch.as_tensor(ref)
        cand = torch.as_tensor(cand).to(ref.device)
        if tuple(ref.shape) != tuple(cand.shape):
            raise VerificationError(f"shape mismatch: reference {tuple(ref.shape)} vs candidate {tuple(cand.shape)}")
        ref = ref.to(torch.float64)
        cand = cand.to(torch.float64)
        finite = torch.isfinite(cand)
        self.nonfinite += int((~finite).sum())
        diff = torch.where(finite, (cand - ref).abs(), torch.full_like(ref, math.inf))
        if diff.numel():
            self.max_abs = max(self.max_abs, float(diff.max()))
            rel = diff / ref.abs().clamp_min(1e-12)
            self.max_rel = max(self.max_rel, float(rel.max()))
            self.sum_abs += float(torch.where(finite, diff, torch.zeros_like(diff)).sum())
            self.count += diff.numel()
            excess = diff - (self.atol + self.rtol * ref.abs())
            self.violations += int((excess > 0).sum())
            flat = int(excess.reshape(-1).argmax())
            worst = float(excess.reshape(-1)[flat])
            if self.worst is None or worst > self.worst[0]:
                index = np.unravel_index(flat, tuple(diff.shape))
                index = (int(index[0]) + self.offset,) + tuple(int(i) for i in index[1:])
                self.worst = (worst, index, float(ref.reshape(-1)[flat]), float(cand.reshape(-1)[flat]))
        a = ref.reshape(ref.shape[0], -1)
        b = torch.where(finite, cand, torch.zeros_like(cand)).reshape(cand.shape[0], -1)
        na, nb = a.norm(dim=1), b.norm(dim=1)
        denom = na * nb
        cos = torch.where(denom > 0, (a * b).sum(dim=1) / torch.where(denom > 0, denom, torch.ones_like(denom)),
                          torch.zeros_like(denom))
        cos = torch.where((na == 0) & (nb == 0), torch.ones_like(cos), cos.clamp(-1.0, 1.0))
        self.cosines.append(cos.cpu().numpy())
        self.offset += ref.shape[0]

    def to_dict(self) -> dict:
        cos = np.concatenate(self.cosines) if self.cosines else np.ones(0)
        worst = None
        if self.worst is not None:
            excess, index, r, c = self.worst
            worst = {"index": list(index), "reference": r, "candidate": c, "abs_error": abs(c - r),
                     "allowed": self.atol + self.rtol * abs(r)}
        return {
            "max_abs": self.max_abs,
            "max_rel": self.max_rel,
            "mean_abs": self.sum_abs / max(self.count, 1),
            "cosine_min": float(cos.min()) if cos.size else 1.0,
            "cosine_mean": float(cos.mean()) if cos.size else 1.0,
            "violations": self.violations,
            "elements": self.count,
            "nonfinite": self.nonfinite,
            "worst": worst,
        }


def cosine_per_sample(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine similarity of each row of ``a`` and ``b`` (float64); 1 where both rows are zero."""
    a = np.asarray(a, np.float64).reshape(len(a), -1)
    b = np.asarray(b, np.float64).reshape(len(b), -1)
    na = np.linalg.norm(a, axis=1)
    nb = np.linalg.norm(b, axis=1)
    dot = (a * b).sum(axis=1)
    denom = na * nb
    both_zero = (na == 0) & (nb == 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        cos = np.where(denom > 0, dot / np.where(denom > 0, denom, 1.0), 0.0)
    return np.where(both_zero, 1.0, np.clip(cos, -1.0, 1.0))


def topk_agreement(ref: np.ndarray, cand: np.ndarray, k: int = 5) -> tuple[float, float, int]:
    """(top-1 agreement, top-k agreement, k used) of two (samples, classes) score arrays."""
    ref = np.asarray(ref, np.float64)
    cand = np.asarray(cand, np.float64)
    k = min(k, ref.shape[1])
    top1 = float((ref.argmax(1) == cand.argmax(1)).mean()) if len(ref) else 1.0
    rk = np.argsort(-ref, axis=1, kind="stable")[:, :k]
    ck = np.argsort(-cand, axis=1, kind="stable")[:, :k]
    overlap = [len(set(r) & set(c)) / k for r, c in zip(rk, ck)]
    return top1, float(np.mean(overlap)) if overlap else 1.0, k


def compare_outputs(ref: np.ndarray, cand: np.ndarray, tolerance: Tolerance, labels=None,
                    output: str = "logits") -> dict:
    """All metrics of one output (first axis = samples) against ``tolerance``'s atol/rtol.

    ``output`` "features" or "tokens" (no classes): k-NN agreement (:func:`neighbour_agreement`)
    instead of top-1/top-5 agreement and accuracy."""
    acc = _Accumulator(tolerance.atol, tolerance.rtol)
    acc.update(ref, cand)
    stats = acc.to_dict()
    stats["shape"] = list(np.shape(ref))
    if output in FEATURE_OUTPUTS:
        stats["knn_agreement"], stats["knn_k"] = neighbour_agreement(ref, cand)
    elif np.ndim(ref) == 2 and np.shape(ref)[1] > 1:
        top1, topk, k = topk_agreement(ref, np.nan_to_num(np.asarray(cand, np.float64), nan=-np.inf))
        stats.update(top1_agreement=top1, top5_agreement=topk, topk=k)
        if labels is not None:
            labels = np.asarray(labels)
            stats["accuracy_reference"] = float((np.asarray(ref).argmax(1) == labels).mean())
            stats["accuracy_candidate"] = float((np.asarray(cand).argmax(1) == labels).mean())
    return stats


@dataclass
class Check:
    """One pass/fail check with its numbers."""

    name: str
    value: float
    limit: float
    op: str  # "<=" or ">="
    passed: bool
    detail: str = ""

    def to_dict(self) -> dict:
        return asdict(self)

    def describe(self) -> str:
        status = "ok" if self.passed else "FAILED"
        text = f"{self.name}: {_fmt(self.value)} (must be {self.op} {_fmt(self.limit)}) {status}"
        return f"{text}; {self.detail}" if self.detail else text


def _fmt(v) -> str:
    if isinstance(v, float):
        if v == 0 or (1e-3 <= abs(v) < 1e4):
            return f"{v:.6g}"
        return f"{v:.3e}"
    return str(v)


def output_checks(name: str, stats: dict, tol: Tolerance, prefix: str = "") -> list[Check]:
    """The checks of one output's stats: finite, elementwise, cosine and (logits) top-1 agreement."""
    checks = []
    label = f"{prefix}{name}"
    checks.append(Check(f"{label}.finite", float(stats["nonfinite"]), 0.0, "<=", stats["nonfinite"] == 0,
                        "NaN/Inf values in the candidate output" if stats["nonfinite"] else ""))
    w = stats.get("worst") or {}
    detail = (f"{stats['violations']} of {stats['elements']} elements exceed atol {tol.atol:g} + rtol {tol.rtol:g}"
              f"*|ref|; worst at {w.get('index')}: ref {_fmt(w.get('reference'))} cand {_fmt(w.get('candidate'))}"
              if w else "")
    checks.append(Check(f"{label}.max_abs_error_within_atol_rtol", float(stats["max_abs"]),
                        tol.atol, "<=", stats["violations"] == 0, detail if stats["violations"] else ""))
    checks.append(Check(f"{label}.cosine_min", float(stats["cosine_min"]), tol.min_cosine, ">=",
                        stats["cosine_min"] >= tol.min_cosine))
    if "top1_agreement" in stats:
        checks.append(Check(f"{label}.top1_agreement", float(stats["top1_agreement"]), tol.min_agreement, ">=",
                            stats["top1_agreement"] >= tol.min_agreement))
    if stats.get("knn_k"):
        checks.append(Check(f"{label}.knn{stats['knn_k']}_agreement", float(stats["knn_agreement"]),
                            tol.min_agreement, ">=", stats["knn_agreement"] >= tol.min_agreement,
                            f"no labels; {KNN_AGREEMENT}"))
    return checks


# ------------------------------------------------------------------------------ artifacts
@dataclass
class Artifact:
    """What one side of a comparison is and how to run it."""

    kind: str  # "torch", "onnx" or "engine"
    source: str
    precision: str = "fp32"
    path: Path | None = None
    manifest: dict | None = None
    model: object = None  # the loaded VisionTransformer for torch artifacts

    def to_dict(self) -> dict:
        return {"kind": self.kind, "source": self.source, "precision": self.precision,
                "path": str(self.path) if self.path else None}


def read_manifest(directory: str | os.PathLike):
    """The :class:`edgevit.manifest.Manifest` in ``directory`` (None when there is none)."""
    from .manifest import Manifest

    if not Manifest.path_in(directory).is_file():
        return None
    return Manifest.load(directory)


def manifest_artifact(manifest, precision: str, format: str | None = None):
    """``(path, kind)`` of the manifest's artifact of ``precision`` (ONNX preferred unless
    ``format`` is "tensorrt")."""
    found = manifest.find_artifacts(precision=precision, format=format)
    if not found:
        have = ", ".join(f"{a.path} ({a.format}, {a.precision})" for a in manifest.artifacts) or "none"
        raise OnnxModelError(
            f"{manifest.root}: the manifest lists no {precision}{' ' + format if format else ''} artifact; "
            f"recorded: {have}. Pick one with --precision, or build it first"
        )
    found.sort(key=lambda a: a.format != "onnx")
    art = found[0]
    path = manifest.root / art.path
    return path, ("onnx" if art.format == "onnx" else "engine")


def detect_onnx_precision(path: str | os.PathLike) -> str:
    """Guess an ONNX graph's precision: fp8 / int8 Q/DQ, fp16 / bf16 weights, else fp32."""
    import onnx

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception:
        return "fp32"  # the runner reports an unreadable file properly
    T = onnx.TensorProto
    fp8 = {getattr(T, n) for n in ("FLOAT8E4M3FN", "FLOAT8E4M3FNUZ", "FLOAT8E5M2", "FLOAT8E5M2FNUZ") if hasattr(T, n)}
    types = [t.data_type for t in model.graph.initializer]
    if any(t in fp8 for t in types):
        return "fp8"
    if any(n.op_type in ("QuantizeLinear", "DequantizeLinear", "QLinearMatMul", "MatMulInteger")
           for n in model.graph.node):
        return "int8"
    floats = [t for t in types if t in (T.FLOAT, T.FLOAT16, T.BFLOAT16)]
    if floats:
        if floats.count(T.FLOAT16) > len(floats) // 2:
            return "fp16"
        if floats.count(T.BFLOAT16) > len(floats) // 2:
            return "bf16"
    return "fp32"


def resolve_artifact(source, precision: str | None = None, role: str = "candidate", arch: str | None = None,
                     format: str | None = None, verify_hash: bool = True, model_overrides: dict | None = None
                     ) -> Artifact:
    """Classify ``source`` (checkpoint / variant / ONNX / engine / export OUTDIR with manifest).

    An OUTDIR gives its manifest's artifact of ``precision`` (fp32 by default), the ONNX one
    unless ``format="tensorrt"`` (then its only engine, at the precision recorded for it). A bare
    ONNX file's or engine's precision comes from a manifest beside it that lists it, else from
    its graph (:func:`detect_onnx_precision`); an engine no manifest lists needs ``precision``.
    A file a manifest lists is checked against its recorded sha256 unless ``verify_hash=False``
    (:meth:`edgevit.manifest.Manifest.check_artifact`).
    """
    from .models import VisionTransformer, load_model

    if precision is not None and precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {list(PRECISIONS)}, got {precision!r}")
    if isinstance(source, VisionTransformer):
        return Artifact("torch", "<model>", precision or "fp32", model=source.eval())
    text = str(source)
    path = Path(text)
    if path.is_dir() and (path / MANIFEST_NAME).is_file():
        manifest = read_manifest(path)
        engines = manifest.find_artifacts(format="tensorrt")
        want = precision or (engines[0].precision if format == "tensorrt" and len(engines) == 1 else "fp32")
        art_path, kind = manifest_artifact(manifest, want, format)
        if not art_path.exists():
            raise OnnxModelError(f"{art_path}: listed in {path / MANIFEST_NAME} but missing; re-run the step that wrote it")
        manifest.check_artifact(manifest.entry_for(art_path), verify_hash)
        return Artifact(kind, text, want, path=art_path, manifest=manifest)
    if path.suffix == ".onnx":
        if not path.exists():
            raise OnnxModelError(f"{path}: no such ONNX file")
        if path.is_dir():
            raise OnnxModelError(f"{path}: is a directory, not an ONNX file")
        manifest, entry = _listed(path, verify_hash)
        prec = precision or (entry.precision if entry else detect_onnx_precision(path))
        return Artifact("onnx", text, prec, path=path, manifest=manifest)
    if path.suffix in ENGINE_SUFFIXES:
        if not path.exists():
            raise OnnxModelError(f"{path}: no such TensorRT engine file")
        manifest, entry = _listed(path, verify_hash)
        if precision is None and entry is None:
            raise OnnxModelError(
                f"{path}: no {MANIFEST_NAME} beside it records this engine, so its precision (and tolerance row) "
                "is unknown; pass --precision, or verify the engine in the directory `edgevit build` wrote it to"
            )
        return Artifact("engine", text, precision or entry.precision, path=path, manifest=manifest)
    if role == "candidate" and text == "torch":
        raise ValueError("'torch' as CANDIDATE is resolved by verify() (the reference model in PyTorch)")
    if precision is not None and precision not in TORCH_DTYPES:
        raise ValueError(f"a PyTorch {role} runs in {list(TORCH_DTYPES)}, not {precision!r}")
    model = load_model(text, arch=arch, **(model_overrides or {}))
    return Artifact("torch", text, precision or "fp32", path=path if path.exists() else None, model=model)


def _listed(path: Path, verify_hash: bool):
    """(manifest beside ``path`` or None, its entry for ``path`` or None), the file's hash checked."""
    manifest = read_manifest(path.parent)
    entry = manifest.entry_for(path) if manifest is not None else None
    if entry is not None:
        manifest.check_artifact(entry, verify_hash)
    return manifest, entry


def _output_kind(art: Artifact) -> str:
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


def _runner_for(art: Artifact, role: str, device: str, providers, threads, attention: str | None,
                output: str = "logits"):
    from .runtime import get_runner

    if art.kind == "torch":
        return get_runner("torch", art.model, attention=attention, device=device, dtype=art.precision,
                          output="tokens" if output == "tokens" else None)
    if art.kind == "onnx":
        return get_runner("onnxruntime", art.path, providers=providers, threads=threads)
    entry = art.manifest.entry_for(art.path) if art.manifest is not None else None
    # the engine's record (TensorRT version, GPU, version-compatible, DLA core) is checked against this machine
    return get_runner("tensorrt", art.path, manifest_entry=entry.to_dict() if entry is not None else None)


def _preprocessing_of(*arts: Artifact):
    from .data.preprocess import Preprocessing

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


def _labels_of(*arts: Artifact) -> list[str] | None:
    """The model's class names: a PyTorch artifact's, else a manifest's."""
    for art in arts:
        labels = getattr(art.model, "labels", None) or (art.manifest.labels if art.manifest is not None else None)
        if labels:
            return list(labels)
    return None


# ------------------------------------------------------------------------------ inputs
@dataclass
class Inputs:
    images: np.ndarray
    labels: np.ndarray | None
    description: str
    class_names: list | None = None


def load_inputs(data: str, input_shape: tuple, samples: int, seed: int = 0, preprocessing=None,
                preprocessed: bool = False, model_labels=None) -> Inputs:
    """Float32 NCHW inputs for a comparison.

    ``data``: ``random`` (standard normal, seeded), ``digits`` (the bundled digits, test
    split, with labels), a ``.npy``/``.npz`` file taken whole (labels from a .npz), or an
    ImageFolder directory (class subfolders of images; labels from folder names; its test
    split, see :func:`edgevit.data.load_dataset`). Arrays are raw pixels on 0..pixel_max like
    everywhere in edgevit, or model input (N, C, H, W) with ``preprocessed=True``
    (``--preprocessed``). ``input_shape`` is (C, H, W); ``preprocessing`` (a Preprocessing) is
    needed for images and raw arrays; ``model_labels`` (the model's class names) labels an
    ImageFolder's class folders by name.
    """
    from .data.sources import ARRAY_EXTENSIONS

    if not isinstance(samples, int) or samples < 1:
        raise ValueError(f"samples must be a positive integer, got {samples!r}")
    shape = tuple(int(d) for d in input_shape)
    if data == "random":
        rng = np.random.default_rng(seed)
        images = rng.standard_normal((samples, *shape), dtype=np.float32)
        return Inputs(images, None, f"random normal, seed {seed}")
    if data == "digits" or (Path(data).is_dir()):
        return _load_dataset(data, shape, samples, seed, preprocessing, model_labels)
    path = Path(data)
    if path.suffix.lower() in ARRAY_EXTENSIONS:
        return _load_array(path, shape, samples, preprocessing, preprocessed)
    raise DataError(
        f"--data {data!r}: not 'random', 'digits', an existing ImageFolder directory or a .npy/.npz file"
    )


def _load_array(path: Path, shape: tuple, samples: int, preprocessing, preprocessed: bool) -> Inputs:
    from .data import Preprocessing, load_dataset

    if preprocessing is None:
        if not preprocessed:
            raise DataError(
                f"--data {path}: arrays are raw pixels unless --preprocessed is given, and no preprocessing is known "
                f"for these artifacts (no checkpoint and no {MANIFEST_NAME} manifest beside the ONNX); pass "
                f"--preprocessed if the array is model input already, or give a checkpoint as REFERENCE"
            )
        # model input is used as it is: only the input size of this spec matters
        preprocessing = Preprocessing(input_size=shape, mean=(0.0,) * shape[0], std=(1.0,) * shape[0])
    elif tuple(preprocessing.input_size) != tuple(shape):
        raise DataError(f"preprocessing input_size {preprocessing.input_size} differs from the model input {shape}")
    ds = load_dataset(path, preprocessing, split="all", preprocessed=preprocessed)
    images = np.ascontiguousarray(ds.images[:samples], dtype=np.float32)
    labels = None if ds.labels is None else np.asarray(ds.labels[:samples])
    kind = "model input" if preprocessed else "raw pixels"
    return Inputs(images, labels, f"{path} ({len(images)} of {len(ds)} images, {kind})", ds.class_names)


def _load_dataset(data: str, shape, samples: int, seed: int, preprocessing, model_labels=None) -> Inputs:
    if preprocessing is None:
        raise DataError(
            f"--data {data}: no preprocessing is known for these artifacts (no checkpoint and no "
            f"{MANIFEST_NAME} manifest beside the ONNX); give a checkpoint as REFERENCE, or use "
            "--data random or a .npy/.npz of model input with --preprocessed"
        )
    if tuple(preprocessing.input_size) != tuple(shape):
        raise DataError(f"preprocessing input_size {preprocessing.input_size} differs from the model input {shape}")
    from .data import load_dataset

    ds = load_dataset(data, preprocessing, split="test", model_labels=model_labels)
    images = np.ascontiguousarray(ds.images[:samples], dtype=np.float32)
    labels = None if ds.labels is None else np.asarray(ds.labels[:samples])
    return Inputs(images, labels, f"{data} test split ({len(images)} of {len(ds)} images)", ds.class_names)


# ------------------------------------------------------------------------------ report
@dataclass
class VerifyReport:
    """Everything ``verify`` measured. ``ok`` is False when any check failed."""

    reference: dict
    candidate: dict
    precision: str
    tolerance: dict
    data: dict
    outputs: dict = field(default_factory=dict)
    checks: list = field(default_factory=list)
    attention: dict | None = None
    seconds: float = 0.0
    output: str = "logits"  # what was compared: logits, features or tokens (FEATURE_OUTPUTS: judged without labels)

    @property
    def ok(self) -> bool:
        return all(c.passed for c in self.checks)

    @property
    def failures(self) -> list[str]:
        return [c.describe() for c in self.checks if not c.passed]

    def raise_for_failure(self) -> "VerifyReport":
        if not self.ok:
            raise VerificationError("verification failed:\n  " + "\n  ".join(self.failures))
        return self

    def to_dict(self) -> dict:
        return {
            "ok": self.ok,
            "reference": self.reference,
            "candidate": self.candidate,
            "precision": self.precision,
            "output": self.output,
            "tolerance": self.tolerance,
            "data": self.data,
            "outputs": self.outputs,
            "checks": [c.to_dict() for c in self.checks],
            "failures": self.failures,
            "attention": self.attention,
            "seconds": round(self.seconds, 3),
        }


@dataclass
class VerifyConfig:
    """Options of :func:`verify` (the CLI builds one from its flags)."""

    data: str = "random"
    preprocessed: bool = False  # a .npy/.npz --data is model input already, not raw pixels
    samples: int = 64
    batch_size: int = 32
    seed: int = 0
    precision: str | None = None
    atol: float | None = None
    rtol: float | None = None
    min_cosine: float | None = None
    min_agreement: float | None = None
    attn_atol: float | None = None
    attn_rtol: float | None = None
    attn_min_cosine: float | None = None
    attention: bool = False
    device: str = "cpu"
    dtypes: tuple = TORCH_DTYPES
    backends: tuple | None = None
    providers: object = None
    threads: int | None = None
    arch: str | None = None
    model_overrides: dict = field(default_factory=dict)  # config fields for load_model of a checkpoint
    format: str | None = None
    candidate_attention: str = "sdpa"
    verify_hash: bool = True  # check manifest-listed files against their recorded sha256

    def __post_init__(self) -> None:
        if not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {self.batch_size!r}")
        if not isinstance(self.samples, int) or self.samples < 1:
            raise ValueError(f"samples must be a positive integer, got {self.samples!r}")
        if self.precision is not None and self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {list(PRECISIONS)}, got {self.precision!r}")
        self.dtypes = tuple(self.dtypes)
        for d in self.dtypes:
            if d not in TORCH_DTYPES:
                raise ValueError(f"dtypes must be among {list(TORCH_DTYPES)}, got {d!r}")
        if self.backends is not None:
            self.backends = tuple(self.backends)
            for b in self.backends:
                if b not in BACKENDS:
                    raise ValueError(f"backends must be among {list(BACKENDS)}, got {b!r}")
        if self.format not in (None, "onnx", "tensorrt"):
            raise ValueError(f"format must be 'onnx' or 'tensorrt', got {self.format!r}")
        if self.candidate_attention not in ("sdpa", "math"):
            raise ValueError(f"candidate_attention must be 'sdpa' or 'math', got {self.candidate_attention!r}")


def verify(reference, candidate=None, config: VerifyConfig | None = None, **options) -> VerifyReport:
    """Compare ``candidate`` with ``reference`` on the same inputs; see the module docstring.

    ``candidate`` None or "torch" means the reference checkpoint itself in PyTorch (SDPA
    attention, ``precision`` dtype; with ``attention=True`` every SDPA backend per dtype).
    Options are :class:`VerifyConfig` fields. Returns a :class:`VerifyReport`; it does not
    raise on failed checks (call ``report.raise_for_failure()`` for that), only on errors
    (missing files, unreadable models, bad inputs).
    """
    cfg = replace(config, **options) if config is not None else VerifyConfig(**options)
    started = time.perf_counter()
    ref = resolve_artifact(reference, None, role="reference", arch=cfg.arch, verify_hash=cfg.verify_hash,
                           model_overrides=cfg.model_overrides)
    if ref.kind == "engine":
        raise ValueError(f"REFERENCE must be a checkpoint or an ONNX file, not an engine ({reference})")
    ref.precision = "fp32"
    if candidate is None or str(candidate) == "torch":
        if ref.kind != "torch":
            raise ValueError("without CANDIDATE (or with 'torch') the REFERENCE must be a checkpoint or variant name")
        prec = cfg.precision or "fp32"
        if prec not in TORCH_DTYPES:
            raise ValueError(f"a PyTorch candidate runs in {list(TORCH_DTYPES)}, not {prec!r}")
        cand = Artifact("torch", f"{ref.source} (PyTorch)", prec, path=ref.path, model=ref.model)
    else:
        from .models.hub import is_hub_name

        if ref.kind == "torch" and ref.path is None and isinstance(reference, str) and not is_hub_name(reference):
            raise ValueError(
                f"REFERENCE {reference!r} is a variant name: freshly initialized random weights, not the weights "
                "of any exported artifact. Give the checkpoint the candidate was exported from"
            )
        cand = resolve_artifact(candidate, cfg.precision, role="candidate", arch=cfg.arch, format=cfg.format,
                                verify_hash=cfg.verify_hash, model_overrides=cfg.model_overrides)
    precision = cfg.precision or cand.precision
    if precision not in TOLERANCES:
        raise ValueError(f"{cand.source}: its manifest records precision {precision!r}, which has no tolerance row; "
                         f"pass --precision (one of {', '.join(TOLERANCES)}) to pick the row to judge it by")
    output = _output_kind(cand)
    ref_output = "tokens" if ref.kind == "torch" and output == "tokens" else _output_kind(ref)
    if ref_output != output:
        raise VerificationError(
            f"the reference {ref.source} outputs {ref_output} but the candidate {cand.source} outputs {output}: "
            "they cannot be compared; give the checkpoint (or ONNX) the candidate was exported from")
    tol = get_tolerance(precision, output, atol=cfg.atol, rtol=cfg.rtol, min_cosine=cfg.min_cosine,
                        min_agreement=cfg.min_agreement, **_attn_overrides(cfg))

    # The final-output check always runs on the unmodified artifacts.
    ref_runner = _runner_for(ref, "reference", cfg.device, cfg.providers, cfg.threads, attention="math",
                             output=output)
    cand_runner = _runner_for(cand, "candidate", cfg.device, cfg.providers, cfg.threads,
                              attention=cfg.candidate_attention, output=output)
    with ref_runner, cand_runner:
        _, ref_shape = _single_input(ref_runner.input_spec(), f"reference {ref_runner.name}")
        _, cand_shape = _single_input(cand_runner.input_spec(), f"candidate {cand_runner.name}")
        fixed = [(a, b) for a, b in zip(ref_shape[1:], cand_shape[1:]) if isinstance(a, int) and isinstance(b, int)]
        if len(ref_shape) != len(cand_shape) or any(a != b for a, b in fixed):
            raise VerificationError(
                f"the reference takes {list(ref_shape)} but the candidate takes {list(cand_shape)}: "
                "these are not the same model"
            )
        inputs = load_inputs(cfg.data, tuple(ref_shape[1:]), cfg.samples, cfg.seed, _preprocessing_of(ref, cand),
                             cfg.preprocessed, _labels_of(ref, cand))
        ref_out = run_batched(ref_runner, inputs.images, cfg.batch_size)
        cand_out = run_batched(cand_runner, inputs.images, cfg.batch_size)
        ref_desc = {**ref.to_dict(), "runner": ref_runner.name}
        cand_desc = {**cand.to_dict(), "runner": cand_runner.name}

    pairs = _pair_outputs(ref_out, cand_out)
    report = VerifyReport(reference=ref_desc, candidate=cand_desc, precision=precision, tolerance=tol.to_dict(),
                          data={"source": cfg.data, "description": inputs.description, "samples": len(inputs.images),
                                "batch_size": cfg.batch_size, "seed": cfg.seed,
                                "labelled": inputs.labels is not None}, output=output)
    for ref_name, cand_name in pairs:
        stats = compare_outputs(ref_out[ref_name], cand_out[cand_name], tol, inputs.labels, output)
        report.outputs[cand_name] = stats
        report.checks.extend(output_checks(cand_name, stats, tol))

    if cfg.attention:
        if cand.kind == "torch":
            att = verify_attention_torch(cand.model, inputs.images, device=cfg.device, dtypes=cfg.dtypes,
                                         backends=cfg.backends, batch_size=cfg.batch_size,
                                         reference=ref.model if ref.kind == "torch" else None,
                                         tolerance_overrides=_attn_overrides(cfg))
        elif cand.kind == "onnx":
            ref_model = _reference_model_for_attention(ref, cand, cfg)
            att = verify_attention_onnx(cand.path, ref_model, inputs.images, precision=precision,
                                        batch_size=cfg.batch_size, providers=cfg.providers,
                                        threads=cfg.threads, tolerance=tol)
        else:
            raise VerificationError(
                "--attention on a TensorRT engine needs the TensorRT runner's debug outputs (not implemented yet); "
                "check the engine's ONNX with --attention instead"
            )
        report.attention = att
        report.checks.extend(Check(**c) for c in att["checks"])
    report.seconds = time.perf_counter() - started
    return report


def _attn_overrides(cfg: VerifyConfig) -> dict:
    return {k: getattr(cfg, k) for k in ("attn_atol", "attn_rtol", "attn_min_cosine") if getattr(cfg, k) is not None}


def _pair_outputs(ref_out: dict, cand_out: dict) -> list[tuple[str, str]]:
    common = [n for n in ref_out if n in cand_out]
    if common:
        return [(n, n) for n in common]
    if len(ref_out) == 1 and len(cand_out) == 1:
        return [(next(iter(ref_out)), next(iter(cand_out)))]
    raise VerificationError(
        f"no output names in common: reference {sorted(ref_out)} vs candidate {sorted(cand_out)}"
    )


def _reference_model_for_attention(ref: Artifact, cand: Artifact, cfg: VerifyConfig):
    """The PyTorch model whose weights the float64 attention reference uses: the REFERENCE
    checkpoint, or the checkpoint a manifest says the ONNX was exported from."""
    from .models import list_variants, load_model
    from .models.hub import is_hub_name

    if ref.kind == "torch":
        return ref.model
    tried = []
    for art in (ref, cand):
        if art.manifest is None:
            continue
        src = (art.manifest.model or {}).get("source")
        if not isinstance(src, str) or src in list_variants():
            continue  # a variant name means random weights: not the weights in this ONNX
        for candidate in (Path(src), art.manifest.root / src):
            tried.append(str(candidate))
            if candidate.exists() or is_hub_name(src):
                return load_model(candidate, arch=(art.manifest.model or {}).get("arch") or cfg.arch,
                                  **((art.manifest.model or {}).get("overrides") or cfg.model_overrides))
    raise VerificationError(
        "--attention computes its float64 reference with the PyTorch weights: give the checkpoint as "
        "REFERENCE" + (f" (the manifest's source was not found: {tried})" if tried else
                       " (no manifest names the checkpoint this ONNX came from)")
    )


# ------------------------------------------------------------------------------ attention
def _attention_of(block, x, impl: str | None = None):
    """The attention output (B, N, C) of ``block`` for block input ``x``; the output
    projection is skipped by stopping at the ``attn_out`` hook."""

    class _Stop(Exception):
        pass

    captured = {}

    def hook(_module, _inp, out):
        captured["out"] = out
        raise _Stop

    attn = block.attn
    previous = attn.attn_impl
    if impl is not None:
        attn.attn_impl = impl
    handle = attn.attn_out.register_forward_hook(hook)
    try:
        attn(block.norm1(x))
    except _Stop:
        pass
    finally:
        handle.remove()
        attn.attn_impl = previous
    return captured["out"]


def _float64_blocks(model, device):
    import torch

    return [copy.deepcopy(b).to(device=device, dtype=torch.float64).eval() for b in model.blocks]


def _capture_block_inputs(model, images: np.ndarray, device) -> list:
    """Each block's input (the residual stream entering it) from an fp32 forward pass."""
    import torch

    store: list = []
    handles = [b.register_forward_pre_hook(lambda m, args: store.append(args[0].detach())) for b in model.blocks]
    try:
        with torch.inference_mode():
            model(torch.from_numpy(np.ascontiguousarray(images)).to(device))
    finally:
        for h in handles:
            h.remove()
    return store


def _attention_row(block: int, acc: _Accumulator, tol: Tolerance, **extra) -> dict:
    stats = acc.to_dict()
    ok_elem = stats["violations"] == 0 and stats["nonfinite"] == 0
    ok_cos = stats["cosine_min"] >= tol.attn_min_cosine
    return {"block": block, **extra, "max_abs": stats["max_abs"], "mean_abs": stats["mean_abs"],
            "cosine_min": stats["cosine_min"], "violations": stats["violations"], "elements": stats["elements"],
            "nonfinite": stats["nonfinite"], "worst": stats["worst"],
            "atol": tol.attn_atol, "rtol": tol.attn_rtol, "min_cosine": tol.attn_min_cosine,
            "passed": bool(ok_elem and ok_cos), "status": "pass" if ok_elem and ok_cos else "FAIL"}


def _attention_checks(rows: list[dict], label) -> list[dict]:
    checks = []
    for row in rows:
        if row["status"] == "skipped":
            continue
        name = label(row)
        detail = ""
        if row["violations"] or row["nonfinite"]:
            w = row["worst"] or {}
            detail = (f"{row['violations']} of {row['elements']} elements exceed atol {row['atol']:g} + rtol "
                      f"{row['rtol']:g}*|ref|, {row['nonfinite']} non-finite; worst at {w.get('index')}: "
                      f"ref {_fmt(w.get('reference'))} cand {_fmt(w.get('candidate'))}")
        checks.append(asdict(Check(f"{name}.max_abs_error_within_atol_rtol", row["max_abs"], row["atol"], "<=",
                                   row["violations"] == 0 and row["nonfinite"] == 0, detail)))
        checks.append(asdict(Check(f"{name}.cosine_min", row["cosine_min"], row["min_cosine"], ">=",
                                   row["cosine_min"] >= row["min_cosine"])))
    return checks


def _as_bnc(value, batch: int, tokens: int, width: int, layout: str) -> np.ndarray:
    """A graph tensor as (batch, tokens, width): slimmed graphs may hold it flattened to
    (batch*tokens, width) around Gemm; per-head (B, H, N, D) outputs are merged."""
    arr = np.asarray(value)
    if arr.size != batch * tokens * width:
        raise VerificationError(
            f"a marked attention tensor has shape {arr.shape}, which does not hold "
            f"(batch {batch}, tokens {tokens}, width {width}); the graph's attention is not in a form edgevit recognizes"
        )
    if layout == "BHND" and arr.ndim == 4:
        return arr.transpose(0, 2, 1, 3).reshape(batch, tokens, width)
    return arr.reshape(batch, tokens, width)


def verify_attention_onnx(onnx_path, reference_model, images: np.ndarray, precision: str = "fp32",
                          batch_size: int = 32, providers=None, threads: int | None = None,
                          tolerance: Tolerance | None = None) -> dict:
    """Per-block attention check of an ONNX candidate against a float64 PyTorch math reference.

    A debug COPY of the graph marks each block's attention output and input as extra outputs
    (:mod:`edgevit.runtime.onnx_debug`, found structurally). The float64 reference starts from
    the candidate's OWN block input, so each row measures that block's attention alone rather
    than the error accumulated upstream; where a block input cannot be found in the graph,
    the block inputs are captured from the fp32 PyTorch reference instead (the report says
    which, as ``block_input_source``). The original file is never modified, and since marking
    outputs can change what TensorRT (or ORT) fuses, the final-output check always runs on
    the unmodified artifact.
    """
    import onnx
    import torch

    from .runtime import get_runner
    from .runtime.onnx_debug import find_attention_sites, mark_outputs

    tol = tolerance or get_tolerance(precision)
    try:
        model = onnx.load(str(onnx_path))
    except Exception as exc:
        raise OnnxModelError(f"{onnx_path}: could not be read as ONNX ({exc})") from exc
    sites = find_attention_sites(model)
    depth = reference_model.config.depth
    if len(sites) != depth:
        raise VerificationError(
            f"{onnx_path}: found {len(sites)} attention site(s) (Softmax->MatMul or Attention op) but the "
            f"reference has {depth} blocks; the graph's attention is not in a form edgevit recognizes"
        )
    use_own_inputs = all(s.block_input for s in sites)
    tokens, width = reference_model.config.num_tokens, reference_model.config.embed_dim
    names = [s.attn_output for s in sites] + ([s.block_input for s in sites] if use_own_inputs else [])
    debug = mark_outputs(model, names)
    ref_model = copy.deepcopy(reference_model).float().eval()
    blocks64 = _float64_blocks(ref_model, "cpu")
    accs = [_Accumulator(tol.attn_atol, tol.attn_rtol) for _ in sites]
    with get_runner("onnxruntime", debug, providers=providers, threads=threads) as runner:
        input_name, shape = _single_input(runner.input_spec(), runner.name)
        for feed, n in padded_chunks(images, *batch_range(shape, None, batch_size)):
            chunk = feed[:n]
            out = runner.infer({input_name: feed})
            captured = None if use_own_inputs else _capture_block_inputs(ref_model, chunk, "cpu")
            for i, site in enumerate(sites):
                x = (_as_bnc(out[site.block_input], len(feed), tokens, width, "BNC")[:n] if use_own_inputs
                     else captured[i].numpy())
                x64 = torch.from_numpy(np.asarray(x, dtype=np.float64))
                with torch.inference_mode():
                    ref = _attention_of(blocks64[i], x64, "math").numpy()
                cand = _as_bnc(out[site.attn_output], len(feed), tokens, width, site.layout)[:n]
                accs[i].update(ref, cand.astype(np.float64))
    rows = [_attention_row(s.block, accs[i], tol, form=s.form) for i, s in enumerate(sites)]
    return {
        "kind": "onnx",
        "precision": precision,
        "form": sorted({s.form for s in sites}),
        "block_input_source": "candidate" if use_own_inputs else "reference",
        "sites": [s.to_dict() for s in sites],
        "rows": rows,
        "checks": _attention_checks(rows, lambda r: f"attention.block{r['block']}"),
        "note": "computed on a debug copy with extra outputs; final outputs were checked on the unmodified artifact",
    }


def _sdpa_backends():
    from torch.nn.attention import SDPBackend

    return {"flash": SDPBackend.FLASH_ATTENTION, "efficient": SDPBackend.EFFICIENT_ATTENTION,
            "cudnn": SDPBackend.CUDNN_ATTENTION, "math": SDPBackend.MATH}


def _run_backend(block, x, backend: str):
    """Attention output of ``block`` with one SDPA backend forced (or edgevit's math impl)."""
    if backend == "naive":
        return _attention_of(block, x, "math")
    from torch.nn.attention import sdpa_kernel

    with sdpa_kernel([_sdpa_backends()[backend]]):
        return _attention_of(block, x, "sdpa")


def _probe_backend(block, x, backend: str, device) -> str | None:
    """None if ``backend`` runs here for this dtype and shape, else the reason it does not."""
    import torch

    if device.type == "cpu" and backend in ("efficient", "cudnn"):
        return f"{backend} attention has no CPU kernel (CUDA only)"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            with torch.inference_mode():
                _run_backend(block, x[:1], backend)
            return None
        except RuntimeError as exc:
            reasons = [" ".join(str(w.message).split())[:200] for w in caught]
            first = " ".join(str(exc).split())[:200]
            return "; ".join(dict.fromkeys(reasons[:4] + [first]))


def verify_attention_torch(model, images: np.ndarray, device: str = "cpu", dtypes=TORCH_DTYPES,
                           backends=None, batch_size: int = 32, reference=None,
                           tolerance_overrides: dict | None = None) -> dict:
    """Every SDPA backend (flash, efficient, cudnn, math) and ``naive`` (edgevit's own math
    attention, softmax((Q*d^-0.5) K^T) V written out: the form the decomposed ONNX export has),
    per dtype, per block, against a float64 math reference from the same block inputs.

    Block inputs are captured with forward pre-hooks on the fp32 ``model``; the float64
    reference uses ``reference``'s weights (default: ``model``'s). Each (dtype, backend) runs
    the block's norm1 -> qkv -> attention in that dtype with the backend forced through
    ``torch.nn.attention.sdpa_kernel``. Backends that cannot run (no CPU kernel, unsupported
    dtype or head size) are reported as skipped with the reason. Rows fail beyond the
    dtype's tolerance in :data:`TOLERANCES`.
    """
    import torch

    from .runtime.torch_runner import resolve_device, torch_dtype

    dev = resolve_device(device)
    backends = tuple(backends or BACKENDS)
    dtypes = tuple(dtypes)
    started = time.perf_counter()
    fp32 = copy.deepcopy(model).to(device=dev, dtype=torch.float32).eval()
    blocks64 = _float64_blocks(reference if reference is not None else fp32, dev)
    per_dtype = {d: [copy.deepcopy(b).to(dtype=torch_dtype(d)).eval() for b in fp32.blocks] for d in dtypes}
    tols = {d: get_tolerance(d, **(tolerance_overrides or {})) for d in dtypes}
    depth = len(fp32.blocks)
    accs: dict = {}
    skipped: dict = {}
    for start in range(0, len(images), batch_size):
        chunk = images[start:start + batch_size]
        inputs = _capture_block_inputs(fp32, chunk, dev)
        for i in range(depth):
            with torch.inference_mode():
                ref = _attention_of(blocks64[i], inputs[i].to(torch.float64), "math")
            for d in dtypes:
                x = inputs[i].to(torch_dtype(d))
                for b in backends:
                    if (d, b) in skipped:
                        continue
                    if (d, b) not in accs:
                        reason = _probe_backend(per_dtype[d][i], x, b, dev)
                        if reason:
                            skipped[(d, b)] = reason
                            continue
                        accs[(d, b)] = [_Accumulator(tols[d].attn_atol, tols[d].attn_rtol) for _ in range(depth)]
                    try:
                        with torch.inference_mode():
                            out = _run_backend(per_dtype[d][i], x, b)
                    except RuntimeError as exc:  # eligible at the probe, not for this batch/block
                        skipped[(d, b)] = f"failed at block {i}: {str(exc).strip().splitlines()[0][:200]}"
                        accs.pop((d, b), None)
                        continue
                    accs[(d, b)][i].update(ref, out)  # on the device: only scalars come back
    if dev.type == "cuda":
        torch.cuda.synchronize()
    rows = []
    for d in dtypes:
        for b in backends:
            if (d, b) in skipped:
                rows.append({"block": None, "dtype": d, "backend": b, "status": "skipped",
                             "reason": skipped[(d, b)], "passed": True})
                continue
            for i in range(depth):
                rows.append(_attention_row(i, accs[(d, b)][i], tols[d], dtype=d, backend=b))
    env = {"torch": torch.__version__, "device": str(dev),
           "device_name": torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu"}
    return {
        "kind": "torch",
        "device": str(dev),
        "environment": env,
        "dtypes": list(dtypes),
        "backends": list(backends),
        "block_input_source": "candidate (fp32 forward hooks)",
        "samples": int(len(images)),
        "rows": rows,
        "checks": _attention_checks(rows, lambda r: f"attention.{r['dtype']}.{r['backend']}.block{r['block']}"),
        "summary": _summarize(rows),
        "seconds": round(time.perf_counter() - started, 3),
    }


def _summarize(rows: list[dict]) -> list[dict]:
    """One line per (dtype, backend): worst block."""
    groups: dict = {}
    for row in rows:
        groups.setdefault((row.get("dtype"), row.get("backend")), []).append(row)
    out = []
    for (d, b), items in groups.items():
        if items[0]["status"] == "skipped":
            out.append({"dtype": d, "backend": b, "status": "skipped", "reason": items[0]["reason"]})
            continue
        out.append({"dtype": d, "backend": b, "status": "pass" if all(r["passed"] for r in items) else "FAIL",
                    "max_abs": max(r["max_abs"] for r in items),
                    "mean_abs": float(np.mean([r["mean_abs"] for r in items])),
                    "cosine_min": min(r["cosine_min"] for r in items)})
    return out


if __name__ == "__main__":  # python -m edgevit.verify ...: the same command as `edgevit verify`
    from .cli import verify_cmd

    verify_cmd(prog_name="python -m edgevit.verify")
