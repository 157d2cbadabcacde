"""The precision recipe: everything that decides one precision graph, and which nodes it quantizes.

A :class:`PrecisionRecipe` is recorded whole in the manifest (``recipe``). For int8/fp8 it says
where Q/DQ nodes go, the ViT recipe (docs/design.md §5.2): the inputs of the Linear layers (qkv, proj,
fc1, fc2) only; LayerNorm, Softmax, GELU, the residual Adds and the head stay in higher
precision; ``quantize_patch_embed`` adds the patch-embedding Conv, ``quantize_attention`` the
two attention MatMuls, ``exclude`` (fnmatch patterns on node names such as ``blocks.11.mlp.*``)
keeps layers out, and ``base`` is the precision of everything not quantized. Node names are the
module paths :func:`edgevit.export.names.name_vit_nodes` gave at export.
"""

from __future__ import annotations

import fnmatch
from dataclasses import asdict, dataclass, replace

from ..formats import (BASE_PRECISION, CAST, EXPORTED, FLOAT_PRECISIONS, FP16, QDQ, QDQ_BASES, QUANTIZED,
                       precision)

# Softmax in fp32 is the conservative choice, not a measured need: on the trained digits-tiny
# (85 epochs, digits test split, ORT CPU) the fp16 graph's logits differ from fp32 by max abs
# 4.628e-3 with Softmax in fp32 and 4.628e-3 with Softmax in fp16, top-1 agreement 1.0 both ways.
# It is kept because 4-token digits attention says little about 197-token ViT-B rows, and it
# costs two casts per block; drop it with PrecisionRecipe(keep_fp32=("LayerNormalization",)).
KEEP_FP32 = ("LayerNormalization", "Softmax")
# the block Linears; a split SwiGLU MLP (EVA-02 style) has two input projections, fc1_g and fc1_x
LINEAR_PATTERNS = ("blocks.*.attn.qkv", "blocks.*.attn.proj", "blocks.*.mlp.fc1", "blocks.*.mlp.fc1_g",
                   "blocks.*.mlp.fc1_x", "blocks.*.mlp.fc2")
ATTENTION_PATTERNS = ("blocks.*.attn.matmul_qk", "blocks.*.attn.matmul_av")
PATCH_EMBED = "patch_embed.proj"
QUANTIZED_OP_TYPES = ("MatMul", "Gemm", "Conv")


@dataclass(frozen=True)
class PrecisionRecipe:
    """Everything that decides one precision graph; recorded whole in the manifest."""

    precision: str
    io_dtype: str = BASE_PRECISION
    keep_fp32: tuple[str, ...] = KEEP_FP32
    base: str = FP16                       # Q/DQ (int8/fp8): precision of everything not quantized
    quantize_attention: bool = False
    quantize_patch_embed: bool = False
    exclude: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        precision(self.precision, onnx=True)
        if self.io_dtype not in FLOAT_PRECISIONS:
            raise ValueError(f"io_dtype must be {', '.join(FLOAT_PRECISIONS[:-1])} or {FLOAT_PRECISIONS[-1]}, "
                             f"got {self.io_dtype!r}")
        if self.io_dtype != BASE_PRECISION and self.io_dtype != self._float_dtype:
            raise ValueError(f"io_dtype {self.io_dtype} does not match the {self.precision} graph's float type "
                             f"({self._float_dtype}); use {BASE_PRECISION} or {self._float_dtype}")
        if self.base not in QDQ_BASES:
            raise ValueError(f"{'/'.join(QUANTIZED)} base precision must be {' or '.join(QDQ_BASES)}, "
                             f"got {self.base!r}")
        object.__setattr__(self, "keep_fp32", tuple(self.keep_fp32))
        object.__setattr__(self, "exclude", tuple(self.exclude))

    @property
    def row(self):
        """The precision's row (:func:`edgevit.formats.precision`)."""
        return precision(self.precision, onnx=True)

    @property
    def _float_dtype(self) -> str:
        graph = self.row.graph
        return self.precision if graph == CAST else self.base if graph == QDQ else BASE_PRECISION

    @property
    def quantized(self) -> bool:
        return self.row.graph == QDQ

    def quantize_patterns(self) -> tuple[str, ...]:
        return (LINEAR_PATTERNS + (ATTENTION_PATTERNS if self.quantize_attention else ())
                + ((PATCH_EMBED,) if self.quantize_patch_embed else ()))

    def to_dict(self) -> dict:
        d = asdict(self)
        d["keep_fp32"], d["exclude"] = list(self.keep_fp32), list(self.exclude)
        if not self.quantized:
            for key in ("base", "quantize_attention", "quantize_patch_embed", "exclude"):
                d.pop(key)
        else:
            d["placement"] = "inputs of " + ", ".join(self.quantize_patterns())
            d["weights"] = "per-channel (MatMul axis 1, Conv axis 0)" if self.row.per_channel else "per-tensor"
            d["activations"] = "per-tensor, symmetric, zero point 0"
            d["format"] = self.row.element.lower()
        if self.row.graph == EXPORTED:
            return {"precision": self.precision}
        return d


def recipe_from_dict(data: dict) -> PrecisionRecipe:
    """The recipe a manifest records (keys it does not know, such as ``placement``, are ignored)."""
    allowed = set(PrecisionRecipe.__dataclass_fields__)
    return PrecisionRecipe(**{k: v for k, v in data.items() if k in allowed})


def quantizable_nodes(proto, recipe: PrecisionRecipe) -> list[str]:
    """Names of the nodes the recipe quantizes, in graph order (``exclude`` applied)."""
    patterns = recipe.quantize_patterns()
    found = []
    for node in proto.graph.node:
        if node.op_type not in QUANTIZED_OP_TYPES or not node.name:
            continue
        if any(fnmatch.fnmatchcase(node.name, p) for p in patterns) and not any(
                fnmatch.fnmatchcase(node.name, p) for p in recipe.exclude):
            found.append(node.name)
    return found


def activation_inputs(proto, nodes) -> set[str]:
    """The tensors Q/DQ goes on when ``nodes`` (names) are quantized: their first two inputs that are not weights."""
    inits, names = {t.name for t in proto.graph.initializer}, set(nodes)
    return {i for n in proto.graph.node if n.name in names for i in n.input[:2] if i and i not in inits}


def calibrated_tensors(proto, recipes) -> set[str]:
    """What calibration must range for ``recipes``: the activation inputs of every node they could quantize
    (``exclude`` ignored, so one calibration serves any exclusion, --auto-exclude and --sensitivity)."""
    return set().union(*(activation_inputs(proto, quantizable_nodes(proto, replace(r, exclude=()))) for r in recipes))


def check_exclude(proto, recipe: PrecisionRecipe, where) -> None:
    """Refuse ``exclude`` patterns that match none of the nodes the recipe quantizes: a typo would
    otherwise quantize every layer and record an exclusion that did nothing."""
    candidates = quantizable_nodes(proto, replace(recipe, exclude=()))
    unmatched = [p for p in recipe.exclude if not any(fnmatch.fnmatchcase(n, p) for n in candidates)]
    if unmatched:
        shown = ", ".join(candidates[:4]) + (f", ... {candidates[-1]}" if len(candidates) > 4 else "")
        raise ValueError(
            f"--exclude {' '.join(unmatched)} matches none of the {len(candidates)} nodes the {recipe.precision} "
            f"recipe quantizes in {where}: {shown or 'none'} (patterns {', '.join(recipe.quantize_patterns())}; "
            "--quantize-attention and --quantize-patch-embed add the attention MatMuls and patch_embed.proj)")


__all__ = ["ATTENTION_PATTERNS", "KEEP_FP32", "LINEAR_PATTERNS", "PATCH_EMBED", "QUANTIZED_OP_TYPES",
           "PrecisionRecipe", "activation_inputs", "calibrated_tensors", "check_exclude", "quantizable_nodes",
           "recipe_from_dict"]
