"""The samples file of a probabilistic model (``samples.h5``), schema ``pbdl-samples`` v1.

One file holds the samples a trained generative model drew for M conditions (M = 1 for an
unconditional problem), optionally with the conditions and with reference samples of the
true distribution, and what drawing them cost::

    /samples      float32|float64  [M, n, *sample_shape]      model samples per condition
    /condition    float32|float64  [M, *condition_shape]      optional: the M conditions
    /reference    float32|float64  [M, n_ref, *sample_shape]  optional: true samples
    /evaluations  int64            [M]    network evaluations (NFE) per condition
    /seconds      float64          [M]    wall-clock seconds of sampling per condition

Root attributes: ``schema = "pbdl-samples"``, ``version = 1``, ``sampler`` (str), ``steps``
(int: the steps asked of the sampler, 0 for its default), ``created``, ``pbdl_version``
and the caller's provenance (``method``, ``problem``, ``run``, ``step``, ``seed``, ...:
str, int or float).
``sample_shape`` has at least one axis: ``(D,)`` for points, ``(C, *spatial)`` for fields.

:func:`write_samples` writes atomically (a temporary file next to the target, renamed
when complete); :func:`read_samples` loads and validates a file, :func:`read_samples_info`
only its header (``pbdl info``). Every failure is one :class:`SamplesError` line. No torch
import: a tensor given to the writer is converted through its ``numpy()``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from pbdl_cli.data.schema import py_value
from pbdl_cli.errors import PbdlError
from pbdl_cli.utils.files import atomic_path

SCHEMA = "pbdl-samples"
VERSION = 1
#: the arrays a file may hold and whether each is required
DATASETS = {
    "samples": True,
    "condition": False,
    "reference": False,
    "evaluations": True,
    "seconds": True,
}
#: dtypes of the sample, condition and reference arrays (stored as given)
FLOAT_DTYPES = (np.dtype("float32"), np.dtype("float64"))
#: root attributes the writer owns; provenance may not use these names
RESERVED_ATTRS = frozenset({"schema", "version", "sampler", "steps", "created", "pbdl_version"})

Provenance = Mapping[str, str | int | float]


class SamplesError(PbdlError):
    """A samples file is missing, unreadable, corrupt or not in the expected schema."""


@dataclass(frozen=True, eq=False)
class SamplesInfo:
    """The header of a samples file: everything but the sample arrays.

    Attributes:
        path: the file.
        version: schema version (:data:`VERSION` once validated).
        sampler, steps: the sampler's name and the steps asked of it (0: its default).
        provenance: the caller's attributes (method, problem, run, step, seed, ...).
        created, pbdl_version: when and by which version the file was written.
        evaluations: int64 [M] network evaluations per condition.
        seconds: float64 [M] sampling time per condition.
        shapes, dtypes: array name -> shape, numpy dtype string (``"<f4"``).
        size_bytes: the file's size on disk.
    """

    path: Path
    version: int
    sampler: str
    steps: int
    provenance: dict[str, str | int | float]
    created: str
    pbdl_version: str
    evaluations: np.ndarray
    seconds: np.ndarray
    shapes: dict[str, tuple[int, ...]]
    dtypes: dict[str, str]
    size_bytes: int

    @property
    def num_conditions(self) -> int:
        """M."""
        return self.shapes["samples"][0]

    @property
    def num_samples(self) -> int:
        """n, the model samples per condition."""
        return self.shapes["samples"][1]

    @property
    def sample_shape(self) -> tuple[int, ...]:
        """``(D,)`` or ``(C, *spatial)``."""
        return self.shapes["samples"][2:]

    @property
    def condition_shape(self) -> tuple[int, ...] | None:
        """The shape of one condition; None if the file stores none."""
        shape = self.shapes.get("condition")
        return None if shape is None else shape[1:]

    @property
    def num_reference(self) -> int:
        """n_ref, the reference samples per condition (0 if the file has none)."""
        shape = self.shapes.get("reference")
        return 0 if shape is None else shape[1]


@dataclass(frozen=True, eq=False)
class SamplesFile(SamplesInfo):
    """A samples file read into memory (:func:`read_samples`).

    Attributes:
        samples: [M, n, *sample_shape] in the stored dtype.
        condition: [M, *condition_shape] or None.
        reference: [M, n_ref, *sample_shape] or None.
    """

    samples: np.ndarray
    condition: np.ndarray | None
    reference: np.ndarray | None


# -------------------------------------------------------------------------------- writing
def _array(value: Any) -> np.ndarray:
    """A numpy array or a (CPU or device) tensor as a numpy array."""
    if hasattr(value, "detach"):  # a torch tensor, without importing torch
        value = value.detach().cpu().numpy()
    return np.asarray(value)


def _float_array(value: Any, name: str, min_ndim: int) -> np.ndarray:
    arr = _array(value)
    if arr.dtype not in FLOAT_DTYPES:
        raise ValueError(f"{name} must be float32 or float64, got {arr.dtype}")
    if arr.ndim < min_ndim or 0 in arr.shape:
        raise ValueError(f"{name} has shape {list(arr.shape)}: need {min_ndim}+ non-empty axes")
    return arr


def _provenance(provenance: Provenance) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in provenance.items():
        if not isinstance(key, str) or not key:
            raise ValueError(f"provenance names must be non-empty strings, got {key!r}")
        if key in RESERVED_ATTRS:
            raise ValueError(f"provenance '{key}' is written by the samples writer itself")
        if isinstance(value, np.generic):
            value = value.item()
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            raise ValueError(
                f"provenance '{key}' has type {type(value).__name__}; use str, int or float"
            )
        if isinstance(value, int) and not -(2**63) <= value < 2**63:
            raise ValueError(f"provenance '{key}': integer {value} does not fit in 64 bits")
        out[key] = np.int64(value) if isinstance(value, int) else value
    return out


def write_samples(
    path: str | Path,
    samples: Any,
    *,
    sampler: str,
    steps: int,
    evaluations: Any,
    seconds: Any,
    conditions: Any = None,
    reference: Any = None,
    attrs: Provenance | None = None,
) -> Path:
    """Writes a samples file atomically; an existing file is replaced only once the new
    one is complete, and nothing is left behind when writing fails.

    Args:
        path: the file (``samples.h5``); its folder is created.
        samples: [M, n, *sample_shape] float32 or float64 (array or tensor).
        sampler: the sampler's name; steps: the steps asked of it (0: its default).
        evaluations: [M] network evaluations per condition (ints >= 0).
        seconds: [M] sampling seconds per condition (>= 0).
        conditions: [M, *condition_shape] float or None (unconditional: M = 1), stored
            as ``/condition``.
        reference: [M, n_ref, *sample_shape] float or None.
        attrs: provenance, root attributes of origin (method, problem, run, step, seed):
            str, int or float; read back as :attr:`SamplesInfo.provenance`.

    Returns:
        ``path``.

    Raises:
        ValueError: for inconsistent shapes, dtypes or attributes (nothing is written).
        NoSpaceError: if the disk fills up (the old file stays).
    """
    path = Path(path)
    data = {"samples": _float_array(samples, "samples", 3)}
    m, sample_shape = data["samples"].shape[0], data["samples"].shape[2:]
    if conditions is not None:
        data["condition"] = _float_array(conditions, "conditions", 1)
        if data["condition"].shape[0] != m:
            raise ValueError(
                f"conditions have shape {list(data['condition'].shape)}, expected {m} conditions"
            )
    if reference is not None:
        data["reference"] = _float_array(reference, "reference", 3)
        ref = data["reference"].shape
        if ref[0] != m or ref[2:] != sample_shape:
            raise ValueError(
                f"reference has shape {list(ref)}, expected [{m}, n_ref, "
                f"{', '.join(map(str, sample_shape))}]"
            )
    nfe, secs = _array(evaluations), _array(seconds)
    if nfe.shape != (m,) or nfe.dtype.kind not in "iu" or (nfe < 0).any():
        raise ValueError(f"evaluations must be {m} integers >= 0, got {nfe.dtype} {nfe.shape}")
    if secs.shape != (m,) or secs.dtype.kind not in "iuf" or not (secs >= 0).all():
        raise ValueError(f"seconds must be {m} numbers >= 0, got {secs.dtype} {secs.shape}")
    data["evaluations"] = nfe.astype(np.int64)
    data["seconds"] = secs.astype(np.float64)
    if not isinstance(sampler, str) or not sampler:
        raise ValueError(f"sampler must be a non-empty name, got {sampler!r}")
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 0:
        raise ValueError(f"steps must be an integer >= 0, got {steps!r}")
    stored = _provenance(attrs or {})

    from pbdl_cli import __version__

    stored |= {
        "schema": SCHEMA,
        "version": np.int64(VERSION),
        "sampler": sampler,
        "steps": np.int64(steps),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "pbdl_version": __version__,
    }
    nbytes = sum(a.nbytes for a in data.values())
    with atomic_path(path, needed=nbytes) as tmp:
        with h5py.File(tmp, "w") as f:
            for name, arr in data.items():
                f.create_dataset(name, data=arr)
            f.attrs.update(stored)
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
    return path


# -------------------------------------------------------------------------------- reading
def _open(path: Path) -> h5py.File:
    if not path.exists():
        raise SamplesError(f"no such samples file: {path}")
    if path.is_dir():
        raise SamplesError(f"{path} is a directory, expected a samples file such as samples.h5")
    if not os.access(path, os.R_OK):
        raise SamplesError(f"cannot read {path}: permission denied")
    try:
        return h5py.File(path, "r")
    except OSError as e:
        raise SamplesError(f"{path} is not a readable HDF5 file (truncated or not HDF5)") from e


def _corrupt(path: Path) -> SamplesError:
    return SamplesError(f"{path} is corrupt: reading its contents failed (truncated or damaged)")


def is_samples_file(path: str | Path) -> bool:
    """Whether ``path`` is an HDF5 file that claims the samples schema (any version);
    False for anything else, including missing and unreadable files."""
    try:
        with h5py.File(path, "r") as f:
            return py_value(f.attrs.get("schema")) == SCHEMA
    except (OSError, RuntimeError, KeyError, TypeError):
        return False


def _validate(f: h5py.File, path: Path) -> dict[str, h5py.Dataset]:
    """Checks schema, version, arrays and their shapes; returns the arrays by name."""
    schema = py_value(f.attrs.get("schema"))
    if schema != SCHEMA:
        if "schema_version" in f.attrs:
            raise SamplesError(f"{path} is a pbdl dataset file, not a samples file")
        found = "no schema attribute" if schema is None else f"schema {schema!r}"
        raise SamplesError(f"{path} is an HDF5 file but not a pbdl samples file ({found})")
    version = py_value(f.attrs.get("version"))
    if isinstance(version, bool) or not isinstance(version, int):
        raise SamplesError(f"{path}: samples version is {version!r}, not an integer")
    if version != VERSION:
        hint = "upgrade pbdl" if version > VERSION else "run pbdl sample again"
        raise SamplesError(
            f"{path}: samples schema version {version}, this pbdl reads version {VERSION} ({hint})"
        )
    for key, kind in (("sampler", str), ("steps", int)):
        value = py_value(f.attrs.get(key))
        if isinstance(value, bool) or not isinstance(value, kind):
            raise SamplesError(f"{path}: attribute '{key}' is missing or not a {kind.__name__}")
    arrays: dict[str, h5py.Dataset] = {}
    for name, required in DATASETS.items():
        if name not in f:
            if required:
                raise SamplesError(f"{path} is not a valid samples file (no /{name})")
            continue
        if not isinstance(f[name], h5py.Dataset):
            raise SamplesError(f"{path}: /{name} is not a dataset")
        arrays[name] = f[name]
    shapes = {name: tuple(ds.shape) for name, ds in arrays.items()}
    for name in ("samples", "condition", "reference"):
        if name in arrays and arrays[name].dtype not in FLOAT_DTYPES:
            raise SamplesError(f"{path}: /{name} has dtype {arrays[name].dtype}, not float")
    if len(shapes["samples"]) < 3:
        raise SamplesError(f"{path}: /samples must be [M, n, *sample_shape], got {shapes}")
    m, sample_shape = shapes["samples"][0], shapes["samples"][2:]
    expected = {"evaluations": (m,), "seconds": (m,)}
    if "reference" in shapes:
        expected["reference"] = (m, *shapes["reference"][1:2], *sample_shape)
    if "condition" in shapes:
        expected["condition"] = (m, *shapes["condition"][1:])
    for name, shape in expected.items():
        if shapes[name] != shape:
            raise SamplesError(
                f"{path}: /{name} has shape {list(shapes[name])} but /samples is "
                f"{list(shapes['samples'])}"
            )
    if arrays["evaluations"].dtype.kind not in "iu":
        raise SamplesError(f"{path}: /evaluations has dtype {arrays['evaluations'].dtype}")
    return arrays


def _info(f: h5py.File, path: Path, arrays: Mapping[str, h5py.Dataset]) -> dict[str, Any]:
    attrs = {key: py_value(value) for key, value in f.attrs.items()}
    return {
        "path": path,
        "version": attrs["version"],
        "sampler": attrs["sampler"],
        "steps": attrs["steps"],
        "provenance": {k: v for k, v in attrs.items() if k not in RESERVED_ATTRS},
        "created": str(attrs.get("created", "")),
        "pbdl_version": str(attrs.get("pbdl_version", "")),
        "evaluations": arrays["evaluations"][()].astype(np.int64),
        "seconds": arrays["seconds"][()].astype(np.float64),
        "shapes": {name: tuple(ds.shape) for name, ds in arrays.items()},
        "dtypes": {name: ds.dtype.str for name, ds in arrays.items()},
        "size_bytes": path.stat().st_size,
    }


def _read(path: str | Path, load: bool) -> SamplesInfo:
    path = Path(path)
    with _open(path) as f:
        try:
            arrays = _validate(f, path)
            info = _info(f, path, arrays)
            if not load:
                return SamplesInfo(**info)
            loaded = {n: arrays[n][()] if n in arrays else None for n in ("condition", "reference")}
            return SamplesFile(**info, samples=arrays["samples"][()], **loaded)
        except SamplesError:
            raise
        except (OSError, RuntimeError, KeyError, ValueError) as e:
            raise _corrupt(path) from e


def read_samples(path: str | Path) -> SamplesFile:
    """Loads a samples file into memory after validating it.

    Raises:
        SamplesError: with one line if the file is missing, unreadable, truncated, not a
            samples file, of another version or internally inconsistent.
    """
    result = _read(path, load=True)
    assert isinstance(result, SamplesFile)
    return result


def read_samples_info(path: str | Path) -> SamplesInfo:
    """The validated header of a samples file, without reading the sample arrays.

    Raises:
        SamplesError: as :func:`read_samples`.
    """
    return _read(path, load=False)
