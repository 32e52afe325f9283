"""Methods: how learning meets physics (PINN, differentiable physics, supervised, ...).
Importing this package registers the built-in ones."""

from pbdl_cli.methods.base import Method
from pbdl_cli.registry import Registry

METHODS: Registry[type[Method]] = Registry("method", group="method")

from pbdl_cli.methods import pinn  # noqa: E402,F401

__all__ = ["METHODS", "Method"]
