"""Models: ``torch.nn.Module`` plugins (MLP, learnable fields, ...). Importing this
package registers the built-in ones; a model is built as
``MODELS.build(cfg.model, **sizes)`` with the sizes its method decides."""

from pbdl_cli.models import ffjord, field, fno, mlp, realnvp, resnet, unet  # noqa: F401
from pbdl_cli.models.base import MODELS

__all__ = ["MODELS"]
