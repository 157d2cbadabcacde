"""The CLI maps onto the library: its defaults are the library's (read off the config dataclasses,
never restated), ``export``'s chain is :func:`edgevit.export.pipeline.export_pipeline`, and ``build``
of an existing ONNX loads no torch."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from edgevit.cli import main
from edgevit.cli._options import LibraryDefault, library_value
from edgevit.export.onnx import ExportConfig, export_onnx
from tests.conftest import HAS_TENSORRT

ROOT = Path(__file__).resolve().parents[2]

# Options whose default is the CLI's own: flags, and defaults no library function has.
OWN_DEFAULTS = {("predict", "topk"), ("verify", "provider"), ("export", "precision")}


def _run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def _options():
    for name, command in main.commands.items():
        for param in command.params:
            if isinstance(param, click.Option):
                yield name, command, param


def test_no_cli_option_restates_a_library_default():
    restated = [f"edgevit {name} --{param.name.replace('_', '-')} (default {param.default!r})"
                for name, _, param in _options()
                if not isinstance(param, LibraryDefault) and not param.is_flag and param.default is not None
                and param.default is not click.core.UNSET and (name, param.name) not in OWN_DEFAULTS]
    assert not restated, "read these defaults off the library (cli/_options.library_option):\n" + "\n".join(restated)


def test_help_shows_the_library_default():
    from edgevit.precision.calibration.calibrate import CalibrationConfig
    from edgevit.precision.pipeline import QuantizeConfig
    from edgevit.tensorrt.build import EngineBuildConfig
    from edgevit.verify.run import VerifyConfig

    expected = {("quantize", "--calib-samples"): QuantizeConfig().calib_samples,
                ("quantize", "--calib-batch"): QuantizeConfig().calib_batch,
                ("quantize", "--max-drop"): QuantizeConfig().max_drop,
                ("quantize", "--percentile"): CalibrationConfig().percentile,
                ("quantize", "--precision"): ",".join(QuantizeConfig().precisions),
                ("build", "--hardware-compat"): EngineBuildConfig().hardware_compatibility,
                ("verify", "--samples"): VerifyConfig().samples,
                ("verify", "--dtypes"): ",".join(VerifyConfig().dtypes)}
    for (command, option), value in expected.items():
        text = " ".join(_run(command, "--help").output.split())
        shown = re.search(re.escape(option) + r" .*?\[default: ([^\]]+)\]", text)
        assert shown and shown.group(1) == str(value), (command, option, value, text)


def test_library_value_reads_fields_parameters_and_constants():
    assert library_value("edgevit.tensorrt.build:EngineBuildConfig.hardware_compatibility") == "none"
    assert library_value("edgevit.evaluate:evaluate.split") == "test"
    assert library_value("edgevit.export.tensorrt_ops:DEFAULT_TENSORRT_VERSION") == "10.3"


@pytest.fixture(scope="module")
def export_dir(robust_digits, tmp_path_factory):
    out = tmp_path_factory.mktemp("build") / "out"
    export_onnx(robust_digits, out, ExportConfig(batch=(1, 2, 8), lint=False))
    return out


def test_build_loads_no_torch(export_dir, tmp_path):
    """``edgevit build --help`` and ``edgevit build OUTDIR --batch ...`` import no torch; without
    TensorRT the build stops with its install message, torch still not loaded."""
    code = ("import sys\n"
            "from click.testing import CliRunner\n"
            "from edgevit.cli import main\n"
            "r = CliRunner().invoke(main, ['build', '--help'])\n"
            "assert r.exit_code == 0, r.output\n"
            "assert 'torch' not in sys.modules, 'build --help loaded torch'\n"
            f"r = CliRunner().invoke(main, ['build', {str(export_dir)!r}, '-o', {str(tmp_path / 'm.plan')!r}, "
            "'--batch', '1,2,4'])\n"
            "print(r.exit_code, 'torch' in sys.modules)\n"
            "print(r.output)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr
    status, torch_loaded = proc.stdout.splitlines()[0].split()
    assert torch_loaded == "False", proc.stdout
    if not HAS_TENSORRT:
        assert status == "1" and "tensorrt" in proc.stdout.lower() and "install" in proc.stdout.lower(), proc.stdout


@pytest.mark.skipif(HAS_TENSORRT, reason="checks the refusal without TensorRT")
def test_export_engine_without_tensorrt_stops_before_the_export(robust_digits, tmp_path):
    res = _run("export", robust_digits, "-o", tmp_path / "out", "--engine")
    assert res.exit_code == 1 and "tensorrt" in res.stderr.lower(), res.output
    assert not (tmp_path / "out" / "model.onnx").exists()


def test_export_with_precisions_table_and_json(robust_digits, tmp_path):
    """``edgevit export --precision fp32,fp16`` writes the export and the gated fp16 graph: the
    quantize table then the export table; --json holds both, with the gate's ok."""
    res = _run("export", robust_digits, "-o", tmp_path / "t", "--precision", "fp32,fp16", "--no-gate")
    assert res.exit_code == 0, res.output
    assert "precision graphs in" in res.output and "edgevit export" in res.output, res.output
    assert (tmp_path / "t" / "model.fp16.onnx").exists()
    res = _run("export", robust_digits, "-o", tmp_path / "j", "--precision", "fp32,fp16", "--no-gate", "--json")
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert data["ok"] is True and "fp16" in data["quantize"]["precisions"], data.keys()
    assert Path(data["onnx"]).name == "model.onnx" and "engine" not in data, data.keys()
