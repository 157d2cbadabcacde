"""The runtime API (``edgevit.runtime.Engine``) end to end through its ONNX Runtime path, the
``predict`` command, the watch-folder example, and the import rules (no torch/ort/tensorrt)."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from edgevit.cli import main
from edgevit.errors import DataError
from edgevit.runtime import Engine
from tests._fixtures import export_digits_like

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def outdir(tmp_path_factory):
    out = tmp_path_factory.mktemp("digits_like")
    export_digits_like(out, batch=(1, 2, 8))
    return out


@pytest.fixture(scope="module")
def digits():
    from sklearn.datasets import load_digits as sk_digits

    raw = sk_digits()
    return raw.images[:12].astype(np.float32)[:, None], raw.target[:12]


def as_8bit(images: np.ndarray) -> np.ndarray:
    """Digits (0..16) as the grey levels of an ordinary 8-bit image file (0..255)."""
    return np.round(images * 255 / 16).astype(np.uint8)


@pytest.fixture(scope="module")
def pngs(tmp_path_factory, digits):
    from PIL import Image

    folder = tmp_path_factory.mktemp("pngs")
    images, _ = digits
    for i, img in enumerate(images[:3]):
        Image.fromarray(as_8bit(img[0]), mode="L").save(folder / f"digit{i}.png")
    return folder


def test_import_runtime_needs_no_torch_ort_or_tensorrt():
    code = ("import sys, edgevit, edgevit.runtime; from edgevit.runtime import Engine; "
            "bad = [m for m in ('torch', 'onnxruntime', 'tensorrt', 'onnx') if m in sys.modules]; "
            "assert not bad, bad")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr


BLOCK = """
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in ('torch', 'onnx', 'sklearn', 'tensorrt', 'click', 'rich'):
            raise ImportError(f'{name} is blocked: a device app must not need it')
sys.meta_path.insert(0, Block())
"""


def test_runtime_runs_without_toolchain_packages(outdir, pngs):
    """Engine.load + predict with torch, onnx, sklearn, click and rich made unimportable."""
    code = BLOCK + (f"from edgevit.runtime import Engine\n"
                    f"e = Engine.load({str(outdir / 'model.onnx')!r}, threads=1)\n"
                    f"print(e.predict([{str(next(pngs.glob('*.png')))!r}], topk=2))\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "'label'" in proc.stdout, proc.stdout


def test_predict_numpy_batch_and_single_image(outdir, digits):
    images, _ = digits
    with Engine.load(outdir / "model.onnx", threads=1) as engine:
        assert engine.backend == "onnxruntime" and engine.profile == (1, 2, 8), engine
        top = engine.predict(images[:4], topk=3)
        assert len(top) == 4 and all(len(t) == 3 for t in top), top
        for t in top:
            total = sum(p["prob"] for p in t)
            assert total <= 1.0 + 1e-9, f"top-3 probabilities sum to {total}"
            assert [p["prob"] for p in t] == sorted((p["prob"] for p in t), reverse=True), t
            assert all(p["label"] == str(p["index"]) for p in t), t  # labels "0".."9" from the manifest
        single = engine.predict(images[0], topk=1)
        assert single[0][0] == top[0][0], (single, top[0])
        assert engine.last_latency_ms is not None and engine.last_latency_ms > 0


def test_predict_matches_infer_on_preprocessed_input(outdir, digits):
    from edgevit.data.preprocess import preprocess_array

    images, _ = digits
    with Engine.load(outdir / "model.onnx", threads=1) as engine:
        x = preprocess_array(images[:2], engine.manifest.preprocessing)
        logits = engine.infer({"images": x})["logits"]
        probs = np.exp(logits - logits.max(1, keepdims=True))
        probs /= probs.sum(1, keepdims=True)
        top = engine.predict(x, topk=10, preprocessed=True)
        got = np.array([[p["prob"] for p in sorted(t, key=lambda p: p["index"])] for t in top])
        assert np.allclose(got, probs, atol=1e-6), f"max diff {np.abs(got - probs).max():.2e}"
        assert sum(p["prob"] for p in top[0]) == pytest.approx(1.0, abs=1e-6)


def test_predict_image_files_and_pil(outdir, pngs, digits):
    from PIL import Image

    images, _ = digits
    files = sorted(pngs.glob("*.png"))
    with Engine.load(outdir / "model.onnx", threads=1) as engine:
        from_files = engine.predict([str(f) for f in files], topk=2)
        from_pil = engine.predict([Image.open(f) for f in files], topk=2)
        from_array = engine.predict(as_8bit(images[:3]) * np.float32(16 / 255), topk=2)  # 8-bit files: 0..255 -> 0..16
    assert from_files == from_pil, (from_files, from_pil)
    for a, b in zip(from_files, from_array):
        assert a[0]["index"] == b[0]["index"] and abs(a[0]["prob"] - b[0]["prob"]) < 1e-5, (a, b)


def test_batch_outside_profile_is_a_clear_error(outdir):
    with Engine.load(outdir / "model.onnx", threads=1) as engine:
        x = np.zeros((9, 1, 8, 8), np.float32)
        with pytest.raises(DataError, match="batch 9 is outside the optimization profile 1..8"):
            engine.infer({"images": x})
        # predict splits a large input into batches the profile accepts
        assert len(engine.predict(np.zeros((20, 1, 8, 8), np.float32), topk=1)) == 20


def test_bad_inputs(outdir, tmp_path):
    bad = tmp_path / "not_an_image.png"
    bad.write_text("hello")
    with Engine.load(outdir / "model.onnx", threads=1) as engine:
        with pytest.raises(DataError, match="not a readable image"):
            engine.predict([bad])
        with pytest.raises(DataError, match=r"\(C, H, W\) or \(N, C, H, W\)"):
            engine.predict(np.zeros((8, 8), np.float32))
        with pytest.raises(ValueError, match="topk"):
            engine.predict(np.zeros((1, 1, 8, 8), np.float32), topk=0)
    with pytest.raises(DataError, match="no such engine"):
        Engine.load(tmp_path / "missing.plan")


def test_engine_file_goes_to_tensorrt_runner(outdir, tmp_path):
    """A non-ONNX file is opened as a TensorRT plan: without TensorRT that fails with the install advice."""
    from edgevit.tensorrt._bindings import import_tensorrt

    try:
        import_tensorrt()
        pytest.skip("TensorRT is installed here; the missing-TensorRT path cannot be shown")
    except Exception:
        pass
    plan = tmp_path / "model.plan"
    plan.write_bytes(b"\x00" * 16)
    from edgevit.errors import MissingDependencyError

    with pytest.raises(MissingDependencyError, match="pypi.nvidia.com"):
        Engine.load(plan)


def test_predict_cli(outdir, pngs, digits, tmp_path):
    images, _ = digits
    npy = tmp_path / "batch.npy"
    np.save(npy, images[:2])
    files = [str(f) for f in sorted(pngs.glob("*.png"))]
    result = CliRunner().invoke(main, ["predict", str(outdir / "model.onnx"), *files, str(npy), "--topk", "3",
                                       "--threads", "1", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    preds = data["predictions"]
    assert data["backend"] == "onnxruntime" and len(preds) == 5, data
    assert all(len(p["topk"]) == 3 and p["latency_ms"] > 0 for p in preds), preds
    human = CliRunner().invoke(main, ["predict", str(outdir / "model.onnx"), files[0], "--threads", "1"])
    assert human.exit_code == 0 and "latency" in human.output, human.output
    missing = CliRunner().invoke(main, ["predict", str(outdir / "nope.onnx"), files[0]])
    assert missing.exit_code == 1 and "no such engine" in missing.output, missing.output


def test_watch_folder_example_once(outdir, pngs):
    proc = subprocess.run([sys.executable, str(ROOT / "examples" / "watch_folder.py"), str(outdir / "model.onnx"),
                           str(pngs), "--once"], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 0, proc.stderr
    lines = [l for l in proc.stdout.splitlines() if l.startswith("digit")]
    assert len(lines) == 3 and all(" ms" in l for l in lines), proc.stdout


@pytest.mark.trt
@pytest.mark.gpu
def test_engine_predict_matches_onnx(outdir, digits, tmp_path):
    """Built with TensorRT where it exists: the engine's top-1 agrees with the ONNX graph."""
    import shutil

    from edgevit.tensorrt.build import EngineBuildConfig, build_engine

    work = tmp_path / "out"
    shutil.copytree(outdir, work)
    build_engine(work, work / "model.plan", EngineBuildConfig())
    images, _ = digits
    with Engine.load(work / "model.onnx", threads=1) as ref, Engine.load(work / "model.plan") as eng:
        a, b = ref.predict(images, topk=1), eng.predict(images, topk=1)
        agree = np.mean([x[0]["index"] == y[0]["index"] for x, y in zip(a, b)])
        assert agree >= 0.9, f"top-1 agreement engine vs ONNX {agree:.3f}"


@pytest.fixture(scope="module")
def digit_reader(tmp_path_factory):
    """A digits-shaped model that reads real digits without a training run: seeded ViT features and
    a head fitted to the digits' train split by least squares (the same numbers on every machine).
    Returns (model, its checkpoint, its export directory)."""
    import torch

    from edgevit.data import load_dataset
    from edgevit.export.onnx import ExportConfig, export_onnx
    from edgevit.models import save_model
    from tests._fixtures import digits_like_model

    model = digits_like_model(0, pool="mean").eval()
    train = load_dataset("digits", model.preprocessing, "train")
    with torch.no_grad():
        feats = model.forward_features(torch.from_numpy(train.images))[:, 1:].mean(1).double()
        feats = torch.cat([feats, torch.ones(len(feats), 1, dtype=torch.float64)], 1)
        onehot = torch.eye(10, dtype=torch.float64)[torch.from_numpy(train.labels)]
        w = torch.linalg.solve(feats.T @ feats + 1e-3 * torch.eye(feats.shape[1], dtype=torch.float64), feats.T @ onehot)
        model.head.weight.copy_(w[:-1].T.float())
        model.head.bias.copy_(w[-1].float())
    root = tmp_path_factory.mktemp("digit_reader")
    ckpt = save_model(model, root / "reader.safetensors")
    export_onnx(model, root / "out", ExportConfig(batch=(1, 2, 16), verify=False, lint=False), force=True)
    return model, str(ckpt), root / "out"


def test_predict_and_eval_read_8_and_16_bit_pngs(digit_reader, tmp_path):
    """One image contract for every command: ordinary 8-bit and 16-bit PNGs of real digits are read
    on their own bit depth and rescaled to the model's 0..16, so `predict` names the right digit
    (it used to take 0..255 as 0..16) and `eval` on the same files agrees (it used to refuse them)."""
    import torch
    from PIL import Image
    from sklearn.datasets import load_digits as sk_digits

    from edgevit.data import load_dataset, split_indices

    model, ckpt, out = digit_reader
    test = load_dataset("digits", model.preprocessing, "test")
    with torch.no_grad():
        logits = model(torch.from_numpy(test.images))
    top2 = logits.topk(2, dim=1).values
    margin = torch.where(logits.argmax(1) == torch.from_numpy(test.labels), top2[:, 0] - top2[:, 1], -1.0).numpy()
    # per digit, the test image the model reads right (from the bundled array) by the widest margin:
    # 8-bit rounding (half a grey step) cannot flip it, so every label below must be the digit itself
    chosen = [int(np.flatnonzero(test.labels == d)[np.argmax(margin[test.labels == d])]) for d in range(10)]
    assert min(margin[chosen]) > 0.05, f"top-1 margins {margin[chosen]}"
    bunch = sk_digits()
    raw = bunch.images[split_indices(bunch.target)["test"]]  # the same images, 0..16
    runner = CliRunner()
    for bits, dtype, mode in ((8, np.uint8, "L"), (16, np.uint16, "I;16")):
        folder, files = tmp_path / f"png{bits}", []
        for d, i in enumerate(chosen):
            (folder / str(d)).mkdir(parents=True)
            files.append(folder / str(d) / f"{i}.png")
            Image.fromarray(np.round(raw[i] * (2 ** bits - 1) / 16).astype(dtype)).save(files[-1])
        assert Image.open(files[0]).mode == mode
        res = runner.invoke(main, ["predict", str(out / "model.onnx"), *map(str, files), "--topk", "1",
                                   "--threads", "1", "--json"])
        assert res.exit_code == 0, res.output
        got = [p["topk"][0]["label"] for p in json.loads(res.stdout)["predictions"]]
        assert got == [str(d) for d in range(10)], f"{bits}-bit PNGs of the digits 0..9 predicted as {got}"
        human = runner.invoke(main, ["predict", str(out / "model.onnx"), str(files[3]), "--threads", "1"])
        assert human.exit_code == 0 and f"{files[3].name} │ 3 " in human.output, human.output
        res = runner.invoke(main, ["eval", ckpt, "--data", str(folder), "--split", "all", "--json"])
        assert res.exit_code == 0, res.output
        report = json.loads(res.stdout)
        assert (report["samples"], report["top1"]) == (10, 1.0), f"{bits}-bit eval: {report['top1']} of {report['samples']}"
        human = runner.invoke(main, ["eval", ckpt, "--data", str(folder), "--split", "all"])
        assert human.exit_code == 0 and "top-1 1.0000" in human.output, human.output


@pytest.mark.parametrize("limit", [1000, 2500])  # 3,600 pixels: over twice the limit (Pillow's error), or over it (its warning)
def test_decompression_bomb_is_a_data_error(outdir, tmp_path, monkeypatch, limit):
    from PIL import Image

    Image.new("L", (60, 60)).save(tmp_path / "huge.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", limit)
    res = CliRunner().invoke(main, ["predict", str(outdir / "model.onnx"), str(tmp_path / "huge.png"), "--json"])
    assert res.exit_code == 1 and "Traceback" not in res.output, res.output
    err = json.loads(res.output.splitlines()[0])
    assert err["type"] == "DataError" and str(tmp_path / "huge.png") in err["message"], err
    assert "decompression bomb" in err["message"] and "MAX_IMAGE_PIXELS" in err["message"], err
    human = CliRunner().invoke(main, ["predict", str(outdir / "model.onnx"), str(tmp_path / "huge.png")])
    assert human.exit_code == 1 and "huge.png: refused as a possible decompression bomb" in human.output, human.output
