"""The one runner interface (modelled on Polygraphy's runners) and input validation.

A runner is a context manager: ``with runner:`` loads the model (activates), leaving the
block releases it. Inside, ``runner.input_spec()`` says what ``runner.infer(feeds)`` takes,
and ``infer`` returns ``{output name: ndarray}``::

    with get_runner("onnxruntime", "out/model.onnx") as runner:
        spec = runner.input_spec()        # {"images": (("batch", 3, 224, 224), dtype('float32'))}
        logits = runner.infer({"images": x})["logits"]

Every backend validates feeds the same way (:func:`validate_feeds`), so a wrong input name,
shape or dtype, or a NaN/Inf value, gives the same :class:`~edgevit.errors.DataError` that
names the expected spec, whichever backend runs.
"""

from __future__ import annotations

from typing import Mapping, Sequence, Union

import numpy as np

from ..errors import DataError, EdgeVitError

Dim = Union[int, str, None]
"""One dimension of an input spec: an int when fixed, a name (str) or None when dynamic."""

InputSpec = dict  # dict[str, tuple[tuple[Dim, ...], np.dtype]]


class Runner:
    """Base class of every backend. Subclasses implement the four ``*_impl`` methods.

    ``name`` identifies the runner in reports ("onnxruntime[CPUExecutionProvider]", ...).
    """

    name: str = "runner"

    def __init__(self) -> None:
        self.is_active = False

    # -- context manager --------------------------------------------------------------
    def __enter__(self) -> "Runner":
        self.activate()
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.deactivate()

    def activate(self) -> None:
        if self.is_active:
            raise EdgeVitError(f"{self.name} is already active; a runner can be entered once at a time")
        self.activate_impl()
        self.is_active = True

    def deactivate(self) -> None:
        if self.is_active:
            try:
                self.deactivate_impl()
            finally:
                self.is_active = False

    # -- what subclasses implement -------------------------------------------------------
    def activate_impl(self) -> None:
        raise NotImplementedError

    def deactivate_impl(self) -> None:
        raise NotImplementedError

    def input_spec_impl(self) -> InputSpec:
        raise NotImplementedError

    def infer_impl(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def output_names(self) -> list[str]:
        """Names of the outputs ``infer`` returns (after activation)."""
        raise NotImplementedError

    # -- public API -----------------------------------------------------------------------
    def _require_active(self, what: str) -> None:
        if not self.is_active:
            raise EdgeVitError(f"{self.name}: call {what}() inside `with runner:` (the runner is not active)")

    def input_spec(self) -> InputSpec:
        """``{input name: (shape, numpy dtype)}``; dynamic dims are a name (str) or None."""
        self._require_active("input_spec")
        return self.input_spec_impl()

    def infer(self, feeds: Mapping[str, np.ndarray], check: bool = True) -> dict[str, np.ndarray]:
        """Run one batch. ``feeds`` maps every input name to an array matching :meth:`input_spec`.

        With ``check`` (the default) feeds are validated first: names, rank, fixed dims,
        dtype, and finiteness (NaN/Inf raise DataError).
        """
        self._require_active("infer")
        if check:
            validate_feeds(feeds, self.input_spec_impl(), runner=self.name)
        return self.infer_impl(dict(feeds))

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name} active={self.is_active}>"


def format_spec(spec: InputSpec) -> str:
    """``images: float32[batch, 3, 224, 224]`` for every input, comma-separated."""
    parts = []
    for name, (shape, dtype) in spec.items():
        dims = ", ".join("?" if d is None else str(d) for d in shape)
        parts.append(f"{name}: {np.dtype(dtype).name}[{dims}]")
    return "; ".join(parts)


def validate_feeds(feeds: Mapping[str, np.ndarray], spec: InputSpec, runner: str = "runner") -> None:
    """Raise DataError unless ``feeds`` matches ``spec`` exactly and holds only finite values.

    Every message names the expected spec, so the fix is in the message.
    """
    expected = format_spec(spec)
    if not isinstance(feeds, Mapping):
        raise DataError(f"{runner}: feeds must be a dict of input name -> numpy array; expected {expected}")
    missing = [n for n in spec if n not in feeds]
    unexpected = [n for n in feeds if n not in spec]
    if missing or unexpected:
        detail = []
        if missing:
            detail.append(f"missing input(s) {missing}")
        if unexpected:
            detail.append(f"unexpected input(s) {unexpected}")
        raise DataError(f"{runner}: {'; '.join(detail)}; the model expects {expected}")
    for name, (shape, dtype) in spec.items():
        value = feeds[name]
        if not isinstance(value, np.ndarray):
            raise DataError(
                f"{runner}: input {name!r} must be a numpy array, got {type(value).__name__}; expected {expected}"
            )
        if value.ndim != len(shape) or any(
            isinstance(d, int) and d != v for d, v in zip(shape, value.shape)
        ):
            raise DataError(
                f"{runner}: input {name!r} has shape {tuple(value.shape)}, expected "
                f"[{', '.join('?' if d is None else str(d) for d in shape)}] ({expected})"
            )
        if value.dtype != np.dtype(dtype):
            raise DataError(
                f"{runner}: input {name!r} has dtype {value.dtype}, expected {np.dtype(dtype).name} "
                f"({expected}); convert with x.astype(np.{np.dtype(dtype).name})"
            )
        if value.dtype.kind == "f" or value.dtype.name in ("bfloat16", "float8_e4m3fn", "float8_e5m2"):
            finite = np.isfinite(value.astype(np.float32, copy=False))
            if not finite.all():
                n_nan = int(np.isnan(value.astype(np.float32, copy=False)).sum())
                n_inf = int(value.size - finite.sum() - n_nan)
                raise DataError(
                    f"{runner}: input {name!r} holds {n_nan} NaN and {n_inf} Inf value(s) out of {value.size}; "
                    "inputs must be finite (check the data and its preprocessing)"
                )


def concrete_shape(shape: Sequence[Dim], batch: int) -> tuple[int, ...]:
    """An input spec's shape with its first dynamic dim set to ``batch`` (others must be fixed)."""
    out = []
    for i, d in enumerate(shape):
        if isinstance(d, int) and d > 0:
            out.append(d)
        elif i == 0:
            out.append(batch)
        else:
            raise DataError(f"input dim {i} is dynamic ({d!r}); only the batch dim (0) may be dynamic")
    return tuple(out)
