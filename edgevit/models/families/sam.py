"""SAM's ViT image encoder (Segment Anything, Meta 2023): no class token, a learned position table stored
as a (1, rows, cols, dim) grid, windowed attention with a few global blocks, decomposed relative positions
in every block, and a convolutional neck (:mod:`edgevit.models.sam_parts`). edgevit's model returns the
neck's output as tokens (``forward_tokens``: (B, grid*grid, neck_dim), SAM's image embedding
(B, neck_dim, grid, grid) flattened row-major) and, as features, their mean (timm's ``global_pool='avg'``).

Three layouts load:

* timm (``samvit_base/large/huge_patch16``): edgevit's names, the table as a grid, ``head.fc`` when it has a
  classifier; LayerNorm eps 1e-5 (timm builds SAM's blocks with ``nn.LayerNorm``'s default);
* Meta's original checkpoints (``sam_vit_b_01ec64.pth``, ``image_encoder.*``, the MLP as ``mlp.lin1`` /
  ``lin2``): the image encoder is taken, the prompt encoder and mask decoder are left out with a warning;
  eps 1e-6, as upstream;
* transformers ``SamModel`` / ``SamVisionModel`` (``vision_encoder.*``: ``patch_embed.projection``,
  ``layers.N.layer_norm1``, ``mlp.lin1``, ``neck.conv1`` / ``neck.layer_norm1`` ..): eps from config.json
  (``layer_norm_eps``, 1e-6), likewise without the prompt encoder and mask decoder.

What the shapes tell: the head count (``rel_pos_h`` holds one row per offset of the head size), the window
size and which blocks are global (a block's table has ``2 * side - 1`` rows for the side it attends over:
the window's, or the grid's for a global block), the image size (the table's grid) and the neck's width.
At another image size than the checkpoint's, the position grid and the global blocks' tables are resampled as
timm's samvit resamples them (:func:`fit_tables`; transformers' SamVisionModel takes its own size only).
SAM's processor resizes the longest side to the model's size and pads the rest with zeros; edgevit's
preprocessing resizes to the square input (pad your images yourself to keep the aspect ratio).
"""

from __future__ import annotations

import re
import warnings

import torch

from ...errors import CheckpointError, EdgeVitWarning
from ...specs import IMAGENET_MEAN, IMAGENET_STD
from .. import sam_parts
from ..config import ViTConfig
from .common import hf_number, square_int

NAME = "sam"
HF_MODEL_TYPES = ("sam", "sam_vision_model")
# what to_edgevit reads from the tensors' shapes, which a config.json must agree with (its names for them)
SHAPE_FIELDS = {"window_size": "window_size", "global_blocks": "global_attn_indexes",
                "num_heads": "num_attention_heads", "neck_dim": "output_channels"}

_TABLE = re.compile(r"(?:^|\.)(?:blocks|layers)\.\d+\.attn\.rel_pos_h$")
_PREFIXES = ("image_encoder.", "vision_encoder.")
# the parts of a whole SAM checkpoint that are not the image encoder
_OTHER_PARTS = re.compile(r"^(?:prompt_encoder|mask_decoder|shared_image_embedding)\.")
_HF_BLOCK = re.compile(r"^layers\.(\d+)\.")
_HF_RENAMES = (("patch_embed.projection.", "patch_embed.proj."), ("neck.conv1.", "neck.0."),
               ("neck.layer_norm1.", "neck.1."), ("neck.conv2.", "neck.2."), ("neck.layer_norm2.", "neck.3."),
               ("layer_norm1.", "norm1."), ("layer_norm2.", "norm2."))  # the neck's before the blocks' norms
_TIMM_EPS, _SAM_EPS = 1e-5, 1e-6
# SAM's (and timm's samvit sa1b): ImageNet statistics, the whole image resized (no crop; SAM pads instead)
PREPROCESSING = {"mean": IMAGENET_MEAN, "std": IMAGENET_STD, "interpolation": "bicubic", "crop_pct": 1.0}


_NECK = re.compile(r"(?:^|\.)neck\.(?:0|conv1)\.weight$")


def recognise(state: dict) -> bool:
    """Decomposed relative position tables (``blocks.N.attn.rel_pos_h`` / ``layers.N.attn.rel_pos_h``, any
    prefix), or SAM's neck beside a (1, rows, cols, dim) position grid: SAM's image encoder in timm's, Meta's
    or transformers' names (to_edgevit refuses the layouts it does not build, naming them)."""
    if any(_TABLE.search(k) for k in state):
        return True
    grid = any(k.endswith("pos_embed") and v.ndim == 4 for k, v in state.items())
    return grid and any(_NECK.search(k) for k in state)


def _encoder(state: dict) -> tuple[dict, str]:
    """The image encoder's tensors without their prefix, and the layout: "timm", "meta" or "hf"."""
    prefixed = [p for p in _PREFIXES if any(k.startswith(p) for k in state)]
    if prefixed:
        prefix = prefixed[0]
        others = sorted({k.split(".")[0] for k in state if not k.startswith(prefix)})
        if others:
            warnings.warn(f"took SAM's image encoder ({prefix.rstrip('.')}); left out {', '.join(others)} (the "
                          "prompt encoder and mask decoder are not part of it: run them on the image embedding the "
                          "exported encoder returns)", EdgeVitWarning, stacklevel=4)
        state = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    if any(_HF_BLOCK.match(k) for k in state):
        return state, "hf"
    return state, "meta" if any(".mlp.lin1." in k for k in state) else "timm"


def _rename(key: str, layout: str) -> str:
    if layout == "hf":
        key = _HF_BLOCK.sub(r"blocks.\1.", key)
        for old, new in _HF_RENAMES:
            key = key.replace(old, new)
    key = key.replace(".mlp.lin1.", ".mlp.fc1.").replace(".mlp.lin2.", ".mlp.fc2.")
    return key.replace("head.fc.", "head.")


def to_edgevit(state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict]:
    """The image encoder's state dict in edgevit's names (the position grid flattened) and the fields SAM
    fixes or its shapes tell. CheckpointError for SAM layouts edgevit does not build: no position table,
    no neck, a table that is not square, tables of no one window size."""
    state, layout = _encoder(state)
    state = {_rename(k, layout): v for k, v in state.items()}
    pos = state.get("pos_embed")
    if pos is None or pos.ndim != 4 or pos.shape[1] != pos.shape[2]:
        got = "none" if pos is None else f"shape {tuple(pos.shape)}"
        raise CheckpointError(f"SAM's image encoder with a position table of {got}: edgevit loads SAM's learned "
                              "(1, rows, cols, dim) table of a square grid (use_abs_pos; timm's "
                              "samvit_base_patch16_224 has none)")
    if "neck.0.weight" not in state:
        raise CheckpointError("a SAM image encoder without its convolutional neck (timm neck_chans=None, "
                              "samvit_base_patch16_224): edgevit loads SAM's encoder with its neck")
    if not any(_TABLE.search(k) for k in state):
        raise CheckpointError("a SAM image encoder without decomposed relative positions (no blocks.N.attn.rel_pos_h: "
                              "timm use_rel_pos=False, or RoPE): edgevit builds SAM's encoder with its relative "
                              "position tables")
    grid, dim = pos.shape[1], pos.shape[3]
    state["pos_embed"] = pos.reshape(1, grid * grid, dim)
    sides, head_dim = {}, None
    for key, table in state.items():
        match = re.match(r"^blocks\.(\d+)\.attn\.rel_pos_([hw])$", key)
        if match:
            pair = key[:-1] + ("w" if match.group(2) == "h" else "h")
            other = state.get(pair)
            if other is None:
                raise CheckpointError(f"{key} has no {pair}: SAM's blocks hold a row and a column table each; the "
                                      "checkpoint is incomplete")
            if other.shape != table.shape or table.ndim != 2 or table.shape[0] % 2 == 0:
                raise CheckpointError(f"{key} has shape {tuple(table.shape)}, {pair} {tuple(other.shape)}: SAM's row "
                                      "and column tables are both (2 * side - 1, head_dim)")
            sides[int(match.group(1))], head_dim = (table.shape[0] + 1) // 2, table.shape[1]
    windows = sorted({s for s in sides.values() if s != grid})
    if len(windows) > 1:
        raise CheckpointError(f"its blocks' relative position tables are for sides of {windows} patches, none of them "
                              f"the {grid}x{grid} grid of its position table: SAM's windowed blocks share one window "
                              "size and its global blocks attend over the grid; the checkpoint is damaged or mixed")
    if dim % head_dim:
        raise CheckpointError(f"relative position tables of head size {head_dim} do not divide the width {dim}")
    window = windows[0] if windows else 0
    fields = {"rel_pos_bias": "decomposed", "window_size": window,
              "global_blocks": tuple(sorted(b for b, s in sides.items() if s == grid)) if window else (),
              "neck_dim": int(state["neck.0.weight"].shape[0]), "num_heads": dim // head_dim, "act": "gelu",
              "pool": "mean", "norm_eps": _TIMM_EPS if layout == "timm" else _SAM_EPS}
    return state, fields


def fit_tables(state: dict, cfg: ViTConfig) -> dict:
    """``state`` with the global blocks' relative position tables resampled to ``cfg``'s grid (a SAM model loaded
    at another image size than its checkpoint's), as timm's samvit does it at run time (``get_rel_pos``: linear
    interpolation along the offsets, align_corners False); the windowed blocks' tables belong to the window and
    stay. transformers' SamVisionModel runs at its own size only."""
    rows = 2 * cfg.grid_size - 1
    out = dict(state)
    for index in cfg.global_blocks if cfg.window_size else range(cfg.depth):
        for axis in "hw":
            key = f"blocks.{index}.attn.rel_pos_{axis}"
            table = state.get(key)
            if table is not None and table.ndim == 2 and table.shape[0] != rows:
                out[key] = sam_parts.fit_table(table.float(), cfg.grid_size).to(table.dtype).contiguous()
    return out


# SamVisionConfig's defaults: save_pretrained writes only what differs from them.
_HF_DEFAULTS = {"hidden_size": 768, "output_channels": 256, "num_hidden_layers": 12, "num_attention_heads": 12,
                "num_channels": 3, "image_size": 1024, "patch_size": 16, "hidden_act": "gelu",
                "layer_norm_eps": 1e-6, "qkv_bias": True, "use_abs_pos": True, "use_rel_pos": True,
                "window_size": 14, "global_attn_indexes": [2, 5, 8, 11], "mlp_ratio": 4.0, "mlp_dim": None}


def config_from_hf(hf: dict) -> ViTConfig:
    """The ViTConfig of a ``SamModel`` (its ``vision_config``) or ``SamVisionModel`` config.json; ValueError
    naming the key on a value edgevit does not build."""
    if hf.get("model_type") == "sam":
        hf = hf.get("vision_config") or {}
        if not isinstance(hf, dict):
            raise ValueError(f"vision_config must be an object, got {type(hf).__name__}")
    hf = {**_HF_DEFAULTS, **hf}
    for key in ("qkv_bias", "use_abs_pos", "use_rel_pos"):
        if not isinstance(hf[key], bool):
            raise ValueError(f"{key} must be true or false, got {hf[key]!r}")
    if not hf["use_abs_pos"] or not hf["use_rel_pos"]:
        raise ValueError("use_abs_pos and use_rel_pos must both be true (SAM's image encoder); edgevit does not "
                         "build SAM without its position table or relative positions")
    if hf["hidden_act"] != "gelu":
        raise ValueError(f"hidden_act {hf['hidden_act']!r}: SAM's image encoder uses 'gelu'")
    size = {key: square_int(hf, key) for key in ("hidden_size", "output_channels", "num_hidden_layers",
                                                 "num_attention_heads", "num_channels", "image_size", "patch_size")}
    window = hf["window_size"]
    if not isinstance(window, int) or isinstance(window, bool) or window < 0:
        raise ValueError(f"window_size must be a non-negative integer, got {window!r}")
    blocks = hf["global_attn_indexes"]
    if not isinstance(blocks, (list, tuple)) or any(not isinstance(b, int) or isinstance(b, bool) for b in blocks):
        raise ValueError(f"global_attn_indexes must be a list of block indices, got {blocks!r}")
    dim, grid = size["hidden_size"], size["image_size"] // size["patch_size"]
    blocks = tuple(sorted(set(blocks)))
    if window == grid or window and set(range(size["num_hidden_layers"])) <= set(blocks):
        window, blocks = 0, ()  # one window over the whole grid, or no windowed block: global attention throughout
    mlp = hf["mlp_dim"] if hf["mlp_dim"] is not None else int(dim * hf_number(hf, "mlp_ratio"))
    if not isinstance(mlp, int) or isinstance(mlp, bool) or mlp < 1:
        raise ValueError(f"mlp_dim must be a positive integer, got {mlp!r}")
    return ViTConfig(
        img_size=size["image_size"], patch_size=size["patch_size"], in_chans=size["num_channels"], num_classes=0,
        embed_dim=dim, depth=size["num_hidden_layers"], num_heads=size["num_attention_heads"], mlp_ratio=mlp / dim,
        qkv_bias=hf["qkv_bias"], norm_eps=hf_number(hf, "layer_norm_eps", 0.0, 1.0), act="gelu", class_token=False,
        pool="mean", rel_pos_bias="decomposed", window_size=window,
        global_blocks=blocks if window else (), neck_dim=size["output_channels"],
    )
