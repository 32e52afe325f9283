"""The base of the methods that train a network to invert the physics of an
:class:`~pbdl_cli.problems.inversion.Inversion` problem (PBDL book ch. 38-41):
x = f(input; theta), y = P(x; c), L = mean_i L_y(y_i, y*_i). The registered methods
differ only in how they turn that into an update of theta:

- ``gradient``: dL/dtheta by backpropagation through P, then ``trainer.optimizer``;
- ``sip``: scale-invariant physics updates (:mod:`pbdl_cli.methods.sip`);
- ``hig``: half-inverse gradients (:mod:`pbdl_cli.methods.hig`).

Data: with ``n_train > 0`` a training set of that many samples is drawn once (from the
method's seed) and walked through in shuffled batches, one permutation per epoch;
``n_train = 0`` draws a fresh batch every step (on-the-fly data, e.g. the heat
problem's random boxes). Both depend only on the seed and the step, so resumed runs see
the batches an uninterrupted run would. Validation is the mean of the loss terms over
``n_val`` held-out samples (0: the training set, the book's oscillator evaluation);
for an ``mlp`` it adds the statistics of its last hidden layer's activations
(:func:`activation_stats`: saturated units show as zero spread).

Logged terms: ``loss`` (what the optimizer differentiates; for ``sip`` the proxy loss),
``y_loss`` (the objective L), and ``x_loss`` (mean 1/2 |x - x*|^2) where the problem
knows x*. Compare methods on ``y_loss`` and ``x_loss``.

Models: ``mlp`` for vector inputs and unknowns (flattened), the grid models (``unet``,
``fno``, ``resnet``) for grids ([C, *spatial] in and out).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import torch
from torch import Tensor, nn

from pbdl_cli.errors import PbdlError
from pbdl_cli.methods.base import Method, MethodConfig
from pbdl_cli.models.base import MODELS, GridModel
from pbdl_cli.models.mlp import MLP
from pbdl_cli.problems.base import Problem
from pbdl_cli.problems.inversion import Inversion, Samples
from pbdl_cli.utils.seeding import derive_seed, generator

#: samples per chunk when validating and predicting
CHUNK = 256


@dataclasses.dataclass
class InversionConfig(MethodConfig):
    """Options shared by ``gradient``, ``sip`` and ``hig`` (``method.<key>``).

    Attributes:
        batch_size: samples per step.
        n_train: size of the fixed training set (0: a fresh batch every step).
        n_val: held-out validation samples (0: validate on the training set; needs
            ``n_train > 0``).
    """

    batch_size: int = 128
    n_train: int = 0
    n_val: int = 256

    def __post_init__(self) -> None:
        if self.batch_size < 1 or self.n_train < 0 or self.n_val < 0:
            raise ValueError("batch_size must be >= 1, n_train and n_val >= 0")
        if self.n_train == 0 and self.n_val == 0:
            raise ValueError("n_val = 0 validates on the training set: it needs n_train > 0")


def activation_stats(model: MLP, inputs: Tensor) -> dict[str, float]:
    """Statistics of the last hidden layer's activations a [N, width] over ``inputs``
    [N, d] (book ch. 40's diagnostic of saturated units): ``activation_mean``,
    ``activation_std`` (over inputs and units), ``activation_spread`` (the mean over units
    of each unit's standard deviation over the inputs: 0 when every unit is stuck) and
    ``saturated`` (the fraction of units whose |a| exceeds 0.99 on every input)."""
    with torch.no_grad():
        a = model.net[:-1](inputs)
    return {
        "activation_mean": float(a.mean()),
        "activation_std": float(a.std()),
        "activation_spread": float(a.std(0).mean()),
        "saturated": float((a.abs() > 0.99).all(0).double().mean()),
    }


def model_input(problem: Inversion, model: nn.Module, inputs: Tensor) -> Tensor:
    """The network's input for ``inputs`` [B, *input_shape]: flattened for an MLP
    ([B, prod(input_shape)]), as it is for a grid model."""
    return inputs if isinstance(model, GridModel) else inputs.flatten(1)


class InversionMethod(Method):
    """Train x = f(input; theta) through an inversion problem's physics (module docstring)."""

    config: InversionConfig
    problem: Inversion

    def __init__(
        self, config: InversionConfig, *, problem: Problem, device: torch.device, dtype: torch.dtype
    ) -> None:
        super().__init__(config, problem=problem, device=device, dtype=dtype)
        if not isinstance(problem, Inversion):
            raise PbdlError(
                f"method '{config.name}' trains a network to invert a problem's physics, but "
                f"problem '{problem.name}' is not an inversion problem (e.g. problem=hig_toy, "
                "rotated_sine, heat, coupled_oscillators)"
            )
        self.train_set: Samples | None = None
        if config.n_train:
            self.train_set = problem.sample(config.n_train, generator(config.seed, "train"))
            self.train_set = self.train_set.to(device, dtype)
        if config.n_val:
            self.val_set = problem.sample(config.n_val, generator(config.seed, "val"))
            self.val_set = self.val_set.to(device, dtype)
        else:
            assert self.train_set is not None
            self.val_set = self.train_set
        self._epoch: tuple[int, Tensor] | None = None
        self.model: nn.Module | None = None

    # the network ----------------------------------------------------------------------
    def check_model_config(self, model_config: Any) -> None:
        """``mlp`` for vectors, a grid model for grids ([C, *spatial] in and out)."""
        p = self.problem
        name = MODELS.config(model_config).name
        if issubclass(MODELS.get(name), GridModel):
            if len(p.input_shape) < 2 or len(p.x_shape) < 2:
                raise PbdlError(
                    f"model={name} maps grids to grids, but problem '{p.name}' has vector "
                    "inputs or unknowns: use model=mlp"
                )
        elif name != "mlp":
            raise PbdlError(
                f"method '{self.config.name}' trains a network: use model=mlp or a grid "
                f"model (got model={name})"
            )

    def build_model(self, model_config: Any) -> nn.Module:
        self.check_model_config(model_config)
        torch.manual_seed(derive_seed(self.config.seed, "model") % 2**31)
        self.model = self._network(model_config).to(self.device, self.dtype)
        return self.model

    def _network(self, model_config: Any) -> nn.Module:
        """The network of a ``model`` node for this problem's shapes (not yet seeded)."""
        p = self.problem
        if issubclass(MODELS.get(MODELS.config(model_config).name), GridModel):
            return MODELS.build(
                model_config,
                in_channels=p.input_shape[0],
                out_channels=p.x_shape[0],
                num_spatial_dims=len(p.x_shape) - 1,
            )
        return MODELS.build(
            model_config, in_features=math.prod(p.input_shape), out_features=p.x_size
        )

    def unknowns(self, model: nn.Module, samples: Samples) -> Tensor:
        """x = correct(f(input)) for a batch: [B, *x_shape]."""
        p = self.problem
        out = model(model_input(p, model, samples.input))
        return p.correct(out.reshape(len(samples), *p.x_shape), samples)

    # data -----------------------------------------------------------------------------
    def batch(self, step: int) -> Samples:
        """The samples of training step ``step`` (see the module docstring)."""
        c = self.config
        if self.train_set is None:
            drawn = self.problem.sample(c.batch_size, generator(c.seed, "batch", step))
            return drawn.to(self.device, self.dtype)
        n = len(self.train_set)
        per_epoch = math.ceil(n / c.batch_size)
        epoch, k = divmod(step, per_epoch)
        if self._epoch is None or self._epoch[0] != epoch:
            order = torch.randperm(n, generator=generator(c.seed, "batches", epoch))
            self._epoch = (epoch, order.to(self.device))
        index = self._epoch[1][k * c.batch_size : (k + 1) * c.batch_size]
        return self.train_set.select(index)

    # the loss terms -------------------------------------------------------------------
    def objective_terms(self, x: Tensor, samples: Samples) -> dict[str, Tensor]:
        """``y_loss`` (and ``x_loss``) of unknowns x [B, *x_shape], means over the batch,
        with gradients through x."""
        p = self.problem
        y = p.forward(x, samples.condition)
        terms = {"y_loss": p.loss_y(y, samples.target).mean()}
        if samples.truth is not None:
            terms["x_loss"] = p.loss_x(x, samples.truth).mean()
        return terms

    def validate(self, model: nn.Module) -> dict[str, float]:
        """Mean ``y_loss`` (and ``x_loss``) over the validation samples."""
        sums: dict[str, float] = {}
        n = len(self.val_set)
        with torch.no_grad():
            for start in range(0, n, CHUNK):
                chunk = self.val_set.select(torch.arange(start, min(start + CHUNK, n)))
                terms = self.objective_terms(self.unknowns(model, chunk), chunk)
                for k, v in terms.items():
                    sums[k] = sums.get(k, 0.0) + float(v) * len(chunk)
            out = {k: v / n for k, v in sums.items()}
            if isinstance(model, MLP) and model.frequencies is None:
                out |= activation_stats(model, model_input(self.problem, model, self.val_set.input))
        return out

    # evaluation -----------------------------------------------------------------------
    def predict(self, model: nn.Module) -> Tensor:
        """x of the problem's test samples, [B, 1, C, *spatial] float64 on the CPU."""
        test = self.problem.test_samples().to(self.device, self.dtype)
        parts = []
        with torch.no_grad():
            for start in range(0, len(test), CHUNK):
                chunk = test.select(torch.arange(start, min(start + CHUNK, len(test))))
                parts.append(self.unknowns(model, chunk).to("cpu", torch.float64))
        return self.problem.as_prediction(torch.cat(parts))

    def reference(self) -> Tensor | None:
        """x* of the test samples where the problem knows it (else None)."""
        truth = self.problem.test_samples().truth
        return None if truth is None else self.problem.as_prediction(truth.to(torch.float64))
