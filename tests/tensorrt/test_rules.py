"""The TensorRT rules as pure functions (no tensorrt import): versions, build mode, DLA by version,
hardware-compatibility levels, profile, engine compatibility, cuda-python pinning."""

from pathlib import Path

import pytest

from edgevit.errors import DataError, EngineMismatchError, TensorRTError
from edgevit.specs import BatchRange
from edgevit.tensorrt.record import EngineRecord
from edgevit.tensorrt.rules import (
    at_least,
    build_mode,
    check_batch_in_profile,
    check_cuda_python,
    check_dla,
    check_engine_compat,
    dla_support,
    hardware_level_name,
    parse_version,
    profile_from_manifest,
)


def test_pure_modules_do_not_import_tensorrt():
    """Only _bindings.py may import tensorrt / cuda (checked on the modules' import statements)."""
    import ast

    import edgevit.tensorrt as pkg

    for file in sorted(Path(pkg.__file__).parent.glob("*.py")):
        imported = set()
        for node in ast.walk(ast.parse(file.read_text())):
            if isinstance(node, ast.Import):
                imported |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                imported.add(node.module.split(".")[0])
        if file.name != "_bindings.py":
            assert not imported & {"tensorrt", "cuda"}, f"{file.name} imports {imported & {'tensorrt', 'cuda'}}"


# ------------------------------------------------------------------ versions
@pytest.mark.parametrize("text, expected", [
    ("10.3.0.30", (10, 3, 0, 30)), ("10.3.0", (10, 3, 0)), ("11.0.0rc1", (11, 0, 0)), ("10.14.1.post1", (10, 14, 1)),
    ("8.6.1", (8, 6, 1)),
])
def test_parse_version(text, expected):
    assert parse_version(text) == expected, f"{text!r} -> {parse_version(text)}, expected {expected}"


@pytest.mark.parametrize("bad", ["", "abc", None])
def test_parse_version_rejects(bad):
    with pytest.raises(ValueError, match="10.3.0"):
        parse_version(bad)


@pytest.mark.parametrize("version, parts, expected", [
    ("10.3.0.30", (10, 9), False), ("10.9.0.34", (10, 9), True), ("10.10.0", (10, 9), True),
    ("11.0.0", (10, 9), True), ("10.9", (10, 9, 0), True), ("11.4.0.1", (11, 4, 1), False),
])
def test_at_least(version, parts, expected):
    assert at_least(version, *parts) is expected, (version, parts)


def test_older_than_10_refused():
    with pytest.raises(TensorRTError, match=">= 10.0"):
        build_mode("8.6.1", "fp16", has_qdq=False)


# ------------------------------------------------------------------ build mode (item 7)
@pytest.mark.parametrize("version", ["10.3.0", "10.12.0", "11.0.0"])
@pytest.mark.parametrize("precision, qdq", [("fp32", False), ("fp16", False), ("bf16", False), ("int8", True),
                                            ("fp8", True), ("mixed", False), ("fp16", True)])
def test_build_mode_strongly_typed_by_default(version, precision, qdq):
    """Every precision graph is built strongly typed on TensorRT 10 too (before: fp16/bf16 set weak flags)."""
    mode = build_mode(version, precision, qdq)
    assert (mode.strongly_typed, mode.flags) == (True, ()), (version, precision, mode)


@pytest.mark.parametrize("precision, flags", [("fp16", ("FP16",)), ("bf16", ("BF16",)), ("fp32", ())])
def test_weakly_typed_opt_in_on_tensorrt_10(precision, flags):
    mode = build_mode("10.3.0", precision, False, weakly_typed=True)
    assert (mode.strongly_typed, mode.flags) == (False, flags), mode
    assert "--weakly-typed" in mode.reason


def test_weakly_typed_refused_where_it_cannot_apply():
    with pytest.raises(ValueError, match="needs TensorRT 10"):
        build_mode("11.0.0", "fp16", False, weakly_typed=True)
    with pytest.raises(ValueError, match="without Q/DQ"):
        build_mode("10.3.0", "int8", True, weakly_typed=True)


@pytest.mark.parametrize("precision", ["int8", "fp8"])
@pytest.mark.parametrize("version", ["10.3.0", "11.0.0"])
def test_low_precision_without_qdq_refused(version, precision):
    with pytest.raises(TensorRTError, match="QuantizeLinear"):
        build_mode(version, precision, has_qdq=False)


def test_unknown_precision_is_value_error():
    with pytest.raises(ValueError, match="precision must be one of"):
        build_mode("10.3.0", "fp64", False)


# ------------------------------------------------------------------ DLA (item 5)
AGX_ORIN_JP6 = {"model": "NVIDIA Jetson AGX Orin Developer Kit", "l4t": "36.4.4", "jetpack": "6.2.1"}
AGX_ORIN_JP722 = {"model": "NVIDIA Jetson AGX Orin Developer Kit", "jetpack": "7.2.2"}
AGX_ORIN_JP720 = {"model": "NVIDIA Jetson AGX Orin Developer Kit", "jetpack": "7.2.0"}
ORIN_NX_JP722 = {"model": "NVIDIA Jetson Orin NX Engineering Reference Developer Kit", "jetpack": "7.2.2"}
ORIN_AGX = {"gpu_name": "Orin", "compute_capability": "8.7", "dla_cores": 2, "jetson": AGX_ORIN_JP6}
ORIN_NANO = {"gpu_name": "Orin Nano", "compute_capability": "8.7", "dla_cores": 0,
             "jetson": {"model": "NVIDIA Jetson Orin Nano Developer Kit", "jetpack": "6.2.1"}}
RTX = {"gpu_name": "NVIDIA GeForce RTX 4090", "compute_capability": "8.9", "dla_cores": 0, "jetson": None}


@pytest.mark.parametrize("version, jetson, allowed", [
    ("10.3.0.30", AGX_ORIN_JP6, True), ("10.7.0", AGX_ORIN_JP6, True),
    ("10.8.0", AGX_ORIN_JP6, False), ("10.13.2", AGX_ORIN_JP6, False),  # 10.7 was the last 10.x with DLA
    ("11.0.0", AGX_ORIN_JP722, False), ("11.2.0", AGX_ORIN_JP722, False), ("11.3.0.5", AGX_ORIN_JP722, False),
    ("11.4.0", AGX_ORIN_JP722, False),          # 11.4.0: DLA, but not on Jetson
    ("11.4.1", AGX_ORIN_JP722, True),           # 11.4.1: AGX Orin with JetPack >= 7.2.2
    ("11.4.1", AGX_ORIN_JP720, False), ("11.4.1", ORIN_NX_JP722, False), ("11.4.1", None, False),
])
def test_dla_support_by_version(version, jetson, allowed):
    why = dla_support(version, jetson)
    assert (why is None) is allowed, f"TensorRT {version} on {jetson}: {why}"


def test_dla_ok_on_orin_agx_fp16_and_int8():
    check_dla("10.3.0", ORIN_AGX, 1, "fp16")
    check_dla("10.3.0", ORIN_AGX, 0, "int8")
    check_dla("10.3.0", RTX, None, "fp32")  # no DLA asked: nothing to check


@pytest.mark.parametrize("precision", ["fp32", "bf16", "fp8"])
def test_dla_refused_for_graphs_it_cannot_run(precision):
    """Before: an fp32 graph on DLA built and silently ran every layer on the GPU."""
    with pytest.raises(TensorRTError, match="FP16 and INT8 layers only") as exc:
        check_dla("10.3.0", ORIN_AGX, 0, precision)
    assert "--precision fp16|int8" in str(exc.value) and "--dla-core" in str(exc.value)


@pytest.mark.parametrize("device", [ORIN_NANO, RTX])
def test_dla_refused_without_cores(device):
    with pytest.raises(TensorRTError, match="no DLA cores"):
        check_dla("10.3.0", device, 0, "fp16")


@pytest.mark.parametrize("version, message", [("11.0.0", "11.0 to 11.3"), ("11.3.0", "11.0 to 11.3"),
                                              ("11.4.0", "not support DLA on Jetson")])
def test_dla_refused_on_tensorrt_11_before_11_4_1(version, message):
    with pytest.raises(TensorRTError, match=message):
        check_dla(version, {**ORIN_AGX, "jetson": AGX_ORIN_JP722}, 0, "fp16")


def test_dla_core_out_of_range():
    with pytest.raises(ValueError, match="2 DLA core"):
        check_dla("10.3.0", ORIN_AGX, 2, "fp16")


# ------------------------------------------------------------------ hardware compatibility (item 3)
@pytest.mark.parametrize("version", ["10.3.0.30", "10.8.0", "10.9.0", "11.0.0"])
def test_ampere_plus_on_every_supported_version(version):
    """Before: the level table named SAME_COMPUTE_CAPABILITY eagerly, so even ampere_plus crashed below 10.9."""
    assert hardware_level_name(version, "ampere_plus") == "AMPERE_PLUS"
    assert hardware_level_name(version, "none") is None


def test_same_compute_capability_from_10_9():
    assert hardware_level_name("10.9.0.34", "same_compute_capability") == "SAME_COMPUTE_CAPABILITY"
    assert hardware_level_name("11.0.0", "same_compute_capability") == "SAME_COMPUTE_CAPABILITY"
    with pytest.raises(TensorRTError, match=r"needs TensorRT >= 10\.9, this is TensorRT 10\.3\.0\.30") as exc:
        hardware_level_name("10.3.0.30", "same_compute_capability")
    assert "--hardware-compat ampere_plus or none" in str(exc.value)
    with pytest.raises(ValueError, match="--hardware-compat must be one of"):
        hardware_level_name("10.9.0", "turing_plus")


# ------------------------------------------------------------------ profile
DYN = BatchRange(1, 4, 32, dynamic=True)
STATIC = BatchRange(4, 4, 4, dynamic=False)


def test_profile_from_manifest():
    assert profile_from_manifest(DYN) == (1, 4, 32)
    assert profile_from_manifest(DYN, (2, 8, 16)) == (2, 8, 16)
    assert profile_from_manifest(STATIC) == (4, 4, 4)


@pytest.mark.parametrize("override, message", [((1, 4, 64), "outside the range"), ((4, 2, 8), "MIN <= OPT <= MAX")])
def test_profile_override_outside_bounds(override, message):
    with pytest.raises(ValueError, match=message):
        profile_from_manifest(DYN, override)


def test_profile_static_graph_cannot_change():
    with pytest.raises(ValueError, match="static batch of 4"):
        profile_from_manifest(STATIC, (1, 4, 8))


def test_profile_missing_batch():
    with pytest.raises(ValueError, match="re-export"):
        profile_from_manifest(None)


def test_batch_outside_profile():
    check_batch_in_profile(4, (1, 4, 8))
    with pytest.raises(DataError, match="batch 9 is outside the optimization profile 1..8"):
        check_batch_in_profile(9, (1, 4, 8), where="m.plan")


# ------------------------------------------------------------------ engine compatibility (item 8)
BUILT = {"tensorrt_version": "10.3.0.30", "gpu_name": "Orin", "compute_capability": "8.7"}
ORIN = {"gpu_name": "Orin", "compute_capability": "8.7"}


def test_compat_same_machine_ok():
    check_engine_compat(EngineRecord.from_fields(BUILT), {"tensorrt_version": "10.3.0.30", **ORIN})


@pytest.mark.parametrize("current, what", [
    ({"tensorrt_version": "10.4.0", **ORIN}, "TensorRT 10.3.0.30"),
    ({"tensorrt_version": "10.3.0.26", **ORIN}, "exact TensorRT build"),   # the 4th part counts
    ({"tensorrt_version": "10.3.0.30", "gpu_name": "NVIDIA A100", "compute_capability": "8.0"}, "compute capability 8.7"),
    ({"tensorrt_version": "10.3.0.30", "gpu_name": "Orin (nvgpu)", "compute_capability": "8.7"}, "built on Orin"),
])
def test_compat_mismatch_refused(current, what):
    with pytest.raises(EngineMismatchError, match="rebuild the engine on this target") as exc:
        check_engine_compat(EngineRecord.from_fields(BUILT), current, engine="m.plan")
    assert what in str(exc.value), str(exc.value)


@pytest.mark.parametrize("here, ok", [
    ("10.3.0.30", True), ("10.8.0.43", True), ("11.0.0.1", True), ("11.4.1", True),  # 10 VC -> 11 allowed
    ("10.3.0.26", False), ("10.2.0", False), ("12.0.0", False),
])
def test_version_compatible_engines(here, ok):
    entry = {**BUILT, "version_compatible": True}
    current = {"tensorrt_version": here, **ORIN}
    if ok:
        check_engine_compat(EngineRecord.from_fields(entry), current)
    else:
        with pytest.raises(EngineMismatchError, match="version-compatible from TensorRT 10.3.0.30 on"):
            check_engine_compat(EngineRecord.from_fields(entry), current)


def test_tensorrt_11_version_compatible_stays_in_11():
    entry = {**BUILT, "tensorrt_version": "11.0.0", "version_compatible": True}
    check_engine_compat(EngineRecord.from_fields(entry), {"tensorrt_version": "11.2.0", **ORIN})
    with pytest.raises(EngineMismatchError, match="within TensorRT 11"):
        check_engine_compat(EngineRecord.from_fields(entry), {"tensorrt_version": "12.0.0", **ORIN})


def test_driver_older_than_the_engines_cuda_refused():
    entry = {**BUILT, "tensorrt_cuda_major": 13}
    with pytest.raises(EngineMismatchError, match="CUDA 13 TensorRT.*supports CUDA 12.6 only"):
        check_engine_compat(EngineRecord.from_fields(entry), {"tensorrt_version": "10.3.0.30", "cuda_driver_version": "12.6", **ORIN})
    check_engine_compat(EngineRecord.from_fields(entry), {"tensorrt_version": "10.3.0.30", "cuda_driver_version": "13.0", **ORIN})


def test_hardware_compatibility_levels():
    amp = {**BUILT, "gpu_name": "NVIDIA A100", "compute_capability": "8.0", "hardware_compatibility_level": "ampere_plus"}
    check_engine_compat(EngineRecord.from_fields(amp), {"tensorrt_version": "10.3.0.30", "gpu_name": "NVIDIA H100", "compute_capability": "9.0"})
    with pytest.raises(EngineMismatchError, match=">= 8.0"):
        check_engine_compat(EngineRecord.from_fields(amp), {"tensorrt_version": "10.3.0.30", "gpu_name": "Tesla T4", "compute_capability": "7.5"})
    same = {**BUILT, "hardware_compatibility_level": "same_compute_capability"}
    check_engine_compat(EngineRecord.from_fields(same), {"tensorrt_version": "10.3.0.30", "gpu_name": "Orin NX", "compute_capability": "8.7"})


# ------------------------------------------------------------------ cuda-python (item 1)
def test_cuda_python_13_on_a_cuda_12_driver_refused():
    with pytest.raises(TensorRTError, match="cuda-python 13.0.1 needs a CUDA 13 driver.*12.6") as exc:
        check_cuda_python("13.0.1", "12.6", None)
    assert "cuda-python>=12,<13" in str(exc.value) and "edgevit[trt-cu12]" in str(exc.value)


def test_cuda_python_must_match_tensorrts_cuda():
    with pytest.raises(TensorRTError, match="TensorRT was built for CUDA 13"):
        check_cuda_python("12.9.0", "13.0", 13)
    check_cuda_python("12.6.2", "12.6", 12)
    check_cuda_python("13.0.1", "13.0", 13)
    check_cuda_python(None, "12.6", 12)  # unknown: nothing to check


def test_engine_record_reads_a_partial_entry_and_writes_the_builds_fields_in_order():
    rec = EngineRecord.from_fields({**BUILT, "path": "m.plan", "profile": {"min": 1, "opt": 4, "max": 8}, "x": 1})
    assert (rec.tensorrt_version, rec.profile, rec.weakly_typed, rec.build_mode) == ("10.3.0.30", (1, 4, 8), None, None)
    built = EngineRecord.from_fields({**rec.to_fields(), "build_mode": {"strongly_typed": False, "flags": ["FP16"]}})
    fields = built.to_fields()
    assert fields["profile"] == {"min": 1, "opt": 4, "max": 8} and fields["weakly_typed"] is True
    keys = list(fields)
    assert keys[keys.index("build_mode") + 1] == "weakly_typed" and "path" not in fields, keys
    assert EngineRecord.from_fields(fields) == built


# ------------------------------------------------------------------ hardware-compatible plans (issue 19 item 7)
X86 = {"tensorrt_version": "10.3.0.30", "gpu_name": "NVIDIA A100", "compute_capability": "8.0"}


@pytest.mark.parametrize("level", ["ampere_plus", "same_compute_capability", "none"])
def test_platform_compared_at_every_hardware_level(level):
    """Before: ampere_plus returned before any OS/CPU check, and no record held the platform. Engines are not
    portable across platforms (support matrix 11.4.1), whatever the hardware-compatibility level."""
    built = EngineRecord.from_fields({**X86, "hardware_compatibility_level": level, "platform": "linux-x86_64"})
    assert built.platform == "linux-x86_64", built
    here = {**X86, "platform": "linux-aarch64"}
    with pytest.raises(EngineMismatchError, match="built on linux-x86_64, this machine is linux-aarch64") as exc:
        check_engine_compat(built, here, engine="m.plan")
    assert "rebuild the engine on this target" in str(exc.value), str(exc.value)
    check_engine_compat(built, {**X86, "platform": "linux-x86_64"})      # same platform: loads
    check_engine_compat(built, {**X86, "platform": None})                # unknown (a server elsewhere): not compared
    check_engine_compat(EngineRecord.from_fields(X86), here)             # an older record without one: not compared


def test_platform_defaults_to_this_machine():
    from edgevit.tensorrt import rules

    here = rules.host_platform()
    os_name, _, arch = here.partition("-")
    assert os_name and arch and arch not in ("amd64", "arm64"), here  # normalized: x86_64 / aarch64
    other = "windows-x86_64" if not here.startswith("windows") else "linux-x86_64"
    with pytest.raises(EngineMismatchError, match=f"this machine is {here}"):
        check_engine_compat(EngineRecord.from_fields({**X86, "platform": other}), dict(X86))


@pytest.mark.parametrize("level, cc, ok", [
    ("ampere_plus", "8.0", True), ("ampere_plus", "8.7", True), ("ampere_plus", "7.5", False),
    ("same_compute_capability", "7.5", True), ("same_compute_capability", "7.0", False),
    ("same_compute_capability", "6.1", False), ("none", "6.1", True),
])
def test_hardware_compat_needs_an_ampere_or_turing_builder(level, cc, ok):
    """NvInfer.h v11.1: kAMPERE_PLUS is only supported for engines built on Ampere and later GPUs,
    kSAME_COMPUTE_CAPABILITY on Turing and later. Before: the build GPU was never checked."""
    from edgevit.tensorrt import rules

    facts = {"gpu_name": "GPU under test", "compute_capability": cc}
    if ok:
        rules.check_hardware_compat_builder(level, facts)
    else:
        with pytest.raises(TensorRTError, match="--hardware-compat none") as exc:
            rules.check_hardware_compat_builder(level, facts)
        assert cc in str(exc.value) and ("Ampere" in str(exc.value) or "Turing" in str(exc.value)), str(exc.value)
