"""Where an export's files came from, checked before a result rests on them.

- ``model.source`` of a manifest is the checkpoint the graphs were exported from, recorded relative to
  the manifest's directory (absolute where no relative path exists) with ``model.source_sha256``
  (:func:`source_fields`); bench's PyTorch reference and verify's attention reference load it
  through :func:`source_checkpoint`, which refuses a file whose hash differs.
- A graph opened through its manifest (:meth:`edgevit.manifest.Manifest.check_artifact`) is read
  without its external data and checked against its entry (:func:`check_graph`): the precision
  label against what the graph holds (Q/DQ and their zero-point dtype, initializer dtypes:
  :func:`edgevit.onnx_graph.graph_precision`), and ``model.output`` against the output's rank.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

from ._io import sha256_file
from .errors import ArtifactIntegrityError, EdgeVitWarning, ManifestError
from .formats import ONNX_PRECISIONS
from .output_kinds import OutputKind, kind_of_output_name, kinds_of_rank

if TYPE_CHECKING:
    from .manifest import Artifact, Manifest


def source_fields(source: str, outdir: str | os.PathLike) -> dict:
    """``model.source``: a checkpoint path relative to ``outdir`` (absolute where none exists), or a
    hub/variant name as given; ``model.source_sha256``: the checkpoint file's (None otherwise)."""
    path = Path(source)
    if not path.exists():
        return {"source": str(source), "source_sha256": None}
    try:
        recorded = Path(os.path.relpath(path.resolve(), Path(outdir).resolve())).as_posix()
    except ValueError:  # another drive: no relative path
        recorded = str(path.resolve())
    return {"source": recorded, "source_sha256": sha256_file(path) if path.is_file() else None,
            "source_absolute": str(path.resolve())}  # where it was: found again when OUTDIR alone moves


def source_checkpoint(manifest: "Manifest", verify_hash: bool = True) -> tuple[Path | None, str | None]:
    """(the checkpoint ``model.source`` names, a note for the report); (None, why) when it names no
    existing path (an in-memory model, a hub or variant name, a missing file).

    The path is relative to the manifest's directory (``source_manifest``'s for an engine built into
    another one), else ``model.source_absolute`` (where it was at export: OUTDIR moved alone). A file whose sha256 differs from ``model.source_sha256`` raises
    ArtifactIntegrityError naming the manifest, the path, both hashes and the fixes (a note instead
    with ``verify_hash=False``). A manifest written before the hash was recorded holds a path relative
    to its export's working directory: it is looked for beside the manifest first, then in the
    working directory, and the note says it could not be checked.
    """
    record = manifest.source
    src = record.name
    if not record.names_a_file:
        return None, f"manifest source {src!r} is not a file"
    extra = manifest.extra.get("source_manifest")
    base = Path(extra).parent if isinstance(extra, str) else (manifest.root or Path())
    legacy, path, absolute = not record.hashed, Path(src), record.absolute
    looked = [path] if path.is_absolute() else [base / path] + ([path] if legacy else [])
    looked += [Path(absolute)] if isinstance(absolute, str) and Path(absolute) not in looked else []
    found = list({p.resolve(): p for p in looked if p.exists()}.values())  # one file named two ways: once
    where = manifest.path_in(manifest.root) if manifest.root is not None else "the manifest"
    if not found:
        return None, f"checkpoint {src} not found (looked for {', '.join(str(p) for p in looked)})"
    if legacy:
        return found[0], (f"{where} records no sha256 of its checkpoint (written by an older edgevit), so {found[0]} "
                          "is used as the PyTorch reference unchecked; re-export to record it, or pass --reference")
    recorded = record.sha256
    if not (isinstance(recorded, str) and recorded and found[0].is_file()):
        return found[0], None
    if not verify_hash:
        return found[0], f"{found[0]}: not checked against the sha256 in {where} (--no-verify-hash)"
    first = sha256_file(found[0])
    match = found[0] if first == recorded else next(
        (p for p in found[1:] if p.is_file() and sha256_file(p) == recorded), None)
    if match is None:
        raise ArtifactIntegrityError(
            f"{where}: model.source {src} is {found[0]}, whose sha256 {first[:12]}... differs "
            f"from {recorded[:12]}... recorded at export: not the checkpoint these artifacts were exported from. "
            f"Re-export (`edgevit export CHECKPOINT -o {manifest.root} --force`), or pass the reference explicitly "
            "(bench --reference CHECKPOINT, verify REFERENCE)")
    return match, None


def check_graph(manifest: "Manifest", artifact: "Artifact", file: Path, labels: bool = True) -> None:
    """``file`` (read without external data) against its entry: the precision label (``labels``:
    ManifestError naming the file, the label and what the graph holds), and ``model.output`` by the
    output's rank, 2-D [batch, dim] or 3-D [batch, tokens, dim] (a disagreement is warned about, and
    the graph's kind kept in ``manifest.graph_outputs``). A file that does not parse is left to its runner."""
    from .onnx_graph import graph_facts

    facts, where = graph_facts(file), manifest.path_in(manifest.root)
    if facts is None:
        return
    if labels and artifact.precision in ONNX_PRECISIONS and facts["precision"] != artifact.precision:
        raise ManifestError(
            f"{file}: {where} labels it {artifact.precision}, but the graph holds {facts['holds']}, so it is "
            f"{'a' if facts['precision'].startswith('b') else 'an'} {facts['precision']} graph. Fix its \"precision\" in {where}, or rewrite the {artifact.precision} "
            f"graph with `edgevit quantize {manifest.root} --precision {artifact.precision} --force`")
    shape, name = facts["output_shape"], facts["output"]
    recorded = manifest.recorded_output
    kinds = kinds_of_rank(len(shape)) if shape is not None else []
    if not kinds:
        return
    named = kind_of_output_name(name)  # edgevit names a graph's output after its kind
    kind = recorded if recorded in kinds else kinds[0] if len(kinds) == 1 else (
        named if named in kinds else OutputKind.LOGITS)
    manifest.graph_outputs[artifact.path] = kind
    if kind != recorded:
        warnings.warn(f"{file}: {where} says the model outputs {recorded}, but the graph's output {name!r} is "
                      f"{len(shape)}-D {shape}: it is taken as {kind}. Re-export, or fix model.output in {where}",
                      EdgeVitWarning, stacklevel=3)


__all__ = ["check_graph", "source_checkpoint", "source_fields"]
