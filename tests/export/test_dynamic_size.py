"""Graphs of dynamic height and width (`edgevit export --img-size MIN:MAX`): the learned position table is
resampled inside the graph, the graph runs at every size of the range, and gives what timm's
``dynamic_img_size=True`` model gives at that size with the same interpolation (no antialias)."""

import functools
import json

import numpy as np
import pytest
import torch

import edgevit
from edgevit.export.lint import lint_onnx
from edgevit.tensorrt import rules

from .._fixtures import assert_exit, run_cli
from ..conftest import requires_timm
from ..models.test_families import _randomize

SIZES = [(224, 224), (364, 490), (518, 518)]  # DINOv2's deploy size, a camera crop (TensorRT #4348), its own
ORT_TOL = 1e-4  # fp32 ONNX Runtime vs PyTorch eager: reduction order only (the bound)


def _timm_dinov2(mode: str):
    """timm's DINOv2 with registers at its training size (518, a 37x37 table), dynamic_img_size=True, its
    table resampled with ``mode`` and no antialias; and the patched resample to restore."""
    import timm
    import timm.models.vision_transformer as tv

    ref = _randomize(timm.create_model("vit_small_patch14_reg4_dinov2", pretrained=False, img_size=518,
                                       embed_dim=128, depth=2, num_heads=2, num_classes=0, dynamic_img_size=True))
    return ref, tv, functools.partial(tv.resample_abs_pos_embed, interpolation=mode, antialias=False)


@requires_timm
@pytest.mark.parametrize("mode", ["bilinear", "bicubic"])
def test_model_at_any_size_is_timms_dynamic_img_size(tmp_path, mode, monkeypatch):
    ref, tv, resample = _timm_dinov2(mode)
    monkeypatch.setattr(tv, "resample_abs_pos_embed", resample)
    torch.save(ref.state_dict(), tmp_path / "dinov2.pth")
    model = edgevit.load_model(tmp_path / "dinov2.pth", num_heads=2, dynamic_size=mode)
    errs = {}
    for h, w in SIZES:
        x = torch.randn(1, 3, h, w)
        with torch.no_grad():
            errs[(h, w)] = max((ref(x) - model(x)).abs().max().item(),
                               (ref.forward_features(x)[:, 5:] - model.forward_tokens(x)).abs().max().item())
    assert max(errs.values()) <= 1e-5, f"{mode}: max abs error vs timm dynamic_img_size per size {errs}"


@requires_timm
def test_export_with_a_size_range_runs_every_size_like_timm(tmp_path, monkeypatch):
    ref, tv, resample = _timm_dinov2("bilinear")
    monkeypatch.setattr(tv, "resample_abs_pos_embed", resample)
    torch.save(ref.state_dict(), tmp_path / "dinov2.pth")
    out = tmp_path / "export"
    res = run_cli("export", str(tmp_path / "dinov2.pth"), "-o", str(out), "--num-heads", "2", "--img-size", "224:518",
                  "--output-kind", "tokens")
    assert_exit(res, 0)
    assert "height, width 224..518 px" in res.stdout and "[batch, tokens, 128]" not in res.stdout, res.stdout
    assert "at 224x518" in res.stdout, "export checks the ends of the range against PyTorch"
    manifest = json.loads((out / "edgevit.json").read_text())
    spec = manifest["inputs"][0]
    assert spec["size_range"] == {"height": [224, 518], "width": [224, 518]}, spec
    assert spec["dynamic_axes"] == {"0": "batch", "2": "height", "3": "width"}, spec
    assert manifest["outputs"][0]["dynamic_axes"]["1"] == "tokens", manifest["outputs"][0]

    import onnxruntime as ort

    session = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    errs = {}
    for h, w in SIZES:
        x = torch.randn(1, 3, h, w)
        with torch.no_grad():
            want = ref.forward_features(x)[:, ref.num_prefix_tokens:].numpy()
        got = session.run(None, {"images": x.numpy()})[0]
        assert got.shape == want.shape == (1, (h // 14) * (w // 14), 128), (got.shape, want.shape)
        errs[(h, w)] = float(np.abs(got - want).max())
    assert max(errs.values()) <= ORT_TOL, f"ONNX Runtime vs timm dynamic_img_size per size {errs} > {ORT_TOL}"
    report = lint_onnx(out / "model.onnx")
    assert "baked-size" not in report.codes() and report.ok, [f.to_dict() for f in report.findings]
    shapes = rules.input_shapes((3, 518, 518), (1, 1, 32), spec["size_range"])
    assert shapes == ((1, 3, 224, 224), (1, 3, 518, 518), (32, 3, 518, 518)), shapes


def test_a_reshape_that_fixes_the_grid_is_a_lint_error():
    from onnx import TensorProto, helper, numpy_helper

    tokens = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3, "height", "width"])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    nodes = [helper.make_node("Flatten", ["x"], ["flat"], axis=2),  # (batch*3, height*width): a dynamic dim
             helper.make_node("Reshape", ["flat", "target"], ["y"], name="grid_reshape")]
    target = numpy_helper.from_array(np.array([-1, 3, 16, 16], dtype=np.int64), "target")
    model = helper.make_model(helper.make_graph(nodes, "g", [tokens], [y], initializer=[target]),
                              opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 10
    report = lint_onnx(model)
    assert "baked-size" in report.codes(), [f.to_dict() for f in report.findings]


def test_a_range_is_refused_where_a_command_takes_one_size_and_out_of_patch_bounds(tmp_path):
    res = run_cli("info", "digits-tiny", "--img-size", "8:16")
    assert_exit(res, 2)
    assert "only `edgevit export` takes" in res.stderr, res.stderr
    res = run_cli("export", "digits-tiny", "-o", str(tmp_path / "x"), "--img-size", "5:16")
    assert_exit(res, 2)  # an invalid option value
    assert "multiples of the patch size" in res.stderr and not (tmp_path / "x" / "model.onnx").exists(), res.stderr
    res = run_cli("export", "digits-tiny", "-o", str(tmp_path / "y"), "--img-size", "8:8")  # before: an internal message
    assert_exit(res, 2)
    assert "one size is PX" in res.stderr and not (tmp_path / "y").exists(), res.stderr


def test_dla_refuses_a_dynamic_height_and_width_before_building():
    from edgevit.errors import TensorRTError

    rules.check_dla_sizes(None)  # one size: nothing to refuse
    with pytest.raises(TensorRTError, match="--img-size PX"):
        rules.check_dla_sizes({"height": [224, 518], "width": [224, 518]})


@pytest.mark.parametrize("size,message", [("8:8", "MIN < MAX"), ("8:4096", "at 4096x4096")])
def test_one_size_ranges_and_ranges_past_tensorrts_largest_tensor_are_refused(tmp_path, size, message):
    res = run_cli("export", "digits-tiny", "-o", str(tmp_path / "x"), "--img-size", size)
    assert_exit(res, 2)
    assert message in res.stderr and "Traceback" not in res.stderr, res.stderr


@requires_timm
def test_models_whose_positions_are_not_a_table_refuse_a_range(tmp_path):
    import timm

    beit = _randomize(timm.create_model("beit_base_patch16_224", pretrained=False, img_size=32, embed_dim=64, depth=1,
                                        num_heads=1, num_classes=3))
    torch.save(beit.state_dict(), tmp_path / "beit.pth")
    res = run_cli("export", str(tmp_path / "beit.pth"), "-o", str(tmp_path / "x"), "--img-size", "32:64")
    assert_exit(res, 2)
    assert "relative position bias" in res.stderr and "--img-size PX" in res.stderr, res.stderr


def test_info_says_how_positions_enter(tmp_path):
    from edgevit.models.vit import ViTConfig, VisionTransformer

    model = VisionTransformer(ViTConfig(img_size=32, patch_size=8, embed_dim=32, depth=1, num_heads=1, num_classes=2,
                                        dynamic_size="bilinear"))
    edgevit.save_model(model, tmp_path / "m.safetensors")
    res = run_cli("info", str(tmp_path / "m.safetensors"), "--json")
    assert_exit(res, 0)
    assert json.loads(res.stdout)["positions"] == "learned table, any size (bilinear resampling of the table)", res.stdout
    res = run_cli("info", str(tmp_path / "m.safetensors"))
    assert "any size (bilinear resampling of the table)" in res.stdout, res.stdout


@requires_timm
def test_verify_at_another_size_in_the_range_loads_the_reference_as_the_graph_resamples(tmp_path):
    """Before: verify --img-size PX resampled the reference's table bicubically with antialias at load, so a correct
    bilinear graph failed (max abs ~5e-2 on this model); now the reference resamples as the graph does."""
    import timm
    from click.testing import CliRunner

    from edgevit.cli import main

    ref = _randomize(timm.create_model("vit_small_patch14_reg4_dinov2", pretrained=False, img_size=224,
                                       embed_dim=128, depth=2, num_heads=2, num_classes=0))
    torch.save(ref.state_dict(), tmp_path / "d.pth")
    out = tmp_path / "out"
    res = CliRunner().invoke(main, ["export", str(tmp_path / "d.pth"), "-o", str(out), "--num-heads", "2",
                                    "--img-size", "224:448", "--output-kind", "tokens"])
    assert res.exit_code == 0, res.output
    res = CliRunner().invoke(main, ["verify", str(tmp_path / "d.pth"), str(out), "--img-size", "336", "--num-heads",
                                    "2", "--json"])
    report = json.loads(res.output)
    err = report["outputs"]["tokens"]["max_abs"]
    assert res.exit_code == 0 and err <= 1e-4, f"verify at 336 px: max abs {err:.3g} (tolerance 1e-4)\n{res.output[-1500:]}"


@requires_timm
def test_an_fp16_io_graph_of_several_sizes_is_gated_and_verified_against_the_fp32_graph(tmp_path):
    """Before: the fp16 gate fed an --io-dtype fp16 graph float32 ("has dtype float32, expected float16"), and verify
    with an ONNX reference of a graph of several sizes failed on its symbolic dims ("invalid literal for int()")."""
    import timm
    from click.testing import CliRunner

    from edgevit.cli import main

    ref = _randomize(timm.create_model("vit_small_patch14_reg4_dinov2", pretrained=False, img_size=224,
                                       embed_dim=128, depth=2, num_heads=2, num_classes=0))
    torch.save(ref.state_dict(), tmp_path / "d.pth")
    data = tmp_path / "images.npy"
    np.save(data, np.random.default_rng(0).integers(0, 256, (16, 224, 224, 3), dtype=np.uint8))
    out = tmp_path / "out"
    res = CliRunner().invoke(main, ["export", str(tmp_path / "d.pth"), "-o", str(out), "--num-heads", "2",
                                    "--img-size", "224:448", "--output-kind", "tokens", "--precision", "fp32,fp16",
                                    "--io-dtype", "fp16", "--data", str(data)])
    assert res.exit_code == 0, res.output
    row = next((line for line in res.output.splitlines() if "│ fp16 " in line), "")
    assert "passed" in row, res.output
    for size in ([], ["--img-size", "336"]):
        res = CliRunner().invoke(main, ["verify", str(out / "model.onnx"), str(out / "model.fp16.onnx"), "--precision",
                                        "fp16", "--samples", "4", *size, "--json"])
        report = json.loads(res.output)
        assert res.exit_code == 0 and report["ok"] and not report["failures"], res.output[-1500:]
