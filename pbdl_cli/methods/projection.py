"""Learned pressure projection with a physical loss only (PBDL book ch. 9, "Learning the
Helmholtz-Hodge decomposition"; Tompson et al. 2017, "Accelerating Eulerian fluid
simulation with convolutional networks").

A grid network maps the divergence of a divergent staggered velocity u~ to a pressure,

    p = s f(div u~ / s; theta)        (s = 1, or s = rms(div u~) per sample: ``normalize``)

and the projection is u = u~ - grad p. There are no pressure labels: the loss is the
squared divergence left after the projection,

    L(theta) = mean_{b in batch}  sum_cells ( div(u~_b - grad p_b) )^2,

which backpropagates through the discrete gradient and divergence of the problem's MAC
grid (``problem=hhd``: :mod:`pbdl_cli.problems.hhd`). Training visits the problem's fixed
training fields in batches of ``batch_size`` (in order, like the book, or shuffled per
epoch from ``seed``); validation reports the loss over all training fields
(``train_div_loss``, the book's "final loss") and over the test fields
(``test_div_loss``). ``predict`` returns the projected test fields, ``reference`` their
exact (FFT) projection.

Shapes: network input div u~ [B, 1, n, n], output p [B, 1, n, n]; ``predict`` and
``reference`` [N_test, 1, 2, n, n].
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import torch
from torch import Tensor, nn

from pbdl_cli.errors import PbdlError
from pbdl_cli.methods.base import METHODS, Method, MethodConfig
from pbdl_cli.models.base import MODELS
from pbdl_cli.problems.base import Problem
from pbdl_cli.utils.seeding import derive_seed

NORMALIZE = ("none", "rms")
#: what a problem must offer to be trained on (see :class:`~pbdl_cli.problems.hhd.HelmholtzHodge`)
NEEDS = ("data", "divergence", "correct", "div_loss", "project")


@dataclasses.dataclass
class ProjectionConfig(MethodConfig):
    """Options of ``projection`` (``method.<key>``).

    Attributes:
        batch_size: training fields per step (the book: 10).
        shuffle: visit the fields in a new random order every epoch (false: in order, as
            the book does).
        normalize: ``none`` (the book: the raw divergence goes in, the pressure comes
            out) or ``rms`` (divide the input by its per-sample root mean square and
            multiply the output by it: the projection becomes equivariant to the velocity's
            amplitude).
        seed: seed of the network initialization and of the shuffling.
        obstacle_test: ``pbdl evaluate`` also runs the book's zero-shot obstacle test
            (:mod:`pbdl_cli.methods.projection_obstacle`: a smoke plume past a box,
            projected by the network and exactly; ~1 s) and stores its ``obstacle_*``
            metrics.
    """

    batch_size: int = 10
    shuffle: bool = False
    normalize: str = "none"
    seed: int = 0
    obstacle_test: bool = True

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        if self.normalize not in NORMALIZE:
            raise ValueError(f"normalize must be one of {', '.join(NORMALIZE)}")


@METHODS.register("projection")
class LearnedProjection(Method):
    """Learn p = f(div u~) so that u~ - grad p is divergence-free (physical loss only)."""

    Config = ProjectionConfig
    config: ProjectionConfig

    def __init__(
        self,
        config: ProjectionConfig,
        *,
        problem: Problem,
        device: torch.device,
        dtype: torch.dtype,
    ) -> None:
        super().__init__(config, problem=problem, device=device, dtype=dtype)
        missing = [name for name in NEEDS if not callable(getattr(problem, name, None))]
        if missing:
            raise PbdlError(
                f"method 'projection' learns a pressure projection of divergent velocity "
                f"fields; problem '{problem.name}' does not provide them (use problem=hhd)"
            )
        self.train_fields = problem.data("train").to(device, dtype)  # type: ignore[attr-defined]
        self.test_fields = problem.data("test").to(device, dtype)  # type: ignore[attr-defined]
        self._epoch, self._order = -1, torch.arange(len(self.train_fields), device=device)

    # -- model ----------------------------------------------------------------------------
    def build_model(self, model_config: Any) -> nn.Module:
        """A grid model with one input channel (the divergence) and one output (p)."""
        torch.manual_seed(derive_seed(self.config.seed, "model") % 2**31)
        try:
            model = MODELS.build(
                model_config,
                in_channels=1,
                out_channels=1,
                num_spatial_dims=self.problem.grid.num_spatial_dims,
            )
        except TypeError:  # a model of another kind (mlp, field) takes other sizes
            name = MODELS.config(model_config).name
            raise PbdlError(
                f"method 'projection' needs a grid model (model=unet, resnet or fno), "
                f"got model={name}"
            ) from None
        return model.to(self.device, self.dtype)

    def pressure(self, model: nn.Module, state: Tensor) -> Tensor:
        """The network's pressure for divergent states [B, 2, n, n]: [B, n, n]."""
        div = self.problem.divergence(state)[:, None]  # type: ignore[attr-defined]
        return self.pressure_of_divergence(model, div)

    def pressure_of_divergence(self, model: nn.Module, div: Tensor) -> Tensor:
        """The network's pressure [B, n, n] for divergences [B, 1, n, n] (with the
        ``normalize`` scaling)."""
        if self.config.normalize == "none":
            return model(div)[:, 0]
        scale = div.square().mean(dim=(1, 2, 3), keepdim=True).sqrt().clamp_min(1e-12)
        return (model(div / scale) * scale)[:, 0]

    def project(self, model: nn.Module, state: Tensor) -> Tensor:
        """The learned projection u~ - grad f(div u~) of states [B, 2, n, n]."""
        return self.problem.correct(state, self.pressure(model, state))  # type: ignore[attr-defined]

    # -- training -------------------------------------------------------------------------
    def batch(self, step: int) -> Tensor:
        """Indices of the training fields of step ``step`` (derived from the step alone,
        so a resumed run sees the same batches)."""
        n, size = len(self.train_fields), min(self.config.batch_size, len(self.train_fields))
        per_epoch = math.ceil(n / size)
        epoch, k = divmod(step, per_epoch)
        if self.config.shuffle and epoch != self._epoch:
            g = torch.Generator().manual_seed(derive_seed(self.config.seed, "batches", epoch))
            self._order = torch.randperm(n, generator=g).to(self.device)
            self._epoch = epoch
        return self._order[k * size : (k + 1) * size]

    def loss(self, model: nn.Module, step: int) -> dict[str, Tensor]:
        state = self.train_fields[self.batch(step)]
        div = self.problem.div_loss(self.project(model, state)).mean()  # type: ignore[attr-defined]
        return {"loss": div, "div": div}

    def _mean_div_loss(self, model: nn.Module, fields: Tensor) -> float:
        with torch.no_grad():
            losses = [
                self.problem.div_loss(self.project(model, chunk))  # type: ignore[attr-defined]
                for chunk in fields.split(max(self.config.batch_size, 50))
            ]
        return float(torch.cat(losses).mean())

    def validate(self, model: nn.Module) -> dict[str, float]:
        """``train_div_loss`` (mean sum (div u)^2 over all training fields after the
        learned projection), ``test_div_loss`` (the same on the test fields) and
        ``train_input_div_loss`` (the training fields before it)."""
        div_loss = self.problem.div_loss  # type: ignore[attr-defined]
        return {
            "train_div_loss": self._mean_div_loss(model, self.train_fields),
            "test_div_loss": self._mean_div_loss(model, self.test_fields),
            "train_input_div_loss": float(div_loss(self.train_fields).mean()),
        }

    # -- evaluation -----------------------------------------------------------------------
    @torch.no_grad()
    def predict(self, model: nn.Module) -> Tensor:
        """The projected test fields [N_test, 1, 2, n, n] (float64, CPU)."""
        return self.project(model, self.test_fields)[:, None].double().cpu()

    def extra_metrics(self, model: nn.Module) -> dict[str, float]:
        """The zero-shot obstacle test (``obstacle_*``; none when ``obstacle_test`` is
        off): :meth:`~pbdl_cli.methods.projection_obstacle.ObstacleResult.metrics`."""
        if not self.config.obstacle_test:
            return {}
        return self.obstacle_test(model).metrics()

    def obstacle_test(self, model: nn.Module, **options: Any) -> Any:
        """Run :func:`~pbdl_cli.methods.projection_obstacle.obstacle_test` with this
        network (on the problem's grid spacing; ``options``: steps, dt, n, ...)."""
        from pbdl_cli.methods.projection_obstacle import obstacle_test

        problem = self.problem
        options.setdefault("dx", problem.size / problem.config.n)  # type: ignore[attr-defined]
        return obstacle_test(
            lambda div: self.pressure_of_divergence(model, div),
            device=self.device,
            dtype=self.dtype,
            **options,
        )

    def reference(self) -> Tensor:
        """The exact (FFT) projection of the test fields [N_test, 1, 2, n, n]."""
        fields = self.problem.data("test")  # type: ignore[attr-defined]
        solved, _ = self.problem.project(fields)  # type: ignore[attr-defined]
        return solved[:, None].double().cpu()
