"""A seeded loader of window batches: the order depends only on the seed and the epoch,
not on the number of workers."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from pbdl_cli.data.layout import check_positive
from pbdl_cli.data.windows import Batch, WindowDataset
from pbdl_cli.utils.seeding import generator


class WindowBatchSampler(Sampler[list[int]]):
    """Batches of window indices; shuffled per epoch from ``(seed, epoch)`` alone.

    Epoch e's order is ``randperm`` with a generator seeded by ``derive_seed(seed,
    "shuffle", e)``, so it does not depend on earlier epochs or the number of workers.
    Each pass uses the current epoch, then advances it by one; :meth:`set_epoch` sets it (e.g.
    when resuming from a checkpoint).
    """

    def __init__(
        self,
        num_windows: int,
        batch_size: int,
        *,
        shuffle: bool = True,
        seed: int = 0,
        drop_last: bool = False,
    ) -> None:
        check_positive(batch_size=batch_size)
        self.num_windows, self.batch_size = int(num_windows), int(batch_size)
        self.shuffle, self.seed, self.drop_last = shuffle, int(seed), drop_last
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """The next pass uses ``epoch``'s order."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        if self.drop_last:
            return self.num_windows // self.batch_size
        return -(-self.num_windows // self.batch_size)

    def __iter__(self) -> Iterator[list[int]]:
        if self.shuffle:
            g = generator(self.seed, "shuffle", self.epoch)
            order = torch.randperm(self.num_windows, generator=g)
        else:
            order = torch.arange(self.num_windows)
        self.epoch += 1
        for batch in order.split(self.batch_size):
            if self.drop_last and len(batch) < self.batch_size:
                return
            yield batch.tolist()


class _Batches(Dataset):
    """Maps a list of window indices to a whole batch (one vectorized gather in memory)."""

    def __init__(self, windows: WindowDataset) -> None:
        self.windows = windows

    def __len__(self) -> int:
        return len(self.windows)

    def __getitem__(self, indices: list[int]) -> Batch:
        return self.windows.get_batch(indices)


def make_loader(
    dataset: WindowDataset,
    *,
    batch_size: int,
    shuffle: bool = True,
    seed: int = 0,
    num_workers: int = 0,
    drop_last: bool = False,
    pin_memory: bool | None = None,
    prefetch_factor: int | None = None,
) -> DataLoader:
    """A DataLoader of batches ``(history [B, k, C, *spatial], future [B, n, C, *spatial],
    params [B, P])``.

    Each batch is built by one :meth:`WindowDataset.get_batch` call (in a worker when
    ``num_workers > 0``) instead of B item calls and a collate. The order depends only on
    ``seed`` and the epoch (see :class:`WindowBatchSampler`, which is ``loader.sampler``:
    call ``loader.sampler.set_epoch(e)`` when resuming), not on ``num_workers``.

    Args:
        dataset: the windows.
        batch_size: windows per batch.
        shuffle: shuffle every epoch (seeded) or keep index order.
        seed: shuffle seed.
        num_workers: loader processes (0: load in the main process); workers are kept
            between epochs (``persistent_workers``).
        drop_last: drop the last incomplete batch.
        pin_memory: ``None``: pin when CUDA is available.
        prefetch_factor: batches loaded ahead per worker (torch's default 2 when None).
    """
    sampler = WindowBatchSampler(
        len(dataset), batch_size, shuffle=shuffle, seed=seed, drop_last=drop_last
    )
    kwargs: dict[str, Any] = {}
    if num_workers > 0:
        kwargs["persistent_workers"] = True
        if prefetch_factor is not None:
            kwargs["prefetch_factor"] = prefetch_factor
    return DataLoader(
        _Batches(dataset),
        batch_size=None,  # the sampler yields whole batches of indices
        sampler=sampler,
        num_workers=num_workers,
        pin_memory=torch.cuda.is_available() if pin_memory is None else pin_memory,
        # workers draw no random numbers, but their base seed is reproducible too
        generator=generator(seed, "loader"),
        **kwargs,
    )
