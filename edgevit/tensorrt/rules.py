"""TensorRT decisions as pure functions: no ``tensorrt`` import, every rule tested on CPU.

Each is a function of version strings, device facts, manifest fields or graph facts, so the
tests (no TensorRT, no GPU) check every rule; :mod:`edgevit.tensorrt.build` and
:mod:`edgevit.tensorrt.session` call TensorRT as these rules say.

* :func:`parse_version`, :func:`at_least` -- versions (``at_least`` is the one version guard the
  TensorRT calls use);
* :func:`build_mode` -- strongly typed by default on every version; ``--weakly-typed`` only on 10;
* :func:`check_dla` -- refuse DLA where this TensorRT, board or graph cannot use it; :func:`check_dla_profile`,
  :func:`check_dla_graph` -- before building; :func:`dla_build_mode` -- trtexec's DLA flags on TensorRT 10;
* :func:`hardware_level_name` -- the ``trt.HardwareCompatibilityLevel`` member a level needs;
  :func:`check_hardware_compat_builder` -- the GPU that builds it; :func:`host_platform` -- OS and CPU;
* :func:`profile_from_manifest`, :func:`check_batch_in_profile` -- the optimization profile;
* :func:`check_realized_precision` -- never ship fp32 labelled as less;
* :func:`check_engine_compat` -- refuse an engine built for another TensorRT, GPU or CUDA;
* :func:`check_cuda_python` -- cuda-python's CUDA major (major.minor on a Jetson) against the driver's and
  TensorRT's.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..errors import DataError, EngineMismatchError, TensorRTError
from ..formats import BASE_PRECISION, EXPORTED, FP16, PRECISION_TABLE, precision_names
from ..formats import precision as lookup
from ..specs import BatchRange, check_batch_bounds
from .record import EngineRecord

MIN_TENSORRT = (10, 0)


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


def at_least(version: str, *parts: int) -> bool:
    """Whether ``version`` (a ``trt.__version__``) is at least ``parts``: ``at_least(v, 10, 9)``.

    The version guard around every TensorRT name that not all supported versions have
    (tests/tensorrt's API walker recognises ``if at_least(...)`` / ``if not at_least(...)``).
    """
    have = parse_version(version)
    want = tuple(parts)
    return have + (0,) * max(0, len(want) - len(have)) >= want


def check_supported(version: str) -> tuple[int, ...]:
    """The parsed version, or TensorRTError when it is older than 10.0."""
    v = parse_version(version)
    if v[:2] < MIN_TENSORRT:
        raise TensorRTError(
            f"TensorRT {version} is not supported: edgevit needs TensorRT >= 10.0 (JetPack 6 ships 10.3); "
            "upgrade TensorRT (desktop: pip install 'edgevit[trt-cu12]' --extra-index-url https://pypi.nvidia.com; "
            "Jetson: flash JetPack 6)"
        )
    return v


# ------------------------------------------------------------------ build mode
@dataclass(frozen=True)
class BuildMode:
    """How to build a graph: strongly typed (the graph's types are the truth) or weakly typed
    with precision ``flags`` (names of ``trt.BuilderFlag`` members, TensorRT 10 only)."""

    strongly_typed: bool
    flags: tuple[str, ...]
    reason: str
    dla: bool = False  # built for DLA (on TensorRT 10: trtexec's DLA flags, :func:`dla_build_mode`)

    def to_dict(self) -> dict:
        return {"strongly_typed": self.strongly_typed, "flags": list(self.flags), "reason": self.reason,
                "dla": self.dla}


def weak_flags() -> dict[str, tuple[str, ...]]:
    """Plain float precision -> the ``trt.BuilderFlag`` names of its weakly typed build (its row's ``trt_flag``)."""
    return {p.name: (p.trt_flag,) if p.trt_flag else () for p in PRECISION_TABLE if p.float}


def build_mode(version: str, precision: str, has_qdq: bool, weakly_typed: bool = False,
               dla: bool = False) -> BuildMode:
    """The build mode for a graph of ``precision`` (manifest artifact precision) on TensorRT ``version``.

    * Default, every version: strongly typed, no precision flags. edgevit's graphs carry their
      types (fp32 islands such as Softmax/LayerNorm in an fp16 graph); with the FP16 flag TensorRT
      may run them in fp16 anyway (its MHA fusion has been reported to ignore explicit Casts), and
      weak typing is deprecated from TensorRT 10.12 and gone in 11.
    * ``weakly_typed=True`` (``--weakly-typed``): TensorRT 10 only, for an fp32/fp16/bf16 graph
      without Q/DQ: the FP16 / BF16 builder flag of the graph's precision, none for fp32.
    * int8/fp8/int4 asked for without Q/DQ nodes: refused (implicit INT8 calibration is not
      used) -- never a silent fp32 build.
    * ``dla=True`` (``--dla-core``) on TensorRT 10: :func:`dla_build_mode`, trtexec's DLA build.
    """
    v = check_supported(version)
    row = lookup(precision)
    if row.quantized and not has_qdq:
        raise TensorRTError(
            f"a {precision} build needs a graph with QuantizeLinear/DequantizeLinear nodes, and this ONNX has none; "
            f"make the {precision} graph with edgevit's precision step first (TensorRT would otherwise build fp32/fp16)"
        )
    if dla and v[0] < 11:
        return dla_build_mode(version, has_qdq)
    if not weakly_typed:
        return BuildMode(True, (), f"TensorRT {version}: strongly typed; every precision comes from the graph", dla=dla)
    if v[0] >= 11:
        raise ValueError(f"--weakly-typed needs TensorRT 10: TensorRT {version} builds strongly typed only; "
                         "leave out --weakly-typed")
    if has_qdq or not row.float:
        raise ValueError(f"--weakly-typed applies to fp32/fp16/bf16 graphs without Q/DQ nodes; this {precision} "
                         "graph is built strongly typed: leave out --weakly-typed")
    flags = weak_flags()[precision]
    return BuildMode(False, flags, f"TensorRT {version}: weakly typed (--weakly-typed), builder flags "
                                   f"{list(flags) or 'none'} matching the {precision} graph")


DLA_FLAGS_TENSORRT_10 = ("FP16", "PREFER_PRECISION_CONSTRAINTS")
"""``trt.BuilderFlag`` names of a DLA build on TensorRT 10 (``INT8`` added for a Q/DQ graph), as trtexec sets
them: NVIDIA/TensorRT v10.3.0 ``samples/common/sampleEngines.cpp`` ``setupNetworkAndConfig``, under
``if (sys.DLACore != -1)``: ``setDefaultDeviceType(kDLA)``, ``setDLACore``, ``setFlag(kPREFER_PRECISION_CONSTRAINTS)``,
``kGPU_FALLBACK`` with ``--allowGPUFallback``, and ``kFP16`` unless ``--int8`` (an int8 DLA build is
``trtexec --int8 --fp16``: NVIDIA's DLA docs and cuDLA samples pass both, so the layers left unquantized run in
FP16 on DLA). The network is created without ``kSTRONGLY_TYPED`` (trtexec sets it only for ``--stronglyTyped``).
NVIDIA documents strongly typed DLA networks only from TensorRT 11.4.1 ("Strongly Typed Networks for DLA",
docs.nvidia.com/deeplearning/tensorrt/11.4.1/inference-library/dla-strongly-typed-networks.html); 11.x has no
precision flags, so a DLA build there is strongly typed like every other."""


def dla_flags(has_qdq: bool) -> tuple[str, ...]:
    """The builder flags of a TensorRT 10 DLA build (:data:`DLA_FLAGS_TENSORRT_10`, ``INT8`` first for Q/DQ)."""
    return ("INT8", *DLA_FLAGS_TENSORRT_10) if has_qdq else DLA_FLAGS_TENSORRT_10


def dla_build_mode(version: str, has_qdq: bool) -> BuildMode:
    """A DLA build on TensorRT 10 (10.0-10.7 have DLA): weakly typed with :func:`dla_flags`, as trtexec builds
    DLA; recorded in the engine record's ``build_mode`` with ``"dla": True``."""
    flags = dla_flags(has_qdq)
    return BuildMode(False, flags, f"TensorRT {version}: DLA build as trtexec 10.3 makes it (samples/common/"
                                   f"sampleEngines.cpp): weakly typed, builder flags {list(flags)}; NVIDIA "
                                   "documents strongly typed DLA builds only from TensorRT 11.4.1", dla=True)


# ------------------------------------------------------------------ DLA
DLA_PRECISIONS = precision_names(lambda p: p.dla)
"""Graph precisions DLA can run, their rows' ``dla`` (DLA runs FP16 and INT8 layers only; trtexec forces FP16
for DLA)."""


def dla_support(version: str, jetson: dict | None) -> str | None:
    """Why this TensorRT cannot use DLA on this device (None when it can), by NVIDIA's support matrix:

    ========================  ==========================================================
    TensorRT                  DLA
    ========================  ==========================================================
    10.0 - 10.7               Jetson boards with DLA cores: AGX Orin, Orin NX (JetPack 6;
                              Xavier never runs TensorRT 10: its last JetPack, 5.1.x,
                              ships TensorRT 8.5)
    10.8 and later 10.x       none ("TensorRT 10.7 was the last 10.x release that
                              supported DLA")
    11.0 - 11.3               none
    11.4.0                    not on Jetson (Windows on ARM only)
    11.4.1 and later          Jetson AGX Orin only, with JetPack >= 7.2.2
    ========================  ==========================================================

    Source: NVIDIA's "Working with DLA" and TensorRT 11.4.1 release notes
    (docs.nvidia.com/deeplearning/tensorrt/11.4.1/inference-library/work-with-dla.html).
    ``jetson``: ``{"model": device-tree model, "jetpack": "7.2.2", ...}`` or None off Jetson.
    """
    from .jetson import is_agx_orin

    v = parse_version(version)
    v4 = v + (0,) * (4 - len(v))
    if v[0] < 11:
        if v4[:2] > (10, 7):
            return f"TensorRT {version} has no DLA support (TensorRT 10.7 was the last 10.x release with DLA)"
        return None
    if v4[:2] < (11, 4):
        return f"TensorRT {version} has no DLA support (TensorRT 11.0 to 11.3 dropped it)"
    if v4[:3] == (11, 4, 0):
        return (f"TensorRT {version} does not support DLA on Jetson "
                "(11.4.0 brought DLA back for non-Jetson targets only)")
    model = (jetson or {}).get("model")
    if not is_agx_orin(model):
        return (f"TensorRT {version} supports DLA on Jetson AGX Orin only, and this device is "
                f"{model or 'not a Jetson AGX Orin'}")
    jetpack = (jetson or {}).get("jetpack")
    if not jetpack or parse_version(jetpack) < (7, 2, 2):
        return (f"TensorRT {version} supports DLA on Jetson AGX Orin only with JetPack >= 7.2.2, and this board runs "
                f"JetPack {jetpack or 'of unknown version'}")
    return None


def check_dla_graph(precision: str, base: str | None = None, low_precision_nodes: int | None = None) -> None:
    """Refuse DLA for a graph it cannot run, before TensorRT builds for minutes and the inspector finds no
    layer on DLA: DLA runs FP16 and INT8 layers only. ``precision``: the graph's (an fp32, bf16, fp8 or
    int4 graph would run every layer on the GPU); ``base``: a Q/DQ graph's recipe base (``--int8-base fp32``
    leaves every layer that is not quantized in fp32); ``low_precision_nodes``: how many compute nodes of
    the ONNX graph compute in fp16 or take int8 Q/DQ inputs (0: fp32 islands cover the whole graph)."""
    if precision not in DLA_PRECISIONS:
        raise TensorRTError(
            f"DLA runs FP16 and INT8 layers only, and this graph is {precision}: on DLA every layer would silently "
            "fall back to the GPU. Build the fp16 or int8 graph for DLA (--precision fp16|int8), "
            "or leave out --dla-core")
    if base is not None and base != FP16 and lookup(precision).quantized:
        raise TensorRTError(
            f"DLA runs FP16 and INT8 layers only, and this {precision} graph was made with --int8-base {base}: every "
            f"layer that is not quantized (LayerNorm, Softmax, GELU, the residual adds) is {base} and would run on "
            f"the GPU. Re-make the {precision} graph with --int8-base fp16 for DLA, or leave out --dla-core")
    if low_precision_nodes == 0:
        raise TensorRTError(
            f"DLA runs FP16 and INT8 layers only, and no compute node of this {precision} graph runs in fp16 or int8 "
            "(its fp32 islands, the recipe's keep_fp32, cover every one): no layer could run on DLA. Re-make the "
            "graph with fewer keep_fp32 op types, or leave out --dla-core")


def check_dla_sizes(size_range: dict | None) -> None:
    """Refuse a DLA build of a graph of dynamic height and width (no dynamic dimensions on DLA, as for the batch)."""
    if size_range:
        raise TensorRTError("DLA has no dynamic dimensions (NVIDIA: the profile's min, opt and max must be equal), and "
                            f"this graph's height and width range over {size_range['height']} px: export it at one "
                            "size (edgevit export --img-size PX) for DLA, or leave out --dla-core")


def check_dla_profile(profile: tuple[int, int, int] | list[int]) -> None:
    """Refuse a DLA build with a dynamic batch before building: "DLA does not support dynamic dimensions, so
    the profile's min, max, and opt values must be equal" (NVIDIA, "DLA Supported Layers and Restrictions",
    General Restrictions); TensorRT would build for minutes and put every layer on the GPU."""
    lo, opt, hi = (int(v) for v in profile)
    if not lo == opt == hi:
        raise TensorRTError(
            f"DLA has no dynamic dimensions (NVIDIA: the profile's min, opt and max must be equal), and this build's "
            f"batch profile is {lo},{opt},{hi}: give one batch with --batch N,N,N (N in {lo}..{hi}, e.g. "
            f"--batch {opt},{opt},{opt}), or export the graph with --static-batch N; or leave out --dla-core")


def check_dla(version: str, device: dict, core: int | None, precision: str = FP16) -> None:
    """Refuse ``--dla-core`` where DLA cannot work. ``device``: the build's device facts
    (``gpu_name``, ``compute_capability``, ``dla_cores`` from ``trt.Runtime.num_DLA_cores``,
    ``jetson``); ``precision``: the graph's. ``core=None``: nothing to check."""
    if core is None:
        return
    if not isinstance(core, int) or isinstance(core, bool) or core < 0:
        raise ValueError(f"--dla-core must be a non-negative integer, got {core!r}")
    check_dla_graph(precision)
    why = dla_support(version, device.get("jetson"))
    if why:
        raise TensorRTError(f"{why}; build for the GPU (leave out --dla-core) or use a TensorRT that supports DLA "
                            "here (JetPack 6's TensorRT 10.3, or 11.4.1+ with JetPack >= 7.2.2 on AGX Orin)")
    cores = int(device.get("dla_cores") or 0)
    name = device.get("gpu_name") or device.get("name") or "this device"
    if cores == 0:
        raise TensorRTError(
            f"{name} (compute capability {device.get('compute_capability')}) has no DLA cores "
            "(only Jetson AGX Orin and Orin NX do under TensorRT 10+; Orin Nano and desktop/data-center GPUs do not); "
            "leave out --dla-core"
        )
    if core >= cores:
        raise ValueError(f"--dla-core {core} does not exist on {name}: it has {cores} DLA core(s) (0..{cores - 1})")


# ------------------------------------------------------------------ hardware compatibility
HW_COMPAT_LEVELS = {
    "none": None,
    "ampere_plus": ("AMPERE_PLUS", (8, 6)),
    "same_compute_capability": ("SAME_COMPUTE_CAPABILITY", (10, 9)),
}
"""--hardware-compat level -> (``trt.HardwareCompatibilityLevel`` member, first TensorRT with it)
(pyCore.cpp: AMPERE_PLUS at v10.3.0, SAME_COMPUTE_CAPABILITY first at v10.9.0)."""


HW_COMPAT_MIN_BUILD_GPU = {"ampere_plus": ((8, 0), "Ampere"), "same_compute_capability": ((7, 5), "Turing")}
"""--hardware-compat level -> (lowest compute capability of the GPU that builds it, its architecture). NvInfer.h
(v11.1, ``HardwareCompatibilityLevel``): kAMPERE_PLUS "is only supported for engines built on NVIDIA Ampere and
later GPUs", kSAME_COMPUTE_CAPABILITY "on NVIDIA Turing and later GPUs"."""


def check_hardware_compat_builder(level: str, facts: dict) -> None:
    """TensorRTError, before building, when this GPU (``facts``: :func:`edgevit.tensorrt.session.device_facts`)
    cannot build an engine of hardware-compatibility ``level``."""
    need = HW_COMPAT_MIN_BUILD_GPU.get(level)
    cc = facts.get("compute_capability")
    if need is None or cc is None:
        return
    (major, minor), arch = need
    if parse_version(str(cc))[:2] < (major, minor):
        raise TensorRTError(
            f"--hardware-compat {level} engines can only be built on NVIDIA {arch} or newer GPUs (compute capability "
            f">= {major}.{minor}; NvInfer.h, HardwareCompatibilityLevel), but {facts.get('gpu_name') or 'this GPU'} "
            f"has {cc}; build on a newer GPU or use --hardware-compat none")


def host_platform() -> str:
    """This machine's OS and CPU architecture, as engine records hold them: ``"linux-x86_64"``,
    ``"linux-aarch64"``, ``"windows-x86_64"``. TensorRT engines run only on the platform they were built on
    ("Serialized engines are not portable across platforms", support matrix 11.4.1), whatever the
    hardware-compatibility level."""
    import platform

    arch = platform.machine().lower()
    arch = {"amd64": "x86_64", "x64": "x86_64", "arm64": "aarch64"}.get(arch, arch)
    return f"{platform.system().lower() or 'unknown'}-{arch or 'unknown'}"


def hardware_level_name(version: str, level: str) -> str | None:
    """The ``trt.HardwareCompatibilityLevel`` member name of ``level`` (None for "none"), or
    TensorRTError when TensorRT ``version`` lacks it."""
    if level not in HW_COMPAT_LEVELS:
        raise ValueError(f"--hardware-compat must be one of {list(HW_COMPAT_LEVELS)}, got {level!r}")
    if HW_COMPAT_LEVELS[level] is None:
        return None
    member, since = HW_COMPAT_LEVELS[level]
    if not at_least(version, *since):
        raise TensorRTError(
            f"--hardware-compat {level} needs TensorRT >= {'.'.join(map(str, since))}, this is TensorRT {version}; "
            "use --hardware-compat ampere_plus or none, or upgrade TensorRT")
    return member


# ------------------------------------------------------------------ optimization profile
def profile_from_manifest(batch: BatchRange | None, override: tuple[int, int, int] | None = None) -> tuple[int, int, int]:
    """(min, opt, max) batch of the optimization profile.

    ``batch`` is the manifest's batch range (the range the ONNX graph was exported for). ``override``
    (``--batch MIN,OPT,MAX``) must lie inside that range.
    """
    if batch is None:
        raise ValueError("the manifest records no batch range (min, opt and max); re-export the model")
    lo, opt, hi = batch.bounds
    if override is None:
        return lo, opt, hi
    if len(override) != 3:
        raise ValueError(f"--batch must be MIN,OPT,MAX, got {override!r}")
    o_lo, o_opt, o_hi = (int(v) for v in override)
    check_batch_bounds(o_lo, o_opt, o_hi)
    if not batch.is_dynamic and (o_lo, o_hi) != (lo, hi):
        raise ValueError(f"the graph has a static batch of {lo}; --batch {o_lo},{o_opt},{o_hi} cannot change it "
                         f"(re-export with --batch MIN,OPT,MAX for a dynamic batch)")
    if o_lo < lo or o_hi > hi:
        raise ValueError(f"--batch {o_lo},{o_opt},{o_hi} lies outside the range the graph was exported for "
                         f"({lo}..{hi}); re-export with a wider --batch or choose bounds inside it")
    return o_lo, o_opt, o_hi


def input_shapes(sample_shape: tuple, batch_profile: tuple[int, int, int],
                 size_range: dict | None = None) -> tuple[tuple, tuple, tuple]:
    """The (min, opt, max) input shapes of the optimization profile: the batch bounds on dim 0; for a graph
    of dynamic height and width (the input's ``size_range`` in the manifest, ``{"height": [MIN, MAX],
    "width": [MIN, MAX]}``) those bounds on dims 2 and 3 of an NCHW input, opt at the recorded size."""
    lo, opt, hi = (int(v) for v in batch_profile)
    sample = tuple(int(d) for d in sample_shape)
    if not size_range:
        return (lo, *sample), (opt, *sample), (hi, *sample)
    (h_lo, h_hi), (w_lo, w_hi) = size_range["height"], size_range["width"]
    channels = sample[0]
    return (lo, channels, int(h_lo), int(w_lo)), (opt, *sample), (hi, channels, int(h_hi), int(w_hi))


def check_batch_in_profile(batch: int, profile: tuple[int, int, int] | list[int], where: str = "engine") -> None:
    """DataError when ``batch`` lies outside the optimization profile."""
    lo, _, hi = profile
    if not lo <= batch <= hi:
        raise DataError(f"{where}: batch {batch} is outside the optimization profile {lo}..{hi}; "
                        f"split the input into batches of at most {hi} (or rebuild with --batch covering {batch})")


# ------------------------------------------------------------------ realized precision
def check_realized_precision(report, requested: str) -> None:
    """TensorRTError when ``requested`` is a lower precision but no layer ran below fp32.

    ``report``: a :class:`edgevit.tensorrt.fusion.FusionReport`. Only a detailed report can prove
    this; a names-only report passes (nothing to check).
    """
    if requested == BASE_PRECISION or report.detail != "detailed" or not report.precision_counts:
        return
    lower = {p.name for p in PRECISION_TABLE if p.trt_names and p.graph != EXPORTED}
    low = {p: n for p, n in report.precision_counts.items() if p in lower}
    if not low:
        raise TensorRTError(
            f"a {requested} engine was asked for, but every layer of the built engine runs in "
            f"{sorted(report.precision_counts)} (no fp16/bf16/int8/fp8 layer); refusing to write an fp32 engine "
            "labelled as lower precision. Check that the GPU supports the precision and the graph carries it"
        )


# ------------------------------------------------------------------ engine compatibility
VERSION_COMPATIBLE_RUNS_ON = {10: (10, 11), 11: (11,)}
"""Major version a version-compatible engine was built with -> majors of TensorRT that may run it
(same major, newer or equal; TensorRT 10 version-compatible engines also run on TensorRT 11)."""


def _four(version: str) -> tuple[int, int, int, int]:
    v = parse_version(version)
    return tuple((v + (0, 0, 0, 0))[:4])


def check_engine_compat(recorded: EngineRecord, current: dict, engine: str = "engine") -> None:
    """Refuse to load an engine built for another TensorRT version, GPU or CUDA.

    ``recorded``: the engine's manifest record (its ``tensorrt_version``, ``gpu_name``,
    ``compute_capability``, ``version_compatible``, ``hardware_compatibility_level``,
    ``tensorrt_cuda_major``); ``current``: the same facts of this machine (and
    ``cuda_driver_version``; ``platform``, :func:`host_platform` when the key is absent, None when
    unknown, as for a Triton server elsewhere). An engine runs only on the OS and CPU architecture it
    was built on, at every hardware-compatibility level. An engine that is not version-compatible needs the exact TensorRT
    it was built with (all four version parts); a version-compatible one runs on the same or a
    newer TensorRT of :data:`VERSION_COMPATIBLE_RUNS_ON`. A hardware-compatibility level relaxes
    the GPU check.
    """
    fix = (f"rebuild the engine on this target: edgevit build <model.onnx|outdir> -o {engine} --force "
           "(engines are specific to the TensorRT version and GPU they were built with)")
    built_p = recorded.platform
    here_p = current["platform"] if "platform" in current else host_platform()
    if built_p and here_p and built_p != here_p:
        raise EngineMismatchError(
            f"{engine} was built on {built_p}, this machine is {here_p} (TensorRT engines are not portable across "
            f"operating systems or CPU architectures, even hardware-compatible ones); {fix}")
    built_v, here_v = recorded.tensorrt_version, current.get("tensorrt_version")
    if built_v and here_v:
        b, h = _four(built_v), _four(here_v)
        if recorded.version_compatible:
            majors = VERSION_COMPATIBLE_RUNS_ON.get(b[0], (b[0],))
            if h[0] not in majors or h < b:
                raise EngineMismatchError(
                    f"{engine} is version-compatible from TensorRT {built_v} on, within TensorRT "
                    f"{' and '.join(map(str, majors))}, but this machine has TensorRT {here_v}; {fix}")
        elif b != h:
            raise EngineMismatchError(
                f"{engine} was built with TensorRT {built_v}, this machine has {here_v} (an engine that is not "
                f"version-compatible needs the exact TensorRT build); {fix}")
    driver, needs = current.get("cuda_driver_version"), recorded.tensorrt_cuda_major
    if driver and needs and parse_version(str(driver))[0] < int(needs):
        raise EngineMismatchError(
            f"{engine} was built with a CUDA {needs} TensorRT, but this machine's driver supports CUDA {driver} only; "
            f"update the driver or {fix}")
    level = recorded.hardware_compatibility_level or "none"
    built_cc, here_cc = recorded.compute_capability, current.get("compute_capability")
    if level == "ampere_plus":
        if here_cc is not None and parse_version(str(here_cc)) < (8, 0):
            raise EngineMismatchError(
                f"{engine} was built for Ampere and newer GPUs (compute capability >= 8.0), this GPU has {here_cc}; {fix}")
        return
    if built_cc is not None and here_cc is not None and str(built_cc) != str(here_cc):
        raise EngineMismatchError(
            f"{engine} was built for compute capability {built_cc} ({recorded.gpu_name}), this GPU "
            f"({current.get('gpu_name')}) has {here_cc}; {fix}")
    if level == "same_compute_capability":
        return
    built_gpu, here_gpu = recorded.gpu_name, current.get("gpu_name")
    if built_gpu and here_gpu and built_gpu != here_gpu:
        raise EngineMismatchError(f"{engine} was built on {built_gpu}, this GPU is {here_gpu}; {fix}")


# ------------------------------------------------------------------ cuda-python
def check_cuda_python(cuda_python: str | None, driver_cuda: str | None, tensorrt_cuda_major: int | None,
                      tegra: bool = False) -> None:
    """Refuse a cuda-python whose CUDA this driver cannot run or whose major differs from TensorRT's.

    ``cuda_python``: its version ("12.6.2", "13.0.1"); its major.minor is the CUDA runtime it ships.
    ``driver_cuda``: ``cudaDriverGetVersion`` as "12.6". ``tensorrt_cuda_major``: 12/13 for a
    pip TensorRT, None when unknown (JetPack's apt TensorRT). ``tegra``: a Jetson, which has no CUDA
    minor-version compatibility (the reason and the sources: :mod:`._bindings`), so there major.minor
    is compared: cuda-python 12.9 on JetPack 6's 12.6 driver is refused with the ``==12.6.*`` pin.
    """
    if not cuda_python:
        return
    version = parse_version(cuda_python)
    major = version[0]
    from ._bindings import CUDA_PYTHON_ADVICE, tegra_cuda_python_advice

    if driver_cuda and parse_version(str(driver_cuda))[0] < major:
        advice = tegra_cuda_python_advice(driver_cuda) if tegra else CUDA_PYTHON_ADVICE
        raise TensorRTError(
            f"cuda-python {cuda_python} needs a CUDA {major} driver, but this driver supports CUDA {driver_cuda} "
            f"(every engine load would fail with an insufficient-driver error); {advice}")
    if tegra and driver_cuda:
        driver = (tuple(parse_version(str(driver_cuda))) + (0, 0))[:2]
        mine = (tuple(version) + (0, 0))[:2]
        if mine > driver:
            raise TensorRTError(
                f"cuda-python {cuda_python} is CUDA {mine[0]}.{mine[1]}, newer than this Jetson's CUDA "
                f"{driver[0]}.{driver[1]} (its first CUDA call would fail with cudaErrorInsufficientDriver); "
                f"{tegra_cuda_python_advice(driver_cuda)}")
    if tensorrt_cuda_major and int(tensorrt_cuda_major) != major:
        raise TensorRTError(
            f"cuda-python {cuda_python} is CUDA {major}, but TensorRT was built for CUDA {tensorrt_cuda_major}; "
            f"{tegra_cuda_python_advice(driver_cuda) if tegra and driver_cuda else CUDA_PYTHON_ADVICE}")
