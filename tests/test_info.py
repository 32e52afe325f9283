"""What ``pbdl info`` prints (pbdl_cli.info): shapes, attributes, checksum status, config."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
from rich.console import Console

from pbdl_cli.data.summary import read_info
from pbdl_cli.data.writer import TrajectoryWriter
from pbdl_cli.info import render_info

N, T, C, S = 6, 5, 2, 16
CONFIG = "problem:\n  name: burgers\nsolver:\n  name: spectral\n"


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    path = tmp_path / "train.h5"
    rng = np.random.default_rng(0)
    with TrajectoryWriter(
        path,
        num_trajectories=N,
        num_times=T,
        fields={"u": (C, S)},
        params={"nu": (), "amp": (2,)},
        coords={"t": np.linspace(0, 1, T), "x": np.linspace(0, 1, S, endpoint=False)},
        attrs={"problem": "burgers", "solver": "spectral", "seed": 1234, "config": CONFIG},
    ) as w:
        params = {"nu": rng.uniform(size=N), "amp": rng.uniform(size=(N, 2))}
        w.write({"u": rng.normal(size=(N, T, C, S))}, params)
    return path


def render_text(info: Any, **kwargs: Any) -> str:
    console = Console(record=True, width=120)
    console.print(render_info(info, **kwargs))
    return console.export_text()


def test_render_info(dataset: Path) -> None:
    text = render_text(read_info(dataset))
    assert "[6, 5, 2, 16]" in text and "[6, 2]" in text
    assert "verified" in text and "MISMATCH" not in text
    assert "6 trajectories × 5 times" in text
    assert "burgers" in text and "1234" in text
    assert "name: spectral" not in text  # config hidden by default
    assert "name: spectral" in render_text(read_info(dataset), show_config=True)
    assert "not verified" in render_text(read_info(dataset, verify=False))

    with h5py.File(dataset, "r+") as f:
        f["params/nu"][0] = -1.0
    assert "MISMATCH" in render_text(read_info(dataset))
