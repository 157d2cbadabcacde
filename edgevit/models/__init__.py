"""The ViT, its named variants and checkpoint loading."""

from .checkpoint import create_model, load_model, save_model
from .registry import get_variant, list_variants, register
from .vit import ViTConfig, VisionTransformer, count_params, macs_per_image

__all__ = [
    "ViTConfig", "VisionTransformer", "count_params", "create_model", "get_variant",
    "list_variants", "load_model", "macs_per_image", "register", "save_model",
]
