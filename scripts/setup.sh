#!/usr/bin/env bash
# Set-up on a fresh machine: a virtual environment in .venv holding edgevit with every extra the demo and
# the tests use (`export` brings torch; a device installs the core alone: README "Install").
# Re-running is cheap: it reinstalls only when pyproject.toml changed.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
stamp=.venv/.edgevit-installed
want=$(sha256sum pyproject.toml scripts/setup.sh | sha256sum | cut -c1-16)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then exit 0; fi
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
# torch first, pinned: timm (a test extra) needs torchvision, and this pair imports together.
# An unpinned torch would pull a newer multi-GB build.
.venv/bin/pip install -q --disable-pip-version-check "torch==2.14.1" "torchvision==0.29.1"
.venv/bin/pip install -q --disable-pip-version-check -e ".[export,test,timm,hf,plot]"
# qemu-user: tests/precision/test_qdq_arithmetic.py runs int8 graphs on an emulated AVX2-only CPU (AMD Zen 3),
# whose ONNX Runtime int8 kernels saturate (docs/design.md §4.1); without it that one test skips.
if [ "$(uname -m)" = x86_64 ] && ! command -v qemu-x86_64 >/dev/null && command -v apt-get >/dev/null \
   && [ "$(id -u)" = 0 ]; then
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq qemu-user; } >/dev/null 2>&1 \
    || echo "setup: qemu-user could not be installed; the emulated-AVX2 test will be skipped"
fi
echo "$want" > "$stamp"
