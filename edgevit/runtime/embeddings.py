"""Embeddings of image files from a headless model's engine or ONNX graph (``edgevit embed``): one
array in input order, a row per input (its shape, L2 norm and latency), and the ``.npy`` file they
are saved as."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np

from .._io import atomic_path, check_writable


@dataclass
class Embeddings:
    """What :func:`embed_files` computed: ``array`` (float32 (inputs, dim), or (inputs, patches,
    dim) for a tokens export), ``kind`` (the output kind), and per input a row ``{"input", "shape",
    "norm", "latency_ms"}`` (``norm``: the L2 norm; for tokens, the mean per-token L2 norm)."""

    model: str
    backend: str
    kind: str
    array: np.ndarray
    rows: list[dict] = field(default_factory=list)

    def to_dict(self, file: str | None = None) -> dict:
        return {"ok": True, "model": self.model, "backend": self.backend, "output": self.kind,
                "shape": list(self.array.shape), "file": file, "embeddings": self.rows}

    def save(self, path: str | os.PathLike, force: bool = False) -> None:
        """Write ``array`` to the ``.npy`` file ``path`` (atomically; an existing file only with ``force``)."""
        check_embeddings_file(path, force)
        with atomic_path(path, force=force) as tmp, open(tmp, "wb") as handle:
            np.save(handle, self.array)


def check_embeddings_file(path: str | os.PathLike, force: bool = False) -> None:
    """Refuse ``path`` as an embeddings file unless it is a writable ``.npy`` name (ValueError,
    ArtifactExistsError without ``force``): called before a run, so nothing runs in vain."""
    if not str(path).endswith(".npy"):
        raise ValueError(f"-o/--output {path}: embeddings are written as a numpy array; give a .npy file name")
    check_writable(path, force)


def embed_files(model: str | os.PathLike, images, *, preprocessed: bool = False, threads: int | None = None,
                verify_hash: bool = True) -> Embeddings:
    """Load ``model`` (:meth:`edgevit.runtime.Engine.load`) and embed each of ``images`` (files or
    arrays; a .npy/.npz batch gives one row per sample, named ``file[i]``)."""
    from .engine import Engine

    with Engine.load(model, threads=threads, verify_hash=verify_hash) as engine:
        rows, arrays = [], []
        for item in images:
            emb = engine.embed(item, preprocessed=preprocessed)
            for i, vector in enumerate(emb):
                rows.append({"input": item if len(emb) == 1 else f"{item}[{i}]", "shape": list(vector.shape),
                             "norm": float(np.linalg.norm(vector, axis=-1).mean()),
                             "latency_ms": engine.last_latency_ms / len(emb)})
            arrays.append(emb)
        return Embeddings(str(model), engine.backend, engine.output_kind, np.concatenate(arrays), rows)


__all__ = ["Embeddings", "check_embeddings_file", "embed_files"]
