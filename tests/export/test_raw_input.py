"""``edgevit export --input uint8``: raw pixels in, preprocessing inside the graph (issue 18 §1).

The property: the uint8 graph fed the pixels a decoder delivers at the model's size computes what the float
graph computes when fed edgevit's own preprocessing (:func:`edgevit.data.preprocess.normalize`) of the same
pixels, to the fp32 row of :mod:`edgevit.tolerances` with top-1 agreement 1.0; every precision graph made
from it keeps the uint8 input (its normalization in float32) and passes ``edgevit verify``; the runtime, verify
and bench read the input contract from the manifest.
"""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from PIL import Image

from edgevit.data.preprocess import normalize
from edgevit.data.sources import load_digits, load_image_folder
from edgevit.errors import DataError
from edgevit.export.onnx import ExportConfig, export_onnx
from edgevit.formats import BASE_PRECISION, ONNX_PRECISIONS
from edgevit.input_contract import InputContract, prefix_nodes
from edgevit.manifest import Manifest
from edgevit.metrics import compare
from edgevit.runtime import Engine
from edgevit.specs import IMAGENET_MEAN, IMAGENET_STD, Preprocessing
from edgevit.tolerances import Verdict, get_tolerance
from tests._fixtures import assert_exit, rich_table, run_cli, tiny_model

FP32 = get_tolerance(BASE_PRECISION, "logits")


def rgb_model():
    """A tiny 3-channel model with ImageNet preprocessing: a layout mistake (NHWC read as NCHW, a channel's mean
    applied to another) changes its outputs, which a 1-channel model would not show."""
    model = tiny_model(3)
    model.preprocessing = Preprocessing(input_size=(3, 16, 16), mean=IMAGENET_MEAN, std=IMAGENET_STD,
                                        interpolation="bilinear", crop_pct=1.0, pixel_max=255.0)
    model.labels = [str(i) for i in range(10)]
    return model


@pytest.fixture(scope="module")
def rgb_exports(tmp_path_factory):
    """The RGB model exported with float input and with uint8 input in both layouts."""
    model, root = rgb_model(), tmp_path_factory.mktemp("raw-rgb")
    out = {}
    for name, cfg in {"float": {}, "NHWC": {"input": "uint8"}, "NCHW": {"input": "uint8", "input_layout": "NCHW"}}.items():
        export_onnx(model, root / name, ExportConfig(batch=(1, 4, 16), lint=False, **cfg))
        out[name] = root / name
    return out


@pytest.fixture(scope="module")
def digits_exports(robust_digits, tmp_path_factory):
    """The robust digits checkpoint exported through the CLI with --input uint8 (its table) and as float."""
    root = tmp_path_factory.mktemp("raw-digits")
    res = run_cli("export", robust_digits, "-o", root / "uint8", "--input", "uint8", "--batch", "1,8,64")
    assert_exit(res, 0)
    export_onnx(robust_digits, root / "float", ExportConfig(batch=(1, 8, 64), lint=False))
    return {"uint8": root / "uint8", "float": root / "float", "table": res.output}


def image_folder(root, sizes, channels: int):
    """An ImageFolder of PNG and JPEG files of ``sizes`` (other than the model's), seeded random content."""
    rng = np.random.default_rng(7)
    mode = "RGB" if channels == 3 else "L"
    for i, (h, w) in enumerate(sizes):
        folder = root / str(i % 3)
        folder.mkdir(parents=True, exist_ok=True)
        shape = (h, w, 3) if channels == 3 else (h, w)
        pixels = rng.integers(0, 256, shape, dtype=np.uint8)
        Image.fromarray(pixels, mode).save(folder / f"img{i}.{'png' if i % 2 else 'jpg'}")
    return root


def model_size_pixels(images: np.ndarray, contract: InputContract) -> np.ndarray:
    """edgevit's reader output (resized, normalized) as the model-size pixels a decoder delivers: rounded, clipped."""
    return contract.pixels(images)


def assert_fp32_equal(reference: np.ndarray, got: np.ndarray, what: str) -> None:
    comparison = compare(reference, got, FP32)
    failed = [c.describe() for c in FP32.judge(comparison) if not c.passed]
    assert not failed, f"{what}: {failed}"
    assert comparison.top1_agreement == 1.0, f"{what}: top-1 agreement {comparison.top1_agreement}"


def run_both(raw_dir, float_dir, pixels_nchw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(float graph fed edgevit's normalize of the pixels, uint8 graph fed the pixels in its layout)."""
    from edgevit.runtime.batching import run_batched

    with Engine.load(raw_dir / "model.onnx") as raw, Engine.load(float_dir / "model.onnx") as flt:
        contract = raw.input_contract
        reference = run_batched(flt.runner, normalize(pixels_nchw.astype(np.float32), flt.preprocessing), 16)
        got = run_batched(raw.runner, contract.to_layout(pixels_nchw), 16)
    return reference["logits"], got["logits"]


# ------------------------------------------------------------------------------ equality on real images
@pytest.mark.parametrize("layout", ["NHWC", "NCHW"])
def test_uint8_graph_equals_float_graph_on_an_image_folder_of_other_sizes(rgb_exports, tmp_path, layout):
    root = image_folder(tmp_path / "imgs", [(40, 30), (23, 61), (16, 16), (97, 55), (12, 9), (64, 64)], 3)
    manifest = Manifest.load(rgb_exports[layout])
    contract = InputContract.of(manifest)
    assert (contract.dtype, contract.layout, contract.raw) == ("uint8", layout, True)
    ds = load_image_folder(root, manifest.preprocessing, split="all")
    pixels = model_size_pixels(ds.images, contract)
    assert pixels.shape == (6, 3, 16, 16) and pixels.dtype == np.uint8
    reference, got = run_both(rgb_exports[layout], rgb_exports["float"], pixels)
    assert_fp32_equal(reference, got, f"uint8 {layout} graph vs float graph on PNG/JPEG images")


def test_uint8_graph_equals_float_graph_on_the_digits(digits_exports):
    manifest = Manifest.load(digits_exports["uint8"])
    contract = InputContract.of(manifest)
    digits = load_digits(manifest.preprocessing, split="test")
    pixels = model_size_pixels(digits.images, contract)
    # the digits are integers 0..16: their pixels are exactly what edgevit normalized
    np.testing.assert_allclose(normalize(pixels.astype(np.float32), manifest.preprocessing), digits.images, atol=1e-6)
    reference, got = run_both(digits_exports["uint8"], digits_exports["float"], pixels)
    assert_fp32_equal(reference, got, "uint8 digits graph vs float graph on the digits test split")


def test_predict_on_images_equals_the_float_export(rgb_exports, tmp_path):
    """Engine.predict reads and resizes the images (outside the graph) and feeds the uint8 graph their pixels."""
    root = image_folder(tmp_path / "imgs", [(33, 20), (18, 70), (50, 50)], 3)
    files = sorted(str(p) for p in root.rglob("img*"))
    with Engine.load(rgb_exports["NHWC"] / "model.onnx") as raw, Engine.load(rgb_exports["float"] / "model.onnx") as flt:
        assert raw.raw_input and not flt.raw_input
        got = raw.predict(files, topk=3)
        x = raw.input_contract.represented(flt.preprocess(files))  # the pixels the uint8 graph was fed
        reference = flt.infer({"images": x})["logits"]
    assert [r[0]["index"] for r in got] == list(np.argmax(reference, axis=1)), (got, reference)


# ------------------------------------------------------------------------------ the graph and its manifest
def test_manifest_records_the_input_contract_and_it_round_trips(rgb_exports, tmp_path):
    for layout, shape in (("NHWC", ["batch", 16, 16, 3]), ("NCHW", ["batch", 3, 16, 16])):
        data = json.loads((rgb_exports[layout] / "edgevit.json").read_text())
        assert data["inputs"][0] == {"name": "images", "dtype": "uint8", "shape": shape,
                                     "dynamic_axes": {"0": "batch"}, "layout": layout, "normalized": False}
        assert data["preprocessing"]["pixel_max"] == 255.0 and data["preprocessing"]["std"] == list(IMAGENET_STD)
        manifest = Manifest.load(rgb_exports[layout])
        assert manifest.sample_shape == (3, 16, 16)  # what edgevit's loaders make, channels first
        manifest.save(tmp_path / layout)
        again = Manifest.load(tmp_path / layout)
        assert InputContract.of(again) == InputContract.of(manifest)
        assert again.to_dict()["inputs"] == data["inputs"]
        graph = onnx.load(str(rgb_exports[layout] / "model.onnx"))
        dims = [d.dim_value or d.dim_param for d in graph.graph.input[0].type.tensor_type.shape.dim]
        assert graph.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.UINT8 and dims == shape
    assert InputContract.of(Manifest.load(rgb_exports["float"])).raw is False


def test_export_records_a_raw_pixel_certificate(digits_exports):
    manifest = Manifest.load(digits_exports["uint8"])
    (cert,) = [c for c in manifest.certificates if c.consumer == "raw-pixel graph"]
    assert cert.verdict is Verdict.PASSED and cert.artifact == "model.onnx", cert
    assert cert.max_abs <= cert.atol == FP32.atol and cert.top1_agreement == 1.0 and cert.samples > 0, cert
    assert cert.artifact_sha256 == manifest.artifact(BASE_PRECISION, "onnx").sha256
    assert "edgevit's preprocessing" in cert.method and cert.details["input"]["dtype"] == "uint8"


def test_a_float_export_certifies_edgevits_runtime_on_the_digits(digits_exports):
    """A float graph's consumer is edgevit's runtime, which preprocesses like the reference: certified on the
    digits at the fp32 row, the same bound the export's own check holds."""
    manifest = Manifest.load(digits_exports["float"])
    (cert,) = manifest.certificates
    assert cert.consumer == "edgevit runtime" and cert.verdict is Verdict.PASSED, cert
    assert cert.max_abs <= cert.atol == FP32.atol and cert.top1_agreement == 1.0 and cert.samples > 0, cert
    assert "digits" in cert.method and cert.details["input"]["dtype"] == "float32", cert


def test_export_table_and_json_show_the_input(digits_exports, robust_digits, tmp_path):
    rows = {r[0]: r[1] for r in rich_table(digits_exports["table"], "field")}
    # the digits model's pixels run 0..16: a uint8 export says frames must be scaled to that range
    assert "pixel_max 16" in digits_exports["table"] and "0..255" in digits_exports["table"], digits_exports["table"]
    assert rows["input"].startswith("images uint8 NHWC (batch, 8, 8, 1) raw pixels"), rows
    raw = next(v for k, v in rows.items() if k.startswith("raw-pixel graph input"))
    assert raw.startswith("passed: max abs") and "top-1 agree 1.0" in raw, raw
    res = run_cli("export", robust_digits, "-o", tmp_path / "j", "--input", "uint8", "--input-layout", "NCHW",
                  "--static-batch", "4", "--json")
    assert_exit(res, 0)
    data = json.loads(res.output)
    assert data["inputs"][0]["shape"] == [4, 1, 8, 8] and data["inputs"][0]["layout"] == "NCHW"
    assert data["export"]["options"]["input"] == "uint8" and data["verification"]["consumer"]["verdict"] == "passed"
    assert [c["consumer"] for c in data["certificates"]] == ["raw-pixel graph"]


def test_bad_input_option_is_refused_before_anything_is_written(robust_digits, tmp_path):
    res = run_cli("export", robust_digits, "-o", tmp_path / "f", "--input-layout", "NHWC")  # without --input uint8
    assert_exit(res, 2)
    assert "--input uint8" in res.output and not (tmp_path / "f").exists(), res.output
    res = run_cli("export", robust_digits, "-o", tmp_path / "x", "--input", "uint8", "--input-layout", "HWC")
    assert_exit(res, 2)
    assert "--input-layout" in res.output and not (tmp_path / "x").exists()
    res = run_cli("export", robust_digits, "-o", tmp_path / "y", "--input", "int16")
    assert_exit(res, 2)
    assert "--input" in res.output and not (tmp_path / "y").exists()


# ------------------------------------------------------------------------------ Engine.infer on frames
def test_engine_infer_takes_frames_and_refuses_float_or_the_wrong_layout(rgb_exports):
    frames = np.random.default_rng(0).integers(0, 256, (2, 16, 16, 3), dtype=np.uint8)
    with Engine.load(rgb_exports["NHWC"] / "model.onnx") as engine:
        assert engine.infer({"images": frames})["logits"].shape == (2, 10)
        with pytest.raises(DataError, match=r"uint8 NHWC raw pixels.*got dtype float32.*Engine.predict"):
            engine.infer({"images": frames.astype(np.float32)})
        with pytest.raises(DataError, match=r"takes NHWC input of shape \[batch, 16, 16, 3\].*that is NCHW"):
            engine.infer({"images": np.ascontiguousarray(frames.transpose(0, 3, 1, 2))})


# ------------------------------------------------------------------------------ precision graphs, verify, bench
@pytest.fixture(scope="module")
def quantized_raw(digits_exports):
    from edgevit.precision import QuantizeConfig, quantize

    result = quantize(digits_exports["uint8"], QuantizeConfig(progress=False))
    assert result.ok, result.to_dict()
    return digits_exports["uint8"]


def test_precision_graphs_keep_the_uint8_input_and_float32_normalization(quantized_raw):
    manifest = Manifest.load(quantized_raw)
    graphs = [a for a in manifest.artifacts if a.format == "onnx"]
    assert {a.precision for a in graphs} == set(ONNX_PRECISIONS), [a.precision for a in graphs]
    for art in graphs:
        proto = onnx.load(str(quantized_raw / art.path))
        assert proto.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.UINT8, art.path
        nodes = {n.name: n for n in proto.graph.node}
        prefix = [nodes[name] for name in prefix_nodes(proto)]
        ops = [n.op_type for n in prefix]
        assert ops[:5] == ["Cast", "Transpose", "Div", "Sub", "Div"], (art.path, ops)
        cast_to = next(a.i for a in prefix[0].attribute if a.name == "to")
        assert cast_to == onnx.TensorProto.FLOAT, (art.path, cast_to)
        assert not any(n.op_type in ("QuantizeLinear", "DequantizeLinear") for n in prefix), art.path
        inits = {t.name: t for t in proto.graph.initializer}
        for node in prefix[2:5]:  # the pixel_max / mean / std constants stay float32
            assert inits[node.input[1]].data_type == onnx.TensorProto.FLOAT, (art.path, node.input[1])


def test_precision_graphs_of_a_uint8_export_pass_verify(quantized_raw, robust_digits):
    from edgevit.verify import verify

    for precision in ONNX_PRECISIONS:
        report = verify(robust_digits, quantized_raw, precision=precision)
        assert report.ok, (precision, report.failures)


def test_verify_and_bench_cli_on_the_uint8_export(quantized_raw, robust_digits):
    res = run_cli("verify", robust_digits, quantized_raw / "model.int8.onnx", "--json")
    assert_exit(res, 0)
    assert json.loads(res.output)["ok"] is True
    res = run_cli("bench", quantized_raw / "model.onnx", "--samples", "32", "--iterations", "3", "--warmup-s", "0",
                  "--attention", "--json")
    assert_exit(res, 0)
    rows = {r["name"]: r for r in json.loads(res.output)["rows"]}
    onnx_row = next(r for name, r in rows.items() if "model.onnx" in name)
    # the PyTorch reference row was fed the normalized batch of the pixels the uint8 graph got
    assert onnx_row["status"] == "ok" and onnx_row["agreement"] == 1.0 and onnx_row["within_tolerance"], onnx_row
    assert onnx_row["attention"]["status"] == "pass", onnx_row["attention"]


def test_predict_cli_on_the_uint8_export(quantized_raw, tmp_path):
    root = image_folder(tmp_path / "imgs", [(20, 24), (9, 13)], 1)
    files = sorted(root.rglob("img*"))
    res = run_cli("predict", quantized_raw / "model.fp16.onnx", *files, "--json")
    assert_exit(res, 0)
    assert len(json.loads(res.output)["predictions"]) == 2


def test_embed_on_a_headless_uint8_export(tmp_path):
    """A headless model's uint8 graph: Engine.embed of raw pixel arrays equals the float export's."""
    model = tiny_model(3, num_classes=0)
    model.preprocessing = rgb_model().preprocessing
    export_onnx(model, tmp_path / "u8", ExportConfig(batch=(1, 2, 4), lint=False, input="uint8"))
    export_onnx(model, tmp_path / "f", ExportConfig(batch=(1, 2, 4), lint=False))
    pixels = np.random.default_rng(3).integers(0, 256, (5, 3, 16, 16)).astype(np.float32)  # raw pixels, 0..255
    with Engine.load(tmp_path / "u8" / "model.onnx") as raw, Engine.load(tmp_path / "f" / "model.onnx") as flt:
        got, reference = raw.embed(pixels), flt.embed(pixels)
    tol = get_tolerance(BASE_PRECISION, "features")
    failed = [c.describe() for c in tol.judge(compare(reference, got, tol, output="features")) if not c.passed]
    assert got.shape == reference.shape == (5, 32) and not failed, failed
