"""The table of artifact formats (edgevit.formats.ARTIFACT_FORMATS) is what Engine.load, verify and bench
dispatch on: a made-up format row, a new suffix mapped to a registered runner, reaches all three through
the library API alone; and one resolve answers for listed and unlisted files alike."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from edgevit.bench import run_bench
from edgevit.formats import ARTIFACT_FORMATS, ArtifactFormat, format_of, register_format
from edgevit.manifest import Manifest, Resolved
from edgevit.runtime import Engine, register_runner, unregister_runner
from edgevit.runtime.onnxruntime_runner import OnnxRuntimeRunner
from edgevit.verify import verify
from tests._fixtures import digits_like_model

RUNNER = "test-counting"


class CountingRunner(OnnxRuntimeRunner):
    """ONNX Runtime under another name, recording every file it is made for."""

    opened: list[str] = []

    def __init__(self, source, **options):
        super().__init__(source, **options)
        CountingRunner.opened.append(Path(source).name)


@pytest.fixture
def made_up_format(digits_like_copy, monkeypatch):
    """model.evgraph (an ONNX graph under a suffix no edgevit code names) beside the export's manifest,
    unlisted, its format a row added to the table and run by a runner registered under a new name."""
    register_runner(RUNNER, f"{__name__}:CountingRunner")
    row = ArtifactFormat("evgraph", (".evgraph",), runner=RUNNER, graph=True, what="test graph file",
                         label="counting")
    register_format(row)
    with pytest.raises(ValueError, match="already in the table"):
        register_format(ArtifactFormat("other", (".EVGRAPH",), runner=RUNNER, graph=True, what="x", label="x"))
    monkeypatch.setattr(CountingRunner, "opened", [])
    file = digits_like_copy / "model.evgraph"
    shutil.copyfile(digits_like_copy / "model.onnx", file)
    yield file
    del ARTIFACT_FORMATS[row.name]
    unregister_runner(RUNNER)


def test_a_made_up_format_row_reaches_engine_verify_and_bench(made_up_format):
    assert format_of(made_up_format).runner == RUNNER
    with Engine.load(made_up_format, threads=1) as engine:
        assert engine.backend == RUNNER
        out = engine.infer({"images": np.zeros((2, 1, 8, 8), np.float32)})
        assert next(iter(out.values())).shape == (2, 10)
    assert CountingRunner.opened == ["model.evgraph"]

    report = verify(digits_like_model(0), made_up_format, samples=8, batch_size=8, threads=1)
    assert report.candidate["kind"] == "onnx" and report.candidate["precision"] == "fp32"
    assert report.ok, report.failures
    assert CountingRunner.opened[-1] == "model.evgraph"

    bench = run_bench([made_up_format], include_reference=False, iterations=2, warmup_s=0, samples=8,
                      data="random", providers=("cpu",), threads=1, device="cpu")
    (row,) = bench.rows
    assert (row.name, row.backend, row.format, row.status) == ("counting cpu fp32 model.evgraph", RUNNER,
                                                               "evgraph", "ok"), row


def test_listed_and_unlisted_files_resolve_to_one_type(digits_like_copy):
    shutil.copyfile(digits_like_copy / "model.onnx", digits_like_copy / "stray.onnx")
    listed = Manifest.resolve(digits_like_copy / "model.onnx", listed=False)
    unlisted = Manifest.resolve(digits_like_copy / "stray.onnx", listed=False)
    from_dir = Manifest.resolve(digits_like_copy)
    assert type(listed) is type(unlisted) is type(from_dir) is Resolved
    assert (listed.listed, unlisted.listed) == (True, False)
    assert listed.format == unlisted.format == "onnx" and listed.precision == unlisted.precision == "fp32"
    assert listed.manifest is not None and unlisted.manifest is not None and unlisted.entry is None
    assert listed.entry.path == "model.onnx" and listed.record is None and unlisted.record is None  # graphs carry no engine record
    assert from_dir.path == listed.path and from_dir.entry == listed.entry
