"""Fourier neural operator (Li et al. 2021, "Fourier neural operator for parametric partial
differential equations", ICLR; eqs. 2 and 4).

    v_0 = P([x, p, g]),   v_{j+1} = s(K_j v_j + W_j v_j),   y = Q(v_L)
    K_j v = irfftn(R_j . rfftn(v))   restricted to the lowest ``modes`` frequencies per dim

P (lifting) and W_j are 1x1 convolutions to/at ``width`` channels, Q (projection) is
1x1 conv -> s -> 1x1 conv through ``projection_width`` channels, s is the activation (none
after the last Fourier layer, as in the paper). R_j holds a complex ``width x width`` matrix
per kept mode: frequencies -m..m-1 along each spatial dim but the last and 0..m-1 along the
last (the half spectrum of rfftn), m = ``modes``; it is stored as a real tensor
[width, width, 2m, ..., 2m, m, 2] (real and imaginary parts), so ``state_dict``, ``.to(dtype)``
and every optimizer treat it as ordinary real parameters.

Inputs: x [B, C_in, *spatial], optional scalar parameters p [B, P] as constant channels,
and with ``grid_features`` the cell-centre coordinates g_i = (j + 1/2) / n_i in (0, 1), one
channel per spatial dim (breaks shift equivariance). The FFT makes the layers periodic; for
non-periodic data ``pad`` zero cells are appended to every spatial dim after the lifting
and cropped before the projection (as the paper does for Navier-Stokes/Darcy). Every
spatial size n must satisfy n + pad >= 2 modes, otherwise forward raises an error.

Shapes: x [B, C_in, *spatial] (1-3 spatial dims), params [B, P] -> [B, C_out, *spatial].
Parameters (d = spatial dims, W = width, m = modes, Q = projection_width, G = d with
grid features else 0):
    (C_in + P + G) W + W  +  layers [2 W^2 (2m)^(d-1) m + W^2 + W]  +  W Q + Q + Q C_out + C_out
"""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pbdl_cli.models.base import MODELS, GridModel
from pbdl_cli.models.utils import (
    Activation,
    check_min_size,
    conv,
    make_activation,
    scale_init,
)
from pbdl_cli.registry import PluginConfig


@dataclasses.dataclass
class FNOConfig(PluginConfig):
    """Options of ``fno`` (``model.<key>``).

    Attributes:
        modes: Fourier modes kept per spatial dim (the lowest; see the module docstring).
        width: channels of the Fourier layers.
        layers: number of Fourier layers.
        projection_width: hidden channels of the projection Q.
        activation: gelu, relu, tanh or silu.
        grid_features: append the cell-centre coordinates as input channels.
        pad: zero cells appended to every spatial dim before the FFTs (non-periodic data).
        out_init_scale: factor on the initial weights of the last layer (0: zero output).
    """

    modes: int = 16
    width: int = 32
    layers: int = 4
    projection_width: int = 128
    activation: Activation = Activation.gelu
    grid_features: bool = False
    pad: int = 0
    out_init_scale: float = 1.0

    def __post_init__(self) -> None:
        if self.modes < 1 or self.width < 1 or self.layers < 0 or self.projection_width < 1:
            raise ValueError("modes, width and projection_width must be >= 1 and layers >= 0")
        if self.pad < 0:
            raise ValueError(f"pad must be >= 0 (got {self.pad})")
        if self.out_init_scale < 0:
            raise ValueError("out_init_scale must be >= 0")


class SpectralConv(nn.Module):
    """K v = irfftn(R . rfftn(v)) on the lowest ``modes`` frequencies: [B, I, *S] -> [B, O, *S]."""

    def __init__(self, num_spatial_dims: int, in_channels: int, out_channels: int, modes: int):
        super().__init__()
        self.num_spatial_dims, self.modes = num_spatial_dims, modes
        shape = (in_channels, out_channels, *[2 * modes] * (num_spatial_dims - 1), modes, 2)
        # small uniform initialization, scale 1 / (I O) as in Li et al.'s experiments
        self.weight = nn.Parameter(torch.rand(shape) / (in_channels * out_channels))

    def forward(self, v: Tensor) -> Tensor:
        d, m = self.num_spatial_dims, self.modes
        spatial = tuple(v.shape[-d:])
        dims = tuple(range(-d, 0))
        spectrum = torch.fft.rfftn(v, dim=dims)  # [B, I, n_1, ..., n_{d-1}, n_d // 2 + 1]
        low = spectrum[..., :m]
        for axis in range(2, 1 + d):  # frequencies 0..m-1 and -m..-1
            n = low.shape[axis]
            low = torch.cat([low.narrow(axis, 0, m), low.narrow(axis, n - m, m)], dim=axis)
        out = torch.einsum("bi...,io...->bo...", low, torch.view_as_complex(self.weight))
        for axis in range(2, 1 + d):  # back to their places, zeros in between
            gap = list(out.shape)
            gap[axis] = spatial[axis - 2] - 2 * m
            parts = [out.narrow(axis, 0, m), out.new_zeros(gap), out.narrow(axis, m, m)]
            out = torch.cat(parts, dim=axis)
        gap = [*out.shape[:-1], spatial[-1] // 2 + 1 - m]
        out = torch.cat([out, out.new_zeros(gap)], dim=-1)
        return torch.fft.irfftn(out, s=spatial, dim=dims)


@MODELS.register("fno")
class FNO(GridModel):
    """Fourier neural operator (Li et al. 2021) for grid-to-grid maps."""

    Config = FNOConfig
    name = "fno"

    def __init__(
        self,
        config: FNOConfig,
        *,
        in_channels: int,
        out_channels: int,
        num_spatial_dims: int,
        num_params: int = 0,
    ) -> None:
        super().__init__(
            config,
            in_channels=in_channels,
            out_channels=out_channels,
            num_spatial_dims=num_spatial_dims,
            num_params=num_params,
        )
        d = num_spatial_dims
        w = config.width
        grid = d if config.grid_features else 0
        self.lift = conv(d, in_channels + num_params + grid, w)
        self.spectral = nn.ModuleList(
            SpectralConv(d, w, w, config.modes) for _ in range(config.layers)
        )
        self.pointwise = nn.ModuleList(conv(d, w, w) for _ in range(config.layers))
        self.activation = make_activation(config.activation)
        self.project = nn.Sequential(
            conv(d, w, config.projection_width),
            make_activation(config.activation),
            conv(d, config.projection_width, out_channels),
        )
        scale_init(self.project[-1], config.out_init_scale)

    def summary(self) -> str:
        c = self.config
        grid = ", grid features" if c.grid_features else ""
        pad = f", pad {c.pad}" if c.pad else ""
        return (
            f"{c.layers} layers x {c.width}, {c.modes} modes{grid}{pad}, {self.num_spatial_dims}D"
        )

    def grid(self, x: Tensor) -> Tensor:
        """Cell-centre coordinates in (0, 1): [B, d, *spatial] for x [B, C, *spatial]."""
        spatial = x.shape[2:]
        axes = [(torch.arange(n, device=x.device, dtype=x.dtype) + 0.5) / n for n in spatial]
        coords = torch.stack(torch.meshgrid(*axes, indexing="ij"))
        return coords.unsqueeze(0).expand(x.shape[0], *coords.shape)

    def forward(self, x: Tensor, params: Tensor | None = None) -> Tensor:
        """x [B, C_in, *spatial], params [B, P] or None -> [B, C_out, *spatial]."""
        c = self.config
        self.check(x)
        spatial = tuple(x.shape[2:])
        check_min_size(
            spatial,
            2 * c.modes - c.pad,
            model="fno",
            why=f"modes={c.modes} with pad={c.pad} (n + pad >= 2 modes)",
        )
        h = self.with_params(x, params)
        if c.grid_features:
            h = torch.cat([h, self.grid(x)], dim=1)
        h = self.lift(h)
        if c.pad:
            h = F.pad(h, [0, c.pad] * self.num_spatial_dims)
        for j, (spectral, pointwise) in enumerate(zip(self.spectral, self.pointwise, strict=True)):
            h = spectral(h) + pointwise(h)
            if j < c.layers - 1:
                h = self.activation(h)
        if c.pad:
            h = h[(..., *(slice(0, n) for n in spatial))]
        return self.project(h)
