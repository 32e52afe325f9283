"""Methods: how learning meets physics (PINN, differentiable physics, supervised, ...).
Importing this package registers the built-in ones."""

from pbdl_cli.methods import (  # noqa: F401
    cnf,
    ddpm,
    dp,
    flow_matching,
    gradient,
    hig,
    nf,
    non,
    optimize,
    pinn,
    pre,
    projection,
    score,
    sip,
    smdp,
    sol,
    supervised,
    unrolled,
)
from pbdl_cli.methods.base import METHODS, Method, build_method

__all__ = ["METHODS", "Method", "build_method"]
