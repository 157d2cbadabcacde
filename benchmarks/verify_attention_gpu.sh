#!/usr/bin/env bash
# Per-block attention check of every SDPA backend (flash, efficient, cudnn, math) and edgevit's
# naive attention at fp32/fp16/bf16 against a float64 math reference, on a GPU.
# Three models: ViT-B/16 shapes with edgevit's init (near-uniform attention), ViT-B/16 shapes
# with "trained-like" weights (peaked attention: tests/_fixtures.trained_like), and digits-tiny on
# the bundled digits. Writes one JSON report per model to $OUT and prints a summary.
# Usage: OUT=/some/dir bash benchmarks/verify_attention_gpu.sh   [DEV=cpu N=2 for a dry run]
# Python: $PY if set, else the project's .venv/bin/python (make setup), else python3; it must import
# torch and edgevit, or the script stops before any work (exit 1) saying how to get one.
set -u
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUT=${OUT:-/tmp/edgevit-attention}; DEV=${DEV:-cuda}; N=${N:-64}
if [ -z "${PY:-}" ]; then
  if [ -x "$ROOT/.venv/bin/python" ]; then PY="$ROOT/.venv/bin/python"; else PY=python3; fi
fi
case $OUT in /*) ;; *) OUT="$PWD/$OUT" ;; esac
cd "$ROOT" || exit 1
if ! "$PY" -c "import torch, edgevit" >/dev/null 2>&1; then
  echo "verify_attention_gpu.sh: python '$PY' cannot import torch and edgevit." >&2
  echo "  Run 'make setup' in $ROOT (creates .venv with both; used by default), or set PY=/path/to/python that has them." >&2
  exit 1
fi
mkdir -p "$OUT" || exit 1
"$PY" -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name() if torch.cuda.is_available() else 'no CUDA')"
"$PY" - <<'PYEOF'
import sys; sys.path.insert(0, ".")
from tests._fixtures import trained_like
from edgevit import create_model, save_model
save_model(trained_like(create_model("vit_base_patch16_224"), seed=2), "/tmp/vitb_trained_like.safetensors", force=True)
PYEOF
status=0
for run in "vitb_init vit_base_patch16_224 random $N" "vitb_trained_like /tmp/vitb_trained_like.safetensors random $N" \
           "digits_tiny digits-tiny digits 256"; do
  set -- $run
  start=$(date +%s%N)
  "$PY" -m edgevit.verify "$2" --attention --device "$DEV" --data "$3" --samples "$4" --batch-size 32 \
      --json --report "$OUT/$1.json" --force > /dev/null
  rc=$?; [ $rc -ne 0 ] && status=$rc
  echo "$1: exit $rc, $(( ($(date +%s%N) - start) / 1000000 )) ms"
done
OUT="$OUT" "$PY" - <<'PYEOF'
import json, os
out = os.environ["OUT"]
for name in ("vitb_init", "vitb_trained_like", "digits_tiny"):
    path = f"{out}/{name}.json"
    if not os.path.exists(path):
        print(f"== {name}: no report"); continue
    r = json.load(open(path)); a = r["attention"]
    print(f"== {name}: ok={r['ok']} {a['environment']} {a['samples']} samples, attention check {a['seconds']} s")
    for s in a["summary"]:
        stats = (f"max_abs {s['max_abs']:.2e} mean_abs {s['mean_abs']:.2e} cos_min {s['cosine_min']:.7f}"
                 if s["status"] != "skipped" else s["reason"][:160])
        print(f"  {s['dtype']:5} {s['backend']:9} {s['status']:7} {stats}")
    for f in r["failures"][:10]:
        print("  FAILED", f)
PYEOF
exit $status
