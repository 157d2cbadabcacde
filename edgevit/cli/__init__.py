"""The ``edgevit`` command line (console script ``edgevit = edgevit.cli:main``; also ``python -m edgevit``).

Thin: each command maps its options onto one library function and renders the result. One module
per command group (:mod:`.models`, :mod:`.train`, :mod:`.export`, :mod:`.verify`, :mod:`.deploy`,
:mod:`.bench`, :mod:`.demo`); shared options in :mod:`._options`, output in :mod:`._render`, the
error table (usage errors exit 2, failures 1) in :mod:`._errors`. Every command takes ``--json``
for machine-readable output. Nothing in the library imports this package.
"""

from __future__ import annotations

import os

# Before torch loads: with OpenMP's default spin-waiting, PyTorch on a busy 2-core machine runs
# several times slower (measured: 104 ms instead of 2.8 ms per digits-tiny image; 819 vs 161 ms
# for DeiT-S). Passive waiting costs ~10 % on an idle machine. An explicit setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import click  # noqa: E402

from ._errors import JsonErrorsGroup, print_edgevit_warnings  # noqa: E402
from .bench import bench_cmd  # noqa: E402
from .demo import demo_cmd  # noqa: E402
from .deploy import build_cmd, embed_cmd, predict_cmd  # noqa: E402
from .deploy_targets import deploy_group  # noqa: E402
from .export import export_cmd, lint_cmd, quantize_cmd  # noqa: E402
from .models import info_cmd, models_cmd  # noqa: E402
from .train import eval_cmd, train_cmd  # noqa: E402
from .verify import verify_cmd  # noqa: E402


@click.group(cls=JsonErrorsGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="edgevit")
@click.pass_context
def main(ctx: click.Context) -> None:
    """edgevit: train or load a ViT, export it through ONNX to TensorRT, and prove nothing broke."""
    ctx.with_resource(print_edgevit_warnings())


for _command in (models_cmd, info_cmd, train_cmd, eval_cmd, export_cmd, quantize_cmd, lint_cmd, verify_cmd,
                 build_cmd, predict_cmd, embed_cmd, deploy_group, bench_cmd, demo_cmd):
    main.add_command(_command)
del _command

__all__ = ["main"]
