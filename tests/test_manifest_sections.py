"""The manifest's sections are parsed once, on load, into typed fields (edgevit.specs, edgevit.output_kinds);
the typed fields are written back byte for byte, unknown keys included. (A bad batch range, input shape,
preprocessing spec or output kind is refused on load: tests/test_manifest_types.py.)"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from edgevit.errors import ManifestError
from edgevit.manifest import MANIFEST_NAME, Manifest
from edgevit.output_kinds import FEATURE_OUTPUTS, OUTPUT_KINDS, OutputKind, output_kind
from edgevit.specs import BatchRange, Preprocessing, TensorSpec, parse_batch


def _rewrite(outdir, mutate) -> None:
    path = outdir / MANIFEST_NAME
    data = json.loads(path.read_text())
    mutate(data)
    path.write_text(json.dumps(data, indent=2) + "\n")


def test_sections_load_typed_and_write_back_byte_identical(digits_like_copy):
    text = (digits_like_copy / MANIFEST_NAME).read_text()
    m = Manifest.load(digits_like_copy)
    assert isinstance(m.inputs[0], TensorSpec) and isinstance(m.outputs[0], TensorSpec)
    assert isinstance(m.batch, BatchRange) and isinstance(m.preprocessing, Preprocessing)
    assert m.output_kind is OutputKind.LOGITS and m.output_kind == "logits" and m.output_kind.classes
    assert m.sample_shape == m.inputs[0].sample_shape == (1, 8, 8) == m.preprocessing.input_size
    assert m.inputs[0].layout == "NCHW" and m.inputs[0].normalized is True and m.outputs[0].layout is None
    assert m.batch.bounds == (m.batch.min, m.batch.opt, m.batch.max) and m.batch.is_dynamic
    assert m.to_json() == text


def test_unknown_keys_of_each_section_round_trip(digits_like_copy):
    def add(d):
        d["inputs"][0]["colorspace"] = "gray"
        d["outputs"][0]["units"] = "logit"
        d["batch"]["note"] = "profile"
        d["preprocessing"]["resize_mode"] = "shortest"
        d["model"]["family"] = "vit"
    _rewrite(digits_like_copy, add)
    text = (digits_like_copy / MANIFEST_NAME).read_text()
    m = Manifest.load(digits_like_copy)
    assert m.inputs[0].extra == {"colorspace": "gray"} and m.batch.extra == {"note": "profile"}
    assert m.to_json() == text


def test_a_manifest_built_from_section_objects_parses_them_as_on_load():
    m = Manifest(inputs=[{"name": "images", "shape": ["batch", 3, 4, 4]}], batch={"min": 1, "opt": 2, "max": 2},
                 preprocessing={"input_size": [3, 4, 4]})
    assert m.inputs[0] == TensorSpec("images", ("batch", 3, 4, 4)) and m.batch == BatchRange(1, 2, 2)
    assert m.preprocessing == Preprocessing(input_size=(3, 4, 4))
    assert m.to_dict()["inputs"] == [{"name": "images", "shape": ["batch", 3, 4, 4]}]
    assert m.to_dict()["batch"] == {"min": 1, "opt": 2, "max": 2} and Manifest().to_dict()["batch"] == {}
    with pytest.raises(ManifestError, match='"batch"'):
        Manifest(batch={"min": 2, "opt": 1, "max": 4})


def test_batch_range_checks_its_bounds():
    assert BatchRange(2, 2, 2).is_dynamic is False and BatchRange(1, 2, 4).is_dynamic is True
    assert BatchRange(1, 1, 4, dynamic=False).is_dynamic is False
    for bad in ((0, 1, 2), (4, 2, 8), (1, 9, 8)):
        with pytest.raises(ValueError, match="1 <= MIN <= OPT <= MAX"):
            BatchRange(*bad)


def test_parse_batch():
    assert parse_batch("1,8,32") == (1, 8, 32) and parse_batch(" 2, 2 ,2") == (2, 2, 2)
    for bad in ("1,8", "a,b,c", "0,1,2", "8,4,16"):
        with pytest.raises(ValueError):
            parse_batch(bad)


def test_parse_batch_loads_no_torch():
    """``edgevit build --batch`` parses its range without importing torch."""
    code = ("import sys; from edgevit.specs import parse_batch; from edgevit.tensorrt.rules import "
            "profile_from_manifest; from edgevit.manifest import Manifest; "
            "assert profile_from_manifest(Manifest(batch={'min': 1, 'opt': 4, 'max': 32}).batch, "
            "parse_batch('2,8,16')) == (2, 8, 16); assert 'torch' not in sys.modules, 'torch loaded'")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr


def test_one_table_of_output_kinds():
    assert OUTPUT_KINDS == ("logits", "features", "tokens") and FEATURE_OUTPUTS == ("features", "tokens")
    ranks = {k.value: (k.rank, k.layout) for k in OutputKind}
    assert ranks == {"logits": (2, "(batch, classes)"), "features": (2, "(batch, dim)"),
                     "tokens": (3, "(batch, patches, dim)")}
    assert [k.agreement for k in OutputKind] == ["top-1", "k-NN", "k-NN"]
    assert json.dumps({"output": OutputKind.TOKENS}) == '{"output": "tokens"}' and f"{OutputKind.TOKENS}" == "tokens"
    assert {"features": 1}[OutputKind.FEATURES] == 1 and output_kind("tokens").rank == 3
    with pytest.raises(ValueError, match=r"--output-kind must be one of \['logits', 'features', 'tokens'\]"):
        output_kind("boxes", "--output-kind")
