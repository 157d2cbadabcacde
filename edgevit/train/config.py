"""What a training run is given and what it returns: :class:`TrainConfig` (checked by
``validate``), :class:`TrainResult`, and the names of the files in a run directory.

The defaults are tuned for ``digits-tiny`` on 2 CPU cores; benchmarks/README.md ("Training
defaults") has the measurements behind them. ``select="last"`` because the cosine schedule
anneals to ``min_lr`` and test accuracy still rises to the end, while the small val split
saturates early.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields

from ..formats import BF16, FP16

SCHEDULES = ("cosine", "onecycle")
DEVICES = ("auto", "cpu", "cuda")
AMP_MODES = ("auto", BF16, FP16, "off")
AUGMENTS = ("affine", "shift", "none")
SELECTS = ("last", "val_acc", "val_loss")
DEFAULT_EPOCHS = 85
BEST = "best.safetensors"
LAST = "last.safetensors"
STATE = "last.state.pt"
STATE_VERSION = 1
# Fields a resumed run takes from the new config; everything else comes from the saved run.
RESUME_OVERRIDES = ("epochs", "device", "progress", "workers", "threads", "eval_batch_size")


@dataclass
class TrainConfig:
    """Everything a training run needs. Field names match the CLI flags (``--batch-size``...)."""

    model: str = "digits-tiny"          # variant name (fresh weights) or checkpoint path (fine-tune)
    data: str = "digits"                # "digits", an ImageFolder directory, or a .npz with labels
    preprocessed: bool = False          # a .npz holds model input already, not raw pixels (--preprocessed)
    epochs: int | None = None           # None: DEFAULT_EPOCHS, or the resumed run's
    batch_size: int = 64                # per process
    lr: float = 2e-3                    # peak learning rate (per run, not scaled by world size)
    weight_decay: float = 0.05
    warmup_epochs: float = 3.0
    schedule: str = "cosine"            # "cosine" (linear warm-up, cosine to min_lr) | "onecycle"
    min_lr: float = 1e-5
    label_smoothing: float = 0.1
    augment: str = "affine"             # "affine" (rotate/scale/translate, bilinear) | "shift" (whole pixels) | "none"
    translate: float = 0.1              # largest shift, as a fraction of the image side ("shift": >= 1 px)
    rotate: float = 10.0                # largest rotation in degrees ("affine")
    scale: float = 0.1                  # largest zoom in or out, as a fraction ("affine")
    clip_grad: float | None = None      # max gradient norm; None or 0 = off
    select: str = "last"                # best.safetensors: "last" epoch | highest "val_acc" | lowest "val_loss"
    ema: float = 0.0                    # decay of an exponential moving average of the weights (0 = off);
                                        # when on, validation, best.safetensors and the test use the average
    amp: str = "auto"                   # CUDA only: "auto" (bf16 if supported, else fp16), "bf16", "fp16", "off"
    seed: int = 0
    output: str | None = None           # run directory; default runs/train-<timestamp>
    resume: str | None = None           # a run directory (or its last.safetensors / last.state.pt)
    force: bool = False                 # allow writing into a run directory that holds checkpoints
    device: str = "auto"                # "auto" | "cpu" | "cuda"
    progress: bool | None = None        # tqdm bar; None: only when stderr is a terminal
    workers: int = 0                    # DataLoader worker processes (data is in memory: 0 is best)
    threads: int | None = None          # torch CPU threads per process; None: cores / local processes
    eval_batch_size: int = 512
    arch: str | None = None             # variant a foreign (timm) checkpoint belongs to
    model_overrides: dict = field(default_factory=dict)  # config fields for load_model (--num-heads, --act, ...)

    def validate(self) -> "TrainConfig":
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {list(SCHEDULES)}, got {self.schedule!r}")
        if self.device not in DEVICES:
            raise ValueError(f"device must be one of {list(DEVICES)}, got {self.device!r}")
        if self.amp not in AMP_MODES:
            raise ValueError(f"amp must be one of {list(AMP_MODES)}, got {self.amp!r}")
        for name in ("batch_size", "eval_batch_size"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.epochs is not None and int(self.epochs) < 1:
            raise ValueError(f"epochs must be >= 1, got {self.epochs}")
        if self.lr <= 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if self.min_lr < 0 or self.min_lr > self.lr:
            raise ValueError(f"min_lr must be in [0, lr={self.lr}], got {self.min_lr}")
        if self.weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay}")
        if self.warmup_epochs < 0:
            raise ValueError(f"warmup_epochs must be >= 0, got {self.warmup_epochs}")
        if not 0 <= self.label_smoothing < 1:
            raise ValueError(f"label_smoothing must be in [0, 1), got {self.label_smoothing}")
        if self.augment not in AUGMENTS:
            raise ValueError(f"augment must be one of {list(AUGMENTS)}, got {self.augment!r}")
        if not 0 <= self.translate < 0.5:
            raise ValueError(f"translate must be in [0, 0.5), got {self.translate}")
        if not 0 <= self.rotate <= 180:
            raise ValueError(f"rotate must be in [0, 180] degrees, got {self.rotate}")
        if not 0 <= self.scale < 1:
            raise ValueError(f"scale must be in [0, 1), got {self.scale}")
        if self.clip_grad is not None and self.clip_grad < 0:
            raise ValueError(f"clip_grad must be >= 0 (0 or None: off), got {self.clip_grad}")
        if self.select not in SELECTS:
            raise ValueError(f"select must be one of {list(SELECTS)}, got {self.select!r}")
        if not 0 <= self.ema < 1:
            raise ValueError(f"ema must be in [0, 1) (0 = off), got {self.ema}")
        if self.workers < 0:
            raise ValueError(f"workers must be >= 0, got {self.workers}")
        if self.threads is not None and self.threads < 1:
            raise ValueError(f"threads must be >= 1, got {self.threads}")
        return self

    @property
    def num_epochs(self) -> int:
        return int(self.epochs) if self.epochs is not None else DEFAULT_EPOCHS

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "TrainConfig":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


@dataclass
class TrainResult:
    test_accuracy: float
    test_loss: float
    val_accuracy: float                 # of the checkpoint in best.safetensors
    val_loss: float
    best_epoch: int                     # the epoch best.safetensors holds (see TrainConfig.select)
    epochs: int
    checkpoint: str                     # best.safetensors
    last_checkpoint: str
    output_dir: str
    wall_time_s: float                  # whole call: data, model, training, test
    train_time_s: float                 # the epochs only (this call's, when resumed)
    num_train: int
    num_val: int
    num_test: int
    world_size: int
    device: str
    seed: int
    model: str
    data: str
    history: list[dict] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)

