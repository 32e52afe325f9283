"""The dataset checksums (pbdl_cli.data.checksum): every stored array, every dataset
header (path, dtype, shape) and every attribute but the creation time is covered, so any
single change is reported as a mismatch."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np
import pytest

from pbdl_cli.data.checksum import (
    attributes_checksum,
    compute_checksum,
    verify_checksum,
    verify_file,
)
from pbdl_cli.data.reader import open_dataset
from pbdl_cli.data.summary import read_info
from pbdl_cli.data.writer import TrajectoryWriter
from pbdl_cli.errors import PbdlError

N, T, X, Y = 3, 4, 5, 6
#: every dataset the file holds; each must be covered by the checksum
DATASETS = ("fields/u", "fields/v", "params/amp", "params/nu", "coords/t", "coords/x", "coords/y")


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    """A 2D split with two fields, two params and three coords (all values distinct)."""
    rng = np.random.default_rng(0)
    path = tmp_path / "train.h5"
    coords = {"t": np.linspace(0, 1, T), "x": np.arange(X) + 0.5, "y": np.arange(Y) + 0.25}
    with TrajectoryWriter(
        path,
        num_trajectories=N,
        num_times=T,
        fields={"u": (2, X, Y), "v": (1, X, Y)},
        params={"nu": (), "amp": (2,)},
        coords=coords,
        attrs={"problem": "smoke", "solver": "ns_mac", "dt": 0.1, "seed": 7, "split": "train"},
    ) as w:
        w.write(
            {"u": rng.normal(size=(N, T, 2, X, Y)), "v": rng.normal(size=(N, T, 1, X, Y))},
            {"nu": rng.uniform(size=N), "amp": rng.uniform(size=(N, 2))},
        )
    return path


def assert_mismatch(path: Path) -> None:
    """What a user sees for a changed file: stored != recomputed, ``checksum_ok`` False."""
    stored, recomputed = verify_checksum(path)
    assert stored is not None and stored != recomputed
    assert read_info(path).checksum_ok is False


def test_untouched_file_verifies(dataset: Path) -> None:
    with open_dataset(dataset) as f:  # the tests below tamper with every dataset
        assert sorted(f.datasets()) == sorted(DATASETS)
    stored, recomputed = verify_checksum(dataset)
    assert stored == recomputed == compute_checksum(dataset)
    assert read_info(dataset).checksum_ok is True


@pytest.mark.parametrize("name", DATASETS)
@pytest.mark.parametrize("where", ["first", "last"])
def test_changing_one_value_of_any_dataset_is_detected(
    dataset: Path, name: str, where: str
) -> None:
    """One element of each field, param and coordinate, at its first and last position."""
    with h5py.File(dataset, "r+") as f:
        ds = f[name]
        index = tuple(0 if where == "first" else d - 1 for d in ds.shape)
        ds[index] = ds[index] + 1.0
    assert_mismatch(dataset)


def _rename(group: str, old: str, new: str) -> Callable[[h5py.File], None]:
    return lambda f: f[group].move(old, new)


def _retype(name: str) -> Callable[[h5py.File], None]:
    """Same raw bytes, big-endian dtype: only the header's dtype differs."""

    def change(f: h5py.File) -> None:
        raw = f[name][()]
        attrs = dict(f[name].attrs)
        del f[name]
        ds = f.create_dataset(name, data=raw.view(raw.dtype.newbyteorder(">")))
        ds.attrs.update(attrs)

    return change


def _reshape(name: str, shape: tuple[int, ...]) -> Callable[[h5py.File], None]:
    """Same raw bytes, another shape: only the header's shape differs."""

    def change(f: h5py.File) -> None:
        raw = f[name][()]
        del f[name]
        f.create_dataset(name, data=raw.reshape(shape))

    return change


@pytest.mark.parametrize(
    "change",
    [
        _rename("params", "nu", "visc"),  # path
        _rename("fields", "v", "w"),
        _rename("coords", "y", "z"),  # keeps its axis attribute, so still a valid file
        _retype("fields/u"),  # dtype
        _retype("params/nu"),
        _retype("coords/t"),
        _reshape("params/amp", (N, 2, 1)),  # shape
    ],
    ids=["path-param", "path-field", "path-coord", "dtype-field", "dtype-param",
         "dtype-coord", "shape-param"],
)  # fmt: skip
def test_changing_a_dataset_header_is_detected(dataset: Path, change: Callable) -> None:
    """The bytes stay the same; path, dtype or shape changes, and the file stays valid."""
    with h5py.File(dataset, "r+") as f:
        change(f)
    with open_dataset(dataset):  # still a readable dataset: only the checksum notices
        pass
    assert_mismatch(dataset)


def test_changing_the_stored_checksum_is_detected(dataset: Path) -> None:
    with h5py.File(dataset, "r+") as f:
        f.attrs["checksum"] = "sha256:" + "0" * 64
    assert_mismatch(dataset)


def test_the_creation_time_is_not_covered(dataset: Path) -> None:
    """Documented in docs/dataset-schema.md: ``created`` is part of neither checksum, so
    two runs of the same command give the same ones."""
    before = compute_checksum(dataset)
    with h5py.File(dataset, "r+") as f:
        attributes = f.attrs["attributes_checksum"]
        f.attrs["created"] = "2000-01-01T00:00:00+00:00"
    assert compute_checksum(dataset) == before
    with h5py.File(dataset, "r") as f:
        assert attributes_checksum(f) == attributes
    verify_file(dataset)
    assert read_info(dataset).checksum_ok is True


#: every attribute but ``created`` and the checksums, with a changed value
ATTRIBUTES = [
    ("/", "problem", "burgers"),
    ("/", "solver", "burgers_sl"),
    ("/", "dt", 0.2),
    ("/", "seed", np.int64(8)),
    ("/", "split", "test"),
    ("/", "pbdl_version", "0.0.0"),
    ("/", "extra", "added"),  # a new attribute is a change too
    ("coords/x", "axis", np.int64(1)),
    ("coords/y", "axis", np.float64(1.0)),  # same number, another dtype
]


@pytest.mark.parametrize(("where", "name", "value"), ATTRIBUTES, ids=lambda v: str(v))
def test_changing_any_attribute_is_detected(dataset: Path, where: str, name: str, value) -> None:
    with h5py.File(dataset, "r+") as f:
        f[where].attrs[name] = value
    assert read_info(dataset).checksum_ok is False
    with pytest.raises(PbdlError, match="its attributes changed") as error:
        verify_file(dataset)
    assert error.value.exit_code == 1


def test_a_changed_value_fails_verification_with_one_line(dataset: Path) -> None:
    verify_file(dataset)  # untouched
    with h5py.File(dataset, "r+") as f:
        f["fields/u"][0, 0, 0, 0, 0] += 1.0
    with pytest.raises(PbdlError, match=r"train\.h5 fails its checksum \(its data changed"):
        verify_file(dataset)


def test_a_file_without_an_attribute_checksum_verifies_its_data(dataset: Path) -> None:
    """Files written before the attribute checksum existed carry only ``checksum``."""
    with h5py.File(dataset, "r+") as f:
        del f.attrs["attributes_checksum"]
        f.attrs["seed"] = np.int64(8)  # unverifiable without the attribute checksum
    verify_file(dataset)
    assert read_info(dataset).checksum_ok is True
