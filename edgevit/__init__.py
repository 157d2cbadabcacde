"""edgevit: Vision Transformers from PyTorch to TensorRT engines, verified at every step.

``import edgevit`` imports neither onnxruntime nor tensorrt; those load where they are used.
"""

from .models import (
    ViTConfig,
    VisionTransformer,
    create_model,
    list_variants,
    load_model,
    save_model,
)

__version__ = "0.1.0"

__all__ = ["ViTConfig", "VisionTransformer", "create_model", "list_variants", "load_model", "save_model", "__version__"]
