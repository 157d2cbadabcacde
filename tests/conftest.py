import importlib.util

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


TRAINED_EPOCHS = 12  # ~15 s on 2 cores: well above chance, enough for a meaningful accuracy gate


@pytest.fixture(scope="session")
def trained_digits(tmp_path_factory):
    """A digits-tiny checkpoint trained briefly on the bundled digits (shared by the tests)."""
    from edgevit.train import TrainConfig, train

    run = tmp_path_factory.mktemp("trained-digits")
    result = train(TrainConfig(epochs=TRAINED_EPOCHS, output=str(run), progress=False, force=True))
    assert result.test_accuracy > 0.8, f"{TRAINED_EPOCHS}-epoch digits-tiny reached only {result.test_accuracy:.3f}"
    return result.checkpoint
