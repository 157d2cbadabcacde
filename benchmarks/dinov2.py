"""DINOv2-S/14 at 224 px: PyTorch eager vs edgevit's export on ONNX Runtime, fp32 and int8, in one run.

    python benchmarks/dinov2.py                          # 2 threads, 20 runs at batch 1, 5 at batch 8
    python benchmarks/dinov2.py --runs 10 --runs-batch8 3 --json

The model is timm's ``vit_small_patch14_dinov2`` built at ``img_size=224`` with random weights in
the real key layout (LayerScale gammas set to 0.1 instead of timm's 1e-5 init, so that the blocks
matter as they do in trained weights), saved as a timm state dict and loaded through
``edgevit.load_model``: a headless model whose output is the features (the class token after the
final norm, 384-d; 256 patches + 1 class token = 257 tokens). It is exported with ``edgevit export``'s
library call (decomposed attention) and quantized to int8 with ``edgevit quantize``'s (fp32 base:
ONNX Runtime on a CPU runs fp16 through casts; percentile calibration on synthetic images; the gate
judges the features by cosine and k-NN agreement with the fp32 graph, there are no labels).

Every path is timed in this one process, in blocks whose order cycles three times
(``benchmarks/_timing.py``); the table gives medians, the ratio to PyTorch eager (above 1: faster),
and each path's features against eager's on 16 synthetic images (lowest and mean cosine).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

# passive OpenMP waiting: the conservative eager baseline on a shared machine (see export_cpu.py)
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _timing import blocks as _blocks, ort_session as _ort_session  # noqa: E402

TIMM_NAME = "vit_small_patch14_dinov2"
IMG = 224
LAYERSCALE = 0.1


def synthetic_images(n: int, seed: int) -> np.ndarray:
    """(n, 224, 224, 3) uint8: smooth random colour fields plus pixel noise (not natural images,
    but not white noise either: neighbouring patches are correlated)."""
    gen = torch.Generator().manual_seed(seed)
    low = torch.rand(n, 3, 7, 7, generator=gen)
    img = torch.nn.functional.interpolate(low, size=(IMG, IMG), mode="bicubic", align_corners=False)
    img = img + 0.08 * torch.randn(n, 3, IMG, IMG, generator=gen)
    return (img.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).contiguous().numpy()


def cosines(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    a, b = a.reshape(len(a), -1).astype(np.float64), b.reshape(len(b), -1).astype(np.float64)
    cos = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    return float(cos.min()), float(cos.mean())


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=20, help="timed runs at batch 1")
    ap.add_argument("--runs-batch8", type=int, default=5, help="timed runs at batch 8")
    ap.add_argument("--warmup", type=int, default=2, help="untimed calls before each block of timed ones")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--calib-samples", type=int, default=64)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="edgevit-dinov2-") as tmp:
        return run(args, Path(tmp))


def run(args, tmp: Path) -> int:
    import timm
    from safetensors.torch import save_file

    import edgevit
    from edgevit.data.preprocess import preprocess_array
    from edgevit.export import ExportConfig, export_onnx
    from edgevit.precision import QuantizeConfig, quantize

    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    log = (lambda *a: None) if args.json else (lambda *a: print(*a, file=sys.stderr))

    # 1. timm's DINOv2-S/14 at 224, random weights in the real layout, as a state dict file
    net = timm.create_model(TIMM_NAME, pretrained=False, img_size=IMG).eval()
    with torch.no_grad():
        for name, p in net.named_parameters():
            if name.endswith(("ls1.gamma", "ls2.gamma")):
                p.fill_(LAYERSCALE)
    weights = tmp / f"{TIMM_NAME}.safetensors"
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(weights))

    # 2. loaded through edgevit (heads given: a state dict does not record them)
    model = edgevit.load_model(weights, num_heads=6)
    cfg = model.config
    images = synthetic_images(16, seed=1)
    x16 = torch.from_numpy(preprocess_array(images.transpose(0, 3, 1, 2), model.preprocessing))
    with torch.inference_mode():
        eager_feats = model(x16).numpy()
        timm_diff = float(np.abs(net(x16).numpy() - eager_feats).max())
    log(f"loaded: {cfg.num_tokens} tokens, output {model.output_kind} {tuple(eager_feats.shape[1:])}; "
        f"max |edgevit - timm| {timm_diff:.2e}")

    # 3. export (fp32) and quantize (int8, fp32 base), as `edgevit export` / `edgevit quantize` do
    outdir = tmp / "out"
    t = time.perf_counter()
    exported = export_onnx(weights, outdir, ExportConfig(batch=(1, 1, 8)), model_overrides={"num_heads": 6})
    export_s = time.perf_counter() - t
    calib, held_out = tmp / "calib.npy", tmp / "gate.npy"
    np.save(calib, synthetic_images(args.calib_samples, seed=2))
    np.save(held_out, synthetic_images(32, seed=3))
    t = time.perf_counter()
    quantized = quantize(outdir, QuantizeConfig(precisions=("int8",), int8_base="fp32", calib_data=str(calib),
                                                calib_samples=args.calib_samples, calib_batch=16, data=str(held_out),
                                                progress=False))
    quantize_s = time.perf_counter() - t
    gate = quantized.entries["int8"]["gate"]
    log(f"exported in {export_s:.1f} s (max abs vs PyTorch {exported.verification.get('max_abs', float('nan')):.2e}); "
        f"int8 in {quantize_s:.1f} s, gate {gate.verdict.value}")

    # 4. time eager, ORT fp32 and ORT int8 in blocks; compare features with eager's
    x1, x8 = x16[:1].clone(), x16[:8].clone()
    paths_b1 = {"PyTorch eager (SDPA)": lambda: model(x1)}
    paths_b8 = {"PyTorch eager (SDPA)": lambda: model(x8)}
    feats = {"PyTorch eager (SDPA)": eager_feats}
    graphs = {"ORT fp32": outdir / "model.onnx", "ORT int8 (fp32 base)": outdir / quantized.entries["int8"]["path"]}
    for key, path in graphs.items():
        s = _ort_session(path, args.threads)
        name = s.get_inputs()[0].name
        paths_b1[key] = (lambda s=s, a=x1.numpy(): s.run(None, {name: a}))
        paths_b8[key] = (lambda s=s, a=x8.numpy(): s.run(None, {name: a}))
        feats[key] = np.concatenate([s.run(None, {name: x16[i:i + 8].numpy()})[0] for i in (0, 8)])
    load_before = os.getloadavg()
    with torch.inference_mode():
        b1 = _blocks(paths_b1, args.runs, args.warmup)
        b8 = _blocks(paths_b8, args.runs_batch8, 1)
    load_after = os.getloadavg()

    base1, base8 = b1["PyTorch eager (SDPA)"][0], b8["PyTorch eager (SDPA)"][0]
    rows = []
    for key in paths_b1:
        cmin, cmean = cosines(feats[key], eager_feats)
        rows.append({"path": key, "batch1_ms": round(b1[key][0], 2), "speedup_b1": round(base1 / b1[key][0], 2),
                     "batch8_ms": round(b8[key][0], 2), "speedup_b8": round(base8 / b8[key][0], 2),
                     "cos_min_vs_eager": round(cmin, 6), "cos_mean_vs_eager": round(cmean, 6)})
    import onnxruntime

    meta = {"model": f"DINOv2-S/14 at {IMG} (timm {TIMM_NAME}, random weights, LayerScale {LAYERSCALE}), "
                     f"{cfg.num_tokens} tokens, features {cfg.embed_dim}-d",
            "max_abs_edgevit_vs_timm": timm_diff, "export_s": round(export_s, 1), "quantize_s": round(quantize_s, 1),
            "int8_gate": {k: gate.to_dict().get(k) for k in ("verdict", "cosine_min", "cosine_mean", "agreement",
                                                             "agreement_metric")},
            "torch": torch.__version__, "onnxruntime": onnxruntime.__version__, "timm": timm.__version__,
            "threads": args.threads, "runs_batch1": args.runs, "runs_batch8": args.runs_batch8,
            "cpu": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
            "load_average_before_after": [round(load_before[0], 2), round(load_after[0], 2)]}
    from edgevit.bench.measure import cpu_isa, int8_kernel_note

    meta["cpu_isa"], meta["int8_kernels"] = cpu_isa(), int8_kernel_note(cpu_isa())  # int8 rows: ORT's kernels
    if args.json:
        print(json.dumps({"meta": meta, "rows": rows}, indent=2))
        return 0
    print(f"# {meta['model']}; torch {meta['torch']}, onnxruntime {meta['onnxruntime']}, {args.threads} threads; "
          f"medians of {args.runs} (batch 1) / {args.runs_batch8} (batch 8) runs in 3 cycles of blocks; "
          f"load average {meta['load_average_before_after']} (before/after timing) on {meta['cpus']} CPUs")
    print(f"# edgevit vs timm eager: max abs {timm_diff:.2e}; int8 gate: {meta['int8_gate']}")
    print("| path | b1 ms | x eager | b8 ms | x eager | cos min vs eager | cos mean |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['path']} | {r['batch1_ms']:.1f} | {r['speedup_b1']:.2f} | {r['batch8_ms']:.1f} | "
              f"{r['speedup_b8']:.2f} | {r['cos_min_vs_eager']:.6f} | {r['cos_mean_vs_eager']:.6f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
