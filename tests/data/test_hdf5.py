"""Dataset files: the writer, the validating reader, checksums and the summary
(pbdl_cli.data.writer, .reader, .checksum, .summary)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
import torch

from pbdl_cli.data import checksum
from pbdl_cli.data.checksum import compute_checksum, verify_checksum
from pbdl_cli.data.reader import open_dataset, read_trajectories
from pbdl_cli.data.schema import SCHEMA_VERSION, DatasetError
from pbdl_cli.data.summary import read_info
from pbdl_cli.data.writer import TrajectoryWriter
from pbdl_cli.errors import PbdlError

N, T, C, S = 6, 5, 2, 16
CONFIG = "problem:\n  name: burgers\n  nu: [0.01, 0.1]\nsolver:\n  name: spectral\n"


def make_data(seed: int = 0) -> dict[str, torch.Tensor]:
    """Deterministic test data: u [N, T, C, S], v [N, T, 1, S], nu [N], amp [N, 2]."""
    g = torch.Generator().manual_seed(seed)
    return {
        "u": torch.randn(N, T, C, S, generator=g, dtype=torch.float64),
        "v": torch.randn(N, T, 1, S, generator=g),
        "nu": torch.rand(N, generator=g),
        "amp": torch.rand(N, 2, generator=g),
    }


def writer_kwargs(**overrides: Any) -> dict[str, Any]:
    kwargs: dict[str, Any] = dict(
        num_trajectories=N,
        num_times=T,
        fields={"u": (C, S), "v": (1, S)},
        params={"nu": (), "amp": (2,)},
        coords={"t": torch.linspace(0, 1, T), "x": np.linspace(0, 1, S, endpoint=False)},
        attrs={
            "problem": "burgers",
            "solver": "spectral",
            "dt": 0.25,
            "seed": 1234,
            "split": "train",
            "config": CONFIG,
            "created": "2024-01-01T00:00:00+00:00",  # fixed, so two writes are identical
            "resolution": [16],
            "periodic": True,
        },
    )
    kwargs.update(overrides)
    return kwargs


def write_dataset(
    path: Path, data: dict[str, torch.Tensor] | None = None, size: int = 2, **overrides: Any
) -> Path:
    data = make_data() if data is None else data
    with TrajectoryWriter(path, **writer_kwargs(**overrides)) as w:
        for i in range(0, N, size):
            w.write(*batch(data, i, i + size))
    return path


def batch(data: dict[str, torch.Tensor], lo: int = 0, hi: int = N) -> tuple[dict, dict]:
    """Trajectories ``lo:hi`` of ``data`` as ``(fields, params)`` for ``write``."""
    fields = {"u": data["u"][lo:hi], "v": data["v"][lo:hi]}
    return fields, {"nu": data["nu"][lo:hi], "amp": data["amp"][lo:hi]}


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    return write_dataset(tmp_path / "train.h5")


# ------------------------------------------------------------------------ round trip


def test_round_trip(dataset: Path) -> None:
    data = make_data()
    out = read_trajectories(dataset)
    assert out["fields"]["u"].dtype == np.float32
    np.testing.assert_array_equal(out["fields"]["u"], data["u"].float().numpy())
    np.testing.assert_array_equal(out["fields"]["v"], data["v"].numpy())
    np.testing.assert_array_equal(out["params"]["nu"], data["nu"].numpy())
    np.testing.assert_array_equal(out["params"]["amp"], data["amp"].numpy())
    assert out["coords"]["t"].dtype == np.float64
    assert out["coords"]["x"].dtype == np.float64
    np.testing.assert_allclose(out["coords"]["t"], np.linspace(0, 1, T), rtol=1e-6)
    attrs = out["attrs"]
    assert attrs["schema_version"] == SCHEMA_VERSION
    assert attrs["config"] == CONFIG
    assert attrs["problem"] == "burgers" and attrs["split"] == "train"
    assert attrs["dt"] == 0.25 and attrs["seed"] == 1234
    assert attrs["resolution"] == [16] and attrs["periodic"] is True
    assert attrs["checksum"].startswith("sha256:")
    assert isinstance(attrs["pbdl_version"], str)

    with h5py.File(dataset, "r") as f:
        assert f["fields/u"].chunks == (1, T, C, S)
        assert f["fields/u"].compression is None


def test_read_trajectories_indices(dataset: Path) -> None:
    u = make_data()["u"].float().numpy()
    np.testing.assert_array_equal(
        read_trajectories(dataset, [4, 1, 4])["fields"]["u"], u[[4, 1, 4]]
    )
    np.testing.assert_array_equal(read_trajectories(dataset, slice(1, 4))["fields"]["u"], u[1:4])
    np.testing.assert_array_equal(read_trajectories(dataset, [-1])["fields"]["u"], u[[-1]])
    with pytest.raises(IndexError):
        read_trajectories(dataset, [N])


def test_read_info(dataset: Path) -> None:
    info = read_info(dataset)
    assert info.schema_version == SCHEMA_VERSION
    assert (info.num_trajectories, info.num_times) == (N, T)
    assert info.fields == {"u": (N, T, C, S), "v": (N, T, 1, S)}
    assert info.params == {"nu": (N,), "amp": (N, 2)}
    assert info.coords == {"t": (T,), "x": (S,)}
    assert (info.problem, info.solver, info.split) == ("burgers", "spectral", "train")
    assert info.checksum_ok is True
    assert info.attrs["config"] == CONFIG
    assert info.size_bytes == dataset.stat().st_size
    assert info.dtypes["fields/u"] == "<f4" and info.dtypes["coords/t"] == "<f8"
    assert read_info(dataset, verify=False).checksum_ok is None


def test_compression(tmp_path: Path) -> None:
    plain = write_dataset(tmp_path / "a.h5")
    packed = write_dataset(tmp_path / "b.h5", compression="gzip")
    with h5py.File(packed, "r") as f:
        assert f["fields/u"].compression == "gzip"
    assert read_info(packed).checksum_ok
    assert read_info(plain).checksum == read_info(packed).checksum


# -------------------------------------------------------------------------- checksum


def test_checksum_stable_and_sensitive(tmp_path: Path) -> None:
    a = write_dataset(tmp_path / "a.h5")
    b = write_dataset(tmp_path / "b.h5")
    assert read_info(a).checksum == read_info(b).checksum
    stored, recomputed = verify_checksum(a)
    assert stored == recomputed == compute_checksum(a)

    with h5py.File(b, "r+") as f:
        f["fields/u"][3, 2, 1, 7] += 1.0
    stored, recomputed = verify_checksum(b)
    assert stored != recomputed
    assert read_info(b).checksum_ok is False

    data = make_data()
    data["nu"][0] += 0.5
    c = write_dataset(tmp_path / "c.h5", data)
    assert read_info(c).checksum != read_info(a).checksum


def test_checksum_independent_of_batching(tmp_path: Path) -> None:
    whole = write_dataset(tmp_path / "whole.h5", size=N)
    singles = write_dataset(tmp_path / "singles.h5", size=1)
    uneven = tmp_path / "uneven.h5"
    data = make_data()
    with TrajectoryWriter(uneven, **writer_kwargs()) as w:
        for lo, hi in ((0, 1), (1, 5), (5, 6)):
            w.write(
                {"u": data["u"][lo:hi].numpy(), "v": data["v"][lo:hi]},
                {"nu": data["nu"][lo:hi], "amp": data["amp"][lo:hi]},
            )
    sums = {read_info(p).checksum for p in (whole, singles, uneven)}
    assert len(sums) == 1


def test_checksum_reads_in_blocks(dataset: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With a tiny read budget verification slices below one trajectory, same result."""
    expected = compute_checksum(dataset)
    reads: list[int] = []
    original = checksum.iter_blocks

    def small_blocks(ds: h5py.Dataset, budget: int = 0) -> Any:
        for block in original(ds, budget=64):
            reads.append(block.nbytes)
            yield block

    monkeypatch.setattr(checksum, "iter_blocks", small_blocks)
    assert compute_checksum(dataset) == expected
    assert max(reads) <= 64


# ------------------------------------------------------------------ write semantics


def test_partial_then_final(tmp_path: Path) -> None:
    path = tmp_path / "train.h5"
    partial = tmp_path / "train.h5.partial"
    data = make_data()
    w = TrajectoryWriter(path, **writer_kwargs())
    with w:
        assert partial.exists() and not path.exists()
        w.write(*batch(data))
        assert partial.exists() and not path.exists()
    assert path.exists() and not partial.exists()
    assert w.close() == path  # idempotent


def test_exception_removes_partial(tmp_path: Path) -> None:
    path = tmp_path / "train.h5"
    data = make_data()
    with pytest.raises(RuntimeError, match="boom"), TrajectoryWriter(path, **writer_kwargs()) as w:
        w.write(*batch(data, 0, 2))
        raise RuntimeError("boom")
    assert not path.exists()
    assert not (tmp_path / "train.h5.partial").exists()


def test_keyboard_interrupt_removes_partial(tmp_path: Path) -> None:
    path = tmp_path / "train.h5"
    with pytest.raises(KeyboardInterrupt), TrajectoryWriter(path, **writer_kwargs()):
        raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []


def test_too_many_trajectories(tmp_path: Path) -> None:
    data = make_data()
    w = TrajectoryWriter(tmp_path / "train.h5", **writer_kwargs())
    w.write(*batch(data))
    with pytest.raises(ValueError, match="num_trajectories=6"):
        w.write(*batch(data, 0, 1))
    w.close()  # the rejected batch left the writer usable
    assert read_info(tmp_path / "train.h5").checksum_ok


def test_too_few_trajectories(tmp_path: Path) -> None:
    path = tmp_path / "train.h5"
    data = make_data()
    with (
        pytest.raises(ValueError, match="but 2 were written"),
        TrajectoryWriter(path, **writer_kwargs()) as w,
    ):
        w.write(*batch(data, 0, 2))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("fields", "params", "match"),
    [
        ({"u": torch.zeros(2, T, C, S + 1), "v": torch.zeros(2, T, 1, S)}, None, "field 'u'"),
        ({"u": torch.zeros(2, T + 1, C, S), "v": torch.zeros(2, T, 1, S)}, None, "field 'u'"),
        ({"u": torch.zeros(2, T, C, S)}, None, r"missing \['v'\]"),
        (
            {"u": torch.zeros(2, T, C, S), "v": torch.zeros(2, T, 1, S), "w": torch.zeros(2)},
            None,
            r"unexpected \['w'\]",
        ),
        (None, {"nu": torch.zeros(2, 1), "amp": torch.zeros(2, 2)}, "param 'nu'"),
        (None, {"nu": torch.zeros(2)}, r"missing \['amp'\]"),
        (None, {"nu": torch.zeros(3), "amp": torch.zeros(3, 2)}, "batch sizes differ"),
    ],
)
def test_write_rejects_bad_batches(
    tmp_path: Path, fields: dict | None, params: dict | None, match: str
) -> None:
    fields = fields or {"u": torch.zeros(2, T, C, S), "v": torch.zeros(2, T, 1, S)}
    params = params or {"nu": torch.zeros(2), "amp": torch.zeros(2, 2)}
    with TrajectoryWriter(tmp_path / "train.h5", **writer_kwargs(num_trajectories=2)) as w:
        with pytest.raises(ValueError, match=match):
            w.write(fields, params)
        w.write(*batch(make_data(), 0, 2))


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"coords": {"x": np.zeros(S)}}, "'t'"),
        ({"coords": {"t": np.zeros(T + 1), "x": np.zeros(S)}}, "num_times"),
        ({"coords": {"t": np.zeros(T), "x": np.zeros(S - 1)}}, "spatial"),
        ({"coords": {"t": np.zeros(T)}}, "spatial"),
        ({"fields": {"u": (C, S), "v": (1, S + 1)}}, "spatial shape"),
        ({"attrs": {"checksum": "x"}}, "written by the dataset writer"),
        ({"attrs": {"seed": "one"}}, "seed"),
        ({"attrs": {"extra": None}}, "extra"),
        ({"compression": "zstd"}, "compression"),
    ],
)
def test_writer_rejects_bad_layout(tmp_path: Path, overrides: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        TrajectoryWriter(tmp_path / "train.h5", **writer_kwargs(**overrides))
    assert list(tmp_path.iterdir()) == []


def test_2d_axis_order(tmp_path: Path) -> None:
    """Spatial coords keep their axis order even when names do not sort that way."""
    path = tmp_path / "val.h5"
    kwargs = writer_kwargs(
        num_trajectories=1,
        fields={"w": (1, 3, 4)},
        params={},
        coords={"t": np.arange(T), "r": np.zeros(3), "phi": np.zeros(4)},
    )
    with TrajectoryWriter(path, **kwargs) as w:
        w.write({"w": np.ones((1, T, 1, 3, 4))}, {})
    info = read_info(path)
    assert list(info.coords) == ["t", "r", "phi"] and info.checksum_ok


def test_time_only_and_static_layouts(tmp_path: Path) -> None:
    """Fields without spatial axes ([N, T, C], ODEs) and with one frame (static problems)."""
    ode = tmp_path / "ode.h5"
    u = np.random.default_rng(0).normal(size=(3, T, 2))
    kwargs = writer_kwargs(
        num_trajectories=3, fields={"u": (2,)}, params={"k": ()}, coords={"t": np.arange(T)}
    )
    with TrajectoryWriter(ode, **kwargs) as w:
        w.write({"u": u}, {"k": np.ones(3)})
    info = read_info(ode)
    assert info.fields == {"u": (3, T, 2)} and info.coords == {"t": (T,)} and info.checksum_ok
    np.testing.assert_allclose(read_trajectories(ode, [2])["fields"]["u"][0], u[2], rtol=1e-6)
    with h5py.File(ode, "r") as f:
        assert f["fields/u"].chunks == (1, T, 2)

    static = tmp_path / "static.h5"
    kwargs = writer_kwargs(
        num_trajectories=1,
        num_times=1,
        fields={"y": (1, S)},
        params={},
        coords={"t": [0.0], "x": np.zeros(S)},
    )
    with TrajectoryWriter(static, **kwargs) as w:
        w.write({"y": np.ones((1, 1, 1, S))})
    info = read_info(static)
    assert info.fields == {"y": (1, 1, 1, S)} and info.num_times == 1 and info.checksum_ok
    with pytest.raises(ValueError, match="0 spatial dims"):
        TrajectoryWriter(tmp_path / "bad.h5", **writer_kwargs(fields={"u": (1,)}))


# ------------------------------------------------------------------------ validation


def message(exc: pytest.ExceptionInfo[DatasetError]) -> str:
    text = str(exc.value)
    assert "\n" not in text and "h5py" not in text and "H5F" not in text
    return text


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="no such dataset file") as exc:
        read_info(tmp_path / "train.h5")
    assert "partial" not in message(exc)
    assert isinstance(exc.value, PbdlError) and exc.value.exit_code == 2


def test_partial_only(tmp_path: Path, dataset: Path) -> None:
    path = tmp_path / "val.h5"
    shutil.copy(dataset, tmp_path / "val.h5.partial")
    with pytest.raises(DatasetError, match="partial") as exc:
        open_dataset(path)
    assert "no such dataset file" in message(exc)


def test_truncated_file(tmp_path: Path, dataset: Path) -> None:
    path = tmp_path / "cut.h5"
    raw = dataset.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(DatasetError, match="not a readable HDF5 file") as exc:
        read_info(path)
    message(exc)


def test_random_bytes(tmp_path: Path) -> None:
    path = tmp_path / "noise.h5"
    path.write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(DatasetError, match="not a readable HDF5 file") as exc:
        open_dataset(path)
    message(exc)


def test_hdf5_without_schema(tmp_path: Path) -> None:
    path = tmp_path / "other.h5"
    with h5py.File(path, "w") as f:
        f["data"] = np.zeros(3)
    with pytest.raises(DatasetError, match="not a pbdl dataset") as exc:
        read_info(path)
    message(exc)


def test_wrong_schema_version(tmp_path: Path, dataset: Path) -> None:
    with h5py.File(dataset, "r+") as f:
        f.attrs["schema_version"] = 7
    with pytest.raises(DatasetError, match="schema version 7, this pbdl reads version 1") as exc:
        read_info(dataset)
    message(exc)


@pytest.mark.parametrize(
    ("mutate", "match"),
    [
        (lambda f: f["params"].create_dataset("bad", data=np.zeros(N + 1)), "param 'bad'"),
        (lambda f: f["fields"].create_dataset("w", data=np.zeros((N, T + 1, 1, S))), "disagree"),
        (lambda f: f["fields"].create_dataset("w", data=np.zeros((N - 1, T, 1, S))), "disagree"),
        (lambda f: f["coords"].move("t", "time"), "coords/t"),
        (
            lambda f: (f["coords"].__delitem__("t"), f["coords"].create_dataset("t", data=[0.0])),
            "coords/t",
        ),
        (
            lambda f: (f["coords"].__delitem__("x"), f["coords"].create_dataset("x", data=[0.0])),
            "coords/x",
        ),
        (lambda f: f.__delitem__("fields"), "no /fields group"),
    ],
)
def test_inconsistent_shapes(dataset: Path, mutate: Any, match: str) -> None:
    with h5py.File(dataset, "r+") as f:
        mutate(f)
    with pytest.raises(DatasetError, match=match) as exc:
        open_dataset(dataset)
    message(exc)


def test_open_dataset_is_read_only(dataset: Path) -> None:
    with open_dataset(dataset) as f:
        assert f.fields["u"].file.mode == "r"
        assert f.fields["u"].shape == (N, T, C, S)
        assert f.num_trajectories == N and f.num_times == T
        assert list(f.params) == ["amp", "nu"] and list(f.coords) == ["t", "x"]
        assert f.axes == ["x"] and f.config == CONFIG and f.attrs["seed"] == 1234
