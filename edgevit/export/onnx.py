"""PyTorch ViT -> ``model.onnx`` + ``edgevit.json``, checked and verified before it is moved into place.

    from edgevit.export import ExportConfig, export_onnx
    result = export_onnx("digits-tiny", "out", ExportConfig(batch=(1, 8, 64)))
    result.onnx_path, result.manifest, result.verification

What the graph looks like
-------------------------
* torch's dynamo exporter (``torch.onnx.export(..., dynamo=True)``), opset >= 17;
* input ``images`` (float32, NCHW, already normalized), or with ``ExportConfig.input="uint8"``
  (``edgevit export --input uint8``) raw pixels, NHWC or NCHW, that the graph casts, scales, normalizes
  and transposes itself (:class:`~edgevit.export.checks.RawPixelInput`; the manifest's ``inputs[0]``,
  :class:`edgevit.input_contract.InputContract`); one output named for what it holds
  (``ExportConfig.output``, recorded as the manifest's ``model.output``): ``logits`` (batch,
  classes) for a classifier, ``features`` (batch, D) for a headless model (``num_classes=0``: the
  pooled, final-normed embedding its ``forward`` returns), or with ``output="tokens"``
  (``edgevit export --output-kind tokens``) ``tokens`` (batch, patches, D): ``model.forward_tokens``,
  the patch tokens after the final norm with the class/register/distillation tokens dropped, for
  dense heads;
* LayerNorm is always the ``LayerNormalization`` op (opset >= 17), never a Pow/ReduceMean chain:
  that chain overflows FP16 (docs/design.md §5.1);
* the batch dim is dynamic between ``batch=(MIN, OPT, MAX)`` (recorded in the manifest for
  TensorRT optimization profiles) or fixed with ``static_batch=N``; reshapes use -1 for it, so
  no batch value is baked into a constant (lint checks this, verification runs batch 1 and a
  larger batch on the same graph).

Attention: ``decomposed`` (the default) or ``fused``
----------------------------------------------------
``decomposed`` exports the model with ``set_attn_impl("math")``: MatMul -> Softmax -> MatMul with
Q pre-scaled, at opset 18. ``fused`` exports ``set_attn_impl("sdpa")`` at opset 23, where the
exporter emits the single ONNX ``Attention`` op (checked after export; if an exporter does not,
the decomposed pattern is rewritten into ``Attention`` by :func:`fuse_attention`).

The default is ``decomposed`` because it is the form that both conditions allow:

* TensorRT 10.3 (JetPack 6) cannot parse it otherwise: onnx-tensorrt's operator table for 10.x
  (``docs/operators.md`` at release/10.1-GA, commit 96e7811; the 10.2/10.3 changelog entries add
  no op) has no ``Attention`` row, and its ``docs/Changelog.md`` says "TensorRT 10.14 GA
  Release - 2025-11-7: Added support for the ``Attention`` operator". The decomposed pattern is
  also exactly what TensorRT's MHA fusion matches (Q pre-scaled).
* On ONNX Runtime CPU neither form is clearly faster once the decomposed graph's erf-GELU is
  put in the order ORT fuses (:func:`canonicalize_gelu`, applied to every export): the
  differences flip sign between runs and stay within the run-to-run noise (the measurements are in
  benchmarks/README.md, "Attention form on ONNX Runtime CPU").

Failure handling
----------------
Everything is written to a temporary directory inside OUTDIR and renamed into place only after
onnx.checker, strict shape inference and the ONNX Runtime comparison against PyTorch (bundled
digits for 1x8x8 models, random inputs at batch MIN and a larger batch; max abs <= ``atol``)
pass; lint runs too and its findings are reported and recorded, not enforced. An export that fails leaves existing files untouched and raises :class:`ExportError` with the
numbers. Existing artifacts are overwritten only with ``force``, which also removes what the old
manifest listed and the new one does not (precision graphs, engines) and a calibration cache made
for another graph. The files are installed and the manifest written under OUTDIR's lock
(``_io.outdir_lock``), after checking again what another writer may have put there meanwhile.
Graphs whose weights exceed
``external_data_threshold`` (2 GiB, protobuf's limit) keep them in ``model.onnx.data``.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import logging
import os
import shutil
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .._io import check_output_dir, check_writable, outdir_lock, remove_stale_temporaries, temporary_dir
from ..errors import ExportError
from ..formats import BASE_PRECISION, MANIFEST_NAME
from ..manifest import Manifest
from ..models.vit import VisionTransformer
from ..onnx_graph import EXTERNAL_DATA_THRESHOLD, count_ops, save_onnx
from ..provenance import source_fields
from ..output_kinds import OUTPUT_KINDS, OutputKind
from ..tolerances import EXPORT_ATOL
from ..specs import DEFAULT_BATCH, check_batch_bounds
from .artifacts import DATA_FILE, MODEL_FILE, build_manifest, install, previous_manifest, remove_superseded, verdict
from .tensorrt_ops import ATTENTION_FORMS, DEFAULT_ATTENTION
from ..input_contract import DEFAULT_RAW_LAYOUT, FLOAT_INPUT, INPUT_KINDS, LAYOUTS
from .checks import (INPUT_NAME, LAYERNORM_OPSET, GraphInfo, check_file, check_structure, example_input,
                     graph_module, input_contract, consumer_certificate, verify_export)
from .lint import DEFAULT_TENSORRT_VERSION, LintReport, lint_onnx
from .names import name_vit_nodes
from .rewrites import ATTENTION_OPSET, canonicalize_gelu, fuse_attention

DEFAULT_OPSET = {"decomposed": 18, "fused": 23}
MIN_OPSET = LAYERNORM_OPSET


@functools.lru_cache(maxsize=None)
def max_opset() -> int:
    """The newest opset the installed exporter writes. torch's dynamo exporter builds the graph at its
    own opset and converts it with onnxscript's version converter, which stops at its
    ``SUPPORTED_MAX_ONNX_OPSET`` (25 in onnxscript 0.7: asked for 26, the graph keeps opset-18 ops and
    fails onnx.checker); onnx's newest opset bounds it too."""
    import onnx

    newest = onnx.defs.onnx_opset_version()
    try:
        from onnxscript.version_converter import _version_converter
    except ImportError:
        return newest
    return min(newest, int(getattr(_version_converter, "SUPPORTED_MAX_ONNX_OPSET", newest)))


@dataclass(frozen=True)
class ExportConfig:
    """How to export. ``opset`` None means 18 for decomposed attention and 23 for fused."""

    attention: str = DEFAULT_ATTENTION
    opset: int | None = None
    batch: tuple[int, int, int] = DEFAULT_BATCH
    static_batch: int | None = None
    simplify: bool = True
    verify: bool = True
    atol: float = EXPORT_ATOL  # the named tolerance of edgevit.tolerances
    lint: bool = True
    tensorrt_version: str = DEFAULT_TENSORRT_VERSION
    external_data_threshold: int = EXTERNAL_DATA_THRESHOLD
    output: str | None = None  # None: the model's own (logits, or features when headless); "tokens": patch tokens
    input: str = FLOAT_INPUT  # "float": normalized float32 NCHW; "uint8": raw pixels, preprocessing inside the graph
    input_layout: str = DEFAULT_RAW_LAYOUT  # of a raw-pixel input: NHWC (decoders, cameras) or NCHW
    # (MIN, MAX) pixels: height and width each dynamic in this range (multiples of the patch), the position table
    # resampled inside the graph; None: the model's image size only
    size_range: tuple[int, int] | None = None

    def __post_init__(self) -> None:
        if self.output is not None and self.output not in OUTPUT_KINDS:
            raise ValueError(f"--output-kind must be one of {list(OUTPUT_KINDS)} (default: logits for a classifier, "
                             f"features for a headless model), got {self.output!r}")
        if self.input not in INPUT_KINDS:
            raise ValueError(f"--input must be one of {list(INPUT_KINDS)}, got {self.input!r}")
        if self.input_layout not in LAYOUTS:
            raise ValueError(f"--input-layout must be one of {list(LAYOUTS)}, got {self.input_layout!r}")
        if self.attention not in ATTENTION_FORMS:
            raise ValueError(f"attention must be one of {list(ATTENTION_FORMS)}, got {self.attention!r}")
        object.__setattr__(self, "batch", tuple(int(b) for b in self.batch))
        if len(self.batch) != 3:
            raise ValueError(f"batch must be (MIN, OPT, MAX), got {self.batch}")
        check_batch_bounds(*self.batch)
        if self.size_range is not None:
            object.__setattr__(self, "size_range", tuple(self.size_range))
            lo, hi = self.size_range if len(self.size_range) == 2 else (0, 0)
            if not (isinstance(lo, int) and isinstance(hi, int) and 1 <= lo < hi):
                raise ValueError(f"size_range must be (MIN, MAX) pixels with 1 <= MIN < MAX (--img-size MIN:MAX; one "
                                 f"size is --img-size PX), got {self.size_range!r}")
            if self.input != FLOAT_INPUT:
                raise ValueError(f"--img-size MIN:MAX exports a float input; a raw-pixel graph (--input {self.input}) "
                                 "is exported at one size")
        if self.static_batch is not None and (not isinstance(self.static_batch, int) or self.static_batch < 1):
            raise ValueError(f"static_batch must be a positive integer, got {self.static_batch!r}")
        opset = self.resolved_opset
        newest = max_opset() if self.opset is not None else opset
        if not MIN_OPSET <= opset <= newest:
            raise ValueError(
                f"--opset {opset} is out of range: opset must be >= {MIN_OPSET} (LayerNormalization needs 17) and "
                f"<= {newest} (the newest the installed torch/onnxscript exporter writes); "
                f"allowed: {MIN_OPSET}..{newest}"
            )
        if self.attention == "fused" and opset < ATTENTION_OPSET:
            raise ValueError(
                f"attention='fused' needs opset >= {ATTENTION_OPSET} (the ONNX Attention op), got {opset}; "
                "use attention='decomposed' for older opsets"
            )
        if not self.atol > 0:
            raise ValueError(f"atol must be > 0, got {self.atol}")
        if self.external_data_threshold < 0:
            raise ValueError(f"external_data_threshold must be >= 0 bytes, got {self.external_data_threshold}")

    @property
    def resolved_opset(self) -> int:
        return self.opset if self.opset is not None else DEFAULT_OPSET[self.attention]

    @property
    def dynamic(self) -> bool:
        return self.static_batch is None and self.batch[2] > self.batch[0]

    @property
    def batch_bounds(self) -> tuple[int, int, int]:
        """(MIN, OPT, MAX) of the graph: all equal for a static batch."""
        if self.static_batch is not None:
            return (self.static_batch,) * 3
        if not self.dynamic:
            return (self.batch[0],) * 3
        return self.batch

    def to_dict(self) -> dict:
        return {
            "attention": self.attention, "opset": self.resolved_opset, "batch": list(self.batch_bounds),
            "dynamic_batch": self.dynamic, "simplify": self.simplify, "verify": self.verify, "atol": self.atol,
            "lint": self.lint, "tensorrt_version": self.tensorrt_version,
            "external_data_threshold": self.external_data_threshold, "output": self.output,
            "input": self.input, **({"input_layout": self.input_layout} if self.input != FLOAT_INPUT else {}),
            **({"size_range": list(self.size_range)} if self.size_range else {}),
        }


@dataclass
class ExportResult:
    outdir: Path
    onnx_path: Path
    manifest_path: Path
    manifest: Manifest
    verification: dict
    lint: LintReport | None
    simplify: dict
    seconds: float
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {
            "ok": True,
            "outdir": str(self.outdir),
            "onnx": str(self.onnx_path),
            "manifest": str(self.manifest_path),
            "artifacts": [a.to_dict() for a in self.manifest.artifacts],
            "output": self.manifest.output_kind,
            "inputs": [i.to_dict() for i in self.manifest.inputs],
            "outputs": [o.to_dict() for o in self.manifest.outputs],
            "export": self.manifest.export,
            "batch": self.manifest.batch.to_dict() if self.manifest.batch is not None else {},
            "verification": self.verification,
            "certificates": [c.to_dict() for c in self.manifest.certificates],
            "lint": self.lint.to_dict() if self.lint else None,
            "simplify": self.simplify,
            "seconds": round(self.seconds, 2),
            "warnings": self.warnings,
        }


# ---------------------------------------------------------------------------- public entry point
def export_onnx(
    source,
    outdir: str | os.PathLike,
    config: ExportConfig | None = None,
    *,
    arch: str | None = None,
    force: bool = False,
    model_overrides: dict | None = None,
) -> ExportResult:
    """Export a ViT to ``outdir/model.onnx`` with its manifest ``outdir/edgevit.json``, verified
    against PyTorch before anything in ``outdir`` changes.

    Args:
        source: anything :func:`edgevit.load_model` takes (a checkpoint file, a Hugging Face
            directory, a registry name), or a VisionTransformer.
        outdir: the export directory (created if missing).
        config: how to export (attention form, opset, batch bounds, verification, lint);
            ``ExportConfig()`` when None.
        arch: the architecture name for checkpoints that do not record it (to load_model; recorded
            in the manifest).
        force: overwrite an existing export, removing what its manifest listed and the new one does not.
        model_overrides: config fields (``num_heads``, ``act``, ``img_size``...) applied when loading
            ``source``; recorded in the manifest so verify and bench rebuild the same reference.

    Returns:
        ExportResult: the paths, the manifest, the verification and lint reports, notes.

    Raises:
        ArtifactExistsError: outputs exist and ``force`` is False.
        ExportError: export, check or verification failed (nothing in ``outdir`` is changed).
        CheckpointError: ``source`` cannot be loaded.
    """
    cfg = config or ExportConfig()
    start = time.perf_counter()
    outdir = check_output_dir(outdir, "-o/--output")
    for name in (MODEL_FILE, DATA_FILE, MANIFEST_NAME):
        check_writable(outdir / name, force)
    model_overrides = dict(model_overrides or {})
    model, source_desc = _prepare_model(source, arch, model_overrides)
    _allow_sizes(model, cfg)
    output = _output_kind(model, cfg, source_desc)
    graph = GraphInfo.of(model, output)

    created_outdir = not outdir.exists()
    outdir.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(outdir)
    work = temporary_dir(outdir, "edgevit-export")
    notes: list[str] = []
    try:
        proto, attn_note = _export_graph(model, cfg, output)
        if attn_note:
            notes.append(attn_note)
        proto, gelus = canonicalize_gelu(proto)
        proto, slim_info = _simplify(proto, cfg)
        if slim_info.get("warning"):
            notes.append(slim_info["warning"])
        node_names = name_vit_nodes(proto, model.config.depth, graph.linears, graph.norms)
        check_structure(proto, graph, cfg)
        _stamp(proto, model, cfg, output)
        tmp_onnx, external = _save(proto, work, cfg.external_data_threshold)
        del proto
        check_file(tmp_onnx, graph, cfg)
        verification = verify_export(model, tmp_onnx, cfg, output) if cfg.verify else {"skipped": True}
        report = lint_onnx(tmp_onnx, cfg.tensorrt_version) if cfg.lint else None
        manifest = build_manifest(model, source_desc, arch, cfg, slim_info, verification, report, external, graph)
        # the overrides: bench / verify reload the reference with them; the source relative to OUTDIR, with its sha256
        manifest.model = manifest.model.with_fields(overrides=model_overrides, **source_fields(source_desc, outdir))
        manifest.export["gelu_reordered"] = gelus
        manifest.export["node_names"] = node_names
        manifest.root = work
        manifest.add_artifact(MODEL_FILE, format="onnx", precision=BASE_PRECISION,
                              external_data=[DATA_FILE] if external else [], opset=cfg.resolved_opset,
                              attention=cfg.attention, verdict=verdict(verification, report).to_dict())
        if "consumer" in verification:  # how the graph's consumer preprocesses, checked: its certificate
            manifest.add_certificate(consumer_certificate(verification["consumer"], MODEL_FILE,
                                                          manifest.artifact(BASE_PRECISION, "onnx").sha256,
                                                          input_contract(model, cfg)))
        manifest.export["seconds"] = round(time.perf_counter() - start, 2)
        # Another writer of OUTDIR may have finished while this one worked: decide under its lock,
        # from what is there now, and install the graph and the manifest that describes it together.
        with outdir_lock(outdir):
            for name in (MODEL_FILE, DATA_FILE, MANIFEST_NAME):
                check_writable(outdir / name, force)
            previous, unread = previous_manifest(outdir) if force else (None, None)
            install(work, outdir, external)
            manifest_path = manifest.save(outdir, force=force)
            removed = remove_superseded(previous, manifest, outdir) if previous is not None else []
    except Exception:
        shutil.rmtree(work, ignore_errors=True)
        if created_outdir:
            with contextlib.suppress(OSError):
                outdir.rmdir()
        raise
    shutil.rmtree(work, ignore_errors=True)
    if removed:
        notes.append(f"--force: removed {', '.join(removed)} of the previous export in {outdir} "
                     "(the new manifest does not list them)")
    if unread:
        notes.append(unread)
    contract = input_contract(model, cfg)
    if contract.raw and contract.preprocessing.pixel_max != np.iinfo(contract.np_dtype).max:
        notes.append(f"--input {cfg.input}: the graph divides by this model's pixel_max "
                     f"{contract.preprocessing.pixel_max:g}, so it takes pixels on 0..{contract.preprocessing.pixel_max:g}, "
                     f"not the full 0..{np.iinfo(contract.np_dtype).max} of {cfg.input} frames from a camera or decoder: "
                     "scale frames to that range first, or train the model on 0..255 pixels (pixel_max 255)")
    return ExportResult(outdir, outdir / MODEL_FILE, manifest_path, manifest, verification, report, slim_info,
                        time.perf_counter() - start, notes)


# ---------------------------------------------------------------------------- steps
def _prepare_model(source, arch, model_overrides: dict) -> tuple[VisionTransformer, str]:
    if isinstance(source, VisionTransformer):
        if model_overrides:
            raise ValueError(f"model_overrides {model_overrides} apply when loading a checkpoint; change an "
                             "in-memory model's config before exporting it")
        model = copy.deepcopy(source)
        desc = "<in-memory VisionTransformer>"
    else:
        from ..models.checkpoint import load_model

        model = load_model(source, arch=arch, **model_overrides)
        desc = str(source)
    model = model.float().eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model, desc


def _allow_sizes(model: VisionTransformer, cfg: ExportConfig) -> None:
    """For ``cfg.size_range``: check that the range holds the model's own size (the profile's optimum, where
    the gate, verify and bench run) in whole patches, and let the model take any size in it (``dynamic_size``:
    bilinear unless the config names a mode; timm and transformers resample DINOv2's table bicubically, which
    TensorRT 10.3's ONNX parser does not take, so lint flags a bicubic graph)."""
    if not cfg.size_range:
        return
    c, (lo, hi) = model.config, cfg.size_range
    dynamic = c if c.dynamic_size != "none" else c.replace(dynamic_size="bilinear")  # ValueError: RoPE, BEiT...
    if lo % c.patch_size or hi % c.patch_size or not lo <= c.img_size <= hi:
        low, high = -(-lo // c.patch_size) * c.patch_size, hi // c.patch_size * c.patch_size
        raise ValueError(f"--img-size {lo}:{hi}: the bounds must be multiples of the patch size {c.patch_size} and "
                         f"hold the model's own size {c.img_size} (where it is checked and the engine profile's "
                         f"optimum); e.g. --img-size {min(low, c.img_size)}:{max(high, c.img_size)}")
    try:  # the largest input's attention must fit TensorRT's tensors, as one size's does
        dynamic.replace(img_size=hi)
    except ValueError as exc:
        raise ValueError(f"--img-size {lo}:{hi}: at {hi}x{hi} {exc}") from None
    model.config = dynamic  # bilinear unless set: TensorRT 10.3's ONNX parser takes nearest and linear Resize only


def _output_kind(model: VisionTransformer, cfg: ExportConfig, source_desc: str) -> str:
    """The graph's output: ``cfg.output``, else the model's own (logits, or features when headless)."""
    own = model.output_kind
    if cfg.output is None or cfg.output == own or not OutputKind(cfg.output).own:
        return cfg.output or own
    what = "a classifier (it outputs logits)" if OutputKind(own).classes else "headless (num_classes=0: it outputs features)"
    raise ValueError(f"--output-kind {cfg.output}: {source_desc} is {what}; use --output-kind {own} (the default) "
                     "or tokens (the patch tokens, for dense heads)")


@contextlib.contextmanager
def _quiet_exporter():
    """Silence the exporter's logging/warnings chatter (errors still raise)."""
    loggers = [logging.getLogger(n) for n in ("torch.onnx", "torch.export", "torch._dynamo", "onnxscript", "torch")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def _dynamo_export(model: VisionTransformer, cfg: ExportConfig, attn_impl: str, opset: int, output: str = "logits"):
    c = model.config
    m = graph_module(copy.deepcopy(model).set_attn_impl(attn_impl), output, input_contract(model, cfg))
    lo, opt, hi = cfg.batch_bounds
    dims = {}
    if cfg.dynamic:
        example = min(max(2, lo), hi)  # 0 and 1 would be specialized by torch.export
        dims[0] = torch.export.Dim("batch", min=lo, max=hi)
    else:
        example = lo
    if cfg.size_range:  # height and width: whole patches, each its own dimension
        p = c.patch_size
        low, high = -(-cfg.size_range[0] // p), cfg.size_range[1] // p
        dims[2] = p * torch.export.Dim("grid_h", min=low, max=high)
        dims[3] = p * torch.export.Dim("grid_w", min=low, max=high)
    dynamic_shapes = (dims,) if dims else None
    x = example_input(input_contract(model, cfg), example, c)
    try:
        with _quiet_exporter(), torch.no_grad():
            program = torch.onnx.export(
                m, (x,), dynamo=True, opset_version=opset, input_names=[INPUT_NAME], output_names=[output],
                dynamic_shapes=dynamic_shapes, optimize=True, verbose=False, report=False,
            )
    except Exception as exc:
        first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ""
        raise ExportError(
            f"torch.onnx.export (dynamo, opset {opset}, attention {attn_impl}) failed: {type(exc).__name__}: {first}"
        ) from exc
    if program is None:
        raise ExportError("torch.onnx.export returned no program; upgrade torch (>= 2.5 for dynamo export)")
    return program.model_proto


def _export_graph(model: VisionTransformer, cfg: ExportConfig, output: str):
    """The ONNX graph in the requested attention form; (proto, note or None)."""
    opset = cfg.resolved_opset
    depth = model.config.depth
    if cfg.attention == "decomposed":
        return _dynamo_export(model, cfg, "math", opset, output), None
    proto = _dynamo_export(model, cfg, "sdpa", opset, output)
    if count_ops(proto, "Attention") == depth:
        return proto, None
    # This exporter did not emit the Attention op: export Q-pre-scaled math and fuse it ourselves.
    proto = _dynamo_export(model, cfg, "math", opset, output)
    proto, fused = fuse_attention(proto)
    if fused != depth:
        raise ExportError(
            f"attention='fused': the exporter emitted {count_ops(proto, 'Attention')} Attention op(s) and the "
            f"rewrite fused {fused} of {depth} blocks; use attention='decomposed'"
        )
    return proto, f"exporter did not emit Attention; fused {fused} MatMul-Softmax-MatMul blocks by graph rewrite"


def _batch_is_dynamic(proto) -> bool:
    inp = proto.graph.input[0].type.tensor_type.shape.dim[0]
    return not inp.HasField("dim_value")


def _simplify(proto, cfg: ExportConfig):
    """onnxslim, unless disabled; keep the unslimmed graph if slimming loses LayerNormalization,
    the Attention ops or the dynamic batch (never seen, but checked)."""
    before = {op: count_ops(proto, op) for op in ("LayerNormalization", "Attention", "Softmax")}
    info = {"enabled": cfg.simplify, "nodes_before": len(proto.graph.node)}
    if not cfg.simplify:
        return proto, info
    import onnxslim

    try:
        with _quiet_exporter(), open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink):
            slimmed = onnxslim.slim(copy.deepcopy(proto))
    except Exception as exc:  # keep going with the exporter's graph
        info["warning"] = f"onnxslim failed ({type(exc).__name__}: {str(exc)[:200]}); kept the unslimmed graph"
        info["applied"] = False
        return proto, info
    after = {op: count_ops(slimmed, op) for op in before}
    lost = [f"{op} {before[op]} -> {after[op]}" for op in before if after[op] != before[op]]
    if cfg.dynamic and not _batch_is_dynamic(slimmed):
        lost.append("dynamic batch became static")
    if lost:
        info["warning"] = f"onnxslim changed {', '.join(lost)}; kept the unslimmed graph"
        info["applied"] = False
        return proto, info
    info.update(applied=True, nodes_after=len(slimmed.graph.node), version=getattr(onnxslim, "__version__", None))
    return slimmed, info


def _stamp(proto, model: VisionTransformer, cfg: ExportConfig, output: str) -> None:
    from .. import __version__

    proto.producer_name = "edgevit"
    proto.producer_version = __version__
    proto.doc_string = (f"edgevit ViT export: attention={cfg.attention}, opset={cfg.resolved_opset}, "
                        f"input {INPUT_NAME} {input_contract(model, cfg).describe()}, output {output}")
    meta = {"edgevit.attention": cfg.attention, "edgevit.version": __version__}
    for key, value in meta.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value


def _save(proto, work: Path, threshold: int) -> tuple[Path, bool]:
    path = work / MODEL_FILE
    try:
        external = save_onnx(proto, path, threshold, DATA_FILE)
    except (ValueError, OSError) as exc:
        raise ExportError(f"could not write the ONNX file ({exc}); for graphs near 2 GiB lower "
                          "external_data_threshold") from exc
    return path, external


__all__ = [
    "ATTENTION_FORMS", "DEFAULT_ATTENTION", "DEFAULT_OPSET", "OUTPUT_KINDS", "ExportConfig", "ExportResult",
    "canonicalize_gelu",
    "export_onnx", "fuse_attention",
]
