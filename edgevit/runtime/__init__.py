"""Runners: one interface over PyTorch, ONNX Runtime and TensorRT, looked up by name.

For applications, :class:`Engine` (``Engine.load(path).predict(images)``) wraps a runner with
the manifest's labels and preprocessing; it needs numpy and Pillow, never torch.

Which runner executes an artifact file is its format's row in :data:`edgevit.formats.ARTIFACT_FORMATS`
(:func:`runner_for_format`); a new backend is a runner registered here plus a format row there.

Backends are imported lazily, inside :func:`get_runner`, so ``import edgevit`` (and
``import edgevit.runtime``) imports neither onnxruntime nor tensorrt.

    from edgevit.runtime import get_runner
    with get_runner("onnxruntime", "out/model.onnx", threads=2) as r:
        out = r.infer({"images": x})

=============  =========================================  =======================================
name           source                                     options
=============  =========================================  =======================================
torch          checkpoint path, variant name, or a model  attention (math|sdpa), device, dtype
onnxruntime    .onnx path, bytes, or onnx.ModelProto      providers (cpu|cuda|tensorrt|list), threads
tensorrt       engine (.plan/.engine) path                manifest_entry (checked vs this GPU), cuda_graph,
                                                          check_compat, version_compatible, dla_core, vouched
=============  =========================================  =======================================
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from .base import InputSpec, Runner, concrete_shape, format_spec, validate_feeds
from .engine import Engine

if TYPE_CHECKING:
    from ..input_contract import InputContract
    from ..tensorrt.record import EngineRecord

# name -> "module:Class"; modules are imported only when a runner of that name is asked for.
_RUNNERS: dict[str, str] = {
    "torch": "edgevit.runtime.torch_runner:TorchRunner",
    "onnxruntime": "edgevit.runtime.onnxruntime_runner:OnnxRuntimeRunner",
    "tensorrt": "edgevit.runtime.tensorrt_runner:TensorRTRunner",
}
_ALIASES = {"ort": "onnxruntime", "pytorch": "torch", "trt": "tensorrt"}


def list_runners() -> list[str]:
    """Names accepted by :func:`get_runner`."""
    return sorted(_RUNNERS)


def register_runner(name: str, target: str) -> None:
    """Register a backend as ``"package.module:ClassName"`` (imported on first use)."""
    if name in _RUNNERS:
        raise ValueError(f"a runner named {name!r} is already registered; registered: {list_runners()}")
    if ":" not in target:
        raise ValueError(f"target must be 'package.module:ClassName', got {target!r}")
    _RUNNERS[name] = target


def unregister_runner(name: str) -> None:
    """Remove a backend :func:`register_runner` added (KeyError when none is registered as ``name``)."""
    del _RUNNERS[name]


def runner_class(name: str) -> type[Runner]:
    """The runner class of backend ``name``, importing its module now."""
    key = _ALIASES.get(name, name)
    if key not in _RUNNERS:
        raise ValueError(f"unknown runner {name!r}; allowed: {list_runners()}")
    module, _, cls = _RUNNERS[key].partition(":")
    return getattr(importlib.import_module(module), cls)


def get_runner(name: str, source, **options) -> Runner:
    """A runner of backend ``name`` ("torch", "onnxruntime", "tensorrt") for ``source``.

    The runner is not active yet: use it as ``with get_runner(...) as runner:``.
    Missing backends raise MissingDependencyError with the install command.
    """
    return runner_class(name)(source, **options)


def runner_for_format(format: str, source, *, providers=None, threads: int | None = None, qdq: str | None = None,
                      manifest_entry: EngineRecord | None = None, cuda_graph: bool = False,
                      contract: InputContract | None = None, plan_options: dict | None = None) -> Runner:
    """The runner that executes a file of artifact format ``format``: the runner its row of
    :data:`edgevit.formats.ARTIFACT_FORMATS` names, given the options of its kind (a graph: ONNX Runtime's
    ``providers``, ``threads`` and ``qdq``, each left to the runner's default when None; an engine: its
    ``manifest_entry``, checked against this machine, ``cuda_graph`` and ``plan_options``: the TensorRT runner's
    ``check_compat``, ``version_compatible``, ``dla_core`` and ``vouched``). Not yet active. With the
    manifest's input ``contract`` (:class:`edgevit.input_contract.InputContract`) of a raw-pixel graph, the
    runner takes normalized float NCHW batches and feeds the graph their pixels
    (:class:`edgevit.runtime.normalized_feed.NormalizedFeedRunner`)."""
    from .normalized_feed import normalized_feed

    from ..formats import artifact_format

    row = artifact_format(format)
    if row.graph:
        options = {"providers": providers, "threads": threads, **({"qdq": qdq} if qdq is not None else {})}
    else:
        options = {"manifest_entry": manifest_entry, "cuda_graph": cuda_graph, **(plan_options or {})}
    return normalized_feed(get_runner(row.runner, source, **options), contract)


__all__ = [
    "Engine", "InputSpec", "Runner", "concrete_shape", "format_spec", "get_runner", "list_runners",
    "register_runner", "runner_class", "runner_for_format", "unregister_runner", "validate_feeds",
]
