"""The fusion report on inspector records: NVIDIA's TREx samples, TensorRT 10.10 detailed records from
NVIDIA/TensorRT#4397, ViT records in those shapes with edgevit's node names, TensorRT 11 key names,
names-only layouts and DLA placement (tests/tensorrt/data/README.md says where each comes from)."""

import json
from pathlib import Path

import pytest

from edgevit.errors import TensorRTError
from edgevit.tensorrt.fusion import datatype_precision, fusion_report, is_fused_kernel, layer_group, metadata_nodes
from edgevit.tensorrt.rules import check_realized_precision

DATA = Path(__file__).parent / "data"
BERT = DATA / "trt1010_bert_issue4397_detailed.json"
VIT = DATA / "vit_depth3_shaped_detailed.json"


@pytest.mark.parametrize("text, expected", [
    ("Row major linear FP32", "fp32"), ("Half", "fp16"), ("Int8", "int8"), ("Channel major FP16 format", "fp16"),
    ("BFloat16", "bf16"), ("FP8 E4M3", "fp8"), ("Float", "fp32"), (None, None),
])
def test_datatype_precision(text, expected):
    assert datatype_precision(text) == expected


def test_layer_group():
    assert layer_group("/blocks.3/attn/MatMul") == "blocks.3"
    assert layer_group("features.12.conv.0.0.weight + QuantizeLinear_8") == "features.12"
    assert layer_group("/encoder/layers.9/pos_ff/Add") == "layers.9"
    assert layer_group("Conv_0 + Relu_1") == "other"


@pytest.mark.parametrize("metadata, nodes", [
    ("[ONNX Layer: blocks.0.attn.softmax][ONNX Layer: blocks.0.attn.matmul_av]",
     ["blocks.0.attn.softmax", "blocks.0.attn.matmul_av"]),
    ("[ONNX Layer: node_softmax_15][node_matmul_32][node_matmul_31]",  # trtexec --verbose layout
     ["node_softmax_15", "node_matmul_32", "node_matmul_31"]),
    ("", []), (None, []),
])
def test_metadata_nodes(metadata, nodes):
    assert metadata_nodes(metadata) == nodes


@pytest.mark.parametrize("kernel, fused", [
    ("_gemm_mha_v2_0x957a2fe283f77dcf35c142c1390a3e6a", True), ("_gemm_mha_v2_myl3_6", True),
    ("fmha_v2_flash_attention_fp16_64_64_S_32_sm86_kernel", True), ("flash_attention_fwd", True),
    ("__myl_MaxSubExpSumDivCast_0x5b1c0e3a7d2f4c68a9e0b1d2c3f4a5b6", False),
    ("sm80_xmma_gemm_f16f16_f16f16_f16_nn_n_tilesize32x32x64_stage6_warpsize2x2x1_tensor16x8x16", False),
    ("/encoder/layers_2/mha/attn/mha_prob/key/MatMul_myl0_16", False),
])
def test_fused_kernel_names(kernel, fused):
    assert is_fused_kernel(kernel) is fused, kernel


# ------------------------------------------------------------------ TensorRT 10.10 records (NVIDIA/TensorRT#4397)
def test_issue_4397_records_fused_blocks_by_kernel():
    report = fusion_report(BERT.read_text())
    d = report.to_dict()
    fused = {k: v["kernel"] for k, v in d["blocks"].items() if v["fused"]}
    assert fused == {"layers.3": "_gemm_mha_v2_myl0_24", "layers.8": "_gemm_mha_v2_myl0_59"}, d["blocks"]
    assert all(v["tactic"].startswith("_gemm_mha_v2_0x") for k, v in d["blocks"].items() if v["fused"])
    assert [a["layer"] for a in d["attention"]] == ["_gemm_mha_v2_myl0_24", "_gemm_mha_v2_myl0_59"], d["attention"]
    assert d["attention"][0]["groups"] == ["layers.3"] and "/encoder/layers.3/mha/attn/mha_prob/Softmax" in (
        d["attention"][0]["onnx_nodes"])
    assert d["precision_counts"] == {"fp16": 7}, d["precision_counts"]


def test_gemm_whose_name_contains_mha_is_not_fused_attention():
    """Before: '/encoder/layers_2/mha/...MatMul_myl0_16' (a QKV GEMM, sm80_xmma_gemm tactic) counted as fused MHA."""
    report = fusion_report(BERT.read_text())
    assert "layers.2" in report.blocks and report.blocks["layers.2"]["fused"] is not True, report.blocks["layers.2"]
    assert not any("MatMul_myl0_16" in a["layer"] for a in report.attention), report.attention


# ------------------------------------------------------------------ ViT records in those shapes, edgevit node names
def test_vit_blocks_fused_or_not_and_by_which_kernel():
    report = fusion_report(VIT.read_text())
    assert report.fused_attention_blocks == [0, 2], report.blocks
    assert report.unfused_attention_blocks == [1], report.blocks
    assert report.blocks["blocks.0"]["kernel"] == "_gemm_mha_v2_myl0_2"
    assert report.blocks["blocks.2"]["kernel"] == "_gemm_mha_v2_myl0_172"  # the trtexec-style Metadata record
    assert report.blocks["blocks.1"]["unfused_kernels"] == ["__myl_MaxSubExpSumDivCast_myl0_5"], report.blocks
    assert "attention NOT fused in blocks [1]" in report.summary()


def test_unfused_myelin_softmax_is_not_fused_attention():
    """Before: a Myelin kernel whose metadata names a Softmax counted as fused attention ("myelin" kind)."""
    report = fusion_report(VIT.read_text())
    assert "__myl_MaxSubExpSumDivCast_myl0_5" not in [a["layer"] for a in report.attention], report.attention
    assert len(report.attention) == 2


def test_tensorrt_11_key_names():
    """TensorRT 11's detailed records may name a tensor's type 'DataType' (or 'Datatype'): same report."""
    text = VIT.read_text()
    ten = fusion_report(text)
    for key in ("DataType", "Datatype"):
        eleven = fusion_report(text.replace('"Format/Datatype"', f'"{key}"'))
        assert eleven.precision_counts == ten.precision_counts == {"fp16": 7, "fp32": 2}, (key, eleven.precision_counts)
        assert eleven.blocks == ten.blocks


def test_bare_list_of_layers():
    layers = json.loads(VIT.read_text())["Layers"]
    assert fusion_report(layers).blocks == fusion_report(VIT.read_text()).blocks


def test_iattention_layer_is_fused():
    layer = {"Name": "blocks.0.attn.attention", "LayerType": "Attention", "TacticName": "some_kernel_0x1",
             "Metadata": "[ONNX Layer: blocks.0.attn.attention]",
             "Inputs": [{"Name": "q", "Format/Datatype": "Half"}], "Outputs": []}
    report = fusion_report({"Layers": [layer]})
    assert report.fused_attention_blocks == [0] and report.attention[0]["kind"] == "iattention", report.attention


# ------------------------------------------------------------------ NVIDIA's TREx samples
def test_fusion_report_mobilenet_qat_detailed():
    report = fusion_report((DATA / "trex_mobilenet.qat.onnx.engine.graph.json").read_text())
    d = report.to_dict()
    assert d["detail"] == "detailed" and d["num_layers"] == 73, d
    assert d["fused_attention_layers"] == 0 and d["fused_attention_blocks"] == [] and d["blocks"] == {}, d["attention"]
    counts = d["precision_counts"]
    assert counts.get("int8", 0) >= 50 and counts.get("fp16", 0) >= 1 and counts.get("fp32", 0) >= 1, counts
    assert d["precision_by_group"]["features.3"].get("int8", 0) >= 2, d["precision_by_group"].get("features.3")
    check_realized_precision(report, "int8")


def test_fusion_report_resnet_fp16_detailed():
    report = fusion_report(json.loads((DATA / "trex_resnet_a100_fp16.onnx.engine.graph.json").read_text()))
    assert report.num_layers == 36 and report.precision_counts.get("fp16", 0) >= 20, report.precision_counts
    assert report.attention == [], report.attention
    check_realized_precision(report, "fp16")


def test_fusion_report_names_only_with_myelin_regions():
    report = fusion_report((DATA / "trex_notebooks_layer_info.json").read_text())
    assert report.detail == "names_only" and report.num_layers == 86
    assert report.myelin_regions == 2, f"expected the 2 ForeignNode regions, got {report.myelin_regions}"
    assert report.attention == [] and report.precision_counts == {}
    assert "86 layers (names_only)" in report.summary()


def test_realized_precision_refuses_fp32_engine_labelled_fp16():
    fp32 = fusion_report((DATA / "trex_resnet_a100_fp16.onnx.engine.graph.json").read_text()
                         .replace("FP16", "FP32").replace('"Half"', '"Float"'))
    assert set(fp32.precision_counts) == {"fp32"}, fp32.precision_counts
    with pytest.raises(TensorRTError, match="refusing to write an fp32 engine"):
        check_realized_precision(fp32, "fp16")
    check_realized_precision(fp32, "fp32")


def test_names_only_vit_kernels():
    """Names-only: layer names of a ViT-B encoder built through Myelin, from a public per-layer profile
    (see data/README.md), in the names-only layout of NVIDIA's sample. Only the MHA kernel is fused attention."""
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
    assert [(a["layer"], a["kind"]) for a in report.attention] == [("_gemm_mha_v2_myl3_6", "fused_mha")]
    assert report.myelin_regions == 0, "Myelin kernels are not counted as regions"


def test_names_only_region_is_unknown_not_fused():
    layers = ["{ForeignNode[blocks.0.attn.qkv...blocks.2.attn.softmax]}"]
    report = fusion_report({"Layers": layers})
    assert report.attention == [] and report.blocks["blocks.2"]["fused"] is None, report.blocks


def test_fusion_report_rejects_non_json():
    with pytest.raises(ValueError, match="not JSON"):
        fusion_report("not json")
    with pytest.raises(ValueError, match="'Layers' list"):
        fusion_report({"Bindings": []})


# ------------------------------------------------------------------ DLA placement (item 5)
def test_dla_placement_from_the_inspector():
    """A DLA build's layers in the names trtexec prints for DLA engines (NVIDIA/TensorRT#3143): the DLA
    subgraph is a ForeignNode, the reformat layers to/from NVM are transfers, the rest runs on the GPU."""
    layers = ["images to nvm", "{ForeignNode[patch_embed.proj...blocks.0.mlp.fc2]}", "logits from nvm",
              "images copy finish", "head"]
    p = fusion_report({"Layers": layers}, dla=True).placement
    assert p == {"dla": ["{ForeignNode[patch_embed.proj...blocks.0.mlp.fc2]}"], "gpu": ["head"], "transfer": 3}, p
    detailed = [{"Name": "{ForeignNode[blocks.0.attn.qkv...head]}", "LayerType": "Myelin"},
                {"Name": "{ForeignNode[patch_embed.proj]}", "LayerType": "DLA"}]
    p = fusion_report({"Layers": detailed}, dla=True).placement
    assert p["dla"] == ["{ForeignNode[patch_embed.proj]}"] and p["gpu"] == ["{ForeignNode[blocks.0.attn.qkv...head]}"]
    assert fusion_report({"Layers": layers}).placement == {}  # not a DLA build: no placement


# ------------------------------------------------------------------ recall (issue 19 item 6)
def _vit_with_block1(*layers):
    """The ViT records with block 1's four attention layers (matmul_qk, softmax, matmul_av and its qkv GEMM
    kept) replaced by ``layers``."""
    doc = json.loads(VIT.read_text())
    keep = [lay for lay in doc["Layers"] if not (lay["Name"].startswith("blocks.1.attn.matmul")
                                                  or lay["Name"].startswith("__myl_MaxSubExp"))]
    at = next(i for i, lay in enumerate(keep) if lay["Name"].startswith("blocks.1.attn.qkv")) + 1
    doc["Layers"] = keep[:at] + list(layers) + keep[at:]
    return doc


def _layer(name, tactic, metadata, ltype="kgen"):
    return {"Name": name, "LayerType": ltype, "TacticName": tactic, "Metadata": metadata,
            "Inputs": [{"Name": "x", "Format/Datatype": "Half"}], "Outputs": [{"Name": "y", "Format/Datatype": "Half"}]}


CHAIN_1 = "[ONNX Layer: blocks.1.attn.matmul_qk][ONNX Layer: blocks.1.attn.softmax][ONNX Layer: blocks.1.attn.matmul_av]"


@pytest.mark.parametrize("tactic, fused", [
    ("sm90_fmha_v2_flash_attention_fp16_64_64_S_qkv_64_sm90_kernel_nl_tiled", True),  # fmha / flash_attention inside
    ("kgen_mha_0x1b2c3d4e5f60718293a4b5c6d7e8f901", True),
    ("mha_fwd_sm90_bf16", True), ("xmma_mha_v2_sm86", True),                           # word-bounded mha
    ("sm80_xmma_gemm_f16f16_f16f16_f16_nn_n_tilesize32x32x64_stage6_warpsize2x2x1_tensor16x8x16", False),
    ("__myl_MaxSubExpSumDivCast_0x5b1c0e3a7d2f4c68a9e0b1d2c3f4a5b6", False),
    ("sm80_gemm_dmhax_nn", False),                                                      # "mha" inside a word
])
def test_tactic_names_matched_as_nvidias_reader_does(tactic, fused):
    """Before: only the prefixes _gemm_mha_v / fmha / flash counted, so sm90_fmha_v2_flash_attention_... was a
    plain kernel. NVIDIA's trt_perf/data.py (TensorRT 11.1) matches fmha, flash_attention, kgen_mha, word-bounded mha."""
    assert is_fused_kernel(tactic, tactic=True) is fused, tactic
    # Metadata naming the softmax only: the tactic name alone decides
    report = fusion_report(_vit_with_block1(_layer("blocks.1.attn.softmax_myl0_4", tactic,
                                                   "[ONNX Layer: blocks.1.attn.softmax]")))
    assert (1 in report.fused_attention_blocks) is fused, (tactic, report.blocks["blocks.1"])
    assert (1 in report.unfused_attention_blocks) is not fused, (tactic, report.blocks["blocks.1"])


def test_names_only_user_names_with_mha_are_not_fused():
    """A names-only layer name carries the user's node names: a word-bounded 'mha' there is not a kernel."""
    assert is_fused_kernel("/encoder/layers_2/mha/attn/mha_prob/key/MatMul_myl0_16") is False


def test_generated_kernel_covering_the_whole_chain_is_fused():
    """Before: a __myl_ kernel whose Metadata runs matmul_qk, softmax and matmul_av of block 1 was 'NOT fused'."""
    myl = _layer("__myl_MatMulMaxSubExpSumDivMatMul_myl0_4", "__myl_MatMulMaxSubExpSumDivMatMul_0x7e6d5c4b3a29180f", CHAIN_1)
    report = fusion_report(_vit_with_block1(myl))
    assert report.fused_attention_blocks == [0, 1, 2], report.blocks
    assert report.unfused_attention_blocks == [], report.blocks
    assert report.blocks["blocks.1"]["kernel"] == myl["Name"]
    assert [a["kind"] for a in report.attention if a["blocks"] == [1]] == ["chain"], report.attention
    assert "NOT fused" not in report.summary(), report.summary()


def test_part_of_the_chain_in_a_generated_kernel_is_not_fused():
    """QK and softmax in one __myl_ kernel, AV in a GEMM: the chain is split across kernels."""
    qk_sm = _layer("__myl_MatMulMaxSubExpSumDiv_myl0_4", "__myl_MatMulMaxSubExpSumDiv_0x11",
                   "[ONNX Layer: blocks.1.attn.matmul_qk][ONNX Layer: blocks.1.attn.softmax]")
    av = _layer("blocks.1.attn.matmul_av_myl0_5", "sm80_xmma_gemm_f16f16_f16f16_f16_nn_n", "[ONNX Layer: blocks.1.attn.matmul_av]", "gemm")
    report = fusion_report(_vit_with_block1(qk_sm, av))
    assert report.unfused_attention_blocks == [1], report.blocks


def test_attention_inside_a_region_is_unknown_never_not_fused():
    """Before: the report had no 'unknown'; a block whose softmax hides in a Myelin region is neither fused nor
    split as far as the records show, and must be reported so."""
    region = {"Name": "{ForeignNode[blocks.1.attn.matmul_qk...blocks.1.attn.matmul_av]}", "LayerType": "Myelin",
              "Metadata": CHAIN_1, "Inputs": [], "Outputs": []}
    report = fusion_report(_vit_with_block1(region))
    d = report.to_dict()
    assert d["unknown_attention_blocks"] == [1] and d["unfused_attention_blocks"] == [], d["blocks"]
    assert "attention unknown in blocks [1]" in report.summary() and "NOT fused" not in report.summary(), report.summary()
