"""The samples file of pbdl sample (pbdl_cli/data/samples.py): exact round trips, one-line
refusals of missing, truncated, foreign and other-version files, atomic writes, and its
summary in pbdl info."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
import torch
from rich.console import Console

from pbdl_cli.data.samples import (
    SamplesError,
    SamplesFile,
    is_samples_file,
    read_samples,
    read_samples_info,
    write_samples,
)
from pbdl_cli.data.writer import TrajectoryWriter
from pbdl_cli.errors import PbdlError
from pbdl_cli.info import render_samples_info
from tests.conftest import run_cli

M, N, N_REF = 3, 7, 5
PROVENANCE = {"method": "flow_matching", "problem": "parabola", "run": "outputs/x", "step": 400}


def arrays(dtype: Any = np.float32) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {
        "samples": rng.normal(size=(M, N, 2, 4, 3)).astype(dtype),
        "conditions": rng.uniform(size=(M, 1)),
        "reference": rng.normal(size=(M, N_REF, 2, 4, 3)),
    }


def write(path: Path, **overrides: Any) -> Path:
    kwargs: dict[str, Any] = {
        **arrays(),
        "sampler": "euler",
        "steps": 50,
        "evaluations": [50, 50, 51],
        "seconds": [0.25, 0.5, 0.125],
        "attrs": {**PROVENANCE, "seed": 7, "temperature": 0.75},
    }
    kwargs.update(overrides)
    return write_samples(path, kwargs.pop("samples"), **kwargs)


def one_line_error(path: Path, *phrases: str) -> str:
    with pytest.raises(SamplesError) as caught:
        read_samples(path)
    message = str(caught.value)
    assert "\n" not in message and isinstance(caught.value, PbdlError)
    for phrase in phrases:
        assert phrase in message, message
    with pytest.raises(SamplesError, match="^" + re.escape(message) + "$"):
        read_samples_info(path)  # the header reader refuses the same way
    return message


# -- round trip ---------------------------------------------------------------
def test_round_trip_is_exact(tmp_path: Path) -> None:
    path = write(tmp_path / "samples.h5")
    data = arrays()
    read = read_samples(path)
    assert isinstance(read, SamplesFile)
    for name, given in (("samples", "samples"), ("condition", "conditions"), ("reference",) * 2):
        stored, expected = getattr(read, name), data[given]
        assert stored.dtype == expected.dtype and np.array_equal(stored, expected), name
    assert read.samples.dtype == np.float32 and read.reference.dtype == np.float64
    assert read.sampler == "euler" and read.steps == 50 and read.version == 1
    assert read.provenance == {**PROVENANCE, "seed": 7, "temperature": 0.75}
    assert type(read.provenance["step"]) is int and type(read.provenance["temperature"]) is float
    assert read.evaluations.dtype == np.int64 and read.evaluations.tolist() == [50, 50, 51]
    assert read.seconds.tolist() == [0.25, 0.5, 0.125]
    assert (read.num_conditions, read.num_samples, read.num_reference) == (M, N, N_REF)
    assert read.sample_shape == (2, 4, 3) and read.condition_shape == (1,)
    assert read.created.endswith("+00:00") and read.pbdl_version
    with h5py.File(path, "r") as f:  # the documented layout
        assert f.attrs["schema"] == "pbdl-samples" and f.attrs["version"] == 1
        assert sorted(f) == ["condition", "evaluations", "reference", "samples", "seconds"]

    info = read_samples_info(path)
    assert not isinstance(info, SamplesFile) and info.shapes == {
        "samples": (M, N, 2, 4, 3),
        "condition": (M, 1),
        "reference": (M, N_REF, 2, 4, 3),
        "evaluations": (M,),
        "seconds": (M,),
    }
    assert info.dtypes["samples"] == "<f4" and info.provenance == read.provenance


def test_unconditional_float64_tensors(tmp_path: Path) -> None:
    x = torch.randn(1, 11, 2, dtype=torch.float64, requires_grad=True) * 2  # a tensor in a graph
    path = write_samples(
        tmp_path / "s.h5",
        x,
        sampler="ode",
        steps=0,
        evaluations=torch.tensor([86]),
        seconds=np.array([1.5]),
    )
    read = read_samples(path)
    assert read.samples.dtype == np.float64 and np.array_equal(read.samples, x.detach().numpy())
    assert read.condition is None and read.reference is None and read.provenance == {}
    assert read.condition_shape is None and read.num_reference == 0 and read.steps == 0


# -- refusals of the writer ---------------------------------------------------------------
@pytest.mark.parametrize(
    ("overrides", "phrase"),
    [
        ({"samples": np.zeros((M, N, 2), dtype=np.int64)}, "float32 or float64"),
        ({"samples": np.zeros((M, N), dtype=np.float32)}, "need 3+"),
        ({"samples": np.zeros((M, 0, 2), dtype=np.float32)}, "non-empty"),
        ({"conditions": np.zeros((M + 1, 1))}, "expected 3 conditions"),
        ({"reference": np.zeros((M, N_REF, 2, 4, 4))}, "reference has shape"),
        ({"evaluations": [1, 2]}, "evaluations"),
        ({"evaluations": [1.0, 2.0, 3.0]}, "evaluations"),
        ({"evaluations": [1, -2, 3]}, "evaluations"),
        ({"seconds": [0.1, float("nan"), 0.1]}, "seconds"),
        ({"steps": -1}, "steps"),
        ({"steps": True}, "steps"),
        ({"sampler": ""}, "sampler"),
        ({"attrs": {"version": 2}}, "written by the samples writer"),
        ({"attrs": {"seeds": [1, 2]}}, "use str, int or float"),
        ({"attrs": {"ok": True}}, "use str, int or float"),
    ],
)
def test_writer_refuses_bad_input_and_writes_nothing(
    tmp_path: Path, overrides: dict[str, Any], phrase: str
) -> None:
    with pytest.raises(ValueError, match=phrase):
        write(tmp_path / "samples.h5", **overrides)
    assert list(tmp_path.iterdir()) == []


# -- refusals of the reader ---------------------------------------------------------------
def test_missing_directory_and_non_hdf5(tmp_path: Path) -> None:
    one_line_error(tmp_path / "none.h5", "no such samples file")
    one_line_error(tmp_path, "is a directory")
    (tmp_path / "text.h5").write_text("not hdf5\n" * 100)
    one_line_error(tmp_path / "text.h5", "not a readable HDF5 file")


@pytest.mark.parametrize("keep", [0.5, 0.05])
def test_truncated_file(tmp_path: Path, keep: float) -> None:
    path = write(tmp_path / "samples.h5")
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    message = one_line_error(path)
    assert "truncated" in message


def test_foreign_files(tmp_path: Path) -> None:
    foreign = tmp_path / "foreign.h5"
    with h5py.File(foreign, "w") as f:
        f["samples"] = np.zeros((1, 2, 2))
    one_line_error(foreign, "not a pbdl samples file", "no schema attribute")
    with h5py.File(foreign, "a") as f:
        f.attrs["schema"] = "something-else"
    one_line_error(foreign, "not a pbdl samples file", "'something-else'")

    dataset = tmp_path / "train.h5"
    with TrajectoryWriter(
        dataset,
        num_trajectories=1,
        num_times=2,
        fields={"u": (1, 4)},
        params={},
        coords={"t": np.arange(2.0), "x": np.arange(4.0)},
        attrs={},
    ) as w:
        w.write({"u": np.zeros((1, 2, 1, 4))})
    one_line_error(dataset, "pbdl dataset file, not a samples file")
    assert not is_samples_file(dataset) and not is_samples_file(foreign)
    assert not is_samples_file(tmp_path / "none.h5") and not is_samples_file(tmp_path)


@pytest.mark.parametrize(("version", "hint"), [(2, "upgrade pbdl"), (0, "run pbdl sample again")])
def test_other_version(tmp_path: Path, version: int, hint: str) -> None:
    path = write(tmp_path / "samples.h5")
    with h5py.File(path, "a") as f:
        f.attrs["version"] = np.int64(version)
    one_line_error(path, f"samples schema version {version}", "reads version 1", hint)
    assert is_samples_file(path)  # still recognized as one, so pbdl info explains the refusal


@pytest.mark.parametrize(
    ("edit", "phrase"),
    [
        (lambda f: f.__delitem__("samples"), "no /samples"),
        (lambda f: f.__delitem__("seconds"), "no /seconds"),
        (
            lambda f: (f.__delitem__("evaluations"), f.create_dataset("evaluations", data=[1, 2])),
            "/evaluations has shape [2]",
        ),
        (
            lambda f: (
                f.__delitem__("reference"),
                f.create_dataset("reference", data=np.zeros((M, 2, 2))),
            ),
            "/reference has shape",
        ),
        (
            lambda f: (
                f.__delitem__("condition"),
                f.create_dataset("condition", data=np.zeros((1, 1))),
            ),
            "/condition has shape",
        ),
        (lambda f: f.attrs.__delitem__("sampler"), "'sampler' is missing"),
        (lambda f: f.attrs.__setitem__("version", "1"), "not an integer"),
    ],
)
def test_inconsistent_file(tmp_path: Path, edit: Any, phrase: str) -> None:
    path = write(tmp_path / "samples.h5")
    with h5py.File(path, "a") as f:
        edit(f)
    one_line_error(path, phrase)


# -- atomic writes ---------------------------------------------------------------
def test_failed_write_leaves_nothing_and_keeps_the_old_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(tmp_path / "samples.h5")
    before = path.read_bytes()
    real = h5py.Group.create_dataset
    calls = []

    def failing(self: h5py.Group, name: str, *args: Any, **kwargs: Any) -> Any:
        calls.append(name)
        if name == "reference":  # after samples and condition are in the temporary file
            raise OSError("simulated failure while writing")
        return real(self, name, *args, **kwargs)

    monkeypatch.setattr(h5py.Group, "create_dataset", failing)
    with pytest.raises(OSError, match="simulated"):
        write(path, attrs={"run": "second"})
    with pytest.raises(OSError, match="simulated"):
        write(tmp_path / "new.h5")
    assert calls.count("samples") == 2  # the failure came mid-file
    assert [p.name for p in tmp_path.iterdir()] == ["samples.h5"]  # no temp file, no new.h5
    assert path.read_bytes() == before
    monkeypatch.setattr(h5py.Group, "create_dataset", real)
    assert read_samples(path).provenance["run"] == PROVENANCE["run"]


def test_no_temporary_names_are_left(tmp_path: Path) -> None:
    write(tmp_path / "a" / "samples.h5")
    write(tmp_path / "a" / "samples.h5", steps=3)  # replaces it
    assert [p.name for p in (tmp_path / "a").iterdir()] == ["samples.h5"]
    assert read_samples(tmp_path / "a" / "samples.h5").steps == 3


# -- pbdl info ---------------------------------------------------------------
def test_info_summary(tmp_path: Path) -> None:
    path = write(tmp_path / "samples.h5")
    console = Console(record=True, width=120)
    console.print(render_samples_info(read_samples_info(path)))
    text = console.export_text()
    for phrase in (
        "pbdl-samples, version 1",
        "flow_matching",
        "parabola",
        "euler, 50 steps",
        "3 conditions × 7 samples [2, 4, 3], 5 reference samples each",
        "50.3333 network evaluations",
        "[3, 5, 2, 4, 3]",
        "<f4",
    ):
        assert phrase in text, text


def test_info_command(tmp_path: Path) -> None:
    path = write(tmp_path / "samples.h5")
    done = run_cli("info", str(path), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "pbdl-samples" in done.stdout and "flow_matching" in done.stdout
    with h5py.File(path, "a") as f:
        f.attrs["version"] = np.int64(9)
    done = run_cli("info", str(path), cwd=tmp_path)
    assert done.returncode == 2 and "samples schema version 9" in done.stderr
    assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1
