"""``Engine``: what a device application uses. One API over a TensorRT engine and an ONNX file.

    from edgevit.runtime import Engine

    with Engine.load("out/model.plan") as engine:      # or "out/model.onnx" (ONNX Runtime, CPU)
        top = engine.predict(["cat.png", "dog.png"], topk=5)
        top[0][0]    # {"label": "cat", "index": 3, "prob": 0.91}
        logits = engine.infer({"images": x})["logits"]

The manifest beside the file (``edgevit.json``) gives the labels, the preprocessing and the
batch range; a TensorRT engine's entry is checked against this machine (TensorRT version, GPU,
compute capability) before it loads. Needs numpy and Pillow, plus tensorrt + cuda-python for
engines or onnxruntime for ONNX files; never torch.

Thread safety: an Engine holds one runner (one TensorRT execution context and CUDA stream, or
one ORT session). Use one Engine per thread; do not call one Engine from several threads.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Sequence

import numpy as np

from ..errors import DataError, ManifestError
from ..manifest import MANIFEST_NAME, Manifest

ONNX_SUFFIXES = (".onnx",)


def softmax(logits: np.ndarray) -> np.ndarray:
    x = np.asarray(logits, dtype=np.float64)
    x = x - x.max(axis=-1, keepdims=True)
    e = np.exp(x)
    return e / e.sum(axis=-1, keepdims=True)


class Engine:
    """A loaded model (TensorRT engine or ONNX graph) with its manifest; see the module docstring."""

    def __init__(self, path: Path, runner, manifest: Manifest | None, artifact: dict | None, backend: str):
        self.path = path
        self.runner = runner
        self.manifest = manifest
        self.artifact = artifact or {}
        self.backend = backend
        self.last_latency_ms: float | None = None
        runner.activate()
        self._input = next(iter(runner.input_spec()))
        self._output = runner.output_names()[0]

    # ------------------------------------------------------------------ loading
    @classmethod
    def load(cls, path: str | os.PathLike, *, threads: int | None = None, providers=None,
             cuda_graph: bool = False, check_compat: bool = True) -> "Engine":
        """Open ``path``: ``*.onnx`` through ONNX Runtime (``providers``, ``threads``), anything
        else as a TensorRT plan (``cuda_graph``). The manifest beside it is read when present;
        TensorRT engines are checked against this machine unless ``check_compat=False``."""
        from . import get_runner

        path = Path(path)
        if not path.is_file():
            raise DataError(f"{path}: no such engine or ONNX file")
        manifest, artifact = _manifest_for(path)
        if path.suffix.lower() in ONNX_SUFFIXES:
            runner = get_runner("onnxruntime", path, providers=providers, threads=threads)
            backend = "onnxruntime"
        else:
            entry = artifact if (artifact and check_compat) else None
            runner = get_runner("tensorrt", path, manifest_entry=entry, cuda_graph=cuda_graph)
            backend = "tensorrt"
        return cls(path, runner, manifest, artifact, backend)

    def close(self) -> None:
        self.runner.deactivate()

    def __enter__(self) -> "Engine":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------------ facts
    @property
    def labels(self) -> list[str] | None:
        return list(self.manifest.labels) if self.manifest and self.manifest.labels else None

    @property
    def preprocessing(self):
        from ..data.preprocess import Preprocessing

        if self.manifest is None or not self.manifest.preprocessing:
            return None
        return Preprocessing.from_dict(self.manifest.preprocessing)

    @property
    def profile(self) -> tuple[int, int, int] | None:
        """(min, opt, max) batch this engine accepts (the TensorRT profile, or the ONNX graph's exported range)."""
        prof = self.artifact.get("profile")
        if prof:
            return int(prof["min"]), int(prof["opt"]), int(prof["max"])
        if hasattr(self.runner, "profile"):
            return self.runner.profile()
        b = self.manifest.batch if self.manifest else None
        if b and all(k in b for k in ("min", "opt", "max")):
            return int(b["min"]), int(b["opt"]), int(b["max"])
        return None

    def input_spec(self) -> dict:
        return self.runner.input_spec()

    # ------------------------------------------------------------------ running
    def infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Raw outputs for one batch of already preprocessed inputs (DataError outside the profile)."""
        from ..tensorrt_rules import check_batch_in_profile

        profile = self.profile
        if profile is not None and feeds:
            first = next(iter(feeds.values()))
            if isinstance(first, np.ndarray) and first.ndim > 0:
                check_batch_in_profile(int(first.shape[0]), profile, where=str(self.path.name))
        start = time.perf_counter()
        out = self.runner.infer(feeds)
        self.last_latency_ms = (time.perf_counter() - start) * 1e3
        return out

    def preprocess(self, images, preprocessed: bool = False) -> np.ndarray:
        """Images -> an (N, C, H, W) float32 batch as the manifest's preprocessing says.

        ``images``: an image file path, a PIL image, a numpy array of raw pixels ((C, H, W) or
        (N, C, H, W)), or a list of paths / PIL images / (C, H, W) arrays. With
        ``preprocessed=True`` numpy input is taken as model input already.
        """
        from ..data.preprocess import preprocess_array, preprocess_image

        spec = self.preprocessing
        if isinstance(images, np.ndarray):
            x = images[None] if images.ndim == 3 else images
            if x.ndim != 4:
                raise DataError(f"a numpy input must be (C, H, W) or (N, C, H, W), got shape {images.shape}")
            if preprocessed or spec is None:
                return np.ascontiguousarray(x, dtype=np.float32)
            return preprocess_array(x, spec)
        if isinstance(images, (str, os.PathLike)) or _is_pil(images):
            images = [images]
        if not isinstance(images, Sequence) or not images:
            raise DataError(f"predict takes a numpy array, an image path, a PIL image or a non-empty list of them, "
                            f"got {type(images).__name__}")
        if spec is None:
            raise ManifestError(f"{self.path}: no manifest with preprocessing beside it; give preprocessed numpy input")
        batch = []
        for item in images:
            if isinstance(item, np.ndarray):
                batch.append(self.preprocess(item, preprocessed)[0])
                continue
            if isinstance(item, (str, os.PathLike)):
                from PIL import Image

                try:
                    with Image.open(item) as im:
                        im.load()
                        item = im.copy()
                except (OSError, ValueError) as exc:
                    raise DataError(f"{item}: not a readable image ({exc})") from None
            batch.append(preprocess_image(item, spec))
        return np.stack(batch).astype(np.float32, copy=False)

    def predict(self, images, topk: int = 5, preprocessed: bool = False) -> list[list[dict]]:
        """Top-``topk`` ``{"label", "index", "prob"}`` per image, best first (softmax probabilities).

        Inputs larger than the profile's max batch are run in chunks of max batch.
        ``self.last_latency_ms`` is the summed inference time of the last call.
        """
        if not isinstance(topk, int) or topk < 1:
            raise ValueError(f"topk must be a positive integer, got {topk!r}")
        x = self.preprocess(images, preprocessed)
        hi = self.profile[2] if self.profile else len(x)
        logits, total = [], 0.0
        for i in range(0, len(x), hi):
            logits.append(self.infer({self._input: x[i:i + hi]})[self._output])
            total += self.last_latency_ms
        self.last_latency_ms = total
        probs = softmax(np.concatenate(logits))
        labels = self.labels
        k = min(topk, probs.shape[-1])
        results = []
        for row in probs:
            idx = np.argsort(-row, kind="stable")[:k]
            results.append([{"label": labels[i] if labels and i < len(labels) else str(int(i)), "index": int(i),
                             "prob": float(row[i])} for i in idx])
        return results

    def __repr__(self) -> str:
        return f"<Engine {self.path.name} backend={self.backend} profile={self.profile}>"


def _is_pil(obj) -> bool:
    return type(obj).__module__.startswith("PIL.")


def _manifest_for(path: Path) -> tuple[Manifest | None, dict | None]:
    if not (path.parent / MANIFEST_NAME).exists():
        return None, None
    manifest = Manifest.load(path.parent)
    found = manifest.find_artifacts(path=path.name)
    return manifest, (found[0].to_dict() if found else None)
