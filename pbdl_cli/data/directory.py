"""A ``pbdl generate`` dataset directory as training data: its split files and the check
that they were generated for the run's problem.

A directory ``datasets/<problem>/<name>`` holds ``train.h5`` and ``test.h5`` (required)
and ``val.h5`` (optional), each of schema v1 (:mod:`pbdl_cli.data.schema`). A separate
directory may replace the test split (``method.test_data``), e.g. one generated with
parameters beyond the training range; its problem settings may then differ only in the
parameter ranges (``*_range`` keys).

Every split file is verified against its stored checksums when the directory is opened
(:func:`~pbdl_cli.data.checksum.verify_file`): a file changed after ``pbdl generate``
wrote it is refused with one line, before training or evaluation starts.

The problem is described in plain terms (its registered name, its config as a dict, its
fields and the frame shape [T, 1, *spatial] of one field), so this module stays below
``problems/``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from torch import Tensor

from pbdl_cli.data.checksum import verify_file
from pbdl_cli.data.reader import open_dataset
from pbdl_cli.errors import PbdlError

SPLITS = ("train", "val", "test")
#: problem keys that do not shape the data (inverse-problem observations)
IGNORED_PROBLEM_KEYS = ("observe_",)
#: problem keys in which a ``test_data`` split may differ from the run (parameter ranges)
TEST_MAY_DIFFER = ("_range",)


def plain_config(value: Any) -> Any:
    """A config value as plain python (enums as their values); other values as they are."""
    if isinstance(value, DictConfig) or dataclasses.is_dataclass(value):
        node = OmegaConf.structured(value) if dataclasses.is_dataclass(value) else value
        return OmegaConf.to_container(node, resolve=True, enum_to_str=True)
    return value


class DatasetDirectory:
    """The split files of dataset directory ``data``, checked against the run's problem.

    Args:
        data: the directory (``method.data``).
        method: the method's name, for messages.
        problem: the run's problem name (``problem.name``).
        problem_config: the run's problem config (a dict, dataclass or DictConfig).
        fields: the problem's field names.
        frame_shape: the shape [T, 1, *spatial] of one field of one trajectory.
        test_data: optional directory whose ``test.h5`` replaces the test split.

    ``files`` maps ``train``, ``test`` and (where present) ``val`` to their paths.
    """

    def __init__(
        self,
        data: str | None,
        *,
        method: str,
        problem: str,
        problem_config: Any,
        fields: Sequence[str],
        frame_shape: Sequence[int],
        test_data: str | None = None,
    ) -> None:
        self.data = data
        self.problem = problem
        self.problem_config = plain_config(problem_config)
        self.fields = tuple(fields)
        self.frame_shape = tuple(frame_shape)
        self.files = dataset_splits(data, method)
        self.check(self.files["train"])
        if test_data:  # e.g. parameters beyond the training range
            self.files["test"] = held_out_split(test_data, method)
            self.check(self.files["test"], TEST_MAY_DIFFER)
        for path in self.files.values():  # a changed byte must not train silently
            verify_file(path)

    def check(self, path: Path, may_differ: tuple[str, ...] = ()) -> None:
        """Raise :class:`PbdlError` unless split ``path`` was generated for the problem: the
        same problem plugin and settings (observation keys and keys ending with one of
        ``may_differ`` aside), frames and fields."""
        with open_dataset(path) as f:
            attrs = dict(f.attrs)
            fields = {name: tuple(ds.shape) for name, ds in f.fields.items()}
        name = str(attrs.get("problem", ""))
        if name != self.problem:
            raise PbdlError(
                f"dataset {path.parent} holds problem '{name}', the run is problem={self.problem}"
            )
        text = attrs.get("config")
        stored = OmegaConf.create(text).get("problem") if isinstance(text, str) else None
        if stored is not None:
            ours, theirs = self.problem_config, plain_config(stored)
            diff = [
                key
                for key in sorted(set(ours) | set(theirs))
                if not key.startswith(IGNORED_PROBLEM_KEYS)
                and not (may_differ and key.endswith(may_differ))
                and not _same(ours.get(key), theirs.get(key))
            ]
            if diff:
                had = " ".join(f"problem.{k}={_override(theirs.get(k))}" for k in diff)
                got = ", ".join(f"{k}={_override(ours.get(k))}" for k in diff)
                raise PbdlError(
                    f"dataset {path.parent} was generated with other problem settings than "
                    f"this run ({got}); train with the dataset's: {had}"
                )
        for field in self.fields:
            shape = fields.get(field)
            if shape is None or tuple(shape[1:]) != self.frame_shape:
                raise PbdlError(
                    f"dataset {path.parent}: field '{field}' has frames "
                    f"{shape and list(shape[1:])}, the run's problem needs [T, 1, *spatial] = "
                    f"{list(self.frame_shape)}"
                )

    def params(self, split: str) -> dict[str, Tensor]:
        """The physical parameters of every trajectory of ``split``, ``{name: [N, ...]}``
        float64."""
        with open_dataset(self.files[split]) as f:
            group = f.params
            return {name: torch.from_numpy(group[name][()]).double() for name in sorted(group)}

    def refine(self, split: str) -> int:
        """The ``data.refine`` factor ``split`` was simulated with (1: the run's grid)."""
        with open_dataset(self.files[split]) as f:
            return int(f.attrs.get("refine", 1))

    def stored_config(self, split: str) -> DictConfig | None:
        """The generate config stored with ``split`` (None where it has none)."""
        with open_dataset(self.files[split]) as f:
            text = f.attrs.get("config")
        return OmegaConf.create(text) if isinstance(text, str) else None

    def num_trajectories(self, split: str) -> int:
        with open_dataset(self.files[split]) as f:
            return f.num_trajectories


def dataset_splits(data: str | None, method: str) -> dict[str, Path]:
    """The split files of dataset directory ``data``: train and test required, val optional."""
    hint = (
        f"method '{method}' trains on a dataset of `pbdl generate`: pass "
        "method.data=datasets/<problem>/<name>"
    )
    if not data:
        raise PbdlError(f"{hint} (method.data is not set)")
    root = Path(data)
    if root.is_file() and root.suffix == ".h5":
        raise PbdlError(f"method.data={data} is a split file; pass its directory {root.parent}")
    if not root.is_dir():
        raise PbdlError(f"method.data={data}: no such directory; {hint}")
    files = {split: root / f"{split}.h5" for split in SPLITS}
    missing = [f.name for s, f in files.items() if s != "val" and not f.is_file()]
    if missing:
        present = sorted(p.name for p in root.iterdir())
        raise PbdlError(
            f"method.data={data} is not a dataset: it lacks {', '.join(missing)} "
            f"(it holds {', '.join(present) or 'nothing'}); generate one with pbdl generate "
            "data.n_train=... data.n_test=..."
        )
    if not files["val"].is_file():
        del files["val"]
    return files


def held_out_split(test_data: str, method: str) -> Path:
    """The ``test.h5`` of dataset directory ``test_data`` (``method.test_data``)."""
    path = Path(test_data) / "test.h5"
    if not path.is_file():
        raise PbdlError(
            f"method.test_data={test_data} has no test.h5; method '{method}' takes the test "
            "split of that dataset directory (generate one with pbdl generate data.n_train=0 "
            "data.n_val=0 data.n_test=...)"
        )
    return path


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float | int) and isinstance(b, float | int) and not isinstance(a, bool):
        return math.isclose(float(a), float(b), rel_tol=1e-12, abs_tol=0.0)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return a == b


def _override(value: Any) -> str:
    """``value`` as written on the command line."""
    if value is None:
        return "null"
    if isinstance(value, list):
        return "[" + ",".join(_override(v) for v in value) + "]"
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)
