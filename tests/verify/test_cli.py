"""edgevit verify as a user runs it: the table, --json, --report, exit codes, python -m edgevit.verify."""

import json
import subprocess
import sys

from click.testing import CliRunner

from edgevit.cli import main


def _cli(*args):
    return CliRunner().invoke(main, ["verify", *map(str, args)])


def test_cli_pass_and_report(ckpt, outdirs, tmp_path):
    report = tmp_path / "report.json"
    res = _cli(ckpt, outdirs["fused"], "--samples", 8, "--json", "--report", report, "--attention")
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert data["ok"] is True and json.loads(report.read_text())["ok"] is True
    assert len(data["attention"]["rows"]) == 2 and data["outputs"]["logits"]["max_abs"] < 1e-4
    again = _cli(ckpt, outdirs["fused"], "--samples", 2, "--report", report)
    assert again.exit_code == 1 and "already exists" in again.output, again.output
    table = _cli(ckpt, outdirs["fused"], "--samples", 8, "--attention")
    assert table.exit_code == 0 and "PASSED" in table.output and "decomposed" not in table.output, table.output


def test_cli_failure_lists_every_failing_check(ckpt, broken_onnx):
    res = _cli(ckpt, broken_onnx, "--samples", 16, "--attention")
    assert res.exit_code == 1, res.output
    assert "verification failed" in res.output and "logits.max_abs_error_within_atol_rtol" in res.output
    assert "attention.block1." in res.output, res.output
    res = _cli(ckpt, broken_onnx, "--samples", 16, "--json")
    assert res.exit_code == 1 and json.loads(res.stdout)["ok"] is False


def test_cli_errors_and_usage(ckpt, tmp_path):
    res = _cli(ckpt, tmp_path / "missing.onnx")
    assert res.exit_code == 1 and "no such ONNX file" in res.output, res.output
    res = _cli(ckpt, "--precision", "fp64")
    assert res.exit_code == 2, res.output
    res = _cli(ckpt, "--batch-size", 0)
    assert res.exit_code == 2 and "batch_size must be a positive integer" in res.output, res.output


def test_cli_override_flags(ckpt, broken_onnx):
    res = _cli(ckpt, broken_onnx, "--samples", 8, "--atol", 10, "--rtol", 0, "--min-cosine", 0,
               "--min-agreement", 0, "--json")
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["tolerance"]["atol"] == 10.0


def test_python_dash_m_entry_point(ckpt):
    proc = subprocess.run([sys.executable, "-m", "edgevit.verify", ckpt, "--samples", "4", "--attention",
                           "--dtypes", "fp32", "--backends", "math,naive", "--json"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    data = json.loads(proc.stdout)
    assert data["ok"] and {r["backend"] for r in data["attention"]["rows"]} == {"math", "naive"}
