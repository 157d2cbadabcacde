"""BEiT, BEiT v2 and Data2Vec-vision load exactly: the same weights give timm's / transformers' outputs.

Small random models in the real key layouts (no downloads), every weight moved away from its initial
value (the relative position tables start at zero: a missing bias would pass unnoticed otherwise).
"""

import warnings

import pytest
import torch

import edgevit
from edgevit.errors import CheckpointError, EdgeVitWarning
from edgevit.models import relpos

from ..conftest import requires_timm, requires_transformers
from .test_families import _randomize

TOL = 1e-5
SMALL = dict(embed_dim=128, depth=2, num_heads=2, img_size=64)


def _maxerr(a, b) -> float:
    assert a.shape == b.shape, f"shapes differ: {tuple(a.shape)} vs {tuple(b.shape)}"
    return (a - b).abs().max().item()


def _load(path, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("error", EdgeVitWarning)  # the table tells the heads and the size: nothing is guessed
        return edgevit.load_model(path, **kw)


def _strong_tables(model: torch.nn.Module) -> torch.nn.Module:
    """Relative position tables of order 1 (randomised ones are ~0.05): the bias then reshapes the
    attention, so a bias that is missing, misindexed or transposed moves the outputs far beyond TOL."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("relative_position_bias_table"):
                p.mul_(20.0)
    return model


def _timm(arch="beit_base_patch16_224", **kw):
    import timm

    return _strong_tables(_randomize(timm.create_model(arch, pretrained=False, **{**SMALL, **kw})))


# ------------------------------------------------------------------------------------- the index
@pytest.mark.parametrize("grid", [1, 2, 3, 4, 7])
def test_relative_position_index_is_timms_and_transformers(grid):
    from edgevit.models.relpos import relative_position_index

    ours = relative_position_index(grid)
    try:
        from timm.models.beit import gen_relative_position_index
    except ImportError:
        gen_relative_position_index = None
    if gen_relative_position_index is not None:
        assert torch.equal(ours, gen_relative_position_index((grid, grid))), f"grid {grid}: differs from timm's"
    try:
        from transformers.models.beit.modeling_beit import BeitRelativePositionBias
    except ImportError:
        BeitRelativePositionBias = None
    if BeitRelativePositionBias is not None:
        theirs = BeitRelativePositionBias.generate_relative_position_index((grid, grid))
        assert torch.equal(ours, theirs), f"grid {grid}: differs from transformers'"
    assert int(ours.max()) == relpos.table_rows(grid) - 1 and relpos.grid_of_table(relpos.table_rows(grid)) == grid


def test_a_table_of_no_square_grid_is_refused():
    with pytest.raises(ValueError, match="not \\(2g-1\\)\\^2 \\+ 3"):
        relpos.grid_of_table(50)


# ------------------------------------------------------------------------------------------- timm
TIMM = {
    "beit-classifier": ("beit_base_patch16_224", dict(num_classes=5), "logits"),
    "beit-headless": ("beit_base_patch16_224", dict(num_classes=0), "features"),
    "beitv2-classifier": ("beitv2_base_patch16_224", dict(num_classes=5), "logits"),
    "beitv2-headless": ("beitv2_base_patch16_224", dict(num_classes=0), "features"),
    "beit-shared-table": ("beit_base_patch16_224", dict(num_classes=5, use_rel_pos_bias=False,
                                                        use_shared_rel_pos_bias=True), "logits"),
    "beit-abs-pos-and-table": ("beit_base_patch16_224", dict(num_classes=5, use_abs_pos_emb=True), "logits"),
}


@requires_timm
@pytest.mark.parametrize("case", sorted(TIMM))
def test_timm_beit_gives_timm_outputs(tmp_path, case):
    arch, kwargs, kind = TIMM[case]
    ref = _timm(arch, **kwargs)
    torch.save(ref.state_dict(), tmp_path / "timm.pth")
    model = _load(tmp_path / "timm.pth")
    cfg = model.config
    assert (model.output_kind, cfg.num_heads, cfg.img_size) == (kind, 2, 64), (model.output_kind, cfg)
    assert cfg.rel_pos_bias == ("shared" if "shared" in case else "block"), cfg.rel_pos_bias
    x = torch.randn(2, 3, 64, 64)
    errs = {}
    with torch.no_grad():
        want = ref(x)
        feats = ref.forward_features(x)
        errs["tokens"] = _maxerr(feats[:, 1:], model.forward_tokens(x))
        errs["pre_logits"] = _maxerr(ref.forward_head(feats, pre_logits=True),
                                     model.forward_head(model.forward_features(x), pre_logits=True))
        for impl in ("sdpa", "math"):
            errs[impl] = _maxerr(want, model.set_attn_impl(impl)(x))
    assert max(errs.values()) <= TOL, f"{case} ({arch}): max abs error vs timm {errs} > {TOL}"


@requires_timm
def test_stored_index_buffers_are_checked_and_dropped(tmp_path):
    from timm.models.beit import gen_relative_position_index

    ref = _timm(num_classes=5)
    state = ref.state_dict()
    for b in range(2):  # the original (unilm) releases store the index
        state[f"blocks.{b}.attn.relative_position_index"] = gen_relative_position_index((4, 4))
    torch.save(state, tmp_path / "unilm.pth")
    model = _load(tmp_path / "unilm.pth")
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        err = _maxerr(ref(x), model(x))
    assert err <= TOL, f"max abs error vs timm {err:.2e}"
    assert not any("relative_position" in k for k in model.state_dict()), "the index is computed, not loaded"

    state["blocks.1.attn.relative_position_index"][3, 5] += 1
    torch.save(state, tmp_path / "damaged.pth")
    with pytest.raises(CheckpointError, match=r"blocks\.1\.attn\.relative_position_index .*4x4 patch grid"):
        edgevit.load_model(tmp_path / "damaged.pth")


@requires_timm
def test_another_image_size_is_refused_not_resampled(tmp_path):
    torch.save(_timm(num_classes=5).state_dict(), tmp_path / "timm.pth")
    with pytest.raises(CheckpointError, match=r"pos_bias\.table"):
        edgevit.load_model(tmp_path / "timm.pth", img_size=96)
    state = {"blocks.0.attn.pos_bias.table": torch.zeros(relpos.table_rows(4), 2)}
    relpos.check_grid(state, 4, 16)
    with pytest.raises(ValueError, match=r"4x4 patch grid \(img_size 64\).*load it at img_size 64"):
        relpos.check_grid(state, 6, 16)


@requires_timm
def test_beit_round_trips_through_our_format_and_says_its_family(tmp_path):
    from edgevit.models.info import model_family

    torch.save(_timm(num_classes=5).state_dict(), tmp_path / "timm.pth")
    model = _load(tmp_path / "timm.pth")
    assert model_family(model.config) == "beit"
    loaded = _load(edgevit.save_model(model, tmp_path / "m.safetensors"))
    assert loaded.config == model.config
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))


@requires_timm
@pytest.mark.parametrize("shared", [False, True])
def test_export_adds_the_bias_before_the_softmax_and_onnxruntime_reproduces_it(tmp_path, shared):
    import numpy as np
    import onnx
    import onnxruntime as ort

    from edgevit.export import export_onnx

    kw = dict(use_rel_pos_bias=False, use_shared_rel_pos_bias=True) if shared else {}
    torch.save(_timm(num_classes=5, **kw).state_dict(), tmp_path / "timm.pth")
    model = _load(tmp_path / "timm.pth")
    result = export_onnx(model, tmp_path / "out")
    graph = onnx.load(str(result.onnx_path)).graph
    producer = {o: n for n in graph.node for o in n.output}
    chains = []
    for sm in (n for n in graph.node if n.op_type == "Softmax"):
        add = producer.get(sm.input[0])
        qk = producer.get(add.input[0]) if add is not None else None
        av = [n.op_type for n in graph.node if sm.output[0] in n.input]
        chains.append((qk.op_type if qk else None, add.op_type if add else None, "Softmax", *av))
    assert chains == [("MatMul", "Add", "Softmax", "MatMul")] * 2, chains
    session = ort.InferenceSession(str(result.onnx_path), providers=["CPUExecutionProvider"])
    x = torch.randn(3, 3, 64, 64)
    (got,) = session.run(None, {session.get_inputs()[0].name: x.numpy()})
    with torch.no_grad():
        want = model(x).numpy()
    err = float(np.abs(got - want).max())
    assert err <= 1e-4, f"ONNX Runtime vs eager max abs error {err:.2e} > 1e-4"


# ------------------------------------------------------------------------------------ transformers
def _hf(cls_name: str, config_name: str, **kw):
    import transformers

    base = dict(hidden_size=128, num_hidden_layers=2, num_attention_heads=2, image_size=64, patch_size=16,
                intermediate_size=320, use_relative_position_bias=True)
    config = getattr(transformers, config_name)(**{**base, **kw})
    return _strong_tables(_randomize(getattr(transformers, cls_name)(config)))


# name -> (model class, config class, config kwargs, reference output, expected output kind)
HF = {
    "BeitForImageClassification": ("BeitForImageClassification", "BeitConfig", {"num_labels": 5}, "logits", "logits"),
    "BeitModel": ("BeitModel", "BeitConfig", {}, "pooler_output", "features"),
    "Data2VecVisionForImageClassification": ("Data2VecVisionForImageClassification", "Data2VecVisionConfig",
                                             {"num_labels": 5}, "logits", "logits"),
    "BeitModel-shared-table": ("BeitModel", "BeitConfig", {"use_relative_position_bias": False,
                                                           "use_shared_relative_position_bias": True},
                               "pooler_output", "features"),
    "BeitForImageClassification-cls-abs-pos-no-layerscale": (
        "BeitForImageClassification", "BeitConfig",
        {"num_labels": 5, "use_mean_pooling": False, "use_absolute_position_embeddings": True,
         "layer_scale_init_value": 0.0}, "logits", "logits"),
    "BeitForImageClassification-abs-pos-only": (
        "BeitForImageClassification", "BeitConfig",
        {"num_labels": 5, "use_relative_position_bias": False, "use_absolute_position_embeddings": True},
        "logits", "logits"),
}


@requires_transformers
@pytest.mark.parametrize("case", sorted(HF))
def test_hf_beit_gives_transformers_outputs(tmp_path, case):
    cls_name, config_name, kw, output, kind = HF[case]
    ref = _hf(cls_name, config_name, **kw)
    ref.save_pretrained(tmp_path)
    model = _load(tmp_path)
    assert model.output_kind == kind, f"{case}: output kind {model.output_kind}, expected {kind}"
    if kind == "logits":
        assert model.labels == [ref.config.id2label[i] for i in range(5)]
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        want = getattr(ref(pixel_values=x), output)
        errs = {impl: _maxerr(want, model.set_attn_impl(impl)(x)) for impl in ("sdpa", "math")}
    assert max(errs.values()) <= TOL, f"{case}: max abs error vs transformers {output} {errs} > {TOL}"


@requires_transformers
def test_hf_bare_safetensors_loads_too(tmp_path):
    ref = _hf("BeitForImageClassification", "BeitConfig", num_labels=5)
    ref.save_pretrained(tmp_path)
    model = _load(tmp_path / "model.safetensors")
    assert (model.config.num_heads, model.config.img_size, model.config.norm_eps) == (2, 64, 1e-12), model.config
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        err = _maxerr(ref(pixel_values=x).logits, model(x))
    assert err <= TOL, f"bare model.safetensors: max abs error vs transformers {err:.2e} > {TOL}"


@requires_transformers
@pytest.mark.parametrize("shared", [False, True])
def test_transformers_in_memory_state_dict_loads_too(tmp_path, shared):
    # transformers 5 holds BEiT as layers.N.attention.q_proj / shared_position_bias (save_pretrained renames them)
    kw = dict(use_relative_position_bias=False, use_shared_relative_position_bias=True) if shared else {}
    ref = _hf("BeitModel", "BeitConfig", **kw)
    torch.save(ref.state_dict(), tmp_path / "w.pth")
    model = _load(tmp_path / "w.pth")
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        err = _maxerr(ref(pixel_values=x).pooler_output, model(x))
    assert err <= TOL, f"in-memory layout (shared={shared}): max abs error vs transformers {err:.2e} > {TOL}"


@requires_transformers
def test_hf_index_buffers_of_older_transformers_are_checked_and_dropped(tmp_path):
    from safetensors.torch import save_file

    from edgevit.models.relpos import relative_position_index

    ref = _hf("Data2VecVisionForImageClassification", "Data2VecVisionConfig", num_labels=5)
    state = {k: v.contiguous() for k, v in ref.state_dict().items()}
    key = "data2vec_vision.encoder.layer.{}.attention.attention.relative_position_bias.relative_position_index"
    for b in range(2):
        state[key.format(b)] = relative_position_index(4)
    save_file(state, str(tmp_path / "w.safetensors"))
    model = _load(tmp_path / "w.safetensors")
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        err = _maxerr(ref(pixel_values=x).logits, model(x))
    assert err <= TOL, f"max abs error vs transformers {err:.2e}"
    state[key.format(0)] = relative_position_index(3)
    save_file(state, str(tmp_path / "bad.safetensors"))
    with pytest.raises(CheckpointError, match="relative_position_index"):
        edgevit.load_model(tmp_path / "bad.safetensors")


@requires_transformers
def test_hf_backbone_without_its_pooler_is_refused(tmp_path):
    _hf("Data2VecVisionModel", "Data2VecVisionConfig").save_pretrained(tmp_path)  # add_pooling_layer=False
    with pytest.raises(CheckpointError, match="without its pooler"):
        edgevit.load_model(tmp_path)


@requires_transformers
def test_hf_beit_without_any_position_embedding_is_refused(tmp_path):
    # BeitConfig's defaults: no relative, shared or absolute position embedding (no real checkpoint has that)
    _hf("BeitForImageClassification", "BeitConfig", num_labels=5, use_relative_position_bias=False).save_pretrained(
        tmp_path)
    for source in (tmp_path, tmp_path / "model.safetensors"):
        with pytest.raises(CheckpointError, match="no position embedding at all"):
            edgevit.load_model(source)


def test_hf_config_with_both_biases_is_refused_naming_the_keys():
    from edgevit.models.families import beit, by_model_type

    assert by_model_type("beit") is beit and by_model_type("data2vec-vision") is beit
    with pytest.raises(ValueError, match="use_relative_position_bias and use_shared_relative_position_bias"):
        beit.config_from_hf({"model_type": "beit", "use_relative_position_bias": True,
                             "use_shared_relative_position_bias": True})
    with pytest.raises(ValueError, match="use_mean_pooling must be true or false"):
        beit.config_from_hf({"model_type": "beit", "use_mean_pooling": "yes"})
    cfg = beit.config_from_hf({"model_type": "data2vec-vision", "use_relative_position_bias": True,
                               "layer_scale_init_value": 0.1})
    assert (cfg.rel_pos_bias, cfg.pool, cfg.fc_norm, cfg.init_values, cfg.norm_eps) == ("block", "mean", True, 0.1,
                                                                                          1e-12), cfg
