"""--num-heads, --act and --img-size: what a checkpoint's tensors cannot tell, given on the command
line of every command that loads one (info, eval, export, train, bench --reference, verify), and
recorded in the manifest so that bench / verify reload the exported reference the same way."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import edgevit

from .._fixtures import rich_table, assert_exit, run_cli





@pytest.fixture
def digits_pth(tmp_path):
    """A digits-tiny state dict (dim 64, 4 heads of 16): the dim/64 guess says 1 head."""
    path = tmp_path / "digits.pth"
    torch.save(edgevit.create_model("digits-tiny").state_dict(), path)
    return path


def test_the_guess_warning_names_num_heads(digits_pth):
    res = run_cli("info", digits_pth, "--json")
    assert_exit(res, 0)
    assert json.loads(res.stdout)["guessed"] == {"num_heads": 1}
    assert "guessed num_heads=1" in res.stderr and "pass --num-heads N" in res.stderr, res.stderr


def test_num_heads_replaces_the_guess_in_info(digits_pth):
    res = run_cli("info", digits_pth, "--num-heads", "4", "--json")
    assert_exit(res, 0)
    info = json.loads(res.stdout)
    assert (info["heads"], info["head_dim"], info["guessed"]) == (4, 16, {}), info
    assert "warning" not in res.stderr, res.stderr

    human = run_cli("info", digits_pth, "--num-heads", "4", "--img-size", "16")
    assert_exit(human, 0)
    rows = dict((r[0], r[1]) for r in rich_table(human.stdout, "field") if len(r) == 2)
    assert (rows["heads"], rows["tokens"]) == ("4", "65"), rows  # (16/2)^2 patches + the class token


def test_num_heads_in_eval_gives_the_models_own_accuracy(tmp_path, digits_pth):
    # the same load in Python, saved in our format (which records the 4 heads and the preprocessing)
    edgevit.save_model(edgevit.load_model(digits_pth, num_heads=4), tmp_path / "ours.safetensors")
    ours = run_cli("eval", tmp_path / "ours.safetensors", "--json")
    given = run_cli("eval", digits_pth, "--num-heads", "4", "--json")
    guessed = run_cli("eval", digits_pth, "--json")
    assert_exit(ours, 0), assert_exit(given, 0), assert_exit(guessed, 0)
    ours, given, guessed = (json.loads(r.stdout) for r in (ours, given, guessed))
    assert (given["top1"], given["per_class"]) == (ours["top1"], ours["per_class"]), (given, ours)
    assert guessed["per_class"] != ours["per_class"], "one head and four heads gave the same predictions"


def test_act_is_checked_against_the_model_activations(digits_pth):
    res = run_cli("info", digits_pth, "--act", "swish")
    assert_exit(res, 2)
    assert "--act" in res.output and "quick_gelu" in res.output, res.output


def test_export_records_the_overrides_and_verify_bench_reload_them(tmp_path, digits_pth):
    out = tmp_path / "out"
    res = run_cli("export", digits_pth, "-o", out, "--num-heads", "4", "--act", "quick_gelu", "--img-size", "16",
               "--json")
    assert_exit(res, 0)
    model = json.loads((out / "edgevit.json").read_text())["model"]
    assert model["overrides"] == {"num_heads": 4, "act": "quick_gelu", "img_size": 16}, model
    assert (model["config"]["num_heads"], model["config"]["act"], model["config"]["img_size"]) == \
        (4, "quick_gelu", 16), model["config"]
    assert model["guessed"] == {}, model

    # verify: the export's own checkpoint loads with the recorded options, given again or not; other options
    # make it another model
    same = run_cli("verify", digits_pth, out, "--samples", "8", "--num-heads", "4", "--act", "quick_gelu",
                "--img-size", "16", "--json")
    assert_exit(same, 0)
    assert json.loads(same.stdout)["ok"] is True
    recorded = run_cli("verify", digits_pth, out, "--samples", "8", "--json")
    assert_exit(recorded, 0)
    assert json.loads(recorded.stdout)["ok"] is True
    other = run_cli("verify", digits_pth, out, "--samples", "8", "--act", "gelu")
    assert_exit(other, 1)

    # bench: the reference comes from the manifest, with the recorded overrides
    bench = run_cli("bench", out, "--iterations", "2", "--samples", "16", "--warmup-s", "0", "--no-report", "--json")
    assert_exit(bench, 0)
    rows = {r["name"]: r for r in json.loads(bench.stdout)["rows"]}
    torch_row = next(r for n, r in rows.items() if n.startswith("torch cpu fp32"))
    onnx_row = next(r for n, r in rows.items() if n.startswith("ort cpu fp32"))
    assert torch_row["status"] == onnx_row["status"] == "ok" and torch_row["top1"] == onnx_row["top1"], rows


def test_bench_reference_takes_the_options(tmp_path, digits_pth):
    out = tmp_path / "out"
    assert_exit(run_cli("export", digits_pth, "-o", out, "--num-heads", "4", "--img-size", "16"), 0)
    bench = run_cli("bench", out / "model.onnx", "--reference", digits_pth, "--num-heads", "4", "--img-size", "16",
                 "--iterations", "2", "--samples", "16", "--warmup-s", "0", "--no-report", "--json")
    assert_exit(bench, 0)
    report = json.loads(bench.stdout)
    assert report["reference"]["source"] == str(digits_pth), report["reference"]
    assert all(r["status"] == "ok" for r in report["rows"]), report["rows"]


def test_train_fine_tunes_with_the_options(tmp_path, digits_pth):
    res = run_cli("train", "--model", digits_pth, "--num-heads", "4", "--epochs", "1", "-o", tmp_path / "run", "--json")
    assert_exit(res, 0)
    trained = edgevit.load_model(json.loads(res.stdout)["checkpoint"])
    assert trained.config.num_heads == 4, trained.config
    assert "guessed num_heads" not in res.stderr, res.stderr


def test_importing_the_cli_does_not_import_torch():
    """--act lists the model's activations without importing torch, on import and in --help."""
    code = ("import sys, edgevit.cli; from click.testing import CliRunner\n"
            "for cmd in ('bench', 'export', 'info', 'train', 'eval', 'verify'):\n"
            "    res = CliRunner().invoke(edgevit.cli.main, [cmd, '--help'])\n"
            "    assert res.exit_code == 0 and 'quick_gelu' in res.output, (cmd, res.output)\n"
            "    assert 'torch' not in sys.modules, f'edgevit {cmd} --help imported torch'")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=Path(__file__).resolve().parents[2])
    assert proc.returncode == 0, proc.stderr
