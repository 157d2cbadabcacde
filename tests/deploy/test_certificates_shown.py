"""verify and bench show the preprocessing certificates an export's manifest records (issue 18 §4), table
and --json alike, and mark one whose artifact was replaced since as stale."""

from __future__ import annotations

import json

from edgevit.deploy import triton as tr
from edgevit.manifest import Manifest
from tests._fixtures import rich_table, run_cli


def _certified(export):
    tr.write_triton(export, export.parent / "repo", name="digits", samples=32)
    (cert,) = Manifest.load(export).certificates
    return cert


def test_verify_shows_the_candidates_certificates(digits_like_copy):
    export = digits_like_copy
    cert = _certified(export)
    onnx = export / cert.artifact
    args = ["verify", onnx, onnx, "--data", "digits", "--samples", "16"]
    data = json.loads(run_cli(*args, "--json").output)
    assert [(c["consumer"], c["max_abs"], c["current"]) for c in data["certificates"]] == [
        ("triton", cert.max_abs, True)], data.get("certificates")
    shown = {r[0]: r for r in rich_table(run_cli(*args).output, "consumer")}
    assert shown["triton"][1] == cert.artifact and shown["triton"][-1] == cert.verdict.value, shown


def test_bench_shows_certificates_and_marks_a_stale_one(digits_like_copy):
    export = digits_like_copy
    cert = _certified(export)
    args = ["bench", export, "--iterations", "2", "--no-report", "--samples", "16"]
    data = json.loads(run_cli(*args, "--json").output)
    assert [(c["consumer"], c["verdict"], c["current"]) for c in data["certificates"]] == [
        ("triton", cert.verdict.value, True)], data.get("certificates")
    # the artifact changes after the check (a re-export would): its certificate no longer speaks for it
    m = Manifest.load(export)
    m.certificates = [type(cert)(**{**cert.to_dict(), "artifact_sha256": "0" * 64, "verdict": cert.verdict})]
    m.save(export, force=True)
    shown = {r[0]: r for r in rich_table(run_cli(*args).output, "consumer")}
    assert "stale" in " ".join(shown["triton"]), shown
