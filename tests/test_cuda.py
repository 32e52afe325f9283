"""The CUDA paths (issue 11, item 15): training, resume and evaluation on the GPU, data
generation, and the NS solver's step and gradients against the CPU. Every test runs
wherever a CUDA device is present; elsewhere each is reported as skipped ("no CUDA
device"), never as passed."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from pbdl_cli.data.reader import read_trajectories
from tests.conftest import run_cli
from tests.solvers.test_ns_mac import make, random_state

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(
        not torch.cuda.is_available(), reason="no CUDA device: the CUDA tests were not run"
    ),
]
CUDA = torch.device("cuda")
#: a PINN run of 6 Adam steps on the GPU (debug=smoke otherwise)
GPU_RUN = ("debug=smoke", "device=cuda", "trainer.lbfgs_steps=0")


def _on(params: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    return {k: v.to(device) for k, v in params.items()}


def test_a_run_trains_resumes_and_evaluates_on_the_gpu(workdir: Path):
    """Checkpoints load onto the CPU and the model and optimizer states move to the run's
    device: resuming on a GPU once failed in torch.set_rng_state."""
    first = run_cli("train", *GPU_RUN, "trainer.max_steps=4", "hydra.run.dir=run", cwd=workdir)
    assert first.returncode == 0, first.stderr
    more = run_cli("train", "resume=true", "hydra.run.dir=run", "trainer.max_steps=6", cwd=workdir)
    assert more.returncode == 0, more.stderr
    whole = run_cli("train", *GPU_RUN, "trainer.max_steps=6", "hydra.run.dir=whole", cwd=workdir)
    assert whole.returncode == 0, whole.stderr
    resumed = json.loads((workdir / "run" / "summary.json").read_text())
    straight = json.loads((workdir / "whole" / "summary.json").read_text())
    assert resumed["steps"] == straight["steps"] == 6
    assert resumed["train"]["loss"] == pytest.approx(straight["train"]["loss"], rel=1e-5)
    evaluated = run_cli("evaluate", "run=run", "device=cuda", "plots=false", cwd=workdir)
    assert evaluated.returncode == 0, evaluated.stderr
    metrics = json.loads((workdir / "run" / "eval" / "metrics.json").read_text())["metrics"]
    assert metrics["rel_l2"] == pytest.approx(resumed["test"]["rel_l2"], rel=1e-4)


def test_generate_on_the_gpu_gives_the_cpu_data(workdir: Path):
    for device in ("cpu", "cuda"):
        named = (f"device={device}", f"data.name={device}")
        made = run_cli("generate", "debug=smoke", *named, cwd=workdir)
        assert made.returncode == 0, made.stderr
    (cpu,) = workdir.glob("datasets/*/cpu")
    gpu = cpu.parent / "cuda"
    for split in ("train", "test"):
        a = read_trajectories(cpu / f"{split}.h5")
        b = read_trajectories(gpu / f"{split}.h5")
        for name, values in a["fields"].items():
            np.testing.assert_allclose(b["fields"][name], values, rtol=1e-4, atol=1e-5)
        for name, values in a["params"].items():
            np.testing.assert_allclose(b["params"][name], values, rtol=1e-6)


def test_a_navier_stokes_step_on_the_gpu_matches_the_cpu():
    p, s = make({"diffusion": "implicit", "cg_tol": 1e-12}, obstacle=True, channel=True)
    params, state = random_state(p, 3, seed=4)
    cpu = s(state, 0.3, params)
    gpu = s(state.to(CUDA), 0.3, _on(params, CUDA))
    assert gpu.device.type == "cuda"
    torch.testing.assert_close(gpu.cpu(), cpu, rtol=1e-7, atol=1e-8)


def test_gradcheck_of_a_navier_stokes_step_on_the_gpu():
    """Through the pressure solve's adjoint, in float64 on the device."""
    p, s = make(
        {"substeps": 1, "cg_tol": 1e-13, "diffusion": "implicit"},
        nx=6,
        ny=5,
        obstacle=True,
        channel=True,
    )
    params, state = random_state(p, 2, seed=1)
    params = _on(params, CUDA)
    state = state.to(CUDA).requires_grad_(True)
    assert torch.autograd.gradcheck(
        lambda x: s(x, 0.3, params), (state,), atol=1e-6, fast_mode=True
    )
