"""Benchmark training windows: loader throughput vs the time of a training step.

On a Burgers dataset generated with ``pbdl generate`` (default 256 trajectories x 101
frames x 256 cells, semi-Lagrangian solver, nu log-uniform in [0.005, 0.05]) it measures:

* ``loader``: windows/s and MB/s of :func:`pbdl_cli.data.loader.make_loader` for in-memory and
  on-disk storage, 0/1/2 workers and batch 32/128: the median over ``--repeats`` full
  epochs over ``--subset`` trajectories after one warm-up epoch (which starts the workers);
  plus torch's plain per-item DataLoader (item calls + default collate) for comparison;
* ``train_step``: median seconds of one forward + backward + Adam step of a small 1D conv
  net (4 layers, 32 channels, kernel 5; history and params in, future out) on CPU at
  the same batch size, with ``--threads`` torch threads;
* ``share_waiting``: for each loader configuration, ``--train-batches`` batches of a
  real loop (next batch, train step): the fraction of the loop's time spent waiting in
  ``next(loader)``. Near 0: loading is not the bottleneck. ``serial_share_estimate`` is
  the share the isolated numbers predict without any overlap of loading and training:
  load time per batch / (load time per batch + step time).
* ``setup``: seconds to load the split into memory and to compute its normalization.

Usage:
    python scripts/bench_data.py [--out scripts/results/bench_data.json]
        [--dataset PATH/train.h5] [--trajectories 256 --nx 256 --repeats 3]
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
from torch import nn

HERE = Path(__file__).resolve().parent
DEFAULT_OUT = HERE / "results" / "bench_data.json"


def generate(root: Path, trajectories: int, nx: int, dt: float, t_end: float) -> Path:
    """Runs ``pbdl generate`` in ``root``; returns its train.h5."""
    cmd = [
        sys.executable, "-m", "pbdl_cli", "generate", "problem=burgers", "solver=burgers_sl",
        f"problem.nx={nx}", f"problem.dt={dt}", f"problem.t_end={t_end}",
        "problem.nu_range=[0.005,0.05]", "problem.ic=sines", "problem.bc=periodic",
        f"data.n_train={trajectories}", "data.n_val=0", "data.n_test=0",
        f"data.root={root / 'datasets'}", f"hydra.run.dir={root / 'out'}",
        "threads=2",
    ]  # fmt: skip
    subprocess.run(cmd, cwd=root, check=True, capture_output=True, text=True)
    (path,) = (root / "datasets").glob("burgers/*/train.h5")
    return path


class ConvNet(nn.Module):
    """history [B, k, C, X] and params [B, P] -> future [B, n, C, X] (periodic 1D convs)."""

    def __init__(self, k: int, n: int, c: int, p: int, width: int = 32, layers: int = 4):
        super().__init__()
        chans = [k * c + p] + [width] * (layers - 1) + [n * c]
        self.n, self.c = n, c
        self.convs = nn.ModuleList(
            nn.Conv1d(a, b, 5, padding=2, padding_mode="circular")
            for a, b in itertools.pairwise(chans)
        )

    def forward(self, history: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        b, x = history.shape[0], history.shape[-1]
        h = torch.cat([history.flatten(1, 2), params[:, :, None].expand(-1, -1, x)], dim=1)
        for i, conv in enumerate(self.convs):
            h = conv(h)
            if i < len(self.convs) - 1:
                h = torch.nn.functional.gelu(h)
        return h.reshape(b, self.n, self.c, x)


def make_step(net: nn.Module):
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)

    def step(history: torch.Tensor, future: torch.Tensor, params: torch.Tensor) -> None:
        opt.zero_grad(set_to_none=True)
        loss = torch.nn.functional.mse_loss(net(history, params), future)
        loss.backward()
        opt.step()

    return step


def time_step(step, batch: tuple[torch.Tensor, ...], repeats: int = 20) -> float:
    for _ in range(3):
        step(*batch)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        step(*batch)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def epoch(loader: Iterable) -> tuple[float, int]:
    t0 = time.perf_counter()
    windows = sum(h.shape[0] for h, _, _ in loader)
    return time.perf_counter() - t0, windows


def waiting_share(loader: Iterable, step, batches: int) -> dict[str, float]:
    """Runs ``batches`` iterations of (next batch, train step); time spent in next()."""
    it = iter(loader)
    wait = total = 0.0
    done = 0
    t_start = time.perf_counter()
    while done < batches:
        t0 = time.perf_counter()
        try:
            batch = next(it)
        except StopIteration:
            it = iter(loader)
            continue
        wait += time.perf_counter() - t0
        step(*batch)
        done += 1
    total = time.perf_counter() - t_start
    return {"batches": done, "loop_s": total, "wait_s": wait, "share_waiting": wait / total}


def bench_loader(ds, loader, step, repeats: int, train_batches: int) -> dict[str, Any]:
    h, f, p = ds.get_batch([0])
    bytes_per_window = (h.numel() + f.numel() + p.numel()) * 4
    first, _ = epoch(loader)  # starts the workers
    runs = [epoch(loader) for _ in range(repeats)]
    seconds = [r[0] for r in runs]
    windows = runs[0][1]
    med = statistics.median(seconds)
    return {
        "windows_per_epoch": windows,
        "first_epoch_s": first,
        "epoch_s_median": med,
        "epoch_s_all": seconds,
        "windows_per_s": windows / med,
        "mb_per_s": windows * bytes_per_window / med / 1e6,
        "train_loop": waiting_share(loader, step, train_batches),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--dataset", type=Path, help="use this train.h5 instead of generating one")
    ap.add_argument("--trajectories", type=int, default=256)
    ap.add_argument("--nx", type=int, default=256)
    ap.add_argument("--dt", type=float, default=0.01)
    ap.add_argument("--t-end", type=float, default=1.0)
    ap.add_argument("--subset", type=int, default=64, help="trajectories per timed epoch")
    ap.add_argument("--history", type=int, default=1)
    ap.add_argument("--horizon", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--train-batches", type=int, default=40)
    ap.add_argument("--threads", type=int, default=1, help="torch threads of the main process")
    args = ap.parse_args()

    from pbdl_cli.data.loader import make_loader
    from pbdl_cli.data.normalization import compute_normalization
    from pbdl_cli.data.summary import read_info
    from pbdl_cli.data.windows import WindowDataset

    torch.set_num_threads(args.threads)
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="bench_data_") as tmp:
        t0 = time.perf_counter()
        path = args.dataset or generate(Path(tmp), args.trajectories, args.nx, args.dt, args.t_end)
        generate_s = None if args.dataset else time.perf_counter() - t0
        info = read_info(path, verify=False)

        t0 = time.perf_counter()
        full = WindowDataset(path, history=args.history, horizon=args.horizon, in_memory=True)
        load_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        compute_normalization(path)
        norm_s = time.perf_counter() - t0
        del full

        subset = range(min(args.subset, info.num_trajectories))
        common = dict(history=args.history, horizon=args.horizon, trajectories=subset)
        datasets = {
            "memory": WindowDataset(path, in_memory=True, **common),
            "disk": WindowDataset(path, in_memory=False, **common),
        }
        ref = datasets["memory"]
        c = ref.frame_shape[0]
        results: list[dict[str, Any]] = []
        steps: dict[int, float] = {}
        for batch in (32, 128):
            torch.manual_seed(0)
            net = ConvNet(args.history, args.horizon, c, len(ref.param_names))
            step = make_step(net)
            steps[batch] = time_step(step, ref.get_batch(range(batch)))
            for mode, ds in datasets.items():
                for workers in (0, 1, 2):
                    loader = make_loader(ds, batch_size=batch, seed=0, num_workers=workers)
                    row = {"storage": mode, "workers": workers, "batch": batch, "loader": "batched"}
                    row.update(bench_loader(ds, loader, step, args.repeats, args.train_batches))
                    results.append(row)
                    print(_line(row, steps[batch]), flush=True)
                    del loader
                # torch's per-item path for comparison: B item calls + default collate
                g = torch.Generator().manual_seed(0)
                loader = torch.utils.data.DataLoader(
                    ds, batch_size=batch, shuffle=True, generator=g
                )
                row = {"storage": mode, "workers": 0, "batch": batch, "loader": "per-item"}
                row.update(bench_loader(ds, loader, step, args.repeats, args.train_batches))
                results.append(row)
                print(_line(row, steps[batch]), flush=True)
        for row in results:
            step_s = steps[row["batch"]]
            load_per_batch = row["batch"] / row["windows_per_s"]
            row["train_step_s"] = step_s
            # without overlap (workers=0) the loop would wait this share of its time
            row["serial_share_estimate"] = load_per_batch / (load_per_batch + step_s)

    report = {
        "benchmark": "training windows: loader throughput vs training step",
        "machine": {
            "platform": platform.platform(),
            "cpu_count": os.cpu_count(),
            "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(),
            "load_average_before": load_before,
            "load_average_after": os.getloadavg(),
            "cuda": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
        },
        "dataset": {
            "generator": "given" if args.dataset else "pbdl generate solver=burgers_sl",
            "shape": list(info.fields["u"]),
            "params": list(info.params),
            "file_mb": info.size_bytes / 1e6,
            "generate_s": generate_s,
        },
        "settings": {
            "history": args.history,
            "horizon": args.horizon,
            "subset_trajectories": len(subset),
            "windows_per_epoch": len(ref),
            "repeats": args.repeats,
            "train_batches": args.train_batches,
            "net": "ConvNet: 4 periodic Conv1d, width 32, kernel 5, GELU; Adam",
        },
        "setup": {"load_in_memory_s": load_s, "compute_normalization_s": norm_s},
        "train_step_s": {str(b): s for b, s in steps.items()},
        "results": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")


def _line(row: dict[str, Any], step_s: float) -> str:
    return (
        f"{row['storage']:>6} {row['loader']:>8} workers={row['workers']} batch={row['batch']:>3}: "
        f"{row['windows_per_s']:>9.0f} windows/s {row['mb_per_s']:7.1f} MB/s | step "
        f"{step_s * 1e3:6.2f} ms, waiting {row['train_loop']['share_waiting']:5.1%}"
    )


if __name__ == "__main__":
    main()
