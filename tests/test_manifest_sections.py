"""The manifest's sections are parsed once, on load, into typed fields (edgevit.specs, edgevit.output_kinds):
a bad batch range, input shape, preprocessing spec or output kind is refused there, naming the file and
the key; the typed fields are written back byte for byte, unknown keys included."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from edgevit.errors import ManifestError
from edgevit.manifest import MANIFEST_NAME, Manifest
from edgevit.output_kinds import FEATURE_OUTPUTS, OUTPUT_KINDS, OUTPUT_RANKS, OutputKind, output_kind
from edgevit.specs import BatchRange, Preprocessing, TensorSpec, parse_batch


def _rewrite(outdir, mutate) -> None:
    path = outdir / MANIFEST_NAME
    data = json.loads(path.read_text())
    mutate(data)
    path.write_text(json.dumps(data, indent=2) + "\n")


# (case, mutation of the manifest's data, the key the message must name); each loaded on the base code
BAD_SECTIONS = [
    ("batch min above max", lambda d: d["batch"].update(min=64), '"batch"'),
    ("batch opt below min", lambda d: d["batch"].update(min=4, opt=2), '"batch"'),
    ("batch min zero", lambda d: d["batch"].update(min=0), '"batch"'),
    ("batch without max", lambda d: d["batch"].pop("max"), '"batch"'),
    ("input dim zero", lambda d: d["inputs"][0].update(shape=["batch", 1, 0, 8]), '"inputs[0].shape"'),
    ("input dim a name", lambda d: d["inputs"][0].update(shape=["batch", "c", 8, 8]), '"inputs[0].shape"'),
    ("input without sample dims", lambda d: d["inputs"][0].update(shape=["batch"]), '"inputs[0].shape"'),
    ("preprocessing interpolation", lambda d: d["preprocessing"].update(interpolation="cubicx"), '"preprocessing"'),
    ("preprocessing std zero", lambda d: d["preprocessing"].update(std=[0.0]), '"preprocessing"'),
    ("preprocessing channels", lambda d: d["preprocessing"].update(mean=[0.1, 0.2]), '"preprocessing"'),
    ("unknown output kind", lambda d: d["model"].update(output="logitz"), '"model.output"'),
]


@pytest.mark.parametrize("case, mutate, key", BAD_SECTIONS, ids=[c[0] for c in BAD_SECTIONS])
def test_a_bad_section_is_refused_on_load_naming_the_file_and_key(digits_like_copy, case, mutate, key):
    _rewrite(digits_like_copy, mutate)
    with pytest.raises(ManifestError) as info:
        Manifest.load(digits_like_copy)
    message = str(info.value)
    assert str(digits_like_copy / MANIFEST_NAME) in message and key in message, message


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
    assert OUTPUT_RANKS == {"logits": (2, "(batch, classes)"), "features": (2, "(batch, dim)"),
                            "tokens": (3, "(batch, patches, dim)")}
    assert [k.agreement for k in OutputKind] == ["top-1", "k-NN", "k-NN"]
    assert json.dumps({"output": OutputKind.TOKENS}) == '{"output": "tokens"}' and f"{OutputKind.TOKENS}" == "tokens"
    assert {"features": 1}[OutputKind.FEATURES] == 1 and output_kind("tokens").rank == 3
    with pytest.raises(ValueError, match=r"--output-kind must be one of \['logits', 'features', 'tokens'\]"):
        output_kind("boxes", "--output-kind")
