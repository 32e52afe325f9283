"""Dataset directories as training data (pbdl_cli.data.directory): which split files a
directory must hold, the check that they were generated for the run's problem (name,
settings, frames and fields; parameter ranges may differ in a held-out test split) and
what is read from them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from pbdl_cli.data.directory import DatasetDirectory
from pbdl_cli.data.writer import TrajectoryWriter
from pbdl_cli.errors import PbdlError

T, S = 5, 8
#: the run's problem: its plain config as the generate config stores it
PROBLEM = {"name": "burgers", "nx": S, "nu": 0.01, "nu_range": [0.01, 0.05], "observe_t": []}


def write_split(
    path: Path, *, problem: dict[str, Any] = PROBLEM, shape: tuple[int, ...] = (T, 1, S), **attrs
) -> None:
    """Two trajectories of field ``u`` [2, *shape] with params ``nu`` = 0.02, 0.03, stored
    with a generate config of ``problem``."""
    text = yaml.safe_dump({"problem": problem, "solver": {"name": "burgers_sl"}})
    with TrajectoryWriter(
        path,
        num_trajectories=2,
        num_times=shape[0],
        fields={"u": shape[1:]},
        params={"nu": ()},
        coords={"t": np.arange(shape[0]) * 0.1, "x": np.linspace(0, 1, shape[-1])},
        attrs={"problem": problem["name"], "split": path.stem, "config": text, **attrs},
    ) as w:
        w.write({"u": np.zeros((2, *shape))}, {"nu": np.array([0.02, 0.03])})


def directory(data: Path | str, **options: Any) -> DatasetDirectory:
    return DatasetDirectory(
        str(data),
        method="sol",
        problem="burgers",
        problem_config=dict(PROBLEM),
        fields=("u",),
        frame_shape=(T, 1, S),
        **options,
    )


@pytest.fixture
def data(tmp_path: Path) -> Path:
    root = tmp_path / "tiny"
    root.mkdir()
    write_split(root / "train.h5", refine=4)
    write_split(root / "test.h5")
    return root


def test_splits_params_refine_and_config(data: Path):
    d = directory(data)
    assert sorted(d.files) == ["test", "train"]  # val is optional
    write_split(data / "val.h5")
    assert sorted(directory(data).files) == ["test", "train", "val"]
    assert d.params("test")["nu"].tolist() == pytest.approx([0.02, 0.03])
    assert (d.refine("train"), d.refine("test")) == (4, 1)
    assert d.stored_config("test").problem.nu == 0.01 and d.num_trajectories("train") == 2


def test_a_directory_must_hold_train_and_test(data: Path, tmp_path: Path):
    with pytest.raises(PbdlError, match=r"method\.data is not set"):
        DatasetDirectory(None, method="sol", problem="burgers", problem_config={},
                         fields=("u",), frame_shape=(T, 1, S))  # fmt: skip
    with pytest.raises(PbdlError, match="is a split file; pass its directory"):
        directory(data / "train.h5")
    (data / "test.h5").unlink()
    with pytest.raises(PbdlError, match=r"it lacks test\.h5 \(it holds train\.h5\)"):
        directory(data)
    with pytest.raises(PbdlError, match="no such directory"):
        directory(tmp_path / "nothing")


def test_data_of_another_problem_are_refused_with_the_overrides_that_fit(data: Path):
    write_split(data / "train.h5", problem={**PROBLEM, "nx": 16, "nu": 0.02})
    with pytest.raises(PbdlError, match=r"\(nu=0\.01, nx=8\).*problem\.nu=0\.02 problem\.nx=16"):
        directory(data)
    write_split(data / "train.h5", problem={**PROBLEM, "name": "heat"})
    with pytest.raises(PbdlError, match="holds problem 'heat', the run is problem=burgers"):
        directory(data)
    write_split(data / "train.h5", shape=(T + 1, 1, S))
    with pytest.raises(PbdlError, match=r"field 'u' has frames \[6, 1, 8\].*= \[5, 1, 8\]"):
        directory(data)
    write_split(data / "train.h5", problem={**PROBLEM, "observe_t": [0.5]})
    directory(data)  # observation keys do not shape the data


def test_a_held_out_test_split_may_differ_in_parameter_ranges_only(data: Path, tmp_path: Path):
    held_out = tmp_path / "ood"
    held_out.mkdir()
    write_split(held_out / "test.h5", problem={**PROBLEM, "nu_range": [0.001, 0.005]})
    d = directory(data, test_data=str(held_out))
    assert d.files["test"] == held_out / "test.h5" and d.files["train"] == data / "train.h5"
    assert d.params("test")["nu"].tolist() == pytest.approx([0.02, 0.03])
    write_split(held_out / "test.h5", problem={**PROBLEM, "nx": 16})
    with pytest.raises(PbdlError, match=r"ood was generated with other problem settings"):
        directory(data, test_data=str(held_out))
    (held_out / "test.h5").unlink()
    with pytest.raises(PbdlError, match=r"method\.test_data=.* has no test\.h5"):
        directory(data, test_data=str(held_out))
    # the train split must match the ranges too
    write_split(data / "train.h5", problem={**PROBLEM, "nu_range": [0.001, 0.005]})
    with pytest.raises(PbdlError, match=r"problem\.nu_range=\[0\.001,0\.005\]"):
        directory(data)
