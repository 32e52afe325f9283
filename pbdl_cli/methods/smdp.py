"""SMDP: score matching via differentiable physics on SDE trajectories (PBDL book ch. 27.3, 28).

Holzschuh, Vegetti & Thuerey, "Solving inverse physics problems with score matching",
ICML 2023. Physics time is diffusion time: the trajectories of a ``pbdl generate`` dataset
of an SDE dx = f(x) dt + g dW (e.g. ``problem=sde_toy``) are the forward process, and a
network s_theta(x, t) ~ g^2 grad_x log p_t(x) (g^2 absorbed, as in the book) is trained so
that the probability-flow step x <- x - dt [f(x) - s_theta(x, t) / 2] reproduces them
backwards in time (:func:`~pbdl_cli.generative.sde.probability_flow_rollout_loss`).

Training (the book's ``update_network``): the train split, reversed in time and
subsampled (every ``subsample``-th frame), is one batch. An epoch slides a window of
``window`` frames along it, one position per training step (the windows' positions
p = 0 .. P - 1, the last ones cut at the trajectory's end); with ``bidirectional`` every
position takes a second step on the window in forward time order. The window grows by
``window_add`` frames every ``epochs_per_window`` epochs, ``window_increases`` times.
Step s therefore trains epoch s // E, position (s mod E) // 2 (E = P or 2 P steps per
epoch, :attr:`Smdp.steps_per_epoch`): the data of a step depend on s only, so a resumed
run continues exactly. ``trainer.max_steps`` = epochs x ``steps_per_epoch``. With
``windows_per_step`` = k a step takes k consecutive windows of that order at once (the
mean of their losses; 0: all of an epoch, one full-batch step per epoch), which trains
faster per second on a CPU than the book's single windows (the ``--quick`` reproduction
uses it) and, with both directions in one step, does not alternate between the two
directions' optima where they disagree (the stiff start, t < 0.3).

Network: s_theta(x, t) = net([x, log(t + time_epsilon)]) with ``model=mlp`` (in 2, out 1);
the book's haiku MLP is ``model.widths=[30,30,25,20,10] model.activation=elu``.

Samplers (:meth:`Smdp.sample`, from t_end back to 0 in ``steps`` steps, default
t_end / 0.01 = 1000): ``reverse_sde`` (Euler-Maruyama, drift f - s_theta, noise g) and
``probability_flow`` (drift f - s_theta / 2, no noise), started from ``start``:
linspace(-start_spread, start_spread, n) (the book's start values) or ``data`` (end
states of the train split drawn with replacement).

Shapes: trajectories [N, T, 1] (states [B, 1]); samples [n, 1]; ``predict`` returns the
reverse-SDE paths of ``samples`` samples on the problem's output grid in forward time
order, [n, T, 1] (frame 0: the samples of p_0).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from pbdl_cli.data.directory import DatasetDirectory
from pbdl_cli.data.reader import read_trajectories
from pbdl_cli.errors import PbdlError
from pbdl_cli.generative.common import Sampled, StepCallback
from pbdl_cli.generative.sde import (
    probability_flow,
    probability_flow_rollout_loss,
    reverse_sde,
)
from pbdl_cli.methods.base import METHODS
from pbdl_cli.methods.generative import GenerativeConfig, GenerativeMethod
from pbdl_cli.models.base import MODELS
from pbdl_cli.problems.base import Problem
from pbdl_cli.training.checkpoint import load_checkpoint
from pbdl_cli.utils.seeding import generator

SAMPLERS = ("reverse_sde", "probability_flow")
#: the samplers' default step (the book's dt0)
SAMPLER_DT = 0.01
STARTS = ("linspace", "data")


@dataclasses.dataclass
class SmdpConfig(GenerativeConfig):
    """Options of ``smdp`` (``method.<key>``; ``samples``, ``sampler``, ``steps`` and
    ``chunk`` as every probabilistic method; ``n_train``, ``batch_size`` and ``n_val`` are
    unused: smdp trains on all trajectories of ``data`` at once).

    Attributes:
        data: dataset directory of ``pbdl generate`` (``datasets/<problem>/<name>``).
        window: frames per training window at the start (2: the single-step loss).
        window_add: frames added to the window at every increase.
        window_increases: how often the window grows (0: never).
        epochs_per_window: epochs between two increases (the book's ``steps``).
        bidirectional: also train on every window in forward time order.
        subsample: use every ``subsample``-th frame of the trajectories.
        trajectories: train on the first this many train trajectories (0: all).
        windows_per_step: windows a training step takes together, consecutive in the
            epoch's order (their mean loss; the book: 1; 0: all windows of an epoch).
        time_epsilon: the network's time input is log(t + time_epsilon).
        init: checkpoint whose model weights the network starts from (e.g. the run this
            one continues, as the book's second training run); null: fresh weights.
        start: the samplers' start values at t_end: linspace (over +-start_spread) or
            data (end states of the train split, drawn with replacement).
        start_spread: half width of the linspace start values (book: 0.065).
        val_samples: samples of each sampler that ``validate`` draws and scores
            (``sde_*``, ``ode_*`` metrics; 0: none).
    """

    n_train: int = 1
    batch_size: int = 1
    n_val: int = 1

    data: str | None = None
    window: int = 2
    window_add: int = 2
    window_increases: int = 0
    epochs_per_window: int = 20
    bidirectional: bool = True
    subsample: int = 5
    trajectories: int = 0
    windows_per_step: int = 1
    time_epsilon: float = 1e-5
    init: str | None = None
    start: str = "linspace"
    start_spread: float = 0.065
    val_samples: int = 200

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.window < 2:
            raise ValueError("window must be >= 2 frames (one step)")
        if self.window_add < 0 or self.window_increases < 0:
            raise ValueError("window_add and window_increases must be >= 0")
        if self.epochs_per_window < 1 or self.subsample < 1:
            raise ValueError("epochs_per_window and subsample must be >= 1")
        if min(self.trajectories, self.val_samples, self.windows_per_step) < 0:
            raise ValueError("trajectories, val_samples and windows_per_step must be >= 0")
        if self.time_epsilon <= 0 or self.start_spread < 0:
            raise ValueError("time_epsilon must be > 0 and start_spread >= 0")
        if self.sampler not in ("", *SAMPLERS):
            raise ValueError(f"sampler must be one of {', '.join(SAMPLERS)} (got {self.sampler!r})")
        if self.start not in STARTS:
            raise ValueError(f"start must be one of {', '.join(STARTS)} (got {self.start!r})")
        if self.init:  # absolute, so that a stored run config works from anywhere
            self.init = str(Path(self.init).expanduser().resolve())


def window_size(config: SmdpConfig, epoch: int) -> int:
    """Frames per window in ``epoch`` (0-based): window + window_add * increases so far."""
    grown = min(epoch // config.epochs_per_window, config.window_increases)
    return config.window + config.window_add * grown


@METHODS.register("smdp")
class Smdp(GenerativeMethod):
    """Score matching via differentiable physics on SDE trajectories (module docstring)."""

    Config = SmdpConfig
    config: SmdpConfig
    samplers: ClassVar[tuple[str, ...]] = SAMPLERS
    noisy_loss: ClassVar[bool] = False  # the windows' loss draws no noise

    def __init__(
        self, config: SmdpConfig, *, problem: Problem, device: torch.device, dtype: torch.dtype
    ) -> None:
        super().__init__(config, problem=problem, device=device, dtype=dtype)
        if not callable(getattr(problem, "drift", None)) or problem.grid.shape != ():
            raise PbdlError(
                f"method 'smdp' needs an SDE problem of one state variable with a drift "
                f"(e.g. problem=sde_toy), not problem '{problem.name}'"
            )
        self.directory = DatasetDirectory(
            config.data,
            method="smdp",
            problem=problem.name,
            problem_config=problem.config,
            fields=problem.fields,
            frame_shape=(problem.num_steps + 1, 1, *problem.grid.shape),
        )
        g = problem.diffusion(torch.zeros(1, 1))  # type: ignore[attr-defined]
        self.diffusion = float(g.reshape(-1)[0])
        times = problem.times()
        train = self._read("train", config.trajectories)
        self.train_x = self._reversed(train)
        if len(self.train_x) == 0:
            raise PbdlError(f"method 'smdp': the train split of {config.data} is empty")
        self.val_x = self._reversed(self._read("val", 0)) if "val" in self.directory.files else None
        self.times = times.flip(0)[:: config.subsample].to(device, dtype)  # descending
        positions = len(self.times) - 1
        if positions < 1:
            raise PbdlError(
                f"method.subsample={config.subsample} leaves fewer than 2 frames of "
                f"{len(times)}; lower it"
            )
        self.positions = positions
        self.end_states = train[:, -1].to(device, dtype)  # [N, 1] at t_end

    @property
    def windows(self) -> int:
        """Windows per epoch: the positions, twice where bidirectional."""
        return self.positions * (2 if self.config.bidirectional else 1)

    @property
    def per_step(self) -> int:
        """Windows per training step (``windows_per_step``; 0: all of an epoch)."""
        return min(self.config.windows_per_step or self.windows, self.windows)

    @property
    def steps_per_epoch(self) -> int:
        return math.ceil(self.windows / self.per_step)

    # -- data ------------------------------------------------------------------------------
    def _read(self, split: str, limit: int) -> Tensor:
        """The trajectories [N, T, 1] of ``split`` (the first ``limit``; 0: all), float64."""
        data = read_trajectories(self.directory.files[split])
        x = torch.from_numpy(data["fields"][self.problem.fields[0]]).double()
        x = x.reshape(x.shape[0], x.shape[1], 1)
        return x[:limit] if limit else x

    def _reversed(self, x: Tensor) -> Tensor:
        """Trajectories reversed in time and subsampled, [N, T', 1] in the run's dtype."""
        return x.flip(1)[:, :: self.config.subsample].to(self.device, self.dtype)

    def chunk(self, step: int) -> tuple[list[tuple[int, bool]], int]:
        """What training step ``step`` trains: its windows as (position, forward) pairs,
        in the book's order (each position backwards, then forwards where
        bidirectional), and the window size (module docstring)."""
        epoch, index = divmod(step, self.steps_per_epoch)
        directions = 2 if self.config.bidirectional else 1
        first = index * self.per_step
        last = min(first + self.per_step, self.positions * directions)
        pairs = [(j // directions, bool(j % directions)) for j in range(first, last)]
        return pairs, window_size(self.config, epoch)

    def window(self, step: int) -> tuple[Tensor, Tensor]:
        """The (first) window of training step ``step``: states [N, S, 1] and times [S], in
        the order they are predicted (descending times; ascending for the forward pass)."""
        pairs, size = self.chunk(step)
        p, forward = pairs[0]
        x, t = self.train_x[:, p : p + size], self.times[p : p + size]
        return (x.flip(1), t.flip(0)) if forward else (x, t)

    def positions_loss(
        self, model: nn.Module, x: Tensor, positions: Sequence[int], size: int, forward: bool
    ) -> Tensor:
        """The mean over ``positions`` of the window losses (windows of ``size`` frames of
        trajectories x [N, T', 1], cut at the end): full windows in one batch."""
        score, drift = self.score_fn(model), self.drift_fn()
        end = len(self.times)
        full = [p for p in positions if p + size <= end]
        total = x.new_zeros(())
        if full:  # the full windows as one batch [P N, S, 1]
            xs = x.unfold(1, size, 1)[:, full].permute(1, 0, 3, 2).reshape(-1, size, 1)
            ts = self.times.unfold(0, size, 1)[full].repeat_interleave(x.shape[0], dim=0)
            if forward:
                xs, ts = xs.flip(1), ts.flip(1)
            # the batch mean over P N samples is the mean over the positions
            loss, _ = probability_flow_rollout_loss(score, drift, xs, ts)
            total = total + loss * len(full)
        for p in positions:
            if p + size > end:
                xs, ts = x[:, p : p + size], self.times[p : p + size]
                if forward:
                    xs, ts = xs.flip(1), ts.flip(0)
                total = total + probability_flow_rollout_loss(score, drift, xs, ts)[0]
        return total / len(positions)

    # -- the network ------------------------------------------------------------------------
    def build_model(self, model_config: Any) -> nn.Module:
        """The network (seeded by the base), then the weights of ``method.init`` where set."""
        model = super().build_model(model_config)
        if not self.config.init:
            return model
        path = Path(self.config.init)
        if not path.is_file():
            raise PbdlError(f"method.init={path}: no such checkpoint")
        state = load_checkpoint(path)
        try:
            model.load_state_dict(state["model"])
        except (KeyError, RuntimeError) as error:
            first = str(error).strip().splitlines()[0] if str(error).strip() else repr(error)
            raise PbdlError(
                f"method.init={path} holds no weights of this model ({first})"
            ) from None
        return model

    def network(self, model_config: Any) -> nn.Module:
        """An MLP [x, log(t + eps)] -> s (2 inputs, 1 output)."""
        return MODELS.build(model_config, in_features=2, out_features=1)

    def score_fn(self, model: nn.Module) -> Any:
        """s_theta(x [B, 1], t [B]) -> [B, 1] with g^2 absorbed."""
        eps = self.config.time_epsilon

        def score(x: Tensor, t: Tensor) -> Tensor:
            features = torch.cat([x, torch.log(t.to(x) + eps)[:, None]], dim=1)
            return model(features)

        return score

    def drift_fn(self) -> Any:
        return lambda x: self.problem.drift(x)  # type: ignore[attr-defined]

    # -- training -------------------------------------------------------------------------
    def sample_loss(
        self, model: nn.Module, y: Tensor, condition: Tensor | None, noise: torch.Generator
    ) -> dict[str, Tensor]:
        """Not a loss of samples of p_0: smdp learns from trajectory windows (:meth:`loss`)."""
        raise PbdlError("method 'smdp' trains on trajectory windows, not on samples of p_0")

    def loss(self, model: nn.Module, step: int) -> dict[str, Tensor]:
        pairs, size = self.chunk(step)
        loss = self.train_x.new_zeros(())
        for forward in (False, True):  # the mean over the step's windows
            positions = [p for p, f in pairs if f == forward]
            if positions:
                part = self.positions_loss(model, self.train_x, positions, size, forward)
                loss = loss + part * (len(positions) / len(pairs))
        return {"loss": loss, "window": loss.new_tensor(float(size))}

    def epoch_loss(self, model: nn.Module, x: Tensor, size: int) -> float:
        """The book's epoch loss with the current weights: the sum of the window losses over
        all positions (and both directions where bidirectional) on trajectories x [N, T', 1]."""
        every = range(self.positions)
        directions = (False, True) if self.config.bidirectional else (False,)
        with torch.no_grad():
            return sum(
                float(self.positions_loss(model, x, every, size, forward)) * len(every)
                for forward in directions
            )

    def validate(self, model: nn.Module) -> dict[str, float]:
        """``train_epoch_loss`` (the book's printed loss, here with fixed weights) and
        ``epoch_loss`` on the val split (where the dataset has one), at the first
        window size; with ``val_samples``, the scores of both samplers' samples
        (``sde_*``, ``ode_*``: the problem's sample metrics, e.g. the share above 0)."""
        size = self.config.window
        values = {"train_epoch_loss": self.epoch_loss(model, self.train_x, size)}
        if self.val_x is not None and len(self.val_x):
            values["epoch_loss"] = self.epoch_loss(model, self.val_x, size)
        if self.config.val_samples:
            for prefix, sampler in (("sde", "reverse_sde"), ("ode", "probability_flow")):
                drawn = self.sample(
                    model,
                    self.config.val_samples,
                    sampler=sampler,
                    steps=0,
                    generator=generator(self.config.seed, "val_samples"),
                ).x
                scores = self.distribution.sample_metrics(drawn.double().cpu())
                values |= {f"{prefix}_{k}": v for k, v in scores.items()}
        return values

    # -- sampling ---------------------------------------------------------------------------
    def expected_steps(self, sampler: str, steps: int) -> int:
        return steps or self.config.steps or self.default_steps()

    def default_steps(self) -> int:
        return max(1, round(self.problem.t_end / SAMPLER_DT))

    def start_values(self, n: int, gen: torch.Generator) -> Tensor:
        """The samplers' start values [n, 1] at t_end (``method.start``)."""
        if self.config.start == "data":
            index = torch.randint(0, len(self.end_states), (n,), generator=gen, device=gen.device)
            return self.end_states[index.to(self.end_states.device)].clone()
        spread = self.config.start_spread
        values = torch.linspace(-spread, spread, n, dtype=torch.float64)
        return values[:, None].to(self.device, self.dtype)

    def sample(
        self,
        model: nn.Module,
        n: int,
        *,
        condition: Tensor | None = None,
        sampler: str = "",
        steps: int = 0,
        generator: torch.Generator,
        callback: StepCallback | None = None,
        start: Tensor | None = None,
    ) -> Sampled:
        """``n`` samples x [n, 1] of p_0: ``sampler`` (reverse_sde, probability_flow; "":
        the config's) from the start values at t_end (``start`` [n, 1], else
        :meth:`start_values`) back to 0 in ``steps`` steps (0: the config's, else
        t_end / 0.01)."""
        if condition is not None:
            raise PbdlError("method 'smdp' samples the unconditional p_0: drop condition=")
        sampler = self.check_sampler(sampler)
        steps = steps or self.config.steps or self.default_steps()
        x = self.start_values(n, generator) if start is None else start
        score, drift, t_end = self.score_fn(model), self.drift_fn(), self.problem.t_end
        with torch.no_grad():
            if sampler == "probability_flow":
                return probability_flow(
                    score, drift, x, t_start=t_end, t_end=0.0, steps=steps, callback=callback
                )
            return reverse_sde(
                score,
                drift,
                self.diffusion,
                x,
                t_start=t_end,
                t_end=0.0,
                steps=steps,
                generator=generator,
                callback=callback,
            )

    def paths(
        self, model: nn.Module, n: int, *, sampler: str = "", seed_key: str = "predict"
    ) -> tuple[Tensor, Tensor]:
        """Sampler paths of ``n`` samples: times [K + 1] (descending, t_end first) and
        states [n, K + 1, 1] (float64, CPU) for the K sampler steps."""
        states: list[Tensor] = []
        times: list[float] = []

        def keep(step: int, t: float, x: Tensor) -> None:
            states.append(x.detach().double().cpu())
            times.append(t)

        gen = generator(self.config.seed, seed_key)
        first = self.start_values(n, generator(self.config.seed, seed_key, "start"))
        steps = self.config.steps or self.default_steps()
        states.append(first.double().cpu())
        times.append(self.problem.t_end)
        self.sample(
            model, n, sampler=sampler, steps=steps, generator=gen, callback=keep, start=first
        )
        return torch.tensor(times, dtype=torch.float64), torch.stack(states, 1)

    def predict(self, model: nn.Module) -> Tensor:
        """Reverse-SDE paths of ``samples`` samples on the problem's output grid, forward
        in time: [n, T, 1] float64 (frame 0: the samples at t = 0)."""
        times, paths = self.paths(model, self.config.samples)
        grid = self.problem.times()
        # nearest sampler time of every output time (the sampler's step divides dt or not)
        index = torch.searchsorted(-times, -grid).clamp(max=len(times) - 1)
        nearest = torch.where(
            (index > 0) & ((times[index - 1] - grid).abs() < (times[index] - grid).abs()),
            index - 1,
            index,
        )
        return paths[:, nearest]
