"""The training run: :func:`train` resolves the run directory, loads data and model, trains
with validation every epoch, writes the checkpoints, and scores the selected checkpoint on the
test split (see :mod:`edgevit.train` for the files it writes)."""

from __future__ import annotations

import json
import math
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .._io import check_output_dir, remove_stale_temporaries, write_text_atomic
from ..errors import ArtifactExistsError, CheckpointError, DataError, OutputPathError
from .augment import random_affine, random_shift
from .checkpoints import _check_resume_matches, _default_output, _load_state, _resolve_resume, _save_state
from .config import BEST, LAST, RESUME_OVERRIDES, STATE, STATE_VERSION, TrainConfig, TrainResult
from .distributed import _all_sum, _barrier, _broadcast_obj, _Dist, _setup_distributed, cpu_count
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
              device, dist_info: _Dist, autocast) -> tuple[float, float]:
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
    loss_sum, correct, count = _all_sum([loss_sum, correct, float(len(idx))], dist_info, device)
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
        run_dir = check_output_dir(_resolve_resume(cfg.resume), "--resume")
        state = _load_state(run_dir)
        saved = TrainConfig.from_dict(state["train_config"])
        _check_resume_matches(cfg, saved, run_dir)
        changes = {name: getattr(cfg, name) for name in RESUME_OVERRIDES}
        if cfg.epochs is None:
            changes["epochs"] = saved.num_epochs
        cfg = replace(saved, **changes, resume=str(run_dir), output=str(run_dir)).validate()

    device_kind = _resolve_device(cfg.device)
    dist_info = _setup_distributed(device_kind)
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


def _run(cfg, state, run_dir, device_kind, dist_info: _Dist, t_start, callback) -> TrainResult:
    from ..models import load_model, save_model

    device = torch.device(f"cuda:{dist_info.local_rank}" if device_kind == "cuda" else "cpu")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    is_main = dist_info.is_main

    # output directory: rank 0 decides, everyone agrees
    if run_dir is None:
        decision = (None, None)
        if is_main:
            out = Path(cfg.output) if cfg.output else _default_output()
            if not cfg.force and out.exists() and any((out / n).exists() for n in (BEST, LAST, STATE)):
                decision = (None, ArtifactExistsError(
                    f"{out} already holds a training run; pass force=True (--force) to overwrite it, "
                    f"resume it with --resume {out}, or choose another --output"
                ))
            else:
                try:  # before data loading and training, not at the first checkpoint
                    decision = (str(check_output_dir(out, "-o/--output")), None)
                except OutputPathError as exc:
                    decision = (None, exc)
        out_text, error = _broadcast_obj(decision, dist_info)
        if error:
            raise error
        run_dir = Path(out_text)
    cfg = replace(cfg, output=str(run_dir))

    # data and model
    torch.manual_seed(cfg.seed)
    if state is not None:
        model = load_model(run_dir / LAST).train()
        preprocessing = model.preprocessing
        train_set, val_set, test_set, names, num_classes = _load_splits(cfg, preprocessing)
        if num_classes != model.config.num_classes:
            raise DataError(
                f"{cfg.data} has {num_classes} classes now but the run in {run_dir} was trained with "
                f"{model.config.num_classes}; resume with the same data"
            )
    else:
        model = _initial_model(cfg)
        preprocessing = model.preprocessing
        train_set, val_set, test_set, names, num_classes = _load_splits(cfg, preprocessing)
        model = _fit_classes(model, cfg, names, num_classes)
    model.to(device)
    x_train, y_train = _to_tensors(train_set)
    x_val, y_val = _to_tensors(val_set)

    net: nn.Module = model
    if dist_info.enabled:
        from torch.nn.parallel import DistributedDataParallel

        net = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)

    optimizer = adamw(model, cfg)
    autocast, scaler = amp_context(device.type, cfg.amp)
    ema = ema_model(model, cfg.ema) if cfg.ema > 0 else None
    criterion = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)

    from torch.utils.data import BatchSampler, DataLoader, DistributedSampler

    train_data = _TensorBatches(x_train, y_train)
    sampler = DistributedSampler(train_data, num_replicas=dist_info.world_size, rank=dist_info.rank,
                                 shuffle=True, seed=cfg.seed, drop_last=False)
    loader = DataLoader(train_data, sampler=BatchSampler(sampler, cfg.batch_size, drop_last=False),
                        batch_size=None, collate_fn=_keep, num_workers=cfg.workers,
                        pin_memory=device.type == "cuda", persistent_workers=cfg.workers > 0)
    steps_per_epoch = len(loader)
    epochs = cfg.num_epochs
    total_steps = epochs * steps_per_epoch
    warmup_steps = int(round(cfg.warmup_epochs * steps_per_epoch))
    max_px = max(1, int(round(cfg.translate * preprocessing.image_size))) if cfg.augment == "shift" else 0
    fill = -torch.tensor(preprocessing.mean) / torch.tensor(preprocessing.std)  # raw 0 (black)

    start_epoch, step = 0, 0
    best = {"val_acc": -1.0, "val_loss": math.inf, "epoch": -1}
    history: list[dict] = []
    if state is not None:
        if state.get("world_size") != dist_info.world_size or state.get("steps_per_epoch") != steps_per_epoch:
            raise CheckpointError(
                f"{run_dir / STATE} was written by a run with {state.get('world_size')} process(es) and "
                f"{state.get('steps_per_epoch')} steps per epoch; resume with the same number of processes "
                f"(now {dist_info.world_size}) and the same data"
            )
        optimizer.load_state_dict(state["optimizer"])
        if scaler is not None and state.get("scaler"):
            scaler.load_state_dict(state["scaler"])
        start_epoch, step = int(state["epoch"]), int(state["step"])
        if ema is not None:
            load_ema(ema, state["ema"], step)
        best = dict(state["best"])
        history = list(state["history"])

    if is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(run_dir)
        write_text_atomic(run_dir / "train_config.json", json.dumps(cfg.to_dict(), indent=2) + "\n", force=True)

    show = cfg.progress if cfg.progress is not None else sys.stderr.isatty()
    from tqdm.auto import tqdm

    bar = tqdm(total=total_steps, initial=step, disable=not (show and is_main), unit="step",
               dynamic_ncols=True, leave=True, desc="train")
    best_state = None
    t_train = time.perf_counter()
    try:
        for epoch in range(start_epoch, epochs):
            t_epoch = time.perf_counter()
            net.train()
            sampler.set_epoch(epoch)
            seed = _seed_for(cfg.seed, epoch, dist_info.rank)
            torch.manual_seed(seed)  # dropout / drop-path
            gen = torch.Generator().manual_seed(seed)
            loss_sum = correct = count = 0.0
            lr = cfg.lr
            for x, y in loader:
                lr = lr_at(step, total_steps, warmup_steps, cfg)
                for group in optimizer.param_groups:
                    group["lr"] = lr
                if max_px:
                    x = random_shift(x, max_px, gen)
                elif cfg.augment == "affine":
                    x = random_affine(x, gen, fill, cfg.rotate, cfg.translate, (1 - cfg.scale, 1 + cfg.scale))
                x = x.to(device, non_blocking=True)
                y = y.to(device, non_blocking=True)
                with autocast():
                    logits = net(x)
                    loss = criterion(logits.float(), y)
                optimizer.zero_grad(set_to_none=True)
                if scaler is not None:
                    scaler.scale(loss).backward()
                    if cfg.clip_grad:
                        scaler.unscale_(optimizer)
                        nn.utils.clip_grad_norm_(model.parameters(), cfg.clip_grad)
                    scaler.step(optimizer)
                    scaler.update()
                else:
                    loss.backward()
                    if cfg.clip_grad:
                        nn.utils.clip_grad_norm_(model.parameters(), cfg.clip_grad)
                    optimizer.step()
                step += 1
                if ema is not None:
                    ema.update_parameters(model)
                n = len(y)
                loss_sum += float(loss.detach()) * n
                correct += float((logits.detach().argmax(1) == y).sum())
                count += n
                bar.update(1)
                if bar.n % 10 == 0 or count == n:
                    bar.set_postfix(epoch=epoch + 1, loss=f"{loss_sum / count:.3f}", acc=f"{correct / count:.3f}",
                                    **({"val": f"{history[-1]['val_acc']:.3f}"} if history else {}), refresh=False)
            loss_sum, correct, count = _all_sum([loss_sum, correct, count], dist_info, device)
            scored = ema.module if ema is not None else model
            val_loss, val_acc = _evaluate(scored, x_val, y_val, cfg.eval_batch_size, device, dist_info, autocast)
            improved = _better(cfg.select, val_acc, val_loss, best)
            if improved:
                best = {"val_acc": val_acc, "val_loss": val_loss, "epoch": epoch + 1}
                best_state = {k: v.detach().clone() for k, v in scored.state_dict().items()}
            record = {
                "epoch": epoch + 1, "step": step, "lr": lr,
                "train_loss": loss_sum / max(count, 1), "train_acc": correct / max(count, 1),
                "val_loss": val_loss, "val_acc": val_acc, "best": improved,
                "time_s": time.perf_counter() - t_epoch,
            }
            history.append(record)
            bar.set_postfix(epoch=epoch + 1, loss=f"{record['train_loss']:.3f}",
                            acc=f"{record['train_acc']:.3f}", val=f"{val_acc:.3f}")
            if is_main:
                model.eval()
                if improved:
                    save_model(scored, run_dir / BEST, force=True)
                save_model(model, run_dir / LAST, force=True)
                _save_state(run_dir / STATE, {
                    "version": STATE_VERSION, "epoch": epoch + 1, "step": step,
                    "steps_per_epoch": steps_per_epoch, "world_size": dist_info.world_size,
                    "optimizer": optimizer.state_dict(),
                    "scaler": scaler.state_dict() if scaler is not None else {},
                    "ema": ema_state(ema) if ema is not None else {},
                    "best": best, "history": history, "train_config": cfg.to_dict(),
                })
                if callback is not None:
                    callback(dict(record))
            _barrier(dist_info)
    finally:
        bar.close()
    train_time = time.perf_counter() - t_train

    # test: the best checkpoint as written to disk
    _barrier(dist_info)
    best_path = run_dir / BEST
    if best_path.exists():
        best_model = load_model(best_path).to(device)
    elif best_state is not None:  # multi-node without a shared file system
        best_model = model
        model.load_state_dict(best_state)
    else:
        raise CheckpointError(f"{best_path} is missing; the run wrote no best checkpoint")
    x_test, y_test = _to_tensors(test_set)
    test_loss, test_acc = _evaluate(best_model, x_test, y_test, cfg.eval_batch_size, device, dist_info, autocast)

    result = TrainResult(
        test_accuracy=test_acc, test_loss=test_loss,
        val_accuracy=float(best["val_acc"]), val_loss=float(best["val_loss"]), best_epoch=int(best["epoch"]), epochs=epochs,
        checkpoint=str(best_path), last_checkpoint=str(run_dir / LAST), output_dir=str(run_dir),
        wall_time_s=time.perf_counter() - t_start, train_time_s=train_time,
        num_train=len(train_set), num_val=len(val_set), num_test=len(test_set),
        world_size=dist_info.world_size, device=str(device), seed=cfg.seed,
        model=cfg.model, data=cfg.data, history=history,
    )
    if is_main:
        write_text_atomic(run_dir / "result.json", json.dumps(result.to_dict(), indent=2) + "\n", force=True)
    _barrier(dist_info)
    return result

