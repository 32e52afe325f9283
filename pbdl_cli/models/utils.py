"""Helpers shared by the grid models (``resnet``, ``unet``, ``fno``) and the train stage.

Grid models map states ``x`` [B, C_in, *spatial] (1 to 3 spatial dims) and optional scalar
parameters ``params`` [B, P] to [B, C_out, *spatial]. Parameters condition a model as
constant extra input channels (:func:`append_params`), as the solver-in-the-loop networks
of the PBDL book (ch. 11) do with the Reynolds number.
"""

from __future__ import annotations

import enum

import torch
from torch import Tensor, nn

from pbdl_cli.errors import PbdlError


class ModelInputError(PbdlError, ValueError):
    """An input a model cannot take (wrong shape, grid too small for its configuration)."""


class Activation(str, enum.Enum):
    gelu = "gelu"
    relu = "relu"
    tanh = "tanh"
    silu = "silu"


class Padding(str, enum.Enum):
    """Boundary treatment of convolutions: ``circular`` for periodic domains."""

    circular = "circular"
    zeros = "zeros"
    replicate = "replicate"


_ACTIVATIONS: dict[Activation, type[nn.Module]] = {
    Activation.gelu: nn.GELU,
    Activation.relu: nn.ReLU,
    Activation.tanh: nn.Tanh,
    Activation.silu: nn.SiLU,
}

#: F.pad's mode for each padding
PAD_MODES = {
    Padding.circular: "circular",
    Padding.zeros: "constant",
    Padding.replicate: "replicate",
}

_CONVS: dict[int, type[nn.Module]] = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}


def count_parameters(model: nn.Module) -> int:
    """Number of trainable scalars (a complex weight stored as (..., 2) counts twice)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def describe(model: nn.Module) -> str:
    """One line for logs, e.g. ``"resnet: 4 blocks x 64, 1D, 99,457 parameters"``.

    Uses the model's ``summary()`` (architecture in words) where it has one.
    """
    name = getattr(getattr(model, "config", None), "name", None) or type(model).__name__.lower()
    summary = model.summary() if callable(getattr(model, "summary", None)) else ""
    parts = [summary] if summary else []
    return f"{name}: {', '.join([*parts, f'{count_parameters(model):,} parameters'])}"


def make_activation(activation: Activation) -> nn.Module:
    return _ACTIVATIONS[Activation(activation)]()


def check_spatial_dims(num_spatial_dims: int) -> None:
    if num_spatial_dims not in _CONVS:
        raise ValueError(f"num_spatial_dims must be 1, 2 or 3 (got {num_spatial_dims})")


def conv(
    num_spatial_dims: int,
    in_channels: int,
    out_channels: int,
    kernel_size: int = 1,
    *,
    dilation: int = 1,
    padding: Padding = Padding.zeros,
) -> nn.Module:
    """A size-preserving convolution (odd ``kernel_size``) over 1 to 3 spatial dims."""
    check_spatial_dims(num_spatial_dims)
    if kernel_size % 2 != 1:
        raise ValueError(f"kernel_size must be odd to keep the grid size (got {kernel_size})")
    return _CONVS[num_spatial_dims](
        in_channels,
        out_channels,
        kernel_size,
        padding=dilation * (kernel_size // 2),
        dilation=dilation,
        padding_mode=Padding(padding).value,
    )


def scale_init(layer: nn.Module, scale: float) -> None:
    """Multiply a layer's initial weight and bias by ``scale`` (0: the layer outputs 0)."""
    if scale != 1.0:
        with torch.no_grad():
            for p in layer.parameters():
                p.mul_(scale)


def check_input(x: Tensor, *, model: str, in_channels: int, num_spatial_dims: int) -> None:
    """Raise :class:`ModelInputError` unless ``x`` is [B, in_channels, *spatial]."""
    if x.dim() != 2 + num_spatial_dims or x.shape[1] != in_channels:
        raise ModelInputError(
            f"{model}: expected input [B, {in_channels}, {num_spatial_dims} spatial dims], "
            f"got shape {list(x.shape)}"
        )


def check_min_size(spatial: tuple[int, ...], minimum: int, *, model: str, why: str) -> None:
    """Raise :class:`ModelInputError` if a spatial size is below ``minimum``."""
    if min(spatial) < minimum:
        raise ModelInputError(
            f"{model}: {why} needs spatial sizes >= {minimum} (got {list(spatial)}); "
            "change the model configuration or use a finer grid"
        )


def append_params(x: Tensor, params: Tensor | None, num_params: int, *, model: str) -> Tensor:
    """Broadcast each scalar parameter to a constant channel: [B, C, *S], [B, P] -> [B, C+P, *S].

    ``params`` must be given iff the model was built with ``num_params > 0``.
    """
    if num_params == 0:
        if params is not None and params.numel() > 0:
            raise ModelInputError(f"{model}: built with num_params=0 but params were given")
        return x
    if params is None or params.shape != (x.shape[0], num_params):
        got = "None" if params is None else list(params.shape)
        raise ModelInputError(
            f"{model}: built with num_params={num_params}; expected params "
            f"[{x.shape[0]}, {num_params}], got {got}"
        )
    spatial = x.shape[2:]
    channels = params.to(x.dtype).view(*params.shape, *([1] * len(spatial)))
    return torch.cat([x, channels.expand(-1, -1, *spatial)], dim=1)
