"""What each side of a comparison is: files, export directories, engines, precisions, and their errors."""

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from edgevit.errors import CheckpointError, ManifestError, OnnxModelError
from edgevit.onnx_graph import graph_precision
from edgevit.verify import verify


def test_precision_detected_from_graph(tmp_path):
    from onnx import TensorProto, helper

    w = numpy_helper.from_array(np.ones((4, 4), np.float16), "w")
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT16, [1, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT16, [1, 4])], [w])
    path = tmp_path / "half.onnx"
    onnx.save(helper.make_model(graph), str(path))
    assert graph_precision(onnx.load(str(path)))[0] == "fp16"


def test_missing_files(ckpt, tmp_path):
    with pytest.raises(OnnxModelError, match="no such ONNX file"):
        verify(ckpt, str(tmp_path / "missing.onnx"), samples=2)
    with pytest.raises(CheckpointError, match="no such file"):
        verify(str(tmp_path / "missing.safetensors"), None, samples=2)


def test_non_onnx_file(ckpt, tmp_path):
    junk = tmp_path / "model.onnx"
    junk.write_bytes(b"\x00\x01 definitely not protobuf" * 10)
    with pytest.raises(OnnxModelError, match="could not load this model"):
        verify(ckpt, str(junk), samples=2)


def test_outdir_without_the_asked_precision(ckpt, outdirs):
    with pytest.raises(ManifestError, match="no artifact with precision='fp16'"):
        verify(ckpt, outdirs["decomposed"], precision="fp16", samples=2)


def test_engine_candidate_without_tensorrt(ckpt, tmp_path):
    try:
        import tensorrt  # noqa: F401

        pytest.skip("tensorrt is installed here")
    except ImportError:
        pass
    from edgevit.errors import MissingDependencyError

    engine = tmp_path / "model.plan"
    engine.write_bytes(b"not really an engine")
    with pytest.raises(MissingDependencyError, match=r"pip install 'edgevit\[trt-cu12\]'"):
        verify(ckpt, str(engine), samples=2, precision="fp16")  # no manifest records its precision


def test_variant_name_reference_needs_a_checkpoint(outdirs):
    with pytest.raises(ValueError, match="is a variant name: freshly initialized random weights"):
        verify("digits-tiny", outdirs["decomposed"], samples=2)
