"""Runners: one interface over PyTorch and ONNX Runtime; lazy backends; input validation."""

import subprocess
import sys

import numpy as np
import pytest

from edgevit.errors import DataError, EdgeVitError, MissingDependencyError, OnnxModelError
from edgevit.runtime import get_runner, list_runners, validate_feeds
from tests._fixtures import export_onnx, tiny_model

ATOL, RTOL = 1e-4, 1e-4


@pytest.fixture(scope="module")
def model():
    return tiny_model(seed=0)


@pytest.fixture(scope="module")
def onnx_path(model, tmp_path_factory):
    return export_onnx(model, tmp_path_factory.mktemp("onnx") / "model.onnx", "decomposed")


def _images(n, seed=0):
    return np.random.default_rng(seed).standard_normal((n, 3, 16, 16), dtype=np.float32)


@pytest.mark.parametrize("batch", [1, 13])
def test_torch_and_onnxruntime_agree(model, onnx_path, batch):
    x = _images(batch, seed=batch)
    with get_runner("torch", model, attention="math") as ref, get_runner("onnxruntime", onnx_path, threads=1) as ort:
        a = ref.infer({"images": x})["logits"]
        b = ort.infer({"images": x})["logits"]
    assert a.shape == b.shape == (batch, 10), (a.shape, b.shape)
    err = np.abs(a - b)
    allowed = ATOL + RTOL * np.abs(a)
    assert (err <= allowed).all(), (
        f"batch {batch}: max abs {err.max():.3e}, worst excess {(err - allowed).max():.3e} "
        f"over atol {ATOL} + rtol {RTOL}*|ref| (logit scale {np.abs(a).max():.3f})")


def test_input_specs_match(model, onnx_path):
    with get_runner("torch", model) as t, get_runner("onnxruntime", onnx_path) as o:
        ts, os_ = t.input_spec(), o.input_spec()
        assert o.output_names() == ["logits"] and t.output_names() == ["logits"]
    assert list(ts) == list(os_) == ["images"], (ts, os_)
    (tshape, tdtype), (oshape, odtype) = ts["images"], os_["images"]
    assert tshape[1:] == oshape[1:] == (3, 16, 16), (tshape, oshape)
    assert not isinstance(oshape[0], int), f"batch dim should be dynamic, got {oshape[0]!r}"
    assert tdtype == odtype == np.float32


@pytest.mark.parametrize("dtype,tol", [("fp16", 5e-2), ("bf16", 3e-1)])
def test_torch_runner_low_precision(model, dtype, tol):
    x = _images(4)
    with get_runner("torch", model, attention="math") as ref, get_runner("torch", model, dtype=dtype,
                                                                         attention="sdpa") as low:
        a = ref.infer({"images": x})["logits"]
        b = low.infer({"images": x})["logits"]
    assert b.dtype == np.float32, b.dtype
    err = np.abs(a - b).max()
    assert 0 < err <= tol, f"{dtype}: max abs {err:.3e} (expected in (0, {tol}])"


def test_torch_runner_does_not_modify_the_model(model):
    before = model.attn_impl
    with get_runner("torch", model, attention="math" if before == "sdpa" else "sdpa", dtype="fp16"):
        pass
    assert model.attn_impl == before
    assert next(model.parameters()).dtype.is_floating_point and str(next(model.parameters()).dtype) == "torch.float32"


@pytest.mark.parametrize(
    "feeds,match",
    [
        ({"image": _images(2)}, r"missing input\(s\) \['images'\].*unexpected input\(s\) \['image'\]"),
        ({"images": _images(2)[:, :, :8]}, r"shape \(2, 3, 8, 16\), expected \[batch, 3, 16, 16\]"),
        ({"images": _images(2).astype(np.float64)}, r"dtype float64, expected float32"),
        ({"images": _images(2)[0]}, r"shape \(3, 16, 16\)"),
        ({"images": [[1.0]]}, r"must be a numpy array"),
    ],
    ids=["name", "shape", "dtype", "rank", "type"],
)
@pytest.mark.parametrize("backend", ["torch", "onnxruntime"])
def test_bad_feeds_name_the_expected_spec(model, onnx_path, backend, feeds, match):
    source = model if backend == "torch" else onnx_path
    with get_runner(backend, source) as r:
        with pytest.raises(DataError, match=match) as info:
            r.infer(feeds)
    assert "images: float32[" in str(info.value), str(info.value)


@pytest.mark.parametrize("bad,what", [(np.nan, "NaN"), (np.inf, "Inf")])
@pytest.mark.parametrize("backend", ["torch", "onnxruntime"])
def test_nonfinite_inputs_are_refused(model, onnx_path, backend, bad, what):
    x = _images(3)
    x[1, 0, 2, 2] = bad
    with get_runner(backend, model if backend == "torch" else onnx_path) as r:
        with pytest.raises(DataError, match=f"1 {what}" if what == "NaN" else "1 Inf"):
            r.infer({"images": x})


def test_validate_feeds_standalone():
    spec = {"images": (("batch", 1, 8, 8), np.dtype(np.float32))}
    validate_feeds({"images": np.zeros((5, 1, 8, 8), np.float32)}, spec)
    with pytest.raises(DataError, match=r"images: float32\[batch, 1, 8, 8\]"):
        validate_feeds({"images": np.zeros((5, 1, 8, 9), np.float32)}, spec)


def test_missing_and_non_onnx_files(tmp_path):
    with pytest.raises(OnnxModelError, match="no such ONNX file"):
        get_runner("onnxruntime", tmp_path / "nope.onnx")
    junk = tmp_path / "junk.onnx"
    junk.write_text("this is not a protobuf")
    runner = get_runner("onnxruntime", junk)
    with pytest.raises(OnnxModelError, match="could not load this model"):
        with runner:
            pass
    assert not runner.is_active
    with pytest.raises(OnnxModelError, match="is a directory"):
        get_runner("onnxruntime", tmp_path)


def test_missing_checkpoint_for_torch_runner(tmp_path):
    from edgevit.errors import CheckpointError

    with pytest.raises(CheckpointError, match="no such file"):
        with get_runner("torch", str(tmp_path / "nope.safetensors")):
            pass


def test_runner_must_be_active(onnx_path):
    runner = get_runner("onnxruntime", onnx_path)
    with pytest.raises(EdgeVitError, match="inside `with runner:`"):
        runner.infer({"images": _images(1)})


def test_lookup_by_name_and_aliases(onnx_path):
    assert {"torch", "onnxruntime", "tensorrt"} <= set(list_runners())
    assert get_runner("ort", onnx_path).name.startswith("onnxruntime")
    with pytest.raises(ValueError, match=r"unknown runner 'tflite'; allowed: \['onnxruntime', 'tensorrt', 'torch'\]"):
        get_runner("tflite", onnx_path)


def test_bad_options():
    with pytest.raises(ValueError, match="attention must be one of"):
        get_runner("torch", "digits-tiny", attention="flash")
    with pytest.raises(ValueError, match="dtype must be one of"):
        get_runner("torch", "digits-tiny", dtype="fp64")
    with pytest.raises(ValueError, match="device must be one of"):
        get_runner("torch", "digits-tiny", device="tpu")
    with pytest.raises(ValueError, match="threads must be a positive integer"):
        get_runner("onnxruntime", b"", threads=0)


def test_unavailable_provider_says_how_to_install(onnx_path):
    import onnxruntime

    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("CUDA provider is installed here")
    with pytest.raises(MissingDependencyError, match="pip install onnxruntime-gpu"):
        with get_runner("onnxruntime", onnx_path, providers="cuda"):
            pass


def test_cuda_device_without_cuda_is_a_clear_error():
    import torch

    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    with pytest.raises(EdgeVitError, match="torch.cuda.is_available"):
        get_runner("torch", "digits-tiny", device="cuda")


def test_tensorrt_runner_missing_dependency(tmp_path):
    try:
        import tensorrt  # noqa: F401

        pytest.skip("tensorrt is installed here")
    except ImportError:
        pass
    with pytest.raises(MissingDependencyError, match=r"pip install 'edgevit\[trt-cu12\]'"):
        get_runner("tensorrt", tmp_path / "model.plan")


def test_import_edgevit_imports_no_backend():
    code = (
        "import sys, edgevit, edgevit.runtime, edgevit.verify, edgevit.cli\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('onnxruntime', 'tensorrt'))\n"
        "print(bad)\n"
        "sys.exit(1 if bad else 0)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, f"imported backends: {proc.stdout} {proc.stderr[-2000:]}"
