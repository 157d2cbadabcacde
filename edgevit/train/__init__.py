"""Train a ViT classifier: the bundled digits by default, or an ImageFolder / .npz source.

``train(TrainConfig(...)) -> TrainResult``. One process, or several under ``torchrun``
(DistributedDataParallel; gloo on CPU, nccl on CUDA; detected from RANK / WORLD_SIZE /
LOCAL_RANK). Only rank 0 writes files or shows progress; every rank returns the same result.

The run directory (``output``, default ``runs/train-<YYYYmmdd-HHMMSS>``) receives:

* ``best.safetensors``  the selected weights (``select``: the last epoch by default, or the
  epoch with the highest val accuracy / lowest val loss), with config, labels and
  preprocessing in its metadata (:func:`edgevit.save_model`);
* ``last.safetensors`` + ``last.state.pt``  the latest weights and the optimizer / schedule
  state (plain tensors and dicts, read back with ``torch.load(weights_only=True)``) for
  ``resume``;
* ``train_config.json`` and, at the end, ``result.json``.

Data splits: the bundled digits and any source without split folders are split 70/10/20
(train/val/test) per class with a fixed seed (:mod:`edgevit.data.sources`); an ImageFolder
with ``train/``, ``val/`` and ``test/`` folders uses those. Training sees only ``train``,
validation runs every epoch on ``val``; the test accuracy reported is that of
best.safetensors as read back from disk.

Reproducibility: with the same config, seed, device and number of processes, a run on CPU
gives the same weights every time; a resumed run continues exactly where it stopped
(per-epoch RNG seeds, shuffling seeded by epoch).

Modules: :mod:`.config` (TrainConfig, TrainResult, the run directory's file names),
:mod:`.loop` (the run), :mod:`.optim` (optimizer, learning-rate schedule, mixed precision, EMA),
:mod:`.augment` (training augmentations), :mod:`.checkpoints` (run directory, saved state, resume
checks), :mod:`.distributed` (torchrun / DDP). The defaults and the measurements behind them:
benchmarks/README.md, "Training defaults".
"""

from .config import (
    AMP_MODES,
    AUGMENTS,
    BEST,
    DEFAULT_EPOCHS,
    DEVICES,
    LAST,
    RESUME_OVERRIDES,
    SCHEDULES,
    SELECTS,
    STATE,
    STATE_VERSION,
    TrainConfig,
    TrainResult,
)

_LAZY = {"train": ".loop", "lr_at": ".optim", "random_affine": ".augment", "random_shift": ".augment"}


def __getattr__(name: str):
    """The torch-backed parts load on first use, so the CLI reads the config's choices without torch."""
    if name in _LAZY:
        from importlib import import_module

        return getattr(import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

__all__ = [
    "AMP_MODES", "AUGMENTS", "BEST", "DEFAULT_EPOCHS", "DEVICES", "LAST", "RESUME_OVERRIDES", "SCHEDULES",
    "SELECTS", "STATE", "STATE_VERSION", "TrainConfig", "TrainResult", "lr_at", "random_affine", "random_shift",
    "train",
]
