"""The input contract of an exported graph: what its input takes and how edgevit feeds it (numpy only).

An export's manifest says it in ``inputs[0]`` (a :class:`~edgevit.specs.TensorSpec`) and
``preprocessing`` (a :class:`~edgevit.specs.Preprocessing`): either edgevit's normalized float32 NCHW
batch (``"normalized": true``, the default export), or raw pixels (``edgevit export --input uint8``:
``"dtype": "uint8"``, ``"layout": "NHWC"`` or ``"NCHW"``, ``"normalized": false``), which the graph
casts, scales by ``1/pixel_max``, normalizes by ``mean``/``std`` and transposes itself.

:class:`InputContract` is the one place that converts between the two. Every edgevit tool works on
normalized float NCHW batches (:mod:`edgevit.data`); where a graph takes raw pixels, :meth:`InputContract.feed`
turns such a batch into the graph's feed exactly as a decoder would deliver the pixels (denormalize,
round, clip to the dtype's range, cast, transpose), and :meth:`InputContract.represented` gives the
normalized batch that feed stands for, so that a reference (PyTorch, or the fp32 graph) is fed the same
pixels and a comparison measures the graph, not the rounding.

    contract = InputContract.of(manifest)
    feed = contract.feed(x)              # uint8 NHWC for a raw-pixel graph; x itself for a float one
    reference_input = contract.represented(x)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .errors import DataError, ManifestError
from .specs import Preprocessing, TensorSpec

FLOAT_INPUT = "float"
RAW_DTYPES = {"uint8": np.uint8}
"""Raw-pixel input dtypes a graph may take (``edgevit export --input``): name -> numpy dtype."""
INPUT_KINDS = (FLOAT_INPUT, *RAW_DTYPES)
LAYOUTS = ("NHWC", "NCHW")
DEFAULT_RAW_LAYOUT = "NHWC"  # what decoders and cameras give


@dataclass(frozen=True)
class InputContract:
    """What a graph's (first) input takes: ``dtype`` ("float32", or a raw dtype of :data:`RAW_DTYPES`),
    ``layout`` ("NCHW"/"NHWC"), whether the values are ``normalized`` model input, and the
    ``preprocessing`` whose pixel_max/mean/std a raw-pixel graph applies inside."""

    name: str
    dtype: str = "float32"
    layout: str = "NCHW"
    normalized: bool = True
    preprocessing: Preprocessing | None = None

    def __post_init__(self) -> None:
        if self.layout not in LAYOUTS:
            raise ManifestError(f'"inputs[0].layout" must be one of {list(LAYOUTS)}, got {self.layout!r}')
        if self.raw:
            if self.dtype not in RAW_DTYPES:
                raise ManifestError(f'"inputs[0].dtype" {self.dtype!r}: a raw-pixel input ("normalized": false) '
                                    f"must be one of {list(RAW_DTYPES)}")
            if self.preprocessing is None:
                raise ManifestError('"inputs[0]" takes raw pixels ("normalized": false) but the manifest has no '
                                    '"preprocessing" saying what the graph applies (pixel_max, mean, std)')

    # ------------------------------------------------------------------ reading
    @classmethod
    def from_spec(cls, spec: TensorSpec, preprocessing: Preprocessing | None) -> "InputContract":
        """The contract of a manifest's ``inputs[0]`` and ``preprocessing`` (a spec without ``normalized``
        or ``dtype``, as manifests before raw-pixel graphs were written, is normalized float32 NCHW)."""
        raw = spec.normalized is False
        return cls(spec.name, spec.dtype or ("uint8" if raw else "float32"), spec.layout or "NCHW", not raw,
                   preprocessing)

    @classmethod
    def of(cls, manifest: Any) -> "InputContract | None":
        """The contract of ``manifest`` (a :class:`~edgevit.manifest.Manifest`), or None without one or
        without inputs (then callers feed normalized float NCHW, as before)."""
        inputs = getattr(manifest, "inputs", None) if manifest is not None else None
        if not inputs:
            return None
        return cls.from_spec(inputs[0], getattr(manifest, "preprocessing", None))

    @property
    def raw(self) -> bool:
        """Whether the graph takes raw pixels (it normalizes inside)."""
        return not self.normalized

    @property
    def np_dtype(self) -> np.dtype:
        return np.dtype(RAW_DTYPES[self.dtype]) if self.raw else np.dtype(np.float32)

    def describe(self) -> str:
        """``uint8 NHWC raw pixels 0..255 (the graph scales by 1/255 and normalizes)`` or ``float32 NCHW normalized``."""
        if not self.raw:
            return f"{self.dtype} {self.layout} normalized"
        p = self.preprocessing
        return (f"{self.dtype} {self.layout} raw pixels 0..{p.pixel_max:g} (the graph scales by 1/{p.pixel_max:g}, "
                f"normalizes by mean {list(p.mean)} / std {list(p.std)}, transposes to NCHW)")

    def tensor_spec(self, batch_dim, dynamic: bool, chw: tuple[int, int, int]) -> TensorSpec:
        """The manifest's ``inputs[0]`` for this contract at ``batch_dim``, for images of ``chw`` (C, H, W)."""
        c, h, w = chw
        dims = [batch_dim, h, w, c] if self.layout == "NHWC" else [batch_dim, c, h, w]
        return TensorSpec(self.name, tuple(dims), self.dtype, {"0": "batch"} if dynamic else {}, self.layout,
                          self.normalized)

    def to_dict(self) -> dict:
        return {"name": self.name, "dtype": self.dtype, "layout": self.layout, "normalized": self.normalized}

    # ------------------------------------------------------------------ converting
    def _stats(self, ndim: int = 4) -> tuple[np.ndarray, np.ndarray, np.float32]:
        p = self.preprocessing
        shape = (1, -1, 1, 1)[-ndim:] if ndim >= 3 else (-1,)
        return (np.asarray(p.mean, np.float32).reshape(shape), np.asarray(p.std, np.float32).reshape(shape),
                np.float32(p.pixel_max))

    def _check_batch(self, x: np.ndarray, what: str) -> np.ndarray:
        x = np.asarray(x)
        channels = self.preprocessing.channels if self.preprocessing is not None else None
        if x.ndim != 4 or (channels is not None and x.shape[1] != channels):
            raise DataError(f"{what}: expected a normalized float (N, C, H, W) batch"
                            f"{f' with C={channels}' if channels else ''}, got shape {tuple(x.shape)}")
        return x

    def pixels(self, x: np.ndarray) -> np.ndarray:
        """Normalized float NCHW ``x`` -> the raw pixels it stands for, NCHW, as a decoder delivers them:
        ``round((x * std + mean) * pixel_max)`` clipped to the dtype's range, in the raw dtype."""
        x = self._check_batch(x, "InputContract.pixels")
        mean, std, pixel_max = self._stats()
        info = np.iinfo(self.np_dtype)
        values = np.rint((x.astype(np.float32) * std + mean) * pixel_max)
        return np.clip(values, info.min, info.max).astype(self.np_dtype)

    def normalize(self, pixels_nchw: np.ndarray) -> np.ndarray:
        """Raw NCHW pixels -> the normalized float32 batch the graph computes inside (edgevit's own
        :func:`edgevit.data.preprocess.normalize` arithmetic: ``(x / pixel_max - mean) / std``)."""
        mean, std, pixel_max = self._stats()
        return ((pixels_nchw.astype(np.float32) / pixel_max - mean) / std).astype(np.float32, copy=False)

    def to_layout(self, pixels_nchw: np.ndarray) -> np.ndarray:
        """NCHW pixels in this contract's layout (contiguous)."""
        out = pixels_nchw.transpose(0, 2, 3, 1) if self.layout == "NHWC" else pixels_nchw
        return np.ascontiguousarray(out)

    def from_layout(self, feed: np.ndarray) -> np.ndarray:
        """A feed in this contract's layout -> NCHW."""
        return np.ascontiguousarray(feed.transpose(0, 3, 1, 2) if self.layout == "NHWC" else feed)

    def feed(self, x: np.ndarray) -> np.ndarray:
        """edgevit's normalized float NCHW batch ``x`` -> what the graph takes: ``x`` itself (float32) for a
        float graph; for a raw-pixel graph the rounded, clipped pixels in its dtype and layout."""
        if not self.raw:
            return np.ascontiguousarray(x, dtype=np.float32)
        return self.to_layout(self.pixels(x))

    def represented(self, x: np.ndarray) -> np.ndarray:
        """The normalized float NCHW batch that :meth:`feed` of ``x`` stands for (``x`` for a float graph):
        what a reference is fed so that it sees the same pixels as the graph."""
        if not self.raw:
            return np.ascontiguousarray(x, dtype=np.float32)
        return self.normalize(self.pixels(x))

    def reference_input(self, feed: np.ndarray) -> np.ndarray:
        """A raw feed (this contract's dtype and layout) -> the normalized float NCHW batch the graph computes."""
        self.check_feed(feed)
        return self.normalize(self.from_layout(feed)) if self.raw else feed

    def check_feed(self, feed: Any, where: str = "input") -> None:
        """DataError naming what the graph takes unless ``feed`` is an array of its dtype and layout."""
        if not isinstance(feed, np.ndarray):
            raise DataError(f"{where}: expected a numpy array ({self.describe()}), got {type(feed).__name__}")
        if feed.dtype != self.np_dtype:
            hint = (" (raw pixels as a decoder gives them); to feed edgevit's normalized float batches use "
                    "Engine.predict/embed, or InputContract.feed(x)" if self.raw else
                    "; raw pixels go through Engine.predict/embed or edgevit.data's preprocessing first")
            raise DataError(f"{where}: this graph takes {self.describe()}, got dtype {feed.dtype}; give "
                            f"{self.np_dtype.name}{hint}")
        if self.preprocessing is not None and feed.ndim == 4:
            c, h, w = self.preprocessing.input_size
            want = (h, w, c) if self.layout == "NHWC" else (c, h, w)
            if tuple(feed.shape[1:]) != want:
                other = "NCHW" if self.layout == "NHWC" else "NHWC"
                raise DataError(f"{where}: this graph takes {self.layout} input of shape [batch, "
                                f"{', '.join(map(str, want))}], got {tuple(feed.shape)}"
                                + (f" (that is {other}: transpose it, or export with --input-layout {other})"
                                   if sorted(feed.shape[1:]) == sorted(want) else ""))


def contract_of(manifest: Any) -> InputContract | None:
    """:meth:`InputContract.of`, but None for a float graph: the contract only where a conversion is needed."""
    contract = InputContract.of(manifest)
    return contract if contract is not None and contract.raw else None


def prefix_nodes(proto, input_name: str | None = None) -> list[str]:
    """The names of a raw-pixel graph's preprocessing nodes: the elementwise/transpose nodes reached from the
    graph input before the first node of another kind (the patch embedding's Conv/MatMul). Precision
    builders keep them float32 (a cast to fp16 there would round the normalization)."""
    name = input_name or proto.graph.input[0].name
    allowed = {"Cast", "Div", "Sub", "Mul", "Add", "Transpose", "Identity", "Reshape", "Unsqueeze"}
    reached, found, changed = {name}, [], True
    while changed:
        changed = False
        for node in proto.graph.node:
            if node.name in found or node.op_type not in allowed:
                continue
            if any(i in reached for i in node.input):
                found.append(node.name)
                reached.update(node.output)
                changed = True
    return found


__all__ = ["DEFAULT_RAW_LAYOUT", "FLOAT_INPUT", "INPUT_KINDS", "InputContract", "LAYOUTS", "RAW_DTYPES",
           "contract_of", "prefix_nodes"]
