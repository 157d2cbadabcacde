"""PyTorch ViT -> ``model.onnx`` + ``edgevit.json``, checked and verified before it is moved into place.

    from edgevit.export import ExportConfig, export_onnx
    result = export_onnx("digits-tiny", "out", ExportConfig(batch=(1, 8, 64)))
    result.onnx_path, result.manifest, result.verification

What the graph looks like
-------------------------
* torch's dynamo exporter (``torch.onnx.export(..., dynamo=True)``), opset >= 17;
* input ``images`` (float32, NCHW, already normalized); one output named for what it holds
  (``ExportConfig.output``, recorded as the manifest's ``model.output``): ``logits`` (batch,
  classes) for a classifier, ``features`` (batch, D) for a headless model (``num_classes=0``: the
  pooled, final-normed embedding its ``forward`` returns), or with ``output="tokens"``
  (``edgevit export --output-kind tokens``) ``tokens`` (batch, patches, D): ``model.forward_tokens``,
  the patch tokens after the final norm with the class/register/distillation tokens dropped, for
  dense heads;
* LayerNorm is always the ``LayerNormalization`` op (opset >= 17), never a Pow/ReduceMean chain:
  that chain overflows FP16 (design.md §3);
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
  put in the order ORT fuses (:func:`canonicalize_gelu`, applied to every export; before it the
  decomposed graph took 126.6 ms of kernel time). Measured on this project's 2-core Intel Xeon
  (2.5 GHz, AVX-512) CPU machine, shared and loaded, DeiT-Small shapes, random weights,
  onnxruntime 1.32, ``benchmarks/export_cpu.py`` (2 threads, median of 30 at batch 1):

  =========================================  ==================  ==================
  ORT CPU                                    decomposed (op 18)  fused (opset 23)
  =========================================  ==================  ==================
  kernel time, batch 1, 1 thread (profiler)  100.1 ms            112.4 ms
  wall, batch 1, run A (load 2.6)            66.4 ms             75.6 ms
  wall, batch 1, run B (load 3.9)            101.3 ms            99.7 ms
  wall, batch 1, run C (load 3.7, n=20)      106.0 ms            100.4 ms
  wall, batch 8, runs A / B                  509 / 1424 ms       492 / 1318 ms
  =========================================  ==================  ==================

  The differences flip sign between runs and stay within the run-to-run noise (about 10 %),
  so the form TensorRT 10.3 can parse is the default.

Failure handling
----------------
Everything is written to a temporary directory inside OUTDIR and renamed into place only after
onnx.checker, strict shape inference and the ONNX Runtime comparison against PyTorch (bundled
digits for 1x8x8 models, random inputs at batch MIN and a larger batch; max abs <= ``atol``)
pass; lint runs too and its findings are reported and recorded, not enforced. An export that fails leaves existing files untouched and raises :class:`ExportError` with the
numbers. Existing artifacts are overwritten only with ``force``, which also removes what the old
manifest listed and the new one does not (precision graphs, engines) and a calibration cache made
for another graph. Graphs whose weights exceed
``external_data_threshold`` (2 GiB, protobuf's limit) keep them in ``model.onnx.data``.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import json
import logging
import os
import shutil
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .._io import check_output_dir, check_writable, install_file, remove_stale_temporaries
from ..errors import ExportError, ManifestError
from ..manifest import MANIFEST_NAME, Manifest, library_versions
from ..metrics import FEATURE_OUTPUTS, neighbour_agreement
from ..models.vit import VisionTransformer, count_params
from .lint import DEFAULT_TENSORRT_VERSION, LintReport, lint_onnx
from .names import module_calls, name_vit_nodes

ATTENTION_FORMS = ("decomposed", "fused")
DEFAULT_ATTENTION = "decomposed"
DEFAULT_OPSET = {"decomposed": 18, "fused": 23}
MIN_OPSET = 17
ATTENTION_OPSET = 23
DEFAULT_BATCH = (1, 1, 32)
EXTERNAL_DATA_THRESHOLD = 2 * 1024**3
EXTERNAL_TENSOR_MIN_BYTES = 1024  # smaller tensors (shape constants) stay inline, readable by shape inference
MODEL_FILE = "model.onnx"
DATA_FILE = "model.onnx.data"
INPUT_NAME = "images"
OUTPUT_NAME = "logits"  # a classifier's; the graph output is named after ExportConfig's resolved output kind
OUTPUT_KINDS = ("logits", "features", "tokens")
DEFAULT_ATOL = 1e-4
LARGER_BATCH = 8


def parse_batch(text: str) -> tuple[int, int, int]:
    """``"1,8,32"`` -> (1, 8, 32): MIN,OPT,MAX with 1 <= MIN <= OPT <= MAX."""
    parts = [p.strip() for p in str(text).split(",")]
    try:
        values = tuple(int(p) for p in parts)
    except ValueError:
        raise ValueError(f"--batch must be MIN,OPT,MAX integers (e.g. 1,8,32), got {text!r}") from None
    if len(values) != 3:
        raise ValueError(f"--batch must be three integers MIN,OPT,MAX (e.g. 1,8,32), got {text!r}")
    _check_batch(values)
    return values  # type: ignore[return-value]


def _check_batch(values) -> None:
    lo, opt, hi = values
    if not (1 <= lo <= opt <= hi):
        raise ValueError(f"batch bounds must satisfy 1 <= MIN <= OPT <= MAX, got MIN={lo}, OPT={opt}, MAX={hi}")


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
    atol: float = DEFAULT_ATOL
    lint: bool = True
    tensorrt_version: str = DEFAULT_TENSORRT_VERSION
    external_data_threshold: int = EXTERNAL_DATA_THRESHOLD
    output: str | None = None  # None: the model's own (logits, or features when headless); "tokens": patch tokens

    def __post_init__(self) -> None:
        if self.output is not None and self.output not in OUTPUT_KINDS:
            raise ValueError(f"--output-kind must be one of {list(OUTPUT_KINDS)} (default: logits for a classifier, "
                             f"features for a headless model), got {self.output!r}")
        if self.attention not in ATTENTION_FORMS:
            raise ValueError(f"attention must be one of {list(ATTENTION_FORMS)}, got {self.attention!r}")
        object.__setattr__(self, "batch", tuple(int(b) for b in self.batch))
        if len(self.batch) != 3:
            raise ValueError(f"batch must be (MIN, OPT, MAX), got {self.batch}")
        _check_batch(self.batch)
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
            "outputs": self.manifest.outputs,
            "export": self.manifest.export,
            "batch": self.manifest.batch,
            "verification": self.verification,
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
    """Export ``source`` (anything :func:`edgevit.load_model` takes, or a VisionTransformer) to
    ``outdir/model.onnx`` with its manifest ``outdir/edgevit.json``. ``arch`` and ``model_overrides``
    (config fields: ``num_heads``, ``act``, ``img_size``...) go to load_model and into the manifest.

    Raises ArtifactExistsError (existing outputs without ``force``), ExportError (export,
    check or verification failed: nothing in ``outdir`` is changed), CheckpointError (source).
    """
    cfg = config or ExportConfig()
    start = time.perf_counter()
    outdir = check_output_dir(outdir, "-o/--output")
    for name in (MODEL_FILE, DATA_FILE, MANIFEST_NAME):
        check_writable(outdir / name, force)
    model_overrides = dict(model_overrides or {})
    model, source_desc = _prepare_model(source, arch, model_overrides)
    output = _output_kind(model, cfg, source_desc)
    graph = _GraphInfo.of(model, output)

    created_outdir = not outdir.exists()
    outdir.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(outdir)
    work = Path(tempfile.mkdtemp(prefix=f".edgevit-export-{os.getpid()}-", dir=outdir))  # pid: for cleanup
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
        _check_structure(proto, graph, cfg)
        _stamp(proto, model, cfg, output)
        tmp_onnx, external = _save(proto, work, cfg.external_data_threshold)
        del proto
        _check_file(tmp_onnx, graph, cfg)
        verification = _verify(model, tmp_onnx, cfg, output) if cfg.verify else {"skipped": True}
        report = lint_onnx(tmp_onnx, cfg.tensorrt_version) if cfg.lint else None
        manifest = _build_manifest(model, source_desc, arch, cfg, slim_info, verification, report, external, graph)
        manifest.model["overrides"] = model_overrides  # bench / verify reload the reference with them
        manifest.export["gelu_reordered"] = gelus
        manifest.export["node_names"] = node_names
        manifest.root = work
        manifest.add_artifact(MODEL_FILE, format="onnx", precision="fp32",
                              external_data=[DATA_FILE] if external else [], opset=cfg.resolved_opset,
                              attention=cfg.attention, verdict=_verdict(verification, report))
        manifest.export["seconds"] = round(time.perf_counter() - start, 2)
        previous = _previous_manifest(outdir) if force else None
        _install(work, outdir, external, force)
        manifest_path = manifest.save(outdir, force=force)
    except Exception:
        shutil.rmtree(work, ignore_errors=True)
        if created_outdir:
            with contextlib.suppress(OSError):
                outdir.rmdir()
        raise
    shutil.rmtree(work, ignore_errors=True)
    if previous is not None:
        removed = _remove_superseded(previous, manifest, outdir)
        if removed:
            notes.append(f"--force: removed {', '.join(removed)} of the previous export in {outdir} "
                         "(the new manifest does not list them)")
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


def _output_kind(model: VisionTransformer, cfg: ExportConfig, source_desc: str) -> str:
    """The graph's output: ``cfg.output``, else the model's own (logits, or features when headless)."""
    own = model.output_kind
    if cfg.output in (None, own, "tokens"):
        return cfg.output or own
    what = "a classifier (it outputs logits)" if own == "logits" else "headless (num_classes=0: it outputs features)"
    raise ValueError(f"--output-kind {cfg.output}: {source_desc} is {what}; use --output-kind {own} (the default) "
                     "or tokens (the patch tokens, for dense heads)")


class _TokensOutput(torch.nn.Module):
    """``model.forward_tokens`` as the module's forward: the graph of ``--output-kind tokens``."""

    def __init__(self, model: VisionTransformer):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.forward_tokens(x)


def _output_module(model: VisionTransformer, output: str) -> torch.nn.Module:
    """What the graph computes: ``model`` itself, or its patch tokens for ``output="tokens"``."""
    return _TokensOutput(model) if output == "tokens" else model


@dataclass(frozen=True)
class _GraphInfo:
    """What the exported graph must hold, from one PyTorch forward pass of what it computes: the
    output's name and dims after the batch, and the Linear / LayerNorm modules in call order
    (names for :func:`name_vit_nodes`; their counts for :func:`_check_structure`)."""

    output: str
    dims: tuple[int, ...]
    linears: list[str]
    norms: list[str]
    attentions: int  # self-attention blocks: Softmax (decomposed) or Attention (fused) ops
    pools: int       # attention pools (SigLIP's MAP head): one Softmax each, in either form

    @classmethod
    def of(cls, model: VisionTransformer, output: str) -> "_GraphInfo":
        from ..models.vit import Attention, AttentionPool

        c = model.config
        module = _output_module(model, output)
        example = torch.zeros(1, c.in_chans, c.img_size, c.img_size)
        kinds = (torch.nn.Linear, torch.nn.LayerNorm, Attention, AttentionPool)
        out, calls = module_calls(module, example, kinds)
        strip = (lambda n: n.removeprefix("model.")) if module is not model else (lambda n: n)
        return cls(output, tuple(out.shape[1:]), [strip(n) for n in calls[torch.nn.Linear]],
                   [strip(n) for n in calls[torch.nn.LayerNorm]], len(calls[Attention]), len(calls[AttentionPool]))


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
    m = _output_module(copy.deepcopy(model).set_attn_impl(attn_impl), output)
    lo, opt, hi = cfg.batch_bounds
    if cfg.dynamic:
        example = min(max(2, lo), hi)  # 0 and 1 would be specialized by torch.export
        dynamic_shapes = ({0: torch.export.Dim("batch", min=lo, max=hi)},)
    else:
        example, dynamic_shapes = lo, None
    x = torch.randn(example, c.in_chans, c.img_size, c.img_size)
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


def _count(proto, op_type: str) -> int:
    return sum(1 for n in proto.graph.node if n.op_type == op_type)


def _export_graph(model: VisionTransformer, cfg: ExportConfig, output: str):
    """The ONNX graph in the requested attention form; (proto, note or None)."""
    opset = cfg.resolved_opset
    depth = model.config.depth
    if cfg.attention == "decomposed":
        return _dynamo_export(model, cfg, "math", opset, output), None
    proto = _dynamo_export(model, cfg, "sdpa", opset, output)
    if _count(proto, "Attention") == depth:
        return proto, None
    # This exporter did not emit the Attention op: export Q-pre-scaled math and fuse it ourselves.
    proto = _dynamo_export(model, cfg, "math", opset, output)
    proto, fused = fuse_attention(proto)
    if fused != depth:
        raise ExportError(
            f"attention='fused': the exporter emitted {_count(proto, 'Attention')} Attention op(s) and the "
            f"rewrite fused {fused} of {depth} blocks; use attention='decomposed'"
        )
    return proto, f"exporter did not emit Attention; fused {fused} MatMul-Softmax-MatMul blocks by graph rewrite"


def fuse_attention(proto):
    """Rewrite each ``MatMul(Q*s, Transpose(K)) -> Softmax -> MatMul(., V)`` into one opset-23
    ``Attention(Q, K, V, scale=s)``. Returns (new proto, number of blocks fused).

    Q, K, V must be 4D (batch, heads, tokens, head_dim), as in the ViT's "math" attention.
    The graph's default-domain opset must already be >= 23.
    """
    from onnx import helper

    from .lint import _Graph, _scalar_operand

    opset = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), 0)
    if opset < ATTENTION_OPSET:
        raise ExportError(f"fuse_attention needs opset >= {ATTENTION_OPSET}, the graph has {opset}")
    g = _Graph(proto, None)
    remove: set[int] = set()
    replacements: dict = {}
    index = {id(n): i for i, n in enumerate(proto.graph.node)}
    fused = 0
    for sm in list(proto.graph.node):
        if sm.op_type != "Softmax":
            continue
        axis = next((helper.get_attribute_value(a) for a in sm.attribute if a.name == "axis"), -1)
        qk = g.producer.get(sm.input[0])
        if axis not in (-1, 3) or qk is None or qk.op_type != "MatMul":
            continue
        av = [n for n in g.consumers.get(sm.output[0], []) if n.op_type == "MatMul" and n.input[0] == sm.output[0]]
        kt = g.producer.get(qk.input[1])
        if len(av) != 1 or len(g.consumers.get(sm.output[0], [])) != 1 or kt is None or kt.op_type != "Transpose":
            continue
        perm = next((list(helper.get_attribute_value(a)) for a in kt.attribute if a.name == "perm"), None)
        if perm != [0, 1, 3, 2]:
            continue
        q, scale, scaler = qk.input[0], 1.0, g.producer.get(qk.input[0])
        other = _scalar_operand(g, scaler) if scaler is not None else None
        if other is not None:
            value = g.scalar(scaler.input[1 - other])
            scale = value if scaler.op_type == "Mul" else 1.0 / value
            q = scaler.input[other]
        dims = [g.shapes.get(t) for t in (q, kt.input[0], av[0].input[1])]
        if any(d is None or len(d) != 4 for d in dims):
            continue
        node = helper.make_node("Attention", [q, kt.input[0], av[0].input[1]], [av[0].output[0]],
                                name=f"{sm.name or 'softmax'}_attention", scale=float(scale))
        replacements[index[id(av[0])]] = node
        remove.update({index[id(qk)], index[id(sm)]})
        if len(g.consumers.get(kt.output[0], [])) == 1:
            remove.add(index[id(kt)])
        if other is not None and len(g.consumers.get(scaler.output[0], [])) == 1:
            remove.add(index[id(scaler)])
        fused += 1
    nodes = []
    for i, n in enumerate(proto.graph.node):
        if i in replacements:
            nodes.append(replacements[i])
        elif i not in remove:
            nodes.append(n)
    del proto.graph.node[:]
    proto.graph.node.extend(nodes)
    return proto, fused


def canonicalize_gelu(proto) -> tuple[object, int]:
    """Reorder the exporter's erf GELU, ``x * (0.5 * (1 + erf(x / sqrt2)))``, into
    ``(x * (1 + erf(x / sqrt2))) * 0.5``. Returns (proto, number of GELUs reordered).

    Exact in floating point (scaling by 0.5 is exact), still plain ONNX ops that TensorRT parses,
    and the order ONNX Runtime's GeluFusion matches, so ORT runs one Gelu kernel instead of five
    elementwise ops per block (about 10 % of DeiT-S's CPU time at batch 1).
    """
    from .lint import _Graph, _scalar_operand

    g = _Graph(proto, None)
    count = 0
    for erf in g.nodes:
        if erf.op_type != "Erf":
            continue
        div = g.producer.get(erf.input[0])
        if div is None or div.op_type != "Div" or not np.isclose(g.scalar(div.input[1]) or 0.0, np.sqrt(2.0)):
            continue
        x = div.input[0]
        users = g.consumers.get(erf.output[0], [])
        if len(users) != 1 or users[0].op_type != "Add":
            continue
        add = users[0]
        one = add.input[1] if add.input[0] == erf.output[0] else add.input[0]
        users = g.consumers.get(add.output[0], [])
        if g.scalar(one) != 1.0 or len(users) != 1 or users[0].op_type != "Mul":
            continue
        half_mul = users[0]
        other = _scalar_operand(g, half_mul)
        if other is None or half_mul.input[other] != add.output[0] or g.scalar(half_mul.input[1 - other]) != 0.5:
            continue
        users = g.consumers.get(half_mul.output[0], [])
        if len(users) != 1 or users[0].op_type != "Mul" or x not in users[0].input:
            continue
        x_mul = users[0]
        half = half_mul.input[1 - other]
        half_mul.input[:] = [x, add.output[0]]
        x_mul.input[:] = [half_mul.output[0], half]
        count += 1
    return proto, count


def _batch_is_dynamic(proto) -> bool:
    inp = proto.graph.input[0].type.tensor_type.shape.dim[0]
    return not inp.HasField("dim_value")


def _simplify(proto, cfg: ExportConfig):
    """onnxslim, unless disabled; keep the unslimmed graph if slimming loses LayerNormalization,
    the Attention ops or the dynamic batch (never seen, but checked)."""
    before = {op: _count(proto, op) for op in ("LayerNormalization", "Attention", "Softmax")}
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
    after = {op: _count(slimmed, op) for op in before}
    lost = [f"{op} {before[op]} -> {after[op]}" for op in before if after[op] != before[op]]
    if cfg.dynamic and not _batch_is_dynamic(slimmed):
        lost.append("dynamic batch became static")
    if lost:
        info["warning"] = f"onnxslim changed {', '.join(lost)}; kept the unslimmed graph"
        info["applied"] = False
        return proto, info
    info.update(applied=True, nodes_after=len(slimmed.graph.node), version=getattr(onnxslim, "__version__", None))
    return slimmed, info


def _check_structure(proto, graph: _GraphInfo, cfg: ExportConfig) -> None:
    """The graph has the form promised: LayerNormalization ops, the attention form, I/O names."""
    depth = graph.attentions
    ln, want = _count(proto, "LayerNormalization"), len(graph.norms)
    if ln != want:
        raise ExportError(f"expected {want} LayerNormalization ops (one per nn.LayerNorm call of the model), "
                          f"found {ln}; use opset >= {MIN_OPSET}")
    attn, softmax = _count(proto, "Attention"), _count(proto, "Softmax")
    if cfg.attention == "fused" and attn != depth:
        raise ExportError(f"attention='fused': expected {depth} Attention ops, found {attn}")
    if cfg.attention == "decomposed" and (attn or softmax != depth + graph.pools):
        raise ExportError(f"attention='decomposed': expected {depth + graph.pools} Softmax and 0 Attention ops, "
                          f"found {softmax} and {attn}")
    names = ([i.name for i in proto.graph.input], [o.name for o in proto.graph.output])
    if names != ([INPUT_NAME], [graph.output]):
        raise ExportError(f"graph inputs/outputs are {names}, expected [{INPUT_NAME!r}] -> [{graph.output!r}]")


def _stamp(proto, model: VisionTransformer, cfg: ExportConfig, output: str) -> None:
    from .. import __version__

    proto.producer_name = "edgevit"
    proto.producer_version = __version__
    proto.doc_string = (f"edgevit ViT export: attention={cfg.attention}, opset={cfg.resolved_opset}, "
                        f"input {INPUT_NAME} float32 NCHW normalized, output {output}")
    meta = {"edgevit.attention": cfg.attention, "edgevit.version": __version__}
    for key, value in meta.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value


def _tensor_bytes(proto) -> int:
    total = 0
    for t in proto.graph.initializer:
        if t.raw_data:
            total += len(t.raw_data)
        else:
            total += int(np.prod(t.dims)) * 4
    return total


def _save(proto, work: Path, threshold: int) -> tuple[Path, bool]:
    import onnx

    path = work / MODEL_FILE
    external = _tensor_bytes(proto) > threshold
    try:
        if external:
            onnx.save_model(proto, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                            location=DATA_FILE, size_threshold=EXTERNAL_TENSOR_MIN_BYTES)
        else:
            onnx.save_model(proto, str(path))
    except (ValueError, OSError) as exc:
        raise ExportError(f"could not write the ONNX file ({exc}); for graphs near 2 GiB lower "
                          "external_data_threshold") from exc
    return path, external


def _check_file(path: Path, graph: _GraphInfo, cfg: ExportConfig) -> None:
    """onnx.checker (full) and strict shape inference; the output must be (batch, *dims of PyTorch's)."""
    import onnx

    try:
        onnx.checker.check_model(str(path), full_check=True)
        inferred = onnx.shape_inference.infer_shapes(onnx.load(str(path), load_external_data=False),
                                                     strict_mode=True, data_prop=True)
    except Exception as exc:
        raise ExportError(f"the exported graph fails onnx.checker / shape inference: {str(exc)[:500]}") from exc
    out = inferred.graph.output[0].type.tensor_type.shape.dim
    dims = [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in out]
    lo, _, _ = cfg.batch_bounds
    want_batch = lo if not cfg.dynamic else None
    if len(dims) != 1 + len(graph.dims) or tuple(dims[1:]) != graph.dims or (want_batch and dims[0] != want_batch) or (
            cfg.dynamic and isinstance(dims[0], int) and dims[0] > 0):
        raise ExportError(f"shape inference gives {graph.output} {dims}, expected "
                          f"[{'batch' if cfg.dynamic else lo}, {', '.join(map(str, graph.dims))}] (PyTorch's)")


def _reference_images(model: VisionTransformer, n: int) -> np.ndarray | None:
    """Real inputs where the model has some: the bundled digits for 1x8x8 models.

    Hook: other bundled sets can be added here; None means random inputs only.
    """
    c = model.config
    if (c.in_chans, c.img_size) != (1, 8) or model.preprocessing is None:
        return None
    try:
        from ..data import load_digits
    except ImportError:  # edgevit.data without the digits loader: random inputs only
        return None
    images = load_digits(model.preprocessing, split="test").images[:n]
    return np.ascontiguousarray(images, dtype=np.float32)


def compare_logits(ref: np.ndarray, got: np.ndarray, output: str = "logits") -> dict:
    """max abs error, error relative to the outputs' scale, per-sample cosine over the flattened
    output (worst and mean); for logits the top-1 agreement, for ``output`` "features"/"tokens"
    (no classes) the k-NN agreement (:func:`edgevit.metrics.neighbour_agreement`) instead."""
    ref = ref.astype(np.float64)
    got = got.astype(np.float64)
    err = np.abs(ref - got)
    scale = float(np.max(np.abs(ref))) if ref.size else 0.0
    a, b = ref.reshape(len(ref), -1), got.reshape(len(got), -1)
    num = (a * b).sum(axis=1)
    den = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    cosine = np.where(den > 0, num / np.maximum(den, 1e-300), 1.0)
    result = {
        "max_abs": float(err.max()) if err.size else 0.0,
        "mean_abs": float(err.mean()) if err.size else 0.0,
        "logits_scale": scale,
        "max_rel_to_scale": float(err.max() / scale) if scale > 0 else 0.0,
        "min_cosine": float(cosine.min()) if cosine.size else 1.0,
        "mean_cosine": float(cosine.mean()) if cosine.size else 1.0,
    }
    if output in FEATURE_OUTPUTS:
        result["knn_agree"], result["knn_k"] = neighbour_agreement(ref, got)
    else:
        result["top1_agree"] = float((ref.argmax(1) == got.argmax(1)).mean()) if ref.size else 1.0
    return result


def _verify(model: VisionTransformer, path: Path, cfg: ExportConfig, output: str = "logits") -> dict:
    """Run the graph on ONNX Runtime and compare its ``output`` with what the PyTorch reference
    ("math" attention) computes for it: logits, features or ``forward_tokens``."""
    reference = _output_module(copy.deepcopy(model).set_attn_impl("math").eval(), output)
    c = model.config
    lo, _, hi = cfg.batch_bounds
    batches = [lo] if not cfg.dynamic else sorted({lo, min(hi, max(lo + 1, LARGER_BATCH))})
    gen = torch.Generator().manual_seed(0)
    cases = [(f"random[{b}]", torch.randn(b, c.in_chans, c.img_size, c.img_size, generator=gen).numpy())
             for b in batches]
    digits = _reference_images(model, hi if cfg.dynamic else lo)
    if digits is not None and len(digits):
        n = len(digits) if cfg.dynamic else lo
        if len(digits) >= n:
            cases.append((f"digits[{n}]", digits[:n]))
    from ..runtime import get_runner

    try:
        session = get_runner("onnxruntime", path)
        session.activate()
    except Exception as exc:
        raise ExportError(f"ONNX Runtime cannot load the exported graph: {str(exc)[:500]}") from exc
    checks = []
    for name, x in cases:
        with torch.no_grad():
            ref = reference(torch.from_numpy(x)).numpy()
        try:
            got = session.infer({INPUT_NAME: x})[output]
        except Exception as exc:
            raise ExportError(f"ONNX Runtime failed on {name} input of shape {x.shape}: {str(exc)[:500]}") from exc
        if got.shape != ref.shape:
            raise ExportError(f"ONNX Runtime {output} have shape {got.shape} on {name}, PyTorch {ref.shape}")
        checks.append({"input": name, "batch": int(x.shape[0]), **compare_logits(ref, got, output)})
    session.deactivate()
    worst = max(ch["max_abs"] for ch in checks)
    result = {
        "runtime": "onnxruntime CPUExecutionProvider",
        "reference": "PyTorch eager fp32, attn_impl=math" + (", forward_tokens" if output == "tokens" else ""),
        "output": output,
        "atol": cfg.atol,
        "max_abs": worst,
        "passed": worst <= cfg.atol,
        "digits": "used" if any(ch["input"].startswith("digits") for ch in checks) else "not applicable",
        "checks": checks,
    }
    if not result["passed"]:
        def agree(ch):
            return f"top-1 agree {ch['top1_agree']:.3f}" if "top1_agree" in ch else f"k-NN agree {ch['knn_agree']:.3f}"

        lines = "; ".join(f"{ch['input']}: max abs {ch['max_abs']:.3e} (rel to scale {ch['max_rel_to_scale']:.2e}, "
                          f"cosine {ch['min_cosine']:.6f}, {agree(ch)})" for ch in checks)
        raise ExportError(
            f"ONNX Runtime disagrees with PyTorch beyond atol {cfg.atol:g}: worst max abs {worst:.3e}. {lines}. "
            "Nothing was written."
        )
    return result


def _verdict(verification: dict, report: LintReport | None) -> dict:
    return {
        "verified": bool(verification.get("passed")) if not verification.get("skipped") else None,
        "max_abs_vs_torch": verification.get("max_abs"),
        "lint_errors": len(report.errors) if report else None,
        "lint_warnings": len(report.warnings) if report else None,
    }


def _tensor_spec(name: str, dims: list, dynamic: bool, **extra) -> dict:
    spec = {"name": name, "dtype": "float32", "shape": dims,
            "dynamic_axes": {"0": "batch"} if dynamic else {}}
    spec.update(extra)
    return spec


def _build_manifest(model, source_desc, arch, cfg: ExportConfig, slim_info, verification, report, external,
                    graph: _GraphInfo):
    c = model.config
    lo, opt, hi = cfg.batch_bounds
    batch_dim = "batch" if cfg.dynamic else lo
    exported_cfg = c.replace(attn_impl="math" if cfg.attention == "decomposed" else "sdpa")
    pre = model.preprocessing
    return Manifest(
        model={"source": source_desc, "arch": arch, "config": exported_cfg.to_dict(), "params": count_params(model),
               "guessed": dict(model.guessed), "output": graph.output},
        labels=list(model.labels) if model.labels is not None else None,
        preprocessing=pre.to_dict() if pre is not None else None,
        inputs=[_tensor_spec(INPUT_NAME, [batch_dim, c.in_chans, c.img_size, c.img_size], cfg.dynamic,
                             layout="NCHW", normalized=True)],
        outputs=[_tensor_spec(graph.output, [batch_dim, *graph.dims], cfg.dynamic)],
        batch={"dynamic": cfg.dynamic, "min": lo, "opt": opt, "max": hi},
        export={
            "exporter": "torch.onnx.export(dynamo=True)",
            "opset": cfg.resolved_opset,
            "attention": cfg.attention,
            "layernorm": "LayerNormalization",
            "options": cfg.to_dict(),
            "simplify": slim_info,
            "external_data": external,
            "verification": verification,
            "lint": ({"tensorrt_version": report.tensorrt_version, "ok": report.ok,
                      "counts": report.to_dict()["counts"], "codes": sorted(report.codes())} if report else None),
        },
        versions=library_versions(),
    )


def _install(work: Path, outdir: Path, external: bool, force: bool) -> None:
    """Move the verified files from the work directory into ``outdir`` (data first, graph last)."""
    if external:
        install_file(work / DATA_FILE, outdir / DATA_FILE)
    install_file(work / MODEL_FILE, outdir / MODEL_FILE)
    stale = outdir / DATA_FILE
    if not external and stale.exists() and force:
        stale.unlink()


def _previous_manifest(outdir: Path) -> Manifest | None:
    if not Manifest.path_in(outdir).exists():
        return None
    try:
        return Manifest.load(outdir)
    except ManifestError:  # unreadable: nothing is known to be ours, so nothing is removed
        return None


def _remove_superseded(old: Manifest, new: Manifest, outdir: Path) -> list[str]:
    """After ``force`` replaced an export: remove what the old manifest recorded (precision graphs,
    engines, their fusion reports) and the new one does not, and an edgevit calibration cache
    made for another graph, so that OUTDIR holds what the new manifest lists. Other files stay."""
    from ..calibration.calibrate import CACHE_FORMAT
    from .quantize import CACHE_FILE

    keep = {MANIFEST_NAME} | {name for a in new.artifacts for name in (a.path, *a.external_data)}
    old_files = set()
    for art in old.artifacts:
        old_files.update((art.path, *art.external_data))
        report = art.extra.get("fusion_report")
        if isinstance(report, str) and Path(report).name == report:
            old_files.add((Path(art.path).parent / report).as_posix())
    stale = [name for name in sorted(old_files - keep) if (outdir / name).is_file()]
    cache = outdir / CACHE_FILE
    try:
        data = json.loads(cache.read_text())
        new_sha = new.artifact(precision="fp32", format="onnx").sha256
        if isinstance(data, dict) and data.get("format") == CACHE_FORMAT and data.get("graph_sha256") != new_sha:
            stale.append(CACHE_FILE)
    except (OSError, ValueError, ManifestError):
        pass
    removed = []
    for name in stale:
        with contextlib.suppress(OSError):
            (outdir / name).unlink()
            removed.append(name)
    return removed


__all__ = [
    "ATTENTION_FORMS", "DEFAULT_ATTENTION", "DEFAULT_OPSET", "OUTPUT_KINDS", "ExportConfig", "ExportResult",
    "canonicalize_gelu",
    "compare_logits", "export_onnx", "fuse_attention", "parse_batch",
]
