"""Step-indexed training batches (pbdl_cli.data.batches): the batch of a step does not depend
on what came before (resume), every window once per epoch, data-parallel shards that
partition the single-process batch, and input noise scaled per channel."""

from __future__ import annotations

import torch

from pbdl_cli.data.batches import StepBatches, shard_bounds
from pbdl_cli.utils.seeding import derive_seed

CPU = torch.device("cpu")


class Windows:
    """``n`` windows; window g has history [1, 2, 3] filled with g, future with -g and
    params [g]: a batch shows which windows it holds."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n

    def get_batch(self, indices: list[int]) -> tuple[torch.Tensor, ...]:
        g = torch.tensor(indices, dtype=torch.float32)
        history = g.view(-1, 1, 1, 1).expand(-1, 1, 2, 3).clone()  # [B, k=1, C=2, S=3]
        return history, -history.clone(), g[:, None]


def batches(n: int = 10, batch_size: int = 4, **options) -> StepBatches:
    options = {"seed": 7, "num_workers": 0, "device": CPU, "dtype": torch.float64, **options}
    return StepBatches(Windows(n), batch_size=batch_size, **options)


def ids(batch: tuple[torch.Tensor, ...]) -> list[int]:
    return [int(p) for p in batch[2][:, 0]]


def test_every_window_once_per_epoch_and_a_resumed_run_sees_the_same_batches():
    a = batches()  # 10 windows in batches of 4: 3 per epoch (4, 4, 2)
    assert len(a) == 3
    seen = [ids(a.batch(step)) for step in range(6)]
    assert [len(s) for s in seen] == [4, 4, 2, 4, 4, 2]
    first, second = ([i for s in epoch for i in s] for epoch in (seen[:3], seen[3:]))
    assert sorted(first) == list(range(10)) == sorted(second)
    assert seen[:3] != seen[3:]  # a new order each epoch
    b = batches()  # resumed: new objects, jumping in and back
    assert [ids(b.batch(step)) for step in (4, 1, 2, 5)] == [seen[s] for s in (4, 1, 2, 5)]
    again = a.batch(5)
    assert a.batch(5) is again  # the last step's batch is kept (L-BFGS re-evaluates it)


def test_shards_partition_the_global_batch_and_their_weights_average_to_one():
    """world_size 3, batch 2 each: global batches of 6, 6 and 1 window(s) per epoch of 13;
    in the last one ranks 1 and 2 hold no window (weight 0, one window evaluated)."""
    whole = batches(n=13, batch_size=6)
    shards = [batches(n=13, batch_size=2, rank=r, world_size=3) for r in range(3)]
    assert len(whole) == len(shards[0]) == 3
    for step in range(6):
        parts = [s.batch(step) for s in shards]
        weights = [s.shard_weight(step) for s in shards]
        if step % 3 == 2:  # one window: rank 0 takes it, the others evaluate it weighted 0
            assert [ids(p) for p in parts] == [ids(whole.batch(step))] * 3
            assert weights == [3.0, 0.0, 0.0]
        else:
            assert [i for p in parts for i in ids(p)] == ids(whole.batch(step))
            assert weights == [1.0, 1.0, 1.0]
        assert sum(weights) / 3 == 1.0
    assert [shard_bounds(7, r, 3) for r in range(3)] == [(0, 3), (3, 5), (5, 7)]


def test_input_noise_is_one_global_draw_scaled_per_channel():
    """history + noise x scale[c] x eps, eps drawn for the global batch from
    (seed, "noise", step); shards take their rows; future and params stay clean."""
    scale = torch.tensor([2.0, 0.5], dtype=torch.float64).view(2, 1)  # per channel [C, 1]
    clean, noisy = batches(n=8), batches(n=8, noise=0.1, noise_scale=scale)
    sharded = {"batch_size": 2, "world_size": 2, "noise": 0.1, "noise_scale": scale}
    shards = [batches(n=8, rank=r, **sharded) for r in range(2)]
    for step in (0, 1, 3):
        (h, f, p), (h0, f0, p0) = noisy.batch(step), clean.batch(step)
        assert torch.equal(f, f0) and torch.equal(p, p0)
        g = torch.Generator().manual_seed(derive_seed(7, "noise", step))
        eps = torch.randn(h.shape, generator=g, dtype=torch.float64)
        torch.testing.assert_close(h - h0, 0.1 * scale * eps, rtol=1e-12, atol=1e-15)
        ratio = (h - h0)[:, :, 0].std() / (h - h0)[:, :, 1].std()
        assert 2.0 < float(ratio) < 8.0  # scales 2 and 0.5: ratio 4 (measured 2.2, 4.3, 3.6)
        torch.testing.assert_close(torch.cat([s.batch(step)[0] for s in shards]), h)
