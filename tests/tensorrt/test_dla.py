"""DLA builds (issue 19 items 2 and 3): what ``edgevit build --dla-core`` refuses before TensorRT is called,
and the builder flags of a DLA build on TensorRT 10, on the recording stand-in of tests/tensorrt/test_calls.py.

Sources (read at the cited tags; nothing here ran against a real TensorRT):
* NVIDIA, "DLA Supported Layers and Restrictions", General Restrictions: "DLA does not support dynamic
  dimensions, so the profile's min, max, and opt values must be equal";
* NVIDIA/TensorRT v10.3.0 ``samples/common/sampleEngines.cpp`` (trtexec, ``sys.DLACore != -1``):
  ``kPREFER_PRECISION_CONSTRAINTS`` and, unless ``--int8``, ``kFP16``; the network is strongly typed only
  with ``--stronglyTyped``;
* NVIDIA, TensorRT 11.4.1 "Strongly Typed Networks for DLA": strongly typed DLA builds, no precision flags.
"""

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

import edgevit.tensorrt.build as build_mod
from edgevit.cli import main
from edgevit.errors import TensorRTError
from edgevit.manifest import Manifest
from edgevit.tensorrt import rules

from .test_calls import fake_trt, use  # noqa: F401 -- the recording stand-in and its fixture


class Reached(Exception):
    """Raised by the stand-in import: the build went past every refusal to TensorRT."""


@pytest.fixture
def work(digits_like_copy, monkeypatch):
    """The digits-like export (fp32, batch 1..8) with TensorRT replaced by a sentinel import."""
    def reached():
        raise Reached("TensorRT would be imported here")

    monkeypatch.setattr(build_mod, "import_tensorrt", reached)
    return digits_like_copy


def _add_fp16(work: Path, block_ops: list[str] | None = None, name: str = "model.fp16.onnx") -> None:
    """An fp16 graph (ONNX Runtime's float16 converter); ``block_ops``: op types kept in fp32 (islands)."""
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = onnx.load(str(work / "model.onnx"))
    if block_ops == ["*"]:
        block_ops = sorted({n.op_type for n in model.graph.node})
    onnx.save(convert_float_to_float16(model, keep_io_types=True, op_block_list=block_ops), str(work / name))
    m = Manifest.load(work)
    m.add_artifact(name, format="onnx", precision="fp16")
    m.save(work, force=True)


def _listing(path: Path) -> list[str]:
    return sorted(str(p.relative_to(path)) for p in path.rglob("*"))


def _build(work: Path, *args: str):
    return CliRunner().invoke(main, ["build", str(work), "--precision", "fp16", "-o", str(work / "dla.plan"),
                                     "--dla-core", "0", *args])


# ------------------------------------------------------------------ item 2: before building
def test_dla_with_the_default_dynamic_profile_refused_before_tensorrt(work):
    """Before: the README's `--dla-core 0` example went to TensorRT with the 1..8 profile (built for minutes,
    every layer on the GPU, refused afterwards)."""
    _add_fp16(work)
    before = _listing(work)
    result = _build(work, "--json")
    assert result.exit_code == 1, result.output
    err = json.loads(result.output.splitlines()[0])
    assert err["type"] == "TensorRTError", err
    for words in ("N in 1..8", "--batch N,N,N", "--static-batch"):
        assert words in err["message"], (words, err["message"])
    assert _listing(work) == before
    with pytest.raises(Reached):  # one batch: every DLA check passes and the build goes on to TensorRT
        build_mod.build_engine(work, work / "dla.plan", build_mod.EngineBuildConfig(
            precision="fp16", dla_core=0, batch=(4, 4, 4)))


def test_dla_with_fp32_islands_covering_the_graph_refused_before_tensorrt(work, monkeypatch):
    """fp32 islands (op types kept in fp32) covering every compute node: no layer could run on DLA.
    (A graph whose weights are all fp32 is already refused by the manifest's precision-label check, so the
    count is replaced here: the refusal is what is tested, on the real fp16 graph file.)"""
    _add_fp16(work)
    monkeypatch.setattr(build_mod, "low_precision_nodes", lambda model: 0)
    result = _build(work, "--batch", "1,1,1")
    assert result.exit_code == 1, result.output
    assert "no compute node" in result.output and "keep_fp32" in result.output, result.output
    with pytest.raises(TensorRTError, match="keep_fp32"):
        rules.check_dla_graph("fp16", None, 0)


def test_dla_with_int8_base_fp32_refused_before_tensorrt(work):
    """An int8 Q/DQ graph made with --int8-base fp32 (recorded in its recipe): its unquantized layers are fp32."""
    from .test_build import _int8_graph  # ONNX Runtime's quantize_static: Q/DQ on an fp32 base

    _int8_graph(work)
    m = Manifest.load(work)
    m.artifact(path="model.int8.onnx").extra["recipe"] = {"precision": "int8", "base": "fp32"}
    m.save(work, force=True)
    result = CliRunner().invoke(main, ["build", str(work), "--precision", "int8", "-o", str(work / "dla.plan"),
                                       "--dla-core", "0", "--batch", "2,2,2"])
    assert result.exit_code == 1, result.output
    assert "--int8-base fp32" in result.output and "--int8-base fp16" in result.output, result.output


def test_low_precision_nodes_counts_fp16_compute_not_casts(work):
    import onnx

    _add_fp16(work)
    _add_fp16(work, ["*"], name="model.islands.onnx")
    fp16 = build_mod.low_precision_nodes(onnx.load(str(work / "model.fp16.onnx")))
    islands = build_mod.low_precision_nodes(onnx.load(str(work / "model.islands.onnx")))
    fp32 = build_mod.low_precision_nodes(onnx.load(str(work / "model.onnx")))
    assert fp16 > 0 and islands == 0 and fp32 == 0, (fp16, islands, fp32)


def test_dla_profile_rule():
    rules.check_dla_profile((4, 4, 4))
    with pytest.raises(TensorRTError, match=r"--batch 2,2,2"):
        rules.check_dla_profile((1, 2, 8))


# ------------------------------------------------------------------ item 3: trtexec's DLA build on TensorRT 10
@pytest.mark.parametrize("has_qdq, precision, flags", [
    (False, "fp16", ["FP16", "PREFER_PRECISION_CONSTRAINTS"]),
    (True, "int8", ["INT8", "FP16", "PREFER_PRECISION_CONSTRAINTS"]),
])
def test_dla_build_on_tensorrt_10_follows_trtexec(use, has_qdq, precision, flags):  # noqa: F811
    """Before: a DLA build on TensorRT 10.3 was strongly typed with no precision flag."""
    trt, rec = fake_trt("10.3.0.30")
    use(trt)
    opts = build_mod.BuildOptions(precision=precision, has_qdq=has_qdq, profile=(1, 1, 1), input_shape=(1, 8, 8),
                                  config=build_mod.EngineBuildConfig(dla_core=0))
    with pytest.raises(TensorRTError, match="no layer running on DLA"):  # the recorded ViT runs on the GPU
        build_mod.build_plan("m.onnx", opts)
    assert ("create_network", 0) in rec.calls, rec.calls  # not STRONGLY_TYPED
    assert sorted(rec.config.flags) == sorted([*flags, "GPU_FALLBACK"]), rec.config.flags
    assert rec.config.default_device_type == "DLA" and rec.config.DLA_core == 0


def test_dla_build_mode_is_recorded():
    mode = rules.build_mode("10.3.0", "fp16", has_qdq=False, dla=True).to_dict()
    assert mode["dla"] is True and mode["strongly_typed"] is False, mode
    assert mode["flags"] == ["FP16", "PREFER_PRECISION_CONSTRAINTS"], mode
    assert "trtexec" in mode["reason"], mode
    eleven = rules.build_mode("11.4.1", "fp16", has_qdq=False, dla=True).to_dict()
    assert eleven["dla"] is True and eleven["strongly_typed"] is True and eleven["flags"] == [], eleven
    gpu = rules.build_mode("10.3.0", "fp16", has_qdq=False).to_dict()
    assert gpu["dla"] is False and gpu["strongly_typed"] is True, gpu


def test_dla_build_on_a_dynamic_profile_refused_in_build_plan(use):  # noqa: F811
    trt, rec = fake_trt("10.3.0.30")
    use(trt)
    opts = build_mod.BuildOptions(precision="fp16", profile=(1, 2, 8), input_shape=(1, 8, 8),
                                  config=build_mod.EngineBuildConfig(dla_core=0))
    with pytest.raises(TensorRTError, match="--static-batch"):
        build_mod.build_plan("m.onnx", opts)
    assert ("Builder",) not in rec.calls, rec.calls


def test_dla_flags_exist_in_every_tensorrt_10_with_dla():
    """The names build_plan looks up with getattr(trt.BuilderFlag, name) for a DLA build, in NVIDIA's binding
    sources (pyCore.cpp) of every TensorRT 10 tag in tests/tensorrt/data/trt_python_api.json."""
    table = json.loads((Path(__file__).parent / "data" / "trt_python_api.json").read_text(encoding="utf-8"))
    names = table["tensorrt"]["names"]
    for flag in (*rules.dla_flags(True), "GPU_FALLBACK"):
        row = names.get(f"BuilderFlag.{flag}")
        assert row is not None, f"BuilderFlag.{flag} is not in the table (tests/tensorrt/data/make_trt_api_table.py)"
        missing = [v for v in row if v.startswith("10.") and not row[v]]
        assert not missing, f"BuilderFlag.{flag} (DLA build) is missing in TensorRT {missing}"


def test_dla_build_returns_its_mode_for_the_engine_record(use):  # noqa: F811
    """A DLA build whose inspector shows a DLA region (names as trtexec prints them for DLA engines, see
    test_fusion.py): build_plan's mode, which build_engine writes as the record's ``build_mode``, says DLA."""
    from types import SimpleNamespace

    trt, rec = fake_trt("10.3.0.30")
    use(trt)
    layers = [{"Name": "{ForeignNode[patch_embed.proj...head]}", "LayerType": "DLA", "Precision": "FP16"}]
    info = json.dumps({"Layers": layers})
    rec.engine = SimpleNamespace(create_engine_inspector=lambda: SimpleNamespace(get_engine_information=lambda f: info))
    opts = build_mod.BuildOptions(precision="fp16", profile=(2, 2, 2), input_shape=(1, 8, 8),
                                  config=build_mod.EngineBuildConfig(dla_core=1))
    built = build_mod.build_plan("m.onnx", opts)
    assert built.mode["dla"] is True and built.mode["strongly_typed"] is False, built.mode
    assert built.mode["flags"] == ["FP16", "PREFER_PRECISION_CONSTRAINTS"], built.mode
    assert built.report.placement["dla"] == ["{ForeignNode[patch_embed.proj...head]}"], built.report.placement


def test_dla_engine_record_says_how_it_was_built(work, use):  # noqa: F811
    """edgevit build --dla-core on the stand-in TensorRT 10.3: the manifest's engine entry records the DLA mode."""
    from types import SimpleNamespace

    from edgevit.tensorrt.record import EngineRecord

    _add_fp16(work)
    trt, rec = fake_trt("10.3.0.30")
    use(trt)
    info = json.dumps({"Layers": [{"Name": "{ForeignNode[patch_embed.proj...head]}", "LayerType": "DLA"}]})
    rec.engine = SimpleNamespace(create_engine_inspector=lambda: SimpleNamespace(get_engine_information=lambda f: info))
    result = _build(work, "--batch", "2,2,2", "--json")
    assert result.exit_code == 0, result.output
    record = EngineRecord.from_artifact(Manifest.load(work).artifact(format="tensorrt"))
    assert record.build_mode["dla"] is True and record.dla_core == 0, record.build_mode
    assert record.build_mode["flags"] == ["FP16", "PREFER_PRECISION_CONSTRAINTS"], record.build_mode
    assert record.weakly_typed is True and tuple(record.profile) == (2, 2, 2), record
