#!/usr/bin/env bash
# Set-up on a fresh machine: a virtual environment in .venv holding edgevit and its test extras.
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
.venv/bin/pip install -q --disable-pip-version-check -e ".[test,timm,hf,plot]"
echo "$want" > "$stamp"
