"""The training run: :func:`train` resolves the run directory, loads data and model, trains
with validation every epoch, writes the checkpoints, and scores the selected checkpoint on the
test split (see :mod:`edgevit.train` for the files it writes)."""

from __future__ import annotations

import json
import math
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .._io import check_output_dir, remove_stale_temporaries, write_text_atomic
from ..errors import ArtifactExistsError, CheckpointError, DataError, OutputPathError
from .augment import random_affine, random_shift
from .checkpoints import (
    check_resume_matches,
    default_output,
    load_state,
    resolve_resume,
    save_state,
)
from .config import (
    BEST,
    LAST,
    RESUME_OVERRIDES,
    STATE,
    STATE_VERSION,
    TrainConfig,
    TrainResult,
)
from .distributed import (
    Dist,
    all_sum,
    barrier,
    broadcast_obj,
    cpu_count,
    setup_distributed,
)
from .optim import adamw, amp_context, ema_model, ema_state, load_ema, lr_at


def _resolve_device(name: str) -> str:
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("device='cuda' was asked for but torch.cuda.is_available() is False; use 'cpu' or 'auto'")
    return name


class _TensorBatches(torch.utils.data.Dataset):
    """In-memory (images, labels) served a whole batch at a time (``__getitems__``)."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor):
        self.images, self.labels = images, labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i):
        return self.images[i], self.labels[i]

    def __getitems__(self, idx):
        idx = torch.as_tensor(idx)
        return self.images[idx], self.labels[idx]


def _keep(batch):
    return batch


def _seed_for(seed: int, epoch: int, rank: int) -> int:
    return (seed * 1_000_003 + epoch * 10_007 + rank * 101 + 17) % (2**63 - 1)


@torch.inference_mode()
def _evaluate(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, batch_size: int,
              device, dist_info: Dist, autocast) -> tuple[float, float]:
    """(mean loss, accuracy) over all ranks; each rank scores every world_size-th image."""
    model.eval()
    idx = torch.arange(dist_info.rank, len(labels), dist_info.world_size)
    loss_sum = correct = 0.0
    for start in range(0, len(idx), batch_size):
        sel = idx[start : start + batch_size]
        x = images[sel].to(device, non_blocking=True)
        y = labels[sel].to(device, non_blocking=True)
        with autocast():
            logits = model(x)
        loss_sum += float(F.cross_entropy(logits.float(), y, reduction="sum"))
        correct += float((logits.argmax(1) == y).sum())
    loss_sum, correct, count = all_sum([loss_sum, correct, float(len(idx))], dist_info, device)
    return loss_sum / max(count, 1), correct / max(count, 1)


def _better(select: str, val_acc: float, val_loss: float, best: dict) -> bool:
    """Does this epoch replace best.safetensors? (see TrainConfig.select)"""
    if select == "last":
        return True
    if select == "val_loss":
        return (val_loss, -val_acc) < (best["val_loss"], -best["val_acc"])
    return (val_acc, -val_loss) > (best["val_acc"], -best["val_loss"])


def _is_checkpoint_path(text: str) -> bool:
    from ..models.hub import is_hub_name

    return Path(text).exists() or text.endswith((".safetensors", ".pt", ".pth", ".bin", ".ckpt")) or is_hub_name(text)


def _initial_model(cfg: TrainConfig):
    """The model ``cfg.model`` names: a fresh variant (seeded) or a loaded checkpoint."""
    from ..models import create_model, load_model

    torch.manual_seed(cfg.seed)
    if _is_checkpoint_path(cfg.model):
        return load_model(cfg.model, arch=cfg.arch, **cfg.model_overrides)
    return create_model(cfg.model, **cfg.model_overrides)


def _fit_classes(model, cfg: TrainConfig, class_names: list[str] | None, num_classes: int):
    """Give ``model`` a head of ``num_classes`` outputs and the data's labels."""
    from ..models import create_model

    if model.config.num_classes != num_classes:
        if _is_checkpoint_path(cfg.model):
            # fine-tuning on other classes: a fresh head, everything else kept
            model.reset_classifier(num_classes)
        else:
            torch.manual_seed(cfg.seed)
            model = create_model(cfg.model, **{**cfg.model_overrides, "num_classes": num_classes})
    if class_names is not None:
        model.labels = list(class_names)
    elif model.labels is None or len(model.labels) != num_classes:
        model.labels = [str(i) for i in range(num_classes)]
    return model.train()


def _load_splits(cfg: TrainConfig, preprocessing):
    from ..data import load_dataset

    train_set = load_dataset(cfg.data, preprocessing, "train", preprocessed=cfg.preprocessed)
    if train_set.labels is None:
        raise DataError(
            f"{cfg.data}: has no labels; training needs labelled data (digits, an ImageFolder "
            f"root/<class>/<image>, or a .npz with labels)"
        )
    present = np.unique(train_set.labels)
    if len(present) < 2:
        name = train_set.class_names[present[0]] if train_set.class_names else str(int(present[0]))
        raise DataError(
            f"--data {cfg.data}: its train split holds a single class ({name!r}); a classifier needs at least two: "
            f"give an ImageFolder with one folder per class (root/<class>/<image>) or a .npz with several labels"
        )
    val_set = load_dataset(cfg.data, preprocessing, "val", preprocessed=cfg.preprocessed)
    test_set = load_dataset(cfg.data, preprocessing, "test", preprocessed=cfg.preprocessed)
    names = train_set.class_names
    num_classes = len(names) if names else int(max(s.labels.max() for s in (train_set, val_set, test_set))) + 1
    return train_set, val_set, test_set, names, num_classes


def _to_tensors(dataset) -> tuple[torch.Tensor, torch.Tensor]:
    images = torch.from_numpy(dataset.images)
    labels = torch.from_numpy(dataset.labels.astype(np.int64))
    return images, labels


def train(cfg: TrainConfig, callback=None) -> TrainResult:
    """Train ``cfg.model`` on ``cfg.data``; see the module docstring for what gets written.

    ``callback(record)`` is called on rank 0 after every epoch (after the checkpoints are
    written) with the epoch's history record: epoch, lr, train_loss, train_acc, val_loss,
    val_acc, best, time_s. Raising from it stops the run (single process only: under torchrun
    the other ranks would wait at the next barrier); ``resume`` continues it.
    """
    t_start = time.perf_counter()
    cfg = replace(cfg).validate()
    state = None
    run_dir: Path | None = None
    if cfg.resume:
        run_dir = check_output_dir(resolve_resume(cfg.resume), "--resume")
        state = load_state(run_dir)
        saved = TrainConfig.from_dict(state["train_config"])
        check_resume_matches(cfg, saved, run_dir)
        changes = {name: getattr(cfg, name) for name in RESUME_OVERRIDES}
        if cfg.epochs is None:
            changes["epochs"] = saved.num_epochs
        cfg = replace(saved, **changes, resume=str(run_dir), output=str(run_dir)).validate()

    device_kind = _resolve_device(cfg.device)
    dist_info = setup_distributed(device_kind)
    old_threads = torch.get_num_threads()
    try:
        if device_kind == "cpu":
            threads = cfg.threads or max(1, cpu_count() // max(dist_info.local_world_size, 1))
            torch.set_num_threads(threads)
        return _run(cfg, state, run_dir, device_kind, dist_info, t_start, callback)
    finally:
        torch.set_num_threads(old_threads)
        if dist_info.created_group:
            import torch.distributed as dist

            dist.destroy_process_group()


def _run(cfg, state, run_dir, device_kind, dist_info: Dist, t_start, callback) -> TrainResult:
    device = torch.device(f"cuda:{dist_info.local_rank}" if device_kind == "cuda" else "cpu")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    run_dir = run_dir if run_dir is not None else _decide_run_dir(cfg, dist_info)
    cfg = replace(cfg, output=str(run_dir))
    torch.manual_seed(cfg.seed)
    model, (train_set, val_set, test_set) = _model_and_data(cfg, state, run_dir)
    model.to(device)
    fit = _Fit.create(cfg, model, train_set, device, dist_info)
    progress = _restore(fit, state, run_dir, dist_info)
    if dist_info.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(run_dir)
        write_text_atomic(run_dir / "train_config.json", json.dumps(cfg.to_dict(), indent=2) + "\n", force=True)
    x_val, y_val = _to_tensors(val_set)
    t_train = time.perf_counter()
    best_state = _train_epochs(cfg, fit, progress, x_val, y_val, run_dir, dist_info, callback)
    train_time = time.perf_counter() - t_train
    best_path = run_dir / BEST
    test_loss, test_acc = _test_best(cfg, fit, best_state, best_path, test_set, dist_info)
    best = progress.best
    result = TrainResult(
        test_accuracy=test_acc, test_loss=test_loss,
        val_accuracy=float(best["val_acc"]), val_loss=float(best["val_loss"]), best_epoch=int(best["epoch"]),
        epochs=cfg.num_epochs, checkpoint=str(best_path), last_checkpoint=str(run_dir / LAST), output_dir=str(run_dir),
        wall_time_s=time.perf_counter() - t_start, train_time_s=train_time,
        num_train=len(train_set), num_val=len(val_set), num_test=len(test_set),
        world_size=dist_info.world_size, device=str(device), seed=cfg.seed,
        model=cfg.model, data=cfg.data, history=progress.history,
    )
    if dist_info.is_main:
        write_text_atomic(run_dir / "result.json", json.dumps(result.to_dict(), indent=2) + "\n", force=True)
    barrier(dist_info)
    return result


def _decide_run_dir(cfg: TrainConfig, dist_info: Dist) -> Path:
    """The new run's directory, checked before data loading and training: rank 0 decides, every rank agrees."""
    decision = (None, None)
    if dist_info.is_main:
        out = Path(cfg.output) if cfg.output else default_output()
        if not cfg.force and out.exists() and any((out / n).exists() for n in (BEST, LAST, STATE)):
            decision = (None, ArtifactExistsError(
                f"{out} already holds a training run; pass force=True (--force) to overwrite it, "
                f"resume it with --resume {out}, or choose another --output"
            ))
        else:
            try:
                decision = (str(check_output_dir(out, "-o/--output")), None)
            except OutputPathError as exc:
                decision = (None, exc)
    out_text, error = broadcast_obj(decision, dist_info)
    if error:
        raise error
    return Path(out_text)


def _model_and_data(cfg: TrainConfig, state, run_dir: Path):
    """(model, (train, val, test) splits): the resumed run's last checkpoint, or the initial model
    fitted to the data's classes."""
    from ..models import load_model

    if state is None:
        model = _initial_model(cfg)
        train_set, val_set, test_set, names, num_classes = _load_splits(cfg, model.preprocessing)
        return _fit_classes(model, cfg, names, num_classes), (train_set, val_set, test_set)
    model = load_model(run_dir / LAST).train()
    train_set, val_set, test_set, names, num_classes = _load_splits(cfg, model.preprocessing)
    if num_classes != model.config.num_classes:
        raise DataError(
            f"{cfg.data} has {num_classes} classes now but the run in {run_dir} was trained with "
            f"{model.config.num_classes}; resume with the same data"
        )
    return model, (train_set, val_set, test_set)


@dataclass
class _Fit:
    """What the epochs train with: the model (``net``: it, or its DDP wrapper), optimizer, mixed
    precision, EMA, loss, the sharded loader and the augmentation's fill value."""

    model: nn.Module
    net: nn.Module
    device: torch.device
    optimizer: object
    autocast: object
    scaler: object
    ema: object
    criterion: nn.Module
    sampler: object
    loader: object
    total_steps: int
    warmup_steps: int
    max_px: int
    fill: torch.Tensor

    @classmethod
    def create(cls, cfg: TrainConfig, model: nn.Module, train_set, device: torch.device, dist_info: Dist) -> _Fit:
        from torch.utils.data import BatchSampler, DataLoader, DistributedSampler

        net: nn.Module = model
        if dist_info.enabled:
            from torch.nn.parallel import DistributedDataParallel

            net = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
        optimizer = adamw(model, cfg)
        autocast, scaler = amp_context(device.type, cfg.amp)
        ema = ema_model(model, cfg.ema) if cfg.ema > 0 else None
        criterion = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
        train_data = _TensorBatches(*_to_tensors(train_set))
        sampler = DistributedSampler(train_data, num_replicas=dist_info.world_size, rank=dist_info.rank,
                                     shuffle=True, seed=cfg.seed, drop_last=False)
        loader = DataLoader(train_data, sampler=BatchSampler(sampler, cfg.batch_size, drop_last=False),
                            batch_size=None, collate_fn=_keep, num_workers=cfg.workers,
                            pin_memory=device.type == "cuda", persistent_workers=cfg.workers > 0)
        steps_per_epoch = len(loader)
        pre = model.preprocessing
        return cls(model=model, net=net, device=device, optimizer=optimizer, autocast=autocast, scaler=scaler,
                   ema=ema, criterion=criterion, sampler=sampler, loader=loader,
                   total_steps=cfg.num_epochs * steps_per_epoch,
                   warmup_steps=int(round(cfg.warmup_epochs * steps_per_epoch)),
                   max_px=max(1, int(round(cfg.translate * pre.image_size))) if cfg.augment == "shift" else 0,
                   fill=-torch.tensor(pre.mean) / torch.tensor(pre.std))  # raw 0 (black)

    @property
    def steps_per_epoch(self) -> int:
        return len(self.loader)

    @property
    def scored(self) -> nn.Module:
        """The model validation scores and the best checkpoint holds: the EMA's when there is one."""
        return self.ema.module if self.ema is not None else self.model


@dataclass
class _Progress:
    """Where the run stands: the next epoch, the optimizer step, the best epoch so far, the history."""

    start_epoch: int = 0
    step: int = 0
    best: dict = field(default_factory=lambda: {"val_acc": -1.0, "val_loss": math.inf, "epoch": -1})
    history: list = field(default_factory=list)


def _restore(fit: _Fit, state, run_dir: Path, dist_info: Dist) -> _Progress:
    """The progress of a resumed run (its optimizer, scaler and EMA loaded into ``fit``), or a new run's."""
    if state is None:
        return _Progress()
    if state.get("world_size") != dist_info.world_size or state.get("steps_per_epoch") != fit.steps_per_epoch:
        raise CheckpointError(
            f"{run_dir / STATE} was written by a run with {state.get('world_size')} process(es) and "
            f"{state.get('steps_per_epoch')} steps per epoch; resume with the same number of processes "
            f"(now {dist_info.world_size}) and the same data"
        )
    fit.optimizer.load_state_dict(state["optimizer"])
    if fit.scaler is not None and state.get("scaler"):
        fit.scaler.load_state_dict(state["scaler"])
    step = int(state["step"])
    if fit.ema is not None:
        load_ema(fit.ema, state["ema"], step)
    return _Progress(int(state["epoch"]), step, dict(state["best"]), list(state["history"]))


def _train_epochs(cfg: TrainConfig, fit: _Fit, progress: _Progress, x_val, y_val, run_dir: Path, dist_info: Dist,
                  callback):
    """Train from ``progress`` to the last epoch, validating and checkpointing each; the best
    state dict in memory (None when no epoch improved)."""
    from tqdm.auto import tqdm

    show = cfg.progress if cfg.progress is not None else sys.stderr.isatty()
    bar = tqdm(total=fit.total_steps, initial=progress.step, disable=not (show and dist_info.is_main), unit="step",
               dynamic_ncols=True, leave=True, desc="train")
    best_state = None
    try:
        for epoch in range(progress.start_epoch, cfg.num_epochs):
            t_epoch = time.perf_counter()
            lr, loss_sum, correct, count = _train_epoch(cfg, fit, progress, epoch, bar, dist_info)
            loss_sum, correct, count = all_sum([loss_sum, correct, count], dist_info, fit.device)
            val_loss, val_acc = _evaluate(fit.scored, x_val, y_val, cfg.eval_batch_size, fit.device, dist_info,
                                          fit.autocast)
            improved = _better(cfg.select, val_acc, val_loss, progress.best)
            if improved:
                progress.best = {"val_acc": val_acc, "val_loss": val_loss, "epoch": epoch + 1}
                best_state = {k: v.detach().clone() for k, v in fit.scored.state_dict().items()}
            record = {
                "epoch": epoch + 1, "step": progress.step, "lr": lr,
                "train_loss": loss_sum / max(count, 1), "train_acc": correct / max(count, 1),
                "val_loss": val_loss, "val_acc": val_acc, "best": improved,
                "time_s": time.perf_counter() - t_epoch,
            }
            progress.history.append(record)
            bar.set_postfix(epoch=epoch + 1, loss=f"{record['train_loss']:.3f}",
                            acc=f"{record['train_acc']:.3f}", val=f"{val_acc:.3f}")
            if dist_info.is_main:
                _save_epoch(cfg, fit, progress, epoch, improved, run_dir, dist_info)
                if callback is not None:
                    callback(dict(record))
            barrier(dist_info)
    finally:
        bar.close()
    return best_state


def _train_epoch(cfg: TrainConfig, fit: _Fit, progress: _Progress, epoch: int, bar, dist_info: Dist):
    """One epoch of optimizer steps on this rank's shard: (last lr, loss sum, correct, count)."""
    fit.net.train()
    fit.sampler.set_epoch(epoch)
    seed = _seed_for(cfg.seed, epoch, dist_info.rank)
    torch.manual_seed(seed)  # dropout / drop-path
    gen = torch.Generator().manual_seed(seed)
    loss_sum = correct = count = 0.0
    lr = cfg.lr
    history = progress.history
    for x, y in fit.loader:
        lr = lr_at(progress.step, fit.total_steps, fit.warmup_steps, cfg)
        for group in fit.optimizer.param_groups:
            group["lr"] = lr
        if fit.max_px:
            x = random_shift(x, fit.max_px, gen)
        elif cfg.augment == "affine":
            x = random_affine(x, gen, fit.fill, cfg.rotate, cfg.translate, (1 - cfg.scale, 1 + cfg.scale))
        x = x.to(fit.device, non_blocking=True)
        y = y.to(fit.device, non_blocking=True)
        logits, loss = _step(cfg, fit, x, y)
        progress.step += 1
        n = len(y)
        loss_sum += float(loss.detach()) * n
        correct += float((logits.detach().argmax(1) == y).sum())
        count += n
        bar.update(1)
        if bar.n % 10 == 0 or count == n:
            bar.set_postfix(epoch=epoch + 1, loss=f"{loss_sum / count:.3f}", acc=f"{correct / count:.3f}",
                            **({"val": f"{history[-1]['val_acc']:.3f}"} if history else {}), refresh=False)
    return lr, loss_sum, correct, count


def _step(cfg: TrainConfig, fit: _Fit, x: torch.Tensor, y: torch.Tensor):
    """One optimizer step (mixed precision, gradient clipping, EMA update): (logits, loss)."""
    with fit.autocast():
        logits = fit.net(x)
        loss = fit.criterion(logits.float(), y)
    fit.optimizer.zero_grad(set_to_none=True)
    if fit.scaler is not None:
        fit.scaler.scale(loss).backward()
        if cfg.clip_grad:
            fit.scaler.unscale_(fit.optimizer)
            nn.utils.clip_grad_norm_(fit.model.parameters(), cfg.clip_grad)
        fit.scaler.step(fit.optimizer)
        fit.scaler.update()
    else:
        loss.backward()
        if cfg.clip_grad:
            nn.utils.clip_grad_norm_(fit.model.parameters(), cfg.clip_grad)
        fit.optimizer.step()
    if fit.ema is not None:
        fit.ema.update_parameters(fit.model)
    return logits, loss


def _save_epoch(cfg: TrainConfig, fit: _Fit, progress: _Progress, epoch: int, improved: bool, run_dir: Path,
                dist_info: Dist) -> None:
    """Rank 0 after an epoch: the best checkpoint (when improved), the last one and the resume state."""
    from ..models import save_model

    fit.model.eval()
    if improved:
        save_model(fit.scored, run_dir / BEST, force=True)
    save_model(fit.model, run_dir / LAST, force=True)
    save_state(run_dir / STATE, {
        "version": STATE_VERSION, "epoch": epoch + 1, "step": progress.step,
        "steps_per_epoch": fit.steps_per_epoch, "world_size": dist_info.world_size,
        "optimizer": fit.optimizer.state_dict(),
        "scaler": fit.scaler.state_dict() if fit.scaler is not None else {},
        "ema": ema_state(fit.ema) if fit.ema is not None else {},
        "best": progress.best, "history": progress.history, "train_config": cfg.to_dict(),
    })


def _test_best(cfg: TrainConfig, fit: _Fit, best_state, best_path: Path, test_set, dist_info: Dist):
    """(test loss, test accuracy) of the best checkpoint as written to disk (or, without a shared
    file system, as kept in memory)."""
    from ..models import load_model

    barrier(dist_info)
    if best_path.exists():
        best_model = load_model(best_path).to(fit.device)
    elif best_state is not None:  # multi-node without a shared file system
        best_model = fit.model
        fit.model.load_state_dict(best_state)
    else:
        raise CheckpointError(f"{best_path} is missing; the run wrote no best checkpoint")
    x_test, y_test = _to_tensors(test_set)
    return _evaluate(best_model, x_test, y_test, cfg.eval_batch_size, fit.device, dist_info, fit.autocast)
