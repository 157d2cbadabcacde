"""``edgevit deploy triton``: the written config.pbtxt checked with Triton's own schema (tritonclient's
model_config_pb2: unknown fields fail), cross-checked against the ONNX graph, the manifest's batch profile
and labels; the repository's model run on ONNX Runtime with the config's shapes and types against the
reference; refusals before anything is written; the CLI as a person runs it. No Triton server here."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest

from edgevit.data import normalize
from edgevit.deploy import TARGETS
from edgevit.deploy import common
from edgevit.deploy import triton as tr
from edgevit.errors import EdgeVitError
from edgevit.formats import BASE_PRECISION, FLOAT_PRECISIONS, engine_file
from edgevit.manifest import Manifest
from edgevit.tolerances import Verdict, get_tolerance
from tests._fixtures import assert_exit, rich_table, run_cli

model_config_pb2 = pytest.importorskip("tritonclient.grpc.model_config_pb2",
                                       reason="tritonclient[grpc] is a test dependency (pip install -e .[test])")
from google.protobuf import text_format  # noqa: E402  (installed with tritonclient)

NUMPY_OF = {v: k for k, v in tr.TRITON_TYPES.items()}
ONNX_NUMPY = {onnx.TensorProto.FLOAT: "float32", onnx.TensorProto.FLOAT16: "float16", onnx.TensorProto.UINT8: "uint8"}


def assert_fp32_match(got, reference) -> None:
    """``got`` equals ``reference`` to the fp32 row's atol with top-1 agreement 1.0 (the same graph arithmetic)."""
    tol = get_tolerance(BASE_PRECISION)
    diff = float(np.abs(got - reference).max())
    agreement = float((got.argmax(1) == reference.argmax(1)).mean())
    assert diff <= tol.atol and agreement == 1.0, f"max |diff| {diff:.3e} (atol {tol.atol}), top-1 {agreement}"


def parse_config(model_dir) -> "model_config_pb2.ModelConfig":
    """config.pbtxt parsed by protobuf into Triton's ModelConfig (ParseError for any unknown field or enum)."""
    return text_format.Parse((model_dir / tr.CONFIG_NAME).read_text(), model_config_pb2.ModelConfig())


def dtype_name(data_type: int) -> str:
    return NUMPY_OF[model_config_pb2.DataType.Name(data_type)]


@pytest.fixture
def export(digits_like_copy):
    return digits_like_copy


@pytest.fixture
def written(export, tmp_path):
    repo = tmp_path / "repo"
    return export, repo, tr.write_triton(export, repo, name="digits")


def test_target_table_names_the_writer():
    assert TARGETS["triton"].load() is tr.write_triton


def test_config_parses_with_tritons_schema_and_follows_the_graph(written):
    export, repo, result = written
    manifest = Manifest.load(export)
    model_dir = repo / "digits"
    assert sorted(p.relative_to(model_dir).as_posix() for p in model_dir.rglob("*") if p.is_file()) == \
        [common.DEPLOY_MARKER, "1/model.onnx", "config.pbtxt", "labels.txt"]
    cfg = parse_config(model_dir)
    assert cfg.name == "digits" and cfg.backend == "onnxruntime" and not cfg.platform
    graph = onnx.load(str(model_dir / "1" / "model.onnx")).graph
    lo, opt, hi = manifest.batch.bounds
    assert cfg.max_batch_size == hi, f"max_batch_size {cfg.max_batch_size}, profile max {hi}"
    for side, tensors in (("input", graph.input), ("output", graph.output)):
        listed = list(getattr(cfg, side))
        assert [t.name for t in listed] == [t.name for t in tensors]
        for entry, tensor in zip(listed, tensors):
            dims = [d.dim_value if d.HasField("dim_value") else -1 for d in tensor.type.tensor_type.shape.dim]
            assert list(entry.dims) == dims[1:], f"{side} {entry.name}: config dims {list(entry.dims)}, graph {dims}"
            assert dtype_name(entry.data_type) == ONNX_NUMPY[tensor.type.tensor_type.elem_type]
    assert list(cfg.input[0].dims) == list(manifest.sample_shape)
    assert cfg.output[0].name == manifest.output_kind.value
    assert cfg.output[0].label_filename == "labels.txt"
    labels = (model_dir / "labels.txt").read_text().splitlines()
    assert labels == list(manifest.labels) and len(labels) == cfg.output[0].dims[-1]
    preferred = list(cfg.dynamic_batching.preferred_batch_size)
    assert preferred and all(lo <= p <= cfg.max_batch_size for p in preferred), (preferred, (lo, hi))
    assert cfg.dynamic_batching.max_queue_delay_microseconds == tr.DEFAULT_QUEUE_DELAY_US
    group = cfg.instance_group[0]
    assert group.count == 1 and group.kind == model_config_pb2.ModelInstanceGroup.KIND_GPU
    accel = cfg.optimization.execution_accelerators.gpu_execution_accelerator[0]
    assert accel.name == "tensorrt" and accel.parameters["precision_mode"] == "FP32"


def test_repository_model_matches_the_reference_with_the_configs_types(written):
    """What a Triton client sends (edgevit's preprocessing of uint8 pixels, in the config's data type,
    batches of at most max_batch_size) through REPO/NAME/1/model.onnx equals the fp32 export fed the
    same preprocessing: the same graph, so within the fp32 tolerance, top-1 agreement 1.0."""
    import onnxruntime as ort

    export, repo, result = written
    manifest = Manifest.load(export)
    cfg = parse_config(repo / "digits")
    pixels, _ = common.consumer_pixels(manifest, None, 64)
    assert pixels.dtype == np.uint8 and pixels.shape[1:] == manifest.sample_shape
    feed = normalize(pixels, manifest.preprocessing).astype(dtype_name(cfg.input[0].data_type))
    session = ort.InferenceSession(str(repo / "digits" / "1" / "model.onnx"), providers=["CPUExecutionProvider"])
    got = np.concatenate([session.run([cfg.output[0].name], {cfg.input[0].name: feed[i:i + cfg.max_batch_size]})[0]
                          for i in range(0, len(feed), cfg.max_batch_size)])
    assert list(got.shape[1:]) == list(cfg.output[0].dims)
    reference = ort.InferenceSession(str(export / "model.onnx"), providers=["CPUExecutionProvider"]).run(
        None, {manifest.inputs[0].name: normalize(pixels, manifest.preprocessing)})[0]
    assert_fp32_match(got, reference)


def test_certificate_recorded_in_the_manifest(written):
    export, repo, result = written
    cert = result.certificate
    assert cert.passed and cert.consumer == tr.CONSUMER and cert.artifact == "model.onnx"
    assert cert.max_abs is not None and cert.max_abs <= cert.atol, (cert.max_abs, cert.atol)
    assert cert.top1_agreement == 1.0 and cert.samples == common.DEFAULT_SAMPLES
    assert set(cert.files) == {"1/model.onnx", "config.pbtxt", "labels.txt"}
    recorded = [c for c in Manifest.load(export).certificates if c.consumer == tr.CONSUMER]
    assert [c.to_dict() for c in recorded] == [cert.to_dict()]


def test_cpu_instances_and_options(export, tmp_path):
    result = tr.write_triton(export, tmp_path / "repo", name="cpu", kind="cpu", instances=3, max_batch_size=4,
                             preferred=[2, 4], queue_delay_us=500, samples=16)
    cfg = parse_config(tmp_path / "repo" / "cpu")
    group = cfg.instance_group[0]
    assert group.kind == model_config_pb2.ModelInstanceGroup.KIND_CPU and group.count == 3
    assert not cfg.HasField("optimization"), "no GPU accelerator for CPU instances"
    assert cfg.max_batch_size == 4 and list(cfg.dynamic_batching.preferred_batch_size) == [2, 4]
    assert cfg.dynamic_batching.max_queue_delay_microseconds == 500
    assert result.certificate.passed and result.certificate.samples == 16


def _static_batch(export, size: int = 4):
    """The export's graph with its batch dim fixed to ``size`` (re-recorded in the manifest)."""
    proto = onnx.load(str(export / "model.onnx"))
    for value in (*proto.graph.input, *proto.graph.output):
        dim = value.type.tensor_type.shape.dim[0]
        dim.ClearField("dim_param")
        dim.dim_value = size
    onnx.save(proto, str(export / "model.onnx"))
    manifest = Manifest.load(export)
    old = manifest.artifact(BASE_PRECISION, "onnx")
    manifest.add_artifact("model.onnx", format="onnx", precision=BASE_PRECISION, **old.extra)
    manifest.save(export, force=True)


def test_static_batch_graph_gets_max_batch_size_0_and_full_dims(export, tmp_path):
    _static_batch(export, 4)
    result = tr.write_triton(export, tmp_path / "repo", name="static", samples=10)  # 10: the last request padded
    cfg = parse_config(tmp_path / "repo" / "static")
    assert cfg.max_batch_size == 0 and list(cfg.input[0].dims) == [4, *Manifest.load(export).sample_shape]
    assert list(cfg.output[0].dims) == [4, 10]
    assert not cfg.HasField("dynamic_batching"), "Triton batches nothing with max_batch_size 0"
    assert result.certificate.passed and result.certificate.samples == 10


def _fake_engine(export, compute_capability="8.9", profile=(1, 2, 8)):
    """An engine entry as edgevit build records it (the file is not a real plan: nothing here loads it)."""
    from edgevit.formats import FP16

    (export / engine_file(FP16)).write_bytes(b"not a real TensorRT plan")
    manifest = Manifest.load(export)
    onnx_entry = manifest.artifact(BASE_PRECISION, "onnx")
    manifest.add_artifact(engine_file(FP16), format="tensorrt", precision=FP16, tensorrt_version="10.3.0.26",
                          gpu_name="NVIDIA L4", compute_capability=compute_capability,
                          profile=dict(zip(("min", "opt", "max"), profile)),
                          onnx={"path": onnx_entry.path, "sha256": onnx_entry.sha256})
    manifest.save(export, force=True)
    return export / engine_file(FP16)


def test_engine_repository_is_a_tensorrt_plan_and_not_run(export, tmp_path):
    plan = _fake_engine(export)
    result = tr.write_triton(export, tmp_path / "repo", artifact=plan, name="engine", compute_capability="8.9",
                             samples=8)
    model_dir = tmp_path / "repo" / "engine"
    cfg = parse_config(model_dir)
    assert cfg.platform == "tensorrt_plan" and not cfg.backend and cfg.max_batch_size == 8
    assert (model_dir / "1" / "model.plan").read_bytes() == plan.read_bytes()
    assert not cfg.HasField("optimization")
    cert = result.certificate
    assert cert.verdict is Verdict.NOT_RUN and cert.max_abs is None, "TensorRT cannot run here: not certified"
    assert cert.details["source_graph_check"]["max_abs"] <= cert.atol


@pytest.mark.parametrize("case", ["batch above profile", "preferred outside", "cpu engine", "other gpu",
                                  "precision missing", "both precision and artifact", "bad name", "existing"])
def test_refused_before_anything_is_written(export, tmp_path, case):
    repo = tmp_path / "repo"
    kwargs = {"name": "m"}
    if case == "batch above profile":
        kwargs["max_batch_size"] = Manifest.load(export).batch.max + 1
    elif case == "preferred outside":
        kwargs.update(max_batch_size=4, preferred=[8])
    elif case in ("cpu engine", "other gpu"):
        kwargs["artifact"] = _fake_engine(export, compute_capability="8.9")
        kwargs.update({"kind": "cpu"} if case == "cpu engine" else {"compute_capability": "8.6"})
    elif case == "precision missing":
        kwargs["precision"] = next(p for p in FLOAT_PRECISIONS if p != BASE_PRECISION)
    elif case == "both precision and artifact":
        kwargs.update(precision=BASE_PRECISION, artifact=export / "model.onnx")
    elif case == "bad name":
        kwargs["name"] = "../escape"
    elif case == "existing":
        (repo / "m").mkdir(parents=True)
        (repo / "m" / "keep.txt").write_text("mine")
    before = Manifest.load(export).to_dict()
    with pytest.raises((ValueError, EdgeVitError)) as info:
        tr.write_triton(export, repo, **kwargs)
    assert str(info.value)
    left = sorted(p.relative_to(repo).as_posix() for p in repo.rglob("*")) if repo.exists() else []
    assert left == (["m", "m/keep.txt"] if case == "existing" else []), left
    assert Manifest.load(export).to_dict().get("certificates") == before.get("certificates")


def test_force_replaces(written):
    export, repo, _ = written
    (repo / "digits" / "stale.txt").write_text("old")
    tr.write_triton(export, repo, name="digits", force=True, samples=8)
    assert not (repo / "digits" / "stale.txt").exists() and parse_config(repo / "digits").name == "digits"


def test_pbtxt_writes_nested_messages_lists_and_enums():
    text = tr.pbtxt({"name": 'a"b', "max_batch_size": 0, "input": [{"name": "x", "data_type": tr._Enum("TYPE_UINT8"),
                                                                     "dims": [224, 224, 3]}]})
    cfg = text_format.Parse(text, model_config_pb2.ModelConfig())
    assert cfg.name == 'a"b' and list(cfg.input[0].dims) == [224, 224, 3]
    assert cfg.input[0].data_type == model_config_pb2.TYPE_UINT8


def test_cli_table_and_json(export, tmp_path):
    res = run_cli("deploy", "triton", export, "-o", tmp_path / "repo", "--name", "digits", "--samples", "32")
    assert_exit(res, 0)
    fields = {row[0]: row[1] for row in rich_table(res.output, "field") if row[0]}
    assert fields["max_batch_size"] == str(Manifest.load(export).batch.max)
    assert fields["input"].startswith("images TYPE_FP32")
    cert_rows = rich_table(res.output, "consumer")
    assert cert_rows[0][0] == "triton" and cert_rows[0][-1] == "passed", cert_rows
    assert "not run here" in res.output
    res = run_cli("deploy", "triton", export, "-o", tmp_path / "repo", "--name", "digits", "--json")
    assert_exit(res, 1)  # exists: refused, as JSON
    res = run_cli("deploy", "triton", export, "-o", tmp_path / "repo", "--name", "digits", "--json", "--force",
                  "--kind", "cpu", "--samples", "32")
    assert_exit(res, 0)
    data = json.loads(res.output)
    assert data["ok"] and data["config"]["max_batch_size"] == Manifest.load(export).batch.max
    assert data["certificate"]["verdict"] == "passed" and data["certificate"]["consumer"] == "triton"
    res = run_cli("deploy", "triton", export, "-o", tmp_path / "repo2", "--max-batch-size", "99")
    assert_exit(res, 1)
    assert "outside the batch profile" in res.output and not (tmp_path / "repo2").exists()
    res = run_cli("deploy", "--help")
    assert_exit(res, 0)
    assert "triton" in res.output and "deepstream" in res.output


def test_deploy_package_imports_no_torch():
    import subprocess
    import sys

    code = ("import sys, edgevit.deploy.triton, edgevit.deploy.common, edgevit.cli.deploy_targets; "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False", out


@pytest.fixture(scope="module")
def raw_export(tmp_path_factory):
    """The model of ``digits_like_export`` (same seed) exported with a raw uint8 NHWC input."""
    from edgevit.export.onnx import ExportConfig, export_onnx
    from tests._fixtures import digits_like_model

    out = tmp_path_factory.mktemp("raw") / "out"
    export_onnx(digits_like_model(0), out, ExportConfig(batch=(1, 2, 8), verify=False, lint=False, input="uint8"),
                force=True)
    return out


def test_raw_pixel_repository_takes_uint8_and_matches_the_float_graph(raw_export, digits_like_export, tmp_path):
    """A raw-pixel export's repository declares TYPE_UINT8 NHWC dims; fed uint8 frames as they come, its
    model gives what the float export of the same weights gives on edgevit's preprocessing of the same
    pixels: fp32 tolerance, top-1 agreement 1.0."""
    import onnxruntime as ort

    result = tr.write_triton(raw_export, tmp_path / "repo", name="raw", samples=64)
    manifest = Manifest.load(raw_export)
    cfg = parse_config(tmp_path / "repo" / "raw")
    c, h, w = manifest.preprocessing.input_size
    assert cfg.input[0].data_type == model_config_pb2.TYPE_UINT8 and list(cfg.input[0].dims) == [h, w, c]
    pixels, _ = common.consumer_pixels(manifest, None, 64)
    session = ort.InferenceSession(str(tmp_path / "repo" / "raw" / "1" / "model.onnx"), providers=["CPUExecutionProvider"])
    frames = np.ascontiguousarray(pixels.transpose(0, 2, 3, 1))
    got = np.concatenate([session.run(None, {cfg.input[0].name: frames[i:i + cfg.max_batch_size]})[0]
                          for i in range(0, len(frames), cfg.max_batch_size)])
    float_manifest = Manifest.load(digits_like_export)
    reference = ort.InferenceSession(str(digits_like_export / "model.onnx"), providers=["CPUExecutionProvider"]).run(
        None, {float_manifest.inputs[0].name: normalize(pixels, float_manifest.preprocessing)})[0]
    assert_fp32_match(got, reference)
    assert result.certificate.passed and "uint8 pixels as a client sends them" in result.certificate.method


def test_precision_graph_repository(export, tmp_path):
    """An fp16 graph: its own types in the config (read off the graph), the TensorRT accelerator asked for
    FP16, and the repository's model held to the fp16 tolerance against the fp32 reference."""
    from edgevit.formats import FP16
    from edgevit.precision.pipeline import QuantizeConfig, quantize

    quantize(export, QuantizeConfig(precisions=(FP16,), gate=False), force=True)
    result = tr.write_triton(export, tmp_path / "repo", precision=FP16, samples=64)
    model_dir = result.model_dir
    cfg = parse_config(model_dir)
    graph = onnx.load(str(model_dir / "1" / "model.onnx")).graph
    assert dtype_name(cfg.input[0].data_type) == ONNX_NUMPY[graph.input[0].type.tensor_type.elem_type]
    accel = cfg.optimization.execution_accelerators.gpu_execution_accelerator[0]
    assert accel.parameters["precision_mode"] == "FP16"
    cert, tol = result.certificate, get_tolerance(FP16)
    assert cert.passed and cert.artifact == "model.fp16.onnx" and cert.atol == tol.atol
    assert cert.max_abs <= tol.atol and cert.top1_agreement >= tol.min_agreement, (cert.max_abs, cert.top1_agreement)


def test_external_data_travels_under_its_own_name(export, tmp_path):
    """A graph with external data: the file is renamed model.onnx, its data keeps the name the graph
    refers to, beside it in 1/, and the repository's model still runs and matches."""
    proto = onnx.load(str(export / "model.onnx"))
    onnx.save(proto, str(export / "model.onnx"), save_as_external_data=True, location="model.onnx.data")
    manifest = Manifest.load(export)
    old = manifest.artifact(BASE_PRECISION, "onnx")
    manifest.add_artifact("model.onnx", format="onnx", precision=BASE_PRECISION, external_data=["model.onnx.data"],
                          **old.extra)
    manifest.save(export, force=True)
    result = tr.write_triton(export, tmp_path / "repo", name="ext", samples=16)
    version = tmp_path / "repo" / "ext" / "1"
    assert sorted(p.name for p in version.iterdir()) == ["model.onnx", "model.onnx.data"]
    assert result.certificate.passed and "1/model.onnx.data" in result.certificate.files
