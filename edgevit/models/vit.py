"""A Vision Transformer in one readable file.

Parameter names follow timm's ``VisionTransformer`` (patch_embed.proj, cls_token, pos_embed,
blocks.N.norm1 / attn.qkv / attn.proj / norm2 / mlp.fc1 / mlp.fc2, norm, head), so timm
checkpoints load without a key mapping.

The attention implementation is a config field and can be switched per instance after
construction (``model.set_attn_impl("math")``):

* ``"sdpa"``: torch's fused ``scaled_dot_product_attention``;
* ``"math"``: ``softmax((Q * d**-0.5) @ K^T) @ V`` written out, with Q pre-scaled. This is
  the reference every optimized path is checked against, and the MatMul -> Softmax -> MatMul
  pattern TensorRT's MHA fusion matches once exported.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace

import torch
import torch.nn.functional as F
from torch import nn

ATTN_IMPLS = ("sdpa", "math")
ACTIVATIONS = ("gelu", "gelu_tanh", "relu")
POS_EMBEDS = ("learned", "sincos")
POOLS = ("cls", "mean")


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
    drop_rate: float = 0.0
    attn_drop_rate: float = 0.0
    drop_path_rate: float = 0.0
    attn_impl: str = "sdpa"

    def __post_init__(self) -> None:
        _check_choice("attn_impl", self.attn_impl, ATTN_IMPLS)
        _check_choice("act", self.act, ACTIVATIONS)
        _check_choice("pos_embed", self.pos_embed, POS_EMBEDS)
        _check_choice("pool", self.pool, POOLS)
        for name in ("img_size", "patch_size", "in_chans", "num_classes", "embed_dim", "depth", "num_heads"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"ViTConfig.{name} must be a positive integer, got {value!r}")
        if self.embed_dim % self.num_heads:
            raise ValueError(
                f"embed_dim ({self.embed_dim}) must be divisible by num_heads ({self.num_heads}); "
                f"allowed num_heads for this width: {_divisors(self.embed_dim)}"
            )
        if self.img_size % self.patch_size:
            raise ValueError(
                f"img_size ({self.img_size}) must be divisible by patch_size ({self.patch_size}); "
                f"allowed patch sizes for this image: {_divisors(self.img_size)}"
            )
        if self.pos_embed == "sincos" and self.embed_dim % 4:
            raise ValueError(f"pos_embed='sincos' needs embed_dim divisible by 4, got {self.embed_dim}")
        if self.mlp_ratio <= 0:
            raise ValueError(f"mlp_ratio must be > 0, got {self.mlp_ratio}")
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
    def num_tokens(self) -> int:
        """Sequence length seen by attention: the patches plus the class token."""
        return self.num_patches + 1

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


def _check_choice(name: str, value, allowed: tuple) -> None:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {list(allowed)}, got {value!r}")


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def sincos_pos_embed(embed_dim: int, grid_size: int, cls_token: bool = True) -> torch.Tensor:
    """Fixed 2-D sine-cosine position encoding (MAE / "Simple ViT"), shape (1, N[+1], D).

    Half the channels encode the row, half the column; each half is [sin, cos] of the
    position times 10000^(-k/(D/4)). The class token gets zeros.
    """
    if embed_dim % 4:
        raise ValueError(f"sincos position encoding needs embed_dim divisible by 4, got {embed_dim}")
    omega = torch.arange(embed_dim // 4, dtype=torch.float64) / (embed_dim / 4.0)
    omega = 1.0 / 10000**omega
    coords = torch.arange(grid_size, dtype=torch.float64)
    rows, cols = torch.meshgrid(coords, coords, indexing="ij")

    def encode(pos: torch.Tensor) -> torch.Tensor:
        out = pos.reshape(-1, 1) * omega.reshape(1, -1)
        return torch.cat([out.sin(), out.cos()], dim=1)

    emb = torch.cat([encode(rows), encode(cols)], dim=1)
    if cls_token:
        emb = torch.cat([torch.zeros(1, embed_dim, dtype=emb.dtype), emb], dim=0)
    return emb.unsqueeze(0).float()


class PatchEmbed(nn.Module):
    """Image (B, C, H, W) -> patch tokens (B, N, D) with one strided convolution."""

    def __init__(self, cfg: ViTConfig):
        super().__init__()
        self.img_size = cfg.img_size
        self.in_chans = cfg.in_chans
        self.proj = nn.Conv2d(cfg.in_chans, cfg.embed_dim, cfg.patch_size, stride=cfg.patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


class Attention(nn.Module):
    """Multi-head scaled dot-product self-attention.

    ``attn_out`` is an identity placed on the attention output (after softmax(QK^T/sqrt(d)) V,
    heads merged, before the output projection): a forward hook there sees the tensor that the
    attention check compares.
    """

    def __init__(self, cfg: ViTConfig):
        super().__init__()
        self.num_heads = cfg.num_heads
        self.head_dim = cfg.head_dim
        self.scale = self.head_dim**-0.5
        self.attn_impl = cfg.attn_impl
        self.qkv = nn.Linear(cfg.embed_dim, cfg.embed_dim * 3, bias=cfg.qkv_bias)
        self.attn_drop = nn.Dropout(cfg.attn_drop_rate)
        self.attn_out = nn.Identity()
        self.proj = nn.Linear(cfg.embed_dim, cfg.embed_dim)
        self.proj_drop = nn.Dropout(cfg.drop_rate)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, N, C = x.shape
        qkv = self.qkv(x).reshape(B, N, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        if self.attn_impl == "sdpa":
            dropout = self.attn_drop.p if self.training else 0.0
            x = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout)
        else:
            attn = (q * self.scale) @ k.transpose(-2, -1)
            attn = self.attn_drop(attn.softmax(dim=-1))
            x = attn @ v
        x = self.attn_out(x.transpose(1, 2).reshape(B, N, C))
        return self.proj_drop(self.proj(x))


class Mlp(nn.Module):
    def __init__(self, cfg: ViTConfig):
        super().__init__()
        self.fc1 = nn.Linear(cfg.embed_dim, cfg.mlp_hidden)
        self.act = {
            "gelu": nn.GELU(),
            "gelu_tanh": nn.GELU(approximate="tanh"),
            "relu": nn.ReLU(),
        }[cfg.act]
        self.drop = nn.Dropout(cfg.drop_rate)
        self.fc2 = nn.Linear(cfg.mlp_hidden, cfg.embed_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.fc2(self.drop(self.act(self.fc1(x)))))


class DropPath(nn.Module):
    """Stochastic depth: drop a whole residual branch per sample while training."""

    def __init__(self, p: float):
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        keep = 1.0 - self.p
        mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
        return x * mask / keep


class Block(nn.Module):
    """Pre-norm transformer block: x + attn(norm1(x)), then x + mlp(norm2(x))."""

    def __init__(self, cfg: ViTConfig, drop_path: float = 0.0):
        super().__init__()
        self.norm1 = nn.LayerNorm(cfg.embed_dim, eps=cfg.norm_eps)
        self.attn = Attention(cfg)
        self.norm2 = nn.LayerNorm(cfg.embed_dim, eps=cfg.norm_eps)
        self.mlp = Mlp(cfg)
        self.drop_path = DropPath(drop_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop_path(self.attn(self.norm1(x)))
        return x + self.drop_path(self.mlp(self.norm2(x)))


class VisionTransformer(nn.Module):
    """ViT classifier: patch embedding, class token, position encoding, blocks, norm, head.

    ``preprocessing``, ``labels`` and ``guessed`` are attached by the loaders (see edgevit.models.checkpoint).
    """

    def __init__(self, cfg: ViTConfig):
        super().__init__()
        self.config = cfg
        self.patch_embed = PatchEmbed(cfg)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, cfg.embed_dim))
        if cfg.pos_embed == "learned":
            self.pos_embed = nn.Parameter(torch.zeros(1, cfg.num_tokens, cfg.embed_dim))
        else:
            self.register_buffer(
                "pos_embed", sincos_pos_embed(cfg.embed_dim, cfg.grid_size), persistent=False
            )
        self.pos_drop = nn.Dropout(cfg.drop_rate)
        rates = torch.linspace(0, cfg.drop_path_rate, cfg.depth).tolist()
        self.blocks = nn.Sequential(*[Block(cfg, rate) for rate in rates])
        self.norm = nn.LayerNorm(cfg.embed_dim, eps=cfg.norm_eps)
        self.head_drop = nn.Dropout(cfg.drop_rate)
        self.head = nn.Linear(cfg.embed_dim, cfg.num_classes)
        self.preprocessing = None
        self.labels: list[str] | None = None
        self.guessed: dict = {}  # config fields a loader guessed, {field: value}: not read from the checkpoint
        self._init_weights()

    def _init_weights(self) -> None:
        if isinstance(self.pos_embed, nn.Parameter):
            nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.normal_(self.cls_token, std=1e-6)
        # Xavier-uniform Linears (the original ViT / timm "jax" init): on the small digits model
        # trunc-normal(0.02) stalls near chance for ~10 epochs, xavier does not.
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.LayerNorm):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        w = self.patch_embed.proj.weight
        nn.init.trunc_normal_(w.view(w.shape[0], -1), std=0.02)
        nn.init.zeros_(self.patch_embed.proj.bias)

    @property
    def attn_impl(self) -> str:
        return self.config.attn_impl

    def set_attn_impl(self, impl: str) -> "VisionTransformer":
        """Switch every block's attention between "sdpa" and "math"; weights are untouched."""
        _check_choice("attn_impl", impl, ATTN_IMPLS)
        self.config = self.config.replace(attn_impl=impl)
        for block in self.blocks:
            block.attn.attn_impl = impl
        return self

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(x)
        cls = self.cls_token.expand(x.shape[0], -1, -1)
        x = torch.cat([cls, x], dim=1) + self.pos_embed
        x = self.blocks(self.pos_drop(x))
        return self.norm(x)

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        x = x[:, 0] if self.config.pool == "cls" else x[:, 1:].mean(dim=1)
        return self.head(self.head_drop(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        cfg = self.config
        if x.ndim != 4 or x.shape[1:] != (cfg.in_chans, cfg.img_size, cfg.img_size):
            raise ValueError(
                f"expected input of shape (batch, {cfg.in_chans}, {cfg.img_size}, {cfg.img_size}), "
                f"got {tuple(x.shape)}"
            )
        return self.forward_head(self.forward_features(x))


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def macs_per_image(cfg: ViTConfig) -> int:
    """Multiply-accumulates of one forward pass (matmuls and the patch convolution)."""
    n, d, h = cfg.num_tokens, cfg.embed_dim, cfg.mlp_hidden
    patch = cfg.num_patches * d * cfg.in_chans * cfg.patch_size**2
    per_block = n * d * 3 * d + 2 * n * n * d + n * d * d + 2 * n * d * h
    return patch + cfg.depth * per_block + d * cfg.num_classes
