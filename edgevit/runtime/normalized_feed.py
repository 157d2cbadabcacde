"""A runner of a raw-pixel graph that takes edgevit's normalized float NCHW batches.

``edgevit export --input uint8`` graphs take raw pixels (:mod:`edgevit.input_contract`). Every edgevit tool
(verify, bench, the accuracy gate, calibration) works on normalized float32 NCHW batches; the runner
:func:`edgevit.runtime.runner_for_format` hands out for such a graph (given the manifest's contract) is a
:class:`NormalizedFeedRunner`: it presents the float NCHW input and converts every batch with
:meth:`edgevit.input_contract.InputContract.feed` (denormalize, round, clip, cast, transpose) before the
graph runs. Applications that have the raw frames feed them to :meth:`edgevit.runtime.Engine.infer` directly.
"""

from __future__ import annotations

import numpy as np

from ..input_contract import InputContract
from .base import InputSpec, Runner


class NormalizedFeedRunner(Runner):
    """``inner`` (a runner of a raw-pixel graph, not yet active) fed normalized float NCHW batches."""

    def __init__(self, inner: Runner, contract: InputContract):
        super().__init__()
        self.inner = inner
        self.contract = contract
        self.name = inner.name

    def activate_impl(self) -> None:
        self.inner.activate()

    def deactivate_impl(self) -> None:
        self.inner.deactivate()

    def input_spec_impl(self) -> InputSpec:
        spec = self.inner.input_spec()
        name, (shape, _) = next(iter(spec.items()))
        nchw = tuple(shape) if self.contract.layout == "NCHW" else (shape[0], shape[3], shape[1], shape[2])
        return {name: (nchw, np.dtype(np.float32))}

    def infer_impl(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return self.inner.infer({k: self.contract.feed(v) for k, v in feeds.items()}, check=True)

    def output_names(self) -> list[str]:
        return self.inner.output_names()

    def profile(self):
        """The inner runner's batch profile, where it has one."""
        fn = getattr(self.inner, "profile", None)
        return fn() if callable(fn) else None


def normalized_feed(runner: Runner, contract: InputContract | None) -> Runner:
    """``runner`` fed normalized float NCHW batches: wrapped for a raw-pixel ``contract``, else itself."""
    return NormalizedFeedRunner(runner, contract) if contract is not None and contract.raw else runner


__all__ = ["NormalizedFeedRunner", "normalized_feed"]
