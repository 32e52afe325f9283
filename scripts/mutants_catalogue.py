"""The mutants of scripts/mutants.py: single-line bugs of the kinds a change could bring
in, each with the tests that must notice it (see that script)."""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class Mutant:
    """Replace ``find`` (exactly one occurrence in ``path``) by ``replace``."""

    name: str
    path: str
    find: str
    replace: str
    tests: list[str]
    why: str = ""


def m(name: str, path: str, find: str, replace: str, tests: list[str], why: str) -> Mutant:
    return Mutant(name, f"pbdl_cli/{path}", find, replace, tests, why)


MUTANTS: list[Mutant] = [
    # -- training ------------------------------------------------------------------------
    m(
        "trainer-grad-clip-ignored",
        "training/trainer.py",
        "        if config.grad_clip is not None:",
        "        if False:",
        ["tests/training/test_trainer.py"],
        "trainer.grad_clip has no effect",
    ),
    m(
        "trainer-scheduler-not-restored",
        "training/trainer.py",
        '        if phase.scheduler is not None and state.get("scheduler") is not None:',
        "        if False:",
        ["tests/training/test_trainer.py"],
        "a resumed run restarts its learning-rate schedule",
    ),
    m(
        "trainer-best-on-any-value",
        "training/trainer.py",
        "                if value < best:",
        "                if value > best or best == math.inf:",
        ["tests/training/test_trainer.py"],
        "best.pt keeps the worst validation value, not the best",
    ),
    m(
        "checkpoint-numpy-rng-not-restored",
        "training/checkpoint.py",
        "    np.random.set_state(numpy)",
        "    pass",
        ["tests/training/test_trainer.py", "tests/methods/test_grid.py"],
        "resume does not restore numpy's random state",
    ),
    # -- data --------------------------------------------------------------------------------
    m(
        "checksum-ignores-coords",
        "data/checksum.py",
        "    for path, dtype, shape, digest in sorted(entries, key=lambda e: e[0]):",
        "    for path, dtype, shape, digest in sorted("
        '(e for e in entries if not e[0].startswith("coords/")), key=lambda e: e[0]):',
        ["tests/data/test_checksum.py"],
        "a changed coordinate (times, cell centres) passes verification",
    ),
    m(
        "checksum-ignores-dataset-header",
        "data/checksum.py",
        "        outer.update(dataset_header(path, dtype, shape))",
        "        pass",
        ["tests/data/test_checksum.py"],
        "a renamed, retyped or reshaped dataset with the same bytes passes verification",
    ),
    m(
        "checksum-first-field-only",
        "data/checksum.py",
        "    for path, dtype, shape, digest in sorted(entries, key=lambda e: e[0]):",
        "    for path, dtype, shape, digest in sorted((e for e in entries if not "
        'e[0].startswith("fields/") or e[0] == min(x[0] for x in entries '
        'if x[0].startswith("fields/"))), key=lambda e: e[0]):',
        ["tests/data/test_checksum.py"],
        "every field but the first can change unnoticed",
    ),
    # -- stages ----------------------------------------------------------------------------
    m(
        "generate-splits-share-a-seed",
        "stages/generate.py",
        "    split_seed = derive_seed(s.config.seed, split)",
        '    split_seed = derive_seed(s.config.seed, "train")',
        ["tests/stages/test_generate.py"],
        "every split drawn from the train split's seed (train = val = test)",
    ),
    # -- config ------------------------------------------------------------------------------
    m(
        "runner-builds-twice",
        "runner.py",
        "        if built is None or not built.key or built.key != config_key(cfg):",
        "        if True:",
        ["tests/test_runner.py"],
        "a single run composes and builds its config a second time",
    ),
    m(
        "runner-build-logs-dropped",
        "runner.py",
        "        for record in built.records:",
        "        for record in built.records[:0]:",
        ["tests/test_runner.py"],
        "warnings emitted while building never reach the run's log",
    ),
    m(
        "search-path-project-below-packaged",
        "search_path.py",
        'search_path.prepend(PROVIDER, f"file://{path}", anchor=SearchPathQuery("main"))',
        'search_path.append(PROVIDER, f"file://{path}")',
        ["tests/test_config_presets.py"],
        "a project's conf/ cannot replace a packaged preset",
    ),
    m(
        "trainer-config-strings-kept",
        "training/config.py",
        "                setattr(self, field, kind(value))",
        "                kind(value)",
        ["tests/training/test_trainer.py"],
        "TrainerConfig(scheduler='step') silently trains without a schedule",
    ),
    # -- grid methods ----------------------------------------------------------------------
    m(
        "rollout-history-reversed",
        "solvers/rollout.py",
        "        frames = torch.cat([frames[:, 1:], state[:, None]], dim=1)",
        "        frames = torch.cat([state[:, None], frames[:, :-1]], dim=1)",
        ["tests/methods/test_grid.py"],
        "a history > 1 rollout feeds its frames newest first",
    ),
    m(
        "grid-test-data-ignored",
        "methods/grid.py",
        "            test_data=config.test_data,",
        "            test_data=None,",
        ["tests/methods/test_grid.py"],
        "method.test_data is ignored: the run is scored on its own dataset's test split",
    ),
    m(
        "noise-not-scaled-by-std",
        "data/batches.py",
        "            history = history + self.noise * self.noise_scale * eps",
        "            history = history + self.noise * eps",
        ["tests/methods/test_grid.py", "tests/data/test_batches.py"],
        "input noise in normalized units, not scaled by each channel's std",
    ),
    m(
        "validation-by-prediction-norm",
        "methods/grid.py",
        '        return {"rel_l2": float((prediction - target).norm() / target.norm())}',
        '        return {"rel_l2": float((prediction - target).norm() / prediction.norm())}',
        ["tests/methods/test_grid.py"],
        "the validation error that picks best.pt divides by the prediction's norm",
    ),
    # -- reproduce and utils ---------------------------------------------------------------
    m(
        "within-one-sided",
        "reproduce/checks.py",
        "        return published / self.factor <= value <= published * self.factor",
        "        return value <= published * self.factor",
        ["tests/reproduce/test_reproduce.py::test_criteria_judge_each_kind"],
        "a Within(factor) check passes values far below the published one",
    ),
    m(
        "at-most-inclusive-wrong-way",
        "reproduce/checks.py",
        "        return value <= self.bound",
        "        return value >= self.bound",
        ["tests/reproduce/test_reproduce.py::test_criteria_judge_each_kind"],
        "an AtMost(x) check judges the wrong side",
    ),
    m(
        "derive-seed-ignores-labels",
        "utils/seeding.py",
        "    digest = hashlib.sha256(repr(keys).encode()).digest()",
        "    digest = hashlib.sha256(repr(keys[:1]).encode()).digest()",
        ["tests/stages/test_generate.py"],
        "sub-seeds ignore their labels: every split and trajectory draws the same numbers",
    ),
    # -- numerics and solvers ----------------------------------------------------------------
    m(
        "spectral-cache-ignores-nu",
        "solvers/burgers_spectral.py",
        "                and torch.equal(last_nu, nu.to(last_nu.dtype))",
        "                and True",
        ["tests/solvers/test_burgers_spectral.py"],
        "the ETDRK4 fast-path coefficients are reused for another viscosity",
    ),
    m(
        "cg-always-converged",
        "numerics/pressure.py",
        "    return x, SolveInfo(iterations, residual, residual <= threshold, threshold=threshold)",
        "    return x, SolveInfo(iterations, residual, residual >= 0, threshold=threshold)",
        ["tests/numerics/test_pressure.py"],
        "CG reports convergence whatever residual it reached",
    ),
    m(
        "cg-atol-ignored",
        "numerics/pressure.py",
        "    threshold = torch.clamp(tol * amax(b), min=atol)",
        "    threshold = tol * amax(b)",
        ["tests/numerics/test_pressure.py"],
        "the absolute CG tolerance has no effect",
    ),
    m(
        "cg-warm-start-ignored",
        "numerics/pressure.py",
        "            if self.warm_start and not backward and self._last is not None:",
        "            if False:",
        ["tests/numerics/test_pressure.py"],
        "pressure.warm_start never starts from the last solution",
    ),
    m(
        "ns-cfl-ignored",
        "solvers/ns_mac.py",
        "        if self.config.cfl is not None:",
        "        if False:",
        ["tests/solvers/test_ns_mac.py"],
        "solver.cfl does not substep fast flows",
    ),
    m(
        "ns-non-convergence-silent",
        "solvers/ns_mac.py",
        "        if not self._warned and not bool(info.converged.all()):",
        "        if False:",
        ["tests/solvers/test_ns_mac.py"],
        "a pressure solve that did not converge goes unreported",
    ),
    m(
        "pressure-one-null-space",
        "numerics/pressure.py",
        "if self.regions.count > 1 or (self.regions.num_singular > 0) != self.singular:",
        "if False:",
        ["tests/numerics/test_regions.py"],
        "a pocket of fluid shares the domain's pressure constant (hollow obstacles)",
    ),
    m(
        "moving-wall-ignored",
        "numerics/mac.py",
        "elif side.kind is Kind.no_slip and side.velocity[axis] and not homogeneous:",
        "elif False:",
        ["tests/solvers/test_ns_walls.py"],
        "a no_slip side's velocity is ignored (the lid-driven cavity stays at rest)",
    ),
    m(
        "parabolic-inflow-point-values",
        "numerics/mac.py",
        "                        shape = parabola_mean(lo, lo + h, length).to(self.dtype)",
        "                        shape = parabola(lo + h / 2, length).to(self.dtype)",
        ["tests/solvers/test_ns_walls.py"],
        "parabolic inflow faces hold point values: the flux is not 2/3 U H",
    ),
    # -- problems ------------------------------------------------------------------------------
    m(
        "burgers-residual-viscosity-sign",
        "problems/burgers.py",
        '        return u_t + u * u_x - params["nu"] * u_xx',
        '        return u_t + u * u_x + params["nu"] * u_xx',
        ["tests/methods/test_pinn.py", "tests/problems/test_burgers.py"],
        "the PINN's Burgers residual with anti-diffusion",
    ),
    # -- evaluation ------------------------------------------------------------------------------
    m(
        "nrmse-by-std",
        "evaluation/metrics.py",
        "    return rms / _flat(reference).square().mean(dim=1).sqrt().clamp_min(_EPS)",
        "    return rms / _flat(reference).std(dim=1).clamp_min(_EPS)",
        ["tests/evaluation/test_metrics.py"],
        "nrmse divided by the reference's standard deviation instead of its RMS",
    ),
    m(
        "rel-l2-by-prediction",
        "evaluation/metrics.py",
        "    return diff / _flat(reference).norm(dim=1).clamp_min(_EPS)",
        "    return diff / _flat(prediction).norm(dim=1).clamp_min(_EPS)",
        ["tests/evaluation/test_metrics.py"],
        "relative L2 divided by the prediction's norm",
    ),
    # -- models ----------------------------------------------------------------------------------
    m(
        "grid-model-params-dropped",
        "models/base.py",
        "        return append_params(x, params, self.num_params, model=self.name)",
        "        return append_params(x, params * 0 if params is not None else None, "
        "self.num_params, model=self.name)",
        ["tests/models/test_grid_models.py"],
        "grid models ignore the conditioning parameters",
    ),
    # -- datasets read by train and evaluate, resume and seeds ---------------------------------
    m(
        "directory-not-verified",
        "data/directory.py",
        "            verify_file(path)",
        "            pass",
        ["tests/methods/test_grid.py::test_a_changed_dataset_file_is_refused_before_training"],
        "a tampered train.h5 trains silently",
    ),
    m(
        "attributes-checksum-root-only",
        "data/checksum.py",
        "    for path in sorted(objects):",
        '    for path in ["/"]:',
        ["tests/data/test_checksum.py"],
        "the attribute checksum ignores the attributes of groups and datasets",
    ),
    m(
        "evaluate-normalization-unchecked",
        "stages/evaluate.py",
        '            check_trained_with(run / "normalization.json", normalization)',
        "            pass",
        ["tests/methods/test_grid.py::test_evaluate_refuses_a_dataset_regenerated_after_training"],
        "a dataset regenerated after training is evaluated with the wrong normalization",
    ),
    m(
        "resume-stored-overrides-dropped",
        "stages/resume.py",
        "    return [*kept, *new]",
        "    return [*new]",
        ["tests/stages/test_resume.py"],
        "a resume forgets the run's own overrides (model.width=16 becomes the default)",
    ),
    m(
        "resume-any-change-allowed",
        "stages/resume.py",
        "    refused = [k for k in changed if k not in EXTENDING]",
        "    refused: list[str] = []",
        ["tests/stages/test_resume.py"],
        "a resume may change the model, the learning rate, anything",
    ),
    m(
        "resume-history-overwritten",
        "runner.py",
        '    merged.append(f"hydra.output_subdir={record_subdir(run_dir)}")',
        "    pass",
        ["tests/stages/test_resume.py"],
        "a resume rewrites the run's original .hydra/ record",
    ),
    m(
        "method-seed-fixed",
        "conf/train.yaml",
        "  seed: ${seed}     # follows seed: the method derives its sub-seeds from it",
        "  seed: 0",
        ["tests/stages/test_resume.py::test_one_seed_seeds_the_whole_run"],
        "seed=N does not reach the method (a PINN's points stay those of seed 0)",
    ),
    # -- config, registry, command line -----------------------------------------------------
    m(
        "config-infinity-accepted",
        "config.py",
        "    elif isinstance(value, float) and not math.isfinite(value):",
        "    elif isinstance(value, float) and math.isnan(value):",
        [
            "tests/test_faults.py::test_non_finite_and_out_of_range_values_are_refused_before_anything_runs"
        ],
        "an infinite value passes validation (only NaN is refused)",
    ),
    m(
        "registry-no-suggestion",
        "registry.py",
        "                f\"unknown {self.kind} '{name}'{did_you_mean(name, self._entries)}; \"",
        "                f\"unknown {self.kind} '{name}'; \"",
        ["tests/test_registry.py::test_unknown_and_duplicate_names"],
        "an unknown plugin name gets no 'did you mean'",
    ),
    m(
        "info-mismatch-exit-zero",
        "cli.py",
        "    if verify and summary.checksum_ok is False:",
        "    if False:",
        ["tests/test_cli.py::test_info_rejects_truncated_and_foreign_files"],
        "pbdl info shows a checksum mismatch but exits 0",
    ),
    m(
        "sweep-value-skipped",
        "overrides.py",
        "        for value in values[1:]:",
        "        for value in values[2:]:",
        ["tests/test_registry.py::test_sweep_combinations_cover_every_value_once"],
        "the up-front check of a sweep skips its second value",
    ),
]
