"""Problems that define a distribution p(y | c) to learn from samples (book Part V).

A probabilistic method (``nf``, ``cnf``, ``score``, ``ddpm``, ``flow_matching``, ...)
learns a model q_theta(y | c) of a distribution from draws of it; :class:`Distribution`
is what such a problem offers, as a mixin of a :class:`~pbdl_cli.problems.base.Problem`:

- training pairs (y, c) ~ p(c) p(y | c) (:meth:`Distribution.draw`);
- the conditions a trained model is tested at (:meth:`Distribution.test_conditions`,
  None for an unconditional problem) and reference samples of p(y | c) at each one
  (:meth:`Distribution.reference_samples`);
- where known: the exact log-density, and the modes (mixture components, branches) of
  samples with their true weights, for the distribution metrics of
  :mod:`pbdl_cli.evaluation.distribution`; and the exact score of the distribution
  noised by N(0, sigma^2 I), for score matching (:meth:`Distribution.noised_score`).

Shapes: a sample y is ``sample_shape`` ((D,) for points, (C, *spatial) for fields), a
condition c ``condition_shape``; batches put the sample index first: y [n, *sample_shape],
c [n, *condition_shape].
"""

from __future__ import annotations

import dataclasses
import math

import torch
from torch import Tensor

from pbdl_cli.errors import PbdlError


@dataclasses.dataclass
class Draws:
    """Samples y [n, *sample_shape] and their conditions [n, *condition_shape] (or None)."""

    y: Tensor
    condition: Tensor | None = None

    def __post_init__(self) -> None:
        if self.condition is not None and len(self.condition) != len(self.y):
            raise ValueError(f"{len(self.y)} samples but {len(self.condition)} conditions")

    def __len__(self) -> int:
        return len(self.y)

    def select(self, index: Tensor) -> Draws:
        """The draws at ``index`` (a long tensor on the draws' device)."""
        return Draws(self.y[index], None if self.condition is None else self.condition[index])

    def to(self, device: torch.device | str, dtype: torch.dtype) -> Draws:
        c = self.condition
        return Draws(self.y.to(device, dtype), None if c is None else c.to(device, dtype))


class Distribution:
    """Mixin of problems that define p(y | c) (module docstring). Subclasses set
    ``sample_shape`` and ``condition_shape`` and implement :meth:`draw` and
    :meth:`reference_samples`; the rest has defaults (no density, no modes)."""

    #: the shape of one sample y: (D,) for points, (C, *spatial) for fields
    sample_shape: tuple[int, ...]
    #: the shape of one condition c; None: the problem is unconditional
    condition_shape: tuple[int, ...] | None = None
    #: the name of each condition feature (labels of figures and of ``condition=``)
    condition_names: tuple[str, ...] = ()

    @property
    def conditional(self) -> bool:
        return self.condition_shape is not None

    def draw(self, n: int, generator: torch.Generator) -> Draws:
        """``n`` training pairs (y, c) ~ p(c) p(y | c), float64 on the CPU."""
        raise NotImplementedError

    def test_conditions(self) -> Tensor | None:
        """The conditions a trained model is tested at, [M, *condition_shape] float64
        (None: unconditional)."""
        return None

    def reference_samples(
        self, n: int, generator: torch.Generator, condition: Tensor | None = None
    ) -> Tensor:
        """``n`` exact draws of p(y | condition), [n, *sample_shape] float64; ``condition``
        is one condition [*condition_shape] (None when unconditional)."""
        raise NotImplementedError

    def log_density(self, y: Tensor, condition: Tensor | None = None) -> Tensor | None:
        """The exact log p(y | condition) [n] of samples y [n, *sample_shape], or None
        where the problem does not know it."""
        return None

    def noised_score(
        self, y: Tensor, sigma: Tensor | float, condition: Tensor | None = None
    ) -> Tensor | None:
        """The exact score grad_y log p_sigma(y | condition) of the noised distribution
        p_sigma = p * N(0, sigma^2 I) at y [n, *sample_shape] (``sigma`` a number or one
        level per sample [n]; 0: the score of p itself), or None where the problem does
        not know it (default). Score-matching methods report their error against it."""
        return None

    def mode_labels(self, y: Tensor, condition: Tensor | None = None) -> Tensor | None:
        """The mode (mixture component, branch) of each sample, int64 [n]; None where
        the distribution has no modes to count."""
        return None

    def mode_weights(self, condition: Tensor | None = None) -> Tensor | None:
        """The true probability of each mode [K] (None without modes)."""
        return None

    def sample_metrics(self, y: Tensor, condition: Tensor | None = None) -> dict[str, float]:
        """Problem-specific scores of model samples y [n, *sample_shape] at one condition
        (e.g. the parabola's distance to the nearest branch); default: none."""
        return {}

    def parse_condition(self, values: list[float]) -> Tensor:
        """A condition given on the command line (``condition=[...]``) as a tensor
        [*condition_shape]; one-line PbdlError when it does not fit."""
        if self.condition_shape is None:
            raise PbdlError(
                f"problem '{getattr(self, 'name', '?')}' is unconditional: drop condition="
            )
        size = math.prod(self.condition_shape)
        if len(values) != size:
            names = f" ({', '.join(self.condition_names)})" if self.condition_names else ""
            raise PbdlError(f"condition= needs {size} value(s){names}, got {len(values)}: {values}")
        if not all(math.isfinite(v) for v in values):
            raise PbdlError(f"condition= must be finite, got {values}")
        return torch.tensor(values, dtype=torch.float64).reshape(self.condition_shape)


def check_distribution(problem: object, method: str) -> Distribution:
    """``problem`` as a :class:`Distribution`, or a one-line refusal naming ``method``."""
    if not isinstance(problem, Distribution):
        raise PbdlError(
            f"method '{method}' learns a probability distribution, but problem "
            f"'{getattr(problem, 'name', '?')}' defines none (use problem=gaussian_mixture "
            "or parabola)"
        )
    return problem
