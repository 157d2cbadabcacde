"""Preprocessing certificates round-trip through the manifest, replace their predecessor, and go stale
when the artifact they checked is replaced."""

from __future__ import annotations

import json

import pytest

from edgevit.certificates import Certificate
from edgevit.errors import ManifestError
from edgevit.manifest import Manifest
from edgevit.tolerances import Verdict


def _manifest(tmp_path) -> Manifest:
    m = Manifest(model={"arch": "vit", "config": {"num_classes": 2}}, labels=["a", "b"])
    m.add_artifact("model.onnx", format="onnx", precision="fp32", sha256="a" * 64)
    return m


def _cert(**kw) -> Certificate:
    base = dict(consumer="triton", artifact="model.onnx", method="ORT with the config's shapes",
                verdict=Verdict.PASSED, max_abs=2e-6, top1_agreement=1.0, samples=360, atol=1e-4,
                location="/srv/repo", artifact_sha256="a" * 64)
    return Certificate(**{**base, **kw})


def test_certificates_round_trip_and_replace_by_consumer_artifact_location(tmp_path):
    m = _manifest(tmp_path)
    m.add_certificate(_cert())
    m.add_certificate(_cert(max_abs=3e-6))  # same key: replaces
    m.add_certificate(_cert(consumer="deepstream", details={"net-scale-factor": 0.0625}))
    m.save(tmp_path)
    back = Manifest.load(tmp_path)
    assert [c.consumer for c in back.certificates] == ["triton", "deepstream"]
    assert back.certificates[0].max_abs == 3e-6, back.certificates[0]
    assert back.certificates == m.certificates
    assert back.certificates[1].details == {"net-scale-factor": 0.0625}


def test_a_manifest_without_certificates_writes_no_key(tmp_path):
    m = _manifest(tmp_path)
    assert "certificates" not in m.to_dict()


def test_a_certificate_of_a_replaced_artifact_is_not_current(tmp_path):
    m = _manifest(tmp_path)
    cert = _cert()
    m.add_certificate(cert)
    assert m.certificate_is_current(cert)
    m.artifacts[0].sha256 = "c" * 64
    assert not m.certificate_is_current(cert)
    assert not m.certificate_is_current(_cert(artifact="gone.onnx"))


@pytest.mark.parametrize("bad, needle", [({"consumer": "x"}, "lacks"), ("text", "must be an object"),
                                         ({"consumer": "x", "artifact": "a", "method": "m", "verdict": "maybe"},
                                          "not a valid certificate")])
def test_a_damaged_certificate_is_refused_naming_its_key(tmp_path, bad, needle):
    m = _manifest(tmp_path)
    data = m.to_dict()
    data["certificates"] = [bad]
    (tmp_path / "edgevit.json").write_text(json.dumps(data))
    with pytest.raises(ManifestError) as info:
        Manifest.load(tmp_path)
    assert "certificates[0]" in str(info.value) and needle in str(info.value), str(info.value)


def test_an_engines_load_plan_certificate_states_the_input_contract_and_that_it_was_not_run(digits_like_export):
    """examples/load_plan.cpp needs TensorRT and a GPU: its certificate says what an application must feed
    (the manifest's input contract) and is NOT_RUN, never passed."""
    from edgevit.manifest import Artifact
    from edgevit.tensorrt.build import load_plan_certificate

    m = Manifest.load(digits_like_export)
    entry = Artifact("model.plan", "tensorrt", "fp32", "d" * 64)
    cert = load_plan_certificate(m, entry)
    assert cert.verdict is Verdict.NOT_RUN and cert.max_abs is None and not cert.passed, cert
    assert cert.artifact == "model.plan" and cert.artifact_sha256 == "d" * 64
    assert "float32 NCHW normalized" in cert.method and "not run" in cert.method, cert.method
    assert cert.details["input"]["dtype"] == "float32", cert.details


def test_a_certificate_whose_written_files_are_gone_is_not_current(tmp_path):
    m = _manifest(tmp_path)
    repo = tmp_path / "repo"
    (repo / "digits").mkdir(parents=True)
    (repo / "digits" / "config.pbtxt").write_text("x")
    cert = _cert(location=str(repo), files={"digits/config.pbtxt": "b" * 64})
    assert m.certificate_is_current(cert)
    (repo / "digits" / "config.pbtxt").unlink()
    assert not m.certificate_is_current(cert)


@pytest.mark.parametrize("field, value", [("max_abs", "big"), ("samples", 1.5), ("files", []), ("top1_agreement", True)])
def test_a_wrongly_typed_certificate_field_is_refused_on_load(tmp_path, field, value):
    m = _manifest(tmp_path)
    data = m.to_dict()
    data["certificates"] = [{**_cert().to_dict(), field: value}]
    (tmp_path / "edgevit.json").write_text(json.dumps(data))
    with pytest.raises(ManifestError) as info:
        Manifest.load(tmp_path)
    assert "certificates[0]" in str(info.value) and field in str(info.value), str(info.value)
