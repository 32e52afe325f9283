"""Training windows, normalization statistics and the seeded loader (pbdl_cli.data.windows,
.normalization, .loader)."""

from __future__ import annotations

import json
import pickle
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
import torch

from pbdl_cli.data.loader import make_loader
from pbdl_cli.data.normalization import Normalization, compute_normalization
from pbdl_cli.data.reader import read_trajectories
from pbdl_cli.data.schema import DatasetError
from pbdl_cli.data.windows import WindowDataset, windows_per_trajectory
from pbdl_cli.data.writer import TrajectoryWriter

N, T, S = 5, 7, 8


def write_file(
    path: Path,
    *,
    n: int = N,
    t: int = T,
    u: np.ndarray | None = None,
    nu: np.ndarray | None = None,
    compression: str | None = None,
) -> Path:
    """A split with fields ``v`` [n, t, 1, S] and ``u`` [n, t, 2, S] (declared in that order,
    so sorting matters) and params ``nu`` [n], ``amp`` [n, 2]."""
    rng = np.random.default_rng(0)
    u = rng.normal(size=(n, t, 2, S)) if u is None else u
    v = rng.normal(loc=3.0, scale=0.5, size=(n, t, 1, S))
    nu = rng.uniform(0.01, 0.1, size=n) if nu is None else nu
    amp = rng.uniform(-1, 1, size=(n, 2))
    with TrajectoryWriter(
        path,
        num_trajectories=n,
        num_times=t,
        fields={"v": (1, S), "u": (2, S)},
        params={"nu": (), "amp": (2,)},
        coords={"t": np.arange(t) * 0.1, "x": np.linspace(0, 1, S, endpoint=False)},
        attrs={"problem": "burgers", "split": "train", "dt": 0.1, "seed": 0},
        compression=compression,
    ) as w:
        for lo in range(0, n, 2):
            hi = min(lo + 2, n)
            w.write({"v": v[lo:hi], "u": u[lo:hi]}, {"nu": nu[lo:hi], "amp": amp[lo:hi]})
    return path


@pytest.fixture
def split(tmp_path: Path) -> Path:
    return write_file(tmp_path / "train.h5")


def frames(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Fields stacked as [N, T, C, S] in sorted order (u0, u1, v) and params [N, P]
    (amp[0], amp[1], nu), read independently of the code under test."""
    data = read_trajectories(path)
    x = np.concatenate([data["fields"]["u"], data["fields"]["v"]], axis=2)
    p = np.concatenate([data["params"]["amp"], data["params"]["nu"][:, None]], axis=1)
    return x, p


# -------------------------------------------------------------------------- indexing


@pytest.mark.parametrize(
    ("t", "k", "n", "expected"),
    [(7, 1, 1, 6), (7, 3, 4, 1), (7, 4, 4, 0), (7, 2, 1, 5), (8, 2, 1, 6), (9, 2, 1, 7),
     (1, 1, 1, 0)],
)  # fmt: skip
def test_windows_per_trajectory(t: int, k: int, n: int, expected: int) -> None:
    assert windows_per_trajectory(t, k, n) == expected
    starts = range(t - k - n + 1)  # every start whose window fits
    assert len(starts) == expected


def test_exact_length_gives_one_window_per_trajectory(split: Path) -> None:
    x, p = frames(split)
    ds = WindowDataset(split, history=3, horizon=4)
    assert len(ds) == N and ds.windows_per_trajectory == 1
    for g in range(N):
        history, future, params = ds[g]
        np.testing.assert_array_equal(history.numpy(), x[g, :3])
        np.testing.assert_array_equal(future.numpy(), x[g, 3:])
        np.testing.assert_array_equal(params.numpy(), p[g])


def test_too_short_trajectories_raise(split: Path) -> None:
    with pytest.raises(DatasetError, match=r"T=7 frames .* k=4 \+ horizon n=4 = 8") as exc:
        WindowDataset(split, history=4, horizon=4)
    assert "\n" not in str(exc.value)
    with pytest.raises(DatasetError, match="no trajectories"):
        WindowDataset(split, trajectories=[])


@pytest.mark.parametrize("kwargs", [{"history": 0}, {"horizon": -1}, {"history": 1.5},
                                    {"horizon": True}, {"in_memory": "yes"}])  # fmt: skip
def test_bad_arguments(split: Path, kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        WindowDataset(split, **kwargs)


@pytest.mark.parametrize("in_memory", [True, False])
def test_mapping_and_values_for_every_index(split: Path, in_memory: bool) -> None:
    """With a reordered subset, every index maps to the enumerated window."""
    x, p = frames(split)
    k, n, subset = 2, 1, [3, 0, -1]
    ds = WindowDataset(split, history=k, horizon=n, trajectories=subset, in_memory=in_memory)
    expected = [(traj, s) for traj in (3, 0, N - 1) for s in range(T - k - n + 1)]
    assert len(ds) == len(expected) == 3 * 5
    traj, last = ds.locate(np.arange(len(ds)))
    assert traj.tolist() == [e[0] for e in expected]
    assert last.tolist() == [e[1] + k - 1 for e in expected]
    for g, (tr, s) in enumerate(expected):
        history, future, params = ds[g]
        assert history.shape == (k, 3, S) and future.shape == (n, 3, S) and params.shape == (3,)
        assert history.dtype == future.dtype == params.dtype == torch.float32
        np.testing.assert_array_equal(history.numpy(), x[tr, s : s + k])
        np.testing.assert_array_equal(future.numpy(), x[tr, s + k : s + k + n])
        np.testing.assert_array_equal(params.numpy(), p[tr])
    # the last window: trajectory N-1, frames 4, 5 -> 6 (frame 6 is T - 1)
    history, future, _ = ds[-1]
    np.testing.assert_array_equal(history.numpy(), x[N - 1, 4:6])
    np.testing.assert_array_equal(future.numpy(), x[N - 1, 6:7])
    with pytest.raises(IndexError):
        ds[len(ds)]


def test_names_and_channel_order(split: Path) -> None:
    ds = WindowDataset(split)
    assert ds.fields == ("u", "v")
    assert ds.channel_names == ("u[0]", "u[1]", "v")
    assert ds.param_names == ("amp[0]", "amp[1]", "nu")
    assert ds.frame_shape == (3, S)
    custom = WindowDataset(split, fields=["v", "u"])
    assert custom.channel_names == ("v", "u[0]", "u[1]")
    x, _ = frames(split)
    np.testing.assert_array_equal(custom[0][0].numpy(), x[0, :1][:, [2, 0, 1]])
    only = WindowDataset(split, fields=["v"])
    assert only.frame_shape == (1, S)
    with pytest.raises(DatasetError, match="not distinct fields"):
        WindowDataset(split, fields=["w"])


def test_subset_validation(split: Path) -> None:
    with pytest.raises(ValueError, match="repeat"):
        WindowDataset(split, trajectories=[1, 1])
    with pytest.raises(IndexError):
        WindowDataset(split, trajectories=[N])


def test_memory_and_disk_modes_agree(split: Path) -> None:
    mem = WindowDataset(split, history=2, horizon=3, in_memory=True)
    disk = WindowDataset(split, history=2, horizon=3, in_memory=False)
    assert mem.in_memory and not disk.in_memory
    for g in range(len(mem)):
        for a, b in zip(mem[g], disk[g], strict=True):
            torch.testing.assert_close(a, b, rtol=0, atol=0)
    idx = [7, 0, 3, len(mem) - 1, 7]
    for a, b in zip(mem.get_batch(idx), disk.get_batch(idx), strict=True):
        assert a.is_contiguous() and b.is_contiguous()
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_auto_mode_follows_budget(split: Path) -> None:
    size = N * T * 3 * S * 4
    assert WindowDataset(split).in_memory
    assert WindowDataset(split, memory_budget=size).in_memory
    assert not WindowDataset(split, memory_budget=size - 1).in_memory
    assert WindowDataset(split, trajectories=[0], memory_budget=size // N).in_memory


def test_pickle_drops_open_handle(split: Path) -> None:
    ds = WindowDataset(split, in_memory=False)
    first = ds[3]
    assert ds._file is not None  # opened lazily by the read
    clone = pickle.loads(pickle.dumps(ds))
    assert clone._file is None
    for a, b in zip(clone[3], first, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    ds.close()
    assert ds._file is None


# ---------------------------------------------------------------------------- loader


def collect(loader: Any, epochs: int = 1) -> list[tuple[torch.Tensor, ...]]:
    return [tuple(batch) for _ in range(epochs) for batch in loader]


def test_shuffle_is_seeded_and_per_epoch(split: Path) -> None:
    ds = WindowDataset(split)
    a = collect(make_loader(ds, batch_size=4, seed=1), epochs=2)
    b = collect(make_loader(ds, batch_size=4, seed=1), epochs=2)
    c = collect(make_loader(ds, batch_size=4, seed=2))
    assert len(a) == 2 * 8  # 30 windows: 7 full batches and one of 2
    for x, y in zip(a, b, strict=True):
        for u, v in zip(x, y, strict=True):
            torch.testing.assert_close(u, v, rtol=0, atol=0)
    first = torch.cat([h for h, _, _ in a[:8]])
    second = torch.cat([h for h, _, _ in a[8:]])
    assert not torch.equal(first, second)  # a new order every epoch...
    assert not torch.equal(first, torch.cat([h for h, _, _ in c]))
    # ...that contains every window once
    everything = ds.get_batch(range(len(ds)))[0]
    assert torch.equal(first.flatten(1).sort(0).values, everything.flatten(1).sort(0).values)
    # set_epoch restores an epoch's order, e.g. after resuming
    loader = make_loader(ds, batch_size=4, seed=1)
    loader.sampler.set_epoch(1)
    assert torch.equal(torch.cat([h for h, _, _ in collect(loader)]), second)


def test_unshuffled_and_drop_last(split: Path) -> None:
    ds = WindowDataset(split)
    batches = collect(make_loader(ds, batch_size=4, shuffle=False, drop_last=True))
    assert len(batches) == 7 and all(h.shape == (4, 1, 3, S) for h, _, _ in batches)
    expected = ds.get_batch(range(28))
    for got, want in zip((torch.cat(x) for x in zip(*batches, strict=True)), expected, strict=True):
        assert torch.equal(got, want)


@pytest.mark.parametrize("in_memory", [False, True])
def test_workers_give_identical_batches(split: Path, in_memory: bool) -> None:
    ds = WindowDataset(split, history=2, horizon=2, in_memory=in_memory)
    ds[0]  # the parent holds an open handle (on disk) before the workers fork
    serial = collect(make_loader(ds, batch_size=3, seed=5), epochs=2)
    loader = make_loader(ds, batch_size=3, seed=5, num_workers=2)
    assert loader.persistent_workers
    parallel = collect(loader, epochs=2)
    assert len(serial) == len(parallel) == 2 * 7  # 20 windows in batches of 3
    for x, y in zip(serial, parallel, strict=True):
        for u, v in zip(x, y, strict=True):
            torch.testing.assert_close(u, v, rtol=0, atol=0)


def test_plain_dataloader_collates_items(split: Path) -> None:
    ds = WindowDataset(split, history=2, in_memory=False)
    loader = torch.utils.data.DataLoader(ds, batch_size=5, shuffle=False)
    history, future, params = next(iter(loader))
    want = ds.get_batch(range(5))
    assert torch.equal(history, want[0]) and torch.equal(future, want[1])
    assert torch.equal(params, want[2])


# --------------------------------------------------------------------- normalization


def test_statistics_equal_numpy(split: Path) -> None:
    x, p = frames(split)
    norm = compute_normalization(split)
    per_channel = np.moveaxis(x, 2, 0).reshape(3, -1).astype(np.float64)
    np.testing.assert_allclose(norm.mean, per_channel.mean(axis=1), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(norm.std, per_channel.std(axis=1), rtol=1e-12)
    np.testing.assert_allclose(norm.param_mean, p.astype(np.float64).mean(0), rtol=1e-12)
    np.testing.assert_allclose(norm.param_std, p.astype(np.float64).std(0), rtol=1e-12)
    assert norm.channels == ("u[0]", "u[1]", "v") and norm.params == ("amp[0]", "amp[1]", "nu")
    assert norm.constant == () and norm.spatial_ndim == 1
    # blocks of one trajectory (the smallest) give the same numbers
    small = compute_normalization(split, block_bytes=1)
    np.testing.assert_allclose(small.mean, norm.mean, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(small.std, norm.std, rtol=1e-12)
    # and a subset only its own trajectories
    sub = compute_normalization(split, trajectories=[4, 1])
    np.testing.assert_allclose(
        sub.mean, np.moveaxis(x[[1, 4]], 2, 0).reshape(3, -1).mean(1, dtype=np.float64), rtol=1e-12
    )


def test_statistics_accurate_for_large_mean(tmp_path: Path) -> None:
    """Streaming moments stay accurate where sum / sum of squares would cancel."""
    u = 1e4 + np.random.default_rng(1).normal(scale=1e-2, size=(N, T, 2, S))
    path = write_file(tmp_path / "big.h5", u=u)
    stored = read_trajectories(path)["fields"]["u"].astype(np.float64)
    norm = compute_normalization(path, fields=["u"], block_bytes=1)
    np.testing.assert_allclose(norm.std, stored.std(axis=(0, 1, 3)), rtol=1e-9)


def test_round_trip(split: Path) -> None:
    norm = compute_normalization(split)
    x = torch.randn(4, 2, 3, S) * 3 + 1
    torch.testing.assert_close(norm.denormalize(norm.normalize(x)), x, rtol=0, atol=1e-6)
    y = norm.normalize(x)
    assert y.dtype == torch.float32 and y.shape == x.shape
    p = torch.rand(6, 3)
    torch.testing.assert_close(
        norm.denormalize_params(norm.normalize_params(p)), p, atol=1e-6, rtol=0
    )
    with pytest.raises(ValueError, match="C=3"):
        norm.normalize(torch.zeros(2, 4, S))


def test_normalized_windows(split: Path) -> None:
    norm = compute_normalization(split)
    raw = WindowDataset(split, horizon=2)
    raw_history, _, raw_params = raw.get_batch(range(len(raw)))
    norm.check_compatible(raw.channel_names, raw.param_names)
    history, params = norm.normalize(raw_history), norm.normalize_params(raw_params)
    torch.testing.assert_close(norm.denormalize(history), raw_history, rtol=0, atol=1e-6)
    torch.testing.assert_close(norm.denormalize_params(params), raw_params, rtol=0, atol=1e-6)
    # over all frames of the file the channels are standardized
    x = norm.normalize(torch.from_numpy(frames(split)[0]))
    torch.testing.assert_close(x.mean(dim=(0, 1, 3)), torch.zeros(3), rtol=0, atol=1e-5)
    torch.testing.assert_close(
        x.std(dim=(0, 1, 3), unbiased=False), torch.ones(3), atol=1e-5, rtol=0
    )
    reordered = WindowDataset(split, fields=["v", "u"])
    with pytest.raises(ValueError, match="normalization is for channels"):
        norm.check_compatible(reordered.channel_names, reordered.param_names)


def test_zero_std_guard(tmp_path: Path) -> None:
    """A constant channel and a fixed viscosity get std 1 and normalize to exactly 0."""
    u = np.full((N, T, 2, S), 0.3)
    u[:, :, 1] = np.random.default_rng(2).normal(size=(N, T, S))
    path = write_file(tmp_path / "const.h5", u=u, nu=np.full(N, 0.01))
    norm = compute_normalization(path)
    assert norm.constant == ("u[0]", "nu")
    assert norm.std[0] == 1.0 and norm.param_std[2] == 1.0
    assert norm.mean[0] == np.float32(0.3) and norm.param_mean[2] == np.float32(0.01)
    raw_history, _, raw_params = WindowDataset(path).get_batch(range(6))
    history, params = norm.normalize(raw_history), norm.normalize_params(raw_params)
    assert torch.all(history[:, :, 0] == 0) and torch.all(params[:, 2] == 0)
    assert torch.isfinite(history).all() and torch.isfinite(params).all()


def test_dict_round_trip(split: Path, tmp_path: Path) -> None:
    norm = compute_normalization(split)
    data = json.loads(json.dumps(norm.to_dict()))
    back = Normalization.from_dict(data)
    assert back == norm and back.to_dict() == norm.to_dict()
    assert back.source["file"] == str(split) and back.source["split"] == "train"
    loaded = Normalization.load(norm.save(tmp_path / "run" / "normalization.json"))
    assert loaded == norm
    x = torch.randn(2, 3, S)
    assert torch.equal(loaded.normalize(x), norm.normalize(x))
    with pytest.raises(ValueError, match="version"):
        Normalization.from_dict({**data, "version": 99})
    with pytest.raises(ValueError, match="malformed"):
        Normalization.from_dict({"version": 1, "channels": ["u"]})
    with pytest.raises(ValueError, match="stds must be > 0"):
        Normalization.from_dict({**data, "std": [1.0, 0.0, 1.0]})


def test_2d_fields_without_params(tmp_path: Path) -> None:
    """Two spatial axes and no params: params are [0], statistics broadcast over [H, W]."""
    path = tmp_path / "2d.h5"
    w = np.random.default_rng(3).normal(size=(2, 4, 1, 3, 5))
    with TrajectoryWriter(
        path,
        num_trajectories=2,
        num_times=4,
        fields={"w": (1, 3, 5)},
        params={},
        coords={"t": np.arange(4), "y": np.zeros(3), "x": np.zeros(5)},
        attrs={},
    ) as writer:
        writer.write({"w": w})
    for in_memory in (True, False):
        ds = WindowDataset(path, history=2, horizon=2, in_memory=in_memory)
        history, future, params = ds[1]
        assert history.shape == (2, 1, 3, 5) and params.shape == (0,)
        np.testing.assert_allclose(future.numpy(), w[1, 2:], rtol=1e-6)
    norm = compute_normalization(path)
    assert norm.spatial_ndim == 2 and norm.params == ()
    np.testing.assert_allclose(norm.std, [w.astype(np.float32).astype(np.float64).std()])
    x = torch.randn(3, 1, 3, 5)
    torch.testing.assert_close(norm.denormalize(norm.normalize(x)), x, atol=1e-6, rtol=0)
    assert Normalization.from_dict(json.loads(json.dumps(norm.to_dict()))) == norm


def test_damaged_chunk_gives_dataset_error(tmp_path: Path) -> None:
    path = write_file(tmp_path / "packed.h5", compression="gzip")
    disk = WindowDataset(path, in_memory=False)
    with h5py.File(path, "r") as f:
        chunk = f["fields/u"].id.get_chunk_info(0)  # trajectory 0 of u, gzip-compressed
    raw = bytearray(path.read_bytes())
    raw[chunk.byte_offset : chunk.byte_offset + chunk.size] = b"\xff" * chunk.size
    path.write_bytes(bytes(raw))
    disk[disk.windows_per_trajectory]  # trajectory 1 is intact
    with pytest.raises(DatasetError, match="corrupt"):
        disk[0]
    with pytest.raises(DatasetError, match="corrupt"):
        WindowDataset(path, in_memory=True)
    with pytest.raises(DatasetError, match="corrupt"):
        compute_normalization(path)
