"""Training on several processes with PyTorch's own stack: ``torchrun`` starts the ranks,
DistributedDataParallel (or FSDP2's ``fully_shard``) keeps them in step.

Every rank runs ``python -m engine train RUN_DIR`` (torchrun sets RANK, WORLD_SIZE,
LOCAL_RANK); rank 0 alone writes events, state, checkpoints and wandb. Decisions that end the
loop (a stop signal on any rank, the time budget, a non-finite loss) are agreed through a small
gloo group on the CPU: one all-reduce of a few integers per step, which never waits for the
device (NCCL collectives would: the flag lives on the host).
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.distributed as dist

# ranks wait for rank 0 while it evaluates and checkpoints; a dead rank is noticed by torchrun
# (its process exits), not by this timeout, which only bounds a truly hung collective
COLLECTIVE_TIMEOUT = datetime.timedelta(hours=2)


def under_torchrun() -> bool:
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


@dataclass
class Dist:
    """This process's place among the ranks (rank 0 of 1 when not distributed)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    control: Any = field(default=None, repr=False)  # the gloo group for host-side agreement

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    def any(self, *flags: bool) -> list[bool]:
        """Each flag, true when it is true on any rank (one all-reduce for all of them)."""
        if not self.enabled:
            return [bool(f) for f in flags]
        t = torch.tensor([int(bool(f)) for f in flags], dtype=torch.int32)
        dist.all_reduce(t, op=dist.ReduceOp.MAX, group=self.control)
        return [bool(v) for v in t.tolist()]

    def broadcast(self, value: Any) -> Any:
        """Rank 0's ``value`` on every rank (a picklable object, through the gloo group)."""
        if not self.enabled:
            return value
        box = [value]
        dist.broadcast_object_list(box, src=0, group=self.control)
        return box[0]

    def mean_(self, tensors: list[torch.Tensor]) -> None:
        """Average device tensors across ranks in place (log steps only: the losses)."""
        if not self.enabled or not tensors:
            return
        flat = torch.stack([t.float() for t in tensors])
        dist.all_reduce(flat, op=dist.ReduceOp.SUM)
        flat /= self.world
        for t, v in zip(tensors, flat):
            t.copy_(v.to(t.dtype))

    def close(self) -> None:
        if self.enabled and dist.is_initialized():
            dist.destroy_process_group()


def init(device_request: str) -> tuple[Dist, str]:
    """Join the ranks torchrun started (or stay alone). Returns the Dist and the device this
    rank trains on: cuda:LOCAL_RANK (NCCL) when CUDA is asked for or available, else the CPU
    (gloo)."""
    if not under_torchrun() or int(os.environ["WORLD_SIZE"]) == 1:
        return Dist(), device_request
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local = int(os.environ.get("LOCAL_RANK", "0"))
    cuda = device_request.startswith("cuda") or (device_request == "auto" and torch.cuda.is_available())
    if cuda:
        torch.cuda.set_device(local)
        device = f"cuda:{local}"
    else:
        device = "cpu"
    dist.init_process_group("nccl" if cuda else "gloo", timeout=COLLECTIVE_TIMEOUT,
                            device_id=torch.device(device) if cuda else None)
    control = dist.new_group(backend="gloo", timeout=COLLECTIVE_TIMEOUT) if cuda else dist.group.WORLD
    return Dist(rank, world, local, control), device
