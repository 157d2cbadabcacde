"""``Engine``: what a device application uses. One API over a TensorRT engine and an ONNX file.

    from edgevit.runtime import Engine

    with Engine.load("out/model.plan") as engine:      # or "out/model.onnx" (ONNX Runtime, CPU)
        top = engine.predict(["cat.png", "dog.png"], topk=5)
        top[0][0]    # {"label": "cat", "index": 3, "prob": 0.91}
        logits = engine.infer({"images": x})["logits"]   # x: what the graph takes (engine.input_contract)

An ``edgevit export --input uint8`` graph takes raw pixels and normalizes inside (the manifest's
``inputs[0]``; :class:`edgevit.input_contract.InputContract`): ``predict``/``embed`` read and resize images
as always and feed it their pixels; a device application that has decoded frames feeds them as they
come, ``engine.infer({"images": frames})`` with ``frames`` uint8 (N, H, W, C) (or (N, C, H, W) for
``--input-layout NCHW``) at the model's input size.

    with Engine.load("dino/model.onnx") as engine:     # a headless model: its graph outputs features
        vectors = engine.embed(["cat.png", "dog.png"])  # (2, D) float32; tokens exports: (2, patches, D)

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

from ..errors import DataError, ManifestError, OutputKindError
from ..input_contract import InputContract
from ..manifest import Artifact, Manifest
from ..output_kinds import OutputKind, kind_of_output_name
from ..tensorrt.record import EngineRecord
from .batching import batch_range, padded_chunks

def softmax(logits: np.ndarray) -> np.ndarray:
    x = np.asarray(logits, dtype=np.float64)
    x = x - x.max(axis=-1, keepdims=True)
    e = np.exp(x)
    return e / e.sum(axis=-1, keepdims=True)


class Engine:
    """A loaded model (TensorRT engine or ONNX graph) with its manifest; see the module docstring.

    Open one with :meth:`load`; the constructor takes an already built runner.

    Args:
        path: the engine or ONNX file.
        runner: a runner of :func:`edgevit.runtime.get_runner` for ``path``, not yet active
            (the Engine activates it and :meth:`close` releases it).
        manifest: the manifest of ``path``'s directory, or None (then no labels or preprocessing).
        artifact: ``path``'s entry in the manifest (:class:`edgevit.manifest.Artifact`), or None.
        backend: the name of the runner (``"onnxruntime"``, ``"tensorrt"``, ...).
    """

    def __init__(self, path: Path, runner, manifest: Manifest | None, artifact: Artifact | None, backend: str):
        self.path = path
        self.runner = runner
        self.manifest = manifest
        self.artifact = artifact
        self.backend = backend
        self.last_latency_ms: float | None = None
        runner.activate()
        self._input, (_, dtype) = next(iter(runner.input_spec().items()))
        self._output = runner.output_names()[0]
        contract = InputContract.of(manifest)
        # the manifest's raw-pixel contract, where the graph does take its dtype (a file the manifest does not
        # list may be another graph)
        self.input_contract = contract if contract is not None and np.dtype(dtype) == contract.np_dtype else None

    # ------------------------------------------------------------------ loading
    @classmethod
    def load(cls, path: str | os.PathLike, *, threads: int | None = None, providers=None,
             cuda_graph: bool = False, check_compat: bool = True, verify_hash: bool = True,
             version_compatible: bool | None = None, dla_core: int | None = None) -> "Engine":
        """Open ``path`` with the runner of its format (:data:`edgevit.formats.ARTIFACT_FORMATS`: ``*.onnx``
        through ONNX Runtime, ``*.plan`` / ``*.engine`` / ``*.trt`` through TensorRT). The manifest beside it
        (``edgevit.json``) is read when present.

        Args:
            path: an ``.onnx`` file or a TensorRT engine (``.plan``, ``.engine``, ...).
            threads: ONNX Runtime intra-op threads (None: ONNX Runtime's default).
            providers: ONNX Runtime execution providers: ``"cpu"`` (default), ``"cuda"``,
                ``"tensorrt"`` or a list of ORT provider names.
            cuda_graph: TensorRT only: capture the execution in a CUDA graph and replay it.
            check_compat: TensorRT only: check the engine's manifest entry (TensorRT version, GPU,
                compute capability) against this machine before it loads. Off or on, the entry still
                says how the plan loads (version-compatible: host code allowed; its DLA core).
            verify_hash: check a file the manifest lists against its recorded sha256. Off, the entry does
                not vouch for the file, and a version-compatible entry is refused unless
                ``version_compatible=True`` is given.
            version_compatible: TensorRT only: a plan built with ``--version-compatible`` whose manifest
                entry did not travel with it (a plan copied to the device alone). True lets TensorRT run the
                plan's embedded lean runtime as host code: pass it only for a file you trust. None: the
                entry's (host code only for an entry whose sha256 this file matched).
            dla_core: TensorRT only: the DLA core of a DLA plan without its entry (None: the entry's;
                TensorRT's runtime default is -1, no DLA core).

        Returns:
            Engine: active; use it as a context manager or call :meth:`close`.

        Raises:
            DataError: ``path`` is not a file.
            ValueError: its suffix names no artifact format.
            ArtifactIntegrityError: the file does not match the manifest's sha256.
            EngineMismatchError: the engine was built for another TensorRT, GPU or CUDA.
            TensorRTError: an entry says version-compatible but ``verify_hash=False``; or TensorRT cannot
                deserialize the plan (the message names ``version_compatible=True`` where host code was off).
            MissingDependencyError: onnxruntime, or tensorrt and cuda-python, are not installed.
        """
        from . import runner_for_format

        path = Path(path)
        if not path.is_file():
            raise DataError(f"{path}: no such engine or ONNX file")
        # no graph read here (a device may lack onnx, and ORT loads the file next): _check_rank checks outputs
        found = Manifest.resolve(path, verify_hash=verify_hash, listed=False, graph=False)
        # the record travels even without the compat check: it says how the plan loads. It vouches for the file
        # (host code) only where its sha256 was checked; keys at their defaults are left out
        plan = {**({} if check_compat else {"check_compat": False}), **(found.plan_options or {}),
                **({} if version_compatible is None else {"version_compatible": version_compatible}),
                **({} if dla_core is None else {"dla_core": dla_core})}
        runner = runner_for_format(found.format, path, providers=providers, threads=threads,
                                   manifest_entry=found.record, cuda_graph=cuda_graph, plan_options=plan)
        return cls(path, runner, found.manifest, found.entry, found.artifact_format.runner)

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
        """The manifest's preprocessing spec (:class:`edgevit.specs.Preprocessing`), or None."""
        return self.manifest.preprocessing if self.manifest else None

    @property
    def profile(self) -> tuple[int, int, int] | None:
        """(min, opt, max) batch this engine accepts (the TensorRT profile, or the ONNX graph's exported range)."""
        prof = EngineRecord.from_artifact(self.artifact).profile if self.artifact is not None else None
        if prof:
            return prof
        if hasattr(self.runner, "profile"):
            return self.runner.profile()
        return self.manifest.batch.bounds if self.manifest and self.manifest.batch else None

    @property
    def raw_input(self) -> bool:
        """Whether the graph takes raw pixels (``edgevit export --input uint8``): :meth:`infer` takes frames."""
        return self.input_contract is not None and self.input_contract.raw

    def input_spec(self) -> dict:
        return self.runner.input_spec()

    @property
    def output_kind(self) -> OutputKind:
        """The manifest's ``model.output``, else the kind the graph's output name says."""
        if self.manifest is not None and self.artifact is not None:
            return self.manifest.output_kind
        return kind_of_output_name(self._output)

    # ------------------------------------------------------------------ running
    def infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Raw outputs for one batch of what the graph takes (DataError outside the profile): normalized float32
        NCHW model input, or for a raw-pixel graph (``self.input_contract.raw``) the frames' pixels in its dtype
        and layout (DataError naming both for anything else)."""
        from ..tensorrt.rules import check_batch_in_profile

        if self.raw_input and isinstance(feeds, dict) and self._input in feeds:
            self.input_contract.check_feed(feeds[self._input], where=f"{self.path.name}: input {self._input!r}")

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

        ``images``: an image file path, a ``.npy``/``.npz`` array file, a PIL image, a numpy
        array ((C, H, W) or (N, C, H, W)), or a list of them. Image files and PIL images are read
        on their own bit depth (8-bit 0..255, 16-bit 0..65535) and rescaled to the model's
        ``pixel_max``, as every edgevit command reads them (:func:`edgevit.data.read_image`).
        Arrays are raw pixels on 0..pixel_max, or with ``preprocessed=True`` model input already.
        """
        from ..data.sources import ARRAY_EXTENSIONS, read_array_file

        if isinstance(images, np.ndarray):
            return self._prepare(images, preprocessed, "the numpy input")
        if isinstance(images, (str, os.PathLike)) or _is_pil(images):
            images = [images]
        if not isinstance(images, Sequence) or not images:
            raise DataError(f"predict takes a numpy array, an image or array file path, a PIL image or a non-empty "
                            f"list of them, got {type(images).__name__}")
        batch = []
        for item in images:
            if isinstance(item, np.ndarray):
                batch.append(self._prepare(item, preprocessed, "the numpy input"))
            elif isinstance(item, (str, os.PathLike)) and str(item).lower().endswith(ARRAY_EXTENSIONS):
                batch.append(self._prepare(read_array_file(item)[0], preprocessed, str(item), file=True))
            else:
                batch.append(self._read_image(item)[None])
        return np.concatenate(batch).astype(np.float32, copy=False)

    def _prepare(self, array: np.ndarray, preprocessed: bool, where: str, file: bool = False) -> np.ndarray:
        """A numpy array -> model input: raw pixels through the manifest's preprocessing (range-checked),
        model input (``preprocessed``) as it is. An array file may use every layout the data loaders accept."""
        from ..data.sources import prepare_array

        x = array if file else (array[None] if array.ndim == 3 else array)
        if not file and x.ndim != 4:
            raise DataError(f"{where}: a numpy input must be (C, H, W) or (N, C, H, W), got shape {array.shape}")
        spec = self.preprocessing
        if spec is None:  # nothing to preprocess with: the array must be model input
            x = x[None] if x.ndim == 3 else x
            return np.ascontiguousarray(x, dtype=np.float32)
        return prepare_array(x, spec, preprocessed=preprocessed, where=where)

    def _read_image(self, item) -> np.ndarray:
        from ..data.preprocess import preprocess_image, read_image

        spec = self.preprocessing
        if spec is None:
            raise ManifestError(f"{self.path}: no manifest with preprocessing beside it; give preprocessed numpy input")
        if isinstance(item, (str, os.PathLike)):
            return read_image(item, spec)
        return preprocess_image(item, spec)

    def _run(self, images, preprocessed: bool) -> np.ndarray:
        """The output of every image: in chunks of at most the profile's max batch, a last chunk
        below its min (or a static batch) padded by repeating the last image, the padding dropped.
        ``self.last_latency_ms`` becomes the summed inference time."""
        x = self.preprocess(images, preprocessed)
        lo, hi = batch_range(self.input_spec()[self._input][0], self.profile, len(x))
        outputs, total = [], 0.0
        for chunk, n in padded_chunks(x, lo, hi):
            feed = self.input_contract.feed(chunk) if self.raw_input else chunk
            outputs.append(self._check_rank(self.infer({self._input: feed})[self._output])[:n])
            total += self.last_latency_ms
        self.last_latency_ms = total
        return np.concatenate(outputs)

    def _check_rank(self, out: np.ndarray) -> np.ndarray:
        """``out`` when its rank is that of the model's output kind (:class:`edgevit.output_kinds.OutputKind`); else
        OutputKindError naming the file, the output and its rank: a graph edgevit did not export (a CNN's
        feature map, a detector's boxes) has nothing to rank or embed."""
        kind = self.output_kind
        rank, layout = kind.rank, kind.layout
        if np.ndim(out) != rank:
            raise OutputKindError(
                f"{self.path}: output {self._output!r} has rank {np.ndim(out)} (shape {tuple(np.shape(out))}); edgevit "
                f"expects {kind} of rank {rank}, {layout}, as `edgevit export` writes a ViT's. This is not a model "
                "edgevit exported: export the ViT with `edgevit export SOURCE -o OUTDIR` and run OUTDIR/model.onnx")
        return out

    def predict(self, images, topk: int = 5, preprocessed: bool = False) -> list[list[dict]]:
        """Top-``topk`` ``{"label", "index", "prob"}`` per image, best first (softmax probabilities).

        Any number of images runs (see :meth:`embed`); ``self.last_latency_ms`` is the summed
        inference time of the last call. A model that outputs features or tokens has no classes:
        OutputKindError, pointing to :meth:`embed`.
        """
        if not isinstance(topk, int) or topk < 1:
            raise ValueError(f"topk must be a positive integer, got {topk!r}")
        kind = self.output_kind
        if not kind.classes:
            raise OutputKindError(
                f"{self.path}: this model outputs {kind} ({self._output!r}), not class logits, so there is nothing "
                f"to rank; get its {kind} with Engine.embed(images) (CLI: `edgevit embed {self.path} IMAGE... "
                "-o embeddings.npy`)")
        probs = softmax(self._run(images, preprocessed))
        labels = self.labels
        k = min(topk, probs.shape[-1])
        results = []
        for row in probs:
            idx = np.argsort(-row, kind="stable")[:k]
            results.append([{"label": labels[i] if labels and i < len(labels) else str(int(i)), "index": int(i),
                             "prob": float(row[i])} for i in idx])
        return results

    def embed(self, images, preprocessed: bool = False) -> np.ndarray:
        """The embeddings of ``images`` (anything :meth:`preprocess` takes): float32 (N, D) for a
        headless model's ``features`` export, (N, patches, D) for a ``tokens`` export, in input order.

        Same preprocessing and batching as :meth:`predict`: any number of images runs, in chunks of
        at most the profile's max batch, a short last chunk padded by repeating the last image and
        the padding dropped; ``self.last_latency_ms`` is the summed inference time. A classifier's
        graph (output ``logits``) raises OutputKindError: use :meth:`predict`.
        """
        kind = self.output_kind
        if kind.classes:
            raise OutputKindError(
                f"{self.path}: this model outputs class logits, not embeddings; use Engine.predict (CLI: "
                "`edgevit predict`), or export a headless model (num_classes=0), or any model with "
                "`edgevit export --output-kind tokens`, for embeddings")
        return np.ascontiguousarray(self._run(images, preprocessed), dtype=np.float32)

    def __repr__(self) -> str:
        return f"<Engine {self.path.name} backend={self.backend} profile={self.profile}>"


def _is_pil(obj) -> bool:
    return type(obj).__module__.startswith("PIL.")
