"""The model registry: ``torch.nn.Module`` plugins built from their config.

A model is built as ``MODELS.build(cfg.model, **sizes)`` with the sizes its method
decides (input and output channels, spatial dimensions, conditioning parameters).
"""

from __future__ import annotations

from pbdl_cli.registry import Registry

#: every registered model (``model=<name>``)
MODELS: Registry[type] = Registry("model", group="model")
