"""Any number of images runs through a model with a limited batch range: chunks of at most the
max, a short last chunk padded to the min (or the static batch) and the padding dropped. One
mechanism (edgevit.runtime.batching) for predict, verify and bench."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from edgevit.cli import main
from edgevit.runtime import Engine
from edgevit.runtime.batching import batch_range, padded_chunks
from tests._fixtures import export_digits_like


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(0).uniform(0, 16, (11, 1, 8, 8)).astype(np.float32)


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    """(dynamic 1..8 export, the same weights with a static batch of 4, with a 2..4 profile)."""
    from edgevit.export.onnx import ExportConfig, export_onnx

    root = tmp_path_factory.mktemp("batching")
    model = export_digits_like(root / "dynamic", batch=(1, 2, 8))
    export_onnx(model, root / "static4", ExportConfig(static_batch=4, verify=False, lint=False), force=True)
    export_digits_like(root / "min2", batch=(2, 2, 4))
    return root / "dynamic", root / "static4", root / "min2"


def _top1(result) -> list[int]:
    return [p[0]["index"] for p in result]


def _probs(result) -> np.ndarray:
    return np.array([p[0]["prob"] for p in result])


@pytest.mark.parametrize("n", [1, 3, 4, 5, 9])
def test_predict_on_a_static_batch_export_pads_and_trims(exports, images, n):
    dynamic, static4, _ = exports
    with Engine.load(dynamic / "model.onnx", threads=1) as ref, Engine.load(static4 / "model.onnx", threads=1) as eng:
        assert eng.profile == (4, 4, 4), eng.profile
        want, got = ref.predict(images[:n], topk=1), eng.predict(images[:n], topk=1)
    assert len(got) == n, len(got)
    assert _top1(got) == _top1(want), (_top1(got), _top1(want))
    np.testing.assert_allclose(_probs(got), _probs(want), rtol=0, atol=1e-5,
                               err_msg="padding leaked into the kept rows")


def test_predict_with_profile_min_above_one(exports, images):
    """Profile 2..4: 11 images run as 4 + 4 + 3, and 1 image padded to 2."""
    dynamic, _, min2 = exports
    with Engine.load(dynamic / "model.onnx", threads=1) as ref, Engine.load(min2 / "model.onnx", threads=1) as eng:
        assert eng.profile == (2, 2, 4), eng.profile
        for n in (1, 11):
            want, got = ref.predict(images[:n], topk=1), eng.predict(images[:n], topk=1)
            assert _top1(got) == _top1(want) and len(got) == n, (n, _top1(got), _top1(want))


def test_predict_cli_static_batch_with_fewer_and_more_images(exports, images, tmp_path):
    _, static4, _ = exports
    for n in (3, 9):
        npy = tmp_path / f"x{n}.npy"
        np.save(npy, images[:n])
        res = CliRunner().invoke(main, ["predict", str(static4 / "model.onnx"), str(npy), "--topk", "2", "--json"])
        assert res.exit_code == 0, (n, res.output)
        preds = json.loads(res.stdout)["predictions"]
        assert [p["input"] for p in preds] == [f"{npy}[{i}]" for i in range(n)], preds
        human = CliRunner().invoke(main, ["predict", str(static4 / "model.onnx"), str(npy)])
        assert human.exit_code == 0 and f"x{n}.npy[{n - 1}]" in human.stdout, human.output


def test_batch_range_and_padded_chunks():
    assert batch_range((4, 1, 8, 8), None, 32) == (4, 4)            # a fixed batch dim wins
    assert batch_range(("batch", 1, 8, 8), (2, 4, 8), 32) == (2, 8)  # the profile, within batch_size
    assert batch_range(("batch", 1, 8, 8), (2, 4, 8), 5) == (2, 5)
    assert batch_range(("batch", 1, 8, 8), (4, 4, 8), 3) == (4, 4)   # never below the profile's min
    assert batch_range(("batch",), None, 7) == (1, 7)
    x = np.arange(11)[:, None]
    chunks = list(padded_chunks(x, 2, 4))
    assert [(len(c), n) for c, n in chunks] == [(4, 4), (4, 4), (3, 3)], chunks
    chunks = list(padded_chunks(x[:9], 2, 4))
    assert [(len(c), n) for c, n in chunks] == [(4, 4), (4, 4), (2, 1)] and chunks[-1][0][:, 0].tolist() == [8, 8]
    with pytest.raises(ValueError, match="1 <= min <= max"):
        list(padded_chunks(x, 5, 4))


def test_verify_uses_the_runtime_batching():
    import edgevit.runtime.batching as batching
    import edgevit.verify.attention as attention
    import edgevit.verify.run as run

    assert run.run_batched is batching.run_batched and attention.padded_chunks is batching.padded_chunks


def test_batches_edgevit_picks_keep_the_attention_scores_bounded():
    """A batch edgevit picks itself (gate, calibration, verify, export's checks) holds at most SCORE_BYTES of one
    attention-score tensor: SAM ViT-B at 1024 px (12 heads x 4096^2 float32 = 0.8 GB an image) runs
    SCORE_BYTES // 0.8 GB images; a ViT-B/16 at 224 px keeps the batch asked for; unknown sizes change nothing."""
    from edgevit.models.vit import ViTConfig
    from edgevit.runtime.batching import SCORE_BYTES, score_bounded_batch

    sam = ViTConfig(img_size=1024, class_token=False, pool="mean", num_classes=0, window_size=14,
                    global_blocks=(2, 5, 8, 11), rel_pos_bias="decomposed", neck_dim=256)
    assert sam.score_bytes == 4 * 12 * 4096**2, sam.score_bytes
    got = score_bounded_batch(256, sam.score_bytes)
    assert got == SCORE_BYTES // sam.score_bytes and got * sam.score_bytes <= SCORE_BYTES, got
    assert score_bounded_batch(256, ViTConfig().score_bytes) == 256
    assert score_bounded_batch(32, None) == 32 and score_bounded_batch(4, 10 * SCORE_BYTES) == 1
    assert ViTConfig.score_bytes_of(sam.to_dict()) == sam.score_bytes and ViTConfig.score_bytes_of({"x": 1}) is None
