"""RealNVP: a normalizing flow of affine coupling blocks with an exact log-likelihood.

Dinh, Sohl-Dickstein & Bengio 2017, "Density estimation using Real NVP" (ICLR); PBDL book
ch. 22.3-22.5 (``RealNVP2D``: 6 blocks, s/t nets Linear-ReLU-Linear-ReLU-Linear of width
256). Block k splits the features into a kept part A_k and a changed part B_k and maps

    y_A = x_A,   y_B = x_B * exp(s_k(x_A, c)) + t_k(x_A, c),   log|det dy/dx| = sum_B s_k

with one network [x_A, c] -> (t_k, s_k). Its inverse is x_B = (y_B - t_k) * exp(-s_k),
x_A = y_A, so the flow f = f_K o ... o f_1 (data x -> latent z) is invertible in closed form
and (book eq. in 22.3, change of variables)

    log p(x | c) = log N(f(x); 0, I) + sum_k log|det df_k/dx_k|
                 = -|z|^2 / 2 - (D / 2) log(2 pi) + log_det.

Masks alternate between blocks: ``checkerboard`` keeps the even indices in even blocks and
the odd ones in odd blocks, ``halves`` keeps the first D // 2 features, then the rest (the
book's split with ``flip``); for D = 2 both are the book's: keep x_1 and change x_2, then
swap. With ``condition_features`` C > 0 every s/t net also sees a condition c [B, C]
(a conditional flow q(x | c), book ch. 22.2).

Scale clamp: s = a tanh(s_raw / a) with a = ``scale_clamp`` (0: s = s_raw, the book). It
equals s_raw to first order (relative error s^2 / (3 a^2), under 1 % for |s| < 0.5 at a = 3,
the regime of the book's GM fit), but bounds each block's factor by e^a, so exp() cannot
overflow and the inverse stays well conditioned in float32 far out in the tails.

The book's notebook adds the prior's normalization -1/2 log(2 pi) once instead of D times
(PBDL spec, inconsistencies item 4): its log-likelihood is ours plus
:func:`book_offset` (D) = (D - 1) / 2 log(2 pi), 0.919 for D = 2; :meth:`RealNVP.book_log_prob`
prints the book's units (its loss is ``-book_log_prob(x).mean()``).

Shapes: x, z [B, D] (D = ``features`` >= 2), c [B, C], log_det and log_prob [B].
Parameters (H = hidden, L = depth, per block with a kept and b changed features):
    (a + C) H + H + (L - 1) (H^2 + H) + 2 b H + 2 b
(book, D = 2, H = 256, L = 2: 66,818 per block, 400,908 for 6 blocks).
"""

from __future__ import annotations

import dataclasses
import enum
import itertools
import math

import torch
from torch import Tensor, nn

from pbdl_cli.models.base import MODELS
from pbdl_cli.models.utils import Activation, ModelInputError, make_activation, scale_init
from pbdl_cli.registry import PluginConfig

#: log(2 pi), the per-dimension normalization of a standard normal
LOG_2PI = math.log(2.0 * math.pi)


def book_offset(features: int) -> float:
    """The book's log-likelihood minus the correct one: (D - 1) / 2 log(2 pi).

    The notebook's prior is ``sum(-z^2 / 2) - log(2 pi) / 2`` (the constant once, not D
    times), so ``book = correct + book_offset(D)``; 0.9189 for D = 2.
    """
    return 0.5 * (features - 1) * LOG_2PI


class Mask(str, enum.Enum):
    """Which features a block keeps (the rest it changes); alternates between blocks."""

    checkerboard = "checkerboard"  # even indices in even blocks, odd in odd blocks
    halves = "halves"  # the first D // 2 in even blocks, the others in odd blocks


@dataclasses.dataclass
class RealNVPConfig(PluginConfig):
    """Options of ``realnvp`` (``model.<key>``).

    Attributes:
        blocks: affine coupling blocks (book: 6).
        hidden: width of the hidden layers of each s/t net (book: 256).
        depth: hidden layers of each s/t net (book: 2, Linear-ReLU-Linear-ReLU-Linear).
        activation: gelu, relu, tanh or silu (book: relu).
        scale_clamp: a in the log-scale clamp s = a tanh(s_raw / a); 0 turns it off (the
            book's unclamped s).
        mask: checkerboard or halves (identical for D = 2).
        condition_features: size C of the condition c when the method passes none.
        out_init_scale: factor on the initial weights of each net's last layer (0: the
            flow starts as the identity; 1: torch's default initialization, as the book).
    """

    blocks: int = 6
    hidden: int = 256
    depth: int = 2
    activation: Activation = Activation.relu
    scale_clamp: float = 3.0
    mask: Mask = Mask.checkerboard
    condition_features: int = 0
    out_init_scale: float = 1.0

    def __post_init__(self) -> None:
        if self.blocks < 1 or self.hidden < 1 or self.depth < 1:
            raise ValueError("blocks, hidden and depth must be >= 1")
        if self.scale_clamp < 0 or self.condition_features < 0 or self.out_init_scale < 0:
            raise ValueError("scale_clamp, condition_features and out_init_scale must be >= 0")


def _partition(features: int, block: int, mask: Mask) -> tuple[list[int], list[int]]:
    """(kept, changed) feature indices of block ``block``; both non-empty for D >= 2."""
    if mask is Mask.checkerboard:
        kept = [i for i in range(features) if i % 2 == block % 2]
    else:
        half = list(range(features // 2))
        kept = half if block % 2 == 0 else list(range(features // 2, features))
    changed = [i for i in range(features) if i not in kept]
    return kept, changed


class AffineCoupling(nn.Module):
    """One block: y_A = x_A, y_B = x_B exp(s) + t with (t, s) = net([x_A, c])."""

    def __init__(
        self,
        kept: list[int],
        changed: list[int],
        condition_features: int,
        config: RealNVPConfig,
    ) -> None:
        super().__init__()
        self.scale_clamp = config.scale_clamp
        self.register_buffer("kept", torch.tensor(kept), persistent=False)
        self.register_buffer("changed", torch.tensor(changed), persistent=False)
        # [y_A, y_B] back to the original feature order
        self.register_buffer("order", torch.argsort(torch.tensor(kept + changed)), persistent=False)
        sizes = [len(kept) + condition_features] + [config.hidden] * config.depth
        layers: list[nn.Module] = []
        for fan_in, fan_out in itertools.pairwise(sizes):
            layers += [nn.Linear(fan_in, fan_out), make_activation(config.activation)]
        layers.append(nn.Linear(sizes[-1], 2 * len(changed)))
        scale_init(layers[-1], config.out_init_scale)
        self.net = nn.Sequential(*layers)

    def shift_and_log_scale(self, x_kept: Tensor, c: Tensor | None) -> tuple[Tensor, Tensor]:
        """(t, s), each [B, b], from the kept features [B, a] and the condition [B, C]."""
        h = x_kept if c is None else torch.cat([x_kept, c], dim=-1)
        shift, log_scale = self.net(h).chunk(2, dim=-1)
        if self.scale_clamp > 0:
            log_scale = self.scale_clamp * torch.tanh(log_scale / self.scale_clamp)
        return shift, log_scale

    def forward(self, x: Tensor, c: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """x [B, D] -> (y [B, D], log|det dy/dx| [B])."""
        x_kept, x_changed = x[:, self.kept], x[:, self.changed]
        shift, log_scale = self.shift_and_log_scale(x_kept, c)
        y_changed = x_changed * torch.exp(log_scale) + shift
        return torch.cat([x_kept, y_changed], dim=-1)[:, self.order], log_scale.sum(dim=-1)

    def inverse(self, y: Tensor, c: Tensor | None = None) -> Tensor:
        """y [B, D] -> x [B, D]."""
        y_kept, y_changed = y[:, self.kept], y[:, self.changed]
        shift, log_scale = self.shift_and_log_scale(y_kept, c)
        x_changed = (y_changed - shift) * torch.exp(-log_scale)
        return torch.cat([y_kept, x_changed], dim=-1)[:, self.order]


@MODELS.register("realnvp")
class RealNVP(nn.Module):
    """RealNVP normalizing flow (affine couplings) on point data [B, D], optionally
    conditional; exact log-likelihood under a standard normal prior."""

    Config = RealNVPConfig

    def __init__(
        self,
        config: RealNVPConfig,
        *,
        features: int,
        condition_features: int | None = None,
    ) -> None:
        super().__init__()
        if features < 2:
            raise ModelInputError(
                f"realnvp: a coupling flow needs features >= 2 (got {features}); "
                "one-dimensional data has no part to condition on"
            )
        if condition_features is None:
            condition_features = config.condition_features
        elif config.condition_features not in (0, condition_features):
            raise ModelInputError(
                f"realnvp: model.condition_features={config.condition_features} but the "
                f"method's condition has {condition_features} features; remove the option"
            )
        self.config = config
        self.features, self.condition_features = features, condition_features
        self.flows = nn.ModuleList(
            AffineCoupling(*_partition(features, k, config.mask), condition_features, config)
            for k in range(config.blocks)
        )

    def summary(self) -> str:
        c = self.config
        cond = f", condition {self.condition_features}" if self.condition_features else ""
        return f"{c.blocks} blocks x {c.hidden} (depth {c.depth}), D={self.features}{cond}"

    # -- input checks ---------------------------------------------------------------------
    def _check(self, x: Tensor, c: Tensor | None, what: str) -> Tensor | None:
        """Raise a one-line error unless x is [B, D] and c is [B, C] (given iff C > 0);
        returns c in x's dtype."""
        if x.dim() != 2 or x.shape[1] != self.features:
            raise ModelInputError(
                f"realnvp: expected {what} [B, {self.features}], got shape {list(x.shape)}"
            )
        if self.condition_features == 0:
            if c is not None:
                raise ModelInputError("realnvp: built with condition_features=0 but c was given")
            return None
        if c is None or c.shape != (x.shape[0], self.condition_features):
            got = "None" if c is None else list(c.shape)
            raise ModelInputError(
                f"realnvp: built with condition_features={self.condition_features}; expected "
                f"c [{x.shape[0]}, {self.condition_features}], got {got}"
            )
        return c.to(x.dtype)

    def _layers(self, layers: int | None) -> list[AffineCoupling]:
        count = len(self.flows) if layers is None else layers
        if not 0 <= count <= len(self.flows):
            raise ModelInputError(f"realnvp: layers must be in 0..{len(self.flows)} (got {layers})")
        return list(self.flows)[:count]

    # -- the flow -------------------------------------------------------------------------
    def forward(
        self, x: Tensor, c: Tensor | None = None, *, layers: int | None = None
    ) -> tuple[Tensor, Tensor]:
        """Data -> latent: x [B, D], c [B, C] -> (z [B, D], log|det dz/dx| [B]).

        ``layers`` applies only the first k blocks (the book's per-layer progression).
        """
        c = self._check(x, c, "x")
        log_det = x.new_zeros(x.shape[0])
        for flow in self._layers(layers):
            x, block_log_det = flow(x, c)
            log_det = log_det + block_log_det
        return x, log_det

    def inverse(self, z: Tensor, c: Tensor | None = None, *, layers: int | None = None) -> Tensor:
        """Latent -> data: z [B, D], c [B, C] -> x [B, D] (the first ``layers`` blocks
        inverted, last first; :meth:`forward` with the same ``layers`` undoes it)."""
        c = self._check(z, c, "z")
        for flow in reversed(self._layers(layers)):
            z = flow.inverse(z, c)
        return z

    def log_prob(self, x: Tensor, c: Tensor | None = None) -> Tensor:
        """log q(x | c) [B] = -|z|^2 / 2 - D / 2 log(2 pi) + log|det dz/dx|, z = f(x).

        A normalized density (integrates to 1 over x). The book adds -1/2 log(2 pi) only
        once; :meth:`book_log_prob` gives its numbers.
        """
        z, log_det = self.forward(x, c)
        return -0.5 * z.square().sum(dim=-1) - 0.5 * self.features * LOG_2PI + log_det

    def book_log_prob(self, x: Tensor, c: Tensor | None = None) -> Tensor:
        """The book notebook's log-likelihood: :meth:`log_prob` + (D - 1) / 2 log(2 pi)."""
        return self.log_prob(x, c) + book_offset(self.features)

    def sample(
        self, n: int, generator: torch.Generator | None = None, c: Tensor | None = None
    ) -> Tensor:
        """n samples [n, D] of q(x | c): x = f^-1(z), z ~ N(0, I) drawn with ``generator``
        (on its device, then moved to the model's) in the model's dtype. c is [n, C], or
        [C] / [1, C] for one condition shared by all samples. Gradients are not switched
        off (wrap in ``torch.no_grad()`` when none are needed)."""
        weight = next(self.parameters())
        on = generator.device if generator is not None else weight.device
        z = torch.randn(n, self.features, generator=generator, device=on, dtype=weight.dtype)
        z = z.to(weight.device)
        if c is not None and (c.dim() == 1 or (c.dim() == 2 and c.shape[0] == 1 and n != 1)):
            c = c.reshape(1, -1).expand(n, -1)
        return self.inverse(z, c)
