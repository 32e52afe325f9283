"""Step-indexed training batches: the batch of training step s, sharded over data-parallel
processes and resumable at any step.

Epoch e = s // (batches per epoch) visits the windows in the order of (seed, e)
(:class:`~pbdl_cli.data.loader.WindowBatchSampler`), so a resumed run sees the batches
the interrupted one would have seen. With ``world_size`` processes, step s's *global*
batch is the one a single process with ``world_size x batch_size`` windows per batch
would draw, and process ``rank`` takes its contiguous shard of it (shard sizes differ by
at most one; see :meth:`StepBatches.shard_weight`). Optional input noise
eps ~ N(0, 1) is drawn for the global batch from (seed, step), scaled per channel and
added to the history frames of this process's shard.

Shapes: history [B, k, C, *spatial], future [B, n, C, *spatial], params [B, P] (physical
units, on the run's device and dtype), B the shard's size.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import cached_property
from typing import Any

import torch
from torch import Tensor

from pbdl_cli.data.loader import make_loader
from pbdl_cli.data.windows import WindowDataset
from pbdl_cli.utils.seeding import derive_seed

Batch = tuple[Tensor, Tensor, Tensor]


class StepBatches:
    """The training batch of every step, for process ``rank`` of ``world_size``.

    Args:
        windows: the training windows.
        batch_size: windows per step and process.
        seed: seed of the batch order and the noise.
        num_workers: DataLoader processes (0: load in this process).
        device, dtype: where batches go.
        rank, world_size: this process and the number of data-parallel processes.
        noise: std of the input noise, in units of ``noise_scale`` (0: none).
        noise_scale: per-channel factor of the noise, broadcasting to [C, *spatial]
            (the channel std of the normalization).
    """

    def __init__(
        self,
        windows: WindowDataset,
        *,
        batch_size: int,
        seed: int,
        num_workers: int,
        device: torch.device,
        dtype: torch.dtype,
        rank: int = 0,
        world_size: int = 1,
        noise: float = 0.0,
        noise_scale: Tensor | None = None,
    ) -> None:
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} outside 0..{world_size - 1}")
        if noise > 0 and noise_scale is None:
            raise ValueError("noise needs a noise_scale")
        self.windows, self.batch_size, self.seed = windows, batch_size, seed
        self.num_workers, self.device, self.dtype = num_workers, device, dtype
        self.rank, self.world_size = rank, world_size
        self.noise, self.noise_scale = noise, noise_scale
        # (step, batch) of the last step, the loader's iterator and its (epoch, index)
        self._batch: tuple[int, Batch] | None = None
        self._iterator: Iterator[Any] | None = None
        self._position = (-1, -1)

    @cached_property
    def loader(self) -> torch.utils.data.DataLoader:
        """Batches of ``batch_size`` windows; data-parallel: this process's shard of the
        global batches of ``world_size x batch_size`` windows."""
        windows = self.windows
        if self.world_size > 1:
            windows = _ShardOfBatch(windows, self.rank, self.world_size)  # type: ignore[assignment]
        return make_loader(
            windows,
            batch_size=self.batch_size * self.world_size,
            seed=derive_seed(self.seed, "batches"),
            num_workers=self.num_workers,
        )

    def __len__(self) -> int:
        """Batches per epoch."""
        return len(self.loader)

    def batch(self, step: int) -> Batch:
        """The batch of step ``step`` (with input noise); cached for the last step (L-BFGS
        evaluates a step's loss several times)."""
        if self._batch is not None and self._batch[0] == step:
            return self._batch[1]
        per_epoch = len(self.loader)
        epoch, index = divmod(step, per_epoch)
        if self._iterator is None or index == 0 or self._position != (epoch, index):
            self.loader.sampler.set_epoch(epoch)
            self._iterator = iter(self.loader)
            for _ in range(index):
                next(self._iterator)
        history, future, params = next(self._iterator)
        self._position = (epoch, index + 1)
        history, future, params = (
            x.to(self.device, self.dtype, non_blocking=True) for x in (history, future, params)
        )
        if self.noise > 0:
            g = torch.Generator(device=self.device)
            g.manual_seed(derive_seed(self.seed, "noise", step))
            # the noise of the global batch, of which this process takes its shard's part
            size, (lo, hi) = self.shard(step)
            shape = (size, *history.shape[1:])
            eps = torch.randn(shape, generator=g, device=self.device, dtype=self.dtype)[lo:hi]
            history = history + self.noise * self.noise_scale * eps
        self._batch = (step, (history, future, params))
        return self._batch[1]

    def shard(self, step: int) -> tuple[int, tuple[int, int]]:
        """Size of step ``step``'s global batch and this process's rows [lo, hi) of it
        ((0, 1) for an empty shard, which still evaluates one window)."""
        per_epoch = len(self.loader)
        global_size = self.batch_size * self.world_size
        index = step % per_epoch
        size = min(global_size, len(self.windows) - index * global_size)
        lo, hi = shard_bounds(size, self.rank, self.world_size)
        return size, (lo, hi) if hi > lo else (0, 1)

    def shard_weight(self, step: int) -> float:
        """Factor on this process's loss at step ``step`` such that the mean over the
        processes is the loss of the global batch: shard size x world size / global batch
        size (1 for even shards; 0 for a process without windows in the last batch of an
        epoch, which evaluates one window to take part in the gradient average)."""
        size, _ = self.shard(step)
        lo, hi = shard_bounds(size, self.rank, self.world_size)
        return (hi - lo) * self.world_size / size


def shard_bounds(size: int, rank: int, world_size: int) -> tuple[int, int]:
    """Rows [lo, hi) of process ``rank`` of a batch of ``size`` rows split into
    ``world_size`` contiguous shards (the first ``size % world_size`` one row larger)."""
    base, extra = divmod(size, world_size)
    lo = rank * base + min(rank, extra)
    return lo, lo + base + (rank < extra)


class _ShardOfBatch:
    """Windows whose batches are one process's shard of the requested global batch (one
    window, weighted 0 by :meth:`StepBatches.shard_weight`, where its shard is empty)."""

    def __init__(self, windows: WindowDataset, rank: int, world_size: int) -> None:
        self.windows, self.rank, self.world_size = windows, rank, world_size

    def __len__(self) -> int:
        return len(self.windows)

    def get_batch(self, indices: list[int]) -> Batch:
        lo, hi = shard_bounds(len(indices), self.rank, self.world_size)
        return self.windows.get_batch(indices[lo:hi] if hi > lo else indices[:1])
