"""Models: ``torch.nn.Module`` plugins (MLP, ResNet, UNet, FNO, learnable fields, ...).

The registry exists so that plugins (built-in ones arrive with the training engine, or a
user's own) have one place to register; see docs/plugins.md.
"""

from pbdl_cli.registry import Registry

MODELS: Registry[type] = Registry("model", group="model")

__all__ = ["MODELS"]
