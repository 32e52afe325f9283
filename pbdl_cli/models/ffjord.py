"""FFJORD's velocity network: a stack of time-gated ("concat-squash") linear layers.

Grathwohl, Chen, Bettencourt, Sutskever & Duvenaud 2019, "FFJORD: Free-form continuous
dynamics for scalable reversible generative models" (ICLR); PBDL book ch. 22.6 (the
continuous normalizing flow of the Gaussian-mixture notebook). One layer maps

    ConcatSquash(h, t) = W_1 h + b_1  *  sigmoid(W_2 t + b_2)  +  W_3 t

(the first product elementwise; W_3 without a bias), so the time gates and shifts every
unit. The network is

    v(t, y, c) = L_K(t, tanh(L_{K-1}(t, ... tanh(L_1(t, [y, c])) ...)))

with L_1: D + C -> W, ``depth`` - 1 layers W -> W and L_K: W -> D (``depth`` = 0: one
layer D + C -> D). Weights start Xavier-uniform, biases at zero (the book's init). A
condition c [B, C] (``condition_features`` C > 0) is concatenated to the first layer's
input, as the coupling nets of :mod:`.realnvp` see it: a conditional velocity for
q(y | c). The network is not invertible and needs not be: the flow it defines is the ODE
dy/dt = v(t, y, c) (:mod:`pbdl_cli.generative.cnf`).

Shapes: t a scalar or [B], y [B, D], c [B, C] -> v [B, D].
Parameters: a layer in -> out has in * out + 4 out (W_1, b_1, W_2, b_2, W_3); the book's
D = 2, W = 128, depth 8: 768 + 7 * 16,896 + 264 = 119,304.
"""

from __future__ import annotations

import dataclasses
import itertools

import torch
from torch import Tensor, nn

from pbdl_cli.models.base import MODELS
from pbdl_cli.models.utils import Activation, ModelInputError, make_activation
from pbdl_cli.registry import PluginConfig


@dataclasses.dataclass
class FFJORDConfig(PluginConfig):
    """Options of ``ffjord`` (``model.<key>``).

    Attributes:
        width: units of the hidden layers (book: 128).
        depth: hidden layers (book: 8, i.e. 9 concat-squash layers in all).
        activation: between the layers (book: tanh; a smooth one keeps the divergence
            smooth in y).
        condition_features: size C of the condition c when the method passes none.
    """

    width: int = 128
    depth: int = 8
    activation: Activation = Activation.tanh
    condition_features: int = 0

    def __post_init__(self) -> None:
        if self.width < 1 or self.depth < 0:
            raise ValueError("width must be >= 1 and depth >= 0")
        if self.condition_features < 0:
            raise ValueError("condition_features must be >= 0")


class ConcatSquash(nn.Module):
    """lin1(h) * sigmoid(lin2(t)) + lin3(t): h [B, in], t [B, 1] or [1, 1] -> [B, out]."""

    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__()
        self.lin1 = nn.Linear(in_features, out_features)
        self.lin2 = nn.Linear(1, out_features)
        self.lin3 = nn.Linear(1, out_features, bias=False)
        for layer in (self.lin1, self.lin2, self.lin3):
            nn.init.xavier_uniform_(layer.weight)
        nn.init.zeros_(self.lin1.bias)
        nn.init.zeros_(self.lin2.bias)

    def forward(self, t: Tensor, h: Tensor) -> Tensor:
        return self.lin1(h) * torch.sigmoid(self.lin2(t)) + self.lin3(t)


@MODELS.register("ffjord")
class FFJORD(nn.Module):
    """The concat-squash velocity network v(t, y, c) of a continuous normalizing flow
    (module docstring) on point data [B, D], optionally conditional."""

    Config = FFJORDConfig

    def __init__(
        self,
        config: FFJORDConfig,
        *,
        features: int,
        condition_features: int | None = None,
    ) -> None:
        super().__init__()
        if features < 1:
            raise ModelInputError(f"ffjord: features must be >= 1 (got {features})")
        if condition_features is None:
            condition_features = config.condition_features
        elif config.condition_features not in (0, condition_features):
            raise ModelInputError(
                f"ffjord: model.condition_features={config.condition_features} but the "
                f"method's condition has {condition_features} features; remove the option"
            )
        self.config = config
        self.features, self.condition_features = features, condition_features
        sizes = [features + condition_features, *[config.width] * config.depth, features]
        self.layers = nn.ModuleList(
            ConcatSquash(fan_in, fan_out) for fan_in, fan_out in itertools.pairwise(sizes)
        )
        self.activation = make_activation(config.activation)

    def summary(self) -> str:
        c = self.config
        cond = f", condition {self.condition_features}" if self.condition_features else ""
        return f"{len(self.layers)} concat-squash layers, width {c.width}, D={self.features}{cond}"

    def _inputs(self, t: Tensor | float, y: Tensor, c: Tensor | None) -> tuple[Tensor, Tensor]:
        """(t as [B, 1] or [1, 1], [y, c] [B, D + C]) after one-line shape checks."""
        if y.dim() != 2 or y.shape[1] != self.features:
            raise ModelInputError(
                f"ffjord: expected y [B, {self.features}], got shape {list(y.shape)}"
            )
        t = torch.as_tensor(t, dtype=y.dtype, device=y.device)
        if t.dim() > 1 or (t.dim() == 1 and t.shape[0] not in (1, y.shape[0])):
            raise ModelInputError(
                f"ffjord: expected t as a scalar or [{y.shape[0]}], got shape {list(t.shape)}"
            )
        t = t.reshape(-1, 1)
        if self.condition_features == 0:
            if c is not None:
                raise ModelInputError("ffjord: built with condition_features=0 but c was given")
            return t, y
        if c is None or c.shape != (y.shape[0], self.condition_features):
            got = "None" if c is None else list(c.shape)
            raise ModelInputError(
                f"ffjord: built with condition_features={self.condition_features}; expected "
                f"c [{y.shape[0]}, {self.condition_features}], got {got}"
            )
        return t, torch.cat([y, c.to(y.dtype)], dim=-1)

    def forward(self, t: Tensor | float, y: Tensor, c: Tensor | None = None) -> Tensor:
        """The velocity dy/dt [B, D] at time t (scalar or [B]) and state y [B, D]."""
        t, h = self._inputs(t, y, c)
        for layer in self.layers[:-1]:
            h = self.activation(layer(t, h))
        return self.layers[-1](t, h)
