"""A learnable grid tensor: the unknown of a plain optimization through a solver.

For inverse problems solved by differentiable physics (PBDL book ch. 14, 16) the
"model" is the unknown itself, e.g. an initial state ``[1, C, *spatial]``; ``forward()``
returns it.
"""

from __future__ import annotations

import dataclasses
import enum

import torch
from torch import Tensor, nn

from pbdl_cli.models.base import MODELS
from pbdl_cli.registry import PluginConfig


class FieldInit(str, enum.Enum):
    zeros = "zeros"
    normal = "normal"


@dataclasses.dataclass
class FieldConfig(PluginConfig):
    """Options of ``field`` (``model.<key>``).

    Attributes:
        init: zeros, or normal with standard deviation ``scale``.
        scale: standard deviation of the normal initialization.
    """

    init: FieldInit = FieldInit.zeros
    scale: float = 0.1


@MODELS.register("field")
class Field(nn.Module):
    """A learnable tensor of fixed shape (no inputs)."""

    Config = FieldConfig

    def __init__(self, config: FieldConfig, *, shape: tuple[int, ...]) -> None:
        super().__init__()
        self.config = config
        value = torch.zeros(shape)
        if config.init is FieldInit.normal:
            value = value.normal_(std=config.scale)
        self.value = nn.Parameter(value)

    def forward(self) -> Tensor:
        return self.value
