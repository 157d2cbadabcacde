"""TensorRT decisions as pure functions: no ``tensorrt`` import, fully tested on CPU.

Everything here is a function of version strings, device facts, manifest fields or the
engine inspector's JSON, so CI (which has no TensorRT and no GPU) tests every rule. The
calls into TensorRT itself live in :mod:`edgevit.tensorrt_api` and follow these rules.

* :func:`parse_version`, :func:`build_mode` -- which TensorRT versions are supported and
  whether a graph is built strongly typed or with precision flags (design.md §2);
* :func:`check_dla` -- refuse DLA where it cannot work;
* :func:`profile_from_manifest` -- the optimization profile (min/opt/max batch);
* :func:`fusion_report` -- which layers ran as fused attention, precision per layer group;
* :func:`check_realized_precision` -- never silently ship fp32 when less was asked for;
* :func:`check_engine_compat` -- refuse an engine built for another TensorRT/GPU;
* :func:`parse_tegra_release` -- the JetPack / L4T release of a Jetson.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass, field

from .errors import EdgeVitError

MIN_TENSORRT = (10, 0)
LOWER_PRECISIONS = ("fp16", "bf16", "int8", "fp8", "int4", "mixed")


class TensorRTError(EdgeVitError):
    """A TensorRT build or load cannot proceed (unsupported version, device, precision)."""


class EngineMismatchError(TensorRTError):
    """An engine was built for another TensorRT version or GPU; rebuild it on the target."""


# ------------------------------------------------------------------ versions
def parse_version(text: str) -> tuple[int, ...]:
    """``"10.3.0.30"`` -> ``(10, 3, 0, 30)``; a suffix like ``"10.3.0.post1"`` or ``"11.0.0rc1"`` is dropped."""
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"a TensorRT version looks like '10.3.0', got {text!r}")
    parts = []
    for piece in text.strip().split("."):
        m = re.match(r"\d+", piece)
        if not m:
            break
        parts.append(int(m.group()))
        if m.end() != len(piece):
            break
    if not parts:
        raise ValueError(f"a TensorRT version looks like '10.3.0', got {text!r}")
    return tuple(parts)


def check_supported(version: str) -> tuple[int, ...]:
    """The parsed version, or TensorRTError when it is older than 10.0."""
    v = parse_version(version)
    if v[:2] < MIN_TENSORRT:
        raise TensorRTError(
            f"TensorRT {version} is not supported: edgevit needs TensorRT >= 10.0 (JetPack 6 ships 10.3); "
            "upgrade TensorRT (desktop: pip install tensorrt --extra-index-url https://pypi.nvidia.com; "
            "Jetson: flash JetPack 6)"
        )
    return v


@dataclass(frozen=True)
class BuildMode:
    """How to build a graph: strongly typed (the graph's types are the truth) or weakly typed
    with precision ``flags`` (names of ``trt.BuilderFlag`` members)."""

    strongly_typed: bool
    flags: tuple[str, ...]
    reason: str

    def to_dict(self) -> dict:
        return {"strongly_typed": self.strongly_typed, "flags": list(self.flags), "reason": self.reason}


_FLAGS = {"fp16": ("FP16",), "bf16": ("BF16",)}


def build_mode(version: str, precision: str, has_qdq: bool) -> BuildMode:
    """The build mode for a graph of ``precision`` (manifest artifact precision) on TensorRT ``version``.

    * TensorRT >= 11: always strongly typed, no precision flags (11 removed weak typing).
    * TensorRT 10: graphs with Q/DQ nodes (int8, fp8, int4, or mixed Q/DQ) are built strongly
      typed; fp16 / bf16 cast graphs set the FP16 / BF16 flag; fp32 sets none.
    * int8/fp8 asked for without Q/DQ nodes: refused (implicit INT8 calibration is not used;
      write Q/DQ into the graph with edgevit's precision step) -- never a silent fp32 build.
    """
    v = check_supported(version)
    if precision not in ("fp32",) + LOWER_PRECISIONS:
        raise ValueError(f"precision must be one of {['fp32', *LOWER_PRECISIONS]}, got {precision!r}")
    if precision in ("int8", "fp8", "int4") and not has_qdq:
        raise TensorRTError(
            f"a {precision} build needs a graph with QuantizeLinear/DequantizeLinear nodes, and this ONNX has none; "
            f"make the {precision} graph with edgevit's precision step first (TensorRT would otherwise build fp32/fp16)"
        )
    if v[0] >= 11:
        return BuildMode(True, (), f"TensorRT {version}: always strongly typed; precision comes from the graph")
    if has_qdq or precision in ("int8", "fp8", "int4", "mixed"):
        return BuildMode(True, (), f"TensorRT {version}: Q/DQ (or mixed) graph built strongly typed")
    flags = _FLAGS.get(precision, ())
    return BuildMode(False, flags, f"TensorRT {version}: weakly typed, builder flags {list(flags) or 'none'} "
                                   f"matching the {precision} graph")


# ------------------------------------------------------------------ DLA
def check_dla(version: str, device: dict, core: int | None) -> None:
    """Refuse ``--dla-core`` where DLA cannot work. ``device``: ``{"name", "compute_capability",
    "dla_cores"}`` (``dla_cores`` from ``builder.num_DLA_cores``). ``core=None``: nothing to check."""
    if core is None:
        return
    if not isinstance(core, int) or core < 0:
        raise ValueError(f"--dla-core must be a non-negative integer, got {core!r}")
    v = parse_version(version)
    if v[:2] == (11, 0):
        raise TensorRTError(
            f"DLA is not available with TensorRT {version} (11.0 has no DLA support); build for the GPU "
            "(leave out --dla-core) or use JetPack 6's TensorRT 10.3"
        )
    cores = int(device.get("dla_cores") or 0)
    name = device.get("name") or "this device"
    if cores == 0:
        raise TensorRTError(
            f"{name} (compute capability {device.get('compute_capability')}) has no DLA cores "
            "(only Jetson AGX Orin, Orin NX and Xavier do; Orin Nano and desktop/data-center GPUs do not); "
            "leave out --dla-core"
        )
    if core >= cores:
        raise ValueError(f"--dla-core {core} does not exist on {name}: it has {cores} DLA core(s) (0..{cores - 1})")


# ------------------------------------------------------------------ optimization profile
def profile_from_manifest(batch: dict, override: tuple[int, int, int] | None = None) -> tuple[int, int, int]:
    """(min, opt, max) batch of the optimization profile.

    ``batch`` is the manifest's ``{"dynamic", "min", "opt", "max"}`` (the range the ONNX graph
    was exported for). ``override`` (``--batch MIN,OPT,MAX``) must lie inside that range.
    """
    if not batch or not all(k in batch for k in ("min", "opt", "max")):
        raise ValueError(f"the manifest's batch entry must hold min, opt and max, got {batch!r}; re-export the model")
    lo, opt, hi = int(batch["min"]), int(batch["opt"]), int(batch["max"])
    if override is None:
        return lo, opt, hi
    if len(override) != 3:
        raise ValueError(f"--batch must be MIN,OPT,MAX, got {override!r}")
    o_lo, o_opt, o_hi = (int(v) for v in override)
    if not 1 <= o_lo <= o_opt <= o_hi:
        raise ValueError(f"--batch must satisfy 1 <= MIN <= OPT <= MAX, got MIN={o_lo}, OPT={o_opt}, MAX={o_hi}")
    if not batch.get("dynamic", hi > lo) and (o_lo, o_hi) != (lo, hi):
        raise ValueError(f"the graph has a static batch of {lo}; --batch {o_lo},{o_opt},{o_hi} cannot change it "
                         f"(re-export with --batch MIN,OPT,MAX for a dynamic batch)")
    if o_lo < lo or o_hi > hi:
        raise ValueError(f"--batch {o_lo},{o_opt},{o_hi} lies outside the range the graph was exported for "
                         f"({lo}..{hi}); re-export with a wider --batch or choose bounds inside it")
    return o_lo, o_opt, o_hi


def check_batch_in_profile(batch: int, profile: tuple[int, int, int] | list[int], where: str = "engine") -> None:
    """DataError-style refusal of a batch outside the optimization profile."""
    from .errors import DataError

    lo, _, hi = profile
    if not lo <= batch <= hi:
        raise DataError(f"{where}: batch {batch} is outside the optimization profile {lo}..{hi}; "
                        f"split the input into batches of at most {hi} (or rebuild with --batch covering {batch})")


# ------------------------------------------------------------------ fusion report
_PRECISION_PATTERNS = [  # order matters: "bfloat16" before "float", "fp8" before "fp"
    ("fp8", re.compile(r"fp8|e4m3|e5m2")),
    ("int4", re.compile(r"int4")),
    ("bf16", re.compile(r"bf16|bfloat16")),
    ("int8", re.compile(r"int8")),
    ("fp16", re.compile(r"fp16|half")),
    ("fp32", re.compile(r"fp32|float")),
    ("int32", re.compile(r"int32")),
    ("int64", re.compile(r"int64")),
    ("bool", re.compile(r"bool")),
]
_ATTN_KERNEL = re.compile(r"mha|fmha|flash_?attn|flash_?attention|_attention_|attention_kernel", re.I)
_MYELIN_REGION = re.compile(r"^\{?ForeignNode\[", re.I)   # a whole Myelin region (names show its first...last op)
_MYELIN_KERNEL = re.compile(r"__myl_|_myl\d", re.I)       # one kernel Myelin generated inside a region
_REGION_ATTN_HINT = re.compile(r"softmax|attn|attention|mha", re.I)
_KERNEL_ATTN_HINT = re.compile(r"softmax|mha", re.I)
_GROUP = re.compile(r"(blocks|layers?|features|encoder[./_]layer)[./_](\d+)", re.I)


def datatype_precision(text: str | None) -> str | None:
    """``"Row major linear FP32"`` -> ``"fp32"``, ``"Half"`` -> ``"fp16"``, ``"Int8"`` -> ``"int8"``."""
    if not text:
        return None
    low = str(text).lower()
    for name, pattern in _PRECISION_PATTERNS:
        if pattern.search(low):
            return name
    return None


def _tensor_type(t) -> str | None:
    if not isinstance(t, dict):
        return None
    return t.get("Format/Datatype") or t.get("Datatype") or t.get("Format")


def layer_group(name: str) -> str:
    """``"/blocks.3/attn/MatMul"`` -> ``"blocks.3"``; names without a block index -> ``"other"``."""
    m = _GROUP.search(name or "")
    if not m:
        return "other"
    return f"{m.group(1).lower().replace('/', '.').replace('_', '.')}.{int(m.group(2))}"


def _blocks(text: str) -> list[int]:
    return sorted({int(m.group(2)) for m in _GROUP.finditer(text or "") if m.group(1).lower() == "blocks"})


@dataclass
class FusionReport:
    """What the engine inspector says about an engine (see :func:`fusion_report`)."""

    detail: str  # "detailed" or "names_only"
    num_layers: int
    attention: list[dict] = field(default_factory=list)
    myelin_regions: int = 0
    precision_counts: dict = field(default_factory=dict)
    precision_by_group: dict = field(default_factory=dict)

    @property
    def fused_attention_blocks(self) -> list[int]:
        return sorted({b for a in self.attention for b in a["blocks"]})

    def to_dict(self) -> dict:
        return {"detail": self.detail, "num_layers": self.num_layers, "attention": self.attention,
                "fused_attention_layers": len(self.attention),
                "fused_attention_blocks": self.fused_attention_blocks, "myelin_regions": self.myelin_regions,
                "precision_counts": self.precision_counts, "precision_by_group": self.precision_by_group}

    def summary(self) -> str:
        att = (f"{len(self.attention)} fused attention layer(s)"
               + (f" covering blocks {self.fused_attention_blocks}" if self.fused_attention_blocks else ""))
        prec = ", ".join(f"{k} {v}" for k, v in sorted(self.precision_counts.items())) or "unknown (names only)"
        return f"{self.num_layers} layers ({self.detail}); {att}; {self.myelin_regions} Myelin region(s); precision: {prec}"


def fusion_report(info) -> FusionReport:
    """Parse ``IEngineInspector.get_engine_information(LayerInformationFormat.JSON)``.

    ``info``: the JSON text or the decoded dict ``{"Layers": [...], "Bindings": [...]}``. At
    ProfilingVerbosity.DETAILED each layer is an object (Name, LayerType, Inputs/Outputs with
    "Format/Datatype", TacticName, Metadata); at LAYER_NAMES_ONLY each is a name string. A layer
    counts as fused attention when its name/tactic/type names an MHA or attention kernel
    (``_gemm_mha_v2``, ``fmha``, an ``IAttention`` layer), when it is a Myelin region
    (``{ForeignNode[...]}``, LayerType "Myelin") whose name/metadata mentions Softmax or attention,
    or a Myelin kernel (``__myl_...``) whose name mentions Softmax or MHA. Names only show a
    region's first and last op, so a names-only report is a lower bound.
    Precision per layer: the weights' type when present, else its first input's, else its first output's.
    """
    if isinstance(info, (str, bytes)):
        try:
            info = json.loads(info)
        except ValueError as exc:
            raise ValueError(f"engine information is not JSON ({exc})") from None
    if not isinstance(info, dict) or not isinstance(info.get("Layers"), list):
        raise ValueError("engine information must be a JSON object with a 'Layers' list "
                         "(IEngineInspector.get_engine_information(LayerInformationFormat.JSON))")
    layers = info["Layers"]
    detailed = any(isinstance(layer, dict) for layer in layers)
    report = FusionReport("detailed" if detailed else "names_only", len(layers))
    counts: Counter = Counter()
    groups: dict[str, Counter] = {}
    for layer in layers:
        if isinstance(layer, dict):
            name = str(layer.get("Name", ""))
            ltype = str(layer.get("LayerType", ""))
            text = " ".join(str(layer.get(k, "")) for k in ("Name", "TacticName", "Metadata", "ParameterType"))
            weights = layer.get("Weights")
            precision = (datatype_precision(weights.get("Type")) if isinstance(weights, dict) else None)
            ins, outs = layer.get("Inputs") or [], layer.get("Outputs") or []
            precision = (precision or (datatype_precision(_tensor_type(ins[0])) if ins else None)
                         or (datatype_precision(_tensor_type(outs[0])) if outs else None))
        else:
            name, ltype, text, precision = str(layer), "", str(layer), None
        region = bool(_MYELIN_REGION.search(name)) or ltype.lower() == "myelin"
        kernel = bool(_MYELIN_KERNEL.search(name))
        report.myelin_regions += int(region)
        tactic = str(layer.get("TacticName", "")) if isinstance(layer, dict) else ""
        kind = None
        if "attention" in ltype.lower():
            kind = "iattention"
        elif _ATTN_KERNEL.search(name) or _ATTN_KERNEL.search(tactic):
            kind = "fused_mha"
        elif (region and _REGION_ATTN_HINT.search(text)) or (kernel and _KERNEL_ATTN_HINT.search(text)):
            kind = "myelin"
        if kind:
            report.attention.append({"layer": name, "kind": kind, "layer_type": ltype or None,
                                     "blocks": _blocks(text), "precision": precision})
        if precision:
            counts[precision] += 1
            groups.setdefault(layer_group(text), Counter())[precision] += 1
    report.precision_counts = dict(counts)
    report.precision_by_group = {g: dict(c) for g, c in sorted(groups.items())}
    return report


def check_realized_precision(report: FusionReport, requested: str) -> None:
    """TensorRTError when ``requested`` is a lower precision but no layer ran below fp32.

    Only a detailed report can prove this; a names-only report passes (nothing to check).
    """
    if requested == "fp32" or report.detail != "detailed" or not report.precision_counts:
        return
    low = {p: n for p, n in report.precision_counts.items() if p in ("fp16", "bf16", "int8", "fp8", "int4")}
    if not low:
        raise TensorRTError(
            f"a {requested} engine was asked for, but every layer of the built engine runs in "
            f"{sorted(report.precision_counts)} (no fp16/bf16/int8/fp8 layer); refusing to write an fp32 engine "
            "labelled as lower precision. Check that the GPU supports the precision and the graph carries it"
        )


# ------------------------------------------------------------------ engine compatibility
HW_COMPAT_LEVELS = ("none", "ampere_plus", "same_compute_capability")


def check_engine_compat(recorded: dict, current: dict, engine: str = "engine") -> None:
    """Refuse to load an engine built for another TensorRT version or GPU.

    ``recorded``: the engine's manifest entry (``tensorrt_version``, ``gpu_name``,
    ``compute_capability``, ``version_compatible``, ``hardware_compatibility_level``);
    ``current``: the same facts of this machine. Version-compatible engines may run on a newer
    TensorRT of the same major version; a hardware-compatibility level relaxes the GPU check.
    """
    fix = (f"rebuild the engine on this target: edgevit build <model.onnx|outdir> -o {engine} --force "
           "(engines are specific to the TensorRT version and GPU they were built with)")
    built_v, here_v = recorded.get("tensorrt_version"), current.get("tensorrt_version")
    if built_v and here_v:
        b, h = parse_version(built_v), parse_version(here_v)
        if recorded.get("version_compatible"):
            if h[0] != b[0] or h[:3] < b[:3]:
                raise EngineMismatchError(
                    f"{engine} is version-compatible from TensorRT {built_v} within major version {b[0]}, "
                    f"but this machine has TensorRT {here_v}; {fix}")
        elif b[:3] != h[:3]:
            raise EngineMismatchError(f"{engine} was built with TensorRT {built_v}, this machine has {here_v}; {fix}")
    level = recorded.get("hardware_compatibility_level") or "none"
    built_cc, here_cc = recorded.get("compute_capability"), current.get("compute_capability")
    if level == "ampere_plus":
        if here_cc is not None and parse_version(str(here_cc)) < (8, 0):
            raise EngineMismatchError(
                f"{engine} was built for Ampere and newer GPUs (compute capability >= 8.0), this GPU has {here_cc}; {fix}")
        return
    if built_cc is not None and here_cc is not None and str(built_cc) != str(here_cc):
        raise EngineMismatchError(
            f"{engine} was built for compute capability {built_cc} ({recorded.get('gpu_name')}), this GPU "
            f"({current.get('gpu_name')}) has {here_cc}; {fix}")
    if level == "same_compute_capability":
        return
    built_gpu, here_gpu = recorded.get("gpu_name"), current.get("gpu_name")
    if built_gpu and here_gpu and built_gpu != here_gpu:
        raise EngineMismatchError(f"{engine} was built on {built_gpu}, this GPU is {here_gpu}; {fix}")


# ------------------------------------------------------------------ Jetson
TEGRA_RELEASE = "/etc/nv_tegra_release"
# L4T release -> JetPack (NVIDIA's JetPack archive); prefixes, longest match wins.
_JETPACK = {"36.4.3": "6.2", "36.4": "6.1", "36.3": "6.0", "35.6": "5.1.4", "35.5": "5.1.3", "35.4": "5.1.2",
            "35.3": "5.1.1", "35.2": "5.1", "35.1": "5.0.2"}


def parse_tegra_release(text: str) -> dict | None:
    """``/etc/nv_tegra_release`` text -> ``{"l4t": "36.3.0", "jetpack": "6.0", "board": ...}``; None if not L4T.

    The file's first line reads ``# R36 (release), REVISION: 3.0, GCID: ..., BOARD: generic, ...``.
    """
    m = re.search(r"#\s*R(\d+)\s*\(release\),\s*REVISION:\s*([\d.]+)", text or "")
    if not m:
        return None
    l4t = f"{m.group(1)}.{m.group(2)}"
    if l4t.count(".") == 1:
        l4t += ".0"
    board = re.search(r"BOARD:\s*([^,\s]+)", text)
    jetpack = None
    for prefix in sorted(_JETPACK, key=len, reverse=True):
        if l4t == prefix or l4t.startswith(prefix + "."):
            jetpack = _JETPACK[prefix]
            break
    return {"l4t": l4t, "jetpack": jetpack, "board": board.group(1) if board else None}


def read_tegra_release(path: str = TEGRA_RELEASE) -> dict | None:
    """:func:`parse_tegra_release` of the file, or None when it does not exist (not a Jetson)."""
    try:
        with open(path) as fh:
            return parse_tegra_release(fh.read())
    except OSError:
        return None


# ------------------------------------------------------------------ install advice
INSTALL_ADVICE = (
    "TensorRT is not installed in this Python environment. Install it:\n"
    "  Jetson (JetPack 6): sudo apt install nvidia-jetpack   (or just python3-libnvinfer), then use the\n"
    "    system Python's TensorRT from a venv made with: python3 -m venv --system-site-packages .venv\n"
    "  Desktop / data-center GPU: pip install tensorrt --extra-index-url https://pypi.nvidia.com\n"
    "    or: pip install 'edgevit[trt]' --extra-index-url https://pypi.nvidia.com"
)
