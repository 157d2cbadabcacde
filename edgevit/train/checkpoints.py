"""The run directory: its default name, the optimizer state saved for ``resume``, and the checks
that a resumed run is the one its options name."""

from __future__ import annotations

import time
from dataclasses import fields
from pathlib import Path

import torch

from .._io import atomic_path
from ..errors import CheckpointError
from .config import LAST, RESUME_OVERRIDES, STATE, STATE_VERSION, TrainConfig


def default_output() -> Path:
    base = Path("runs") / f"train-{time.strftime('%Y%m%d-%H%M%S')}"
    path, n = base, 1
    while path.exists():
        path = base.with_name(f"{base.name}-{n}")
        n += 1
    return path


def resolve_resume(resume: str) -> Path:
    path = Path(resume)
    run = path if path.is_dir() else path.parent
    missing = [name for name in (LAST, STATE) if not (run / name).exists()]
    if missing:
        raise CheckpointError(
            f"cannot resume from {resume}: {', '.join(missing)} not found in {run}; point --resume at "
            f"the run directory of an earlier training run"
        )
    return run


def _same_setting(name: str, given, recorded) -> bool:
    if given == recorded:
        return True
    if name in ("data", "model", "output") and isinstance(given, str) and isinstance(recorded, str):
        return Path(given).resolve() == Path(recorded).resolve()  # the same path written another way
    return False


def check_resume_matches(cfg: TrainConfig, saved: TrainConfig, run: Path) -> None:
    """A resumed run continues with its recorded settings: refuse one given (not left at its
    default) that differs from the run's, rather than ignore it."""
    default = TrainConfig()
    recorded = {**saved.to_dict(), "output": str(run)}
    conflicts = [
        f"--{f.name.replace('_', '-')} {getattr(cfg, f.name)!r} (the run has {recorded[f.name]!r})"
        for f in fields(TrainConfig)
        if f.name not in RESUME_OVERRIDES + ("resume", "force")
        and getattr(cfg, f.name) != getattr(default, f.name)
        and not _same_setting(f.name, getattr(cfg, f.name), recorded[f.name])
    ]
    if conflicts:
        raise ValueError(
            f"--resume {run} continues that run with its recorded settings, which these options contradict: "
            f"{'; '.join(conflicts)}. Drop them to resume, or start a new run (another --output; "
            f"--model {run / LAST} fine-tunes from its weights)"
        )


def load_state(run: Path) -> dict:
    try:
        state = torch.load(run / STATE, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointError(f"{run / STATE}: cannot be read ({type(exc).__name__}: {exc}); it may be truncated") from exc
    if not isinstance(state, dict) or state.get("version") != STATE_VERSION:
        raise CheckpointError(f"{run / STATE}: not an edgevit training state (version {STATE_VERSION})")
    return state


def save_state(path: Path, state: dict) -> None:
    with atomic_path(path, force=True) as tmp:
        torch.save(state, tmp)
