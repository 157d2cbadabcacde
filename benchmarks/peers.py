"""edgevit against what a user would otherwise pick, measured in one run on one machine.

    python benchmarks/peers.py                                   # trains digits-tiny first (~1.5 min)
    python benchmarks/peers.py --checkpoint runs/x/best.safetensors --runs 20
    python benchmarks/peers.py --skip-deit --json

Two models: a trained digits-tiny (``--checkpoint``, or trained here for ``--epochs``) with
top-1 on the bundled digits test split, and a DeiT-Small-shaped model with random weights
(``--deit-depth`` blocks; 12 = DeiT-Small). For each, the same weights run as:

- edgevit PyTorch eager (SDPA attention) and edgevit's ONNX export on ONNX Runtime (fp32);
- edgevit's precision graphs (the issue-4 benchmark): fp16, bf16 (CPU emulation: accuracy only),
  int8 on an fp32 base (the CPU speed target: INT8 <= 0.6x fp32 at batch 1) and on the fp16 base
  edgevit ships for TensorRT, fp8 (accuracy only; ORT CPU has no fp8 math);
- timm ``deit_small_patch16_224`` (pretrained=False, shapes adapted; edgevit's state dict loads
  into it, names follow timm) and transformers ``ViTForImageClassification`` (matching config,
  weights mapped) in PyTorch eager, when installed;
- plain ``torch.onnx.export(..., dynamo=True)`` of the timm model (or, without timm, of the
  edgevit model) on ONNX Runtime with default session settings (threads set);
- ONNX Runtime ``quantize_static`` with default settings (QDQ, MinMax, per-tensor) on that plain
  export, calibrated on digits train images (DeiT shapes: random images).

Timing: median wall time at batch 1 of ``--runs`` calls (batch 8: a third as many) after
``--warmup`` calls, taken in blocks whose order cycles three times (``_timing.blocks``),
``--threads`` CPU threads for every runtime. ``x fp32`` is a path's median over edgevit's ONNX
Runtime fp32 median (above 1: slower). Targets (issue 4): INT8 at batch 1 <= 0.6x fp32; top-1
drop on digits <= 0.5 points for INT8, <= 0.3 for FP8 and FP16.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import platform
import sys
import tempfile
import time
import warnings
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads; see export_cpu.py

import numpy as np  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _timing import blocks, ort_session as _ort_session  # noqa: E402


# ------------------------------------------------------------------------------ helpers
def _quiet():
    import logging

    logging.getLogger().setLevel(logging.ERROR)
    stack = contextlib.ExitStack()
    stack.enter_context(warnings.catch_warnings())
    warnings.simplefilter("ignore")
    stack.enter_context(contextlib.redirect_stdout(io.StringIO()))
    stack.enter_context(contextlib.redirect_stderr(io.StringIO()))
    return stack


def _timm_model(cfg, state: dict):
    import timm

    m = timm.create_model("deit_small_patch16_224", pretrained=False, img_size=cfg.img_size,
                          patch_size=cfg.patch_size, in_chans=cfg.in_chans, num_classes=cfg.num_classes,
                          embed_dim=cfg.embed_dim, depth=cfg.depth, num_heads=cfg.num_heads,
                          mlp_ratio=cfg.mlp_ratio).eval()
    missing, unexpected = m.load_state_dict(state, strict=False)
    note = "same weights" if not missing and not unexpected else f"weights NOT loaded: missing {missing[:3]}"
    return m, note


def _timm_to_hf(state: dict, depth: int, hf_keys) -> dict:
    """timm (= edgevit) names -> ViTForImageClassification names; qkv split into q, k, v.
    Both transformers layouts: 4.x (``vit.encoder.layer.N.attention.attention.query``) and 5.x
    (``vit.layers.N.attention.q_proj``, ``mlp.fc1``)."""
    v5 = any(k.startswith("vit.layers.") for k in hf_keys)
    out = {"vit.embeddings.cls_token": state["cls_token"], "vit.embeddings.position_embeddings": state["pos_embed"],
           "vit.embeddings.patch_embeddings.projection.weight": state["patch_embed.proj.weight"],
           "vit.embeddings.patch_embeddings.projection.bias": state["patch_embed.proj.bias"],
           "vit.layernorm.weight": state["norm.weight"], "vit.layernorm.bias": state["norm.bias"],
           "classifier.weight": state["head.weight"], "classifier.bias": state["head.bias"]}
    if v5:
        names = {"q": "attention.q_proj", "k": "attention.k_proj", "v": "attention.v_proj", "o": "attention.o_proj",
                 "fc1": "mlp.fc1", "fc2": "mlp.fc2", "prefix": "vit.layers.{i}."}
    else:
        names = {"q": "attention.attention.query", "k": "attention.attention.key", "v": "attention.attention.value",
                 "o": "attention.output.dense", "fc1": "intermediate.dense", "fc2": "output.dense",
                 "prefix": "vit.encoder.layer.{i}."}
    for i in range(depth):
        b, h = f"blocks.{i}.", names["prefix"].format(i=i)
        for kind in ("weight", "bias"):
            q, k, v = state[b + f"attn.qkv.{kind}"].chunk(3, dim=0)
            out[h + f"{names['q']}.{kind}"] = q
            out[h + f"{names['k']}.{kind}"] = k
            out[h + f"{names['v']}.{kind}"] = v
            out[h + f"{names['o']}.{kind}"] = state[b + f"attn.proj.{kind}"]
            out[h + f"layernorm_before.{kind}"] = state[b + f"norm1.{kind}"]
            out[h + f"layernorm_after.{kind}"] = state[b + f"norm2.{kind}"]
            out[h + f"{names['fc1']}.{kind}"] = state[b + f"mlp.fc1.{kind}"]
            out[h + f"{names['fc2']}.{kind}"] = state[b + f"mlp.fc2.{kind}"]
    return out


def _hf_model(cfg, state: dict):
    from transformers import ViTConfig as HFConfig
    from transformers import ViTForImageClassification

    hf_cfg = HFConfig(image_size=cfg.img_size, patch_size=cfg.patch_size, num_channels=cfg.in_chans,
                      hidden_size=cfg.embed_dim, num_hidden_layers=cfg.depth, num_attention_heads=cfg.num_heads,
                      intermediate_size=int(cfg.embed_dim * cfg.mlp_ratio), hidden_act="gelu",
                      layer_norm_eps=cfg.norm_eps, qkv_bias=cfg.qkv_bias, num_labels=cfg.num_classes,
                      attn_implementation="sdpa")
    m = ViTForImageClassification(hf_cfg).eval()
    missing, unexpected = m.load_state_dict(_timm_to_hf(state, cfg.depth, m.state_dict().keys()), strict=False)
    note = "same weights" if not missing and not unexpected else f"weights NOT loaded: missing {missing[:3]}"

    class Logits(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, x):
            return self.inner(pixel_values=x).logits

    return Logits(m).eval(), note


def _plain_export(model, cfg, path: Path) -> Path:
    x = torch.randn(2, cfg.in_chans, cfg.img_size, cfg.img_size)
    batch = torch.export.Dim("batch", min=1, max=1024)
    with _quiet():
        torch.onnx.export(model, (x,), str(path), dynamo=True, input_names=["images"], output_names=["logits"],
                          dynamic_shapes={"x": {0: batch}}, external_data=False)
    return path


def _quantize_static(src: Path, dst: Path, calib: np.ndarray) -> Path:
    from onnxruntime.quantization import CalibrationDataReader, quantize_static

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.items = iter([{"images": calib[i:i + 1]} for i in range(len(calib))])

        def get_next(self):
            return next(self.items, None)

    with _quiet():
        quantize_static(str(src), str(dst), Reader())  # default settings: QDQ, MinMax, per-tensor
    return dst


def _edgevit_precision(fp32_path: Path, workdir: Path, calib: np.ndarray, notes: list) -> dict:
    """edgevit's precision graphs of ``fp32_path``: name -> ONNX path runnable on ORT CPU.

    int8 is built twice: on an fp32 base (what ORT CPU runs fast) and on the fp16 base edgevit
    ships for TensorRT by default. The bf16 graph runs through edgevit's CPU emulation (fp32
    compute with bf16 rounding) and fp8 through ORT's fp8 Q/DQ: both give accuracy here, and
    their CPU times say nothing about a GPU.
    """
    import onnx

    from edgevit.precision import PrecisionRecipe, build_precision_graph
    from edgevit.precision.calibration import CalibrationConfig, CalibrationData, calibrate
    from edgevit.runtime.bf16_emulation import emulate_bf16

    data = CalibrationData(images=calib, description="peers.py calibration images", batch_size=min(32, len(calib)))
    with _quiet():
        amax = calibrate(fp32_path, data, CalibrationConfig(), progress=False).amax
    recipes = {"edgevit ORT fp16": PrecisionRecipe("fp16"),
               "edgevit ORT bf16 (CPU emulation)": PrecisionRecipe("bf16"),
               "edgevit ORT int8 (fp32 base)": PrecisionRecipe("int8", base="fp32"),
               "edgevit ORT int8 (fp16 base)": PrecisionRecipe("int8", base="fp16"),
               "edgevit ORT fp8 (fp16 base)": PrecisionRecipe("fp8", base="fp16")}
    out = {}
    for name, recipe in recipes.items():
        try:
            proto = build_precision_graph(fp32_path, recipe, amax=amax)
            if recipe.precision == "bf16":
                proto = emulate_bf16(proto)
            path = workdir / (name.split()[2] + ("_fp32base" if "fp32 base" in name else "") + ".onnx")
            onnx.save(proto, str(path))
            out[name] = path
        except Exception as exc:  # report and go on
            notes.append(f"{name} skipped: {type(exc).__name__}: {str(exc)[:200]}")
    return out


def _top1(fn, images: np.ndarray, labels: np.ndarray, batch: int = 64) -> float:
    preds = []
    for i in range(0, len(images), batch):
        preds.append(np.asarray(fn(images[i:i + batch])).argmax(1))
    return float((np.concatenate(preds) == labels).mean())


# ------------------------------------------------------------------------------ one model
def bench_model(title: str, model, workdir: Path, args, images=None, labels=None, calib=None) -> dict:
    from edgevit.export import ExportConfig, export_onnx

    cfg = model.config
    model = model.float().eval()
    model.set_attn_impl("sdpa")
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    notes: list[str] = []
    workdir.mkdir(parents=True, exist_ok=True)
    with _quiet():
        res = export_onnx(model, workdir / "edgevit", ExportConfig(batch=(1, 1, 64), verify=False, lint=False),
                          force=True)
    onnx_paths = {"edgevit ORT fp32": res.onnx_path}
    torch_models = {"edgevit eager": model}
    plain_src = model
    try:
        tm, note = _timm_model(cfg, state)
        torch_models["timm eager"] = tm
        plain_src = tm
        notes.append(f"timm: {note}")
    except Exception as exc:
        notes.append(f"timm skipped: {type(exc).__name__}: {str(exc)[:150]}")
    try:
        hm, note = _hf_model(cfg, state)
        torch_models["transformers eager"] = hm
        notes.append(f"transformers: {note}")
    except Exception as exc:
        notes.append(f"transformers skipped: {type(exc).__name__}: {str(exc)[:150]}")
    plain_name = "torch.onnx dynamo (" + ("timm" if plain_src is not model else "edgevit") + ") ORT fp32"
    try:
        plain = _plain_export(plain_src, cfg, workdir / "plain.onnx")
        onnx_paths[plain_name] = plain
        shape = (cfg.in_chans, cfg.img_size, cfg.img_size)
        calib_x = calib if calib is not None else np.random.default_rng(0).standard_normal(
            (args.calib_samples, *shape)).astype(np.float32)
        onnx_paths["ORT quantize_static int8 (defaults)"] = _quantize_static(plain, workdir / "plain.int8.onnx",
                                                                             calib_x)
    except Exception as exc:
        notes.append(f"plain export / quantize_static failed: {type(exc).__name__}: {str(exc)[:200]}")
        calib_x = calib
    shape = (cfg.in_chans, cfg.img_size, cfg.img_size)
    if calib_x is None:
        calib_x = np.random.default_rng(0).standard_normal((args.calib_samples, *shape)).astype(np.float32)
    onnx_paths.update(_edgevit_precision(res.onnx_path, workdir, calib_x, notes))

    sessions = {}
    for name, path in onnx_paths.items():
        try:
            sessions[name] = _ort_session(path, args.threads)
        except Exception as exc:
            notes.append(f"{name}: ONNX Runtime could not load it: {str(exc)[:150]}")
    inputs = {b: torch.randn(b, *shape) for b in (1, 8)}
    calls: dict[int, dict] = {1: {}, 8: {}}
    for b, x in inputs.items():
        for name, m in torch_models.items():
            calls[b][name] = (lambda m=m, x=x: m(x))
        for name, s in sessions.items():
            calls[b][name] = (lambda s=s, a=x.numpy(): s.run(None, {s.get_inputs()[0].name: a}))
    with torch.inference_mode():
        med1 = blocks(calls[1], args.runs, args.warmup)
        med8 = blocks(calls[8], max(3, args.runs // 3), 1)
        top1 = {}
        if images is not None:
            for name, m in torch_models.items():
                top1[name] = _top1(lambda x, m=m: m(torch.from_numpy(x)).numpy(), images, labels)
            for name, s in sessions.items():
                top1[name] = _top1(lambda x, s=s: s.run(None, {s.get_inputs()[0].name: x})[0], images, labels)
    base1, base8 = med1.get("edgevit ORT fp32", (None,))[0], med8.get("edgevit ORT fp32", (None,))[0]
    rows = []
    for name in med1:
        ms1, ms8 = med1[name][0], med8[name][0]
        rows.append({"path": name, "batch1_ms": round(ms1, 3), "batch8_ms": round(ms8, 3),
                     "x_edgevit_b1": round(ms1 / base1, 2) if base1 else None,
                     "x_edgevit_b8": round(ms8 / base8, 2) if base8 else None,
                     "top1": None if name not in top1 else round(top1[name], 4)})
    return {"model": title, "rows": rows, "notes": notes}


def _print(result: dict) -> None:
    print(f"\n## {result['model']}")
    print(f"{'path':40s} {'b1 ms':>9s} {'x fp32':>7s} {'b8 ms':>9s} {'x fp32':>7s} {'top-1':>7s} {'drop':>6s}")
    base = next((r["top1"] for r in result["rows"] if r["path"] == "edgevit ORT fp32"), None)
    for r in result["rows"]:
        t = "-" if r["top1"] is None else f"{r['top1']:.4f}"
        d = "-" if r["top1"] is None or base is None else f"{(base - r['top1']) * 100:+.2f}"
        x1 = "-" if r["x_edgevit_b1"] is None else f"{r['x_edgevit_b1']:.2f}"
        x8 = "-" if r["x_edgevit_b8"] is None else f"{r['x_edgevit_b8']:.2f}"
        print(f"{r['path']:40s} {r['batch1_ms']:9.3f} {x1:>7s} {r['batch8_ms']:9.3f} {x8:>7s} {t:>7s} {d:>6s}")
    for n in result["notes"]:
        print(f"  note: {n}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", help="a trained digits-tiny checkpoint (default: train one here)")
    ap.add_argument("--epochs", type=int, default=None, help="epochs when training digits-tiny here (default: edgevit's)")
    ap.add_argument("--runs", type=int, default=20, help="timed calls per path at batch 1")
    ap.add_argument("--warmup", type=int, default=3, help="untimed calls before each block")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--calib-samples", type=int, default=512, help="calibration images for the int8/fp8 paths")
    ap.add_argument("--deit-depth", type=int, default=12, help="blocks of the DeiT-Small-shaped model")
    ap.add_argument("--skip-deit", action="store_true")
    ap.add_argument("--skip-digits", action="store_true")
    ap.add_argument("--workdir", help="keep exported files here (default: a temporary directory)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)

    from edgevit.data import load_dataset
    from edgevit.models import load_model
    from edgevit.models.vit import ViTConfig, VisionTransformer

    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    tmp = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="edgevit-peers-"))
    results = []
    if not args.skip_digits:
        ckpt = args.checkpoint
        if ckpt is None:
            from edgevit.train import TrainConfig, train

            print(f"training digits-tiny for {args.epochs} epochs ...", file=sys.stderr)
            ckpt = train(TrainConfig(epochs=args.epochs, output=str(tmp / "train"), progress=False,
                                     threads=args.threads, force=True)).checkpoint
        model = load_model(ckpt)
        test = load_dataset("digits", model.preprocessing, split="test")
        train_split = load_dataset("digits", model.preprocessing, split="train")
        calib = np.ascontiguousarray(train_split.images[:args.calib_samples], dtype=np.float32)
        results.append(bench_model(f"digits-tiny ({ckpt}), top-1 on the digits test split ({len(test)} images)",
                                   model, tmp / "digits", args, np.ascontiguousarray(test.images, np.float32),
                                   np.asarray(test.labels), calib))
    if not args.skip_deit:
        cfg = ViTConfig(img_size=224, patch_size=16, embed_dim=384, depth=args.deit_depth, num_heads=6,
                        num_classes=1000)
        results.append(bench_model(f"DeiT-Small shapes (depth {args.deit_depth}), random weights",
                                   VisionTransformer(cfg).eval(), tmp / "deit", args))
    import onnxruntime

    meta = {"torch": torch.__version__, "onnxruntime": onnxruntime.__version__, "threads": args.threads,
            "runs": args.runs, "cpu": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
            "load_average_1_5_15": [round(v, 2) for v in os.getloadavg()]}
    from edgevit.bench.measure import cpu_isa, int8_kernel_note

    meta["cpu_isa"] = cpu_isa()  # the int8 figures come from ONNX Runtime's kernels: tie them to their path
    meta["int8_kernels"] = int8_kernel_note(meta["cpu_isa"])
    for dist in ("timm", "transformers"):
        with contextlib.suppress(Exception):
            from importlib import metadata

            meta[dist] = metadata.version(dist)
    if args.json:
        print(json.dumps({"meta": meta, "results": results}, indent=2))
    else:
        print(f"# torch {meta['torch']}, onnxruntime {meta['onnxruntime']}, timm {meta.get('timm')}, "
              f"transformers {meta.get('transformers')}; {args.threads} threads; median of {args.runs} runs at "
              f"batch 1 and {max(3, args.runs // 3)} at batch 8 (x fp32: time / edgevit ORT fp32 time; drop: "
              f"top-1 points below edgevit ORT fp32); load average {meta['load_average_1_5_15']} on {meta['cpus']} CPUs; "
              f"{'/'.join(meta['cpu_isa']) or 'instruction set unknown'}: int8 {meta['int8_kernels']}")
        for r in results:
            _print(r)
    if not args.workdir:
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
