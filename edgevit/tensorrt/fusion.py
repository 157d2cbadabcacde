"""The fusion report: what TensorRT's engine inspector says an engine runs, per layer and per block.

Input: ``IEngineInspector.get_engine_information(LayerInformationFormat.JSON)`` (what
``trtexec --exportLayerInfo`` writes), either ``{"Layers": [...], "Bindings": [...]}`` or the bare
list of layers. At ProfilingVerbosity.DETAILED (edgevit builds with it) each layer is an object:
``Name``, ``LayerType``, ``Inputs``/``Outputs`` (with ``Format/Datatype``; TensorRT 11 may write
``DataType`` / ``Datatype``), ``TacticName`` (the kernel) and ``Metadata``, which names the ONNX
nodes the layer runs: ``[ONNX Layer: blocks.0.attn.softmax][ONNX Layer: blocks.0.attn.matmul_av]``
(trtexec ``--verbose`` dumps may drop the repeated ``ONNX Layer:`` prefix). At LAYER_NAMES_ONLY
each layer is just its name.

Fused attention is decided on the kernel, never on names a user chose. A block's attention is

* **fused** when one kernel runs it: the layer's ``TacticName`` names a fused-attention kernel
  (:func:`is_fused_kernel`: ``fmha``, ``flash_attention``, ``kgen_mha`` or a word-bounded ``mha``
  anywhere, as NVIDIA's TensorRT 11.1 layer-info reader does -- ``MHA_TOKENS`` and ``looks_like_mha``
  in ``.agents/skills/trt-perf-analysis/scripts/trt_perf/data.py``, NVIDIA/TensorRT -- so
  ``sm90_fmha_v2_flash_attention_...`` and ``_gemm_mha_v2_...`` count), or it is an IAttention layer
  (``LayerType`` "Attention"), or, whatever the kernel's name, the layer's ``Metadata`` covers the whole
  chain of one block (``matmul_qk``, ``softmax`` and ``matmul_av``): a generated ``__myl_`` kernel can
  run fused attention under a name that says nothing (data.py warns that attention may hide "behind
  generated kernel names");
* **not fused** when a kernel that is none of those runs the block's Softmax without the whole
  chain (a ``__myl_...Exp...`` softmax kernel between two GEMMs), and a GEMM whose *node* names
  contain "mha" is a GEMM;
* **unknown** otherwise (the Softmax is inside a Myelin region, or nowhere in the records): never
  reported as "not fused".

A names-only layer ``Name`` carries the user's node names, so there only the kernel prefixes
(:data:`FUSED_KERNEL_PREFIXES`) count.

Each kernel maps to edgevit's blocks through the ONNX node names in its ``Metadata`` (edgevit
names nodes ``blocks.N.attn.softmax`` etc., :mod:`edgevit.export.names`), so the report says per
block: fused or not, and by which kernel.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass, field

from ..formats import EXPORTED, PRECISION_TABLE

FUSED_KERNEL_PREFIXES = ("_gemm_mha_v", "fmha", "_fmha", "flash", "_flash")
"""Prefixes of fused-attention kernels that Myelin names layers after (names-only reports)."""
FUSED_KERNEL_TOKENS = ("fmha", "flash_attention", "flashattention", "kgen_mha")
"""Fused-attention words anywhere in a tactic name (NVIDIA's trt_perf/data.py, TensorRT 11.1:
``MHA_TOKENS``, ``is_obvious_attention_fusion``), besides a word-bounded ``mha``."""
_MHA_WORD = re.compile(r"(^|[^a-z0-9])mha([^a-z0-9]|$)")  # data.py's looks_like_mha
ATTENTION_LAYER_TYPES = ("attention", "iattention", "attentionlayer")
TENSOR_TYPE_KEYS = ("Format/Datatype", "DataType", "Datatype", "Format")
"""Keys of a tensor's type in inspector JSON: TensorRT 10's ``Format/Datatype``, then the names
TensorRT 11's detailed output may use."""

_OTHER_TYPES = [("int32", re.compile(r"int32")), ("int64", re.compile(r"int64")), ("bool", re.compile(r"bool"))]
"""Inspector types of no precision row."""


def _precision_patterns() -> list[tuple[str, re.Pattern]]:
    """(name, pattern) per type text: each precision row's ``trt_names``, the exported (fp32) row's last
    (its "float" is in "bfloat16"), then the non-float types."""
    rows = sorted((p for p in PRECISION_TABLE if p.trt_names), key=lambda p: p.graph == EXPORTED)
    return [(p.name, re.compile("|".join(map(re.escape, p.trt_names)))) for p in rows] + _OTHER_TYPES
_MYELIN_REGION = re.compile(r"^\{?ForeignNode\[", re.I)   # a whole Myelin (or DLA) region: first...last op
_MYELIN_KERNEL = re.compile(r"^__myl_", re.I)             # one kernel Myelin generated inside a region
_GROUP = re.compile(r"(blocks|layers?|features|encoder[./_]layer)[./_](\d+)", re.I)
_SOFTMAX = re.compile(r"softmax", re.I)
_CHAIN = (re.compile(r"matmul_qk", re.I), _SOFTMAX, re.compile(r"matmul_av", re.I))  # edgevit's names (export.names)
_ATTN_NODE = re.compile(r"attn|attention|softmax|mha|matmul_qk|matmul_av", re.I)
_DLA_TRANSFER = re.compile(r"\b(to|from) nvm$|copy finish$", re.I)


def datatype_precision(text: str | None) -> str | None:
    """``"Row major linear FP32"`` -> ``"fp32"``, ``"Half"`` -> ``"fp16"``, ``"Int8"`` -> ``"int8"``."""
    if not text:
        return None
    low = str(text).lower()
    for name, pattern in _precision_patterns():
        if pattern.search(low):
            return name
    return None


def tensor_type(t) -> str | None:
    """The type text of one inspector tensor record, whichever key this TensorRT wrote."""
    if not isinstance(t, dict):
        return None
    return next((t[k] for k in TENSOR_TYPE_KEYS if t.get(k)), None)


def layer_group(name: str) -> str:
    """``"/blocks.3/attn/MatMul"`` -> ``"blocks.3"``; names without a block index -> ``"other"``."""
    m = _GROUP.search(name or "")
    if not m:
        return "other"
    return f"{m.group(1).lower().replace('/', '.').replace('_', '.')}.{int(m.group(2))}"


def metadata_nodes(metadata) -> list[str]:
    """ONNX node names in a layer's ``Metadata``:
    ``"[ONNX Layer: a][ONNX Layer: b]"`` and ``"[ONNX Layer: a][b][c]"`` -> ``["a", "b", ...]``."""
    if not metadata:
        return []
    out = []
    for item in re.findall(r"\[([^\[\]]*)\]", str(metadata)):
        item = re.sub(r"^\s*ONNX Layer:\s*", "", item).strip()
        if item:
            out.append(item)
    return out


def _names_only_nodes(name: str) -> list[str]:
    """Node names a names-only layer shows: ``"a + b"``; ``{ForeignNode[first...last]}`` -> first, last."""
    m = re.match(r"^\{?ForeignNode\[(.*)\]\}?$", name)
    if m:
        return [p for p in m.group(1).split("...") if p]
    return [p.strip() for p in name.split(" + ") if p.strip()]


def is_fused_kernel(kernel: str, tactic: bool = False) -> bool:
    """Whether a kernel is a fused-attention kernel. ``tactic``: ``kernel`` is a ``TacticName`` (TensorRT's
    own name), matched on :data:`FUSED_KERNEL_TOKENS` and a word-bounded ``mha`` anywhere; otherwise it is a
    names-only layer name, which may hold user node names, matched on :data:`FUSED_KERNEL_PREFIXES` only."""
    k = (kernel or "").strip().lower()
    if k.startswith(FUSED_KERNEL_PREFIXES):
        return True
    return tactic and (any(t in k for t in FUSED_KERNEL_TOKENS) or bool(_MHA_WORD.search(k)))


def covers_attention_chain(nodes: list[str]) -> bool:
    """Whether a kernel's ONNX nodes hold one block's whole QK-softmax-AV chain."""
    return all(any(p.search(n) for n in nodes) for p in _CHAIN)


def _block_key(node: str) -> str | None:
    group = layer_group(node)
    return group if group != "other" else None


@dataclass
class FusionReport:
    """What the engine inspector says about an engine (see :func:`fusion_report`)."""

    detail: str  # "detailed" or "names_only"
    num_layers: int
    attention: list[dict] = field(default_factory=list)  # the fused-attention kernels
    blocks: dict = field(default_factory=dict)  # "blocks.N" -> {"fused", "kernel", "tactic", "unfused_kernels"}
    myelin_regions: int = 0
    precision_counts: dict = field(default_factory=dict)
    precision_by_group: dict = field(default_factory=dict)
    placement: dict = field(default_factory=dict)  # {"dla": [...], "gpu": [...], "transfer": n} of a DLA build

    @property
    def fused_attention_blocks(self) -> list[int]:
        return sorted(int(k.rsplit(".", 1)[1]) for k, v in self.blocks.items()
                      if v["fused"] and k.startswith("blocks."))

    @property
    def unfused_attention_blocks(self) -> list[int]:
        return sorted(int(k.rsplit(".", 1)[1]) for k, v in self.blocks.items()
                      if v["fused"] is False and k.startswith("blocks."))

    @property
    def unknown_attention_blocks(self) -> list[int]:
        """Blocks whose attention no kernel shows fused or split (e.g. inside a Myelin region)."""
        return sorted(int(k.rsplit(".", 1)[1]) for k, v in self.blocks.items()
                      if v["fused"] is None and k.startswith("blocks."))

    def to_dict(self) -> dict:
        return {"detail": self.detail, "num_layers": self.num_layers, "attention": self.attention,
                "fused_attention_layers": len(self.attention),
                "fused_attention_blocks": self.fused_attention_blocks,
                "unfused_attention_blocks": self.unfused_attention_blocks,
                "unknown_attention_blocks": self.unknown_attention_blocks,
                "blocks": self.blocks, "myelin_regions": self.myelin_regions,
                "precision_counts": self.precision_counts, "precision_by_group": self.precision_by_group,
                "placement": self.placement}

    def summary(self) -> str:
        att = (f"{len(self.attention)} fused attention kernel(s)"
               + (f" covering blocks {self.fused_attention_blocks}" if self.fused_attention_blocks else ""))
        if self.unfused_attention_blocks:
            att += f"; attention NOT fused in blocks {self.unfused_attention_blocks}"
        if self.unknown_attention_blocks:
            att += (f"; attention unknown in blocks {self.unknown_attention_blocks} "
                    "(no kernel shows it fused or split; it may hide inside a Myelin region)")
        prec = ", ".join(f"{k} {v}" for k, v in sorted(self.precision_counts.items())) or "unknown (names only)"
        return f"{self.num_layers} layers ({self.detail}); {att}; {self.myelin_regions} Myelin region(s); precision: {prec}"


def _layers(info) -> list:
    if isinstance(info, (str, bytes)):
        try:
            info = json.loads(info)
        except ValueError as exc:
            raise ValueError(f"engine information is not JSON ({exc})") from None
    if isinstance(info, list):
        return info
    if not isinstance(info, dict) or not isinstance(info.get("Layers"), list):
        raise ValueError("engine information must be a JSON object with a 'Layers' list, or that list "
                         "(IEngineInspector.get_engine_information(LayerInformationFormat.JSON))")
    return info["Layers"]


def _precision(layer: dict) -> str | None:
    """The weights' type when present, else the first input's, else the first output's."""
    weights = layer.get("Weights")
    precision = datatype_precision(weights.get("Type")) if isinstance(weights, dict) else None
    ins, outs = layer.get("Inputs") or [], layer.get("Outputs") or []
    return (precision or (datatype_precision(tensor_type(ins[0])) if ins else None)
            or (datatype_precision(tensor_type(outs[0])) if outs else None))


def fusion_report(info, dla: bool = False) -> FusionReport:
    """Parse inspector JSON (text, dict or list) into a :class:`FusionReport`.

    ``dla``: the engine was built for DLA; :attr:`FusionReport.placement` then lists the layers
    that run on DLA (``LayerType`` naming DLA, or a ``{ForeignNode[...]}`` region that is not a
    Myelin one) and those left on the GPU.
    """
    layers = _layers(info)
    detailed = any(isinstance(layer, dict) for layer in layers)
    report = FusionReport("detailed" if detailed else "names_only", len(layers))
    counts: Counter = Counter()
    groups: dict[str, Counter] = {}
    blocks: dict[str, dict] = {}
    placement = {"dla": [], "gpu": [], "transfer": 0}
    for layer in layers:
        if isinstance(layer, dict):
            name = str(layer.get("Name", ""))
            ltype = str(layer.get("LayerType", ""))
            tactic = str(layer.get("TacticName") or "")
            nodes = metadata_nodes(layer.get("Metadata")) or _names_only_nodes(name)
            precision = _precision(layer)
        else:
            name, ltype, tactic, precision = str(layer), "", "", None
            nodes = _names_only_nodes(name)
        region = bool(_MYELIN_REGION.search(name))
        report.myelin_regions += int(region and "dla" not in ltype.lower())
        layer_blocks = sorted({b for b in map(_block_key, nodes) if b})
        chain = set() if region else {b for b in layer_blocks
                                      if covers_attention_chain([n for n in nodes if _block_key(n) == b])}
        kind = ("iattention" if ltype.lower() in ATTENTION_LAYER_TYPES
                # the tactic on TensorRT's tokens; the layer name (user node names, or a Myelin kernel's
                # generated name) on the kernel prefixes only
                else "fused_mha" if is_fused_kernel(tactic, tactic=True) or is_fused_kernel(name)
                else "chain" if chain else None)  # "chain": a kernel of any name running a whole QK-softmax-AV
        fused = kind is not None
        if fused:
            report.attention.append({
                "layer": name, "kind": kind,
                "tactic": tactic or None, "layer_type": ltype or None, "onnx_nodes": nodes,
                "blocks": [int(b.rsplit(".", 1)[1]) for b in layer_blocks if b.startswith("blocks.")],
                "groups": layer_blocks,
                "precision": precision})
        for b in layer_blocks:
            attn_nodes = [n for n in nodes if _block_key(n) == b and _ATTN_NODE.search(n)]
            if not attn_nodes:
                continue
            entry = blocks.setdefault(b, {"fused": None, "kernel": None, "tactic": None, "unfused_kernels": []})
            if fused and (kind != "chain" or b in chain):
                entry.update(fused=True, kernel=name, tactic=tactic or None)
            elif any(_SOFTMAX.search(n) for n in attn_nodes) and not region:
                entry["unfused_kernels"].append(name)  # the softmax runs in its own kernel
                if entry["fused"] is not True:
                    entry["fused"] = False
        if dla:
            if _DLA_TRANSFER.search(name):
                placement["transfer"] += 1
            elif "dla" in ltype.lower() or (region and ltype.lower() != "myelin"):
                placement["dla"].append(name)
            else:
                placement["gpu"].append(name)
        if precision:
            counts[precision] += 1
            groups.setdefault(layer_group(" ".join(nodes) or name), Counter())[precision] += 1
    report.blocks = dict(sorted(blocks.items(), key=lambda kv: (kv[0].rsplit(".", 1)[0], int(kv[0].rsplit(".", 1)[1]))))
    report.precision_counts = dict(counts)
    report.precision_by_group = {g: dict(c) for g, c in sorted(groups.items())}
    report.placement = placement if dla else {}
    return report
