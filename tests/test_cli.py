"""The real command line, run in subprocesses as a user would run it."""

from __future__ import annotations

import json
import signal
import subprocess
import textwrap
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from pbdl_cli.data.reader import read_trajectories
from pbdl_cli.data.summary import read_info
from tests.conftest import cli_command, cli_env, run_cli

#: varied trajectories, debug=smoke's counts (2 / 1 / 1), 32 cells, 3 frames
TINY = [
    "experiment=burgers_sines",
    "debug=smoke",
    "problem.nx=32",
    "problem.t_end=0.1",
    "problem.dt=0.05",
]


def datasets(root: Path) -> list[Path]:
    return sorted(p for p in (root / "datasets" / "burgers").iterdir() if p.is_dir())


def assert_clean_error(result: subprocess.CompletedProcess, code: int, *needles: str) -> None:
    output = result.stdout + result.stderr
    assert result.returncode == code, output
    assert "Traceback" not in output, output
    assert "error:" in result.stderr, output
    for needle in needles:
        assert needle in output, output


# -- help, list, show --------------------------------------------------------------------------
def test_help_lists_commands_and_examples(tmp_path):
    result = run_cli("--help", cwd=tmp_path)
    assert result.returncode == 0
    for command in ("generate", "train", "evaluate", "report", "reproduce", "list", "show", "info"):
        assert command in result.stdout
    result = run_cli("generate", "--help", cwd=tmp_path)
    assert result.returncode == 0 and "pbdl generate -m problem.nu=0.01,0.001" in result.stdout


def test_list_and_show(tmp_path):
    result = run_cli("list", cwd=tmp_path)
    assert result.returncode == 0
    for name in ("burgers", "burgers_sl", "burgers_spectral", "rel_l2", "burgers_book"):
        assert name in result.stdout
    result = run_cli("list", "problems", cwd=tmp_path)
    assert "burgers" in result.stdout and "burgers_sl" not in result.stdout
    assert_clean_error(run_cli("list", "probelms", cwd=tmp_path), 2, "did you mean 'problems'")

    result = run_cli("show", "generate", "solver=burgers_sl", "problem.nx=256", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "solver=burgers_sl" in result.stdout.splitlines()[0]
    assert "nx: 256" in result.stdout and "diffusion_number: 0.45" in result.stdout
    result = run_cli("show", "generate", "experiment=burgers_book", cwd=tmp_path)
    assert "substeps: 1" in result.stdout and "nu: 2.48679598581086" in result.stdout
    assert not (tmp_path / "outputs").exists()  # show never creates a run


# -- config validation through the CLI (exit 2, one message, no traceback) ---------------------
@pytest.mark.parametrize(
    ("override", "needles"),
    [
        ("problem.nuu=1", ["problem.nuu", "unknown key", "did you mean 'nu'", "nx, nu"]),
        ("problem.nu=abc", ["problem.nu", "'abc'", "a number"]),
        ("problem=nope", ["unknown problem 'nope'", "available: burgers"]),
        ("problem.nx=???", ["problem.nx", "missing required value", "an integer"]),
        ("problem.bc=wall", ["problem.bc", "one of periodic, dirichlet"]),
        ("solver=burgers_sll", ["unknown solver 'burgers_sll'", "did you mean 'burgers_sl'"]),
        ("problem.nu=-1", ["nu must be > 0"]),
    ],
)
def test_config_errors_exit_2_without_traceback(workdir, override, needles):
    result = run_cli("generate", override, cwd=workdir)
    assert_clean_error(result, 2, *needles)
    assert not (workdir / "outputs").exists() and not (workdir / "datasets").exists()


def test_missing_required_value_and_sweep_values_are_checked(workdir):
    assert_clean_error(run_cli("evaluate", cwd=workdir), 2, "run: missing required value")
    # every value of a sweep is validated before the first job starts
    result = run_cli("generate", "-m", "problem.nu=0.01,abc", *TINY, cwd=workdir)
    assert_clean_error(result, 2, "problem.nu", "'abc'")
    assert not (workdir / "datasets").exists()
    assert_clean_error(run_cli("report", cwd=workdir), 2, "one or more run")


# -- generate + info ----------------------------------------------------------------------------
def test_generate_info_and_no_overwrite(workdir):
    result = run_cli("generate", *TINY, cwd=workdir)
    assert result.returncode == 0, result.stderr
    (target,) = datasets(workdir)
    assert sorted(p.name for p in target.iterdir()) == [
        "config.yaml",
        "test.h5",
        "train.h5",
        "val.h5",
    ]
    info = read_info(target / "train.h5")
    assert info.checksum_ok is True
    assert info.fields == {"u": (2, 3, 1, 32)}
    assert info.params == {"nu": (2,)}
    assert info.attrs["problem"] == "burgers" and info.attrs["solver"] == "burgers_spectral"
    assert "nx: 32" in info.attrs["config"]
    assert list(workdir.glob("outputs/generate/*/*/.hydra/config.yaml"))  # Hydra run dir

    shown = run_cli("info", str(target / "train.h5"), cwd=workdir)
    assert shown.returncode == 0, shown.stderr
    assert "verified" in shown.stdout and "[2, 3, 1, 32]" in shown.stdout.replace("×", ",")

    checksum = info.checksum
    again = run_cli("generate", *TINY, cwd=workdir)
    assert_clean_error(again, 2, "already exists", "overwrite=true")
    assert read_info(target / "train.h5").checksum == checksum  # untouched
    replaced = run_cli("generate", *TINY, "overwrite=true", cwd=workdir)
    assert replaced.returncode == 0, replaced.stderr
    assert read_info(target / "train.h5").checksum == checksum  # deterministic
    assert datasets(workdir) == [target]


def test_data_do_not_depend_on_batch_size(workdir):
    for batch in (1, 3):
        result = run_cli(
            "generate", *TINY, f"data.batch_size={batch}", f"data.name=b{batch}", cwd=workdir
        )
        assert result.returncode == 0, result.stderr
    a, b = (read_trajectories(workdir / f"datasets/burgers/b{n}/train.h5") for n in (1, 3))
    assert np.array_equal(a["params"]["nu"], b["params"]["nu"])
    assert np.array_equal(a["fields"]["u"][:, 0], b["fields"]["u"][:, 0])  # same initial states
    # batched FFTs may round differently in the last bit; nothing more
    assert np.abs(a["fields"]["u"] - b["fields"]["u"]).max() < 1e-6


def test_info_rejects_truncated_and_foreign_files(workdir):
    assert run_cli("generate", *TINY, cwd=workdir).returncode == 0
    (target,) = datasets(workdir)
    data = (target / "train.h5").read_bytes()
    (workdir / "cut.h5").write_bytes(data[: len(data) // 2])
    (workdir / "foreign.h5").write_bytes(b"definitely not hdf5" * 100)
    with h5py.File(workdir / "other.h5", "w") as f:
        f["x"] = [1, 2, 3]
    assert_clean_error(run_cli("info", "cut.h5", cwd=workdir), 2, "cut.h5")
    assert_clean_error(run_cli("info", "foreign.h5", cwd=workdir), 2, "not a readable HDF5")
    assert_clean_error(run_cli("info", "other.h5", cwd=workdir), 2, "not a pbdl dataset")
    assert_clean_error(run_cli("info", "missing.h5", cwd=workdir), 2, "no such dataset")
    with h5py.File(target / "val.h5", "r+") as f:
        f["fields/u"][0, 0, 0, 0] += 1.0
    assert_clean_error(run_cli("info", str(target / "val.h5"), cwd=workdir), 1, "checksum mismatch")


# -- Hydra features through the pbdl CLI ---------------------------------------------------------
def test_multirun_and_cfg_pass_through(workdir):
    result = run_cli("generate", "-m", "problem.nu=0.01,0.001", *TINY, cwd=workdir)
    assert result.returncode == 0, result.stderr
    names = [p.name for p in datasets(workdir)]
    assert (
        len(names) == 2
        and any("nu0.01-" in n for n in names)
        and any("nu0.001-" in n for n in names)
    )
    assert len(list(workdir.glob("outputs/multirun/generate/*/*/[01]/.hydra"))) == 2

    printed = run_cli("generate", "--cfg", "job", "problem.nx=48", cwd=workdir)
    assert printed.returncode == 0 and "nx: 48" in printed.stdout
    assert len(datasets(workdir)) == 2  # --cfg only prints

    interpolated = run_cli(
        "show", "generate", "problem.t_end=0.5", "problem.dt=${problem.t_end}", cwd=workdir
    )
    assert interpolated.returncode == 0 and "dt: 0.5" in interpolated.stdout, interpolated.stderr

    debug = run_cli("--debug", "generate", "problem.nuu=1", cwd=workdir)
    assert debug.returncode != 0 and "Traceback" in debug.stderr  # --debug shows it


def test_joblib_launcher(workdir):
    pytest.importorskip("hydra_plugins.hydra_joblib_launcher")  # installed by the dev extra
    result = run_cli(
        "generate",
        "-m",
        "hydra/launcher=joblib",
        "hydra.launcher.n_jobs=2",
        "threads=1",
        "seed=1,2",
        *TINY,
        cwd=workdir,
    )
    assert result.returncode == 0, result.stderr
    assert len(datasets(workdir)) == 2


def test_unknown_launcher_says_what_to_install(workdir):
    result = run_cli("generate", "-m", "hydra/launcher=nope", *TINY, cwd=workdir)
    assert_clean_error(result, 2, "unknown hydra.launcher 'nope'")


# -- interruption ---------------------------------------------------------------------------------
def _start_long_generate(workdir: Path) -> subprocess.Popen:
    return subprocess.Popen(
        cli_command(
            "generate",
            "problem.nx=64",
            "problem.dt=0.01",
            "data.n_train=100000",
            "data.batch_size=8",
            "data.name=long",
        ),
        cwd=workdir,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=cli_env(),
        # a background job of a non-interactive shell inherits SIGINT ignored: undo that
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


def _wait_for_partial(workdir: Path, proc: subprocess.Popen) -> Path:
    deadline = time.time() + 120
    while time.time() < deadline:
        found = list(workdir.glob("datasets/burgers/long.partial-*/train.h5.partial"))
        if found and found[0].stat().st_size > 100_000:
            return found[0]
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.2)
    raise AssertionError("generate never started writing")


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT, signal.SIGTERM])
def test_killed_generate_leaves_nothing_that_looks_complete(workdir, sig):
    proc = _start_long_generate(workdir)
    _wait_for_partial(workdir, proc)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    final = workdir / "datasets/burgers/long"
    assert not final.exists()
    assert not list(workdir.rglob("*.h5")), "a complete-looking .h5 file remains"
    if sig in (signal.SIGINT, signal.SIGTERM):
        assert proc.returncode == 130, err
        assert "interrupted" in err and "Traceback" not in err
        assert not list(workdir.glob("datasets/burgers/long.partial-*"))  # cleaned up
    else:
        assert list(workdir.glob("datasets/burgers/long.partial-*"))
        # a later run removes what the dead process left and completes
        result = run_cli("generate", *TINY, "data.name=long", cwd=workdir)
        assert result.returncode == 0, result.stderr
        assert not list(workdir.glob("datasets/burgers/long.partial-*"))
        assert read_info(final / "train.h5").checksum_ok


# -- user plugins ---------------------------------------------------------------------------------
PLUGIN = textwrap.dedent(
    '''
    """A user's own solver: forward-Euler diffusion only (no advection), for tests."""
    import dataclasses

    from pbdl_cli.solvers import SOLVERS, Solver, SolverConfig


    @dataclasses.dataclass
    class HeatOnlyConfig(SolverConfig):
        factor: float = 1.0


    @SOLVERS.register("heat_only")
    class HeatOnly(Solver):
        """Explicit diffusion without advection (a user plugin)."""

        Config = HeatOnlyConfig
        problems = ("burgers",)

        def stable_dt(self, state, params):
            dx = self.grid.spacing[0]
            return 0.4 * dx * dx / params["nu"].double()

        def substep(self, state, dt, params, context):
            dx = self.grid.spacing[0]
            lap = (state.roll(1, -1) - 2 * state + state.roll(-1, -1)) / dx**2
            nu = params["nu"].view(-1, 1, 1)
            return state + self.config.factor * dt.view(-1, 1, 1) * nu * lap
    '''
)


def test_user_plugin_module_from_config_env_and_entry_point(workdir):
    (workdir / "my_plugins.py").write_text(PLUGIN)
    env = {"PYTHONPATH": str(workdir)}
    result = run_cli(
        "generate",
        "plugins=[my_plugins]",
        "solver=heat_only",
        "solver.factor=0.5",
        *TINY,
        cwd=workdir,
        env=env,
    )
    assert result.returncode == 0, result.stderr
    (target,) = datasets(workdir)
    assert read_info(target / "train.h5").attrs["solver"] == "heat_only"
    assert_clean_error(
        run_cli(
            "generate",
            "plugins=[my_plugins]",
            "solver=heat_only",
            "solver.fctor=1",
            cwd=workdir,
            env=env,
        ),
        2,
        "solver.fctor",
        "did you mean 'factor'",
    )
    assert_clean_error(run_cli("generate", "plugins=[not_there]", cwd=workdir), 2, "not_there")

    # a user config dir with a preset of its own
    (workdir / "my_conf" / "experiment").mkdir(parents=True)
    (workdir / "my_conf" / "experiment" / "mine.yaml").write_text(
        "# @package _global_\nproblem:\n  nx: 40\ndata:\n  name: mine\n"
    )
    shown = run_cli("show", "generate", "-cd", "my_conf", "experiment=mine", cwd=workdir)
    assert shown.returncode == 0 and "nx: 40" in shown.stdout, shown.stderr
    made = run_cli("generate", "-cd", "my_conf", "experiment=mine", "debug=smoke", cwd=workdir)
    assert made.returncode == 0, made.stderr
    assert (workdir / "datasets/burgers/mine/train.h5").exists()

    listed = run_cli("list", "solvers", cwd=workdir, env={**env, "PBDL_PLUGINS": "my_plugins"})
    assert "heat_only" in listed.stdout

    # an installed distribution exposing the module through the pbdl.plugins entry point
    site = workdir / "site"
    dist = site / "my_pbdl_plugins-0.1.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: my-pbdl-plugins\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[pbdl.plugins]\nheat = site_plugin\n")
    (site / "site_plugin.py").write_text(PLUGIN)
    listed = run_cli("list", "solvers", cwd=workdir, env={"PYTHONPATH": str(site)})
    assert "heat_only" in listed.stdout, listed.stderr


# -- train ----------------------------------------------------------------------------------------
#: debug=smoke (4 Adam steps, 1 L-BFGS step) on a small PINN
TINY_TRAIN = [
    "debug=smoke",
    "problem.nx=32",
    "problem.dt=0.25",
    "method.n_collocation=64",
    "method.eval_nx=16",
    "method.eval_nt=5",
    "model.depth=2",
    "model.width=8",
]


def test_train_pinn_writes_a_run_and_resumes(workdir):
    result = run_cli("train", *TINY_TRAIN, cwd=workdir)
    assert result.returncode == 0, result.stderr
    assert "relative L2 error against the exact solution" in result.stdout
    (run,) = workdir.glob("outputs/train/*/*")
    summary = json.loads((run / "summary.json").read_text())
    # measured on CPU (torch 2.13, one thread): 0.55187 after 4 Adam + 1 L-BFGS steps
    assert summary["steps"] == 5 and 0.50 < summary["test"]["rel_l2"] < 0.61
    assert {"loss", "pde"} <= set(summary["train"])
    for name in ("last.pt", "best.pt"):
        assert (run / "checkpoints" / name).exists()
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if "train/loss" in r] == list(range(1, 6))

    # two more L-BFGS steps on top of the finished run, in the same directory
    more = run_cli(
        "train",
        *TINY_TRAIN,
        "trainer.lbfgs_steps=3",
        "resume=true",
        f"hydra.run.dir={run}",
        cwd=workdir,
    )
    assert more.returncode == 0, more.stderr
    assert json.loads((run / "summary.json").read_text())["steps"] == 7

    bad = run_cli("train", "trainer.max_step=5", cwd=workdir)
    assert_clean_error(bad, 2, "trainer.max_step", "did you mean 'max_steps'")
    periodic = run_cli("train", "problem.bc=periodic", *TINY_TRAIN, cwd=workdir)
    assert_clean_error(periodic, 2, "constraints=soft")
