"""Run any number of samples through a model that takes a limited batch range.

A model takes batches of ``lo..hi`` samples: a fixed batch dim N means ``N..N``; a TensorRT
optimization profile (or an export's batch range) ``min..max``. :func:`padded_chunks` splits
the samples into chunks of at most ``hi`` and pads a chunk shorter than ``lo`` by repeating
its last sample; callers keep the first ``n`` rows of each output. :func:`run_batched` does
this for an active runner. Used by ``verify``, ``bench`` and ``Engine.predict``; numpy only.
"""

from __future__ import annotations

from typing import Iterator, Sequence

import numpy as np

from ..errors import DataError

# One attention-score tensor (heads x tokens^2 float32 per image) of a batch stays within this many bytes where
# edgevit picks the batch itself (export's checks, the precision gates, calibration, verify): eager math attention
# and ONNX Runtime each hold a few such tensors at once. SAM ViT-B at 1024 px (4096 tokens, 12 heads: 0.8 GB an
# image) then runs 2 images at a time; a ViT-B/16 at 224 px (3.7 MB an image) 580.
SCORE_BYTES = 2 * 2**30


def score_bounded_batch(batch: int, score_bytes: int | None) -> int:
    """``batch``, or fewer (at least 1) where the attention scores of that many images, ``score_bytes`` each
    (``ViTConfig.score_bytes``; None: unknown), would pass :data:`SCORE_BYTES`."""
    return max(1, min(int(batch), SCORE_BYTES // score_bytes)) if score_bytes else int(batch)


def single_input(spec: dict, who: str) -> tuple[str, tuple]:
    """(name, shape) of the one input of ``spec``; DataError for a multi-input model."""
    if len(spec) != 1:
        from .base import format_spec

        raise DataError(f"{who} has {len(spec)} inputs ({format_spec(spec)}); edgevit runs one image input")
    name, (shape, _dtype) = next(iter(spec.items()))
    return name, tuple(shape)


def in_input_dtype(images: np.ndarray, runner) -> np.ndarray:
    """Float ``images`` in the float dtype the runner's one input takes (a graph quantized with ``--io-dtype fp16``
    takes float16); anything else as it is (the runner's own check names a mismatch)."""
    _, (_, dtype) = next(iter(runner.input_spec().items()))
    dtype = np.dtype(dtype)
    return images.astype(dtype) if images.dtype.kind == "f" and dtype.kind == "f" and dtype != images.dtype else images


def batch_range(shape: Sequence, profile: Sequence[int] | None, batch_size: int) -> tuple[int, int]:
    """(smallest, largest) batch to run: a fixed batch dim wins, then ``profile`` (min, opt, max)
    capped at ``batch_size``, else 1..``batch_size``."""
    first = shape[0] if shape else None
    if isinstance(first, int) and first > 0:
        return first, first
    lo, hi = (int(profile[0]), int(profile[-1])) if profile else (1, batch_size)
    return lo, max(lo, min(hi, batch_size))


def padded_chunks(images: np.ndarray, lo: int, hi: int) -> Iterator[tuple[np.ndarray, int]]:
    """``(chunk, n)`` for consecutive chunks of at most ``hi`` samples; a chunk of fewer than
    ``lo`` samples is padded to ``lo`` by repeating its last one. ``n`` counts the real ones."""
    if not 1 <= lo <= hi:
        raise ValueError(f"batch range must satisfy 1 <= min <= max, got {lo}..{hi}")
    for start in range(0, len(images), hi):
        chunk = images[start:start + hi]
        n = len(chunk)
        if n < lo:
            chunk = np.concatenate([chunk, np.repeat(chunk[-1:], lo - n, axis=0)])
        yield np.ascontiguousarray(chunk), n


def run_batched(runner, images: np.ndarray, batch_size: int, outputs: list[str] | None = None,
                profile: Sequence[int] | None = None) -> dict[str, np.ndarray]:
    """Run ``images`` through an active runner in chunks of at most ``batch_size``, within the
    model's batch range (its fixed batch dim, ``profile``, or the runner's own ``profile()``);
    padded rows are dropped from the outputs."""
    name, shape = single_input(runner.input_spec(), getattr(runner, "name", type(runner).__name__))
    if profile is None and callable(getattr(runner, "profile", None)):
        profile = runner.profile()
    lo, hi = batch_range(shape, profile, batch_size)
    collected: dict[str, list] = {}
    for chunk, n in padded_chunks(images, lo, hi):
        out = runner.infer({name: chunk})
        for key, value in out.items():
            if outputs is None or key in outputs:
                collected.setdefault(key, []).append(np.asarray(value)[:n])
    return {k: np.concatenate(v) for k, v in collected.items()}


__all__ = ["SCORE_BYTES", "batch_range", "padded_chunks", "run_batched", "score_bounded_batch", "single_input",
           "in_input_dtype"]
