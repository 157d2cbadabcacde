"""How far a graph of dynamic height and width (`edgevit export --img-size MIN:MAX`) is from timm's
`dynamic_img_size=True` model at three sizes, for each way of resampling the position table.

    .venv/bin/python benchmarks/dynamic_size.py

A DINOv2-with-registers layout trained at 518 (random weights, depth 2, width 128: no download),
exported with `--img-size 224:518 --output-kind tokens`; ONNX Runtime's tokens against timm's with its
table resampled bilinearly without antialias (the graph's mode), bicubically without antialias, and
timm's default (bicubic with antialias). Prints max abs differences, one row per size (README,
"One graph, many input sizes").

Then the RoPE families, their rotation computed in the graph from the input's grid: DINOv3 (no table,
trained at 224, `--img-size 160:448`) and EVA-02 tiny (its table resampled too, `--img-size 168:448`), same
width and depth, at their own size, a non-square size and the largest."""

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


def _measure(label: str, ref, resampler, flags: list[str], size_range: str, sizes, modes: dict) -> None:
    """Export ``ref``'s state dict with ``--img-size size_range`` and print, per size, ONNX Runtime's tokens
    against timm's with ``resampler``'s module-level ``resample_abs_pos_embed`` set to each of ``modes``."""
    import onnxruntime as ort

    original = resampler.resample_abs_pos_embed
    with tempfile.TemporaryDirectory() as tmp:
        torch.save(ref.state_dict(), f"{tmp}/model.pth")
        subprocess.run([sys.executable, "-m", "edgevit", "export", f"{tmp}/model.pth", "-o", f"{tmp}/out", *flags,
                        "--img-size", size_range, "--output-kind", "tokens", "--json"], check=True, capture_output=True)
        session = ort.InferenceSession(f"{tmp}/out/model.onnx", providers=["CPUExecutionProvider"])
        for h, w in sizes:
            x = torch.randn(4, 3, h, w, generator=torch.Generator().manual_seed(h + w))
            got = session.run(None, {"images": x.numpy()})[0]
            row = {}
            try:
                for name, kwargs in modes.items():
                    resampler.resample_abs_pos_embed = functools.partial(original, **kwargs)
                    with torch.no_grad():
                        want = ref.forward_features(x)[:, ref.num_prefix_tokens:].numpy()
                    row[name] = f"{float(np.abs(got - want).max()):.2e}"
            finally:
                resampler.resample_abs_pos_embed = original
            print(label, f"{h}x{w}", json.dumps(row))


def main() -> None:
    import timm
    import timm.models.vision_transformer as tv

    sys.path.insert(0, str(ROOT))
    from tests.models.test_families import _randomize

    ref = _randomize(timm.create_model("vit_small_patch14_reg4_dinov2", pretrained=False, img_size=518, embed_dim=128,
                                       depth=2, num_heads=2, num_classes=0, dynamic_img_size=True))
    _measure("dinov2", ref, tv, ["--num-heads", "2"], "224:518", SIZES, MODES)
    rope_families()


# RoPE families: timm architecture, create_model size, the CLI's flags, the range and the sizes checked
ROPE_FAMILIES = {
    "dinov3": ("vit_small_patch16_dinov3", dict(img_size=224), ["--num-heads", "2", "--pool", "mean"], "160:448",
               [(224, 224), (160, 288), (448, 448)]),
    "eva02": ("eva02_tiny_patch14_224", {}, ["--num-heads", "2"], "168:448", [(224, 224), (168, 294), (448, 448)]),
}


def rope_families() -> None:
    import timm
    import timm.models.eva as eva

    from tests.models.test_families import _randomize

    for family, (arch, create, flags, size_range, sizes) in ROPE_FAMILIES.items():
        ref = _randomize(timm.create_model(arch, pretrained=False, embed_dim=128, depth=2, num_heads=2, num_classes=0,
                                           dynamic_img_size=True, **create))
        modes = ({"bilinear, no antialias": dict(interpolation="bilinear", antialias=False), "timm default": {}}
                 if family == "eva02" else {"no table": {}})
        _measure(family, ref, eva, flags, size_range, sizes, modes)


if __name__ == "__main__":
    main()
