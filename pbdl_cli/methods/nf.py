"""``nf``: a normalizing flow trained by maximum likelihood (PBDL book ch. 22.3-22.5;
Dinh, Sohl-Dickstein & Bengio 2017, "Density estimation using Real NVP").

The model is ``realnvp`` (:class:`~pbdl_cli.models.realnvp.RealNVP`): an invertible map
f (data y -> latent z) of affine coupling blocks whose log-determinant is exact, so that
by the change of variables (book ch. 22.3)

    log q(y | c) = log N(f(y; c); 0, I) + log|det df/dy|.

Training minimizes the negative log-likelihood of the training pairs (book ch. 22.1:
minimizing KL(p || q) is minimizing E_p[-log q], the entropy of p being a constant):

    loss = -mean over the batch of log q(y | c)          (nats, a normalized density)

and logs the book's units beside it, ``book_loss`` = -mean ``book_log_prob``: the
notebook's prior adds -1/2 log(2 pi) once instead of D times, so its printed losses are
``loss - (D - 1) / 2 log(2 pi)`` (0.9189 below ours for D = 2). Both are deterministic
given the batch (no noise is drawn).

Sampling (``inverse``): y = f^-1(z; c) with z ~ N(0, I), one pass backwards through the
flow. ``evaluations`` counts passes through the whole flow, so a sample costs 1 (it
calls each of the K blocks' coupling networks once).

Shapes: points y [B, D] with D >= 2 (a coupling flow keeps part of y to condition the
change of the rest; one-dimensional samples are refused) or fields y [B, C, *spatial],
which the flow sees flattened per sample, [B, D] with D = C * prod(spatial), its
checkerboard mask alternating over the flattened index (sampling unflattens).
Flattening only rearranges the entries (a Jacobian of determinant 1), so the flattened
flow's density is the field's: log q(y | c) is the same number. The coupling nets stay
MLPs (parameters grow like D H per block, see :mod:`pbdl_cli.models.realnvp`): fine for
small grids (32 x 32), not a convolutional flow. A condition of any shape is flattened
to [B, C_c].
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from pbdl_cli.errors import PbdlError
from pbdl_cli.generative.common import Sampled, StepCallback
from pbdl_cli.methods.base import METHODS
from pbdl_cli.methods.generative import GenerativeConfig, GenerativeMethod
from pbdl_cli.models.base import MODELS
from pbdl_cli.models.realnvp import book_offset
from pbdl_cli.problems.base import Problem
from pbdl_cli.problems.distribution import check_distribution

#: the model a flow method trains
MODEL = "realnvp"


@dataclasses.dataclass
class NFConfig(GenerativeConfig):
    """Options of ``nf`` (``method.<key>``): those of every probabilistic method; the
    flow's own options are the model's (``model.blocks``, ``model.hidden``, ...)."""


@METHODS.register("nf")
class NormalizingFlow(GenerativeMethod):
    """Maximum likelihood of a RealNVP coupling flow; exact log q(y | c) (module
    docstring)."""

    Config = NFConfig
    config: NFConfig
    samplers: ClassVar[tuple[str, ...]] = ("inverse",)
    has_likelihood: ClassVar[bool] = True

    def __init__(
        self,
        config: NFConfig,
        *,
        problem: Problem,
        device: torch.device,
        dtype: torch.dtype,
    ) -> None:
        # refuse what a coupling flow cannot learn before the training set is drawn
        distribution = check_distribution(problem, config.name)
        shape, name = tuple(distribution.sample_shape), problem.name
        if math.prod(shape) < 2:
            raise PbdlError(
                f"method 'nf': a coupling flow needs samples with D >= 2 features, problem "
                f"'{name}' has D = {math.prod(shape)}: use method=flow_matching or ddpm"
            )
        super().__init__(config, problem=problem, device=device, dtype=dtype)

    # the network ------------------------------------------------------------------------
    def check_model_config(self, model_config: Any) -> None:
        name = MODELS.config(model_config).name
        if name != MODEL:
            raise PbdlError(
                f"method 'nf' trains model={MODEL}, not model={name}: add model={MODEL}"
            )

    @property
    def features(self) -> int:
        """D of the flattened sample: the point's features or C * prod(spatial)."""
        return math.prod(self.sample_shape)

    def network(self, model_config: Any) -> nn.Module:
        """RealNVP with D = the (flattened) sample's features, C = the condition's (0:
        none)."""
        return MODELS.build(
            model_config, features=self.features, condition_features=self.condition_features
        )

    # the objective ----------------------------------------------------------------------
    def sample_loss(
        self, model: nn.Module, y: Tensor, condition: Tensor | None, noise: torch.Generator
    ) -> dict[str, Tensor]:
        """-mean log q(y | c) (``loss``) and the book's -mean book_log_prob
        (``book_loss``); ``noise`` is not used."""
        log_q = model.log_prob(self._flat(y), self._flat(condition))
        loss = -log_q.mean()
        return {"loss": loss, "book_loss": loss.detach() - book_offset(self.features)}

    def log_prob(self, model: nn.Module, y: Tensor, condition: Tensor | None) -> Tensor:
        """log q(y | c) [n] of y [n, *sample_shape] at conditions [n, *condition_shape]
        (None: unconditional); fields are flattened per sample."""
        return model.log_prob(self._flat(y), self._flat(condition))

    # sampling ---------------------------------------------------------------------------
    def expected_steps(self, sampler: str, steps: int) -> int:
        """One step: the inverse pass."""
        return 1

    def sample(
        self,
        model: nn.Module,
        n: int,
        *,
        condition: Tensor | None,
        sampler: str,
        steps: int,
        generator: torch.Generator,
        callback: StepCallback | None = None,
    ) -> Sampled:
        """y = f^-1(z; c), z ~ N(0, I) [n, D] from ``generator``, unflattened to
        [n, *sample_shape]; 1 evaluation."""
        self.check_sampler(sampler)
        if steps not in (0, 1):
            raise PbdlError(f"the flow's inverse is one pass (steps=0 or 1), got steps={steps}")
        c = None if condition is None else condition.reshape(1, -1).expand(n, -1)
        z = torch.randn(n, self.features, generator=generator, dtype=self.dtype)
        y = model.inverse(z.to(self.device), None if c is None else c.to(self.device, self.dtype))
        y = y.reshape(n, *self.sample_shape)
        if callback is not None:
            callback(1, 1.0, y)
        return Sampled(y, 1)

    @staticmethod
    def _flat(x: Tensor | None) -> Tensor | None:
        """[B, ...] -> [B, prod(...)] (None stays None)."""
        return None if x is None else x.reshape(len(x), -1)
