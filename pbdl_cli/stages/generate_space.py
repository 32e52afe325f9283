"""What ``pbdl generate`` checks before it simulates anything: that the dataset folder
can be written, and that the dataset fits on its disk and one batch into memory.

Sizes come from the problem's state shape (:attr:`Problem.state_shape`, ``(C, *spatial)``):

- disk: ``sum over splits of n_split x T x prod(state_shape) x 4`` bytes (fields are
  stored as float32; parameters and coordinates are small), skipped with compression,
  whose ratio cannot be known in advance;
- memory of one batch of ``b = min(data.batch_size, largest split)`` trajectories: the
  rollout ``[b, T, *state]`` in the simulation dtype on the simulated (``data.refine``)
  grid, its float32 copy for writing, and :data:`WORK_STATES` states of solver work
  space. A lower estimate: it refuses what cannot fit, never a run that could.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from pbdl_cli.utils.space import check_disk, check_memory, check_writable

#: the settings of a generate run (:class:`pbdl_cli.stages.generate.GenerateSettings`,
#: which imports this module)
GenerateSettings = Any

#: solver temporaries, in states of one batch (spectral transforms, stages, pressure)
WORK_STATES = 4
#: bytes of one stored field value (FIELD_DTYPE)
STORED_BYTES = 4


def split_sizes(s: GenerateSettings) -> dict[str, int]:
    data = s.config.data
    return {"train": data.n_train, "val": data.n_val, "test": data.n_test}


def dataset_bytes(s: GenerateSettings) -> int:
    """About the bytes the uncompressed dataset files take on disk."""
    frames = s.problem.num_steps + 1
    per_trajectory = frames * math.prod(s.problem.state_shape) * STORED_BYTES
    return sum(split_sizes(s).values()) * per_trajectory


def batch_memory(s: GenerateSettings) -> tuple[int, int]:
    """About the bytes one batch needs: ``(on the simulation device, on the host)``
    (the same memory on a CPU)."""
    b = min(s.config.data.batch_size, max(split_sizes(s).values()))
    frames = s.problem.num_steps + 1
    itemsize = torch.empty((), dtype=s.dtype).element_size()
    simulated = b * math.prod(s.simulated.state_shape) * itemsize
    stored = b * frames * math.prod(s.problem.state_shape)
    device = simulated * (frames + WORK_STATES)
    if s.simulated is not s.problem:  # cell averages on the problem's grid
        device += stored * itemsize
    return device, stored * STORED_BYTES


def _device_memory(device: torch.device) -> int | None:
    """Free memory of a CUDA device (None for the CPU or where it cannot be read)."""
    if device.type != "cuda":
        return None
    try:
        return int(torch.cuda.mem_get_info(device)[0])
    except Exception:  # no driver, no such device: the run reports that itself
        return None


def check_generate_space(s: GenerateSettings) -> None:
    """Refuse (one line) when the dataset folder cannot be written or the dataset or one
    batch does not fit; see the module docstring for the estimates."""
    check_writable(s.target.parent, "dataset folder")
    what = f"dataset {s.target}"
    if s.config.data.compression is None:
        check_disk(s.target.parent, dataset_bytes(s), what)
    on_device, on_host = batch_memory(s)
    free = _device_memory(s.device)
    if free is not None:
        check_memory(on_device, f"{what} (one batch on {s.device})", available=free)
        check_memory(on_host, f"{what} (one batch)")
    else:
        check_memory(on_device + on_host, f"{what} (one batch)")
