"""The model registry and the base of grid-to-grid models.

A model is built as ``MODELS.build(cfg.model, **sizes)`` with the sizes its method
decides (input and output channels, spatial dimensions, conditioning parameters).
"""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from pbdl_cli.models.utils import append_params, check_input, check_spatial_dims
from pbdl_cli.registry import Registry

#: every registered model (``model=<name>``)
MODELS: Registry[type] = Registry("model", group="model")


class GridModel(nn.Module):
    """Base of the models that map grid fields to grid fields (``fno``, ``resnet``,
    ``unet``): x [B, C_in, *spatial] (1-3 spatial dims) and optional scalar parameters
    p [B, P], appended as constant channels, -> [B, C_out, *spatial]."""

    #: registered name, used in input errors
    name: str = "grid model"

    def __init__(
        self,
        config: Any,
        *,
        in_channels: int,
        out_channels: int,
        num_spatial_dims: int,
        num_params: int = 0,
    ) -> None:
        super().__init__()
        check_spatial_dims(num_spatial_dims)
        self.config = config
        self.in_channels, self.out_channels = in_channels, out_channels
        self.num_params = num_params
        self.num_spatial_dims = num_spatial_dims

    def check(self, x: Tensor) -> None:
        """Raise a one-line error unless x is [B, C_in, *spatial] with the built sizes."""
        check_input(
            x, model=self.name, in_channels=self.in_channels, num_spatial_dims=self.num_spatial_dims
        )

    def with_params(self, x: Tensor, params: Tensor | None) -> Tensor:
        """x with the parameters appended as constant channels: [B, C_in + P, *spatial]."""
        return append_params(x, params, self.num_params, model=self.name)
