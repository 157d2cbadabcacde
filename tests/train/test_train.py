"""Training: config checks, schedules, augmentation, a digits smoke run, exact resume,
overwrite protection, ImageFolder with its own classes, and a 2-process torchrun (gloo) run
in which only rank 0 writes and every rank returns the same result."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from edgevit.errors import ArtifactExistsError, CheckpointError, DataError
from edgevit.models import load_model
from edgevit.train import TrainConfig, lr_at, random_affine, random_shift, train

REPO = Path(__file__).resolve().parents[2]
FAST = dict(progress=False, threads=1, eval_batch_size=256, device="cpu")


def _weights(path) -> dict[str, torch.Tensor]:
    return load_model(path).state_dict()


# --- pieces ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "field, value, match",
    [
        ("schedule", "step", r"schedule must be one of \['cosine', 'onecycle'\]"),
        ("device", "tpu", "device must be one of"),
        ("augment", "mixup", "augment must be one of"),
        ("select", "best", "select must be one of"),
        ("amp", "int8", "amp must be one of"),
        ("batch_size", 0, "batch_size must be >= 1"),
        ("epochs", 0, "epochs must be >= 1"),
        ("lr", 0.0, "lr must be > 0"),
        ("label_smoothing", 1.0, "label_smoothing must be in"),
        ("translate", 0.6, "translate must be in"),
        ("ema", 1.0, "ema must be in"),
    ],
)
def test_config_is_validated(field, value, match):
    with pytest.raises(ValueError, match=match):
        train(TrainConfig(**{field: value}))


def test_lr_schedules():
    cfg = TrainConfig(lr=1e-3, min_lr=1e-5)
    total, warm = 100, 10
    lrs = [lr_at(s, total, warm, cfg) for s in range(total)]
    assert lrs[0] == pytest.approx(1e-4) and lrs[warm - 1] == pytest.approx(1e-3), lrs[:warm]
    assert all(a >= b for a, b in zip(lrs[warm:], lrs[warm + 1:])), "cosine must not rise after warm-up"
    assert lrs[-1] == pytest.approx(1e-5, rel=0.05), lrs[-1]
    one = TrainConfig(lr=1e-3, schedule="onecycle")
    lrs = [lr_at(s, total, 0, one) for s in range(total + 1)]
    peak = int(np.argmax(lrs))
    assert lrs[0] == pytest.approx(1e-3 / 25) and peak == 30 and lrs[-1] == pytest.approx(1e-3 / 25e4), (lrs[0], peak, lrs[-1])


def test_augmentations():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(16, 3, 8, 8)
    assert torch.equal(random_shift(x, 0, gen), x)
    fill = torch.tensor([-1.0, -2.0, -3.0])
    same = random_affine(x, gen, fill, degrees=0, translate=0, scale=(1, 1))
    assert torch.allclose(same, x, atol=1e-5), float((same - x).abs().max())
    shifted = random_shift(x, 1, gen)
    assert shifted.shape == x.shape
    moved = random_affine(x, gen, fill, degrees=10, translate=0.1, scale=(0.9, 1.1))
    assert moved.shape == x.shape and not torch.allclose(moved, x)
    # content shifted out of the frame is replaced by the fill (black), per channel
    ones = torch.ones(4, 3, 8, 8)
    far = random_affine(ones, gen, fill, degrees=0, translate=0.49, scale=(0.5, 0.5))
    assert (far.amin(dim=(0, 2, 3)) < 0).all(), far.amin(dim=(0, 2, 3))


# --- runs -----------------------------------------------------------------------------------


def test_digits_smoke_loss_falls_and_run_dir(tmp_path):
    out = tmp_path / "run"
    records = []
    result = train(TrainConfig(epochs=3, warmup_epochs=1, output=str(out), seed=0, **FAST), callback=records.append)
    losses = [h["train_loss"] for h in result.history]
    assert len(records) == 3 and [r["epoch"] for r in records] == [1, 2, 3]
    assert losses[-1] < losses[0] - 0.3, f"train loss did not fall: {losses}"
    assert result.history[-1]["val_acc"] > 0.5, f"val accuracy after 3 epochs: {result.history[-1]['val_acc']}"
    for name in ("best.safetensors", "last.safetensors", "last.state.pt", "train_config.json", "result.json"):
        assert (out / name).is_file(), f"{name} missing from {sorted(p.name for p in out.iterdir())}"
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")], "temporary files left behind"
    assert (result.num_train, result.num_val, result.num_test) == (1259, 179, 359)
    assert result.best_epoch == 3 and result.epochs == 3 and result.world_size == 1
    saved = json.loads((out / "result.json").read_text())
    assert saved["test_accuracy"] == result.test_accuracy
    # the reported test accuracy is the checkpoint's, as read back from disk
    model = load_model(out / "best.safetensors")
    assert model.labels == [str(i) for i in range(10)] and model.preprocessing.pixel_max == 16.0
    from edgevit.data import load_dataset

    test = load_dataset("digits", model.preprocessing, "test")
    with torch.no_grad():
        acc = (model(torch.from_numpy(test.images)).argmax(1).numpy() == test.labels).mean()
    assert acc == pytest.approx(result.test_accuracy), (acc, result.test_accuracy)
    state = torch.load(out / "last.state.pt", weights_only=True)
    assert state["epoch"] == 3 and state["step"] == 60, (state["epoch"], state["step"])


def test_resume_continues_exactly(tmp_path, small_npz):
    common = dict(data=str(small_npz), epochs=3, seed=3, **FAST)
    full = train(TrainConfig(output=str(tmp_path / "full"), **common))

    class Stop(Exception):
        pass

    def stop_after_two(record):
        if record["epoch"] == 2:
            raise Stop

    with pytest.raises(Stop):
        train(TrainConfig(output=str(tmp_path / "cut"), **common), callback=stop_after_two)
    assert torch.load(tmp_path / "cut" / "last.state.pt", weights_only=True)["epoch"] == 2
    # epochs=None: the resumed run keeps its own settings (3 epochs, data, seed)
    resumed = train(TrainConfig(resume=str(tmp_path / "cut"), **FAST))
    assert resumed.epochs == 3 and len(resumed.history) == 3
    a, b = _weights(tmp_path / "full" / "last.safetensors"), _weights(tmp_path / "cut" / "last.safetensors")
    worst = max(float((a[k] - b[k]).abs().max()) for k in a)
    assert worst == 0.0, f"resumed weights differ from an uninterrupted run by up to {worst}"
    assert resumed.test_accuracy == full.test_accuracy, (resumed.test_accuracy, full.test_accuracy)
    assert [h["train_loss"] for h in resumed.history] == [h["train_loss"] for h in full.history]


def test_refuses_to_overwrite_and_bad_resume(tmp_path, small_npz):
    cfg = TrainConfig(data=str(small_npz), epochs=1, output=str(tmp_path / "run"), **FAST)
    train(cfg)
    with pytest.raises(ArtifactExistsError, match="already holds a training run"):
        train(cfg)
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="last.safetensors, last.state.pt not found"):
        train(TrainConfig(resume=str(tmp_path / "empty"), **FAST))
    np.save(tmp_path / "unlabelled.npy", np.zeros((50, 8, 8), dtype=np.float32))
    with pytest.raises(DataError, match="has no labels"):
        train(TrainConfig(data=str(tmp_path / "unlabelled.npy"), output=str(tmp_path / "u"), **FAST))


def test_image_folder_with_its_own_classes(tmp_path, capsys):
    from sklearn.datasets import load_digits

    bunch = load_digits()
    root = tmp_path / "folder"
    for name, digit in (("one", 1), ("seven", 7), ("zero", 0)):
        (root / name).mkdir(parents=True)
        for i, image in enumerate(bunch.images[bunch.target == digit][:20]):
            Image.fromarray(np.round(image * 255 / 16).astype(np.uint8)).save(root / name / f"{i}.png")  # 8-bit
    cfg = TrainConfig(data=str(root), epochs=2, output=str(tmp_path / "run"), **{**FAST, "progress": True})
    result = train(cfg)
    assert "train" in capsys.readouterr().err, "progress bar missing"
    model = load_model(tmp_path / "run" / "best.safetensors")
    assert model.config.num_classes == 3 and model.labels == ["one", "seven", "zero"], (model.config.num_classes, model.labels)
    assert (result.num_train, result.num_val, result.num_test) == (42, 6, 12)
    # fine-tuning that checkpoint on the 10-class digits swaps the head
    tuned = train(TrainConfig(model=str(tmp_path / "run" / "best.safetensors"), epochs=1,
                              output=str(tmp_path / "tuned"), **FAST))
    assert load_model(tuned.checkpoint).config.num_classes == 10


def test_resume_refuses_other_data_or_model_cli(tmp_path, small_npz):
    """`train --resume RUN` continues RUN as recorded: a --data or --model that differs is refused
    (it used to be ignored silently), the same data written another way and the resume options are not."""
    import shutil

    from click.testing import CliRunner

    from edgevit.cli import main

    runner = CliRunner()
    run = tmp_path / "run"
    fast = ["--device", "cpu", "--json"]
    res = runner.invoke(main, ["train", "--data", str(small_npz), "--epochs", "1", "-o", str(run), *fast])
    assert res.exit_code == 0, res.output
    other = tmp_path / "other.npz"
    shutil.copyfile(small_npz, other)
    res = runner.invoke(main, ["train", "--resume", str(run), "--data", str(other), "--epochs", "2", *fast])
    assert res.exit_code == 2, res.output
    message = json.loads(res.output.splitlines()[0])["message"]
    assert f"--resume {run}" in message and f"--data {str(other)!r}" in message and str(small_npz) in message, message
    human = runner.invoke(main, ["train", "--resume", str(run), "--model", "digits-small", "--epochs", "2"])
    assert human.exit_code == 2 and "--model 'digits-small' (the run has 'digits-tiny')" in human.output, human.output
    assert not (run / "result.json").exists() or json.loads((run / "result.json").read_text())["epochs"] == 1
    same = os.path.relpath(small_npz)  # the recorded data, written another way
    res = runner.invoke(main, ["train", "--resume", str(run), "--data", same, "--epochs", "2", *fast])
    assert res.exit_code == 0 and json.loads(res.output)["epochs"] == 2, res.output


def test_single_class_data_is_refused_cli(tmp_path):
    from click.testing import CliRunner
    from sklearn.datasets import load_digits

    from edgevit.cli import main

    bunch = load_digits()
    (tmp_path / "only" / "seven").mkdir(parents=True)
    for i, image in enumerate(bunch.images[bunch.target == 7][:20]):
        Image.fromarray(np.round(image * 255 / 16).astype(np.uint8)).save(tmp_path / "only" / "seven" / f"{i}.png")
    res = CliRunner().invoke(main, ["train", "--data", str(tmp_path / "only"), "--epochs", "1", "-o",
                                    str(tmp_path / "run"), "--device", "cpu"])
    assert res.exit_code == 1, res.output
    assert "single class ('seven')" in res.output and "--data" in res.output, res.output
    assert not (tmp_path / "run" / "last.safetensors").exists()
    np.savez(tmp_path / "sevens.npz", images=bunch.images[bunch.target == 7], labels=bunch.target[bunch.target == 7])
    res = CliRunner().invoke(main, ["train", "--data", str(tmp_path / "sevens.npz"), "--epochs", "1", "-o",
                                    str(tmp_path / "run2"), "--device", "cpu"])
    assert res.exit_code == 1 and "single class ('7')" in res.output, res.output


_WORKER = """
import json, os, sys
import edgevit.models, edgevit.train as T, edgevit.train.loop as loop

rank = int(os.environ["RANK"])
writes = []
real_save, real_state, real_text = edgevit.models.save_model, loop.save_state, loop.write_text_atomic
def save_model(model, path, force=False):
    writes.append(str(path)); return real_save(model, path, force=force)
def save_state(path, state):
    writes.append(str(path)); return real_state(path, state)
def write_text(path, text, force=False):
    writes.append(str(path)); return real_text(path, text, force=force)
edgevit.models.save_model, loop.save_state, loop.write_text_atomic = save_model, save_state, write_text

result = T.train(T.TrainConfig(data=sys.argv[1], output=sys.argv[2], epochs=2, seed=5,
                               progress=True, threads=1, device="cpu"))
# one write() per line: both ranks share the stdout pipe, and print()'s separate writes interleave
sys.stdout.write("RESULT " + json.dumps({"rank": rank, "writes": writes, "test": result.test_accuracy,
                 "world": result.world_size, "history": [h["train_loss"] for h in result.history]}) + "\\n")
sys.stdout.flush()
"""


def test_torchrun_two_processes_gloo(tmp_path, small_npz):
    script = tmp_path / "worker.py"
    script.write_text(textwrap.dedent(_WORKER))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           str(script), str(small_npz), str(tmp_path / "run")]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, f"torchrun failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    results = {r["rank"]: r for r in (json.loads(line.split(" ", 1)[1]) for line in proc.stdout.splitlines()
                                     if line.startswith("RESULT "))}
    assert sorted(results) == [0, 1], proc.stdout[-2000:]
    assert results[1]["writes"] == [], f"rank 1 wrote files: {results[1]['writes']}"
    assert results[0]["writes"], "rank 0 wrote nothing"
    assert results[0]["test"] == results[1]["test"] and results[0]["world"] == results[1]["world"] == 2, results
    assert results[0]["history"] == results[1]["history"], "ranks disagree on the (all-reduced) history"
    assert proc.stderr.count("train:   0%") == 1, f"expected one progress bar (rank 0):\n{proc.stderr[-2000:]}"
    saved = json.loads((tmp_path / "run" / "result.json").read_text())
    assert saved["world_size"] == 2 and saved["num_train"] == 210
    state = torch.load(tmp_path / "run" / "last.state.pt", weights_only=True)
    assert state["steps_per_epoch"] == 2, "each of 2 ranks should take half of 210 images in batches of 64"


def test_model_overrides_survive_a_new_class_count(tmp_path):
    """A variant rebuilt for the data's class count keeps --num-heads (it was silently dropped)."""
    import edgevit
    from tests._fixtures import assert_exit, run_cli

    from sklearn.datasets import load_digits

    bunch = load_digits()
    keep = bunch.target < 3  # three classes: digits-tiny's 10-class head must be rebuilt
    data = tmp_path / "three.npz"
    np.savez(data, images=bunch.images[keep][:150].astype(np.float32), labels=bunch.target[keep][:150])
    res = run_cli("train", "--model", "digits-tiny", "--num-heads", "2", "--data", data, "--epochs", "1",
                  "-o", tmp_path / "run", "--json")
    assert_exit(res, 0)
    model = edgevit.load_model(json.loads(res.stdout)["checkpoint"])
    assert (model.config.num_heads, model.config.num_classes) == (2, 3), model.config
