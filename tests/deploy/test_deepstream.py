"""``edgevit deploy deepstream``: the nvinfer config is checked with nvinfer's own rules on this CPU.

Every key written is one nvinfer's parser handles (edgevit/deploy/nvinfer_keys.json, read from NVIDIA's
source); the config is read back as nvinfer's GKeyFile would, nvinfer's ``y = net-scale-factor * (x -
offsets[c])`` is applied with the numbers found there to uint8 images, and the written graph on ONNX
Runtime must give the reference's outputs (the export's fp32 graph on edgevit's own preprocessing of the
same pixels) within the fp32 tolerance row, with top-1 agreement 1.0. A hand-written averaged-std config
must fail that check where the std differs per channel, so the check can fail.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest

from edgevit.data import load_dataset, normalize
from edgevit.deploy import deepstream as ds
from edgevit.deploy.common import DEFAULT_SAMPLES
from edgevit.formats import BASE_PRECISION, PRECISION_TABLE, onnx_file
from edgevit.manifest import Manifest
from edgevit.output_kinds import OutputKind
from edgevit.tolerances import get_tolerance
from tests._fixtures import assert_exit, rich_table, run_cli, tiny_model

FP32_TOL = get_tolerance(BASE_PRECISION)


@pytest.fixture(scope="module")
def rgb_export(tmp_path_factory):
    """A tiny 3-channel classifier (16x16, ImageNet mean/std: the std differs per channel), exported once."""
    from edgevit.data.preprocess import Preprocessing
    from edgevit.export.onnx import ExportConfig, export_onnx

    model = tiny_model(3)
    model.labels = [f"class {i}" for i in range(10)]
    model.preprocessing = Preprocessing(input_size=(3, 16, 16), interpolation="bilinear", crop_pct=0.875)
    out = tmp_path_factory.mktemp("rgb") / "out"
    export_onnx(model, out, ExportConfig(batch=(1, 2, 8), verify=False, lint=False), force=True)
    return out


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory):
    """An ImageFolder of PNG and JPEG files of other sizes than the model's (test split layout)."""
    from PIL import Image

    root = tmp_path_factory.mktemp("images") / "data"
    rng = np.random.default_rng(7)
    for c in range(3):
        folder = root / "test" / f"class {c}"
        folder.mkdir(parents=True)
        for i, (size, ext) in enumerate([((37, 23), "png"), ((20, 45), "jpg"), ((64, 64), "png"), ((17, 31), "jpg")]):
            pixels = rng.integers(0, 256, size=(size[1], size[0], 3), dtype=np.uint8)
            Image.fromarray(pixels).save(folder / f"{i}.{ext}")
    return root


def pixels_of(manifest: Manifest, data: str, split: str = "test") -> np.ndarray:
    """Model-size uint8 pixels of ``data``, resized and cropped by edgevit.data, as a decoder delivers them."""
    from dataclasses import replace

    spec = manifest.preprocessing
    plain = replace(spec, mean=(0.0,) * spec.channels, std=(1.0,) * spec.channels)
    unit = load_dataset(data, plain, split, model_labels=manifest.labels).images  # x / pixel_max
    return np.clip(np.rint(unit * spec.pixel_max), 0, 255).astype(np.uint8)


def reference(outdir: Path, pixels: np.ndarray, precision: str = BASE_PRECISION) -> np.ndarray:
    """The export's ``precision`` graph (as exported / quantized) on edgevit's own preprocessing of ``pixels``
    (ONNX Runtime)."""
    import onnxruntime as ort

    manifest = Manifest.load(outdir)
    session = ort.InferenceSession(str(outdir / onnx_file(precision)), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: normalize(pixels, manifest.preprocessing)})[0]


def parse_written(path: Path) -> dict[str, str]:
    """The [property] group of a written config, parsed here line by line (GKeyFile syntax), not by edgevit."""
    props, group = {}, None
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("["):
            group = line.strip("[]")
        elif group == "property":
            key, _, value = line.partition("=")
            assert key not in props, f"{key} written twice"
            props[key] = value
    return props


def nvinfer_outputs(directory: Path, pixels: np.ndarray, names: list[str]) -> dict[str, np.ndarray]:
    """nvinfer's formula with the numbers of the WRITTEN config (parsed here, not the writer's) applied to
    ``pixels`` in float32, fed to the written graph on ONNX Runtime; ``names`` read where they are inner tensors."""
    import onnxruntime as ort

    from edgevit.onnx_graph import mark_outputs

    props = parse_written(directory / ds.CONFIG_NAME)
    scale = np.float32(float(props["net-scale-factor"]))
    offsets = np.array([float(v) for v in props["offsets"].split(";")], np.float32).reshape(1, -1, 1, 1)
    assert tuple(int(v) for v in props["infer-dims"].split(";")) == pixels.shape[1:]
    x = (scale * (pixels.astype(np.float32) - offsets)).astype(np.float32)
    proto = mark_outputs(onnx.load(str(directory / props["onnx-file"])), names)
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    return dict(zip(names, session.run(names, {session.get_inputs()[0].name: x})))


# ---------------------------------------------------------------------------- the key list
def test_key_list_names_its_nvidia_source():
    keys = ds.nvinfer_keys()
    src = keys["source"]
    assert src["repository"].startswith("https://github.com/") and len(src["commit"]) == 40, src
    assert "gstnvinfer_property_parser" in src["files"]["accepted"]
    assert "DS_plugin_gst-nvinfer" in keys["documentation"]["url"]
    for key in ("net-scale-factor", "offsets", "infer-dims", "model-color-format", "network-mode", "network-type",
                "output-tensor-meta", "onnx-file", "model-engine-file", "labelfile-path", "batch-size", "gpu-id",
                "gie-unique-id"):
        assert key in keys["groups"]["property"], key
    assert {"threshold", "pre-cluster-threshold", "topk"} <= set(keys["groups"]["class-attrs"])
    enums = keys["enums"]
    assert (enums["network-mode"]["0"], enums["network-mode"]["1"], enums["network-mode"]["2"]) == ("FP32", "INT8", "FP16")
    assert enums["network-type"]["1"] == "Classifier" and enums["network-type"]["100"].startswith("Other")
    assert [enums["model-color-format"][k] for k in "012"] == ["RGB", "BGR", "GRAY"]
    # the precision table's nvinfer modes are the source's enum values
    for row in PRECISION_TABLE:
        if row.nvinfer_mode is not None:
            assert enums["network-mode"][str(row.nvinfer_mode)] == row.name.upper(), row


def test_unknown_keys_are_caught(tmp_path):
    path = tmp_path / "c.txt"
    path.write_text("[property]\nnet-scale-factor=1\nnet-scale-factr=1\n[class-attrs-all]\ntopk=2\nbogus=1\n[weird]\n")
    assert ds.unknown_keys(ds.read_config(path)) == ["property.net-scale-factr", "class-attrs-all.bogus", "[weird]"]


# ---------------------------------------------------------------------------- the fold
def test_fold_is_exact_and_averaged_std_is_not(rgb_export):
    """Folded graph + exact scalar config = the reference; the original graph + the averaged-std config
    users write by hand is off by far more than the fp32 tolerance (so the check can fail)."""
    manifest = Manifest.load(rgb_export)
    spec = manifest.preprocessing
    assert len(set(spec.std)) > 1
    proto = onnx.load(str(rgb_export / "model.onnx"))
    graph, record = ds.deepstream_graph(proto, spec, OutputKind.LOGITS)
    assert record["initializer"] == "patch_embed.proj.weight" and record["std"] == list(spec.std)
    pixels = np.random.default_rng(0).integers(0, 256, size=(32, 3, 16, 16)).astype(np.uint8)
    ref = reference(rgb_export, pixels)
    results = {}
    for name, norm, g in (("exact", ds.Normalization.folded(spec), graph), ("averaged", ds.averaged_std(spec), proto)):
        cfg = ds.ConfigSpec(OutputKind.LOGITS, spec.input_size, norm, 1, 0, ds.GRAPH_NAME)
        path = rgb_export.parent / f"{name}.txt"
        path.write_text(ds.config_text(cfg))
        comparison, checks, classes, _ = ds.check_config(path, g, pixels, ref, OutputKind.LOGITS, FP32_TOL, "logits")
        results[name] = (comparison.max_abs, all(c.passed for c in checks))
    assert results["exact"][1] and results["exact"][0] <= FP32_TOL.atol, results
    assert not results["averaged"][1] and results["averaged"][0] > 10 * FP32_TOL.atol, results


def test_nvinfer_classifier_parser_needs_probabilities():
    logits = np.array([[-3.0, -1.0, -2.0], [0.5, 2.0, 1.0]], np.float32)
    assert ds.nvinfer_classify(logits, 0.0).tolist() == [-1, 1]  # raw logits: no label for the first
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    assert ds.nvinfer_classify(probs, 0.0).tolist() == [1, 1]
    assert ds.nvinfer_classify(probs, 0.9).tolist() == [-1, -1]


# ---------------------------------------------------------------------------- the command, end to end
def run_deepstream(*args):
    """``edgevit deploy deepstream ARGS`` as a user types it."""
    return run_cli("deploy", "deepstream", *args)


def assert_reproduces(outdir: Path, directory: Path, data: str, precision: str = BASE_PRECISION):
    """The written config + graph, applied as nvinfer would, give the reference (the ``precision`` graph as
    exported, on edgevit's preprocessing) within the precision's tolerance, and every label nvinfer's
    classifier parser attaches is the reference's top-1."""
    manifest = Manifest.load(outdir)
    props = parse_written(directory / ds.CONFIG_NAME)
    bad = ds.unknown_keys({"property": props})
    assert not bad, f"keys nvinfer's parser does not handle: {bad}"
    pixels = pixels_of(manifest, data)
    ref = reference(outdir, pixels, precision)
    out = nvinfer_outputs(directory, pixels, ["logits", ds.PROBABILITIES])
    tol = get_tolerance(precision)
    diff = float(np.abs(out["logits"] - ref).max())
    assert diff <= tol.atol, f"max |logits - reference| {diff:.3g} > {precision} atol {tol.atol:g} on {len(pixels)} images"
    # nvinfer's classifier parser: the first largest probability above classifier-threshold and above 0
    probs, threshold = out[ds.PROBABILITIES], float(props["classifier-threshold"])
    attached = np.where(probs.max(1) > max(threshold, 0.0), probs.argmax(1), -1)
    agreement = float((attached == ref.argmax(1)).mean())
    # fp32: exactly the reference's classes; a reduced-precision graph rounds its folded weights to its own type,
    # which may flip near-ties: its tolerance row's agreement
    need = 1.0 if precision == BASE_PRECISION else tol.min_agreement
    assert agreement >= need, (f"nvinfer's attached class agrees with the {precision} reference's top-1 on "
                               f"{agreement:.4f} < {need}")
    assert (props["network-type"], props["network-mode"]) == ("1", str(network_mode_of(precision)))
    labels = (directory / props["labelfile-path"]).read_text().splitlines()
    assert labels == [";".join(manifest.labels)], labels  # one line per output layer, labels joined by ';'
    return manifest, props, pixels


def network_mode_of(precision: str) -> int:
    return next(p.nvinfer_mode for p in PRECISION_TABLE if p.name == precision)


def test_digits_config_reproduces_the_reference(digits_like_copy, tmp_path):
    out = tmp_path / "ds"
    result = ds.write_deepstream(digits_like_copy, out)
    manifest, props, pixels = assert_reproduces(digits_like_copy, out, "digits")
    onnx.checker.check_model(onnx.load(str(out / ds.GRAPH_NAME)), full_check=True)
    assert props["infer-dims"] == "1;8;8" and props["model-color-format"] == "2"  # GRAY
    assert float(props["net-scale-factor"]) == 1 / 16 and props["offsets"] == repr(0.3053 * 16)
    batch = manifest.batch
    assert batch.min <= int(props["batch-size"]) <= batch.max
    cert = result.certificate
    recorded = [c for c in manifest.to_dict()["certificates"] if c["consumer"] == "deepstream"]
    assert len(recorded) == 1 and recorded[0]["verdict"] == "passed", recorded
    assert recorded[0]["details"]["fold"]["initializer"] == "patch_embed.proj.weight"
    assert recorded[0]["files"] == cert.files and set(cert.files) == {ds.CONFIG_NAME, ds.GRAPH_NAME, ds.LABEL_NAME}
    assert cert.max_abs <= FP32_TOL.atol and cert.top1_agreement == 1.0 and cert.samples == min(len(pixels), DEFAULT_SAMPLES)


def test_image_folder_config_reproduces_the_reference(rgb_export, image_folder, tmp_path):
    """PNG and JPEG files of other sizes, resized and cropped by edgevit.data, then fed as uint8 pixels."""
    out = tmp_path / "ds"
    ds.write_deepstream(rgb_export, out, data=str(image_folder))
    _, props, pixels = assert_reproduces(rgb_export, out, str(image_folder))
    assert len(pixels) == 12 and props["model-color-format"] == "0"  # RGB
    assert float(props["net-scale-factor"]) == 1 / 255  # std is folded, so the scale is exact
    assert [float(v) for v in props["offsets"].split(";")] == [m * 255 for m in (0.485, 0.456, 0.406)]


def test_precision_graphs(digits_like_copy, tmp_path):
    """fp16 folds into its float16 weight (network-mode 2); an int8 Q/DQ graph whose patch embedding is not
    quantized folds into that float weight (network-mode 1); bf16 has no nvinfer mode; a Q/DQ patch
    embedding is refused."""
    res = run_cli("quantize", digits_like_copy, "--precision", "fp16,bf16,int8", "--no-gate")
    assert_exit(res, 0)
    for precision in ("fp16", "int8"):
        out = tmp_path / precision
        ds.write_deepstream(digits_like_copy, out, precision=precision)
        assert_reproduces(digits_like_copy, out, "digits", precision)
        weight = next(t for t in onnx.load(str(out / ds.GRAPH_NAME)).graph.initializer
                      if t.name == "patch_embed.proj.weight")
        assert weight.data_type == onnx.TensorProto.FLOAT16, weight.data_type
    # bf16 folds into its bfloat16 weight like any float graph (nvinfer just has no mode to name it by)
    from onnx import numpy_helper

    proto = onnx.load(str(digits_like_copy / onnx_file("bf16")))
    before = {t.name: numpy_helper.to_array(t).astype(np.float64) for t in proto.graph.initializer}
    std = Manifest.load(digits_like_copy).preprocessing.std
    record = ds.fold_std(proto, std)
    after = next(t for t in proto.graph.initializer if t.name == record["initializer"])
    assert after.data_type == onnx.TensorProto.BFLOAT16, after.data_type
    want = before[record["initializer"]] / np.asarray(std)[None, :, None, None]
    got = numpy_helper.to_array(after).astype(np.float64)
    rel = float(np.abs(got - want).max() / np.abs(want).max())
    assert rel <= 2.0 ** -8, f"bf16 fold off by {rel:.2g} of the largest weight (bf16 rounds at 2^-9)"
    with pytest.raises(ds.DeepStreamError, match="no network-mode for bf16"):
        ds.write_deepstream(digits_like_copy, tmp_path / "bf16", precision="bf16")
    assert not (tmp_path / "bf16").exists()
    res = run_cli("quantize", digits_like_copy, "--precision", "int8", "--quantize-patch-embed", "--no-gate", "--force")
    assert_exit(res, 0)
    with pytest.raises(ds.DeepStreamError, match="quantize-patch-embed"):
        ds.write_deepstream(digits_like_copy, tmp_path / "qpe", precision="int8")
    assert not (tmp_path / "qpe").exists()


def test_tokens_model_is_network_type_other(tmp_path):
    from edgevit.export.onnx import ExportConfig, export_onnx
    from tests._fixtures import digits_like_model

    export = tmp_path / "tokens"
    export_onnx(digits_like_model(1), export, ExportConfig(batch=(1, 2, 8), verify=False, lint=False, output="tokens"),
                force=True)
    out = tmp_path / "ds"
    result = ds.write_deepstream(export, out)
    props = parse_written(out / ds.CONFIG_NAME)
    assert (props["network-type"], props["output-tensor-meta"]) == ("100", "1") and "labelfile-path" not in props
    assert not ds.unknown_keys({"property": props})
    pixels = pixels_of(Manifest.load(export), "digits")
    ref = reference(export, pixels)
    got = nvinfer_outputs(out, pixels, ["tokens"])["tokens"]
    tol = get_tolerance(BASE_PRECISION, "tokens")
    assert float(np.abs(got - ref).max()) <= tol.atol, float(np.abs(got - ref).max())
    assert result.certificate.passed and not (out / ds.LABEL_NAME).exists()


def test_refusals(digits_like_copy, tmp_path):
    """Refused before anything is written, naming what and how to fix."""
    res = run_deepstream(digits_like_copy, "-o", tmp_path / "b", "--batch-size", "9")
    assert_exit(res, 2)
    assert "outside the export's batch profile 1..8" in res.output and not (tmp_path / "b").exists()
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "keep.txt").write_text("mine")
    res = run_deepstream(digits_like_copy, "-o", tmp_path / "taken")
    assert_exit(res, 1)
    assert "--force" in res.output and (tmp_path / "taken" / "keep.txt").read_text() == "mine"
    # a raw-pixel (export --input uint8) graph: nvinfer hands the network float planes
    from edgevit.export.onnx import ExportConfig, export_onnx
    from tests._fixtures import digits_like_model

    raw = tmp_path / "raw"
    export_onnx(digits_like_model(2), raw, ExportConfig(batch=(1, 2, 8), verify=False, lint=False, input="uint8"),
                force=True)
    res = run_deepstream(raw, "-o", tmp_path / "r")
    assert_exit(res, 1)
    assert "raw uint8 pixels" in res.output and not (tmp_path / "r").exists()
    # a classifier's engine outputs logits, which nvinfer's classifier parser cannot read
    manifest = Manifest.load(digits_like_copy)
    (digits_like_copy / "model.plan").write_bytes(b"stand-in engine bytes")
    manifest.add_artifact("model.plan", format="tensorrt", precision=BASE_PRECISION, onnx={"path": "model.onnx"})
    manifest.save(digits_like_copy, force=True)
    res = run_deepstream(digits_like_copy, "-o", tmp_path / "e", "--artifact", digits_like_copy / "model.plan")
    assert_exit(res, 1)
    assert "reads probabilities" in res.output and not (tmp_path / "e").exists()
    res = run_deepstream(digits_like_copy, "-o", tmp_path / "e", "--artifact", digits_like_copy / "model.plan",
                         "--precision", BASE_PRECISION)
    assert_exit(res, 2)
    assert "not both" in res.output
    # labels nvinfer's label file cannot hold
    data = json.loads((digits_like_copy / "edgevit.json").read_text())
    data["labels"][3] = "three;3"
    (digits_like_copy / "edgevit.json").write_text(json.dumps(data))
    res = run_deepstream(digits_like_copy, "-o", tmp_path / "l")
    assert_exit(res, 1)
    assert "three;3" in res.output and not (tmp_path / "l").exists()


def test_cli_table_and_json(digits_like_copy, tmp_path):
    res = run_deepstream(digits_like_copy, "-o", tmp_path / "ds")
    assert_exit(res, 0)
    fields = dict(rich_table(res.output, "field"))
    assert fields["network-type"] == "1 (classifier)" and fields["net-scale-factor"] == "0.0625", fields
    cert = rich_table(res.output, "consumer")
    assert cert[0][0] == "deepstream" and cert[0][-1] == "passed", cert
    assert "not run here" in res.output
    res = run_deepstream(digits_like_copy, "-o", tmp_path / "ds", "--force", "--json", "--samples", "40")
    assert_exit(res, 0)
    data = json.loads(res.output)
    assert data["certificate"]["verdict"] == "passed" and data["certificate"]["samples"] == 40
    assert data["properties"]["network-mode"] == "0" and data["certificate"]["max_abs"] <= FP32_TOL.atol
    assert sorted(Path(f).name for f in data["files"]) == [ds.CONFIG_NAME, ds.LABEL_NAME, ds.GRAPH_NAME]


def test_engine_artifact(tmp_path, rgb_export):
    """A TensorRT engine runs as built: written (model-engine-file) only where one std serves every channel,
    with the scalar config 1/(pixel_max * std); checked through the graph it was built from (no TensorRT here).
    A stand-in engine file is enough: nothing here opens it."""
    from edgevit.export.onnx import ExportConfig, export_onnx
    from tests._fixtures import digits_like_model

    export = tmp_path / "tokens"
    export_onnx(digits_like_model(1), export, ExportConfig(batch=(1, 2, 8), verify=False, lint=False, output="tokens"),
                force=True)
    manifest = Manifest.load(export)
    (export / "model.plan").write_bytes(b"stand-in engine bytes")
    fp32 = manifest.artifact(BASE_PRECISION, "onnx")
    manifest.add_artifact("model.plan", format="tensorrt", precision=BASE_PRECISION,
                          onnx={"path": fp32.path, "sha256": fp32.sha256}, profile={"min": 1, "opt": 2, "max": 8})
    manifest.save(export, force=True)
    out = tmp_path / "ds"
    result = ds.write_deepstream(export, out, artifact=export / "model.plan")
    props = parse_written(out / ds.CONFIG_NAME)
    assert props["model-engine-file"] == "model.plan" and (out / "model.plan").read_bytes() == b"stand-in engine bytes"
    assert float(props["net-scale-factor"]) == 1 / (16 * 0.3760) and result.certificate.details["fold"]["folded"] is None
    assert result.certificate.artifact == "model.plan" and result.certificate.passed
    pixels = pixels_of(manifest, "digits")
    got = nvinfer_outputs(out, pixels, ["tokens"])["tokens"]
    diff = float(np.abs(got - reference(export, pixels)).max())
    assert diff <= get_tolerance(BASE_PRECISION, "tokens").atol, diff
    with pytest.raises(ds.DeepStreamError, match="differs per channel"):
        ds.Normalization.scalar(Manifest.load(rgb_export).preprocessing)
