"""One comparison end to end: :func:`verify` resolves both artifacts, loads the inputs, runs
both sides, checks the final outputs (:mod:`.outputs`) and, with ``attention=True``, every
block's attention (:mod:`.attention`), and returns a :class:`VerifyReport`."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from ..errors import EdgeVitError, VerificationError
from ..formats import ARTIFACT_FORMATS, BASE_PRECISION, FLOAT_PRECISIONS, QUANTIZED
from ..formats import precision as lookup
from ..metrics import Comparison, compare
from ..runtime.batching import in_input_dtype, run_batched, score_bounded_batch, single_input
from ..runtime.onnxruntime_runner import JUDGED_BY, QDQ_MODES
from ..tolerances import TOLERANCES, Check, get_tolerance
from .artifacts import Side, labels_of, output_kind, preprocessing_of, resolve_artifact, runner_for
from .attention import BACKENDS, reference_model_for_attention, verify_attention_onnx, verify_attention_torch
from .inputs import load_inputs
from .outputs import pair_outputs


@dataclass
class VerifyReport:
    """Everything ``verify`` measured. ``ok`` is False when any check failed."""

    reference: dict
    candidate: dict
    precision: str
    tolerance: dict
    data: dict
    outputs: dict[str, Comparison] = field(default_factory=dict)  # candidate output name -> its comparison
    checks: list = field(default_factory=list)
    attention: dict | None = None
    seconds: float = 0.0
    output: str = "logits"  # what was compared: logits, features or tokens (FEATURE_OUTPUTS: judged without labels)
    arithmetic: str | None = None  # how a Q/DQ candidate ran (QDQ_MODES); None for float candidates
    certificates: list = field(default_factory=list)  # the candidate's Manifest.certificate_records

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
            "arithmetic": self.arithmetic,
            "tolerance": self.tolerance,
            "data": self.data,
            "outputs": {name: c.to_dict() for name, c in self.outputs.items()},
            "checks": [c.to_dict() for c in self.checks],
            "failures": self.failures,
            "attention": self.attention,
            "seconds": round(self.seconds, 3),
            **({"certificates": self.certificates} if self.certificates else {}),
        }


@dataclass
class VerifyConfig:
    """Options of :func:`verify` (``edgevit verify`` builds one from its flags).

    Args:
        data: the inputs both sides run on: ``random``, ``digits``, a .npy/.npz file or an
            ImageFolder directory (:func:`edgevit.verify.load_inputs`).
        preprocessed: a .npy/.npz ``data`` is model input already, not raw pixels.
        samples: how many inputs to compare on.
        batch_size: the largest batch run at once (within each model's batch range).
        seed: the seed of ``random`` data.
        precision: the tolerance row to judge by, and which artifact of an export OUTDIR; by
            default the candidate's recorded (or detected) precision.
        atol, rtol, min_cosine, min_agreement: override the row's final-output limits.
        attn_atol, attn_rtol, attn_min_cosine: override the row's attention limits.
        attention: also check every block's attention output against a float64 reference.
        device: where PyTorch sides run (``cpu``, ``cuda``, ``cuda:N``).
        dtypes: the PyTorch dtypes the SDPA backends are checked in (``attention`` with a
            PyTorch candidate).
        backends: which SDPA backends (:data:`edgevit.verify.BACKENDS`); all by default.
        providers: ONNX Runtime execution providers.
        threads: ONNX Runtime intra-op threads.
        arch: the variant a timm state dict belongs to.
        model_overrides: config fields for :func:`edgevit.load_model` of a checkpoint.
        format: a name of :data:`edgevit.formats.ARTIFACT_FORMATS` (``onnx``, ``tensorrt``): which artifact of an export OUTDIR.
        candidate_attention: the attention a PyTorch candidate runs with: ``sdpa`` or ``math``.
        verify_hash: check manifest-listed files against their recorded sha256.
        qdq: how ONNX Runtime runs Q/DQ graphs (:data:`edgevit.runtime.onnxruntime_runner.QDQ_MODES`):
            ``exact`` (default: the arithmetic the graph defines, the same verdict on every CPU) or
            ``kernels`` (as this CPU's int8 kernels run it).
    """

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
    dtypes: tuple = FLOAT_PRECISIONS
    backends: tuple | None = None
    providers: object = None
    threads: int | None = None
    arch: str | None = None
    model_overrides: dict = field(default_factory=dict)  # config fields for load_model of a checkpoint
    format: str | None = None
    candidate_attention: str = "sdpa"
    verify_hash: bool = True  # check manifest-listed files against their recorded sha256
    qdq: str = JUDGED_BY

    def __post_init__(self) -> None:
        if self.qdq not in QDQ_MODES:
            raise ValueError(f"qdq must be one of {list(QDQ_MODES)}, got {self.qdq!r}")
        if not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {self.batch_size!r}")
        if not isinstance(self.samples, int) or self.samples < 1:
            raise ValueError(f"samples must be a positive integer, got {self.samples!r}")
        if self.precision is not None:
            lookup(self.precision, onnx=True)  # ValueError naming the ONNX precisions
        self.dtypes = tuple(self.dtypes)
        for d in self.dtypes:
            if d not in FLOAT_PRECISIONS:
                raise ValueError(f"dtypes must be among {list(FLOAT_PRECISIONS)}, got {d!r}")
        if self.backends is not None:
            self.backends = tuple(self.backends)
            for b in self.backends:
                if b not in BACKENDS:
                    raise ValueError(f"backends must be among {list(BACKENDS)}, got {b!r}")
        if self.format is not None and self.format not in ARTIFACT_FORMATS:
            raise ValueError(f"format must be one of {list(ARTIFACT_FORMATS)}, got {self.format!r}")
        if self.candidate_attention not in ("sdpa", "math"):
            raise ValueError(f"candidate_attention must be 'sdpa' or 'math', got {self.candidate_attention!r}")


def candidate_manifest(candidate):
    """The manifest of ``candidate`` (an export OUTDIR or an artifact it lists), read for the options its export
    recorded, or None. Its files are not hashed here: resolving the candidate checks them, once."""
    from ..manifest import Manifest

    if candidate is None or str(candidate) == "torch" or not isinstance(candidate, (str, os.PathLike)):
        return None
    try:
        return Manifest.resolve(candidate, verify_hash=False, graph=False).manifest
    except (EdgeVitError, ValueError):
        return None  # the candidate's own errors are reported where it is resolved


def recorded_load(reference, manifest, verify_hash: bool = True) -> tuple[str | None, dict] | None:
    """``(arch, overrides)`` the export that wrote ``manifest`` (:func:`candidate_manifest`) loaded ``reference``
    with (its ``model.source``), when ``reference`` is that very checkpoint (the same file, its sha256 checked);
    None otherwise: a checkpoint loads the same way for the export and for its verification."""
    if not isinstance(reference, (str, os.PathLike)) or manifest is None:
        return None  # a loaded model, or no artifact to read the options from
    ref_path = Path(reference)
    if not ref_path.is_file():
        return None
    try:
        source, _ = manifest.source_checkpoint(verify_hash)
    except EdgeVitError:
        return None  # the candidate's own errors are reported where it is resolved
    if source is None or Path(source).resolve() != ref_path.resolve():
        return None
    return manifest.source.arch, dict(manifest.source.overrides or {})


def _sample_shape(ref_shape, cand_shape, manifest, img_size: int | None) -> tuple:
    """One input sample's dims in the runners' order: each dim either runner fixes; a dim both leave free (the
    height and width of graphs of several sizes) is ``img_size`` (``--img-size``) or, without it, the size the
    manifest records (the model's own)."""
    recorded = tuple(manifest.inputs[0].sample_shape) if manifest is not None and manifest.inputs else ()
    dims = []
    for i, (a, b) in enumerate(zip(ref_shape[1:], cand_shape[1:])):
        free = img_size if img_size else recorded[i] if i < len(recorded) else None
        dims.append(a if isinstance(a, int) else b if isinstance(b, int) else free)
    if any(not isinstance(d, int) for d in dims):
        raise VerificationError(f"the reference takes {list(ref_shape)} and the candidate {list(cand_shape)}, and no "
                                "manifest records the size to check them at: pass --img-size PX")
    return tuple(dims)


def graph_resampling(manifest) -> str | None:
    """How a candidate graph of several input sizes resamples its position table (its ``manifest``'s
    ``model.config.dynamic_size``: "bilinear" or "bicubic", no antialias), None for a graph of one size."""
    mode = ((manifest.model.config or {}).get("dynamic_size") if manifest is not None else None) or "none"
    return None if mode == "none" else mode


def verify(reference, candidate=None, config: VerifyConfig | None = None, **options) -> VerifyReport:
    """Compare ``candidate`` with ``reference`` on the same inputs.

    Per output it reports max abs / max rel / mean abs error, cosine similarity, top-1 and top-5
    agreement (k-NN agreement for features / tokens), and with labels each side's top-1 accuracy
    (:func:`edgevit.metrics.compare`), and judges them by the candidate precision's row of
    :data:`edgevit.tolerances.TOLERANCES` (:meth:`edgevit.tolerances.Tolerance.judge`). The final-output check always runs on the
    unmodified artifacts.

    Args:
        reference: a checkpoint or variant name (run in PyTorch, math attention, fp32), a
            VisionTransformer, or an ONNX file.
        candidate: an ONNX file, a TensorRT engine, an export OUTDIR (its manifest's artifact
            of ``precision``, fp32 by default), or a checkpoint; None or "torch" means the
            reference model itself in PyTorch (SDPA attention, ``precision`` dtype; with
            ``attention=True`` every SDPA backend per dtype).
        config: a :class:`VerifyConfig`; ``options`` (its field names) override its fields.

    Returns:
        A :class:`VerifyReport`. Failed checks do not raise (call ``report.raise_for_failure()``
        for that); errors do (missing files, unreadable models, bad inputs).
    """
    cfg = replace(config, **options) if config is not None else VerifyConfig(**options)
    started = time.perf_counter()
    arch, overrides = cfg.arch, cfg.model_overrides
    recorded = candidate_manifest(candidate)
    if arch is None and not overrides:  # the candidate's own checkpoint loads as its export loaded it
        arch, overrides = recorded_load(reference, recorded, cfg.verify_hash) or (arch, overrides)
    mode = graph_resampling(recorded)
    if mode and "dynamic_size" not in (overrides or {}):  # at another size, the table resampled as the graph does
        overrides = {**(overrides or {}), "dynamic_size": mode}
    ref = resolve_artifact(reference, None, role="reference", arch=arch, verify_hash=cfg.verify_hash,
                           model_overrides=overrides)
    if ref.kind == "engine":
        raise ValueError(f"REFERENCE must be a checkpoint or an ONNX file, not an engine ({reference})")
    ref.precision = BASE_PRECISION
    if candidate is None or str(candidate) == "torch":
        if ref.kind != "torch":
            raise ValueError("without CANDIDATE (or with 'torch') the REFERENCE must be a checkpoint or variant name")
        prec = cfg.precision or BASE_PRECISION
        if prec not in FLOAT_PRECISIONS:
            raise ValueError(f"a PyTorch candidate runs in {list(FLOAT_PRECISIONS)}, not {prec!r}")
        cand = Side(f"{ref.source} (PyTorch)", prec, path=ref.path, model=ref.model)
    else:
        if ref.kind == "torch" and ref.path is None and isinstance(reference, str) and not _is_hub_name(reference):
            raise ValueError(
                f"REFERENCE {reference!r} is a variant name: freshly initialized random weights, not the weights "
                "of any exported artifact. Give the checkpoint the candidate was exported from"
            )
        cand = resolve_artifact(candidate, cfg.precision, role="candidate", arch=arch, format=cfg.format,
                                verify_hash=cfg.verify_hash, model_overrides=overrides)
    precision = cfg.precision or cand.precision
    if precision not in TOLERANCES:
        raise ValueError(f"{cand.source}: its manifest records precision {precision!r}, which has no tolerance row; "
                         f"pass --precision (one of {', '.join(TOLERANCES)}) to pick the row to judge it by")
    output = output_kind(cand)
    ref_output = output if ref.kind == "torch" and not output.own else output_kind(ref)
    if ref_output != output:
        raise VerificationError(
            f"the reference {ref.source} outputs {ref_output} but the candidate {cand.source} outputs {output}: "
            "they cannot be compared; give the checkpoint (or ONNX) the candidate was exported from")
    tol = get_tolerance(precision, output, atol=cfg.atol, rtol=cfg.rtol, min_cosine=cfg.min_cosine,
                        min_agreement=cfg.min_agreement, **_attn_overrides(cfg))
    # --batch-size, fewer where that many images' attention scores would not fit (SAM at 1024 px: 2; the
    # attention check's float64 reference holds scores twice the size: 1)
    score = ref.score_bytes or cand.score_bytes
    batch = score_bounded_batch(cfg.batch_size, score)
    attention_batch = score_bounded_batch(cfg.batch_size, 2 * score if score else None)

    # The final-output check always runs on the unmodified artifacts.
    ref_runner = runner_for(ref, cfg.device, cfg.providers, cfg.threads, attention="math",
                             output=output, qdq=cfg.qdq)
    cand_runner = runner_for(cand, cfg.device, cfg.providers, cfg.threads,
                              attention=cfg.candidate_attention, output=output, qdq=cfg.qdq)
    with ref_runner, cand_runner:
        _, ref_shape = single_input(ref_runner.input_spec(), f"reference {ref_runner.name}")
        _, cand_shape = single_input(cand_runner.input_spec(), f"candidate {cand_runner.name}")
        fixed = [(a, b) for a, b in zip(ref_shape[1:], cand_shape[1:]) if isinstance(a, int) and isinstance(b, int)]
        if len(ref_shape) != len(cand_shape) or any(a != b for a, b in fixed):
            raise VerificationError(
                f"the reference takes {list(ref_shape)} but the candidate takes {list(cand_shape)}: "
                "these are not the same model"
            )
        sample = _sample_shape(ref_shape, cand_shape, cand.manifest or ref.manifest, (overrides or {}).get("img_size"))
        inputs = load_inputs(cfg.data, sample, cfg.samples, cfg.seed, preprocessing_of(ref, cand),
                             cfg.preprocessed, labels_of(ref, cand))
        raw = cand.input_contract or ref.input_contract
        if raw is not None:  # a raw-pixel graph sees the pixels: both sides get the normalized batch they stand for
            inputs = replace(inputs, images=raw.represented(inputs.images))
        ref_out = run_batched(ref_runner, inputs.images, batch)
        cand_out = run_batched(cand_runner, in_input_dtype(inputs.images, cand_runner), batch)
        ref_desc = {**ref.to_dict(), "runner": ref_runner.name}
        cand_desc = {**cand.to_dict(), "runner": cand_runner.name}

    pairs = pair_outputs(ref_out, cand_out)
    report = VerifyReport(reference=ref_desc, candidate=cand_desc, precision=precision, tolerance=tol.to_dict(),
                          data={"source": cfg.data, "description": inputs.description, "samples": len(inputs.images),
                                "batch_size": batch, "seed": cfg.seed,
                                "labelled": inputs.labels is not None}, output=output,
                          arithmetic=QDQ_MODES[cfg.qdq] if cand.precision in QUANTIZED else None)
    if cand.resolved is not None and cand.resolved.listed:
        report.certificates = cand.manifest.certificate_records([cand.resolved.entry.path])
    for ref_name, cand_name in pairs:
        comparison = compare(ref_out[ref_name], cand_out[cand_name], tol, inputs.labels, output)
        report.outputs[cand_name] = comparison
        report.checks.extend(tol.judge(comparison, cand_name))

    if cfg.attention:
        if cand.kind == "torch":
            att = verify_attention_torch(cand.model, inputs.images, device=cfg.device, dtypes=cfg.dtypes,
                                         backends=cfg.backends, batch_size=attention_batch,
                                         reference=ref.model if ref.kind == "torch" else None,
                                         tolerance_overrides=_attn_overrides(cfg))
        elif cand.graph:
            ref_model = reference_model_for_attention(ref, cand, arch, overrides, cfg.verify_hash)
            att = verify_attention_onnx(cand.path, ref_model, inputs.images, precision=precision,
                                        batch_size=attention_batch, providers=cfg.providers,
                                        threads=cfg.threads, tolerance=tol, qdq=cfg.qdq,
                                        contract=cand.input_contract)
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


__all__ = ["VerifyConfig", "VerifyReport", "verify"]


def _is_hub_name(reference: str) -> bool:
    from ..models.hub import is_hub_name  # edgevit.models loads torch: only for a PyTorch reference

    return is_hub_name(reference)
