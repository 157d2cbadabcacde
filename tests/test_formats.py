"""edgevit.formats is the one table of precisions and file names: every other list is read off it."""

from __future__ import annotations

import pytest

from edgevit import formats
from edgevit.formats import (CALIBRATION_CACHE, MANIFEST_NAME, ONNX_PRECISIONS, PRECISIONS, QUANTIZED,
                             engine_file, onnx_file)


def test_the_table_names_the_precisions_and_files_edgevit_writes():
    assert PRECISIONS == ("fp32", "fp16", "bf16", "int8", "fp8", "int4", "mixed"), PRECISIONS
    assert ONNX_PRECISIONS == ("fp32", "fp16", "bf16", "int8", "fp8"), ONNX_PRECISIONS
    assert QUANTIZED == ("int8", "fp8") and formats.FLOAT_PRECISIONS == ("fp32", "fp16", "bf16")
    files = {p: onnx_file(p) for p in ONNX_PRECISIONS}
    assert files == {"fp32": "model.onnx", "fp16": "model.fp16.onnx", "bf16": "model.bf16.onnx",
                     "int8": "model.int8.onnx", "fp8": "model.fp8.onnx"}, files
    assert (MANIFEST_NAME, CALIBRATION_CACHE) == ("edgevit.json", "calibration.json")
    assert (engine_file(), engine_file("int8")) == ("model.plan", "model.int8.plan")
    with pytest.raises(ValueError, match="int4"):
        onnx_file("int4")  # TensorRT-only: no ONNX graph of it


def test_every_user_reads_the_one_table():
    """The tolerance rows, the manifest, the TensorRT rules and the CLI choices all follow formats."""
    from edgevit import manifest, tolerances
    from edgevit.cli._options import parse_precisions
    from edgevit.precision.pipeline import QuantizeConfig
    from edgevit.tensorrt import rules

    assert tuple(tolerances.TOLERANCES) == ONNX_PRECISIONS, list(tolerances.TOLERANCES)
    assert manifest.lookup is formats.precision and manifest.MANIFEST_NAME is MANIFEST_NAME
    assert rules.lookup is formats.precision and rules.DLA_PRECISIONS == ("fp16", "int8", "mixed")
    assert parse_precisions("fp32,fp8") == ("fp32", "fp8")
    with pytest.raises(ValueError, match="fp32, fp16, bf16, int8, fp8"):
        parse_precisions("int4")
    assert QuantizeConfig().precisions == ("fp16", "bf16", "int8", "fp8")
