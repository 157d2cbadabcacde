"""edgevit export of DINOv3 (RoPE on the patch tokens' Q and K): ONNX Runtime gives timm's / transformers'
outputs, and the graph's attention stays MatMul -> Softmax -> MatMul (or one fused Attention op) with the
rotation (Q * cos + rotate_half(Q) * sin, the same for K, fixed tables as initializers) applied to Q and K
before it; lint finds nothing in it."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch

from edgevit.export.lint import lint_onnx
from edgevit.export.onnx import ExportConfig, export_onnx

from ..conftest import requires_timm, requires_transformers

TOL = 1e-4  # ONNX Runtime against the defining library, fp32
TOKENS, HEAD = 21, 64  # 4 x 4 patches + class + 4 registers; 128 / 2 heads


def _randomize(module):
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in module.named_parameters():
            noise = torch.randn(p.shape, generator=gen)
            scale = 0.2 if p.ndim == 1 else 0.05
            p.copy_(1.0 + 0.2 * noise if p.ndim == 1 and name.endswith("weight") else scale * noise)
    return module.eval()


def _ort_vs(fn, path, batches=(1, 3)) -> float:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 3
    session = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    gen = torch.Generator().manual_seed(3)
    worst = 0.0
    for b in batches:
        x = torch.randn(b, 3, 64, 64, generator=gen)
        with torch.no_grad():
            ref = fn(x).numpy()
        got = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]
        assert got.shape == ref.shape, (got.shape, ref.shape)
        worst = max(worst, float(np.abs(got - ref).max()))
    return worst


def _rotated(proto, tensor: str, producer, consts, hops: int = 4) -> bool:
    """Whether ``tensor`` is (through at most ``hops`` single-input layout / scale ops) the Add of a RoPE
    rotation: Add(Mul(x, cos), Mul(rotate_half(x), sin)), cos and sin (tokens, head_dim) initializers."""
    for _ in range(hops):
        node = producer.get(tensor)
        if node is None:
            return False
        if node.op_type == "Add":
            muls = [producer.get(i) for i in node.input]
            tables = [i for m in muls if m is not None and m.op_type == "Mul" for i in m.input
                      if i in consts and consts[i].shape == (TOKENS, HEAD)]
            return len(tables) == 2
        tensor = next((i for i in node.input if i not in consts), None)  # Mul by the scale, Transpose, Cast
        if tensor is None:
            return False
    return False


def _check_graph(path, attention: str):
    proto = onnx.load(str(path))
    producer = {o: n for n in proto.graph.node for o in n.output}
    consts = {t.name: onnx.numpy_helper.to_array(t) for t in proto.graph.initializer}
    sites = 0
    if attention == "decomposed":
        for sm in (n for n in proto.graph.node if n.op_type == "Softmax"):
            qk = producer[sm.input[0]]
            assert qk.op_type == "MatMul", f"Softmax reads {qk.op_type}, not the Q·K^T MatMul"
            assert any(n.op_type == "MatMul" and n.input[0] == sm.output[0] for n in proto.graph.node)
            assert producer[qk.input[0]].op_type == "Mul", "Q is not pre-scaled"
            for which, tensor in (("Q", qk.input[0]), ("K", qk.input[1])):
                assert _rotated(proto, tensor, producer, consts), f"{which} of {qk.name} is not RoPE-rotated"
            sites += 1
    else:
        for node in (n for n in proto.graph.node if n.op_type == "Attention"):
            for which, tensor in (("Q", node.input[0]), ("K", node.input[1])):
                assert _rotated(proto, tensor, producer, consts), f"{which} of {node.name} is not RoPE-rotated"
            sites += 1
    assert sites == 2, f"{sites} attention sites, want one per block (2)"
    tables = [k for k, v in consts.items() if v.shape == (TOKENS, HEAD)]
    assert len(tables) == 2, f"want one sin and one cos table shared by all blocks: {tables}"
    report = lint_onnx(path, **({"tensorrt_version": "10.14"} if attention == "fused" else {}))  # Attention: >= 10.14
    assert report.ok and not [f for f in report.findings if f.code.startswith("attention")], \
        [f.to_dict() for f in report.findings]


@requires_timm
@pytest.mark.parametrize("attention", ["decomposed", "fused"])
def test_timm_dinov3_exports_and_matches_timm(tmp_path, attention):
    import timm

    ref = _randomize(timm.create_model("vit_small_patch16_dinov3_qkvb", pretrained=False, embed_dim=128, depth=2,
                                       num_heads=2, img_size=64, num_classes=5))
    torch.save(ref.state_dict(), tmp_path / "timm.pth")
    result = export_onnx(tmp_path / "timm.pth", tmp_path / "out", ExportConfig(attention=attention, batch=(1, 2, 8)),
                         model_overrides={"num_heads": 2, "img_size": 64, "pool": "mean"})
    assert result.verification["passed"], result.verification
    err = _ort_vs(ref, result.onnx_path)
    assert err <= TOL, f"timm DINOv3 / {attention}: ONNX Runtime vs timm max abs error {err:.3g} > {TOL}"
    _check_graph(result.onnx_path, attention)
    assert result.manifest.model.config["rope"] == "dinov3" and result.manifest.model.config["pos_embed"] == "none"


@requires_transformers
def test_hf_dinov3_directory_exports_and_matches_pooler_output(tmp_path):
    from transformers import DINOv3ViTConfig, DINOv3ViTModel

    torch.manual_seed(0)
    hf = _randomize(DINOv3ViTModel(DINOv3ViTConfig(hidden_size=128, intermediate_size=512, num_hidden_layers=2,
                                                   num_attention_heads=2, image_size=64, patch_size=16,
                                                   num_register_tokens=4)))
    hf.save_pretrained(tmp_path / "hf")
    result = export_onnx(tmp_path / "hf", tmp_path / "out", ExportConfig(batch=(1, 2, 8)))
    assert result.verification["passed"], result.verification
    err = _ort_vs(lambda x: hf(pixel_values=x).pooler_output, result.onnx_path)
    assert err <= TOL, f"HF DINOv3ViTModel: ONNX Runtime vs pooler_output max abs error {err:.3g} > {TOL}"
    _check_graph(result.onnx_path, "decomposed")
