"""pbdl generate (stages/generate.py): each split is drawn from its own seed."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pbdl_cli import runner
from pbdl_cli.data.reader import read_trajectories


def test_splits_are_independent_draws_and_the_seed_moves_them_all(workdir: Path, one_thread):
    common = [
        "experiment=burgers_sines",
        "debug=smoke",
        "problem.nx=32",
        "problem.t_end=0.1",
        "problem.dt=0.05",
        "problem.nu_range=[0.005,0.05]",
        "data.n_train=3",
        "data.n_val=3",
        "data.n_test=3",
    ]
    for seed in (0, 1):
        runner.run_stage(
            "generate",
            [*common, f"seed={seed}", f"data.name=s{seed}", f"hydra.run.dir=run{seed}"],
        )

    def split(seed: int, name: str) -> tuple[np.ndarray, np.ndarray]:
        data = read_trajectories(workdir / "datasets" / "burgers" / f"s{seed}" / f"{name}.h5")
        return data["params"]["nu"], data["fields"]["u"][:, 0]  # viscosities, initial states

    drawn = {
        (seed, name): split(seed, name) for seed in (0, 1) for name in ("train", "val", "test")
    }
    keys = sorted(drawn)
    for i, a in enumerate(keys):
        nu_a, u_a = drawn[a]
        assert len(np.unique(nu_a)) == 3  # trajectories differ within a split
        for b in keys[i + 1 :]:
            nu_b, u_b = drawn[b]
            # no viscosity and no initial state of one split recurs in another
            assert not np.isin(nu_a, nu_b).any(), (a, b)
            assert min(np.abs(x - y).max() for x in u_a for y in u_b) > 1e-3, (a, b)
