"""What one bench row runs: a runner (PyTorch CPU, ONNX Runtime, TensorRT) or PyTorch on CUDA.

A target answers two questions: ``infer(images, batch_size)``, the outputs over all samples for
the accuracy columns, and ``timed_call(batch)``, a no-argument function that runs one batch and
may return per-phase milliseconds for :func:`edgevit.bench.measure.measure`.

Runner hook for phase timing: a runner may define ``timed_infer(feeds) -> (outputs, phases)``,
``phases`` a dict of milliseconds with any of the keys ``h2d``, ``compute``, ``d2h``. When it
exists, bench times calls through it and reports per-phase statistics (``phases_ms``); the
TensorRT runner implements it with CUDA events. PyTorch on CUDA is timed host to host and split
into the same phases with CUDA events (trtexec's split).
"""

from __future__ import annotations

import contextlib
from typing import Callable

import numpy as np

from ..runtime.batching import padded_chunks, run_batched, single_input
from ..runtime.normalized_feed import NormalizedFeedRunner


class Target:
    """One row's executable: ``infer(images) -> outputs`` and ``timed_call(batch) -> call``."""

    fixed_batch: int | None = None

    def open(self) -> None: ...

    def close(self) -> None: ...

    def infer(self, images: np.ndarray, batch_size: int) -> np.ndarray:
        raise NotImplementedError

    def timed_call(self, images: np.ndarray) -> Callable[[], dict | None]:
        raise NotImplementedError

    def device_memory_mb(self) -> float | None:
        """The device memory the opened artifact needs for its profile, in MB; None where it does not say."""
        return None


class RunnerTarget(Target):
    """A :class:`edgevit.runtime.Runner`; phases through its optional ``timed_infer`` hook."""

    def __init__(self, make_runner: Callable):
        self.make_runner = make_runner
        self.runner = None

    def open(self) -> None:
        self.runner = self.make_runner()
        self.runner.activate()
        self.input_name, shape = single_input(self.runner.input_spec(), self.runner.name)
        self.dtype = self.runner.input_spec()[self.input_name][1]
        self.fixed_batch = shape[0] if isinstance(shape[0], int) and shape[0] > 0 else None
        self.name = self.runner.name

    def close(self) -> None:
        if self.runner is not None:
            self.runner.deactivate()

    def infer(self, images: np.ndarray, batch_size: int) -> np.ndarray:
        out = run_batched(self.runner, images.astype(self.dtype, copy=False), batch_size)
        names = self.runner.output_names()
        return np.asarray(out[names[0]] if names and names[0] in out else next(iter(out.values())), np.float32)

    def timed_call(self, images: np.ndarray):
        feeds = {self.input_name: np.ascontiguousarray(images.astype(self.dtype, copy=False))}
        runner = self.runner
        if isinstance(runner, NormalizedFeedRunner):  # a raw-pixel graph: time it on its pixels, as an app feeds it
            feeds, runner = {k: runner.contract.feed(v) for k, v in feeds.items()}, runner.inner
        hook = getattr(runner, "timed_infer", None)
        if callable(hook):
            return lambda: hook(feeds)[1]
        return lambda: (runner.infer(feeds, check=False), None)[1]

    def device_memory_mb(self) -> float | None:
        """A TensorRT engine's device memory for its profile (:func:`edgevit.tensorrt.memory.engine_device_memory`)."""
        runner = getattr(self.runner, "inner", self.runner)  # a raw-pixel graph's wrapper
        engine = getattr(getattr(runner, "session", None), "engine", None)
        if engine is None:
            return None
        from ..tensorrt.memory import engine_device_memory

        found = engine_device_memory(engine)
        return None if found is None else round(found / 1e6, 3)


class TorchCudaTarget(Target):
    """PyTorch on CUDA: inputs copied from pinned host memory, CUDA events split the phases;
    ``graph=True`` captures the forward pass once per batch size and replays it."""

    def __init__(self, model, dtype: str, graph: bool, device: str = "cuda", tokens: bool = False):
        self.source_model = model
        self.dtype_name = dtype
        self.graph = graph
        self.tokens = tokens  # run model.forward_tokens (the patch tokens) instead of model.forward
        self.device = device
        self._graphs: dict = {}

    def open(self) -> None:
        import copy

        import torch

        from ..runtime.torch_runner import torch_dtype

        self.torch = torch
        self.dtype = torch_dtype(self.dtype_name)
        model = copy.deepcopy(self.source_model)
        model.set_attn_impl("sdpa")
        self.model = model.to(self.device, self.dtype).eval()
        self._call = self.model.forward_tokens if self.tokens else self.model
        self.stream = torch.cuda.current_stream()

    def close(self) -> None:
        self._graphs.clear()
        self.model = None
        with contextlib.suppress(Exception):
            self.torch.cuda.empty_cache()

    def _forward(self, batch: int):
        """A function running the model on a static device input of ``batch`` images."""
        torch = self.torch
        if not self.graph:
            return lambda x: self._call(x)
        if batch not in self._graphs:
            shape = (batch, *self._shape)
            static_x = torch.zeros(shape, device=self.device, dtype=self.dtype)
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side), torch.inference_mode():
                for _ in range(3):
                    self._call(static_x)
            torch.cuda.current_stream().wait_stream(side)
            g = torch.cuda.CUDAGraph()
            with torch.inference_mode(), torch.cuda.graph(g):
                static_y = self._call(static_x)
            self._graphs[batch] = (g, static_x, static_y)
        g, static_x, static_y = self._graphs[batch]

        def run(x):
            static_x.copy_(x)
            g.replay()
            return static_y

        return run

    def infer(self, images: np.ndarray, batch_size: int) -> np.ndarray:
        torch = self.torch
        self._shape = tuple(images.shape[1:])
        outs = []
        with torch.inference_mode():  # a captured graph takes exactly batch_size images: pad the last chunk
            for chunk, n in padded_chunks(images, batch_size if self.graph else 1, batch_size):
                fwd = self._forward(len(chunk))
                x = torch.from_numpy(chunk).to(self.device, self.dtype)
                outs.append(fwd(x)[:n].float().cpu().numpy())
        return np.concatenate(outs)

    def timed_call(self, images: np.ndarray):
        torch = self.torch
        self._shape = tuple(images.shape[1:])
        batch = len(images)
        host = torch.from_numpy(np.ascontiguousarray(images)).to(self.dtype).pin_memory()
        fwd = self._forward(batch)
        dev_x = torch.empty(host.shape, device=self.device, dtype=self.dtype)
        with torch.inference_mode():
            y = fwd(dev_x.copy_(host))
        out_host = torch.empty(y.shape, dtype=y.dtype).pin_memory()
        events = [torch.cuda.Event(enable_timing=True) for _ in range(4)]

        def call():
            with torch.inference_mode():
                events[0].record()
                dev_x.copy_(host, non_blocking=True)
                events[1].record()
                out = fwd(dev_x)
                events[2].record()
                out_host.copy_(out, non_blocking=True)
                events[3].record()
                events[3].synchronize()
            return {"h2d": events[0].elapsed_time(events[1]), "compute": events[1].elapsed_time(events[2]),
                    "d2h": events[2].elapsed_time(events[3])}

        return call


__all__ = ["RunnerTarget", "Target", "TorchCudaTarget"]
