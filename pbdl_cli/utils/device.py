"""Choosing the torch device and dtype from config strings."""

from __future__ import annotations

import torch

from pbdl_cli.errors import PbdlError

DTYPES = {"float32": torch.float32, "float64": torch.float64}


def resolve_device(name: str) -> torch.device:
    """``auto`` -> cuda if available else cpu; ``cpu``, ``cuda``, ``cuda:N``, ``mps``."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise PbdlError(f"device '{name}' is not a torch device; use auto, cpu or cuda") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise PbdlError(f"device '{name}' requested but CUDA is not available; use device=cpu")
    if (
        device.type == "cuda"
        and device.index is not None
        and device.index >= torch.cuda.device_count()
    ):
        raise PbdlError(f"device '{name}' does not exist ({torch.cuda.device_count()} GPUs)")
    return device


def resolve_dtype(name: str) -> torch.dtype:
    """``float32`` or ``float64`` as a torch dtype."""
    try:
        return DTYPES[str(name)]
    except KeyError:
        raise PbdlError(f"dtype '{name}' is not supported; use float32 or float64") from None
