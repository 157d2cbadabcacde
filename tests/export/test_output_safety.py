"""What export, quantize and train leave on disk when an option, an output path or a step is wrong:
refused up front with a message that names the option, never a traceback, never a stray file."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import onnx
import pytest

from tests._fixtures import must_not_run
import torch
from click.testing import CliRunner

import edgevit
from edgevit.cli import main
from edgevit.errors import ExportError
from edgevit.export.onnx import max_opset
from edgevit.precision import qdq_summary, quantizable_nodes, recipe_from_dict
from edgevit.manifest import Manifest
from edgevit.tolerances import Verdict


def _cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def _refused(res, code: int, *words: str) -> None:
    """Exit ``code`` through edgevit's error handler (no traceback), the message holding ``words``."""
    assert isinstance(res.exception, SystemExit) and res.exit_code == code, \
        f"exit {res.exit_code}, exception {res.exception!r}, want {code}:\n{res.output}"
    assert "Traceback" not in res.output, res.output
    missing = [w for w in words if w not in res.output]
    assert not missing, f"{missing} not in the message:\n{res.output}"


def _files(path: Path) -> list[str]:
    return sorted(p.name for p in path.iterdir())



@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """digits-tiny (untrained) exported through the CLI; tests copy it."""
    out = tmp_path_factory.mktemp("export") / "out"
    res = _cli("export", "digits-tiny", "-o", out)
    assert res.exit_code == 0, res.output
    return out


@pytest.fixture
def out(exported, tmp_path):
    copy = tmp_path / "out"
    shutil.copytree(exported, copy)
    return copy


# ------------------------------------------------------------------------------ output paths, --opset
def test_export_train_quantize_refuse_an_output_under_a_file(out, tmp_path, monkeypatch):
    (tmp_path / "file").write_text("not a directory")
    monkeypatch.setattr("edgevit.models.checkpoint.load_model", must_not_run("model loading"))
    monkeypatch.setattr("edgevit.data.load_dataset", must_not_run("data loading"))
    monkeypatch.setattr("edgevit.precision.pipeline.load_gate_data", must_not_run("gate data loading"))
    monkeypatch.setattr("edgevit.precision.pipeline.calibrate_export", must_not_run("calibration"))
    target = tmp_path / "file" / "out"
    _refused(_cli("export", "digits-tiny", "-o", target), 1, str(target), "is a file", "-o/--output")
    _refused(_cli("train", "-o", target, "--epochs", "1"), 1, str(target), "is a file", "-o/--output")
    _refused(_cli("quantize", out, "--precision", "int8", "--calib-cache", target / "calib.json"), 1,
             "is a file", "--calib-cache")
    assert _files(tmp_path) == ["file", "out"]


@pytest.mark.parametrize("command", ["export", "train", "quantize"])
def test_read_only_output_is_refused_up_front(command, out, tmp_path, monkeypatch):
    """Tests run as root, where a read-only mode does not block writes: os.access says what a user would meet."""
    read_only = out if command == "quantize" else tmp_path / "ro"
    read_only.mkdir(exist_ok=True)
    real_access = os.access
    monkeypatch.setattr("os.access", lambda p, mode, **kw: False if (mode & os.W_OK and Path(p) == read_only)
                        else real_access(p, mode, **kw))
    monkeypatch.setattr("edgevit.models.checkpoint.load_model", must_not_run("model loading"))
    monkeypatch.setattr("edgevit.data.load_dataset", must_not_run("data loading"))
    monkeypatch.setattr("edgevit.precision.pipeline.load_gate_data", must_not_run("gate data loading"))
    before = _files(read_only)
    if command == "export":
        _refused(_cli("export", "digits-tiny", "-o", read_only / "new"), 1, "not writable", "-o/--output")
    elif command == "train":
        _refused(_cli("train", "-o", read_only / "run", "--epochs", "1"), 1, "not writable", "-o/--output")
    else:
        _refused(_cli("quantize", out, "--precision", "fp16"), 1, "not writable", "OUTDIR")
    assert _files(read_only) == before


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root writes into read-only directories")
def test_read_only_directory_for_real(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        _refused(_cli("export", "digits-tiny", "-o", ro / "out"), 1, "not writable", "-o/--output")
    finally:
        ro.chmod(0o755)


def test_opset_out_of_range_is_refused_before_the_export(tmp_path, monkeypatch):
    monkeypatch.setattr("edgevit.models.checkpoint.load_model", must_not_run("model loading"))
    newest = max_opset()
    assert newest >= 23, f"the installed exporter writes opsets up to {newest}; fused attention needs 23"
    for opset in (99, newest + 1, 16):
        _refused(_cli("export", "digits-tiny", "-o", tmp_path / "new", "--opset", opset), 2,
                 f"--opset {opset}", f"17..{newest}")
    assert not (tmp_path / "new").exists()


# ------------------------------------------------------------------------------ options checked before writing
def test_io_dtype_that_fits_no_graph_is_refused_before_anything_is_written(out, tmp_path):
    before = _files(out)
    res = _cli("quantize", out, "--io-dtype", "fp16", "--no-gate")
    assert _files(out) == before, "a refused run wrote files"
    _refused(res, 2, "--io-dtype fp16", "bf16")
    new = tmp_path / "new"
    res = _cli("export", "digits-tiny", "-o", new, "--precision", "fp16,bf16", "--io-dtype", "bf16")
    assert not new.exists(), f"export wrote {_files(new)} before refusing an option"
    _refused(res, 2, "--io-dtype bf16", "fp16")


def test_failure_mid_way_leaves_no_graph_that_blocks_the_next_run(out, monkeypatch):
    import edgevit.precision.pipeline as quantize_module

    real = quantize_module.build_precision_graph

    def int8_breaks(fp32_path, recipe, *args, **kwargs):
        if recipe.precision == "int8":
            raise ExportError("simulated int8 failure")
        return real(fp32_path, recipe, *args, **kwargs)

    monkeypatch.setattr(quantize_module, "build_precision_graph", int8_breaks)
    before = set(_files(out))
    _refused(_cli("quantize", out, "--precision", "fp16,int8", "--no-gate"), 1, "simulated int8 failure")
    left = set(_files(out)) - before - {"calibration.json"}  # the cache is reused, never blocks
    assert not left, f"a failed run left {sorted(left)}"
    monkeypatch.setattr(quantize_module, "build_precision_graph", real)
    res = _cli("quantize", out, "--precision", "fp16,int8", "--no-gate")
    assert res.exit_code == 0, res.output
    assert {a.path for a in Manifest.load(out).artifacts} == {"model.onnx", "model.fp16.onnx", "model.int8.onnx"}


def test_exclude_that_matches_nothing_is_refused(out):
    before = _files(out)
    _refused(_cli("quantize", out, "--precision", "int8", "--exclude", "blocks.99.*", "--no-gate"), 2,
             "--exclude blocks.99.*", "blocks.0.mlp.fc1", "blocks.*.mlp.fc1")
    _refused(_cli("quantize", out, "--precision", "int8", "--exclude", "blocks.0.attn.matmul_qk", "--no-gate"), 2,
             "--quantize-attention")
    _refused(_cli("quantize", out, "--precision", "fp16", "--exclude", "blocks.0.*", "--no-gate"), 2,
             "--exclude", "int8/fp8")
    assert _files(out) == before
    res = _cli("quantize", out, "--precision", "int8", "--exclude", "blocks.0.*", "--no-gate", "--json")
    assert res.exit_code == 0, res.output


# ------------------------------------------------------------------------------ the manifest describes the file
def test_auto_exclude_that_runs_out_of_layers_records_the_graph_on_disk(out, monkeypatch):
    """Every gate fails, so auto-exclude goes down the whole sensitivity list: the recipe recorded must
    be the one of the graph written (before the fix it listed one more layer than the graph excluded)."""
    import edgevit.precision.gate as gate_module

    real = gate_module.judge
    monkeypatch.setattr(gate_module, "judge", lambda metrics, precision, max_drop: replace(
        real(metrics, precision, max_drop), verdict=Verdict.FAILED, reasons=("simulated: always fails",)))
    user = ["blocks.[0-2].*", "blocks.3.attn.*"]  # leaves blocks.3.mlp.fc1 and fc2 to quantize
    res = _cli("quantize", out, "--precision", "int8", "--auto-exclude", "--exclude", user[0], "--exclude", user[1])
    assert res.exit_code == 1 and "Traceback" not in res.output, res.output
    art = Manifest.load(out).artifact(precision="int8", format="onnx")
    recipe = recipe_from_dict(art.extra["recipe"])
    on_disk = set(qdq_summary(onnx.load(str(out / "model.int8.onnx")))["weight_axes"])
    recorded = set(quantizable_nodes(onnx.load(str(out / "model.onnx")), recipe))
    assert on_disk == recorded and len(on_disk) == 1, \
        f"graph quantizes {sorted(on_disk)}, manifest recipe (exclude {recipe.exclude}) says {sorted(recorded)}"
    assert list(recipe.exclude) == user + art.extra["auto_excluded"], (recipe.exclude, art.extra["auto_excluded"])
    assert "--auto-exclude kept 1 layer(s) unquantized" in res.output, res.output


# ------------------------------------------------------------------------------ leftovers
def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _temporaries_of_a_dead_process(directory: Path) -> list[Path]:
    """The temporaries edgevit's own helpers make, left in ``directory`` by a process that then died
    (os._exit: no cleanup): a half-written file and an export work directory holding a graph."""
    code = ("import os, sys; from pathlib import Path; from edgevit._io import temporary_dir, temporary_name\n"
            "d = Path(sys.argv[1]); names = []\n"
            "for target in ('model.int8.onnx', 'edgevit.json'):\n"
            "    t = temporary_name(d / target); t.write_bytes(b'half'); names.append(t.name)\n"
            "w = temporary_dir(d, 'edgevit-export'); (w / 'model.onnx').write_bytes(b'half'); names.append(w.name)\n"
            "print('\\n'.join(names), flush=True); os._exit(0)")
    done = subprocess.run([sys.executable, "-c", code, str(directory)], capture_output=True, text=True, check=True)
    return [directory / name for name in done.stdout.split()]


def test_temporaries_of_killed_runs_are_removed(out):
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        stale = _temporaries_of_a_dead_process(out)
        assert len(stale) == 3 and all(p.exists() for p in stale), stale
        live_tmp = out / f".model.fp16.onnx.edgevit-tmp-{live.pid}"  # a running process's: kept
        live_tmp.write_bytes(b"x")
        res = _cli("quantize", out, "--precision", "fp16", "--no-gate")
        assert res.exit_code == 0, res.output
        left = [p.name for p in stale if p.exists()]
        assert not left, f"temporaries of a dead process still there: {left}"
        assert live_tmp.exists(), "the temporary of a live process was removed"
        stale = _temporaries_of_a_dead_process(out)
        res = _cli("export", "digits-tiny", "-o", out, "--force")
        assert res.exit_code == 0, res.output
        assert not [p for p in stale if p.exists()], _files(out)
    finally:
        live.kill()
        live.wait()


def test_stale_temporary_cleanup_keeps_user_files_that_look_like_temporaries(out, tmp_path):
    """Issue 16 item 3: only what edgevit made is removed; these are the user's, whatever their names."""
    dead = _dead_pid()
    outside = tmp_path / "outside.txt"
    outside.write_text("the user's")
    photos = out / ".photos.tmp-999999"
    (photos / "2024").mkdir(parents=True)
    (photos / "2024" / "a.jpg").write_bytes(b"jpg")
    album = out / f".album.edgevit-tmp-{dead}"           # edgevit's shape, but no marker: not edgevit's
    album.mkdir()
    (album / "b.jpg").write_bytes(b"jpg")
    nested = out / f".nested.edgevit-tmp-{dead}"         # a marker naming the PID, but a folder inside
    (nested / "keep").mkdir(parents=True)
    (nested / ".edgevit-tmp").write_text(f"{dead}\n")
    (nested / "keep" / "c.txt").write_text("c")
    files = {".draft.tmp-2024": b"draft", f".notes.tmp-{dead}": b"notes", f"notes.edgevit-tmp-{dead}": b"no dot"}
    for name, data in files.items():
        (out / name).write_bytes(data)
    link = out / f".link.edgevit-tmp-{dead}"
    link.symlink_to(outside)
    res = _cli("quantize", out, "--precision", "fp16", "--no-gate")
    assert res.exit_code == 0, res.output
    res = _cli("export", "digits-tiny", "-o", out, "--force")
    assert res.exit_code == 0, res.output
    gone = [str(p.relative_to(out)) for p in (photos / "2024" / "a.jpg", album / "b.jpg", nested / "keep" / "c.txt",
                                               *(out / n for n in files)) if not p.exists()]
    assert not gone, f"user files removed as stale temporaries: {gone}"
    assert link.is_symlink() and outside.read_text() == "the user's"


# ------------------------------------------------------------------------------ --force removes only its own files
def test_force_never_removes_files_outside_outdir(out, tmp_path):
    """Issue 16 item 1: a manifest whose external_data points outside OUTDIR (../, absolute), or whose
    listed file is reached through a symlinked directory, must not make --force delete anything there."""
    victims = tmp_path / "victims"
    victims.mkdir()
    for name in ("x", "abs", "model.fp16.onnx", "target.onnx"):
        (victims / name).write_text("precious")
    (out / "linked").symlink_to(victims, target_is_directory=True)
    (out / "model.int8.onnx").symlink_to(victims / "target.onnx")
    data = json.loads((out / "edgevit.json").read_text())
    fp32 = data["artifacts"][0]
    data["artifacts"] += [dict(fp32, path="linked/model.fp16.onnx", precision="fp16"),
                          dict(fp32, path="model.int8.onnx", precision="int8")]
    (out / "edgevit.json").write_text(json.dumps(data))
    res = _cli("export", "digits-tiny", "-o", out, "--force")  # a valid manifest: symlinks are never followed
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in victims.iterdir()) == ["abs", "model.fp16.onnx", "target.onnx", "x"], \
        f"files outside OUTDIR removed through a symlink: {sorted(p.name for p in victims.iterdir())}"
    data = json.loads((out / "edgevit.json").read_text())
    data["artifacts"].append(dict(data["artifacts"][0], path="model.bf16.onnx", precision="bf16",
                                  external_data=["../victims/x", str(victims / "abs")]))
    (out / "edgevit.json").write_text(json.dumps(data))
    res = _cli("export", "digits-tiny", "-o", out, "--force")  # an invalid one: nothing of it is removed
    assert res.exit_code == 0, res.output
    assert "could not be read" in res.output and "external_data" in res.output, res.output
    gone = [p.name for p in victims.iterdir() if p.read_text() != "precious"]
    assert sorted(p.name for p in victims.iterdir()) == ["abs", "model.fp16.onnx", "target.onnx", "x"] and not gone, \
        f"files outside OUTDIR removed or changed: {sorted(p.name for p in victims.iterdir())}"
    assert (out / "linked").is_symlink() and (out / "model.int8.onnx").is_symlink()
    assert Manifest.load(out).verify_checksums() == []


def test_force_over_another_model_leaves_only_what_the_new_manifest_lists(out, tmp_path):
    res = _cli("quantize", out, "--precision", "fp16,int8", "--no-gate")
    assert res.exit_code == 0, res.output
    assert {"model.fp16.onnx", "model.int8.onnx", "calibration.json"} <= set(_files(out)), _files(out)
    (out / "notes.txt").write_text("the user's own file")
    torch.manual_seed(7)
    other = edgevit.save_model(edgevit.create_model("digits-tiny"), tmp_path / "other.safetensors")
    res = _cli("export", other, "-o", out, "--force")
    assert res.exit_code == 0, res.output
    manifest = Manifest.load(out)
    assert [a.path for a in manifest.artifacts] == ["model.onnx"]
    assert _files(out) == ["edgevit.json", "model.onnx", "notes.txt"], _files(out)
    assert manifest.verify_checksums() == []
    assert "removed" in res.output and "model.int8.onnx" in res.output, res.output
