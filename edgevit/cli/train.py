"""``edgevit train`` and ``edgevit eval``: :func:`edgevit.train.train` and
:func:`edgevit.evaluate.evaluate`."""

from __future__ import annotations

import os

import click

from .._deps import require_export
from ._errors import handle_errors
from ._options import (
    LibraryChoice,
    json_option,
    library_option,
    model_override_options,
    preprocessed_option,
)
from ._render import emit_json, table


@click.command("train")
@click.option("--model", help="Variant name, or checkpoint / hub name (timm/NAME.TAG, hf-hub:ORG/REPO) to fine-tune.")
@click.option("--arch", help="Variant a timm state dict belongs to.")
@click.option("--data", help="'digits' (bundled), an ImageFolder, or a .npz (raw pixels; see --preprocessed).")
@click.option("--epochs", type=int, help="Epochs (default: the tuned default for digits-tiny).")
@click.option("--batch-size", type=int, help="Per process.")
@click.option("--lr", type=float, help="Peak learning rate (AdamW).")
@click.option("--weight-decay", type=float)
@click.option("--warmup-epochs", type=float)
@click.option("--schedule", type=LibraryChoice("edgevit.train.config:SCHEDULES"))
@click.option("--label-smoothing", type=float)
@click.option("--augment", type=LibraryChoice("edgevit.train.config:AUGMENTS"),
              help="Training augmentation.")
@click.option("--amp", type=LibraryChoice("edgevit.train.config:AMP_MODES"),
              help="Mixed precision on CUDA (ignored on CPU).")
@click.option("--device", type=LibraryChoice("edgevit.train.config:DEVICES"))
@click.option("--seed", type=int)
@click.option("-o", "--output", help="Run directory (default: runs/train-<timestamp>).")
@click.option("--resume", help="Continue the run in this directory (with its recorded --model, --data, ...).")
@click.option("--force", is_flag=True, help="Write into a run directory that already holds checkpoints.")
@model_override_options
@preprocessed_option
@json_option
@handle_errors
def train_cmd(as_json: bool, **opts) -> None:
    """Train a ViT (digits-tiny on the bundled digits by default). Works under torchrun (DDP)."""
    require_export("training a model")
    from ..train import TrainConfig, train

    # Options left out keep TrainConfig's tuned defaults (one place for them).
    cfg = TrainConfig(**{k: v for k, v in opts.items() if v is not None}, progress=None if not as_json else False)
    result = train(cfg)
    if int(os.environ.get("RANK", "0")) != 0:  # under torchrun, rank 0 reports
        return
    if as_json:
        emit_json({"ok": True, "test_accuracy": result.test_accuracy, "checkpoint": result.checkpoint,
                   "wall_time_s": round(result.wall_time_s, 2), **{k: v for k, v in result.to_dict().items()
                                                                  if k not in ("history",)}})
        return
    click.echo(f"test accuracy {result.test_accuracy:.4f} ({result.num_test} images), best val "
               f"{result.val_accuracy:.4f} at epoch {result.best_epoch}, {result.wall_time_s:.1f} s "
               f"on {result.device} x{result.world_size}")
    click.echo(f"checkpoint: {result.checkpoint}")


@click.command("eval")
@click.argument("source")
@click.option("--data", help="'digits', an ImageFolder, or a .npz with labels (default: the bundled digits for "
                             "models of 1x8x8 input; other models must name theirs).")
@library_option("--split", type=LibraryChoice("edgevit.data.sources:SPLITS"), default_from="edgevit.evaluate:evaluate.split")
@click.option("--arch", help="Variant a timm state dict belongs to.")
@library_option("--batch-size", type=int, default_from="edgevit.evaluate:evaluate.batch_size")
@model_override_options
@preprocessed_option
@json_option
@handle_errors
def eval_cmd(source: str, data: str | None, split: str, arch: str | None, batch_size: int, preprocessed: bool,
             as_json: bool, model_overrides: dict) -> None:
    """Top-1/top-5 accuracy of SOURCE on labelled data, with a confusion summary."""
    require_export("evaluating a PyTorch model")
    from ..evaluate import evaluate

    report = evaluate(source, data=data, split=split, arch=arch, batch_size=batch_size, preprocessed=preprocessed,
                      model_overrides=model_overrides)
    if as_json:
        emit_json(report.to_dict())
        return
    click.echo(f"{report.source} on {report.data}: top-1 {report.top1:.4f}, top-5 {report.top5:.4f} "
               f"({report.samples} images)")
    worst = sorted(report.per_class.items(), key=lambda kv: kv[1])[:5]
    table("lowest per-class accuracy", ["class", "accuracy"], [[k, f"{v:.4f}"] for k, v in worst])
    if report.confusions:
        table("most frequent confusions", ["true", "predicted", "count"],
              [[c["true"], c["predicted"], c["count"]] for c in report.confusions])
