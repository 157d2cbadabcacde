"""A damaged edgevit.json (wrong JSON types, nesting too deep, an invalid batch range, input shape,
preprocessing spec or output kind) is a data error: ManifestError naming the file and the key, exit 1,
never a TypeError, a RecursionError or the command line's exit 2 ("invalid value")."""

from __future__ import annotations

import json

import numpy as np
import pytest

from edgevit.errors import ManifestError
from edgevit.manifest import MANIFEST_NAME, Manifest
from tests._fixtures import assert_exit, run_cli


def _set(path: str, value):
    """A mutation of the manifest's data: ``path`` is a dotted key ("artifacts.0.sha256")."""
    def mutate(data: dict) -> None:
        *parents, last = path.split(".")
        node = data
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        node[int(last) if isinstance(node, list) else last] = value
    return mutate


# (case, mutation, the key the message must name)
DAMAGED = [
    ("integer sha256", _set("artifacts.0.sha256", 123), '"sha256"'),
    ("integer labels", _set("labels", 7), '"labels"'),
    ("a label that is no string", _set("labels.0", 0), '"labels[0]"'),
    ("string model", _set("model", "abc"), '"model"'),
    ("integer inputs", _set("inputs", 5), '"inputs"'),
    ("string batch.min", _set("batch.min", "x"), '"batch.min"'),
    ("integer external_data", _set("artifacts.0.external_data", 7), '"external_data"'),
    ("artifact that is no object", _set("artifacts.0", 5), '"artifacts[0]"'),
    ("string input shape", _set("inputs.0.shape", "batch,1,8,8"), '"inputs[0].shape"'),
    # sections the right JSON types but no valid batch range, input shape, preprocessing spec or output kind
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


def _damage(outdir, mutate) -> None:
    path = outdir / MANIFEST_NAME
    data = json.loads(path.read_text())
    mutate(data)
    path.write_text(json.dumps(data))


@pytest.fixture
def pixels(tmp_path):
    """Two raw digits-like images (0..16) as a .npy file."""
    path = tmp_path / "x.npy"
    np.save(path, np.random.default_rng(0).uniform(0, 16, (2, 1, 8, 8)).astype(np.float32))
    return path


@pytest.mark.parametrize("case, mutate, key", DAMAGED, ids=[c[0] for c in DAMAGED])
def test_wrong_json_types_are_refused_on_load_naming_the_file_and_key(digits_like_copy, case, mutate, key):
    _damage(digits_like_copy, mutate)
    with pytest.raises(ManifestError) as info:
        Manifest.load(digits_like_copy)
    message = str(info.value)
    assert str(digits_like_copy / MANIFEST_NAME) in message and key in message, message


@pytest.mark.parametrize("case, mutate, key", DAMAGED[:4], ids=[c[0] for c in DAMAGED[:4]])
def test_predict_on_a_damaged_manifest_exits_1_naming_file_and_key(digits_like_copy, pixels, case, mutate, key):
    _damage(digits_like_copy, mutate)
    res = run_cli("predict", digits_like_copy / "model.onnx", pixels, "--no-verify-hash")
    assert_exit(res, 1)
    assert str(digits_like_copy / MANIFEST_NAME) in res.stderr and key in res.stderr, res.output
    res = run_cli("predict", digits_like_copy / "model.onnx", pixels, "--json")
    assert_exit(res, 1)
    answer = json.loads(res.stdout)
    assert answer["ok"] is False and answer["type"] == "ManifestError" and key in answer["message"], answer


def test_json_nested_200000_deep_is_a_manifest_error(digits_like_copy, pixels):
    depth = 200_000
    (digits_like_copy / MANIFEST_NAME).write_text('{"schema_version": 1, "model": ' + "[" * depth + "]" * depth + "}")
    with pytest.raises(ManifestError, match="not a readable JSON manifest"):
        Manifest.load(digits_like_copy)
    res = run_cli("predict", digits_like_copy / "model.onnx", pixels)
    assert_exit(res, 1)
    assert str(digits_like_copy / MANIFEST_NAME) in res.stderr, res.output


@pytest.mark.parametrize("field, value", [("interpolation", "cubicx"), ("mean", "abc"), ("std", [0.0])])
def test_an_invalid_preprocessing_spec_is_the_files_error_not_an_invalid_option(digits_like_copy, pixels, field,
                                                                               value):
    """A value the manifest records is no command-line value: exit 1 naming the file and the key, not
    exit 2 ("invalid value")."""
    _damage(digits_like_copy, _set(f"preprocessing.{field}", value))
    res = run_cli("predict", digits_like_copy / "model.onnx", pixels)
    assert_exit(res, 1)
    assert str(digits_like_copy / MANIFEST_NAME) in res.stderr and '"preprocessing"' in res.stderr, res.output


def test_a_valid_manifest_still_loads_with_its_types(digits_like_copy, pixels):
    manifest = Manifest.load(digits_like_copy)
    assert isinstance(manifest.artifacts[0].sha256, str) and manifest.labels == [str(i) for i in range(10)]
    res = run_cli("predict", digits_like_copy / "model.onnx", pixels, "--json")
    assert_exit(res, 0)
    assert len(json.loads(res.stdout)["predictions"]) == 2


@pytest.mark.parametrize("model", [
    {"source": "ckpt.safetensors", "arch": None, "config": {"embed_dim": 64}, "params": 123, "guessed": {},
     "output": "features", "overrides": {}, "source_sha256": None, "later_key": [1, 2]},
    {"output": "logits", "source": "digits-tiny"},  # written before the hash was recorded: no source_sha256
    {},
])
def test_the_model_section_is_typed_and_written_back_as_read(model):
    """``model`` is parsed into a ModelSection on load; ``to_dict`` gives the same keys, order and values
    (unknown keys and nulls included), so a manifest rewritten by another step keeps it byte for byte."""
    from edgevit.output_kinds import OutputKind
    from edgevit.specs import ModelSection

    m = Manifest.from_dict({"schema_version": 1, "model": model, "artifacts": []})
    assert isinstance(m.model, ModelSection)
    assert json.dumps(m.to_dict()["model"]) == json.dumps(model)
    assert m.model.output == model.get("output") and m.recorded_output == OutputKind(model.get("output") or "logits")
    assert m.source.hashed is ("source_sha256" in model) and m.source.name == model.get("source")
    moved = m.model.with_fields(source="other.safetensors", source_absolute="/x/other.safetensors")
    assert moved.to_dict() == {**model, "source": "other.safetensors", "source_absolute": "/x/other.safetensors"}
    assert list(moved.to_dict()) == [*model, *(["source"] if "source" not in model else []), "source_absolute"]
