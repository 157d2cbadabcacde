"""edgevit.json: round trips, artifact bookkeeping, atomic writes, and clear errors."""

from __future__ import annotations

import json

import pytest

from edgevit._io import sha256_file
from edgevit.errors import ArtifactExistsError, ArtifactIntegrityError, ManifestError, OnnxModelError
from edgevit.manifest import MANIFEST_NAME, SCHEMA_VERSION, Artifact, Manifest, Resolved
from edgevit.specs import BatchRange, Preprocessing, TensorSpec
from edgevit.tensorrt.record import EngineRecord


def _manifest(tmp_path) -> Manifest:
    (tmp_path / "model.onnx").write_bytes(b"graph bytes")
    m = Manifest(
        model={"source": "digits-tiny", "arch": None, "config": {"embed_dim": 64}, "params": 123},
        labels=["a", "b"],
        preprocessing=Preprocessing(input_size=(1, 8, 8), mean=(0.5,), std=(0.5,)),
        inputs=[TensorSpec("images", ("batch", 1, 8, 8), "float32", {"0": "batch"})],
        outputs=[TensorSpec("logits", ("batch", 2), "float32", {"0": "batch"})],
        batch=BatchRange(1, 4, 64, dynamic=True),
        export={"opset": 18, "attention": "decomposed"},
        root=tmp_path,
    )
    m.add_artifact("model.onnx", format="onnx", precision="fp32")
    return m


def test_round_trip_keeps_everything(tmp_path):
    m = _manifest(tmp_path)
    path = m.save(tmp_path)
    assert path == tmp_path / MANIFEST_NAME
    loaded = Manifest.load(tmp_path)
    assert loaded == m
    assert loaded.root == tmp_path
    data = json.loads(path.read_text())
    for key in ("schema_version", "model", "labels", "preprocessing", "inputs", "outputs", "batch", "export",
                "artifacts", "versions"):
        assert key in data, f"manifest lacks {key!r}: {sorted(data)}"
    assert data["schema_version"] == SCHEMA_VERSION
    assert {"torch", "onnx", "onnxruntime", "edgevit"} <= set(data["versions"])


def test_add_artifact_hashes_the_file_and_keeps_extra_fields(tmp_path):
    m = _manifest(tmp_path)
    art = m.artifact(precision="fp32", format="onnx")
    assert art.sha256 == sha256_file(tmp_path / "model.onnx")
    assert art.size_bytes == len(b"graph bytes")
    (tmp_path / "model.fp16.onnx").write_bytes(b"half")
    m.add_artifact("model.fp16.onnx", format="onnx", precision="fp16", recipe={"keep_fp32": ["LayerNormalization"]},
                   verdict={"passed": True})
    m.save(tmp_path)
    loaded = Manifest.load(tmp_path / MANIFEST_NAME)
    fp16 = loaded.artifact(precision="fp16")
    assert fp16.extra == {"recipe": {"keep_fp32": ["LayerNormalization"]}, "verdict": {"passed": True}}
    assert len(loaded.find_artifacts(format="onnx")) == 2


def test_add_artifact_replaces_same_path_unless_told_not_to(tmp_path):
    m = _manifest(tmp_path)
    m.add_artifact("model.onnx", format="onnx", precision="fp32", note="second")
    assert len(m.artifacts) == 1 and m.artifacts[0].extra["note"] == "second"
    with pytest.raises(ManifestError, match="already recorded"):
        m.add_artifact("model.onnx", format="onnx", precision="fp32", replace=False)


def test_artifact_lookup_errors_name_what_exists(tmp_path):
    m = _manifest(tmp_path)
    with pytest.raises(ManifestError, match=r"no artifact with precision='int8'.*model.onnx \(onnx, fp32\)"):
        m.artifact(precision="int8")
    m.add_artifact("other.onnx", format="onnx", precision="fp32", sha256="0" * 64)
    with pytest.raises(ManifestError, match="2 artifacts match"):
        m.artifact(precision="fp32")
    assert m.artifact(precision="fp32", path="other.onnx").path == "other.onnx"


def test_unknown_fields_survive_a_round_trip(tmp_path):
    m = _manifest(tmp_path)
    m.save(tmp_path)
    data = json.loads((tmp_path / MANIFEST_NAME).read_text())
    data["future_section"] = {"x": 1}
    data["artifacts"][0]["tensorrt_version"] = "10.3"
    (tmp_path / MANIFEST_NAME).write_text(json.dumps(data))
    loaded = Manifest.load(tmp_path)
    loaded.save(tmp_path, force=True)
    again = json.loads((tmp_path / MANIFEST_NAME).read_text())
    assert again["future_section"] == {"x": 1}
    assert again["artifacts"][0]["tensorrt_version"] == "10.3"


def test_save_refuses_to_overwrite_without_force_and_leaves_no_temp_files(tmp_path):
    m = _manifest(tmp_path)
    m.save(tmp_path)
    before = (tmp_path / MANIFEST_NAME).read_text()
    m.labels = ["changed"]
    with pytest.raises(ArtifactExistsError, match="--force"):
        m.save(tmp_path)
    assert (tmp_path / MANIFEST_NAME).read_text() == before
    m.save(tmp_path, force=True)
    assert Manifest.load(tmp_path).labels == ["changed"]
    leftovers = [p.name for p in tmp_path.iterdir() if "tmp" in p.name or p.name == ".edgevit.lock"]
    assert not leftovers, f"temporary files left behind: {leftovers}"


def test_verify_checksums_spots_changed_and_missing_files(tmp_path):
    m = _manifest(tmp_path)
    assert m.verify_checksums() == []
    (tmp_path / "model.onnx").write_bytes(b"tampered")
    assert any("differs" in p for p in m.verify_checksums())
    (tmp_path / "model.onnx").unlink()
    assert m.verify_checksums() == ["model.onnx: missing"]


@pytest.mark.parametrize(
    "content, match",
    [(None, "no manifest here"), ("{not json", "not a readable JSON"), ('{"schema_version": 99}', "schema_version 99"),
     ("[1, 2]", "JSON object"), ('{"schema_version": 1, "artifacts": [{"path": "x"}]}', "lacks")],
)
def test_bad_manifests_raise_manifest_error(tmp_path, content, match):
    if content is not None:
        (tmp_path / MANIFEST_NAME).write_text(content)
    with pytest.raises(ManifestError, match=match):
        Manifest.load(tmp_path)


def test_artifact_validation():
    with pytest.raises(ValueError, match="precision must be one of"):
        Artifact("m.onnx", "onnx", "fp64", "0" * 64)
    with pytest.raises(ValueError, match="format must be one of"):
        Artifact("m.onnx", "tflite", "fp32", "0" * 64)
    with pytest.raises(ValueError, match="relative"):
        Artifact("/abs/m.onnx", "onnx", "fp32", "0" * 64)


@pytest.mark.parametrize("entry", [{"external_data": ["../victims/x"]}, {"external_data": ["/victims/x"]},
                                   {"external_data": ["ok.data", "sub/../../x"]}, {"path": ".edgevit.lock"},
                                   {"path": ".model.onnx.edgevit-tmp-123"}])
def test_external_data_and_paths_must_stay_inside_the_directory(tmp_path, entry):
    """Issue 16 item 1: external_data is checked like path on load (--force deletes what a manifest
    lists), and edgevit's lock and temporaries are never artifacts."""
    art = {"path": "model.onnx", "format": "onnx", "precision": "fp32", "sha256": "0" * 64, **entry}
    (tmp_path / MANIFEST_NAME).write_text(json.dumps({"schema_version": 1, "artifacts": [art]}))
    key = next(iter(entry))
    with pytest.raises(ManifestError, match=key) as info:
        Manifest.load(tmp_path)
    assert str(tmp_path / MANIFEST_NAME) in str(info.value) or art["path"] in str(info.value), str(info.value)
    with pytest.raises(ValueError, match=key):
        Artifact(**{**{k: v for k, v in art.items() if k in ("path", "format", "precision", "sha256")}, **entry})


def test_add_artifact_without_root_needs_a_hash():
    m = Manifest()
    with pytest.raises(ManifestError, match="pass sha256"):
        m.add_artifact("model.onnx", format="onnx", precision="fp32")
    art = m.add_artifact("model.plan", format="tensorrt", precision="fp16", sha256="ab" * 32)
    assert art.path == "model.plan"
    with pytest.raises(ValueError, match="output directory"):
        m.save()


def _export_dir(tmp_path) -> Manifest:
    """An OUTDIR with fp32 and fp16 graphs and an fp16 engine, saved."""
    m = _manifest(tmp_path)
    for name, fmt, prec in [("model.fp16.onnx", "onnx", "fp16"), ("model.fp16.plan", "tensorrt", "fp16")]:
        (tmp_path / name).write_bytes(name.encode())
        m.add_artifact(name, format=fmt, precision=prec)
    m.save(tmp_path)
    return m


@pytest.mark.parametrize("given", ["dir", "manifest file"])
def test_resolve_picks_from_an_outdir_or_its_manifest(tmp_path, given):
    _export_dir(tmp_path)
    source = tmp_path if given == "dir" else tmp_path / MANIFEST_NAME
    picks = {(p, f): Manifest.resolve(source, p, f).entry.path
             for p, f in [(None, None), ("fp16", None), ("fp16", "tensorrt"), (None, "tensorrt"), ("fp32", "onnx")]}
    assert picks == {(None, None): "model.onnx",             # ONNX before engines, then fp32
                     ("fp16", None): "model.fp16.onnx",
                     ("fp16", "tensorrt"): "model.fp16.plan",
                     (None, "tensorrt"): "model.fp16.plan",  # the only engine, whatever its precision
                     ("fp32", "onnx"): "model.onnx"}, picks
    found = Manifest.resolve(source, "fp16")
    assert found.manifest.root == tmp_path and found.path == tmp_path / "model.fp16.onnx"
    assert found.entry.precision == found.precision == "fp16" and found.format == "onnx" and found.listed


def test_resolve_an_artifact_file_takes_its_entry(tmp_path):
    _export_dir(tmp_path)
    found = Manifest.resolve(tmp_path / "model.fp16.plan")
    assert (found.format, found.precision, found.path) == ("tensorrt", "fp16", tmp_path / "model.fp16.plan")
    assert found.entry.format == "tensorrt" and found.record == EngineRecord.from_artifact(found.entry)
    assert Manifest.resolve(tmp_path / "model.onnx", "fp32", "onnx").entry.path == "model.onnx"
    with pytest.raises(ValueError, match="is a fp32 graph, not the fp16 one asked for"):
        Manifest.resolve(tmp_path / "model.onnx", "fp16")
    with pytest.raises(ValueError, match="not the onnx artifact"):
        Manifest.resolve(tmp_path / "model.fp16.plan", format="onnx")


def test_resolve_errors_say_what_is_there(tmp_path):
    _export_dir(tmp_path)
    with pytest.raises(ManifestError, match=r"edgevit.json: no artifact with precision='int8'.*model.onnx \(onnx, fp32\)"):
        Manifest.resolve(tmp_path, "int8")
    (tmp_path / "model.int8.plan").write_bytes(b"engine")
    m = Manifest.load(tmp_path)
    m.add_artifact("model.int8.plan", format="tensorrt", precision="int8")
    m.save(force=True)
    with pytest.raises(ManifestError, match="2 artifacts match format='tensorrt'"):  # ambiguous: no fp32 engine
        Manifest.resolve(tmp_path, format="tensorrt")
    with pytest.raises(OnnxModelError, match="no such artifact file"):
        Manifest.resolve(tmp_path / "missing.onnx")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ManifestError, match="no manifest here"):
        Manifest.resolve(tmp_path / "empty")
    (tmp_path / "stray.onnx").write_bytes(b"x")
    with pytest.raises(ManifestError, match="stray.onnx is not recorded in"):
        Manifest.resolve(tmp_path / "stray.onnx")
    stray = Manifest.resolve(tmp_path / "stray.onnx", listed=False)
    assert (stray.entry, stray.path, stray.format, stray.listed) == (None, tmp_path / "stray.onnx", "onnx", False)
    assert stray.manifest.root == tmp_path
    bare = tmp_path / "bare"
    bare.mkdir()
    (bare / "model.onnx").write_bytes(b"x")
    with pytest.raises(ManifestError, match="no manifest beside model.onnx"):
        Manifest.resolve(bare / "model.onnx")
    assert Manifest.resolve(bare / "model.onnx", listed=False) == Resolved(bare / "model.onnx", "onnx")
    (bare / "model.bin").write_bytes(b"x")
    with pytest.raises(ValueError, match="not an artifact file edgevit knows"):
        Manifest.resolve(bare / "model.bin", listed=False)
    (tmp_path / "model.fp16.onnx").unlink()
    with pytest.raises(ManifestError, match="listed in .* but missing"):
        Manifest.resolve(tmp_path, "fp16")


def test_resolve_checks_the_sha256_unless_told_not_to(tmp_path):
    _export_dir(tmp_path)
    (tmp_path / "model.fp16.onnx").write_bytes(b"changed after export")
    for source in (tmp_path, tmp_path / "model.fp16.onnx"):
        with pytest.raises(ArtifactIntegrityError, match="differs from"):
            Manifest.resolve(source, "fp16", "onnx")
        assert Manifest.resolve(source, "fp16", "onnx", verify_hash=False).path == tmp_path / "model.fp16.onnx"
    with pytest.raises(ArtifactIntegrityError):
        Manifest.resolve(tmp_path / "model.fp16.onnx", listed=False)  # a listed file is checked either way
