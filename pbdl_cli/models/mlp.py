"""Multilayer perceptron for coordinates -> values (PINNs, neural fields, small surrogates).

    y = W_L s(... s(W_1 phi(x) + b_1) ...) + b_L,   phi(x) = x  or  [sin(2 pi B x), cos(2 pi B x)]

with ``depth`` hidden layers of ``width`` units (or the sizes ``widths``), activation s,
and optional random Fourier features (Tancik et al. 2020) with B ~ N(0, scale^2) fixed
at construction.

Shapes: input [..., in_features] -> output [..., out_features].
"""

from __future__ import annotations

import dataclasses
import enum
import itertools
import math

import torch
from torch import Tensor, nn

from pbdl_cli.models.base import MODELS
from pbdl_cli.registry import PluginConfig


class Activation(str, enum.Enum):
    tanh = "tanh"
    sin = "sin"
    gelu = "gelu"
    relu = "relu"
    silu = "silu"
    elu = "elu"


class Init(str, enum.Enum):
    xavier = "xavier"  # Glorot normal: the usual choice for tanh PINNs
    xavier_uniform = "xavier_uniform"  # Glorot uniform: Keras' Dense default
    kaiming = "kaiming"
    default = "default"  # torch's own


@dataclasses.dataclass
class MLPConfig(PluginConfig):
    """Options of ``mlp`` (``model.<key>``).

    Attributes:
        depth: number of hidden layers.
        width: units per hidden layer.
        widths: units of each hidden layer (e.g. the SMDP toy's [30, 30, 25, 20, 10]);
            when set, it replaces ``depth`` and ``width``.
        activation: tanh, sin, gelu, relu, silu or elu.
        fourier_features: number of random Fourier features of the input (0: none).
        fourier_scale: standard deviation of their frequencies.
        init: weight initialization: xavier (Glorot normal), xavier_uniform (Glorot
            uniform, Keras' default), kaiming or default; biases start at zero.
    """

    depth: int = 4
    width: int = 32
    widths: list[int] | None = None
    activation: Activation = Activation.tanh
    fourier_features: int = 0
    fourier_scale: float = 1.0
    init: Init = Init.xavier

    def __post_init__(self) -> None:
        if self.depth < 1 or self.width < 1:
            raise ValueError("depth and width must be >= 1")
        if self.widths is not None and (not self.widths or min(self.widths) < 1):
            raise ValueError("widths must be a non-empty list of sizes >= 1 (or null)")
        if self.fourier_features < 0 or self.fourier_scale <= 0:
            raise ValueError("fourier_features must be >= 0 and fourier_scale > 0")


class _Sine(nn.Module):
    def forward(self, x: Tensor) -> Tensor:
        return torch.sin(x)


_ACTIVATIONS = {
    Activation.tanh: nn.Tanh,
    Activation.sin: _Sine,
    Activation.gelu: nn.GELU,
    Activation.relu: nn.ReLU,
    Activation.silu: nn.SiLU,
    Activation.elu: nn.ELU,
}


@MODELS.register("mlp")
class MLP(nn.Module):
    """Fully connected network with optional random Fourier feature inputs."""

    Config = MLPConfig

    def __init__(self, config: MLPConfig, *, in_features: int, out_features: int) -> None:
        super().__init__()
        self.config = config
        if config.fourier_features:
            frequencies = torch.randn(in_features, config.fourier_features) * config.fourier_scale
            self.register_buffer("frequencies", frequencies)
            first = 2 * config.fourier_features
        else:
            self.frequencies = None
            first = in_features
        hidden = config.widths if config.widths is not None else [config.width] * config.depth
        sizes = [first, *hidden]
        layers: list[nn.Module] = []
        for fan_in, fan_out in itertools.pairwise(sizes):
            layers += [nn.Linear(fan_in, fan_out), _ACTIVATIONS[config.activation]()]
        layers.append(nn.Linear(sizes[-1], out_features))
        self.net = nn.Sequential(*layers)
        self._initialize(config.init)

    def _initialize(self, init: Init) -> None:
        if init is Init.default:
            return
        for layer in self.net:
            if isinstance(layer, nn.Linear):
                if init is Init.xavier:
                    nn.init.xavier_normal_(layer.weight)
                elif init is Init.xavier_uniform:
                    nn.init.xavier_uniform_(layer.weight)
                else:
                    nn.init.kaiming_normal_(layer.weight, nonlinearity="relu")
                nn.init.zeros_(layer.bias)

    def forward(self, x: Tensor) -> Tensor:
        if self.frequencies is not None:
            projected = 2 * math.pi * x @ self.frequencies
            x = torch.cat([torch.sin(projected), torch.cos(projected)], dim=-1)
        return self.net(x)
