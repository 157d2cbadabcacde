"""A Vision Transformer in one readable file.

Parameter names follow timm's ``VisionTransformer`` (patch_embed.proj, cls_token, pos_embed,
blocks.N.norm1 / attn.qkv / attn.proj / norm2 / mlp.fc1 / mlp.fc2, norm, head), so timm
checkpoints load without a key mapping.

Each ViT family people ship is a handful of config fields, not a copy of the model:
``class_token`` / ``reg_tokens`` / ``distilled`` (the prefix tokens), ``no_embed_class`` (the position
table skips them), ``init_values`` (LayerScale), ``pre_norm`` (CLIP's ``norm_pre``), ``pool``
(cls / mean / map attention pool / cls_mean / cls_dist), ``fc_norm``, ``act`` (incl. quick-GELU),
``proj_dim`` (CLIP's projection to the image embedding) and ``num_classes=0`` (headless: ``forward``
returns the pooled, final-normed features, timm's ``forward_head(pre_logits=True)``).

The attention implementation is a config field and can be switched per instance after
construction (``model.set_attn_impl("math")``):

* ``"sdpa"``: torch's fused ``scaled_dot_product_attention``;
* ``"math"``: ``softmax((Q * d**-0.5) @ K^T) @ V`` written out, with Q pre-scaled. This is
  the reference every optimized path is checked against, and the MatMul -> Softmax -> MatMul
  pattern TensorRT's MHA fusion matches once exported.

With ``rope="dinov3"`` (and ``pos_embed="none"``: no position table) or ``rope="eva"`` (EVA-02, beside its
learned table) both paths rotate the patch tokens' Q and K with fixed sin / cos tables
(:mod:`edgevit.models.rope`) before that first MatMul;
with ``rel_pos_bias`` (BEiT) a relative position bias (:mod:`edgevit.models.relpos`) is added to
the scores before the Softmax; SAM's image encoder (``window_size``, ``rel_pos_bias="decomposed"``,
``neck_dim``: :mod:`edgevit.models.sam_parts`) attends within windows of the patch grid, adds a bias computed
from the query and ends in a convolutional neck. With ``dynamic_size`` the model takes any height and width in whole
patches, its learned table resampled and its RoPE tables computed from the grid in the forward. The
config and its checks live in :mod:`edgevit.models.config`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..output_kinds import OutputKind
from .config import (ATTN_IMPLS, DYNAMIC_SIZES, MAX_ATTENTION_SCORES, MLPS, POOLS, POS_EMBEDS,  # noqa: F401
                     REL_POS_BIASES, ViTConfig, _check_choice)
from . import sam_parts
from .relpos import RelPosBias
from .rope import RotaryEmbedding


def sincos_pos_embed(embed_dim: int, grid_size: int, cls_token: bool | int = True) -> torch.Tensor:
    """Fixed 2-D sine-cosine position encoding (MAE / "Simple ViT"), shape (1, prefix + N, D).

    Half the channels encode the row, half the column; each half is [sin, cos] of the
    position times 10000^(-k/(D/4)). The ``cls_token`` (a count of prefix rows) get zeros.
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
        emb = torch.cat([torch.zeros(int(cls_token), embed_dim, dtype=emb.dtype), emb], dim=0)
    return emb.unsqueeze(0).float()


class PatchEmbed(nn.Module):
    """Image (B, C, H, W) -> patch tokens (B, N, D) with one strided convolution."""

    def __init__(self, cfg: ViTConfig):
        super().__init__()
        self.img_size = cfg.img_size
        self.in_chans = cfg.in_chans
        # timm: no bias before a pre-norm (CLIP), whose norm_pre would cancel it anyway
        self.proj = nn.Conv2d(cfg.in_chans, cfg.embed_dim, cfg.patch_size, stride=cfg.patch_size,
                              bias=not cfg.pre_norm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


class Attention(nn.Module):
    """Multi-head scaled dot-product self-attention.

    ``attn_out`` is an identity placed on the attention output (after softmax(QK^T/sqrt(d)) V,
    heads merged, before the output projection): a forward hook there sees the tensor that the
    attention check compares.

    ``window`` (SAM): attend within ``window x window`` windows of the patch grid (:mod:`edgevit.models.sam_parts`);
    the input and output stay (B, N, C), while ``attn_out`` sees the windows, (B * windows, window**2, C).
    """

    def __init__(self, cfg: ViTConfig, window: int = 0):
        super().__init__()
        self.num_heads = cfg.num_heads
        self.head_dim = cfg.head_dim
        self.scale = self.head_dim**-0.5
        self.attn_impl = cfg.attn_impl
        self.qkv = nn.Linear(cfg.embed_dim, cfg.embed_dim * 3, bias=cfg.qkv_bias)
        self.attn_drop = nn.Dropout(cfg.attn_drop_rate)
        self.attn_out = nn.Identity()
        # EVA-CLIP's sub-LN before proj (timm's attn.norm; named out_norm: the loader refuses attn.norm as QK-norm)
        self.out_norm = nn.LayerNorm(cfg.embed_dim, eps=cfg.norm_eps) if cfg.attn_norm else nn.Identity()
        self.proj = nn.Linear(cfg.embed_dim, cfg.embed_dim)
        self.proj_drop = nn.Dropout(cfg.drop_rate)
        # BEiT: a relative position bias added to the scores; "shared": the model's one table, set by it
        self.pos_bias = RelPosBias(cfg.grid_size, cfg.num_heads) if cfg.rel_pos_bias == "block" else None
        self.shared_bias: tuple = ()  # (the model's RelPosBias,): a reference, not a submodule of this block
        self.rope: RotaryEmbedding | None = None  # RoPE on Q and K (DINOv3): the model's one table, set by it
        self.grid, self.window = cfg.grid_size, window
        # (rows, cols) of the input now going through a model of any size (set by it; sizes, symbolic in a trace)
        self.grid_hw: tuple | None = None
        if cfg.rel_pos_bias == "decomposed":  # SAM: row and column tables of this block's attended grid
            rows = 2 * (window or cfg.grid_size) - 1  # offsets over the attended grid's side
            self.rel_pos_h = nn.Parameter(torch.zeros(rows, self.head_dim))
            self.rel_pos_w = nn.Parameter(torch.zeros(rows, self.head_dim))
        else:
            self.rel_pos_h = self.rel_pos_w = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        grid = self.grid_hw or (self.grid, self.grid)
        if self.window:
            x = sam_parts.partition(x, grid, self.window)
        B, N, C = x.shape
        qkv = self.qkv(x).reshape(B, N, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        if self.rope is not None:  # rotate the patch tokens' Q and K before Q·K^T (prefix rows: identity)
            q, k = self.rope(q), self.rope(k)
        bias = self.pos_bias() if self.pos_bias is not None else self.shared_bias[0]() if self.shared_bias else None
        bias = bias.to(q) if bias is not None else None  # a block copied or cast alone keeps the model's table
        if self.rel_pos_h is not None:  # SAM: computed from the unscaled query
            attended = (self.window, self.window) if self.window else grid
            bias = sam_parts.decomposed_bias(q, self.rel_pos_h, self.rel_pos_w, attended,
                                             resample=self.grid_hw is not None and not self.window)
        if self.attn_impl == "sdpa":
            dropout = self.attn_drop.p if self.training else 0.0
            x = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, dropout_p=dropout)
        else:
            attn = (q * self.scale) @ k.transpose(-2, -1)
            if bias is not None:  # MatMul -> Add -> Softmax -> MatMul
                attn = attn + bias
            attn = self.attn_drop(attn.softmax(dim=-1))
            x = attn @ v
        x = self.attn_out(x.transpose(1, 2).reshape(B, N, C))
        x = self.proj_drop(self.proj(self.out_norm(x)))
        return sam_parts.unpartition(x, grid, self.window) if self.window else x


class QuickGELU(nn.Module):
    """x * sigmoid(1.702 x): the GELU approximation OpenAI's CLIP was trained with."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(1.702 * x)


class Mlp(nn.Module):
    def __init__(self, cfg: ViTConfig):
        super().__init__()
        self.fc1 = nn.Linear(cfg.embed_dim, cfg.mlp_hidden)
        self.act = {
            "gelu": nn.GELU(),
            "gelu_tanh": nn.GELU(approximate="tanh"),
            "quick_gelu": QuickGELU(),
            "relu": nn.ReLU(),
        }[cfg.act]
        self.drop = nn.Dropout(cfg.drop_rate)
        self.norm = nn.LayerNorm(cfg.mlp_hidden, eps=cfg.norm_eps) if cfg.mlp_norm else nn.Identity()
        self.fc2 = nn.Linear(cfg.mlp_hidden, cfg.embed_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.fc2(self.norm(self.drop(self.act(self.fc1(x))))))


class SwiGLU(nn.Module):
    """fc2(silu(gate) * value), the gate and value projections packed in one ``fc1`` of twice the hidden width,
    the gate first (``mlp="swiglu_packed"``: timm's SwiGLUPacked, DINOv2-giant), or split in ``fc1_g`` /
    ``fc1_x`` (``mlp="swiglu"``: timm's SwiGLU, EVA-02); ``norm``: a LayerNorm before fc2 (``mlp_norm``)."""

    def __init__(self, cfg: ViTConfig):
        super().__init__()
        dim, hidden = cfg.embed_dim, cfg.mlp_hidden
        self.packed = cfg.mlp == "swiglu_packed"
        if self.packed:
            self.fc1 = nn.Linear(dim, 2 * hidden)
        else:
            self.fc1_g = nn.Linear(dim, hidden)
            self.fc1_x = nn.Linear(dim, hidden)
        self.act = nn.SiLU()
        self.drop = nn.Dropout(cfg.drop_rate)
        self.norm = nn.LayerNorm(hidden, eps=cfg.norm_eps) if cfg.mlp_norm else nn.Identity()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.packed:
            gate, x = self.fc1(x).chunk(2, dim=-1)
        else:
            gate, x = self.fc1_g(x), self.fc1_x(x)
        return self.drop(self.fc2(self.norm(self.drop(self.act(gate) * x))))


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


class LayerScale(nn.Module):
    """Per-channel learned scale of a residual branch (CaiT / DINOv2): x * gamma."""

    def __init__(self, dim: int, init_values: float):
        super().__init__()
        self.gamma = nn.Parameter(torch.full((dim,), float(init_values)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma


class Block(nn.Module):
    """Pre-norm transformer block: x + ls1(attn(norm1(x))), then x + ls2(mlp(norm2(x))).
    With ``post_norm`` (timm's ResPostBlock) the norm follows the branch: x + norm1(attn(x))."""

    def __init__(self, cfg: ViTConfig, drop_path: float = 0.0, window: int = 0):
        super().__init__()
        scale = (lambda: LayerScale(cfg.embed_dim, cfg.init_values)) if cfg.init_values is not None else nn.Identity
        self.norm1 = nn.LayerNorm(cfg.embed_dim, eps=cfg.norm_eps)
        self.attn = Attention(cfg, window)
        self.ls1 = scale()
        self.norm2 = nn.LayerNorm(cfg.embed_dim, eps=cfg.norm_eps)
        self.mlp = Mlp(cfg) if cfg.mlp == "mlp" else SwiGLU(cfg)
        self.ls2 = scale()
        self.drop_path = DropPath(drop_path)
        self.post_norm = cfg.post_norm

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.post_norm:
            x = x + self.drop_path(self.ls1(self.norm1(self.attn(x))))
            return x + self.drop_path(self.ls2(self.norm2(self.mlp(x))))
        x = x + self.drop_path(self.ls1(self.attn(self.norm1(x))))
        return x + self.drop_path(self.ls2(self.mlp(self.norm2(x))))


class AttentionPool(nn.Module):
    """Multi-head attention pooling (MAP, SigLIP): one learned query attends over the tokens,
    then a residual MLP. timm's ``AttentionPoolLatent`` names: latent, q, kv, proj, norm, mlp."""

    def __init__(self, cfg: ViTConfig):
        super().__init__()
        dim = cfg.embed_dim
        self.num_heads, self.head_dim = cfg.num_heads, cfg.head_dim
        self.latent = nn.Parameter(torch.zeros(1, 1, dim))
        self.q = nn.Linear(dim, dim, bias=cfg.qkv_bias)
        self.kv = nn.Linear(dim, 2 * dim, bias=cfg.qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.norm = nn.LayerNorm(dim, eps=cfg.norm_eps)
        self.mlp = Mlp(cfg)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, N, C = x.shape
        q = self.q(self.latent.expand(B, -1, -1)).reshape(B, 1, self.num_heads, self.head_dim).transpose(1, 2)
        k, v = self.kv(x).reshape(B, N, 2, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
        attn = ((q * self.head_dim**-0.5) @ k.transpose(-2, -1)).softmax(dim=-1)
        x = self.proj((attn @ v).transpose(1, 2).reshape(B, 1, C))
        x = x + self.mlp(self.norm(x))
        return x[:, 0]


class VisionTransformer(nn.Module):
    """ViT: patch embedding, prefix tokens, position encoding, blocks, norm, pooling, head.

    Headless (``num_classes=0``): ``forward`` returns the pooled, final-normed (and, for CLIP,
    projected) features; ``forward_tokens`` the final-normed patch tokens for dense heads.

    ``preprocessing``, ``labels`` and ``guessed`` are attached by the loaders (see edgevit.models.checkpoint).
    """

    def __init__(self, cfg: ViTConfig):
        super().__init__()
        self.config = cfg
        dim = cfg.embed_dim
        self.patch_embed = PatchEmbed(cfg)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim)) if cfg.class_token else None
        self.dist_token = nn.Parameter(torch.zeros(1, 1, dim)) if cfg.distilled else None
        self.reg_token = nn.Parameter(torch.zeros(1, cfg.reg_tokens, dim)) if cfg.reg_tokens else None
        if cfg.pos_embed == "learned":
            self.pos_embed = nn.Parameter(torch.zeros(1, cfg.pos_embed_len, dim))
        elif cfg.pos_embed == "sincos":
            prefix = cfg.pos_embed_len - cfg.num_patches
            self.register_buffer("pos_embed", sincos_pos_embed(dim, cfg.grid_size, prefix), persistent=False)
        else:  # "none": positions enter through RoPE in attention (DINOv3)
            self.pos_embed = None
        self.pos_drop = nn.Dropout(cfg.drop_rate)
        self.norm_pre = nn.LayerNorm(dim, eps=cfg.norm_eps) if cfg.pre_norm else nn.Identity()
        rates = [cfg.drop_path_rate * i / max(cfg.depth - 1, 1) for i in range(cfg.depth)]  # meta-device safe
        windows = [0 if i in cfg.global_blocks else cfg.window_size for i in range(cfg.depth)]  # SAM: windowed blocks
        self.blocks = nn.Sequential(*[Block(cfg, rate, window) for rate, window in zip(rates, windows)])
        self.pos_bias = RelPosBias(cfg.grid_size, cfg.num_heads) if cfg.rel_pos_bias == "shared" else None
        for block in self.blocks if self.pos_bias is not None else ():
            block.attn.shared_bias = (self.pos_bias,)
        self.rope = (RotaryEmbedding(cfg.rope, cfg.grid_size, cfg.head_dim, cfg.rope_theta, cfg.num_prefix_tokens)
                     if cfg.rope != "none" else None)  # fixed tables (any size: from the grid); every block's attention shares them
        for block in self.blocks if self.rope is not None else ():
            block.attn.rope = self.rope
        # SAM: the neck (ending in a LayerNorm) takes the final norm's place
        self.neck = sam_parts.Neck(dim, cfg.neck_dim) if cfg.neck_dim else None
        self.norm = nn.Identity() if cfg.fc_norm or cfg.neck_dim else nn.LayerNorm(dim, eps=cfg.norm_eps)
        self.attn_pool = AttentionPool(cfg) if cfg.pool == "map" else None
        self.fc_norm = nn.LayerNorm(cfg.pooled_dim, eps=cfg.norm_eps) if cfg.fc_norm else nn.Identity()
        self.proj = nn.Linear(cfg.pooled_dim, cfg.proj_dim, bias=False) if cfg.proj_dim else None
        self.head_drop = nn.Dropout(cfg.drop_rate)
        self.head, self.head_dist = self._heads(cfg)
        self.preprocessing = None
        self.labels: list[str] | None = None
        self.guessed: dict = {}  # config fields a loader guessed, {field: value}: not read from the checkpoint
        self._init_weights()

    def _init_weights(self) -> None:
        if isinstance(self.pos_embed, nn.Parameter):
            nn.init.trunc_normal_(self.pos_embed, std=0.02)
        for token in (self.cls_token, self.dist_token, self.reg_token):
            if token is not None:
                nn.init.normal_(token, std=1e-6)
        if self.attn_pool is not None:
            nn.init.trunc_normal_(self.attn_pool.latent, std=self.config.embed_dim**-0.5)
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
        if self.patch_embed.proj.bias is not None:
            nn.init.zeros_(self.patch_embed.proj.bias)

    @staticmethod
    def _heads(cfg: ViTConfig) -> tuple[nn.Module, nn.Module | None]:
        """The classifier on the features (Identity when headless), and DeiT's distillation head."""
        if not cfg.num_classes:
            return nn.Identity(), None
        head = nn.Linear(cfg.feature_dim, cfg.num_classes)
        return head, nn.Linear(cfg.feature_dim, cfg.num_classes) if cfg.pool == "cls_dist" else None

    def reset_classifier(self, num_classes: int) -> "VisionTransformer":
        """A fresh head of ``num_classes`` outputs (0: headless), everything else kept (fine-tuning)."""
        self.config = self.config.replace(num_classes=num_classes)
        self.head, self.head_dist = self._heads(self.config)
        for head in (self.head, self.head_dist):
            if isinstance(head, nn.Linear):
                nn.init.trunc_normal_(head.weight, std=0.02)
                nn.init.zeros_(head.bias)
        return self

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

    @property
    def num_prefix_tokens(self) -> int:
        return self.config.num_prefix_tokens

    @property
    def output_kind(self) -> OutputKind:
        """logits for a classifier, features for a headless model (num_classes=0)."""
        return self.config.output_kind

    def _check_input(self, x: torch.Tensor) -> None:
        cfg = self.config
        if cfg.dynamic_size != "none":
            if x.ndim != 4 or x.shape[1] != cfg.in_chans or x.shape[2] % cfg.patch_size or x.shape[3] % cfg.patch_size:
                raise ValueError(f"expected input of shape (batch, {cfg.in_chans}, H, W) with H and W multiples of the "
                                 f"patch size {cfg.patch_size}, got {tuple(x.shape)}")
            return
        if x.ndim != 4 or x.shape[1:] != (cfg.in_chans, cfg.img_size, cfg.img_size):
            raise ValueError(
                f"expected input of shape (batch, {cfg.in_chans}, {cfg.img_size}, {cfg.img_size}), "
                f"got {tuple(x.shape)}"
            )

    def position_table(self, grid: tuple) -> torch.Tensor | None:
        """The learned position table for a (rows, cols) patch grid: as stored, or with ``dynamic_size``
        resampled to the grid (prefix rows kept). At the stored grid the resampling is the identity
        (align_corners=False puts every sample on a source row), so no branch specializes the graph."""
        cfg = self.config
        if cfg.dynamic_size == "none" or self.pos_embed is None:
            return self.pos_embed
        prefix = cfg.pos_embed_len - cfg.num_patches
        head, table = self.pos_embed[:, :prefix], self.pos_embed[:, prefix:]
        table = table.reshape(1, cfg.grid_size, cfg.grid_size, -1).permute(0, 3, 1, 2)
        table = F.interpolate(table, size=grid, mode=cfg.dynamic_size, align_corners=False)
        return torch.cat([head, table.flatten(2).transpose(1, 2)], dim=1)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """All tokens (B, prefix + N, D) after the blocks and the final norm (timm's forward_features); SAM's: the
        neck's (B, N, neck_dim), timm's (B, neck_dim, H, W) flattened."""
        grid = (x.shape[-2] // self.config.patch_size, x.shape[-1] // self.config.patch_size)
        pos_embed = self.position_table(grid)
        if self.rope is not None:  # any size: RoPE tables from this grid (in a graph: the input's shape), else fixed
            self.rope.use_grid(grid if self.config.dynamic_size != "none" else None)
        if self.config.dynamic_size != "none" and (self.config.window_size or self.config.rel_pos_bias == "decomposed"):
            for block in self.blocks:  # SAM of any size: windows and relative positions of this grid
                block.attn.grid_hw = grid
        x = self.patch_embed(x)
        prefix = [t.expand(x.shape[0], -1, -1) for t in (self.cls_token, self.dist_token, self.reg_token)
                  if t is not None]
        if pos_embed is None:  # no absolute table: RoPE in attention (DINOv3)
            x = torch.cat([*prefix, x], dim=1)
        elif self.config.no_embed_class:  # the table covers the patches only
            x = torch.cat([*prefix, x + pos_embed], dim=1)
        else:
            x = torch.cat([*prefix, x], dim=1) + pos_embed
        x = self.blocks(self.norm_pre(self.pos_drop(x)))
        return self.norm(x) if self.neck is None else self.neck(x, grid)

    def pool(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        pool = self.config.pool
        patches = x if self.config.pool_include_prefix else x[:, self.num_prefix_tokens:]
        if pool == "cls":
            return x[:, 0]
        if pool == "mean":
            return patches.mean(dim=1)
        if pool == "map":
            return self.attn_pool(patches)  # timm: the prefix tokens take part only with pool_include_prefix
        if pool == "cls_mean":
            return torch.cat([x[:, 0], patches.mean(dim=1)], dim=-1)
        return x[:, 0], x[:, 1]  # cls_dist

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Pool, fc_norm, projection, then the head; ``pre_logits`` stops before the head."""
        pooled = self.pool(x)
        if isinstance(pooled, tuple):  # distilled: two tokens, two heads, averaged (eval)
            cls, dist = (self.head_drop(t) for t in pooled)
            if pre_logits or self.head_dist is None:
                return (cls + dist) / 2
            return (self.head(cls) + self.head_dist(dist)) / 2
        x = self.fc_norm(pooled)
        if self.proj is not None:
            x = self.proj(x)
        x = self.head_drop(x)
        return x if pre_logits else self.head(x)

    def forward_tokens(self, x: torch.Tensor) -> torch.Tensor:
        """Patch tokens (B, N, D) after the final norm, prefix tokens dropped: for dense heads."""
        self._check_input(x)
        return self.forward_features(x)[:, self.num_prefix_tokens:]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (B, num_classes), or for a headless model the features (B, feature_dim)."""
        self._check_input(x)
        return self.forward_head(self.forward_features(x))


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def macs_per_image(cfg: ViTConfig) -> int:
    """Multiply-accumulates of one forward pass (matmuls and the convolutions). A windowed block (SAM) attends
    over its padded windows and its decomposed relative positions cost two query-table products."""
    n, d, h = cfg.num_tokens, cfg.embed_dim, cfg.mlp_hidden
    patch = cfg.num_patches * d * cfg.in_chans * cfg.patch_size**2
    mlp = (3 if cfg.mlp != "mlp" else 2) * n * d * h  # SwiGLU: gate and value projections, then fc2
    per_block = n * d * 3 * d + n * d * d + mlp
    blocks = 0
    for index in range(cfg.depth):
        window = 0 if index in cfg.global_blocks else cfg.window_size
        side = window or cfg.grid_size
        attended = (-(-cfg.grid_size // window) * window) ** 2 if window else n  # padded to whole windows
        scores = 2 * attended * (side * side if window else n) * d
        rel_pos = 2 * attended * side * d if cfg.rel_pos_bias == "decomposed" else 0
        blocks += per_block + scores + rel_pos
    pool = (d * d + n * d * 2 * d + 2 * n * d + d * d + 2 * d * h) if cfg.pool == "map" else 0
    neck = cfg.num_patches * (d * cfg.neck_dim + 9 * cfg.neck_dim**2)
    heads = 2 if cfg.pool == "cls_dist" else 1
    head = cfg.pooled_dim * cfg.proj_dim + heads * cfg.feature_dim * cfg.num_classes
    return patch + blocks + pool + neck + head
