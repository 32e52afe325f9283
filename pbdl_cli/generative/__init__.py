"""Generative: the tensor-level algorithms of probabilistic models (book Part V, ch. 22-26).

Pure functions on tensors and callables, no plugins and no registries; nothing here
imports problems, models, training or methods (the methods of issue 13 build on it).
Everything works on point data ``[B, D]`` and on fields ``[B, C, *spatial]`` alike, every
sampler takes a ``torch.Generator`` and returns :class:`.common.Sampled` (the samples and
the number of network evaluations), and an optional per-step callback sees the state:

* :mod:`.common`: the result type, the callback protocol, per-sample broadcasting, noise;
* :mod:`.schedules`: DDPM noise schedules (linear, cosine, constant), the forward process
  q(x_t | x_0) and its posterior (ch. 24);
* :mod:`.ddpm`: ancestral (DDPM) and DDIM sampling with an epsilon-prediction callable;
* :mod:`.flow_matching`: the conditional flow-matching interpolant and target (ch. 25,
  26), and ODE integration of a velocity (Euler, midpoint, RK4; adaptive via torchdiffeq);
* :mod:`.langevin`: Langevin and annealed Langevin dynamics with a score (ch. 23);
* :mod:`.cnf`: continuous normalizing flows (ch. 22.6): exact and Hutchinson divergence,
  the augmented ODE of state and log-density, log-likelihood and sampling.
"""
