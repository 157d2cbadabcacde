"""Named ViT variants with timm-compatible configs and their preprocessing."""

from __future__ import annotations

from dataclasses import dataclass

from ..data.preprocess import (
    CLIP_MEAN,
    CLIP_STD,
    IMAGENET_MEAN,
    IMAGENET_STD,
    INCEPTION_MEAN,
    INCEPTION_STD,
    Preprocessing,
)
from .vit import ViTConfig


@dataclass(frozen=True)
class Variant:
    name: str
    config: ViTConfig
    preprocessing: Preprocessing
    description: str = ""


_VARIANTS: dict[str, Variant] = {}


def register(name: str, config: ViTConfig, preprocessing: Preprocessing, description: str = "") -> Variant:
    """Add a named variant. Names are unique: registering one twice is refused."""
    if name in _VARIANTS:
        raise ValueError(f"a model variant named {name!r} is already registered; pick another name")
    variant = Variant(name, config, preprocessing, description)
    _VARIANTS[name] = variant
    return variant


def get_variant(name: str) -> Variant:
    try:
        return _VARIANTS[name]
    except KeyError:
        raise ValueError(f"unknown model variant {name!r}; known variants: {list_variants()}") from None


def list_variants() -> list[str]:
    return sorted(_VARIANTS)


def _imagenet(size: int, mean, std, crop_pct: float) -> Preprocessing:
    return Preprocessing(input_size=(3, size, size), mean=mean, std=std, crop_pct=crop_pct)


# timm's ViT (augreg) weights use mean = std = 0.5 and crop 0.9; DeiT uses ImageNet stats and 0.875.
_VIT = _imagenet(224, INCEPTION_MEAN, INCEPTION_STD, 0.9)
_DEIT = _imagenet(224, IMAGENET_MEAN, IMAGENET_STD, 0.875)
_WIDTHS = {"tiny": (192, 12, 3), "small": (384, 12, 6), "base": (768, 12, 12), "large": (1024, 24, 16)}

for _size, (_dim, _depth, _heads) in _WIDTHS.items():
    register(
        f"vit_{_size}_patch16_224",
        ViTConfig(embed_dim=_dim, depth=_depth, num_heads=_heads),
        _VIT,
        f"ViT-{_size[0].upper()}/16 at 224 (timm vit_{_size}_patch16_224)",
    )
    if _size != "large":
        register(
            f"deit_{_size}_patch16_224",
            ViTConfig(embed_dim=_dim, depth=_depth, num_heads=_heads),
            _DEIT,
            f"DeiT-{_size[0].upper()}/16 at 224 (timm deit_{_size}_patch16_224)",
        )
register(
    "vit_base_patch32_224",
    ViTConfig(patch_size=32, embed_dim=768, depth=12, num_heads=12),
    _VIT,
    "ViT-B/32 at 224 (timm vit_base_patch32_224)",
)
register(
    "digits-tiny",
    # mlp_ratio 2 (MLP width 128), not timm's 4: more accurate on digits in about the same time
    # (the runs are in benchmarks/README.md, "Training defaults").
    ViTConfig(img_size=8, patch_size=2, in_chans=1, num_classes=10, embed_dim=64, depth=4, num_heads=4,
              mlp_ratio=2.0),
    # scikit-learn's digits are 8x8 grey levels 0..16; mean/std measured on the full set.
    Preprocessing(input_size=(1, 8, 8), mean=(0.3053,), std=(0.3760,), interpolation="bilinear",
                  crop_pct=1.0, pixel_max=16.0),
    "the embedded default: 8x8 handwritten digits (scikit-learn), patch 2, dim 64, depth 4, heads 4, MLP 2x",
)

# The families people deploy, as timm names them (arch= for their state dicts: what the keys cannot
# tell, heads and quick-GELU, comes from here). Headless where the weights are: num_classes=0.
_DINOV2 = _imagenet(518, IMAGENET_MEAN, IMAGENET_STD, 1.0)
for _size, (_dim, _depth, _heads) in {"small": (384, 12, 6), "base": (768, 12, 12), "large": (1024, 24, 16)}.items():
    _S = _size[0].upper()
    _dino = ViTConfig(img_size=518, patch_size=14, num_classes=0, embed_dim=_dim, depth=_depth, num_heads=_heads,
                      init_values=1e-5)
    register(f"vit_{_size}_patch14_dinov2", _dino, _DINOV2,
             f"DINOv2-{_S}/14 backbone at 518, headless (timm vit_{_size}_patch14_dinov2, HF facebook/dinov2-{_size})")
    register(f"vit_{_size}_patch14_reg4_dinov2", _dino.replace(reg_tokens=4, no_embed_class=True), _DINOV2,
             f"DINOv2-{_S}/14 with 4 registers at 518, headless (timm vit_{_size}_patch14_reg4_dinov2)")
register(
    "dinov2-small-224",
    get_variant("vit_small_patch14_dinov2").config.replace(img_size=224),
    _imagenet(224, IMAGENET_MEAN, IMAGENET_STD, 0.875),
    "DINOv2-S/14 as deployed at 224 (257 tokens), headless: HF facebook/dinov2-small's processor size",
)
_CLIP = ViTConfig(num_classes=0, proj_dim=512, pre_norm=True, norm_eps=1e-5)
for _patch in (16, 32):
    _clip_pre = _imagenet(224, CLIP_MEAN, CLIP_STD, 0.9)
    register(f"vit_base_patch{_patch}_clip_224", _CLIP.replace(patch_size=_patch), _clip_pre,
             f"CLIP ViT-B/{_patch} image tower (OpenCLIP, GELU), image embedding 512 "
             f"(timm vit_base_patch{_patch}_clip_224)")
    register(f"vit_base_patch{_patch}_clip_quickgelu_224", _CLIP.replace(patch_size=_patch, act="quick_gelu"),
             _clip_pre, f"OpenAI CLIP ViT-B/{_patch} image tower (quick-GELU), image embedding 512 "
             f"(timm vit_base_patch{_patch}_clip_quickgelu_224, HF openai/clip-vit-base-patch{_patch})")
register(
    "vit_base_patch16_siglip_224",
    ViTConfig(num_classes=0, class_token=False, pool="map"),
    _imagenet(224, INCEPTION_MEAN, INCEPTION_STD, 0.9),
    "SigLIP ViT-B/16 image tower, attention-pool head, headless (timm vit_base_patch16_siglip_224)",
)
for _size, (_dim, _depth, _heads) in _WIDTHS.items():
    if _size != "large":
        register(
            f"deit_{_size}_distilled_patch16_224",
            ViTConfig(embed_dim=_dim, depth=_depth, num_heads=_heads, distilled=True, pool="cls_dist"),
            _DEIT,
            f"DeiT-{_size[0].upper()}/16 distilled: class + distillation heads averaged "
            f"(timm deit_{_size}_distilled_patch16_224)",
        )
register(
    "vit_medium_patch16_gap_256",
    ViTConfig(img_size=256, embed_dim=512, depth=12, num_heads=8, qkv_bias=False, init_values=1e-6, class_token=False,
              pool="mean"),
    _imagenet(256, INCEPTION_MEAN, INCEPTION_STD, 0.95),
    "ViT-M/16 global average pool, LayerScale, no class token (timm vit_medium_patch16_gap_256)",
)
