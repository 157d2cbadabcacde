"""The PyTorch runner: the reference every other artifact is compared with."""

from __future__ import annotations

import copy

import numpy as np
import torch

from ..errors import EdgeVitError
from ..formats import BASE_PRECISION, PRECISION_TABLE
from ..output_kinds import OUTPUT_KINDS, OutputKind
from .base import InputSpec, Runner

ATTENTIONS = ("math", "sdpa")
DEVICES = ("cpu", "cuda")
INPUT_NAME = "images"
OUTPUT_NAME = "logits"  # a headless model's output is "features" (its ``output_kind``), or "tokens" when asked


def torch_dtype(name: str) -> torch.dtype:
    """The torch dtype of precision ``name`` (its row's ``torch_dtype``)."""
    row = next((p for p in PRECISION_TABLE if p.name == name and p.torch_dtype), None)
    if row is None:
        known = [p.name for p in PRECISION_TABLE if p.torch_dtype]
        raise ValueError(f"dtype must be one of {known}, got {name!r}")
    return getattr(torch, row.torch_dtype)


def resolve_device(device: str) -> torch.device:
    """``cpu`` or ``cuda`` (``cuda:N`` too); a clear error when CUDA is asked for and absent."""
    kind = str(device).split(":")[0]
    if kind not in DEVICES:
        raise ValueError(f"device must be one of {list(DEVICES)} (or cuda:N), got {device!r}")
    if kind == "cuda" and not torch.cuda.is_available():
        raise EdgeVitError(
            f"device {device!r} was asked for but torch.cuda.is_available() is False "
            f"(torch {torch.__version__}); use --device cpu or install a CUDA build of PyTorch"
        )
    return torch.device(device)


class TorchRunner(Runner):
    """Run a :class:`~edgevit.models.VisionTransformer` in PyTorch.

    ``source``: a model instance (not modified: it is copied when attention, device or dtype
    must change), a checkpoint path or a variant name (via :func:`edgevit.load_model`).
    ``attention``: "math" or "sdpa" (None keeps the model's); ``device``: "cpu" or "cuda";
    ``dtype``: "fp32", "fp16" or "bf16" — the weights and activations run in that dtype, while
    feeds and outputs stay float32 so every runner has the same input spec.
    The output is named like the exported graph's: ``logits`` for a classifier, ``features`` for a
    headless model (``model.output_kind``); ``output="tokens"`` returns ``model.forward_tokens``
    (the patch tokens, what ``edgevit export --output-kind tokens`` writes) as ``tokens``.
    """

    def __init__(self, source, attention: str | None = None, device: str = "cpu", dtype: str = BASE_PRECISION,
                 arch: str | None = None, output: str | None = None):
        super().__init__()
        if attention is not None and attention not in ATTENTIONS:
            raise ValueError(f"attention must be one of {list(ATTENTIONS)}, got {attention!r}")
        if output is not None and (output not in OUTPUT_KINDS or OutputKind(output).own):
            raise ValueError(f"output must be None (the model's own) or 'tokens', got {output!r}")
        self.output = output
        self._output_name = output or OUTPUT_NAME
        self.source = source
        self.attention = attention
        self.device = resolve_device(device)
        self.dtype_name = dtype
        self.dtype = torch_dtype(dtype)
        self.arch = arch
        self.model = None
        attn = attention or "model's"
        self.name = f"torch[{attn} attention, {self.device.type}, {dtype}]"

    def activate_impl(self) -> None:
        from ..models import VisionTransformer, load_model

        if isinstance(self.source, VisionTransformer):
            model = self.source
            changes = (
                (self.attention is not None and self.attention != model.attn_impl)
                or next(model.parameters()).dtype != self.dtype
                or next(model.parameters()).device != self.device
                or model.training
            )
            if changes:
                model = copy.deepcopy(model)
        else:
            model = load_model(self.source, arch=self.arch)
        if self.attention is not None:
            model.set_attn_impl(self.attention)
        self.model = model.to(device=self.device, dtype=self.dtype).eval()
        self._output_name = self.output or self.model.output_kind
        cfg = self.model.config
        self._spec = {INPUT_NAME: (("batch", cfg.in_chans, cfg.img_size, cfg.img_size), np.dtype(np.float32))}

    def deactivate_impl(self) -> None:
        self.model = None

    def input_spec_impl(self) -> InputSpec:
        return dict(self._spec)

    def output_names(self) -> list[str]:
        return [self._output_name]

    @torch.inference_mode()
    def infer_impl(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        x = torch.from_numpy(np.ascontiguousarray(feeds[INPUT_NAME])).to(self.device, self.dtype)
        out = self.model(x) if self.output is None else self.model.forward_tokens(x)
        return {self._output_name: out.float().cpu().numpy()}
