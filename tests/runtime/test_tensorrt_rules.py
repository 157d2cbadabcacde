"""The TensorRT rules as pure functions (no tensorrt import): versions, build mode, DLA, profile,
fusion report on real inspector JSON, engine compatibility, Jetson release."""

import json
from pathlib import Path

import pytest

from edgevit.errors import DataError
from edgevit.tensorrt_rules import (
    EngineMismatchError,
    TensorRTError,
    build_mode,
    check_batch_in_profile,
    check_dla,
    check_engine_compat,
    check_realized_precision,
    datatype_precision,
    fusion_report,
    layer_group,
    parse_tegra_release,
    parse_version,
    profile_from_manifest,
)

DATA = Path(__file__).parent / "data"


def test_module_does_not_import_tensorrt():
    import edgevit.tensorrt_rules as rules

    assert "import tensorrt" not in Path(rules.__file__).read_text()


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


def test_older_than_10_refused():
    with pytest.raises(TensorRTError, match=">= 10.0"):
        build_mode("8.6.1", "fp16", has_qdq=False)


@pytest.mark.parametrize("version, precision, qdq, strongly, flags", [
    ("10.3.0", "fp32", False, False, ()),
    ("10.3.0", "fp16", False, False, ("FP16",)),
    ("10.3.0", "bf16", False, False, ("BF16",)),
    ("10.3.0", "int8", True, True, ()),
    ("10.8.0", "fp8", True, True, ()),
    ("10.3.0", "fp16", True, True, ()),     # a Q/DQ graph is strongly typed even when labelled fp16
    ("10.3.0", "mixed", False, True, ()),
    ("11.0.0", "fp32", False, True, ()),
    ("11.0.0", "fp16", False, True, ()),    # TensorRT 11: never precision flags
    ("11.2.0", "int8", True, True, ()),
])
def test_build_mode(version, precision, qdq, strongly, flags):
    mode = build_mode(version, precision, qdq)
    assert (mode.strongly_typed, mode.flags) == (strongly, flags), (
        f"TensorRT {version}, {precision}, qdq={qdq}: got strongly_typed={mode.strongly_typed} flags={mode.flags}, "
        f"expected {strongly} {flags}")


@pytest.mark.parametrize("precision", ["int8", "fp8"])
@pytest.mark.parametrize("version", ["10.3.0", "11.0.0"])
def test_low_precision_without_qdq_refused(version, precision):
    with pytest.raises(TensorRTError, match="QuantizeLinear"):
        build_mode(version, precision, has_qdq=False)


def test_unknown_precision_is_value_error():
    with pytest.raises(ValueError, match="precision must be one of"):
        build_mode("10.3.0", "fp64", False)


# ------------------------------------------------------------------ DLA
ORIN_AGX = {"name": "Orin", "compute_capability": "8.7", "dla_cores": 2}
ORIN_NANO = {"name": "Orin Nano", "compute_capability": "8.7", "dla_cores": 0}
RTX = {"name": "NVIDIA GeForce RTX 4090", "compute_capability": "8.9", "dla_cores": 0}


def test_dla_ok_on_orin_agx():
    check_dla("10.3.0", ORIN_AGX, 1)
    check_dla("10.3.0", RTX, None)  # no DLA asked: nothing to check


@pytest.mark.parametrize("device", [ORIN_NANO, RTX])
def test_dla_refused_without_cores(device):
    with pytest.raises(TensorRTError, match="no DLA cores"):
        check_dla("10.3.0", device, 0)


def test_dla_refused_on_tensorrt_11_0():
    with pytest.raises(TensorRTError, match="11.0"):
        check_dla("11.0.0", ORIN_AGX, 0)


def test_dla_core_out_of_range():
    with pytest.raises(ValueError, match="2 DLA core"):
        check_dla("10.3.0", ORIN_AGX, 2)


# ------------------------------------------------------------------ profile
DYN = {"dynamic": True, "min": 1, "opt": 4, "max": 32}


def test_profile_from_manifest():
    assert profile_from_manifest(DYN) == (1, 4, 32)
    assert profile_from_manifest(DYN, (2, 8, 16)) == (2, 8, 16)
    assert profile_from_manifest({"dynamic": False, "min": 4, "opt": 4, "max": 4}) == (4, 4, 4)


@pytest.mark.parametrize("override, message", [
    ((1, 4, 64), "outside the range"),
    ((0, 1, 2), "1 <= MIN"),
    ((8, 4, 16), "1 <= MIN"),
])
def test_profile_override_outside_bounds(override, message):
    with pytest.raises(ValueError, match=message):
        profile_from_manifest(DYN, override)


def test_profile_static_graph_cannot_change():
    with pytest.raises(ValueError, match="static batch of 4"):
        profile_from_manifest({"dynamic": False, "min": 4, "opt": 4, "max": 4}, (1, 2, 4))


def test_profile_missing_batch():
    with pytest.raises(ValueError, match="re-export"):
        profile_from_manifest({})


def test_batch_outside_profile():
    check_batch_in_profile(8, (1, 4, 8))
    with pytest.raises(DataError, match="batch 9 is outside the optimization profile 1..8"):
        check_batch_in_profile(9, (1, 4, 8))


# ------------------------------------------------------------------ fusion report on real samples
@pytest.mark.parametrize("text, expected", [
    ("Row major linear FP32", "fp32"), ("Thirty-two wide channel vectorized row major Int8 format", "int8"),
    ("Channel major FP16 format where channel % 8 == 0", "fp16"), ("Half", "fp16"), ("Float", "fp32"),
    ("BFloat16", "bf16"), ("FP8", "fp8"), ("Int32", "int32"), (None, None),
])
def test_datatype_precision(text, expected):
    assert datatype_precision(text) == expected


def test_layer_group():
    assert layer_group("/blocks.3/attn/MatMul") == "blocks.3"
    assert layer_group("features.12.conv.0.0.weight + QuantizeLinear_8") == "features.12"
    assert layer_group("Conv_0 + Relu_1") == "other"


def test_fusion_report_mobilenet_qat_detailed():
    text = (DATA / "trex_mobilenet.qat.onnx.engine.graph.json").read_text()
    report = fusion_report(text)
    d = report.to_dict()
    assert d["detail"] == "detailed" and d["num_layers"] == 73, d
    assert d["fused_attention_layers"] == 0 and d["fused_attention_blocks"] == [], d["attention"]
    counts = d["precision_counts"]
    assert counts.get("int8", 0) >= 50 and counts.get("fp16", 0) >= 1 and counts.get("fp32", 0) >= 1, counts
    assert "features.3" in d["precision_by_group"], sorted(d["precision_by_group"])
    # features.3's convolutions carry Int8 weights
    assert d["precision_by_group"]["features.3"].get("int8", 0) >= 2, d["precision_by_group"]["features.3"]
    check_realized_precision(report, "int8")  # int8 layers exist: accepted


def test_fusion_report_resnet_fp16_detailed():
    report = fusion_report(json.loads((DATA / "trex_resnet_a100_fp16.onnx.engine.graph.json").read_text()))
    counts = report.precision_counts
    assert report.num_layers == 36 and counts.get("fp16", 0) >= 20, counts
    assert report.attention == [], report.attention
    check_realized_precision(report, "fp16")


def test_fusion_report_names_only_with_myelin_regions():
    report = fusion_report((DATA / "trex_notebooks_layer_info.json").read_text())
    assert report.detail == "names_only" and report.num_layers == 86
    assert report.myelin_regions == 2, f"expected the 2 ForeignNode regions, got {report.myelin_regions}"
    assert report.attention == [], f"a CNN detector has no attention, got {report.attention}"
    assert report.precision_counts == {}
    assert "86 layers (names_only)" in report.summary()


def test_realized_precision_refuses_fp32_engine_labelled_fp16():
    fp32 = fusion_report((DATA / "trex_resnet_a100_fp16.onnx.engine.graph.json").read_text()
                         .replace("FP16", "FP32").replace('"Half"', '"Float"'))
    assert set(fp32.precision_counts) == {"fp32"}, fp32.precision_counts
    with pytest.raises(TensorRTError, match="refusing to write an fp32 engine"):
        check_realized_precision(fp32, "fp16")
    check_realized_precision(fp32, "fp32")


def test_attention_detection_on_real_layer_names():
    """Layer names copied verbatim from a public per-layer TensorRT profile of a ViT-B encoder
    built through Myelin (a markdown write-up found with the code search; its repository was not
    identified). No public inspector JSON with fused attention was found, so the names are put in
    the names-only layout of the real NVIDIA sample above."""
    real = json.loads((DATA / "trex_notebooks_layer_info.json").read_text())
    real["Layers"] = real["Layers"][:3] + [
        "__myl_ReshTran_myl3_0",
        "__myl_ConcAddCastMeanSubMulMeanAddSqrtDivMulCastMulAdd_myl3_1",
        "vit.encoder.layer.0.attentionvalue+vit.encoder.layer.0.attentionkey+vit.encoder.layer.0.attentionquery_myl3_2",
        "__myl_TranReshMove_myl3_3",
        "_gemm_mha_v2_myl3_6",
        "__myl_MoveReshTran_myl3_7",
    ]
    report = fusion_report(real)
    kinds = [(a["layer"], a["kind"]) for a in report.attention]
    assert kinds == [("_gemm_mha_v2_myl3_6", "fused_mha")], (
        f"only the fused MHA kernel is attention (the QKV GEMM and the transposes are not): {kinds}")
    assert report.myelin_regions == 0, "Myelin kernels are not counted as regions"


def test_myelin_region_names_only():
    """A names-only ``{ForeignNode[first...last]}`` region is attention when its span names it."""
    real = json.loads((DATA / "trex_notebooks_layer_info.json").read_text())
    region = [name for name in real["Layers"] if name.startswith("{ForeignNode")]
    assert len(region) == 2, region
    report = fusion_report(real)
    assert report.attention == [], [a["layer"] for a in report.attention]


def test_fusion_report_rejects_non_json():
    with pytest.raises(ValueError, match="not JSON"):
        fusion_report("not json")
    with pytest.raises(ValueError, match="'Layers' list"):
        fusion_report({"Bindings": []})


# ------------------------------------------------------------------ engine compatibility
BUILT = {"tensorrt_version": "10.3.0.30", "gpu_name": "Orin", "compute_capability": "8.7"}


def test_compat_same_machine_ok():
    check_engine_compat(BUILT, {"tensorrt_version": "10.3.0.30", "gpu_name": "Orin", "compute_capability": "8.7"})


@pytest.mark.parametrize("current, what", [
    ({"tensorrt_version": "10.4.0", "gpu_name": "Orin", "compute_capability": "8.7"}, "TensorRT 10.3.0.30"),
    ({"tensorrt_version": "10.3.0.30", "gpu_name": "NVIDIA A100", "compute_capability": "8.0"}, "compute capability 8.7"),
    ({"tensorrt_version": "10.3.0.30", "gpu_name": "Orin (nvgpu)", "compute_capability": "8.7"}, "built on Orin"),
])
def test_compat_mismatch_refused(current, what):
    with pytest.raises(EngineMismatchError, match="rebuild the engine on this target") as exc:
        check_engine_compat(BUILT, current, engine="m.plan")
    assert what in str(exc.value), str(exc.value)


def test_version_compatible_engine_exempt():
    entry = {**BUILT, "version_compatible": True}
    check_engine_compat(entry, {"tensorrt_version": "10.8.0", "gpu_name": "Orin", "compute_capability": "8.7"})
    with pytest.raises(EngineMismatchError, match="major version 10"):
        check_engine_compat(entry, {"tensorrt_version": "11.0.0", "gpu_name": "Orin", "compute_capability": "8.7"})


def test_hardware_compatibility_levels():
    amp = {**BUILT, "gpu_name": "NVIDIA A100", "compute_capability": "8.0", "hardware_compatibility_level": "ampere_plus"}
    check_engine_compat(amp, {"tensorrt_version": "10.3.0.30", "gpu_name": "NVIDIA H100", "compute_capability": "9.0"})
    with pytest.raises(EngineMismatchError, match=">= 8.0"):
        check_engine_compat(amp, {"tensorrt_version": "10.3.0.30", "gpu_name": "Tesla T4", "compute_capability": "7.5"})
    same = {**BUILT, "hardware_compatibility_level": "same_compute_capability"}
    check_engine_compat(same, {"tensorrt_version": "10.3.0.30", "gpu_name": "Orin NX", "compute_capability": "8.7"})


# ------------------------------------------------------------------ Jetson
def test_parse_tegra_release():
    # the first line of /etc/nv_tegra_release on JetPack 6.0 (L4T 36.3) as NVIDIA ships it
    text = "# R36 (release), REVISION: 3.0, GCID: 36191598, BOARD: generic, EABI: aarch64, DATE: Mon May  6 17:34:21 UTC 2024\n"
    assert parse_tegra_release(text) == {"l4t": "36.3.0", "jetpack": "6.0", "board": "generic"}
    r35 = parse_tegra_release("# R35 (release), REVISION: 4.1, GCID: 33958178, BOARD: t186ref, EABI: aarch64, DATE: ...")
    assert r35 == {"l4t": "35.4.1", "jetpack": "5.1.2", "board": "t186ref"}, r35
    assert parse_tegra_release("Ubuntu 22.04") is None
    assert parse_tegra_release("") is None
