"""Fixtures of the training tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest


@pytest.fixture(scope="module")
def small_npz(tmp_path_factory) -> Path:
    """300 digits (raw 0..16 values) with labels: 210 train / 30 val / 60 test, 4 steps an epoch."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    path = tmp_path_factory.mktemp("data") / "digits300.npz"
    np.savez(path, images=bunch.images[:300].astype(np.float32), labels=bunch.target[:300])
    return path
