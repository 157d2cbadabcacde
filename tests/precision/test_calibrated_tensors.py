"""Calibration ranges exactly the tensors the quantized graphs read: the activation inputs of the nodes a
recipe could quantize. Before, every input and output of every MatMul / Gemm / Conv was collected, each
block's attention scores among them (0.8 GB an image per global block of SAM ViT-B at 1024 px, which ran a
24 GB machine out of memory). A cache that lacks a tensor a later recipe needs is recomputed, not reused."""

from __future__ import annotations

import json
import shutil

import onnx

from edgevit.formats import CALIBRATION_CACHE
from edgevit.precision.pipeline import QuantizeConfig, quantize
from edgevit.precision.recipe import PrecisionRecipe, activation_inputs, quantizable_nodes


def _wanted(out, **flags) -> set[str]:
    proto = onnx.load(str(out / "model.onnx"), load_external_data=False)
    return activation_inputs(proto, quantizable_nodes(proto, PrecisionRecipe("int8", **flags)))


def test_calibration_ranges_the_recipes_inputs_only_and_recalibrates_for_more(exported, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(exported, out)
    quantize(out, QuantizeConfig(precisions=("int8",), gate=False, calib_samples=64, progress=False))
    cached = set(json.loads((out / CALIBRATION_CACHE).read_text())["amax"])
    linear = _wanted(out)
    assert cached == linear, f"cached {len(cached)} tensors, the recipe reads {len(linear)}: {sorted(cached ^ linear)[:6]}"

    quantize(out, QuantizeConfig(precisions=("int8",), gate=False, calib_samples=64, quantize_attention=True,
                                 progress=False), force=True)
    cached = set(json.loads((out / CALIBRATION_CACHE).read_text())["amax"])
    both = _wanted(out, quantize_attention=True)
    assert both > linear and cached == both, f"with attention: cached {len(cached)}, wanted {len(both)}"
