"""Methods: how learning meets physics (supervised, PINN, differentiable physics, ...).

The registry exists so that plugins (built-in ones arrive with the training engine, or a
user's own) have one place to register; see docs/plugins.md.
"""

from pbdl_cli.registry import Registry

METHODS: Registry[type] = Registry("method", group="method")

__all__ = ["METHODS"]
