"""Several processes under ``torchrun``: the process group (gloo on CPU, nccl on CUDA, from
RANK / WORLD_SIZE / LOCAL_RANK), and the all-reduce, broadcast and barrier the loop uses. In a
single process every helper is a no-op."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch


@dataclass
class Dist:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1
    created_group: bool = False

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    return int(value) if value not in (None, "") else default


def setup_distributed(device_kind: str) -> Dist:
    import torch.distributed as dist

    world = _env_int("WORLD_SIZE", 1)
    if world <= 1 and not (dist.is_available() and dist.is_initialized()):
        return Dist()
    if not dist.is_available():
        raise RuntimeError("WORLD_SIZE > 1 but this torch build has no torch.distributed")
    created = False
    if not dist.is_initialized():
        backend = "nccl" if device_kind == "cuda" else "gloo"
        dist.init_process_group(backend=backend)
        created = True
    world = dist.get_world_size()
    return Dist(
        rank=dist.get_rank(),
        world_size=world,
        local_rank=_env_int("LOCAL_RANK", 0),
        local_world_size=_env_int("LOCAL_WORLD_SIZE", world),
        created_group=created,
    )


def all_sum(values: list[float], dist_info: Dist, device) -> list[float]:
    if not dist_info.enabled:
        return values
    import torch.distributed as dist

    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()


def broadcast_obj(obj, dist_info: Dist):
    if not dist_info.enabled:
        return obj
    import torch.distributed as dist

    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def barrier(dist_info: Dist) -> None:
    if dist_info.enabled:
        import torch.distributed as dist

        dist.barrier()


def cpu_count() -> int:
    """CPU cores this process may run on (its affinity mask on Linux)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1
