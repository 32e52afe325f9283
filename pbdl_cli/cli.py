"""The ``pbdl`` command line: Typer commands that hand their arguments to a stage.

Typer owns the command names and ``--help``; everything after the command name is passed
unchanged to Hydra (overrides such as ``problem.nu=0.01``, ``-m`` sweeps, ``--cfg job``,
``hydra/launcher=joblib``). See :mod:`pbdl_cli.runner`.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import typer
from rich.table import Table

from pbdl_cli import __version__
from pbdl_cli.console import console, debug_enabled, report_error
from pbdl_cli.errors import PbdlError

PASS_THROUGH = {"allow_extra_args": True, "ignore_unknown_options": True}

app = typer.Typer(
    name="pbdl",
    help=(
        "pbdl: physics-based deep learning experiments from the command line.\n\n"
        "Compose an experiment from config groups (problem, solver, ...) with Hydra-style "
        "overrides and run a stage. Try: pbdl list, pbdl show generate, pbdl generate."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)


def _examples(*lines: str) -> str:
    return "[bold]Examples[/bold]\n\n" + "\n\n".join(f"  [cyan]$ {line}[/cyan]" for line in lines)


def _version(value: bool) -> None:
    if value:
        console.print(f"pbdl {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    debug: bool = typer.Option(
        False, "--debug", help="Show full tracebacks (same as PBDL_DEBUG=1)."
    ),
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version."
    ),
) -> None:
    if debug:
        os.environ["PBDL_DEBUG"] = "1"
        os.environ["HYDRA_FULL_ERROR"] = "1"


def _stage_command(name: str, summary: str, *examples: str) -> None:
    def command(ctx: typer.Context) -> None:
        from pbdl_cli.runner import run_stage

        run_stage(name, list(ctx.args))

    command.__doc__ = (
        f"{summary}\n\nArguments are Hydra overrides (key=value, group=option) and flags "
        "(-m for sweeps, --cfg job to print the config, -cd DIR to add a config dir)."
    )
    app.command(name, context_settings=PASS_THROUGH, epilog=_examples(*examples))(command)


_stage_command(
    "generate",
    "Simulate trajectories with a differentiable solver and write HDF5 datasets.",
    "pbdl generate problem=burgers",
    "pbdl generate problem.nu=0.005 problem.ic=grf data.n_train=512 solver=burgers_sl",
    "pbdl generate -m problem.nu=0.01,0.001",
)
_stage_command(
    "train",
    "Train a model with a method on a problem; prints its error against the reference.",
    "pbdl train problem=burgers method=pinn",
    "pbdl train model.width=64 trainer.max_steps=5000 trainer.lbfgs_steps=1000 device=cuda",
    "pbdl train -m method.n_collocation=2048,8192",
)
_stage_command(
    "evaluate",
    "Score a trained run: metrics against the reference and the PDE residual, the "
    "prediction as an HDF5 file and plots, all in RUN/eval (see docs/evaluate.md).",
    "pbdl evaluate run=outputs/train/2026-11-22/13-02-11",
    "pbdl evaluate run=outputs/train/2026-11-22/13-02-11 checkpoint=best plots=false",
    "pbdl evaluate run=outputs/train/2026-11-22/13-02-11 device=cuda",
    "pbdl info outputs/train/2026-11-22/13-02-11/eval/prediction.h5",
)


_stage_command(
    "sample",
    "Draw samples from a trained probabilistic run (nf, cnf, score, ddpm, flow_matching, smdp): "
    "samples.h5, distribution metrics and plots in RUN/sample (see docs/sample.md).",
    "pbdl sample run=outputs/train/2026-12-04/20-00-15",
    "pbdl sample run=outputs/train/2026-12-04/20-00-15 n=5000 sampler=ddim steps=20",
    "pbdl sample run=outputs/train/2026-12-04/20-00-15 condition=[0.5] plots=false",
    "pbdl info outputs/train/2026-12-04/20-00-15/sample/samples.h5",
)


@app.command(
    "report",
    epilog=_examples(
        "pbdl report outputs/multirun/train/2026-11-22/14-00-00",
        "pbdl report runA runB --sort mae",
        "pbdl report outputs/reproduce/burgers_pinn_vs_dp/<stamp> --out /tmp/rep",
        "pbdl report outputs/multirun/train/2026-11-22/14-00-00 --evaluate",
    ),
)
def report(
    paths: list[Path] = typer.Argument(
        None,
        help="Train run directories, sweep directories (outputs/multirun/train/<date>/<time>) "
        "or any directories to search for runs.",
        metavar="DIR...",
        show_default=False,
    ),
    sort: str = typer.Option(
        None, "--sort", help="Sort by this column, lowest first (default: rel_l2 if present)."
    ),
    out: Path = typer.Option(
        None,
        "--out",
        help="Where report.md/.csv/.json and the plots go (default: the sweep directory when "
        "it is the only argument, else ./report).",
    ),
    evaluate: bool = typer.Option(
        False, "--evaluate", help="First run pbdl evaluate on the runs without eval/metrics.json."
    ),
) -> None:
    """Compare runs in one table: the overrides that differ between them, training time
    and loss, test and evaluation metrics; writes report.md/.csv/.json, error_vs_time.png
    and loss_curves.png (see docs/report.md)."""
    import shlex

    from pbdl_cli.stages.report import run_report

    paths = list(paths or [])
    args = [str(p) for p in paths]
    args += [*(["--sort", sort] if sort else []), *(["--out", str(out)] if out else [])]
    args += ["--evaluate"] if evaluate else []
    command = "pbdl report " + shlex.join(args)
    run_report(paths, sort=sort, out=out, evaluate=evaluate, command=command)


@app.command(
    "reproduce",
    epilog=_examples(
        "pbdl reproduce --list",
        "pbdl reproduce burgers_pinn_vs_dp",
        "pbdl reproduce burgers_pinn_raissi --quick --out /tmp/raissi",
    ),
)
def reproduce(
    name: str = typer.Argument(None, help="The reproduction to run (see --list)."),
    quick: bool = typer.Option(
        False, "--quick", help="Reduced CI-scale settings (minutes); numbers are not judged."
    ),
    out: Path = typer.Option(
        None,
        "--out",
        help="Output directory (default: outputs/reproduce/NAME[-quick]/<date>_<time>). "
        "Finished variants found there are reused, interrupted ones resumed.",
    ),
    force: bool = typer.Option(False, "--force", help="Rerun variants found in --out."),
    list_all: bool = typer.Option(False, "--list", help="List the reproductions and exit."),
) -> None:
    """Reproduce a published result: train and evaluate its variants, then print the
    published values next to ours (also written to results.json and report.md)."""
    from datetime import datetime

    import pbdl_cli.reproduce  # noqa: F401  (registers the built-in reproductions)
    from pbdl_cli.reproduce.base import REPRODUCTIONS, get
    from pbdl_cli.reproduce.results import failed
    from pbdl_cli.reproduce.runner import run_reproduction

    if list_all or name is None:
        table = Table(header_style="bold")
        table.add_column("reproduction")
        table.add_column("result")
        table.add_column("source")
        for key in sorted(REPRODUCTIONS):
            r = REPRODUCTIONS[key]
            table.add_row(key, r.title, r.source)
        console.print(table)
        if name is None and not list_all:
            console.print("run one with: pbdl reproduce NAME [--quick]")
        return
    repro = get(name)
    if out is None:
        stamp = datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
        out = Path("outputs/reproduce") / (name + ("-quick" if quick else "")) / stamp
    checks = run_reproduction(repro, quick=quick, out=out, force=force)
    bad = failed(checks)
    if bad:
        raise PbdlError(
            f"{len(bad)} check(s) failed: " + "; ".join(r.check.label for r in bad), exit_code=1
        )


KINDS = (
    "problems",
    "solvers",
    "models",
    "methods",
    "metrics",
    "stages",
    "experiments",
    "reproductions",
)


@app.command("list", epilog=_examples("pbdl list", "pbdl list problems", "pbdl list solvers"))
def list_plugins(
    kind: str = typer.Argument(None, help=f"One of: {', '.join(KINDS)} (default: all)."),
) -> None:
    """List registered plugins (and experiment presets) with a one-line description."""
    from pbdl_cli.plugins import load_plugins

    load_plugins()
    kinds = KINDS if kind is None else (_normalize_kind(kind),)
    table = Table(show_header=True, header_style="bold", box=None, pad_edge=False)
    table.add_column("kind", style="magenta")
    table.add_column("name", style="cyan")
    table.add_column("description")
    for k in kinds:
        rows = _rows(k)
        for name, summary in rows:
            table.add_row(k.rstrip("s"), name, summary)
        if not rows:
            table.add_row(k.rstrip("s"), "-", "(none registered yet)")
    console.print(table)


def _normalize_kind(kind: str) -> str:
    from pbdl_cli.errors import did_you_mean

    plural = kind if kind.endswith("s") else kind + "s"
    if plural not in KINDS:
        raise PbdlError(
            f"unknown kind '{kind}'{did_you_mean(plural, KINDS)}; use one of {', '.join(KINDS)}"
        )
    return plural


def _rows(kind: str) -> list[tuple[str, str]]:
    if kind == "experiments":
        return _experiments()
    if kind == "reproductions":
        import pbdl_cli.reproduce  # noqa: F401  (registers the built-in reproductions)
        from pbdl_cli.reproduce.base import REPRODUCTIONS

        return [(name, f"{r.title} ({r.source})") for name, r in sorted(REPRODUCTIONS.items())]
    from pbdl_cli.evaluation.metrics import METRICS
    from pbdl_cli.methods import METHODS
    from pbdl_cli.models import MODELS
    from pbdl_cli.problems import PROBLEMS
    from pbdl_cli.solvers import SOLVERS
    from pbdl_cli.stages import STAGES

    registry = {
        "problems": PROBLEMS,
        "solvers": SOLVERS,
        "models": MODELS,
        "methods": METHODS,
        "metrics": METRICS,
        "stages": STAGES,
    }[kind]
    return [(entry.name, entry.summary) for entry in registry]


def _experiments() -> list[tuple[str, str]]:
    from importlib.resources import files

    rows = []
    folder = files("pbdl_cli.conf").joinpath("experiment")
    for item in sorted(folder.iterdir(), key=lambda p: p.name):
        if item.name.endswith(".yaml"):
            lines = [ln[1:].strip() for ln in item.read_text().splitlines() if ln.startswith("#")]
            lines = [ln for ln in lines if ln and not ln.startswith("@package")]
            text = " ".join(lines)  # the header comment, shortened at a word boundary
            short = text if len(text) <= 100 else text[:100].rsplit(" ", 1)[0] + " ..."
            rows.append((item.name[: -len(".yaml")], short))
    return rows


@app.command(
    "show",
    context_settings=PASS_THROUGH,
    epilog=_examples(
        "pbdl show generate",
        "pbdl show generate problem=burgers solver=burgers_sl problem.nx=256",
        "pbdl show generate experiment=burgers_book",
    ),
)
def show(
    ctx: typer.Context,
    stage: str = typer.Argument(..., help="The stage whose config to show (e.g. generate)."),
    resolve: bool = typer.Option(True, "--resolve/--no-resolve", help="Resolve interpolations."),
) -> None:
    """Print the composed and validated config of a stage (like Hydra's --cfg job)."""
    from omegaconf import OmegaConf

    from pbdl_cli.runner import compose_with_choices, parse_args, plugin_modules, prepare_plugins
    from pbdl_cli.stages import STAGES

    args = parse_args(stage, list(ctx.args))
    prepare_plugins(plugin_modules(args.overrides))
    stage_obj = STAGES.get(stage)()
    cfg, choices = compose_with_choices(
        stage_obj.config_name, args.overrides, config_dir=args.config_dir
    )
    stage_obj.build(cfg)
    for group, choice in choices.items():  # show `solver=<name>`, not the alias of a default
        if isinstance(choice, str) and choice.endswith("_default") and group in cfg:
            choices[group] = cfg[group].name
    header = " ".join(f"{k}={v}" for k, v in choices.items() if v is not None)
    sys.stdout.write(f"# pbdl {stage} {header}\n")
    sys.stdout.write(OmegaConf.to_yaml(cfg, resolve=resolve))


@app.command(
    "info",
    epilog=_examples(
        "pbdl info datasets/burgers/<name>/train.h5",
        "pbdl info datasets/burgers/<name>/test.h5 --config",
        "pbdl info outputs/sample/<date>/<time>/samples.h5",
    ),
)
def info(
    path: Path = typer.Argument(
        ..., help="A dataset file of pbdl generate or a samples file of pbdl sample."
    ),
    verify: bool = typer.Option(True, "--verify/--no-verify", help="Recompute the checksum."),
    config: bool = typer.Option(False, "--config", help="Also print the generating config."),
) -> None:
    """Summarize a dataset file (schema, shapes, attributes; verify its checksum) or a
    samples file of pbdl sample (provenance, sampler, cost, shapes)."""
    from pbdl_cli.data.samples import is_samples_file, read_samples_info
    from pbdl_cli.data.summary import read_info
    from pbdl_cli.info import print_info, render_samples_info

    if is_samples_file(path):
        console.print(render_samples_info(read_samples_info(path)))
        return
    summary = read_info(path, verify=verify)
    print_info(summary, console, show_config=config)
    if verify and summary.checksum_ok is False:
        raise PbdlError(
            f"checksum mismatch in {path}: the file was modified or is corrupt", exit_code=1
        )


def main() -> None:
    """Console-script entry point: run the app, turning errors into messages and exit codes."""
    try:
        app()
    except PbdlError as error:
        if debug_enabled():
            raise
        report_error(str(error))
        sys.exit(error.exit_code)
    except KeyboardInterrupt:
        report_error("interrupted")
        sys.exit(130)
    except Exception as error:  # an internal error: short message unless debugging
        if debug_enabled():
            raise
        report_error(
            f"internal error: {type(error).__name__}: {error}\n"
            "rerun with --debug (or PBDL_DEBUG=1) to see the traceback"
        )
        sys.exit(1)
