"""Learning the Helmholtz-Hodge decomposition (PBDL book ch. 9; Tompson et al. 2017).

A divergent velocity u~ on a periodic box splits into a divergence-free part and a
gradient (Helmholtz-Hodge). Chorin's projection finds the gradient by a Poisson solve,

    L p = div u~,    u = u~ - grad p,    div u = div u~ - L p = 0,

with L = div grad the 5-point Laplacian of the staggered (MAC) grid. Here a network
p = f(div u~; theta) replaces the solve and is trained with the *physical* loss

    L(theta) = mean_b  sum_cells ( div(u~_b - grad f(div u~_b; theta)) )^2

(no pressure labels; see ``method=projection``). This problem owns the data and the
operators: fixed, seeded random divergent fields for training and testing, the discrete
divergence and gradient, the loss above per sample, and the exact FFT projection (the
"solver" the network is compared with).

States are ``[B, 2, n, n]`` in the staggered layout of :mod:`pbdl_cli.numerics.mac`:
channel 0 = ``u`` on the left faces, channel 1 = ``v`` on the bottom faces, periodic in
x and y, on the box [0, size]^2 (``size = n`` by default: dx = 1, as in the book).

**Noise** (:func:`noise`): the book's phiflow ``StaggeredGrid(Noise(scale, smoothness))``,
rebuilt in torch. Every velocity component of every sample is an independent Gaussian
random field with the Fourier amplitude

    a(m) = z_m * (1 / |k_m|^2)^smoothness * [|k_m|^2 > 0.1],   k_m = m * scale / size,

(z_m complex standard normal, m the integer wave vector), real part of the inverse FFT,
then scaled to unit standard deviation and zero mean (per sample and component). Since
the normalization removes the amplitude, ``scale`` acts through the high-pass cut
|m| > sqrt(0.1) size / scale: on the book's 32^2 box, scale = 10 keeps all modes but
|m| = 1 along an axis, scale = 2 only |m| > 5.06: smaller, more divergent structures
(the out-of-distribution test, about 6.7x the training divergence).

A static problem (``t_end = 0``): predictions are ``[B, 1, 2, n, n]`` (one frame),
namely the test fields after a learned projection; ``metrics`` compares their divergence
with the input's and with the exact projection's.
"""

from __future__ import annotations

import dataclasses
import math

import torch
from torch import Tensor

from pbdl_cli.errors import PbdlError
from pbdl_cli.numerics.geometry import Boundary
from pbdl_cli.numerics.mac import MacGrid
from pbdl_cli.numerics.pressure import PressureSystem
from pbdl_cli.problems.base import PROBLEMS, Grid, Params, StaticProblem
from pbdl_cli.registry import PluginConfig
from pbdl_cli.utils.seeding import generator

#: phiflow's high-pass threshold on |k|^2 (``lowest_frequency``)
LOWEST_K2 = 0.1
SPLITS = ("train", "test")


@dataclasses.dataclass
class HHDConfig(PluginConfig):
    """Configuration of :class:`HelmholtzHodge` (``problem.<key>``).

    Attributes:
        n: cells per axis.
        size: side length of the periodic box (0: ``n``, i.e. dx = 1 as in the book).
        n_train, n_test: number of training and test fields.
        train_scale, test_scale: ``scale`` of the noise of each split (module docstring;
            the book: 10, phiflow's default, and 2 for the out-of-distribution test).
        smoothness: exponent of 1/|k|^2 in the noise spectrum (phiflow's default 1).
        seed: seed of the fields (each split has its own stream).
    """

    n: int = 32
    size: float = 0.0
    n_train: int = 100
    n_test: int = 10
    train_scale: float = 10.0
    test_scale: float = 2.0
    smoothness: float = 1.0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.n < 4:
            raise ValueError("n must be >= 4")
        if self.size < 0:
            raise ValueError("size must be > 0 (or 0: size = n)")
        if self.n_train < 1 or self.n_test < 1:
            raise ValueError("n_train and n_test must be >= 1")
        if self.train_scale <= 0 or self.test_scale <= 0:
            raise ValueError("train_scale and test_scale must be > 0")
        if self.smoothness < 0:
            raise ValueError("smoothness must be >= 0")


def noise(
    batch: int,
    n: int,
    *,
    scale: float,
    smoothness: float = 1.0,
    size: float | None = None,
    generator: torch.Generator | None = None,
    channels: int = 2,
) -> Tensor:
    """Smooth periodic random fields [batch, channels, n, n] float64 (module docstring).

    Raises:
        ValueError: when the high-pass cut leaves no mode (scale too small for n).
    """
    size = float(n if size is None else size)
    m = torch.fft.fftfreq(n, dtype=torch.float64) * n  # integer wave numbers
    k2 = (m[:, None] ** 2 + m[None, :] ** 2) * (scale / size) ** 2
    keep = k2 > LOWEST_K2
    if not bool(keep.any()):
        raise ValueError(f"noise scale {scale} keeps no Fourier mode on {n} cells of size {size}")
    weight = torch.where(keep, k2.clamp_min(1e-300).reciprocal() ** smoothness, 0.0)
    shape = (batch, channels, n, n)
    z = torch.complex(
        torch.randn(shape, generator=generator, dtype=torch.float64),
        torch.randn(shape, generator=generator, dtype=torch.float64),
    )
    field = torch.fft.ifft2(z * weight).real
    field = field / field.std(dim=(2, 3), keepdim=True, correction=0)
    return field - field.mean(dim=(2, 3), keepdim=True)


@PROBLEMS.register("hhd")
class HelmholtzHodge(StaticProblem):
    """Divergent random velocities on a periodic MAC grid and their projection (book ch. 9)."""

    Config = HHDConfig
    config: HHDConfig
    fields = ("u", "v")
    default_solver = None

    def __init__(self, config: HHDConfig) -> None:
        super().__init__(config)
        self._fields: dict[str, Tensor] = {}
        self._macs: dict[tuple[torch.device, torch.dtype], MacGrid] = {}

    # -- geometry -------------------------------------------------------------------------
    @property
    def size(self) -> float:
        return float(self.config.size or self.config.n)

    @property
    def grid(self) -> Grid:
        n, size = self.config.n, self.size
        return Grid(lower=(0.0, 0.0), upper=(size, size), shape=(n, n), bc="periodic")

    def slug(self) -> str:
        c = self.config
        return f"hhd_n{c.n}_s{c.train_scale:g}-{c.test_scale:g}"

    def sample_params(self, n: int, generator: torch.Generator) -> Params:
        """No physical parameters."""
        return {}

    def initial_state(self, params: Params, generator: torch.Generator) -> Tensor:
        raise PbdlError("problem 'hhd' is static: it has no initial state to simulate")

    # -- data -----------------------------------------------------------------------------
    def data(self, split: str) -> Tensor:
        """The fixed divergent fields of ``split`` (train or test): [N, 2, n, n] float64 CPU,
        the same for the same configuration."""
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        if split not in self._fields:
            c = self.config
            count, scale = (
                (c.n_train, c.train_scale) if split == "train" else (c.n_test, c.test_scale)
            )
            self._fields[split] = noise(
                count,
                c.n,
                scale=scale,
                smoothness=c.smoothness,
                size=self.size,
                generator=generator(c.seed, "hhd", split),
            )
        return self._fields[split]

    # -- operators ------------------------------------------------------------------------
    def mac(
        self, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float64
    ) -> MacGrid:
        """The periodic :class:`~pbdl_cli.numerics.mac.MacGrid` of this box."""
        key = (torch.device(device), dtype)
        if key not in self._macs:
            n, size = self.config.n, self.size
            self._macs[key] = MacGrid(
                (n, n), (0.0, 0.0), (size, size), Boundary.periodic(), device=device, dtype=dtype
            )
        return self._macs[key]

    def divergence(self, state: Tensor) -> Tensor:
        """Cell-centred div u of staggered states [B, 2, n, n]: [B, n, n]."""
        return self.mac(state.device, state.dtype).divergence(state[:, 0], state[:, 1])

    def gradient(self, p: Tensor) -> Tensor:
        """grad p of cell-centred pressures [B, n, n] on the faces: [B, 2, n, n]."""
        gx, gy = self.mac(p.device, p.dtype).gradient(p)
        return torch.stack([gx, gy], dim=1)

    def correct(self, state: Tensor, p: Tensor) -> Tensor:
        """The projection with pressure ``p`` [B, n, n]: u~ - grad p, [B, 2, n, n]."""
        return state - self.gradient(p)

    def div_loss(self, state: Tensor) -> Tensor:
        """sum over cells of (div u)^2 per sample: [B] (the book's 2 * l2_loss)."""
        return self.divergence(state).square().sum(dim=(1, 2))

    def div_max(self, state: Tensor) -> Tensor:
        """max over cells of |div u| per sample: [B]."""
        return self.divergence(state).abs().amax(dim=(1, 2))

    def solve_pressure(self, state: Tensor) -> Tensor:
        """The exact pressure of the projection, L p = div u~ (zero mean, FFT): [B, n, n]."""
        system = PressureSystem(self.mac(state.device, state.dtype), "fft")
        return system.solve(self.divergence(state))

    def project(self, state: Tensor) -> tuple[Tensor, Tensor]:
        """The exact projection: (divergence-free state [B, 2, n, n], pressure [B, n, n])."""
        p = self.solve_pressure(state)
        return self.correct(state, p), p

    # -- evaluation -----------------------------------------------------------------------
    def metrics(self, prediction: Tensor, params: Params) -> dict[str, float]:
        """Divergence of a projected prediction [B, 1, 2, n, n] (the test fields after a
        learned projection), beside the input's and the exact projection's:

        div_loss = mean_b sum (div u)^2, div_max = mean_b max |div u| for the prediction;
        input_div_loss / input_div_max for the test fields themselves, solver_div_loss /
        solver_div_max for their exact FFT projection, and div_reduction =
        input_div_loss / div_loss (the book: 2059.143 / 11.510 = 179x). The input and
        solver entries need B = n_test (the prediction is of the test split).
        """
        state = prediction.to(torch.float64)[:, 0]
        loss, peak = self.div_loss(state), self.div_max(state)
        out = {"div_loss": float(loss.mean()), "div_max": float(peak.mean())}
        test = self.data("test")
        if state.shape != test.shape:
            return out
        original = self.div_loss(test).mean()
        solved, _ = self.project(test)
        out |= {
            "input_div_loss": float(original),
            "input_div_max": float(self.div_max(test).mean()),
            "solver_div_loss": float(self.div_loss(solved).mean()),
            "solver_div_max": float(self.div_max(solved).mean()),
        }
        out["div_reduction"] = float(original / loss.mean()) if loss.mean() > 0 else math.inf
        return out
