"""An ImageFolder whose class folders are only some of the model's classes ("3" and "7" for a digits
model) is labelled by folder name, as the model's 3 and 7 -- not 0 and 1 by position -- in eval,
verify/bench's labelled data and quantize's gate; a folder that names no label of the model is
refused with a DataError naming it and the model's labels (never an IndexError)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from edgevit.cli import main
from tests._fixtures import export_digits_like

PER_CLASS = 6


def _write_digits(folder, digits: dict[str, int]) -> None:
    """``PER_CLASS`` real digits of class ``digits[name]`` as 8-bit PNGs under ``folder/name``."""
    from PIL import Image
    from sklearn.datasets import load_digits

    bunch = load_digits()
    for name, digit in digits.items():
        (folder / name).mkdir(parents=True)
        for i in np.flatnonzero(bunch.target == digit)[:PER_CLASS]:
            pixels = np.round(bunch.images[i] * 255 / 16).astype(np.uint8)
            Image.fromarray(pixels, mode="L").save(folder / name / f"{i}.png")


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    from edgevit.models import save_model

    root = tmp_path_factory.mktemp("folder-labels")
    model = export_digits_like(root / "out")
    assert model.labels == [str(d) for d in range(10)], model.labels
    save_model(model, root / "model.safetensors")
    _write_digits(root / "subset", {"3": 3, "7": 7})
    _write_digits(root / "stray", {"3": 3, "x": 7})
    return root


def _run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def test_eval_labels_folders_by_the_models_class_names(setup):
    res = _run("eval", setup / "model.safetensors", "--data", setup / "subset", "--split", "all", "--json")
    assert res.exit_code == 0 and res.exception is None, f"exit {res.exit_code}: {res.output[-2000:]}"
    report = json.loads(res.stdout)
    matrix = np.asarray(report["confusion_matrix"])
    assert matrix.shape == (10, 10), matrix.shape
    rows = {d: int(matrix[d].sum()) for d in range(10) if matrix[d].sum()}
    assert rows == {3: PER_CLASS, 7: PER_CLASS}, f"true-label rows of the confusion matrix: {rows}"
    assert set(report["per_class"]) <= {"3", "7"}, report["per_class"]
    want = (matrix[3, 3] + matrix[7, 7]) / (2 * PER_CLASS)
    assert report["samples"] == 2 * PER_CLASS and report["top1"] == pytest.approx(want), (report["top1"], want)
    assert all(c["true"] in ("3", "7") for c in report["confusions"]), report["confusions"]
    human = _run("eval", setup / "model.safetensors", "--data", setup / "subset", "--split", "all")
    assert human.exit_code == 0 and f"({2 * PER_CLASS} images)" in human.output, human.output


@pytest.mark.parametrize("command", ["eval", "verify", "bench", "quantize"])
def test_a_folder_that_is_no_model_label_is_refused(setup, command):
    stray = setup / "stray"
    args = {"eval": ["eval", setup / "model.safetensors", "--data", stray, "--split", "all"],
            "verify": ["verify", setup / "model.safetensors", setup / "out", "--data", stray, "--samples", "4"],
            "bench": ["bench", setup / "out", "--data", stray, "--device", "cpu", "--no-report", "--iterations", "3",
                      "--warmup-s", "0"],
            "quantize": ["quantize", setup / "out", "--precision", "fp16", "--data", stray]}[command]
    res = _run(*args, "--json")
    assert res.exit_code == 1 and "Traceback" not in res.output, f"exit {res.exit_code}: {res.output[-2000:]}"
    err = json.loads(res.output.splitlines()[0])
    assert err["type"] == "DataError", err
    for words in ("'x'", "not labels of the model", "'0', '1', '2'", "'9'", str(stray)):
        assert words in err["message"], f"{words!r} not in: {err['message']}"
    human = _run(*args)
    assert human.exit_code == 1 and "not labels of the model" in human.output, human.output


def test_bench_verify_and_gate_data_carry_the_models_labels(setup):
    """load_inputs (verify, bench) and quantize's gate data: the test split of the subset holds digits 3 and 7."""
    from edgevit.precision.gate import load_gate_data
    from edgevit.manifest import Manifest
    from edgevit.models import load_model
    from edgevit.verify import load_inputs

    model = load_model(str(setup / "model.safetensors"))
    inputs = load_inputs(str(setup / "subset"), (1, 8, 8), 100, preprocessing=model.preprocessing,
                         model_labels=model.labels)
    assert sorted(set(inputs.labels.tolist())) == [3, 7], inputs.labels
    manifest = Manifest.load(setup / "out")
    gate = load_gate_data(str(setup / "subset"), manifest, setup / "out" / "model.onnx", threads=1)
    assert sorted(set(gate.labels.tolist())) == [3, 7], gate.labels
    assert gate.reference.shape == (len(gate.labels), 10), gate.reference.shape
