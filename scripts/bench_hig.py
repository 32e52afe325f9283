"""Seconds per half-inverse-gradient update (``method=hig``, PBDL book ch. 40-41) on the
coupled oscillators (``problem=coupled_oscillators``, 2 oscillators, 24 RK4 steps).

One update is: the stacked Jacobian dy/dtheta [B m, p] (``vmap(jacrev)``), its thin SVD,
and the rest (the batch, dL/dy, V Lambda^-beta U^T g, the optimizer step; the rest is the
whole update's median minus the two parts' medians, so it is noisy). For each batch
size B and parameter count p (MLP 4 -> 3 x width tanh -> 24) the script times the three
parts (medians over ``--repeats``), the whole update through ``HIG.step``, and one epoch
of the book's setting (4096 samples, batch 32, width 20 = 1,444 parameters; target: at
most 3 s on a 2-core CPU). CPU, and CUDA when available; float32 (the book's dtype).

Usage:
    python scripts/bench_hig.py [--out scripts/results/bench_hig.json] [--repeats 15]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch

from pbdl_cli.methods.hig import HIG, HIGConfig
from pbdl_cli.problems.coupled_oscillators import CoupledOscillators, CoupledOscillatorsConfig
from pbdl_cli.training import updates

DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "bench_hig.json"
BATCHES = (8, 16, 32, 64)
WIDTHS = (10, 20, 40)  # 664, 1444, 4024 parameters
N_TRAIN = 4096


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def median_seconds(fn: Callable[[], object], device: torch.device, repeats: int) -> float:
    """The median wall time of ``fn`` over ``repeats`` calls after one warm-up call."""
    fn()
    _sync(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def setup(
    device: torch.device, batch: int, width: int
) -> tuple[HIG, torch.nn.Module, torch.optim.Optimizer]:
    problem = CoupledOscillators(CoupledOscillatorsConfig())
    config = HIGConfig(name="hig", batch_size=batch, n_train=N_TRAIN, n_val=0)
    method = HIG(config, problem=problem, device=device, dtype=torch.float32)
    model = method.build_model({"name": "mlp", "depth": 3, "width": width})
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0, momentum=0.0)
    return method, model, optimizer


def update_closure(
    method: HIG, model: torch.nn.Module, optimizer: torch.optim.Optimizer, step: list[int]
) -> Callable[[], object]:
    """One full update as the trainer runs it (closure with backward, then HIG.step)."""

    def closure() -> torch.Tensor:
        optimizer.zero_grad(set_to_none=True)
        loss = method.loss(model, step[0])["loss"]
        loss.backward()
        return loss

    def update() -> None:
        method.step(optimizer, closure)
        step[0] += 1

    return update


def bench_point(device: torch.device, batch: int, width: int, repeats: int) -> dict:
    method, model, optimizer = setup(device, batch, width)
    samples = method.batch(0)
    _, jac = method.jacobian(model, samples)
    jacobian = median_seconds(lambda: method.jacobian(model, samples), device, repeats)
    svd = median_seconds(lambda: updates.thin_svd(jac), device, repeats)
    direct = median_seconds(lambda: torch.linalg.svd(jac, full_matrices=False), device, repeats)
    update = median_seconds(update_closure(method, model, optimizer, [0]), device, repeats)
    return {
        "batch_size": batch,
        "width": width,
        "parameters": sum(q.numel() for q in model.parameters()),
        "jacobian_rows": jac.shape[0],
        "seconds_per_update": update,
        "jacobian": jacobian,
        "svd": svd,
        "svd_untransposed": direct,  # torch.linalg.svd of the wide J itself (before thin_svd)
        "rest": max(update - jacobian - svd, 0.0),
    }


def bench_epoch(device: torch.device, repeats: int) -> dict:
    """Wall time of whole epochs of the book's setting (128 updates each)."""
    method, model, optimizer = setup(device, 32, 20)
    update = update_closure(method, model, optimizer, [0])
    per_epoch = N_TRAIN // 32
    update()  # warm-up
    times = []
    for _ in range(repeats):
        _sync(device)
        start = time.perf_counter()
        for _ in range(per_epoch):
            update()
        _sync(device)
        times.append(time.perf_counter() - start)
    loss = method.validate(model)["y_loss"]
    return {
        "updates_per_epoch": per_epoch,
        "epoch_seconds_median": statistics.median(times),
        "epoch_seconds_min": min(times),
        "epoch_seconds": times,
        "train_loss_after": loss,
        "target_seconds": 3.0,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--epochs", type=int, default=3, help="epochs timed (book setting)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (pbdl's default)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    devices = [torch.device("cpu")]
    if torch.cuda.is_available():
        devices.append(torch.device("cuda"))
    results = {}
    for device in devices:
        points = [bench_point(device, b, 20, args.repeats) for b in BATCHES]
        points += [bench_point(device, 32, w, args.repeats) for w in WIDTHS if w != 20]
        results[device.type] = {
            "threads": torch.get_num_threads(),
            "updates": points,
            "epoch": bench_epoch(device, args.epochs),
        }
        print(json.dumps({device.type: results[device.type]["epoch"]}, indent=1))
    report = {
        "benchmark": "HIG update on coupled_oscillators (book ch. 41), float32",
        "machine": {
            "platform": platform.platform(),
            "cpu_count": torch.get_num_threads(),
            "torch": torch.__version__,
            "cuda": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
        },
        "repeats": args.repeats,
        "results": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
