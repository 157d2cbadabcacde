"""edgevit/tensorrt/ against the TensorRT and cuda-python APIs of every version edgevit supports.

These tests check **names, not behaviour**. They walk the code with ``ast`` (tests/tensorrt/_api_walker.py)
and look every ``trt.`` / ``cudart.`` name and every method or property of a TensorRT object up in
data/trt_python_api.json, a table made from NVIDIA's own sources (the pybind11 bindings of
NVIDIA/TensorRT at each tag from v10.0.1 to v11.1, and the runtime.pyx of cuda-python 12.0 to 13.1;
the table names the tag, commit and files of each version). A name missing from a version the code
path can run on fails, unless the path is guarded: ``if at_least(version, 10, 9):`` (and its
negation or early exit), ``hasattr``, ``getattr(..., default)`` or ``try/except AttributeError``.
That a call takes these arguments, returns what the code expects or works on a device is not
checked here: only the ``trt``-marked tests on a machine with TensorRT and a GPU check that.
"""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

from edgevit.tensorrt import rules
from edgevit.errors import TensorRTError

from ._api_walker import CUDART, TRT, walk_package, walk_source

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "edgevit" / "tensorrt"
TABLE = json.loads((Path(__file__).parent / "data" / "trt_python_api.json").read_text(encoding="utf-8"))
REGENERATE = ("add it to the table: python tests/tensorrt/data/make_trt_api_table.py --tensorrt-git CLONE "
              "--cuda-wheels DIR (a NVIDIA/TensorRT clone with its tags, cuda-python wheels from pip download)")

# getattr(enum, variable): the names come from these rules tables, checked by the tests below
DYNAMIC_LOOKUPS = {(TRT, "BuilderFlag.*"): "rules.weak_flags(), rules.dla_flags() (tests/tensorrt/test_dla.py)",
                   (TRT, "HardwareCompatibilityLevel.*"): "rules.HW_COMPAT_LEVELS"}


def _key(version: str) -> tuple[int, ...]:
    return tuple(int(p) for p in version.split(".") if p.isdigit())


def supported(api: str) -> dict[tuple, str]:
    """Table versions edgevit supports: TensorRT from rules.MIN_TENSORRT on; every cuda-python listed."""
    versions = {_key(v): v for v in TABLE[api]["sources"]}
    if api == TRT:
        versions = {k: v for k, v in versions.items() if k[:2] >= rules.MIN_TENSORRT}
    return versions


def problems(uses) -> list[str]:
    """One line per use whose name is unknown to the table or missing from a version its path can run on."""
    out = []
    for use in uses:
        if use.dynamic:
            if (use.api, use.name) not in DYNAMIC_LOOKUPS and not use.existence_checked:
                out.append(f"{use.where()}: {use.api} {use.name}: getattr with a name this test cannot read; "
                           "use a constant name, a getattr default, or a rules table this test checks")
            continue
        row = TABLE[use.api]["names"].get(use.name)
        if row is None:
            out.append(f"{use.where()}: {use.api} {use.name} is not in data/trt_python_api.json; {REGENERATE}")
            continue
        if use.existence_checked:
            continue
        versions = supported(use.api)
        runs_on = use.runs_on(sorted(versions))
        missing = [versions[k] for k in runs_on if not row[versions[k]]]
        if missing:
            guard = f"guarded by `{use.guard_text}`" if use.guard_text else "unguarded"
            out.append(f"{use.where()}: {use.api} {use.name} is missing in {', '.join(missing)} ({guard}); "
                       f"guard it with `if at_least(trt.__version__, ...)` or stop using it")
    return out


# ---------------------------------------------------------------- edgevit/tensorrt itself
def test_edgevit_tensorrt_uses_only_names_every_supported_version_has():
    uses = walk_package(PACKAGE)
    assert len({u.name for u in uses if u.api == TRT}) >= 30, "the walker found almost no TensorRT names: is it broken?"
    assert any(u.api == CUDART for u in uses), "the walker found no cudart names: is it broken?"
    found = problems(uses)
    assert not found, "TensorRT / cuda-python names not in every version the code can run on:\n" + "\n".join(found)


def test_no_module_outside_edgevit_tensorrt_uses_other_tensorrt_names():
    """The walk above covers edgevit/tensorrt/; elsewhere only module-level names (``tensorrt.__version__``)
    may appear, and they are checked the same way (object members are not typed outside the package)."""
    uses = [u for u in walk_package(ROOT / "edgevit", base=ROOT)
            if not u.path.startswith("edgevit/tensorrt/") and not u.via_object]
    found = problems(uses)
    assert not found, "\n".join(found)


def test_dynamic_lookups_come_from_tables_this_test_checks():
    dynamic = {(u.api, u.name) for u in walk_package(PACKAGE) if u.dynamic and not u.existence_checked}
    assert dynamic <= set(DYNAMIC_LOOKUPS), f"unchecked getattr lookups: {sorted(dynamic - set(DYNAMIC_LOOKUPS))}"


def test_weak_typing_flags_exist_on_every_tensorrt_10_and_are_refused_on_11():
    names = TABLE[TRT]["names"]
    for precision, flags in rules.weak_flags().items():
        for flag in flags:
            row = names.get(f"BuilderFlag.{flag}")
            assert row is not None, f"BuilderFlag.{flag} ({precision}) is not in the table; {REGENERATE}"
            missing = [v for k, v in supported(TRT).items() if k[0] == 10 and not row[v]]
            assert not missing, f"BuilderFlag.{flag} (--weakly-typed {precision}) is missing in TensorRT {missing}"
    for key, version in supported(TRT).items():
        if key[0] >= 11:
            with pytest.raises(ValueError, match="--weakly-typed"):
                rules.build_mode(version, "fp16", has_qdq=False, weakly_typed=True)


def test_hardware_compat_levels_exist_wherever_rules_allow_them():
    names = TABLE[TRT]["names"]
    for level, entry in rules.HW_COMPAT_LEVELS.items():
        if entry is None:
            continue
        member, _since = entry
        row = names.get(f"HardwareCompatibilityLevel.{member}")
        assert row is not None, f"HardwareCompatibilityLevel.{member} is not in the table; {REGENERATE}"
        for version in supported(TRT).values():
            if row[version]:
                assert rules.hardware_level_name(version, level) == member
            else:  # TensorRT without the member: a clear refusal, never an AttributeError
                with pytest.raises(TensorRTError, match="--hardware-compat"):
                    rules.hardware_level_name(version, level)


def test_cudart_import_paths_cover_every_cuda_python_version():
    tried = set()
    for node in ast.walk(ast.parse((PACKAGE / "_bindings.py").read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "cuda":
            tried |= {f"{node.module}.{a.name}" for a in node.names}
    for version, source in TABLE[CUDART]["sources"].items():
        assert source["module"] in tried, (f"cuda-python {version} has its runtime API in {source['module']}; "
                                           f"import_cudart tries only {sorted(tried)}")


def test_table_names_its_sources_and_covers_every_version():
    for api in (TRT, CUDART):
        sources = TABLE[api]["sources"]
        assert sources and all(s["repo"].startswith("NVIDIA/") and s["files"] for s in sources.values())
        for name, row in TABLE[api]["names"].items():
            assert set(row) == set(sources), f"{api} {name}: versions {sorted(row)} != sources {sorted(sources)}"
    for version, source in TABLE[TRT]["sources"].items():
        assert source["tag"].lstrip("v").startswith(version), (version, source["tag"])
    # JetPack 6 (10.3) and both majors are in the table, and the table knows what they differ in
    assert {"10.3", "11.0"} <= set(TABLE[TRT]["sources"])
    assert TABLE[TRT]["names"]["BuilderFlag.FP16"]["10.3"] and not TABLE[TRT]["names"]["BuilderFlag.FP16"]["11.0"]


# ---------------------------------------------------------------- the walker on small sources
def _problems_in(source: str) -> list[str]:
    return problems(walk_source(source, "snippet.py"))


BUILD = """
def build(trt, opts):
    builder = trt.Builder(trt.Logger(trt.Logger.WARNING))
    config = builder.create_builder_config()
    {body}
"""


def test_walker_flags_an_unguarded_name_a_supported_version_lacks():
    found = _problems_in(BUILD.format(
        body="config.hardware_compatibility_level = trt.HardwareCompatibilityLevel.SAME_COMPUTE_CAPABILITY"))
    assert len(found) == 1, found
    assert "HardwareCompatibilityLevel.SAME_COMPUTE_CAPABILITY is missing in 10.0" in found[0] and "10.8 " in found[0]
    assert "unguarded" in found[0] and found[0].startswith("snippet.py:5:")


def test_walker_accepts_the_name_under_a_version_guard():
    guarded = """if at_least(trt.__version__, 10, 9):
        config.hardware_compatibility_level = trt.HardwareCompatibilityLevel.SAME_COMPUTE_CAPABILITY"""
    assert _problems_in(BUILD.format(body=guarded)) == []
    early = """if not at_least(trt.__version__, 10, 9):
        raise ValueError("needs 10.9")
    config.hardware_compatibility_level = trt.HardwareCompatibilityLevel.SAME_COMPUTE_CAPABILITY"""
    assert _problems_in(BUILD.format(body=early)) == []
    ternary = "flag = trt.BuilderFlag.VERSION_COMPATIBLE if at_least(trt.__version__, 11) else trt.BuilderFlag.FP16"
    assert _problems_in(BUILD.format(body=ternary)) == []


def test_walker_flags_a_guard_too_weak_for_the_name():
    weak = """if at_least(trt.__version__, 10, 5):
        config.hardware_compatibility_level = trt.HardwareCompatibilityLevel.SAME_COMPUTE_CAPABILITY"""
    (found,) = _problems_in(BUILD.format(body=weak))
    assert "missing in 10.5, 10.6, 10.7, 10.8 (guarded by `at_least(trt.__version__, 10, 5)`)" in found
    wrong_branch = """if at_least(trt.__version__, 11):
        config.set_flag(trt.BuilderFlag.FP16)"""
    (found,) = _problems_in(BUILD.format(body=wrong_branch))
    assert "BuilderFlag.FP16 is missing in 11.0, 11.1" in found


def test_walker_accepts_existence_checks():
    for body in ('level = getattr(trt.HardwareCompatibilityLevel, "SAME_COMPUTE_CAPABILITY", None)',
                 'if hasattr(trt.BuilderFlag, "FP16"):\n        config.set_flag(trt.BuilderFlag.FP16)',
                 'try:\n        config.set_flag(trt.BuilderFlag.FP16)\n    except AttributeError:\n        pass'):
        assert _problems_in(BUILD.format(body=body)) == [], body
    (found,) = _problems_in(BUILD.format(body='config.set_flag(getattr(trt.BuilderFlag, "FP16"))'))
    assert "BuilderFlag.FP16 is missing in 11.0" in found


def test_walker_types_objects_by_their_maker_and_checks_their_methods():
    found = _problems_in(BUILD.format(body="config.set_fleg(trt.BuilderFlag.GPU_FALLBACK)\n"
                                           "    builder.create_network(0)"))
    assert len(found) == 1 and "tensorrt IBuilderConfig.set_fleg is not in data/trt_python_api.json" in found[0], found
    uses = {u.name for u in walk_source(BUILD.format(body="engine = runtime.deserialize_cuda_engine(b'')\n"
                                                          "    ctx = engine.create_execution_context()\n"
                                                          "    ctx.execute_async_v3(0)"))}
    assert {"Runtime.deserialize_cuda_engine", "ICudaEngine.create_execution_context",
            "IExecutionContext.execute_async_v3"} <= uses, uses


def test_walker_checks_cudart_names_and_leaves_other_objects_alone():
    src = """
def run(cudart, engine: dict):
    props = cuda_check(cudart.cudaGetDeviceProperties(0))
    cudart.cudaMallocAsyncc(16)
    return props.major, engine.get("plan"), cudart.cudaMemcpyKind.cudaMemcpyHostToDevice
"""
    found = _problems_in(src)
    assert len(found) == 1 and "cudart cudaMallocAsyncc is not in" in found[0], found
    names = {u.name for u in walk_source(src)}
    assert {"cudaDeviceProp.major", "cudaMemcpyKind.cudaMemcpyHostToDevice"} <= names and "ICudaEngine.get" not in names


def test_walker_types_self_attributes_by_what_they_are_assigned():
    src = """
class Session:
    def __init__(self, plan, options):
        self.trt = trt = import_tensorrt()
        self.runtime = trt.Runtime(None)
        self.engine = None
        self.config = options
    def run(self):
        self.engine = self.runtime.deserialize_cuda_engine(b"")
        return self.engine.num_io_tensors, self.config.precision, self.trt.TensorIOMode.INPUT
"""
    names = {u.name for u in walk_source(src)}
    assert {"Runtime", "Runtime.deserialize_cuda_engine", "ICudaEngine.num_io_tensors", "TensorIOMode.INPUT"} <= names
    assert not any(n.startswith("IBuilderConfig") for n in names), names


def test_walker_flags_a_getattr_it_cannot_read():
    found = _problems_in(BUILD.format(body="config.set_flag(getattr(trt.TacticSource, opts.name))"))
    assert any("TacticSource.*: getattr with a name this test cannot read" in f for f in found), found
