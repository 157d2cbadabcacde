import importlib.util

from pathlib import Path

import pytest
import torch


def has_module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def _importable(name: str) -> bool:
    if not has_module(name):
        return False
    try:
        importlib.import_module(name)
        return True
    except Exception:
        return False


HAS_TIMM = _importable("timm")
HAS_TRANSFORMERS = _importable("transformers")
HAS_CUDA = torch.cuda.is_available()
HAS_TENSORRT = has_module("tensorrt")

requires_timm = pytest.mark.skipif(not HAS_TIMM, reason="timm not importable: pip install 'edgevit[timm]' (needs torchvision)")
requires_transformers = pytest.mark.skipif(not HAS_TRANSFORMERS, reason="transformers not installed: pip install 'edgevit[hf]'")


def pytest_collection_modifyitems(config, items):
    skip_gpu = pytest.mark.skip(reason="needs a CUDA GPU; none is visible to torch here")
    skip_trt = pytest.mark.skip(reason="needs TensorRT: pip install 'edgevit[trt]' on a machine with an NVIDIA GPU")
    for item in items:
        if "gpu" in item.keywords and not HAS_CUDA:
            item.add_marker(skip_gpu)
        if "trt" in item.keywords and not (HAS_TENSORRT and HAS_CUDA):
            item.add_marker(skip_trt)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def robust_digits(tmp_path_factory):
    """A digits-shaped checkpoint whose precision graphs pass the accuracy gate and verify by
    construction (tests/_fixtures.quantization_robust_model: seeded weights, no training), so no
    test depends on how a CPU rounds a training run."""
    from edgevit.models.checkpoint import save_model
    from tests._fixtures import quantization_robust_model

    path = tmp_path_factory.mktemp("robust-digits") / "robust.safetensors"
    return str(save_model(quantization_robust_model(), path))


@pytest.fixture(scope="session")
def digits_like_export(tmp_path_factory):
    """A tiny digits-shaped model exported once (batch 1..8): tests that write into it take a copy."""
    from tests._fixtures import export_digits_like

    out = tmp_path_factory.mktemp("digits_like") / "out"
    export_digits_like(out)
    return out


@pytest.fixture
def digits_like_copy(digits_like_export, tmp_path_factory):
    """This test's own copy of ``digits_like_export`` (outside ``tmp_path``, which stays the test's)."""
    import shutil

    return Path(shutil.copytree(digits_like_export, tmp_path_factory.mktemp("copy") / "out"))
