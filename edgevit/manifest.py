"""The ``edgevit.json`` manifest: one file per output directory that says what every artifact is.

``edgevit export`` writes it next to ``model.onnx``; later steps (fp16/int8 graphs, TensorRT
engines) load it, add their artifact and save it again::

    from edgevit.manifest import Manifest

    m = Manifest.load("out")                                  # out/edgevit.json
    m.add_artifact("model.fp16.onnx", format="onnx", precision="fp16", recipe={"keep_fp32": ["LayerNormalization"]})
    m.save("out", force=True)                                 # atomic (temporary name + rename)
    onnx_fp32 = m.artifact(precision="fp32", format="onnx")   # exactly one match, or ManifestError
    m.root / onnx_fp32.path                                   # artifact paths are relative to the directory

Schema (``schema_version`` 1; every key is always present)::

    {
      "schema_version": 1,
      "created": "2025-01-01T12:00:00+00:00",
      "edgevit_version": "0.1.0",
      "model": {"source": ..., "source_sha256": str | null,  # checkpoint path relative to this directory
                "source_absolute": str,  # (absolute where it cannot be), its sha256, and where it was at export
                "arch": ..., "config": {ViTConfig fields}, "params": int,
                "guessed": {config field: value the loader guessed, e.g. "num_heads": 3},
                "overrides": {config field: value given to the loader, e.g. "num_heads": 6 (--num-heads)},
                "output": "logits" | "features" | "tokens"},   # what outputs[0] holds (absent: logits)
      "labels": [str, ...] | null,
      "preprocessing": {Preprocessing fields} | null,
      "inputs":  [{"name": "images", "dtype": "float32", "shape": ["batch", 3, 224, 224],
                   "dynamic_axes": {"0": "batch"}, "layout": "NCHW", "normalized": true}],
      "outputs": [{"name": "logits", "dtype": "float32", "shape": ["batch", 1000], "dynamic_axes": {"0": "batch"}}],
                 # a headless model: "features" ["batch", D]; --output-kind tokens: "tokens" ["batch", N, D]
      "batch": {"dynamic": true, "min": 1, "opt": 1, "max": 32},   # TensorRT optimization profile
      "export": {"exporter": "torch.onnx (dynamo)", "opset": 18, "attention": "decomposed", ...},
      "artifacts": [{"path": "model.onnx", "format": "onnx", "precision": "fp32", "sha256": "...",
                     "size_bytes": int, "external_data": ["model.onnx.data"] | [],
                     ...later fields: "recipe", "verdict", "tensorrt_version", ...}],
      "certificates": [{Certificate fields}],   # only when a consumer's preprocessing was checked
                 # (edgevit.certificates: consumer, artifact, method, max_abs, verdict, ...)
      "versions": {"torch": ..., "onnx": ..., "onnxruntime": ..., "onnxslim": ..., "edgevit": ..., "python": ...}
    }

On load ``inputs``/``outputs``, ``batch`` and ``preprocessing`` are parsed into typed fields
(:class:`~edgevit.specs.TensorSpec`, :class:`~edgevit.specs.BatchRange`, :class:`~edgevit.specs.Preprocessing`),
``model.output`` into an :class:`~edgevit.output_kinds.OutputKind`, each checked (ManifestError naming the file
and the key); :meth:`Manifest.to_dict` writes them back. Unknown top-level keys, unknown keys of those
sections and unknown artifact fields are kept on load and written back on save, so a newer edgevit's
manifest survives a round trip through an older one.
"""

from __future__ import annotations

import json
import os
import platform
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ._io import artifact_name_problem, sha256_file, write_text_atomic
from .certificates import Certificate
from .errors import ArtifactIntegrityError, ManifestError, OnnxModelError
from .formats import BASE_PRECISION, MANIFEST_NAME, artifact_format, format_of
from .formats import precision as lookup
from .output_kinds import OutputKind
from .resolved import Resolved
from .tensorrt.record import EngineRecord
from .specs import (ARTIFACT_TYPES, BatchRange, ModelSection, ModelSource, Preprocessing, TensorSpec, check_json_type, check_json_types,
                    input_section, preprocessing_section, tensor_dicts)

SCHEMA_VERSION = 1

_ARTIFACT_KEYS = ("path", "format", "precision", "sha256", "size_bytes", "external_data")

def _check_artifact_name(key: str, name: str) -> None:
    """An artifact's ``path`` and each of its ``external_data`` files name a file inside the manifest's
    directory (:func:`edgevit._io.artifact_name_problem`): later steps open them, and ``export --force``
    deletes the ones the new export no longer lists."""
    problem = artifact_name_problem(name)
    if problem:
        raise ValueError(f"{key} {name!r} {problem}")


@dataclass
class Artifact:
    """One file of the pipeline. ``path`` is relative to the manifest's directory.

    ``extra`` holds every other field (``recipe``, ``verdict``, ``tensorrt_version``, ...);
    ``to_dict`` writes them at the same level as the standard keys.
    """

    path: str
    format: str
    precision: str
    sha256: str
    size_bytes: int | None = None
    external_data: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        artifact_format(self.format)  # ValueError naming the formats of the table
        lookup(self.precision)  # ValueError naming the precisions of the table
        for key, name in (("path", self.path), *(("external_data", n) for n in self.external_data)):
            _check_artifact_name(key, name)

    def to_dict(self) -> dict:
        data = {
            "path": self.path,
            "format": self.format,
            "precision": self.precision,
            "sha256": self.sha256,
            "size_bytes": self.size_bytes,
            "external_data": list(self.external_data),
        }
        data.update(self.extra)
        return data

    @classmethod
    def from_dict(cls, data: dict) -> "Artifact":
        check_json_type(data, "artifact entry", (dict,))
        missing = [k for k in ("path", "format", "precision", "sha256") if k not in data]
        if missing:
            raise ManifestError(f"artifact entry {data!r} lacks {missing}")
        for key, (types, items) in ARTIFACT_TYPES.items():
            check_json_type(data.get(key), key, types, items)
        extra = {k: v for k, v in data.items() if k not in _ARTIFACT_KEYS}
        try:
            return cls(
                path=data["path"], format=data["format"], precision=data["precision"], sha256=data["sha256"],
                size_bytes=data.get("size_bytes"), external_data=list(data.get("external_data") or []),
                extra=extra,
            )
        except ValueError as exc:
            raise ManifestError(f"artifact entry {data.get('path')!r}: {exc}") from None


def label_problem(labels, num_classes) -> str | None:
    """Why ``labels`` cannot name the classes of a model with ``num_classes`` outputs (another count,
    duplicates: ``eval`` would merge classes), or None. Checked where labels are loaded (checkpoint
    metadata, manifest)."""
    if not isinstance(labels, (list, tuple)) or num_classes == 0:  # a headless model has no classes to name
        return None
    if isinstance(num_classes, int) and not isinstance(num_classes, bool) and len(labels) != num_classes:
        return f"holds {len(labels)} labels for {num_classes} classes (num_classes)"
    dups = [repr(k) for k, n in Counter(labels).items() if n > 1]
    return f"repeats {', '.join(dups[:5])}: each class needs its own label" if dups else None


def library_versions() -> dict[str, str | None]:
    """Versions of the libraries an artifact depends on (None where one is not installed)."""
    from importlib import metadata

    versions: dict[str, str | None] = {}
    for dist in ("torch", "onnx", "onnxruntime", "onnxslim", "onnxscript", "edgevit"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = None
    versions["python"] = platform.python_version()
    return versions


@dataclass
class Manifest:
    """The contents of ``edgevit.json``; see the module docstring for the schema.

    ``root`` is the directory the manifest was loaded from or last saved to (not serialized);
    relative artifact paths resolve against it.
    """

    model: ModelSection = field(default_factory=ModelSection)
    labels: list[str] | None = None
    preprocessing: Preprocessing | None = None
    inputs: list[TensorSpec] = field(default_factory=list)
    outputs: list[TensorSpec] = field(default_factory=list)
    batch: BatchRange | None = None
    export: dict = field(default_factory=dict)
    artifacts: list[Artifact] = field(default_factory=list)
    certificates: list[Certificate] = field(default_factory=list)  # how each consumer's preprocessing was checked
    versions: dict = field(default_factory=library_versions)
    created: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"))
    schema_version: int = SCHEMA_VERSION
    extra: dict = field(default_factory=dict)
    root: Path | None = field(default=None, compare=False, repr=False)
    # what the checked ONNX graphs output, read off each graph ({artifact path: kind}; not serialized)
    graph_outputs: dict = field(default_factory=dict, compare=False, repr=False)
    graph_checked: set = field(default_factory=set, compare=False, repr=False)  # artifact paths check_graph read
    # unknown keys of the preprocessing object, written back by to_dict
    preprocessing_extra: dict = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        """Sections given as their JSON objects (a manifest built in code) are parsed as on load."""
        if isinstance(self.model, dict):
            try:
                self.model = ModelSection.from_dict(self.model)
            except ValueError as exc:
                raise ManifestError(f'"model.output": {exc}') from None
        if isinstance(self.preprocessing, dict):
            self.preprocessing, self.preprocessing_extra = preprocessing_section(self.preprocessing)
        self.inputs = [input_section(s, f"inputs[{i}]") if isinstance(s, dict) else s for i, s in enumerate(self.inputs)]
        self.outputs = [TensorSpec.from_dict(s) if isinstance(s, dict) else s for s in self.outputs]
        if isinstance(self.batch, dict):
            self.batch = BatchRange.from_dict(self.batch)
        self.certificates = [Certificate.from_dict(c, f"certificates[{i}]") if isinstance(c, dict) else c
                             for i, c in enumerate(self.certificates)]

    def add_certificate(self, certificate: Certificate) -> None:
        """Record ``certificate``, replacing the one of the same consumer, artifact and location."""
        self.certificates = [c for c in self.certificates if c.key != certificate.key] + [certificate]

    def certificate_records(self, paths=None) -> list[dict]:
        """The certificates (of the artifacts at ``paths``, relative to the manifest; all when None) as
        reports carry them: each certificate's fields plus ``current`` (:meth:`certificate_is_current`)."""
        return [{**c.to_dict(), "current": self.certificate_is_current(c)} for c in self.certificates
                if paths is None or c.artifact in paths]

    def certificate_is_current(self, certificate: Certificate) -> bool:
        """Whether the artifact ``certificate`` checked is still the one listed (same path and sha256) and the
        files written for its consumer are still there (:meth:`Certificate.files_present`)."""
        listed = [a for a in self.artifacts if a.path == certificate.artifact]
        return (bool(listed) and certificate.artifact_sha256 in (None, listed[0].sha256)
                and certificate.files_present())

    @property
    def sample_shape(self) -> tuple:
        """The shape of one model input sample as edgevit's loaders make it, (C, H, W): the input's shape without
        the batch dim, channels first also for a raw-pixel NHWC input (``edgevit export --input uint8``, whose
        graph transposes inside; the graph's own shape is ``inputs[0].sample_shape``); () when none is recorded."""
        if not self.inputs:
            return ()
        dims = self.inputs[0].sample_shape
        return (dims[2], dims[0], dims[1]) if self.inputs[0].layout == "NHWC" and len(dims) == 3 else dims

    # ------------------------------------------------------------------ files
    @staticmethod
    def path_in(outdir: str | os.PathLike) -> Path:
        """Where the manifest of ``outdir`` lives."""
        return Path(outdir) / MANIFEST_NAME

    @classmethod
    def load(cls, outdir: str | os.PathLike) -> "Manifest":
        """Read ``outdir/edgevit.json`` (``outdir`` may also be the JSON file itself)."""
        path = Path(outdir)
        if path.is_dir() or path.suffix != ".json":
            path = cls.path_in(path)
        if not path.exists():
            raise ManifestError(
                f"{path}: no manifest here; run `edgevit export SOURCE -o {path.parent}` first"
            )
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError, RecursionError) as exc:  # RecursionError: nested too deep to parse
            raise ManifestError(f"{path}: not a readable JSON manifest ({exc}); re-run edgevit export") from exc
        manifest = cls.from_dict(data, source=str(path))
        manifest.root = path.parent
        return manifest

    def save(self, outdir: str | os.PathLike | None = None, force: bool = False) -> Path:
        """Write ``outdir/edgevit.json`` atomically; an existing manifest needs ``force``."""
        outdir = Path(outdir) if outdir is not None else self.root
        if outdir is None:
            raise ValueError("Manifest.save needs an output directory (this manifest was not loaded from one)")
        path = write_text_atomic(self.path_in(outdir), self.to_json(), force=force)
        self.root = outdir
        return path

    @property
    def output_kind(self) -> OutputKind:
        """What the model's graphs output: "logits", "features" (the pooled embedding of a headless
        model) or "tokens" (its patch tokens), as ``model.output`` records; a manifest written before
        edgevit recorded it is a classifier's. Where a graph opened through this manifest
        (:meth:`check_artifact`) says otherwise by its output's rank (2-D [batch, dim] or 3-D
        [batch, tokens, dim]), the graph's kind (check_artifact warned about it). Reads no file."""
        recorded = self.recorded_output
        seen = [k for k in self.graph_outputs.values() if k != recorded]
        return OutputKind(seen[0]) if seen else recorded

    @property
    def source(self) -> ModelSource:
        """Where the exported weights came from (``model.source``, its sha256, arch and overrides)."""
        return self.model.source_info

    @property
    def recorded_output(self) -> OutputKind:
        """The output kind ``model.output`` records (logits where it records none)."""
        return self.model.output or OutputKind.LOGITS

    def check_still_lists(self, art: Artifact, doing: str, rerun: str) -> None:
        """ManifestError unless this manifest (re-read under its directory's lock) still lists ``art``
        with the sha256 it had when a writer started ``doing`` its work from it."""
        now = [a.sha256 for a in self.artifacts if a.path == art.path]
        if now != [art.sha256]:
            raise ManifestError(
                f"{self.path_in(self.root)}: {art.path} was replaced while {doing} (sha256 {str(art.sha256)[:12]}... "
                f"then, {now[0][:12] + '...' if now and now[0] else 'no entry'} now); what was built from it was not "
                f"installed. Run {rerun} again")

    def source_checkpoint(self, verify_hash: bool = True) -> tuple[Path | None, str | None]:
        """The checkpoint ``model.source`` names, checked: :func:`edgevit.provenance.source_checkpoint`."""
        from .provenance import source_checkpoint

        return source_checkpoint(self, verify_hash)

    # ------------------------------------------------------------------ artifacts
    def add_artifact(
        self,
        path: str | os.PathLike,
        *,
        format: str,
        precision: str,
        sha256: str | None = None,
        external_data: list[str] | None = None,
        replace: bool = True,
        **fields: Any,
    ) -> Artifact:
        """Record a file (relative to the manifest's directory); ``sha256`` and size are computed
        from the file when it exists under ``root`` and no hash is given.

        An entry with the same path is replaced (``replace=False`` refuses instead). Extra
        keyword fields (``recipe=...``, ``verdict=...``) are stored with the entry.
        """
        rel = Path(path)
        if rel.is_absolute():
            if self.root is None:
                raise ValueError(f"absolute artifact path {rel} needs a manifest root to be relative to")
            rel = rel.relative_to(self.root)
        rel_str = rel.as_posix()
        size = None
        file = (self.root / rel) if self.root is not None else None
        if file is not None and file.exists():
            size = file.stat().st_size
            if sha256 is None:
                sha256 = sha256_file(file)
        if sha256 is None:
            raise ManifestError(
                f"cannot hash artifact {rel_str}: the file is not under the manifest's directory "
                f"({self.root}); pass sha256= or set manifest.root"
            )
        art = Artifact(rel_str, format, precision, sha256, size, list(external_data or []), dict(fields))
        for i, existing in enumerate(self.artifacts):
            if existing.path == rel_str:
                if not replace:
                    raise ManifestError(f"artifact {rel_str} is already recorded; pass replace=True to update it")
                self.artifacts[i] = art
                return art
        self.artifacts.append(art)
        return art

    def find_artifacts(self, precision: str | None = None, format: str | None = None, **fields: Any) -> list[Artifact]:
        """Every artifact matching all given criteria (None matches anything)."""
        out = []
        for art in self.artifacts:
            data = art.to_dict()
            if precision is not None and art.precision != precision:
                continue
            if format is not None and art.format != format:
                continue
            if any(data.get(k) != v for k, v in fields.items()):
                continue
            out.append(art)
        return out

    def artifact(self, precision: str | None = None, format: str | None = None, **fields: Any) -> Artifact:
        """The one artifact matching the criteria; ManifestError if none or several match."""
        found = self.find_artifacts(precision, format, **fields)
        wanted = ", ".join(f"{k}={v!r}" for k, v in {"precision": precision, "format": format, **fields}.items()
                           if v is not None) or "any"
        have = ", ".join(f"{a.path} ({a.format}, {a.precision})" for a in self.artifacts) or "none"
        where = f"{self.path_in(self.root)}: " if self.root is not None else ""
        if not found:
            raise ManifestError(f"{where}no artifact with {wanted} in the manifest; recorded: {have}. "
                                "Pick one with --precision (--format), or write it first (edgevit quantize / build)")
        if len(found) > 1:
            raise ManifestError(f"{where}{len(found)} artifacts match {wanted}: {have}; "
                                "pick one with --precision (--format), or name its file")
        return found[0]

    @classmethod
    def resolve(cls, path: str | os.PathLike, precision: str | None = None, format: str | None = None, *,
                verify_hash: bool = True, listed: bool = True, graph: bool = True) -> Resolved:
        """Which artifact ``path`` names, as a :class:`Resolved`; a listed file is checked
        (:meth:`check_artifact`: it exists and, with ``verify_hash``, matches its sha256; with ``graph``, an
        ONNX graph's precision label and output kind are checked against the graph).

        ``path`` is an export OUTDIR, its ``edgevit.json``, or an artifact file. A directory or
        manifest gives the one artifact of ``precision`` and ``format``; where several match, an
        ONNX graph is preferred when no ``format`` is given, then fp32 when no ``precision`` is.
        A file gives the entry of the manifest beside it; ``precision`` / ``format``, when given,
        must be the recorded ones (ValueError). With ``listed=False`` a file no manifest records
        is accepted (``entry`` None, ``manifest`` the one beside it or None, ``format`` named by its
        suffix: ValueError for a suffix no format has).

        Raises:
            OnnxModelError: ``path`` does not exist.
            ManifestError: no manifest, no (or several) matching artifacts, the file is not recorded
                or missing; ArtifactIntegrityError when its sha256 differs.
        """
        path = Path(path)
        if not path.exists():
            raise OnnxModelError(f"{path}: no such artifact file, manifest or export directory; "
                                 "run `edgevit export SOURCE -o DIR` first")
        if path.is_dir() or path.suffix == ".json":
            manifest = cls.load(path)
            found = manifest.find_artifacts(precision, format)
            for keep in ((lambda a: artifact_format(a.format).graph) if format is None else None,
                         (lambda a: a.precision == BASE_PRECISION) if precision is None else None):
                if keep is not None and len(found) > 1:
                    found = [a for a in found if keep(a)] or found
            art = found[0] if len(found) == 1 else manifest.artifact(precision, format)  # raises, naming what is there
            return manifest._resolved(art, verify_hash, graph)
        beside = cls.path_in(path.parent)
        if not beside.is_file():
            if not listed:
                return Resolved(path, format_of(path).name)
            raise ManifestError(f"{beside}: no manifest beside {path.name}; give the `edgevit export` output "
                                "directory (its manifest records the batch range, input shape and precision)")
        manifest = cls.load(beside)
        art = manifest.entry_for(path)
        if art is None:
            if not listed:
                return Resolved(path, format_of(path).name, manifest)
            raise ManifestError(f"{path.name} is not recorded in {beside}; give the export directory "
                                "(or a file edgevit wrote there)")
        kind = artifact_format(art.format).noun
        if precision is not None and art.precision != precision:
            raise ValueError(f"{path.name} is a {art.precision} {kind}, not the {precision} one asked for "
                             "(--precision); give the export directory or that file")
        if format is not None and art.format != format:
            raise ValueError(f"{path.name} is a {art.format} {kind}, not the {format} artifact needed here; "
                             "give the export directory or that file")
        return manifest._resolved(art, verify_hash, graph)

    def _resolved(self, artifact: Artifact, verify_hash: bool, graph: bool) -> Resolved:
        """The :class:`Resolved` of one of this manifest's entries, its file checked first (:meth:`check_artifact`)."""
        return Resolved(self.check_artifact(artifact, verify_hash, graph), artifact.format, self, artifact,
                        hash_checked=verify_hash)

    def entry_for(self, file: str | os.PathLike) -> Artifact | None:
        """The artifact entry recording ``file`` (a path to a file in ``root``), or None."""
        if self.root is None:
            return None
        target = Path(file).resolve()
        return next((a for a in self.artifacts if (self.root / a.path).resolve() == target), None)

    def check_artifact(self, artifact: Artifact, verify_hash: bool = True, graph: bool = True) -> Path:
        """The file of ``artifact`` under ``root``, checked before use: call this wherever a
        listed artifact is opened (verify, bench, build, quantize, ``Engine.load``).

        ManifestError when the file is missing. With ``verify_hash`` (the default) the file's
        sha256 must equal the recorded one, else ArtifactIntegrityError naming the file, both
        hash prefixes, and the command that rewrites it; ``verify_hash=False`` (the CLI's
        ``--no-verify-hash``) skips hashing, for a file changed on purpose. With ``graph`` (the default)
        an ONNX graph is read once per manifest (without its weights) and checked against its entry
        (:func:`edgevit.provenance.check_graph`); the device runtime passes ``graph=False`` and checks each
        output's rank as it runs instead.
        """
        if self.root is None:
            raise ValueError("check_artifact needs manifest.root (load the manifest from its directory)")
        file = self.root / artifact.path
        where = self.path_in(self.root)
        if not file.is_file():
            raise ManifestError(f"{file}: listed in {where} but missing; {self._rewrite_hint(artifact)}")
        if verify_hash and artifact.sha256:
            actual = sha256_file(file)
            if actual != artifact.sha256:
                raise ArtifactIntegrityError(
                    f"{file}: sha256 {actual[:12]}... differs from {artifact.sha256[:12]}... recorded in {where}: "
                    f"the file was changed or replaced after it was written; {self._rewrite_hint(artifact)}, "
                    "or pass --no-verify-hash (verify_hash=False) to use it as it is"
                )
        if graph and artifact_format(artifact.format).graph and artifact.path not in self.graph_checked:
            from .provenance import check_graph  # its precision label and output kind

            check_graph(self, artifact, file)
            self.graph_checked.add(artifact.path)
        return file

    def _rewrite_hint(self, artifact: Artifact) -> str:
        """The command that (re)writes ``artifact``."""
        rebuild = artifact_format(artifact.format).rebuild
        if rebuild is not None:
            onnx = EngineRecord.from_artifact(artifact).onnx_path or "MODEL.onnx"
            source_manifest = self.extra.get("source_manifest")  # the engine was built into another directory
            onnx_root = Path(source_manifest).parent if source_manifest else self.root
            return f"rebuild it with `{rebuild.format(onnx=onnx_root / onnx, out=self.root / artifact.path)}`"
        if artifact.precision == BASE_PRECISION:
            found, _ = self.source_checkpoint(verify_hash=False)
            recorded = self.source
            source = str(found) if found is not None else recorded.name if recorded.names_a_file else "SOURCE"
            return f"re-export it with `edgevit export {source} -o {self.root} --force`"
        return f"rewrite it with `edgevit quantize {self.root} --precision {artifact.precision} --force`"

    def verify_checksums(self) -> list[str]:
        """Problems with the recorded files under ``root`` (missing, or sha256 differs); [] when all match."""
        if self.root is None:
            raise ValueError("verify_checksums needs manifest.root (load the manifest from its directory)")
        problems = []
        for art in self.artifacts:
            file = self.root / art.path
            if not file.exists():
                problems.append(f"{art.path}: missing")
                continue
            digest = sha256_file(file)
            if digest != art.sha256:
                problems.append(f"{art.path}: sha256 {digest[:12]}... differs from recorded {art.sha256[:12]}...")
            for data in art.external_data:
                if not (self.root / data).exists():
                    problems.append(f"{art.path}: external data file {data} missing")
        return problems

    # ------------------------------------------------------------------ (de)serialization
    def to_dict(self) -> dict:
        data = {
            "schema_version": self.schema_version,
            "created": self.created,
            "edgevit_version": self.versions.get("edgevit"),
            "model": self.model.to_dict(),
            "labels": self.labels,
            "preprocessing": ({**self.preprocessing.to_dict(), **self.preprocessing_extra}
                              if self.preprocessing is not None else None),
            "inputs": tensor_dicts(self.inputs),
            "outputs": tensor_dicts(self.outputs),
            "batch": self.batch.to_dict() if self.batch is not None else {},
            "export": self.export,
            "artifacts": [a.to_dict() for a in self.artifacts],
            **({"certificates": [c.to_dict() for c in self.certificates]} if self.certificates else {}),
            "versions": self.versions,
        }
        for key, value in self.extra.items():
            data.setdefault(key, value)
        return data

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=False) + "\n"

    @classmethod
    def from_dict(cls, data: dict, source: str = "manifest") -> "Manifest":
        if not isinstance(data, dict):
            raise ManifestError(f"{source}: a manifest is a JSON object, got {type(data).__name__}")
        version = data.get("schema_version")
        if not isinstance(version, int) or version > SCHEMA_VERSION:
            raise ManifestError(
                f"{source}: schema_version {version!r} is not supported by this edgevit "
                f"(reads up to {SCHEMA_VERSION}); upgrade edgevit or re-export"
            )
        known = {"schema_version", "created", "edgevit_version", "model", "labels", "preprocessing", "inputs",
                 "outputs", "batch", "export", "artifacts", "certificates", "versions"}
        try:
            artifacts = cls._checked_artifacts(data)
        except ManifestError as exc:
            raise ManifestError(f"{source}: {exc}; {cls._damaged_hint(source)}") from None
        problem = label_problem(data.get("labels"), ((data.get("model") or {}).get("config") or {}).get("num_classes"))
        if problem:
            raise ManifestError(f'{source}: "labels" {problem}; give one distinct label per class in "labels" '
                                "(or null), or re-export from a checkpoint whose labels fit")
        try:  # the typed sections are parsed (and checked) by __post_init__
            return cls(
                model=data.get("model") or {},
                labels=data.get("labels"),
                preprocessing=data.get("preprocessing"),
                inputs=list(data.get("inputs") or []),
                outputs=list(data.get("outputs") or []),
                batch=data.get("batch") or None,
                export=data.get("export") or {},
                artifacts=artifacts,
                certificates=list(data.get("certificates") or []),
                versions=data.get("versions") or {},
                created=data.get("created") or "",
                schema_version=version,
                extra={k: v for k, v in data.items() if k not in known},
            )
        except ManifestError as exc:
            raise ManifestError(f"{source}: {exc}; {cls._damaged_hint(source)}") from None

    @staticmethod
    def _damaged_hint(source: str) -> str:
        return ("the file is damaged or was edited: correct that key, or write the manifest again "
                f"(`edgevit export SOURCE -o {Path(source).parent} --force`)")


    @staticmethod
    def _checked_artifacts(data: dict) -> list[Artifact]:
        """The artifact entries of a manifest's ``data``, once every key code reads has its JSON type
        (:func:`edgevit.specs.check_json_types`); ManifestError naming the first key that has not."""
        check_json_types(data)
        artifacts = []
        for i, entry in enumerate(data.get("artifacts") or []):
            try:
                artifacts.append(Artifact.from_dict(entry))
            except ManifestError as exc:
                raise ManifestError(f"artifacts[{i}]: {exc}") from None
        return artifacts


__all__ = ["Artifact", "MANIFEST_NAME", "Manifest", "Resolved", "SCHEMA_VERSION", "label_problem", "library_versions"]
