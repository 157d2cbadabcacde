"""The TensorRT runner: a serialized engine (``.plan`` / ``.engine``) run through
:class:`edgevit.tensorrt.session.EngineSession` (``execute_async_v3`` on a CUDA stream, device
buffers reused between calls, optional CUDA graph capture).

Importing this module does not import tensorrt; constructing the runner does, and a machine
without TensorRT gets MissingDependencyError with the install advice.

Thread safety: a runner owns one execution context and one stream. Use one runner per thread
(each thread calls ``get_runner("tensorrt", path)``); never share an active runner between threads.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import OnnxModelError
from ..tensorrt.record import EngineRecord
from .base import InputSpec, Runner


class TensorRTRunner(Runner):
    """Run a TensorRT engine.

    ``manifest_entry``: the engine's record in ``edgevit.json`` (:class:`edgevit.tensorrt.record.EngineRecord`),
    or None for a plan without one. With ``check_compat`` its TensorRT version, GPU and compute capability are
    checked against this machine before loading (a mismatch raises EngineMismatchError saying to rebuild on
    the target); with or without the check, the record says how to load the plan (``version_compatible``:
    host code allowed; ``dla_core``). ``version_compatible`` / ``dla_core``: explicit load options, for a plan
    whose entry did not travel with it; they win over the record. Host code is allowed only for a plan someone
    vouched for: ``version_compatible=True`` or a record with ``vouched`` (its sha256 matched this file);
    see :func:`edgevit.tensorrt.session.plan_load_options`. ``cuda_graph``: capture the enqueue in a CUDA
    graph and replay it.
    """

    def __init__(self, source, manifest_entry: EngineRecord | None = None, cuda_graph: bool = False, *,
                 check_compat: bool = True, version_compatible: bool | None = None, dla_core: int | None = None,
                 vouched: bool = True):
        super().__init__()
        from ..tensorrt._bindings import import_tensorrt
        from ..tensorrt.session import plan_load_options

        import_tensorrt()
        path = Path(source)
        if not path.is_file():
            raise OnnxModelError(f"{path}: no such TensorRT engine file")
        self.source = path
        self.manifest_entry = manifest_entry
        self.cuda_graph = cuda_graph
        self.check_compat = check_compat
        # decided here, before any CUDA call: a bad option or an unvouched version-compatible entry fails early
        self.host_code_allowed, self.dla_core = plan_load_options(
            manifest_entry, version_compatible=version_compatible, dla_core=dla_core, vouched=vouched)
        self.session = None
        self.name = f"tensorrt[{path.name}]"

    def activate_impl(self) -> None:
        from ..tensorrt import session
        from ..tensorrt.rules import check_engine_compat

        if self.manifest_entry is not None and self.check_compat:
            check_engine_compat(self.manifest_entry, session.device_facts(), engine=str(self.source))
        self.session = session.EngineSession(
            self.source.read_bytes(), cuda_graph=self.cuda_graph,
            version_compatible=self.host_code_allowed, dla_core=self.dla_core)

    def deactivate_impl(self) -> None:
        if self.session is not None:
            self.session.close()
        self.session = None

    def input_spec_impl(self) -> InputSpec:
        s = self.session
        return {n: (tuple("batch" if (i == 0 and d < 0) else (None if d < 0 else int(d))
                          for i, d in enumerate(s.shapes[n])), s.dtypes[n]) for n in s.inputs}

    def profile(self) -> tuple[int, int, int]:
        """(min, opt, max) batch of the engine's optimization profile 0."""
        self._require_active("profile")
        lo, opt, hi = self.session.profiles[self.session.inputs[0]]
        return int(lo[0]), int(opt[0]), int(hi[0])

    def output_names(self) -> list[str]:
        self._require_active("output_names")
        return list(self.session.outputs)

    def infer_impl(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        from ..tensorrt.rules import check_batch_in_profile

        first = feeds[self.session.inputs[0]]
        check_batch_in_profile(int(first.shape[0]), self.profile(), where=self.name)
        return self.session.infer(feeds)
