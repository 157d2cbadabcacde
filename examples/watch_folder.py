"""A minimal device application: watch a folder of images, print top-1 and latency per new file.

Uses only ``edgevit.runtime`` (numpy + Pillow + TensorRT or ONNX Runtime; no torch):

    python examples/watch_folder.py out/model.plan /data/incoming          # TensorRT engine on a Jetson
    python examples/watch_folder.py out/model.onnx /data/incoming --once   # ONNX Runtime on CPU, one pass

Each new image file is classified once; the loop polls every ``--interval`` seconds.
One Engine is used from this one thread (engines are not shared between threads).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from edgevit.runtime import Engine

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}


def new_images(folder: Path, seen: set) -> list[Path]:
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p not in seen)
    seen.update(files)
    return files


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", help="TensorRT engine (.plan) or ONNX file, with edgevit.json beside it")
    ap.add_argument("folder", type=Path, help="folder to watch for images")
    ap.add_argument("--once", action="store_true", help="classify the images present now and exit")
    ap.add_argument("--interval", type=float, default=0.5, help="seconds between polls")
    args = ap.parse_args(argv)
    if not args.folder.is_dir():
        print(f"{args.folder}: not a directory", file=sys.stderr)
        return 1
    seen: set = set()
    with Engine.load(args.model) as engine:
        print(f"loaded {args.model} ({engine.backend}); watching {args.folder}", flush=True)
        while True:
            for path in new_images(args.folder, seen):
                try:
                    top = engine.predict([path], topk=1)[0][0]
                except Exception as exc:  # a half-written or broken file must not stop the loop
                    print(f"{path.name}: skipped ({exc})", flush=True)
                    continue
                print(f"{path.name}: {top['label']} ({top['prob']:.3f}) {engine.last_latency_ms:.2f} ms", flush=True)
            if args.once:
                return 0
            time.sleep(args.interval)


if __name__ == "__main__":
    sys.exit(main())
