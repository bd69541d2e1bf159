"""Data-parallel training through ``torch.distributed`` (launched with ``torchrun``).

Every process holds the whole dataset and draws the same shuffled order from the same seeded
generator; a global batch of ``B`` graphs is cut into ``world_size`` contiguous slices and
process ``r`` trains on slice ``r``. The loss of each process is its sum of squared errors
divided by the node count of the *global* batch, times ``world_size``; DDP averages
gradients, so the update equals the single-process update on the global batch exactly.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

__all__ = ["DistInfo", "cleanup", "init_from_env", "shard"]


@dataclass(frozen=True)
class DistInfo:
    """Rank, world size and local rank of this process (``rank=0, world_size=1`` when alone).

    Example:
        >>> from eghn.train.distributed import DistInfo
        >>> alone, second = DistInfo(), DistInfo(rank=1, world_size=2)
        >>> (alone.enabled, alone.is_main), (second.enabled, second.is_main)
        ((False, True), (True, False))
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_from_env(device_type: str = "cpu") -> DistInfo:
    """Join the process group described by torchrun's environment (``RANK``, ``WORLD_SIZE``...).

    Uses NCCL on CUDA and gloo on CPU. Without those variables (or when the group is already
    initialised by the caller) nothing is started and the current state is returned.

    Example:
        >>> import os
        >>> from unittest import mock
        >>> from eghn.train.distributed import init_from_env
        >>> with mock.patch.dict(os.environ, {"WORLD_SIZE": "1"}):
        ...     init_from_env()  # not under torchrun: nothing is started
        DistInfo(rank=0, world_size=1, local_rank=0)
    """
    if dist.is_available() and dist.is_initialized():
        return DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0)))
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    if not dist.is_available():
        raise RuntimeError("WORLD_SIZE > 1 but this torch build has no torch.distributed")
    backend = "nccl" if device_type == "cuda" else "gloo"
    dist.init_process_group(backend=backend)
    return DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0)))


def shard(indices: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """This process's contiguous slice of a global batch of sample indices.

    >>> shard(torch.arange(5), DistInfo(rank=1, world_size=2)).tolist()
    [3, 4]
    """
    if not info.enabled:
        return indices
    return torch.tensor_split(indices, info.world_size)[info.rank]


def cleanup() -> None:
    """Leave the process group if one was joined.

    Example:
        >>> from eghn.train.distributed import cleanup
        >>> cleanup()  # no process group joined: nothing to do
    """
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
