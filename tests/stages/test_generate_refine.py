"""pbdl generate data.refine=r: cell averages of an r times finer simulation."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import torch

from tests.conftest import build, run_cli

COMMON = (
    "solver=burgers_sl",
    "problem.nx=32",
    "problem.t_end=0.4",
    "problem.dt=0.1",
    "problem.nu=0.02",
    "problem.ic=sines",
    "problem.bc=periodic",
    "data.n_train=3",
    "data.n_val=0",
    "data.n_test=0",
)


def test_coarsen_averages_blocks_of_cells():
    problem, _ = build({"nx": 8, "nu": 0.01})
    fine = torch.arange(2 * 32, dtype=torch.float64).reshape(2, 1, 32)
    coarse = problem.coarsen(fine, 4)
    assert coarse.shape == (2, 1, 8)
    assert torch.equal(coarse, fine.reshape(2, 1, 8, 4).mean(-1))
    assert torch.equal(problem.coarsen(fine, 1), fine)
    assert problem.refined(4).grid.shape == (32,) and problem.refined(4).config.nu == 0.01


def test_refined_data_converge_to_the_fine_solution(workdir):
    fields = {}
    for refine in (1, 2, 8):
        name = f"r{refine}"
        result = run_cli(
            "generate", *COMMON, f"data.refine={refine}", f"data.name={name}", cwd=workdir
        )
        assert result.returncode == 0, result.stderr
        with h5py.File(workdir / "datasets" / "burgers" / name / "train.h5") as f:
            fields[refine] = f["fields/u"][()]
            assert f["fields/u"].shape == (3, 5, 1, 32)  # stored on the problem's grid
            if refine > 1:
                assert f.attrs["refine"] == refine
                assert list(f.attrs["simulated_shape"]) == [32 * refine]
    # the first-order scheme's error shrinks with refinement: r=2 is closer to r=8 than r=1
    error = {r: np.abs(fields[r] - fields[8]).mean() for r in (1, 2)}
    assert error[2] < 0.7 * error[1], error
    # the same initial-state functions at every resolution: t=0 differs only by averaging
    assert np.abs(fields[2][:, 0] - fields[8][:, 0]).max() < 0.05


@pytest.mark.parametrize("value", ["0", "-1"])
def test_refine_must_be_positive(workdir, value):
    result = run_cli("generate", *COMMON, f"data.refine={value}", cwd=workdir)
    assert result.returncode == 2 and "refine must be >= 1" in result.stderr
