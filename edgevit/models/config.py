"""What defines a ViT's architecture: :class:`ViTConfig`, every field checked when it is made, and the
choices of its fields. The model (:mod:`edgevit.models.vit`) is built from it whole."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace

from ..formats import ACTIVATIONS, ROPES
from ..output_kinds import OutputKind

ATTN_IMPLS = ("sdpa", "math")
DYNAMIC_SIZES = ("none", "bicubic", "bilinear")
# A relative position bias added to the attention scores: none; BEiT's, one table per block or one shared;
# SAM's "decomposed" one (per block, a row table and a column table multiplied by the query: models/sam_parts.py)
REL_POS_BIASES = ("none", "block", "shared", "decomposed")
# learned: a trained table; sincos: the fixed 2-D sin-cos table; none: no absolute table (RoPE models: DINOv3)
POS_EMBEDS = ("learned", "sincos", "none")
# cls: the class token; mean: the patch tokens' mean; map: attention pooling with a learned query
# (SigLIP); cls_mean: [class token, patch mean] concatenated (HF Dinov2ForImageClassification);
# cls_dist: the mean of the class and distillation tokens, each with its own head (DeiT distilled).
POOLS = ("cls", "mean", "map", "cls_mean", "cls_dist")
# The block MLP. mlp: fc2(act(fc1 x)) (timm Mlp). swiglu_packed: one fc1 of twice the hidden width whose first
# half is the gate, fc2(silu(gate) * value) (timm SwiGLUPacked, DINOv2-giant; HF Dinov2 weights_in / weights_out).
# swiglu: the same with the halves as fc1_g / fc1_x (timm SwiGLU, EVA-02; HF gate_proj / up_proj). mlp_ratio is
# fc2's input width / embed_dim in all three; the SwiGLU gate is always SiLU (act applies to "mlp" only).
MLPS = ("mlp", "swiglu_packed", "swiglu")
# The attention scores of one image, heads x tokens x tokens, are one tensor of the exported graph
# (MatMul -> Softmax -> MatMul) and of PyTorch's math attention. TensorRT refuses a tensor of more than
# 2^31-1 elements (int32 volumes, NVIDIA/TensorRT#3815), and at fp32 that is 8 GiB for one image: a
# config past it is refused before anything is built or resampled.
MAX_ATTENTION_SCORES = 2**31 - 1


@dataclass(frozen=True)
class ViTConfig:
    """Everything that defines a ViT's architecture. Passed whole to the model."""

    img_size: int = 224
    patch_size: int = 16
    in_chans: int = 3
    num_classes: int = 1000
    embed_dim: int = 768
    depth: int = 12
    num_heads: int = 12
    mlp_ratio: float = 4.0
    qkv_bias: bool = True
    norm_eps: float = 1e-6
    act: str = "gelu"
    pos_embed: str = "learned"
    pool: str = "cls"
    class_token: bool = True
    reg_tokens: int = 0
    distilled: bool = False  # a distillation token after the class token (DeiT)
    no_embed_class: bool = False  # pos_embed covers the patches only; prefix tokens are added unembedded
    init_values: float | None = None  # LayerScale (ls1 / ls2 .gamma) when set
    pre_norm: bool = False  # norm_pre before the blocks (CLIP); the patch projection then has no bias
    fc_norm: bool = False  # the final norm applied after pooling instead of to every token
    # any H x W (multiples of the patch) at run time: the learned position table is resampled inside the forward
    # (and the exported graph) with this mode, without antialias (which does not export); "none": img_size only
    dynamic_size: str = "none"
    post_norm: bool = False  # timm's ResPostBlock: x + norm1(attn(x)), x + norm2(mlp(x)) (res-post-norm, "rpn")
    pool_include_prefix: bool = False  # mean / map pooling over the prefix tokens too (timm pool_include_prefix)
    proj_dim: int = 0  # a bias-free projection of the pooled features (CLIP's image embedding)
    rel_pos_bias: str = "none"  # relative position bias on the scores: BEiT "block" (a table each) / "shared"; SAM
    # "decomposed" (rel_pos_h / rel_pos_w per block)
    window_size: int = 0  # SAM: attention within non-overlapping windows of this many patches a side (0: global)
    global_blocks: tuple = ()  # with window_size: the blocks that attend over the whole grid (SAM global_attn_indexes)
    neck_dim: int = 0  # SAM's convolutional neck (1x1 conv, LayerNorm2d, 3x3 conv, LayerNorm2d) to this width, 0: none
    rope: str = "none"  # rotary position embedding of the patch tokens' Q and K (models/rope.py): "dinov3", "eva"
    rope_theta: float = 100.0  # the RoPE period base (DINOv3's temperature, HF rope_theta; EVA-02: 10000)
    mlp: str = "mlp"  # the block MLP (MLPS): fc2(act(fc1 x)), or SwiGLU packed in one fc1 or split in fc1_g / fc1_x
    mlp_norm: bool = False  # a LayerNorm on the MLP's hidden width before fc2 (timm's mlp.norm: EVA-02's sub-LN)
    attn_norm: bool = False  # a LayerNorm on the attention output before proj (timm's attn.norm: EVA-CLIP's sub-LN)
    drop_rate: float = 0.0
    attn_drop_rate: float = 0.0
    drop_path_rate: float = 0.0
    attn_impl: str = "sdpa"

    def __post_init__(self) -> None:
        _check_choice("attn_impl", self.attn_impl, ATTN_IMPLS)
        _check_choice("act", self.act, ACTIVATIONS)
        _check_choice("pos_embed", self.pos_embed, POS_EMBEDS)
        _check_choice("pool", self.pool, POOLS)
        for name in ("img_size", "patch_size", "in_chans", "num_classes", "embed_dim", "depth", "num_heads",
                     "reg_tokens", "proj_dim", "window_size", "neck_dim"):
            value = getattr(self, name)
            low = 0 if name in ("num_classes", "reg_tokens", "proj_dim", "window_size", "neck_dim") else 1
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                kind = "a non-negative" if low == 0 else "a positive"
                raise ValueError(f"ViTConfig.{name} must be {kind} integer, got {value!r}")
        if self.pool in ("cls", "cls_mean", "cls_dist") and not self.class_token:
            raise ValueError(f"pool={self.pool!r} reads the class token, but class_token is False; "
                             "use pool='mean' or 'map'")
        if self.distilled and self.pool not in ("cls", "cls_dist") or self.pool == "cls_dist" and not self.distilled:
            raise ValueError("pool='cls_dist' needs a distillation token (distilled=True), and a distilled model "
                             f"pools 'cls' or 'cls_dist'; got distilled={self.distilled}, pool={self.pool!r}")
        _check_choice("dynamic_size", self.dynamic_size, DYNAMIC_SIZES)
        # any size: a learned table is resampled to the grid, RoPE (DINOv3, EVA-02) computed from it, SAM's windows
        # and relative position tables fitted to it; BEiT's bias or a fixed sin-cos table has no way to other sizes yet
        if self.dynamic_size != "none" and (self.rel_pos_bias in ("block", "shared") or self.pos_embed == "sincos"
                                            or self.pos_embed == "none" and self.rope == "none"):
            kind = ("BEiT's relative position bias" if self.rel_pos_bias != "none" else
                    f"a {self.pos_embed} position table" if self.pos_embed != "none" else "not encoded (no table, no RoPE)")
            raise ValueError(f"a graph of several input sizes (dynamic_size={self.dynamic_size!r}) resamples a learned "
                             "position table and computes rotary embeddings (RoPE) from the grid; this model's "
                             f"positions are {kind}, for which other sizes are not implemented yet: export it at one "
                             "size (--img-size PX)")
        if self.pool_include_prefix and self.pool not in ("mean", "map"):
            raise ValueError(f"pool_include_prefix applies to pool='mean' or 'map', got pool={self.pool!r}")
        _check_choice("rel_pos_bias", self.rel_pos_bias, REL_POS_BIASES)
        _check_sam_fields(self)
        if self.rel_pos_bias in ("block", "shared") and (not self.class_token or self.num_prefix_tokens != 1):
            raise ValueError(f"rel_pos_bias={self.rel_pos_bias!r} (BEiT) needs exactly one prefix token, the class "
                             f"token; got class_token={self.class_token}, {self.num_prefix_tokens} prefix tokens")
        if self.pool == "map" and self.fc_norm:
            raise ValueError("pool='map' normalises inside the attention pool: fc_norm must be False")
        if self.init_values is not None and not isinstance(self.init_values, (int, float)):
            raise ValueError(f"init_values (LayerScale) must be a number or None, got {self.init_values!r}")
        if self.embed_dim % self.num_heads:
            raise ValueError(
                f"embed_dim ({self.embed_dim}) must be divisible by num_heads ({self.num_heads}); "
                f"allowed num_heads for this width: {_divisors(self.embed_dim)}"
            )
        _check_attention_size(self)
        if self.img_size % self.patch_size:
            raise ValueError(
                f"img_size ({self.img_size}) must be divisible by patch_size ({self.patch_size}); "
                f"allowed patch sizes for this image: {_divisors(self.img_size)}"
            )
        if self.pos_embed == "sincos" and self.embed_dim % 4:
            raise ValueError(f"pos_embed='sincos' needs embed_dim divisible by 4, got {self.embed_dim}")
        _check_choice("rope", self.rope, ROPES)
        if self.rope != "none" and self.head_dim % 4:
            raise ValueError(f"rope={self.rope!r} needs a head size divisible by 4, got {self.head_dim}")
        if self.rope != "none" and self.pos_embed == "sincos":
            raise ValueError(f"rope={self.rope!r} with pos_embed='sincos': no RoPE family adds a fixed sin-cos table; "
                             "DINOv3 has no absolute position table (pos_embed='none')")
        if isinstance(self.rope_theta, bool) or not isinstance(self.rope_theta, (int, float)) or self.rope_theta <= 0:
            raise ValueError(f"rope_theta must be a positive number, got {self.rope_theta!r}")
        if self.mlp_ratio <= 0:
            raise ValueError(f"mlp_ratio must be > 0, got {self.mlp_ratio}")
        _check_choice("mlp", self.mlp, MLPS)
        if not isinstance(self.mlp_norm, bool):
            raise ValueError(f"mlp_norm must be True or False, got {self.mlp_norm!r}")
        if not isinstance(self.attn_norm, bool):
            raise ValueError(f"attn_norm must be True or False, got {self.attn_norm!r}")
        if self.pool == "map" and (self.mlp != "mlp" or self.mlp_norm):
            raise ValueError(f"pool='map' with mlp={self.mlp!r}, mlp_norm={self.mlp_norm}: the attention pool's MLP "
                             "is timm's plain Mlp, and no family pairs it with a SwiGLU or normed block MLP")
        for name in ("drop_rate", "attn_drop_rate", "drop_path_rate"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {getattr(self, name)}")

    @property
    def head_dim(self) -> int:
        return self.embed_dim // self.num_heads

    @property
    def grid_size(self) -> int:
        return self.img_size // self.patch_size

    @property
    def num_patches(self) -> int:
        return self.grid_size**2

    @property
    def num_prefix_tokens(self) -> int:
        """Tokens before the patches: class, distillation, registers (in that order)."""
        return int(self.class_token) + int(self.distilled) + self.reg_tokens

    @property
    def num_tokens(self) -> int:
        """Sequence length seen by attention: the patches plus the prefix tokens."""
        return self.num_patches + self.num_prefix_tokens

    @property
    def pos_embed_len(self) -> int:
        return self.num_patches + (0 if self.no_embed_class else self.num_prefix_tokens)

    @property
    def score_bytes(self) -> int:
        """Bytes of one image's float32 attention scores in a global block, heads x tokens^2 (what bounds the
        batches edgevit picks: :func:`edgevit.runtime.batching.score_bounded_batch`)."""
        return 4 * self.num_heads * self.num_tokens**2

    @classmethod
    def score_bytes_of(cls, data: dict | None) -> int | None:
        """:attr:`score_bytes` of a recorded config (a manifest's ``model.config``), None when it is not one."""
        try:
            return cls.from_dict(data).score_bytes if isinstance(data, dict) else None
        except (TypeError, ValueError):
            return None

    @property
    def token_dim(self) -> int:
        """Width of the tokens ``forward_features`` returns: the neck's (SAM), else embed_dim."""
        return self.neck_dim or self.embed_dim

    @property
    def pooled_dim(self) -> int:
        return 2 * self.embed_dim if self.pool == "cls_mean" else self.token_dim

    @property
    def feature_dim(self) -> int:
        """Width of the features a headless model returns (the head's input)."""
        return self.proj_dim or self.pooled_dim

    @property
    def output_kind(self) -> OutputKind:
        return OutputKind.LOGITS if self.num_classes else OutputKind.FEATURES

    @property
    def mlp_hidden(self) -> int:
        # timm's int(dim * ratio), robust to float error: a ratio read as width / dim gives the width back
        return int(self.embed_dim * self.mlp_ratio + 1e-6)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "ViTConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown ViTConfig fields {unknown}; allowed: {sorted(known)}")
        return cls(**data)

    def replace(self, **changes) -> "ViTConfig":
        return replace(self, **changes)


def _check_sam_fields(cfg: ViTConfig) -> None:
    """SAM's fields (windowed attention, decomposed relative positions, the neck) work on the patch grid
    alone: no prefix tokens; ValueError naming the field otherwise."""
    if isinstance(cfg.global_blocks, list):  # from JSON
        object.__setattr__(cfg, "global_blocks", tuple(cfg.global_blocks))
    blocks = cfg.global_blocks
    if (not isinstance(blocks, tuple) or any(not isinstance(b, int) or isinstance(b, bool) for b in blocks)
            or list(blocks) != sorted(set(blocks)) or any(not 0 <= b < cfg.depth for b in blocks)):
        raise ValueError(f"global_blocks must be increasing block indices in [0, depth={cfg.depth}), got {blocks!r}")
    if blocks and not cfg.window_size:
        raise ValueError(f"global_blocks {list(blocks)} name the blocks that attend globally among windowed ones, "
                         "but window_size is 0 (every block is global)")
    sam = {"window_size": cfg.window_size, "rel_pos_bias='decomposed'": cfg.rel_pos_bias == "decomposed",
           "neck_dim": cfg.neck_dim}
    used = [name for name, value in sam.items() if value]
    if used and cfg.num_prefix_tokens:
        raise ValueError(f"{', '.join(used)} (SAM's image encoder) work on the patch grid alone, but the model has "
                         f"{cfg.num_prefix_tokens} class/register token(s): set class_token=False, reg_tokens=0")
    if cfg.neck_dim and (cfg.pool != "mean" or cfg.fc_norm or cfg.proj_dim):
        raise ValueError(f"neck_dim (SAM's neck) ends in a LayerNorm and pools the mean of its tokens (timm's "
                         f"'avg'): pool must be 'mean' without fc_norm or proj_dim, got pool={cfg.pool!r}, "
                         f"fc_norm={cfg.fc_norm}, proj_dim={cfg.proj_dim}")


def _check_choice(name: str, value, allowed: tuple) -> None:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {list(allowed)}, got {value!r}")


def _check_attention_size(cfg: ViTConfig) -> None:
    """ValueError when one image's attention scores exceed :data:`MAX_ATTENTION_SCORES`, naming the
    largest image size that fits (checked before the patch size divides the image: it costs nothing)."""
    tokens = cfg.num_tokens
    scores = cfg.num_heads * tokens**2
    if scores <= MAX_ATTENTION_SCORES:
        return
    fit = math.isqrt(MAX_ATTENTION_SCORES // cfg.num_heads) - cfg.num_prefix_tokens
    largest = math.isqrt(fit) * cfg.patch_size if fit > 0 else 0
    raise ValueError(
        f"img_size {cfg.img_size} with patch_size {cfg.patch_size} makes {tokens:,} tokens per image: the attention "
        f"scores of one image ({cfg.num_heads} heads x {tokens:,}^2 = {scores:.3g} values) exceed 2^31-1, the "
        "largest tensor TensorRT builds (8 GiB at fp32); "
        + (f"use an image size of at most {largest} (--img-size {largest}, img_size={largest})" if largest else
           f"no image size fits {cfg.num_heads} heads")
    )


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]
