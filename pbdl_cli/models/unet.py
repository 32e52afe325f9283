"""U-Net on grids (Ronneberger et al. 2015, "U-Net: convolutional networks for biomedical
image segmentation"; the network of Thuerey et al. 2020, "Deep learning methods for
Reynolds-averaged Navier-Stokes simulations of airfoil flows", is one).

Level l = 0..L (L = ``levels``) works on the grid coarsened 2^l times with C_l = W g^l
channels (W = ``width``, g = ``growth``: 2 as in Ronneberger et al., 1 for the constant
width of the PBDL book's ch. 9 network):

    e_0 = DC([x, p]),  e_l = DC(pool(e_{l-1}))                       (encoder, l = 1..L)
    u_L = e_L,         u_l = DC([s(conv(up(u_{l+1}))), e_l])        (decoder, l = L-1..0)
    y   = conv_1x1(u_0)

DC is two convolutions (``kernel_size``) each followed by the activation s (with
``batch_norm``, by a batch normalization first, 2 C parameters each); pool is a 2x
average pooling (parameter free, linear: a coarse-grid restriction); up is 2x nearest
interpolation followed by a convolution (no checkerboard artefacts of transposed
convolutions); [a, b] concatenates channels (the skip connections). Scalar parameters
p [B, P] enter as constant channels.

Sizes that are not multiples of 2^L are padded up to the next multiple (split evenly on both
sides, with the mode of ``padding``) and the output is cropped back; for a periodic field use
sizes divisible by 2^L to keep the periodic wrap exact. Every spatial size must be
>= 2^L max(1, kernel_size // 2).

Shapes: x [B, C_in, *spatial] (1-3 spatial dims), params [B, P] -> [B, C_out, *spatial].
Parameters (d = spatial dims, k = kernel_size, K = k^d, conv(a, b) = a b K + b):
    conv(C_in + P, C_0) + conv(C_0, C_0)
    + sum_{l=1..L} [conv(C_{l-1}, C_l) + conv(C_l, C_l)]
    + sum_{l=0..L-1} [conv(C_{l+1}, C_l) + conv(2 C_l, C_l) + conv(C_l, C_l)]
    + C_0 C_out + C_out
"""

from __future__ import annotations

import dataclasses
import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pbdl_cli.models.base import MODELS, GridModel
from pbdl_cli.models.utils import (
    PAD_MODES,
    Activation,
    Padding,
    check_min_size,
    conv,
    make_activation,
    scale_init,
)
from pbdl_cli.registry import PluginConfig

_POOLS = {1: F.avg_pool1d, 2: F.avg_pool2d, 3: F.avg_pool3d}


@dataclasses.dataclass
class UNetConfig(PluginConfig):
    """Options of ``unet`` (``model.<key>``).

    Attributes:
        levels: number of 2x coarsenings (0: no coarsening, a plain conv net).
        width: channels on the finest level.
        growth: factor on the channels from one level to the next coarser one (2: doubled;
            1: the same width on every level).
        kernel_size: odd convolution kernel size.
        activation: gelu, relu, tanh or silu.
        padding: circular (periodic domains), zeros or replicate; also pads the grid up
            to a multiple of 2**levels.
        out_init_scale: factor on the initial weights of the last layer (0: zero output).
        batch_norm: batch normalization after each convolution of the double
            convolutions (conv -> norm -> s, as phiflow's ``u_net``); off by default.
    """

    levels: int = 3
    width: int = 32
    growth: int = 2
    kernel_size: int = 3
    activation: Activation = Activation.gelu
    padding: Padding = Padding.circular
    out_init_scale: float = 1.0
    batch_norm: bool = False

    def __post_init__(self) -> None:
        if self.levels < 0 or self.width < 1 or self.growth < 1:
            raise ValueError("levels must be >= 0, width and growth >= 1")
        if self.kernel_size < 1 or self.kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd and >= 1 (got {self.kernel_size})")
        if self.out_init_scale < 0:
            raise ValueError("out_init_scale must be >= 0")


_BATCH_NORMS = {1: nn.BatchNorm1d, 2: nn.BatchNorm2d, 3: nn.BatchNorm3d}


class _DoubleConv(nn.Sequential):
    """conv -> [norm] -> s -> conv -> [norm] -> s, size preserving."""

    def __init__(self, d: int, cin: int, cout: int, config: UNetConfig) -> None:
        k, pad = config.kernel_size, config.padding
        layers: list[nn.Module] = []
        for c_in in (cin, cout):
            layers.append(conv(d, c_in, cout, k, padding=pad))
            if config.batch_norm:
                layers.append(_BATCH_NORMS[d](cout))
            layers.append(make_activation(config.activation))
        super().__init__(*layers)


@MODELS.register("unet")
class UNet(GridModel):
    """U-Net with skip connections, average pooling and interpolation + conv upsampling."""

    Config = UNetConfig
    name = "unet"

    def __init__(
        self,
        config: UNetConfig,
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
        channels = [config.width * config.growth**level for level in range(config.levels + 1)]
        self.encoder = nn.ModuleList(
            [_DoubleConv(d, in_channels + num_params, channels[0], config)]
        )
        self.encoder.extend(
            _DoubleConv(d, channels[level - 1], channels[level], config)
            for level in range(1, config.levels + 1)
        )
        # decoder modules are stored finest first: index l works on level l
        self.upsample = nn.ModuleList(
            nn.Sequential(
                conv(
                    d,
                    channels[level + 1],
                    channels[level],
                    config.kernel_size,
                    padding=config.padding,
                ),
                make_activation(config.activation),
            )
            for level in range(config.levels)
        )
        self.decoder = nn.ModuleList(
            _DoubleConv(d, 2 * channels[level], channels[level], config)
            for level in range(config.levels)
        )
        self.head = conv(d, channels[0], out_channels, 1)
        scale_init(self.head, config.out_init_scale)

    @property
    def min_size(self) -> int:
        """Smallest spatial size the network takes."""
        return 2**self.config.levels * max(1, self.config.kernel_size // 2)

    def summary(self) -> str:
        c = self.config
        deepest = c.width * c.growth**c.levels
        return f"{c.levels} levels, width {c.width} to {deepest}, {self.num_spatial_dims}D"

    def forward(self, x: Tensor, params: Tensor | None = None) -> Tensor:
        """x [B, C_in, *spatial], params [B, P] or None -> [B, C_out, *spatial]."""
        self.check(x)
        spatial = tuple(x.shape[2:])
        check_min_size(
            spatial,
            self.min_size,
            model="unet",
            why=f"levels={self.config.levels}, kernel_size={self.config.kernel_size}",
        )
        h = self.with_params(x, params)
        # pad every spatial size up to a multiple of 2^L; F.pad lists the last dim first
        factor = 2**self.config.levels
        extra = [math.ceil(n / factor) * factor - n for n in spatial]
        if any(extra):
            pads = [p for e in reversed(extra) for p in (e // 2, e - e // 2)]
            mode = PAD_MODES[self.config.padding]
            h = F.pad(h, pads, mode=mode)
        skips = []
        for level, block in enumerate(self.encoder):
            if level > 0:
                h = _POOLS[self.num_spatial_dims](h, 2)
            h = block(h)
            skips.append(h)
        for level in reversed(range(self.config.levels)):
            h = F.interpolate(h, scale_factor=2, mode="nearest")
            h = self.decoder[level](torch.cat([self.upsample[level](h), skips[level]], dim=1))
        h = self.head(h)
        if any(extra):
            h = h[(..., *(slice(e // 2, e // 2 + n) for e, n in zip(extra, spatial, strict=True)))]
        return h
