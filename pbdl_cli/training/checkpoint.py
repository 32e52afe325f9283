"""Checkpoints: everything needed to continue a run exactly, written atomically.

A checkpoint holds the model, optimizer and scheduler states, the step and phase, the
random number generator states (torch CPU and CUDA, numpy, python) and whatever the
caller adds (resolved config, plugin names). It is written to a temporary file in the
same directory and renamed over the old one, so ``last.pt`` is always a complete file.

Everything in it is a tensor, a number, a string or a plain container, so it loads with
``torch.load(weights_only=True)``: opening a checkpoint from elsewhere never runs code
(a pickled object with a ``__reduce__`` is refused). It always loads onto the CPU; the
trainer's ``load_state_dict`` calls move model and optimizer states to their device.
"""

from __future__ import annotations

import io
import pickle
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pbdl_cli.errors import PbdlError
from pbdl_cli.utils.files import atomic_path


def rng_state() -> dict[str, Any]:
    """The state of every random number generator a run may draw from, as tensors,
    numbers and plain containers (numpy's key array as an int64 tensor)."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "name": str(name),
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        },
        "python": [int(version), [int(v) for v in internal], gauss_next],
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"].cpu())
    numpy = state["numpy"]
    if isinstance(numpy, dict):
        keys = numpy["keys"].cpu().numpy().astype(np.uint32)
        numpy = (numpy["name"], keys, numpy["pos"], numpy["has_gauss"], numpy["cached_gaussian"])
    np.random.set_state(numpy)
    version, internal, gauss_next = state["python"]
    random.setstate((version, tuple(internal), gauss_next))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])


def _numpy_globals() -> list[Any]:
    """What checkpoints written before pbdl stored plain rng states need: numpy's array
    reconstruction and the uint32 dtype, nothing that can call arbitrary code."""
    multiarray = getattr(np, "_core", None) or np.core
    return [
        multiarray.multiarray._reconstruct,
        np.ndarray,
        np.dtype,
        type(np.dtype(np.uint32)),
    ]


def save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    """``torch.save`` to ``path`` through a temporary file and an atomic rename.

    The bytes are serialized in memory first and then written as one file: on a full
    disk torch's own writer fails with an unrelated message ("unexpected pos"), a plain
    write with ENOSPC, which :func:`atomic_path` turns into a one-line error.
    """
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    with atomic_path(path, needed=buffer.getbuffer().nbytes) as tmp, tmp.open("wb") as handle:
        handle.write(buffer.getbuffer())


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Load a checkpoint written by :func:`save_checkpoint` onto the CPU, without running
    any code stored in it; one-line errors if it is not one."""
    if not path.is_file():
        raise PbdlError(f"no checkpoint at {path}")
    try:
        with torch.serialization.safe_globals(_numpy_globals()):
            payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        if "Unsupported global" not in str(error):  # not a refused object: damaged bytes
            raise PbdlError(f"{path} is not a readable checkpoint (UnpicklingError)") from None
        raise PbdlError(
            f"{path} is not a pbdl checkpoint: it holds objects other than tensors, numbers "
            "and plain containers (refused: loading them could run code)"
        ) from None
    except Exception as error:
        raise PbdlError(f"{path} is not a readable checkpoint ({type(error).__name__})") from None
    if not isinstance(payload, dict) or "model" not in payload or "step" not in payload:
        raise PbdlError(f"{path} is not a pbdl checkpoint")
    return payload
