"""Graphs of dynamic height and width (`edgevit export --img-size MIN:MAX`) for RoPE models: DINOv3 (no position
table) and EVA-02 (a learned table, resampled as a plain ViT's, and RoPE). The rotation tables are computed in
the forward from the input's (rows, cols) grid, each axis on its own, so the graph runs at every size of the
range, non-square ones included, and gives what timm's ``dynamic_img_size=True`` model gives at that size
(EVA-02's table resampled bilinearly without antialias, the graph's mode, as in test_dynamic_size)."""

import functools
import json

import numpy as np
import pytest
import torch

import edgevit
from edgevit.export.lint import lint_onnx
from edgevit.models.rope import dinov3_tables, eva_tables

from .._fixtures import assert_exit, run_cli
from ..conftest import requires_timm
from ..models.test_families import _randomize

EAGER_TOL = 1e-5  # fp32 edgevit vs timm, same maths
ORT_TOL = 1e-4  # fp32 ONNX Runtime vs PyTorch eager: reduction order only (the bound)
TABLE_TOL = 1e-5  # float32 sin / cos of angles up to ~16 rad

# name -> timm architecture, its create_model size, load_model overrides (what a state dict cannot tell), the
# CLI's flags for them, prefix tokens, the export's range and the sizes checked (own, non-square, largest)
FAMILIES = {
    "dinov3": dict(arch="vit_small_patch16_dinov3", create=dict(img_size=224),
                   load=dict(num_heads=2, img_size=224, pool="mean"), flags=["--num-heads", "2", "--pool", "mean"],
                   prefix=5, range=(160, 448), sizes=[(224, 224), (160, 288), (448, 448)]),
    "eva02": dict(arch="eva02_tiny_patch14_224", create={}, load=dict(num_heads=2), flags=["--num-heads", "2"],
                  prefix=1, range=(168, 448), sizes=[(224, 224), (168, 294), (448, 448)]),
}


def _timm(family: str, monkeypatch):
    """timm's model with dynamic_img_size=True (random weights moved off init, width 128, depth 2); EVA-02's
    table resampled bilinearly without antialias, as the graph does."""
    import timm
    import timm.models.eva as eva

    monkeypatch.setattr(eva, "resample_abs_pos_embed",
                        functools.partial(eva.resample_abs_pos_embed, interpolation="bilinear", antialias=False))
    spec = FAMILIES[family]
    return _randomize(timm.create_model(spec["arch"], pretrained=False, embed_dim=128, depth=2, num_heads=2,
                                        num_classes=0, dynamic_img_size=True, **spec["create"]))


def _images(h: int, w: int) -> torch.Tensor:
    return torch.randn(2, 3, h, w, generator=torch.Generator().manual_seed(h * 1000 + w))


@requires_timm
@pytest.mark.parametrize("grid", [(4, 4), (10, 18), (28, 13)])
def test_tables_from_a_grid_are_timms_for_that_grid(grid):
    """float32 tables of a (rows, cols) grid, as the forward computes them, against timm's get_embed(shape):
    DINOv3 normalises each axis by its own length, EVA-02 rescales each to its 16 x 16 reference grid."""
    from timm.layers.pos_embed_sincos import RotaryEmbeddingCat, RotaryEmbeddingDinoV3

    head_dim, prefix = 64, 3
    dino = RotaryEmbeddingDinoV3(head_dim, temperature=100.0, rotate_half=True).eval()
    eva = RotaryEmbeddingCat(head_dim, temperature=10000.0, in_pixels=False, ref_feat_shape=(16, 16)).eval()
    errs = {}
    for name, ours, theirs in (("dinov3", dinov3_tables, dino), ("eva02", eva_tables, eva)):
        sin, cos = ours(grid, head_dim, theirs.temperature, prefix, dtype=torch.float32)
        assert sin.shape == (prefix + grid[0] * grid[1], head_dim), sin.shape
        assert torch.equal(sin[:prefix], torch.zeros_like(sin[:prefix])) and torch.equal(cos[:prefix], torch.ones_like(cos[:prefix]))
        t_sin, t_cos = theirs.get_embed(shape=list(grid)).chunk(2, dim=-1)
        errs[name] = max((sin[prefix:] - t_sin).abs().max().item(), (cos[prefix:] - t_cos).abs().max().item())
    assert max(errs.values()) <= TABLE_TOL, f"grid {grid}: max abs error vs timm's get_embed(shape) {errs}"


@requires_timm
@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_rope_model_at_any_size_is_timms_dynamic_img_size(tmp_path, family, monkeypatch):
    spec = FAMILIES[family]
    ref = _timm(family, monkeypatch)
    torch.save(ref.state_dict(), tmp_path / "timm.pth")
    model = edgevit.load_model(tmp_path / "timm.pth", dynamic_size="bilinear", **spec["load"])
    assert model.config.rope == ("dinov3" if family == "dinov3" else "eva"), model.config
    errs, transposed = {}, {}
    for h, w in spec["sizes"]:
        x = _images(h, w)
        with torch.no_grad():
            want = ref.forward_features(x)[:, spec["prefix"]:]
            errs[(h, w)] = max((ref(x) - model(x)).abs().max().item(), (want - model.forward_tokens(x)).abs().max().item())
            if h != w:  # the axes matter: with the rows' and columns' roles swapped the tokens are far from timm's
                transposed[(h, w)] = (want - _with_grid_transposed(model, monkeypatch).forward_tokens(x)).abs().max().item()
    assert max(errs.values()) <= EAGER_TOL, f"{family}: max abs error vs timm dynamic_img_size per size {errs}"
    assert min(transposed.values()) > 100 * EAGER_TOL, f"{family}: a transposed grid is not caught: {transposed}"


def _with_grid_transposed(model, monkeypatch):
    """``model`` whose rope is handed (cols, rows) instead of (rows, cols): what a mix-up of the axes would give."""
    use_grid = model.rope.use_grid
    monkeypatch.setattr(model.rope, "use_grid", lambda grid: use_grid(grid and (grid[1], grid[0])))
    return model


@requires_timm
@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_export_with_a_size_range_runs_every_size_like_timm(tmp_path, family, monkeypatch):
    """`edgevit export CKPT --img-size MIN:MAX` on a saved checkpoint: one graph, ONNX Runtime at the model's own
    size, a non-square size and the largest against timm's tokens; no Reshape bakes in the grid."""
    spec = FAMILIES[family]
    ref = _timm(family, monkeypatch)
    torch.save(ref.state_dict(), tmp_path / "timm.pth")
    out, (lo, hi) = tmp_path / "export", spec["range"]
    res = run_cli("export", tmp_path / "timm.pth", "-o", out, *spec["flags"], "--img-size", f"{lo}:{hi}",
                  "--output-kind", "tokens")
    assert_exit(res, 0)
    assert f"height, width {lo}..{hi} px" in res.stdout and f"at {hi}x{hi}" in res.stdout, res.stdout
    manifest = json.loads((out / "edgevit.json").read_text())
    spec_in = manifest["inputs"][0]
    assert spec_in["size_range"] == {"height": [lo, hi], "width": [lo, hi]}, spec_in
    assert spec_in["dynamic_axes"] == {"0": "batch", "2": "height", "3": "width"}, spec_in

    import onnxruntime as ort

    session = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    patch = 16 if family == "dinov3" else 14
    errs = {}
    for h, w in spec["sizes"]:
        x = _images(h, w)
        with torch.no_grad():
            want = ref.forward_features(x)[:, spec["prefix"]:].numpy()
        got = session.run(None, {"images": x.numpy()})[0]
        assert got.shape == want.shape == (2, (h // patch) * (w // patch), 128), (got.shape, want.shape)
        errs[(h, w)] = float(np.abs(got - want).max())
    assert max(errs.values()) <= ORT_TOL, f"{family}: ONNX Runtime vs timm dynamic_img_size per size {errs} > {ORT_TOL}"
    report = lint_onnx(out / "model.onnx")
    assert "baked-size" not in report.codes() and report.ok, [f.to_dict() for f in report.findings]
    ranges = _range_types(out / "model.onnx")
    assert ranges and set(ranges.values()) == {"INT64"}, f"the grid's Range ops must count in int64 (ONNX's Range has " \
        f"no float16: a float one breaks the fp16 graph): {ranges}"


def _range_types(path) -> dict:
    """{Range node: its output's element type} after ONNX shape inference."""
    import onnx

    proto = onnx.shape_inference.infer_shapes(onnx.load(str(path)))
    types = {vi.name: vi.type.tensor_type.elem_type for vi in proto.graph.value_info}
    return {n.name: onnx.TensorProto.DataType.Name(types.get(n.output[0], 0)) for n in proto.graph.node
            if n.op_type == "Range"}


@pytest.mark.parametrize("kwargs, allowed", [
    (dict(rope="dinov3", pos_embed="none"), True),  # DINOv3: RoPE only
    (dict(rope="eva"), True),  # EVA-02: a learned table and RoPE
    (dict(rel_pos_bias="shared"), False),  # BEiT
    (dict(rel_pos_bias="decomposed", window_size=2, class_token=False, pool="mean"), True),  # SAM
    (dict(pos_embed="sincos"), False),
    (dict(pos_embed="none"), False),  # no positions at all: nothing known to carry over
])
def test_which_positions_take_any_size(kwargs, allowed):
    from edgevit.models.vit import ViTConfig

    def build():
        return ViTConfig(img_size=64, patch_size=16, embed_dim=64, depth=1, num_heads=1, dynamic_size="bilinear",
                         **kwargs)

    if allowed:
        assert build().dynamic_size == "bilinear"
    else:
        with pytest.raises(ValueError, match="--img-size PX"):
            build()


def test_a_one_size_model_keeps_its_fixed_tables():
    """dynamic_size 'none': the rotation reads the buffers built once (no grid handed over)."""
    from edgevit.models.vit import ViTConfig, VisionTransformer

    cfg = ViTConfig(img_size=64, patch_size=16, embed_dim=128, depth=1, num_heads=2, num_classes=0, reg_tokens=4,
                    pos_embed="none", rope="dinov3", pool="mean")
    for dynamic in ("none", "bilinear"):
        model = VisionTransformer(cfg.replace(dynamic_size=dynamic)).eval()
        with torch.no_grad():
            model(torch.randn(1, 3, 64, 64))
        sin, cos = model.rope.tables()
        assert (model.rope.grid is None) == (dynamic == "none"), (dynamic, model.rope.grid)
        assert (sin is model.rope.sin) == (dynamic == "none")
        err = max((sin - model.rope.sin).abs().max().item(), (cos - model.rope.cos).abs().max().item())
        assert err <= TABLE_TOL, f"dynamic_size={dynamic!r}: tables at the model's own grid vs its buffers {err:.3g}"


def test_info_says_how_a_rope_model_takes_any_size():
    """Before: a DINOv3 model with a size range read "any size (bilinear resampling)": it has no table to resample."""
    from edgevit.models.info import _positions
    from edgevit.models.vit import ViTConfig

    cfg = ViTConfig(embed_dim=64, depth=1, num_heads=2, reg_tokens=4, pos_embed="none", rope="dinov3",
                    dynamic_size="bilinear")
    assert _positions(cfg) == "no table, dinov3 RoPE on Q and K, any size (RoPE tables from the grid)", _positions(cfg)
