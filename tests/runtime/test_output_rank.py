"""A valid ONNX graph that is no ViT edgevit exported (a 4-D feature map as its output) is refused by
its output's rank: OutputKindError naming the file, the output and its rank, exit 1 in the CLI,
never a TypeError from ranking a feature map."""

from __future__ import annotations

import json

import numpy as np
import pytest

from edgevit.errors import OutputKindError
from edgevit.runtime import Engine
from tests._fixtures import assert_exit, run_cli


@pytest.fixture(scope="module")
def conv_onnx(tmp_path_factory):
    """A one-Conv graph: images (batch, 1, 8, 8) -> out (batch, 3, 8, 8); no manifest beside it."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    weight = numpy_helper.from_array(np.random.default_rng(0).standard_normal((3, 1, 3, 3)).astype(np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("Conv", ["images", "w"], ["out"], pads=[1, 1, 1, 1])], "conv",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["batch", 1, 8, 8])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["batch", 3, 8, 8])], [weight])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    onnx.checker.check_model(model)
    path = tmp_path_factory.mktemp("conv") / "conv.onnx"
    onnx.save(model, path)
    return path


@pytest.fixture
def model_input(tmp_path):
    path = tmp_path / "x.npy"
    np.save(path, np.random.default_rng(0).uniform(0, 1, (2, 1, 8, 8)).astype(np.float32))
    return path


def test_engine_refuses_a_4d_output_naming_file_output_and_rank(conv_onnx, model_input):
    with Engine.load(conv_onnx) as engine:
        with pytest.raises(OutputKindError) as info:
            engine.predict(np.load(model_input), preprocessed=True)
    message = str(info.value)
    assert str(conv_onnx) in message and "'out'" in message and "rank 4" in message and "rank 2" in message, message


def test_predict_cli_exits_1_on_a_non_vit_graph(conv_onnx, model_input):
    res = run_cli("predict", conv_onnx, model_input, "--preprocessed")
    assert_exit(res, 1)
    assert str(conv_onnx) in res.stderr and "'out'" in res.stderr and "rank 4" in res.stderr, res.output
    res = run_cli("predict", conv_onnx, model_input, "--preprocessed", "--json")
    assert_exit(res, 1)
    answer = json.loads(res.stdout)
    assert answer["ok"] is False and answer["type"] == "OutputKindError" and "rank 4" in answer["message"], answer


def test_an_edgevit_export_still_predicts(digits_like_export, model_input):
    with Engine.load(digits_like_export / "model.onnx") as engine:
        top = engine.predict(np.load(model_input), topk=3, preprocessed=True)
    assert len(top) == 2 and all(len(t) == 3 for t in top), top
    probs = [t[0]["prob"] for t in top]
    assert all(0.0 < p <= 1.0 for p in probs), probs
