"""Convolutional ResNet on grids, optionally with dilated blocks (Dil-ResNet).

    h_0 = E([x, p]),   h_{j+1} = h_j + F_j(h_j),   y = D(s(h_N))
    F_j = conv_{d_m} o s o ... o conv_{d_1} o s          (pre-activation, He et al. 2016)

E and D are convolutions (``kernel_size``) from C_in + P to ``width`` channels and back;
each of the ``blocks`` residual blocks F_j has one convolution per entry d_i of
``dilations`` (dilation rate d_i). The default ``dilations=[1, 1]`` gives the usual blocks
of two convolutions; ``[1, 2, 4, 8, 4, 2, 1]`` gives the dilated ResNet of Stachenfeld et
al. 2022, "Learned coarse models for efficient turbulence simulation". Scalar parameters
p [B, P] enter as constant channels (as Re in the solver-in-the-loop networks of Um et al.
2020 / PBDL book ch. 11). ``out_init_scale`` scales D's initial weights (0: the network
starts as the zero function, the usual start of a learned solver correction).

Shapes: x [B, C_in, *spatial] (1-3 spatial dims), params [B, P] -> [B, C_out, *spatial].
Parameters (d = spatial dims, k = kernel_size, W = width, n = len(dilations)):
    (C_in + P) W k^d + W  +  blocks n (W^2 k^d + W)  +  W C_out k^d + C_out
"""

from __future__ import annotations

import dataclasses

from torch import Tensor, nn

from pbdl_cli.models.base import MODELS, GridModel
from pbdl_cli.models.utils import (
    Activation,
    Padding,
    check_min_size,
    conv,
    make_activation,
    scale_init,
)
from pbdl_cli.registry import PluginConfig


@dataclasses.dataclass
class ResNetConfig(PluginConfig):
    """Options of ``resnet`` (``model.<key>``).

    Attributes:
        width: channels of the hidden layers.
        blocks: number of residual blocks.
        kernel_size: odd convolution kernel size (all layers).
        dilations: dilation rate of each convolution of a block ([1, 1]: two plain convs;
            [1, 2, 4, 8, 4, 2, 1]: Dil-ResNet).
        activation: gelu, relu, tanh or silu.
        padding: circular (periodic domains), zeros or replicate.
        out_init_scale: factor on the initial weights of the last layer (0: zero output).
    """

    width: int = 64
    blocks: int = 4
    kernel_size: int = 3
    dilations: list[int] = dataclasses.field(default_factory=lambda: [1, 1])
    activation: Activation = Activation.gelu
    padding: Padding = Padding.circular
    out_init_scale: float = 1.0

    def __post_init__(self) -> None:
        if self.width < 1 or self.blocks < 0:
            raise ValueError("width must be >= 1 and blocks >= 0")
        if self.kernel_size < 1 or self.kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd and >= 1 (got {self.kernel_size})")
        if not self.dilations or min(self.dilations) < 1:
            raise ValueError(f"dilations must be a non-empty list of ints >= 1: {self.dilations}")
        if self.out_init_scale < 0:
            raise ValueError("out_init_scale must be >= 0")


@MODELS.register("resnet")
class ResNet(GridModel):
    """Convolutional ResNet (optionally dilated) for grid-to-grid maps."""

    Config = ResNetConfig
    name = "resnet"

    def __init__(
        self,
        config: ResNetConfig,
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
        d, k, w, pad = num_spatial_dims, config.kernel_size, config.width, config.padding
        self.encoder = conv(d, in_channels + num_params, w, k, padding=pad)
        self.blocks = nn.ModuleList()
        for _ in range(config.blocks):
            layers: list[nn.Module] = []
            for rate in config.dilations:
                layers += [
                    make_activation(config.activation),
                    conv(d, w, w, k, dilation=rate, padding=pad),
                ]
            self.blocks.append(nn.Sequential(*layers))
        self.activation = make_activation(config.activation)
        self.decoder = conv(d, w, out_channels, k, padding=pad)
        scale_init(self.decoder, config.out_init_scale)

    def summary(self) -> str:
        c = self.config
        dilated = f" (dilations {','.join(map(str, c.dilations))})" if max(c.dilations) > 1 else ""
        return f"{c.blocks} blocks x {c.width}{dilated}, {self.num_spatial_dims}D"

    def forward(self, x: Tensor, params: Tensor | None = None) -> Tensor:
        """x [B, C_in, *spatial], params [B, P] or None -> [B, C_out, *spatial]."""
        self.check(x)
        if Padding(self.config.padding) is Padding.circular:  # torch wraps around at most once
            rate = max(self.config.dilations) if self.config.blocks else 1
            reach = rate * (self.config.kernel_size // 2)
            check_min_size(
                tuple(x.shape[2:]),
                reach,
                model="resnet",
                why="circular padding of the largest dilation",
            )
        h = self.encoder(self.with_params(x, params))
        for block in self.blocks:
            h = h + block(h)
        return self.decoder(self.activation(h))
