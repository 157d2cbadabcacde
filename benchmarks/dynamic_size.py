"""How far a graph of dynamic height and width (`edgevit export --img-size MIN:MAX`) is from timm's
`dynamic_img_size=True` model at three sizes, for each way of resampling the position table.

    .venv/bin/python benchmarks/dynamic_size.py

A DINOv2-with-registers layout trained at 518 (random weights, depth 2, width 128: no download),
exported with `--img-size 224:518 --output-kind tokens`; ONNX Runtime's tokens against timm's with its
table resampled bilinearly without antialias (the graph's mode), bicubically without antialias, and
timm's default (bicubic with antialias). Prints max abs differences, one row per size (README,
"One graph, many input sizes")."""

from __future__ import annotations

import functools
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
MODES = {"bilinear, no antialias": dict(interpolation="bilinear", antialias=False),
         "bicubic, no antialias": dict(interpolation="bicubic", antialias=False),
         "timm default (bicubic, antialias)": {}}
SIZES = [(224, 224), (364, 490), (518, 518)]


def main() -> None:
    import onnxruntime as ort
    import timm
    import timm.models.vision_transformer as tv

    sys.path.insert(0, str(ROOT))
    from tests.models.test_families import _randomize

    original = tv.resample_abs_pos_embed
    ref = _randomize(timm.create_model("vit_small_patch14_reg4_dinov2", pretrained=False, img_size=518, embed_dim=128,
                                       depth=2, num_heads=2, num_classes=0, dynamic_img_size=True))
    with tempfile.TemporaryDirectory() as tmp:
        torch.save(ref.state_dict(), f"{tmp}/dinov2.pth")
        subprocess.run([sys.executable, "-m", "edgevit", "export", f"{tmp}/dinov2.pth", "-o", f"{tmp}/out",
                        "--num-heads", "2", "--img-size", "224:518", "--output-kind", "tokens", "--json"],
                       check=True, capture_output=True)
        session = ort.InferenceSession(f"{tmp}/out/model.onnx", providers=["CPUExecutionProvider"])
        for h, w in SIZES:
            x = torch.randn(4, 3, h, w, generator=torch.Generator().manual_seed(h + w))
            got = session.run(None, {"images": x.numpy()})[0]
            row = {}
            for name, kwargs in MODES.items():
                tv.resample_abs_pos_embed = functools.partial(original, **kwargs)
                with torch.no_grad():
                    want = ref.forward_features(x)[:, ref.num_prefix_tokens:].numpy()
                row[name] = f"{float(np.abs(got - want).max()):.2e}"
            tv.resample_abs_pos_embed = original
            print(f"{h}x{w}", json.dumps(row))


if __name__ == "__main__":
    main()
