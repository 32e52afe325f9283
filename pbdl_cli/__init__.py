"""pbdl: a command-line experiment runner for physics-based deep learning.

The public surface is small: the error type user-facing code raises and the version;
registries live in their subpackages (``pbdl_cli.problems.PROBLEMS``, ...).
"""

__version__ = "0.1.0"

from pbdl_cli.errors import PbdlError

__all__ = ["PbdlError", "__version__"]
