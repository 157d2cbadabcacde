"""The fp32 export that the precision and calibration tests build their graphs from."""

from __future__ import annotations

import pytest

from edgevit.data import Preprocessing
from edgevit.export.onnx import ExportConfig, export_onnx
from edgevit.manifest import Manifest


@pytest.fixture(scope="session")
def exported(robust_digits, tmp_path_factory):
    """robust_digits exported to model.onnx (batch 1..64); tests copy it before writing beside it."""
    out = tmp_path_factory.mktemp("export") / "out"
    export_onnx(robust_digits, out, ExportConfig(batch=(1, 8, 64), lint=False))
    return out


@pytest.fixture(scope="session")
def preprocessing(exported) -> Preprocessing:
    """The preprocessing the export's manifest records (calibration images go through it)."""
    return Manifest.load(exported).preprocessing
