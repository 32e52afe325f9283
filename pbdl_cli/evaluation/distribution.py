"""Distribution metrics: how close samples of a probabilistic model are to a reference.

Formulas and their use: ``docs/metrics-distribution.md``. Tensors only (no files, no
problems), so that ``pbdl sample`` and ``pbdl evaluate`` share them.

- Sample-based distances that need no density, between point sets x [N, D] and y [M, D]
  (grid fields [N, C, *spatial] are flattened to [N, C * prod(spatial)]):
  :func:`energy_distance` (Szekely & Rizzo 2013, V-statistic) and
  :func:`sliced_wasserstein2` (Rabin et al. 2011; Bonneel et al. 2015), registered in
  :data:`DISTANCES` under ``energy`` and ``sliced_w2``.
- Mixtures, given a component label per sample: :func:`mode_weights`,
  :func:`mode_weight_error` and :func:`mode_coverage`.
- Conditional grid ensembles [S, C, *spatial]: :func:`pixel_moment_errors`, the error of
  the per-pixel mean and standard deviation against a reference ensemble (PBDL book
  ch. 26, the airfoil flows' mean and std fields and their spatial average sigma_{y,a}).
- :func:`negative_log_likelihood` of samples under a model's log-density.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from pbdl_cli.registry import Registry

Distance = Callable[[Tensor, Tensor], Tensor]
#: sample-based distances d(x [N, ...], y [M, ...]) -> scalar, keyed by name
DISTANCES: Registry[Distance] = Registry("distance")

#: rows x columns of one block of pairwise distances (bounds the memory of cdist)
_BLOCK = 1 << 22
_EPS = 1e-30


def _points(x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    """x [N, ...] and y [M, ...] as point sets [N, D] and [M, D] with the same D, both in
    the wider of their dtypes (at least float32)."""
    if x.ndim < 1 or y.ndim < 1 or x.shape[0] < 1 or y.shape[0] < 1:
        raise ValueError(
            f"need non-empty sample sets [N, ...], got {list(x.shape)}, {list(y.shape)}"
        )
    x, y = x.reshape(x.shape[0], -1), y.reshape(y.shape[0], -1)
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"samples of different sizes: {x.shape[1]} and {y.shape[1]} values")
    dtype = torch.promote_types(torch.promote_types(x.dtype, y.dtype), torch.float32)
    return x.to(dtype), y.to(x.device, dtype)


def _mean_pairwise_distance(a: Tensor, b: Tensor) -> Tensor:
    """(1 / (N M)) sum_ij |a_i - b_j|_2 over a [N, D], b [M, D], in blocks of rows; the
    direct (not matrix-product) Euclidean distance, exact for coincident points."""
    rows = max(1, _BLOCK // b.shape[0])
    total = torch.zeros((), dtype=torch.float64, device=a.device)
    for start in range(0, a.shape[0], rows):
        block = torch.cdist(a[start : start + rows], b, compute_mode="donot_use_mm_for_euclid_dist")
        total = total + block.sum(dtype=torch.float64)
    return total / (a.shape[0] * b.shape[0])


@DISTANCES.register("energy")
def energy_distance(x: Tensor, y: Tensor) -> Tensor:
    """The squared energy distance of two sample sets (Szekely & Rizzo 2013), V-statistic:

        D^2 = 2/(N M) sum_ij |x_i - y_j| - 1/N^2 sum_ij |x_i - x_j| - 1/M^2 sum_ij |y_i - y_j|

    with Euclidean norms. x [N, ...], y [M, ...] (flattened per sample) -> float64 scalar.
    D^2 >= 0, exactly 0 for identical sets, and D^2 = 0 in the limit only for equal
    distributions. The V-statistic keeps the i = j zeros in the within-set sums, which biases
    it upwards by O(1/N + 1/M) but keeps it non-negative (the unbiased U-statistic is not).
    Units: those of x (not squared). Cost O(N M D) time, O(block) memory.
    """
    x, y = _points(x, y)
    xy = _mean_pairwise_distance(x, y)
    return 2 * xy - _mean_pairwise_distance(x, x) - _mean_pairwise_distance(y, y)


def _wasserstein2_1d(a: Tensor, b: Tensor) -> Tensor:
    """Exact squared W2 between the empirical measures of the rows of a [P, N] and b [P, M]
    (uniform weights): int_0^1 (F_a^-1(u) - F_b^-1(u))^2 du with the step quantile
    functions; -> [P] float64."""
    a, b = a.sort(dim=1).values.double(), b.sort(dim=1).values.double()
    n, m = a.shape[1], b.shape[1]
    if n == m:
        return (a - b).square().mean(dim=1)
    # both quantile functions are constant between consecutive breakpoints {i/n} u {j/m}
    cuts = (
        torch.cat(
            [
                torch.arange(1, n + 1, dtype=torch.float64) / n,
                torch.arange(1, m + 1, dtype=torch.float64) / m,
            ]
        )
        .sort()
        .values.to(a.device)
    )
    width = torch.diff(cuts, prepend=cuts.new_zeros(1))
    mid = cuts - width / 2
    ia = (mid * n).long().clamp_(max=n - 1)
    ib = (mid * m).long().clamp_(max=m - 1)
    return ((a[:, ia] - b[:, ib]).square() * width).sum(dim=1)


@DISTANCES.register("sliced_w2")
def sliced_wasserstein2(x: Tensor, y: Tensor, projections: int = 256, seed: int = 0) -> Tensor:
    """The squared sliced Wasserstein-2 distance (Rabin et al. 2011; Bonneel et al. 2015):

        SW_2^2 = (1/P) sum_p W_2^2(theta_p . x, theta_p . y)

    over ``projections`` P directions theta_p drawn uniformly on the unit sphere S^{D-1}
    from a generator seeded with ``seed`` (the same directions for every call with the
    same D, P and seed). Each 1D W_2^2 is exact: sorted projections for N = M, else the
    integral of the squared difference of the two step quantile functions.
    x [N, ...], y [M, ...] (flattened per sample) -> float64 scalar. In 1D, SW_2 = W_2;
    in D dimensions a shift by a vector v gives |v|^2 / D in expectation over theta.
    Units: those of x, squared.
    """
    if projections < 1:
        raise ValueError(f"projections must be >= 1, got {projections}")
    x, y = _points(x, y)
    generator = torch.Generator().manual_seed(seed)
    theta = torch.randn(x.shape[1], projections, generator=generator, dtype=torch.float64)
    theta = (theta / theta.norm(dim=0, keepdim=True)).T.to(x)  # [P, D]
    # projections in chunks of rows, contiguous [p, N] for a fast sort along the samples
    rows = max(1, _BLOCK // (x.shape[0] + y.shape[0]))
    values = [_wasserstein2_1d(t @ x.T, t @ y.T) for t in theta.split(rows)]
    return torch.cat(values).mean()


# -- mixtures ---------------------------------------------------------------------------------
def mode_weights(labels: Tensor, num_modes: int) -> Tensor:
    """The share of samples in each mode: labels [N] int in [-1, K) -> [K] float64, where
    -1 marks a sample assigned to no mode (counted in N, so the shares may sum to < 1)."""
    labels = labels.reshape(-1)
    if labels.numel() == 0:
        raise ValueError("need at least one label")
    if labels.dtype.is_floating_point or labels.min() < -1 or labels.max() >= num_modes:
        raise ValueError(f"labels must be integers in [-1, {num_modes})")
    counts = torch.bincount(labels[labels >= 0], minlength=num_modes)
    return counts.double() / labels.numel()


def mode_weight_error(labels: Tensor, weights: Tensor) -> Tensor:
    """The total-variation distance of the samples' mode shares w^_k from the mixture
    weights w_k: 1/2 sum_k |w^_k - w_k| (plus 1/2 the share of unassigned samples), in
    [0, 1]; labels [N], weights [K] -> float64 scalar."""
    weights = weights.double().cpu()
    shares = mode_weights(labels, weights.numel()).cpu()
    unassigned = 1 - shares.sum()
    return 0.5 * ((shares - weights).abs().sum() + unassigned)


def mode_coverage(labels: Tensor, weights: Tensor, min_fraction: float = 0.5) -> Tensor:
    """The share of modes that the samples cover: (1/K) #{k : w^_k >= min_fraction w_k}, a
    mode counting as covered when it holds at least ``min_fraction`` of its weight's worth
    of samples; labels [N], weights [K] -> float64 scalar in [0, 1]."""
    weights = weights.double().cpu()
    shares = mode_weights(labels, weights.numel()).cpu()
    return (shares >= min_fraction * weights).double().mean()


# -- conditional grid ensembles -------------------------------------------------------------
def pixel_moments(samples: Tensor) -> tuple[Tensor, Tensor]:
    """Per-pixel mean and standard deviation of an ensemble [S, C, *spatial] over its S
    samples (the std with Bessel's correction, 1/(S-1)): two [C, *spatial] float64."""
    if samples.ndim < 2 or samples.shape[0] < 2:
        raise ValueError(f"an ensemble needs [S >= 2, C, ...], got {list(samples.shape)}")
    s = samples.double()
    return s.mean(dim=0), s.std(dim=0, correction=1)


def pixel_moment_errors(samples: Tensor, reference: Tensor) -> dict[str, Tensor]:
    """Errors of the per-pixel mean mu and std sigma of ``samples`` [S, C, *spatial]
    against those of ``reference`` [R, C, *spatial] (S, R >= 2; same C, *spatial), each
    per channel, [C] float64:

    - ``mean_mae``, ``std_mae``: mean over pixels of |mu - mu_ref|, |sigma - sigma_ref|;
    - ``mean_rel_l2``, ``std_rel_l2``: ||mu - mu_ref|| / ||mu_ref||, the same for sigma;
    - ``std_avg``, ``ref_std_avg``: spatial mean of sigma and of sigma_ref (the book's
      sigma_{y,a}, ch. 26).
    """
    if samples.shape[1:] != reference.shape[1:]:
        raise ValueError(
            f"ensembles of different fields: {list(samples.shape[1:])} and "
            f"{list(reference.shape[1:])}"
        )
    mean, std = pixel_moments(samples)
    ref_mean, ref_std = pixel_moments(reference.to(samples.device))
    channels = mean.shape[0]

    def flat(t: Tensor) -> Tensor:
        return t.reshape(channels, -1)

    def rel(a: Tensor, b: Tensor) -> Tensor:
        return flat(a - b).norm(dim=1) / flat(b).norm(dim=1).clamp_min(_EPS)

    return {
        "mean_mae": flat(mean - ref_mean).abs().mean(dim=1),
        "std_mae": flat(std - ref_std).abs().mean(dim=1),
        "mean_rel_l2": rel(mean, ref_mean),
        "std_rel_l2": rel(std, ref_std),
        "std_avg": flat(std).mean(dim=1),
        "ref_std_avg": flat(ref_std).mean(dim=1),
    }


# -- likelihood -------------------------------------------------------------------------------
def negative_log_likelihood(
    log_density: Callable[[Tensor], Tensor], x: Tensor, batch_size: int = 4096
) -> Tensor:
    """The mean negative log-likelihood -(1/N) sum_i log q(x_i) of samples x [N, ...] under
    a model's ``log_density`` ([B, ...] -> [B], in nats), in batches without gradients;
    -> float64 scalar. On samples of p it estimates the cross-entropy H(p, q) = H(p) +
    KL(p || q), so its excess over the NLL of p's own log-density is the KL divergence."""
    if x.shape[0] < 1 or batch_size < 1:
        raise ValueError("need at least one sample and batch_size >= 1")
    total = torch.zeros((), dtype=torch.float64)
    with torch.no_grad():
        for start in range(0, x.shape[0], batch_size):
            batch = x[start : start + batch_size]
            values = log_density(batch)
            if values.shape != (batch.shape[0],):
                raise ValueError(f"log_density must map [B, ...] to [B], got {list(values.shape)}")
            total = total - values.double().sum().cpu()
    return total / x.shape[0]
