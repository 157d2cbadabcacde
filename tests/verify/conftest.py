"""Shared by the verify tests: one tiny model, its checkpoint, its two ONNX exports (decomposed and
fused attention), and a copy of the decomposed export with block 1's qkv weight perturbed."""

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from edgevit import save_model
from tests._fixtures import tiny_model


def _export(model, outdir, attention):
    from edgevit.export import ExportConfig, export_onnx

    export_onnx(model, outdir, ExportConfig(attention=attention, verify=False, lint=False))
    return outdir


@pytest.fixture(scope="package")
def model():
    return tiny_model(seed=3)


@pytest.fixture(scope="package")
def ckpt(model, tmp_path_factory):
    return str(save_model(model, tmp_path_factory.mktemp("ckpt") / "tiny.safetensors"))


@pytest.fixture(scope="package")
def outdirs(model, tmp_path_factory):
    base = tmp_path_factory.mktemp("export")
    return {form: _export(model, base / form, form) for form in ("decomposed", "fused")}


def _qkv_weights(proto):
    """Initializers of the qkv MatMuls, in block order (found by shape: (C, 3C))."""
    inits = {t.name: t for t in proto.graph.initializer}
    out = []
    for node in proto.graph.node:
        if node.op_type in ("MatMul", "Gemm"):
            for name in node.input:
                t = inits.get(name)
                if t is not None and len(t.dims) == 2 and t.dims[1] == 3 * t.dims[0] and name not in out:
                    out.append(name)
    return out


@pytest.fixture(scope="package")
def broken_onnx(outdirs, tmp_path_factory):
    """The decomposed export with block 1's qkv weight perturbed by 2 % of its scale."""
    proto = onnx.load(str(outdirs["decomposed"] / "model.onnx"))
    name = _qkv_weights(proto)[1]
    for i, t in enumerate(proto.graph.initializer):
        if t.name == name:
            w = numpy_helper.to_array(t).copy()
            w += 0.02 * w.std() * np.random.default_rng(0).standard_normal(w.shape).astype(w.dtype)
            proto.graph.initializer[i].CopyFrom(numpy_helper.from_array(w, name))
    path = tmp_path_factory.mktemp("broken") / "broken.onnx"
    onnx.save(proto, str(path))
    return path
