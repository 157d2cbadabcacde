"""What every deploy target needs (:mod:`edgevit.deploy.triton`, :mod:`edgevit.deploy.deepstream`): resolve
the source artifact of an export (``--precision P`` or an artifact file, through :meth:`Manifest.resolve`),
refuse an existing output without ``--force``, build the output in a temporary directory beside it and
rename it into place, the consumer images (model-size raw pixels rounded to uint8, as a decoder delivers
them) and the reference outputs on them (the export's fp32 ONNX graph, verified against PyTorch at export,
run by edgevit's runtime on edgevit's own preprocessing of the same pixels), compare and judge, and record
the :class:`~edgevit.certificates.Certificate` in the export's manifest under its writer lock.

Started by helper D as ``_pending_common.py``; its names are kept. Imports no torch (issue 18 §5).
"""

from __future__ import annotations

import shutil
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Iterator

import numpy as np

from .._io import (check_output_dir, follow_umask_tree, outdir_lock, remove_stale_temporaries, sha256_file,
                   temporary_dir)
from ..errors import ArtifactExistsError, OutputPathError, VerificationError
from ..formats import BASE_PRECISION
from ..manifest import Manifest
from ..resolved import Resolved
from ..specs import Preprocessing

DEFAULT_SAMPLES = 256
"""Consumer images a certificate is measured on unless told (the first of the data's test split)."""


def resolve_target(outdir, precision: str | None, artifact, verify_hash: bool = True) -> Resolved:
    """The artifact a deploy target writes for: ``artifact`` (a file of the export) or the ``precision``
    artifact of export ``outdir`` (default: its fp32 ONNX graph); ValueError for both at once."""
    if artifact is not None and precision is not None:
        raise ValueError("give --precision or --artifact, not both")
    resolved = Manifest.resolve(artifact if artifact is not None else outdir, precision, verify_hash=verify_hash)
    if artifact is not None and resolved.manifest is not None and outdir is not None:
        if Path(outdir).resolve() != resolved.manifest.root.resolve():
            raise ValueError(f"--artifact {artifact} is not a file of the export {outdir}")
    return resolved


def float_input(manifest: Manifest, consumer: str) -> Preprocessing:
    """The preprocessing a consumer must reproduce; refuses a graph whose input is raw pixels (the
    manifest's ``inputs[0]``: dtype uint8 or ``normalized`` false) and a manifest without preprocessing."""
    spec = manifest.inputs[0] if manifest.inputs else None
    if raw_input(manifest):
        raise VerificationError(
            f"this export's graph takes raw {spec.dtype or 'uint8'} pixels (export --input uint8), but {consumer} hands "
            "a network float planes it has normalized itself: write the config from a float-input export")
    if manifest.preprocessing is None:
        raise VerificationError(f"{manifest.path_in(manifest.root)} records no preprocessing, which {consumer} must be "
                                "told; re-export with edgevit export")
    return manifest.preprocessing


def batch_size(manifest: Manifest, requested: int | None) -> int:
    """``requested`` checked against the manifest's batch profile (default: its OPT size)."""
    profile = manifest.batch
    if profile is None:
        raise VerificationError(f"{manifest.path_in(manifest.root)} records no batch range; re-export")
    size = profile.opt if requested is None else int(requested)
    if not profile.min <= size <= profile.max:
        raise ValueError(f"--batch-size {size} is outside the export's batch profile {profile.min}..{profile.max} "
                         "(MIN..MAX, edgevit export --batch); choose a size inside it")
    return size


@dataclass
class ConsumerData:
    """Model-size uint8 pixels (N, C, H, W), the reference outputs on them and where they came from."""

    pixels: np.ndarray
    reference: np.ndarray
    description: str

    @property
    def samples(self) -> int:
        return len(self.pixels)


def consumer_pixels(manifest: Manifest, data: str | None, samples: int | None) -> tuple[np.ndarray, str]:
    """Model-size raw pixels of ``data`` (default: the digits, for models they fit): resized and cropped by
    edgevit.data, then rounded to uint8 (clip 0..255) as a decoder delivers them."""
    from ..data import load_dataset
    from ..data.defaults import default_data

    spec = manifest.preprocessing
    source = default_data(data, spec.input_size, "--data")
    plain = replace(spec, mean=(0.0,) * spec.channels, std=(1.0,) * spec.channels)
    unit = load_dataset(source, plain, "test", model_labels=manifest.labels).images  # x / pixel_max
    unit = unit[: samples or DEFAULT_SAMPLES]
    return np.clip(np.rint(unit * spec.pixel_max), 0, 255).astype(np.uint8), f"{source} test split, {len(unit)} images"


def consumer_data(manifest: Manifest, data: str | None = None, samples: int | None = None,
                  verify_hash: bool = True, graph: Path | None = None) -> ConsumerData:
    """The consumer images and the reference: the export's fp32 ONNX graph (verified against PyTorch at
    export), or ``graph`` (an ONNX graph of the export), run by edgevit's runtime on edgevit's own
    preprocessing of the same pixels."""
    from ..runtime import runner_for_format
    from ..runtime.batching import run_batched

    pixels, description = consumer_pixels(manifest, data, samples)
    if graph is None:
        graph = Manifest.resolve(manifest.root, BASE_PRECISION, "onnx", verify_hash=verify_hash).path
    with runner_for_format("onnx", str(graph)) as runner:
        out = run_batched(runner, graph_feed(manifest, pixels), manifest.batch.max)
    return ConsumerData(pixels, next(iter(out.values())), description)


def raw_input(manifest: Manifest) -> bool:
    """Whether the export's graphs take raw pixels (:class:`~edgevit.input_contract.InputContract`:
    ``edgevit export --input uint8``), else edgevit's normalized float planes."""
    from ..input_contract import InputContract

    contract = InputContract.of(manifest)
    return contract is not None and contract.raw


def graph_feed(manifest: Manifest, pixels: np.ndarray) -> np.ndarray:
    """What the export's graphs take for the uint8 ``pixels`` (N, C, H, W): the pixels themselves in the
    input's dtype and layout for a raw-pixel graph, else edgevit's preprocessing of them (float32, NCHW)."""
    from ..data import normalize
    from ..input_contract import InputContract

    contract = InputContract.of(manifest)
    if contract is not None and contract.raw:
        return contract.to_layout(pixels.astype(contract.np_dtype, copy=False))
    return normalize(pixels, manifest.preprocessing)


def write_labels(directory: Path, labels, name: str = "labels.txt") -> Path:
    """``labels``, one a line in class order (the order of the output's scores), as ``directory/name``;
    ValueError for a label holding a line break (it would shift every later class by one)."""
    labels = [str(label) for label in labels]
    bad = [label for label in labels if "\n" in label or "\r" in label]
    if bad:
        raise ValueError(f"labels {bad[:3]} hold a line break; a label file has one label a line. "
                         "Rename them in the manifest's \"labels\"")
    path = Path(directory) / name
    path.write_text("".join(f"{label}\n" for label in labels))
    return path


DEPLOY_MARKER = ".edgevit-deploy"
"""The file every deploy output holds: ``--force`` replaces only a directory that carries it."""


def check_output(output, force: bool = False, source: Path | None = None) -> Path:
    """Refuse, before any slow work, an ``output`` directory that cannot be written: one that is or holds the
    export ``source`` or the current directory (replacing it would delete them), a file, an existing one
    without ``force``, and with ``force`` one that no ``edgevit deploy`` wrote (it holds no
    :data:`DEPLOY_MARKER`: replacing it could delete a user's files)."""
    output = check_output_dir(output, "-o")
    resolved = output.resolve()
    for inside, what in ((source, f"the export {source}"), (Path.cwd(), "the current directory")):
        if inside is not None and resolved in (inside.resolve(), *inside.resolve().parents):
            raise OutputPathError(f"-o {output} is or holds {what}, which replacing it would delete; "
                                  "choose a directory of its own, e.g. -o deploy/NAME")
    if output.exists() and not output.is_dir():
        raise OutputPathError(f"{output} is a file; -o names a directory")
    if output.exists() and any(output.iterdir()):
        if not force:
            raise ArtifactExistsError(f"{output} already exists; pass --force to replace it, or choose another -o")
        if not (output / DEPLOY_MARKER).is_file():
            raise ArtifactExistsError(f"{output} holds files edgevit deploy did not write (no {DEPLOY_MARKER} in it); "
                                      "--force replaces only a deploy output: remove it yourself or choose another -o")
    return output


@contextmanager
def staged_directory(output, force: bool = False, source: Path | None = None) -> Iterator[Path]:
    """A temporary directory beside ``output`` to write into; renamed onto ``output`` when the block
    succeeds (:func:`check_output` before and after: an existing ``output`` needs ``force`` and must be a
    deploy output), removed otherwise."""
    output = check_output(output, force, source)
    output.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(output.parent)
    work = temporary_dir(output.parent, output.name)
    try:
        yield work
        (work / ".edgevit-tmp").unlink(missing_ok=True)
        (work / DEPLOY_MARKER).write_text("written by edgevit deploy; --force may replace this directory\n")
        follow_umask_tree(work)
        if output.exists():
            check_output(output, force, source)  # what appeared while writing
            old = temporary_dir(output.parent, f"{output.name}-old")
            output.rename(old / output.name)
            work.rename(output)
            shutil.rmtree(old, ignore_errors=True)
        else:
            work.rename(output)
    finally:
        if work.exists():
            shutil.rmtree(work, ignore_errors=True)


def file_hashes(directory: Path) -> dict[str, str]:
    """path (relative to ``directory``) -> sha256 of the files written for a consumer."""
    return {p.relative_to(directory).as_posix(): sha256_file(p) for p in sorted(directory.rglob("*"))
            if p.is_file() and not p.name.startswith(".")}


def require_passed(checks, consumer: str, output) -> None:
    """VerificationError listing the failed ``checks`` of what was written for ``consumer`` (which is then
    not installed at ``output``)."""
    failed = "; ".join(c.describe() for c in checks if not c.passed)
    if failed:
        raise VerificationError(f"the {consumer} did not reproduce the reference ({failed}); nothing was written "
                                f"to {output}")


def record_certificate(manifest: Manifest, cert) -> Path:
    """Record ``cert`` in the export's manifest, under the directory's writer lock (a newer certificate of
    the same consumer, artifact and place replaces the older one)."""
    root = manifest.root
    with outdir_lock(root):
        current = Manifest.load(root)
        current.add_certificate(cert)
        return current.save(root, force=True)


__all__ = ["ConsumerData", "DEFAULT_SAMPLES", "DEPLOY_MARKER", "batch_size", "check_output", "consumer_data", "consumer_pixels",
           "file_hashes", "float_input", "require_passed", "graph_feed", "raw_input", "record_certificate", "resolve_target",
           "staged_directory", "write_labels"]
