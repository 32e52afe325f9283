"""Running a stage: compose and validate the config, then hand over to Hydra.

The CLI passes everything after ``pbdl <stage>`` here unchanged. Arguments are parsed
with Hydra's own argument parser, so ``-m``, ``--cfg``, ``--info``, ``-cd``, launcher
overrides (``hydra/launcher=joblib``) and interpolation behave exactly as in any Hydra
app. Before Hydra starts, pbdl composes the config with Hydra's compose API and has the
stage build it (every node validated against its typed schema, the plugins built); a
user error therefore ends in one readable message and exit code 2 before any run
directory or file is created. A single run then uses what was built (its log records
replayed into the run's log): it is validated and built once. A sweep checks one config
per sweep value up front and each job builds its own.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import logging
import signal
import sys
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf, open_dict

from pbdl_cli.errors import PbdlError
from pbdl_cli.overrides import compose_error, sweep_combinations
from pbdl_cli.plugins import load_plugins
from pbdl_cli.search_path import config_dirs, searching
from pbdl_cli.utils.space import check_writable, disk_full_error, is_disk_full

CONFIG_MODULE = "pbdl_cli.conf"
VERSION_BASE = "1.3"


def prepare_plugins(extra: Sequence[str] = ()) -> None:
    """Import every plugin (built-in, installed, ``PBDL_PLUGINS``, ``extra``) and store the
    stage schemas: what composing a stage's config needs."""
    from pbdl_cli.stages import store_stage_schemas

    load_plugins(extra)
    store_stage_schemas()


# -- argument parsing --------------------------------------------------------------------
def parse_args(stage: str, args: list[str]) -> argparse.Namespace:
    """Parse ``args`` with Hydra's own parser; errors become PbdlError."""
    from hydra._internal.utils import get_args_parser

    parser = get_args_parser()
    parser.prog = f"pbdl {stage}"

    def error(message: str) -> None:
        raise PbdlError(f"{message} (see pbdl {stage} --help)")

    parser.error = error  # type: ignore[method-assign]
    return parser.parse_args(args)


def plugin_modules(overrides: list[str]) -> list[str]:
    """Modules named by a ``plugins=[a,b]`` override (imported before composing)."""
    modules: list[str] = []
    for override in overrides:
        key, _, value = override.partition("=")
        if key.lstrip("+~") == "plugins" and value:
            modules += [m.strip() for m in value.strip("[]").split(",") if m.strip()]
    return modules


# -- composition -------------------------------------------------------------------------
@contextlib.contextmanager
def _hydra_context(stage: str) -> Iterator[None]:
    from hydra import initialize_config_module
    from hydra.core.global_hydra import GlobalHydra

    if GlobalHydra.instance().is_initialized():  # e.g. called from inside a Hydra job
        GlobalHydra.instance().clear()
    with initialize_config_module(CONFIG_MODULE, version_base=VERSION_BASE, job_name=stage):
        yield


def _search_path(config_dir: str | None) -> contextlib.AbstractContextManager[None]:
    """``-cd DIR`` and the project config folder in front of the packaged configs."""
    from pbdl_cli.stages import STAGES

    stage_configs = sorted({STAGES.get(name).config_name for name in STAGES.names()})
    return searching(config_dirs(config_dir, stage_configs))


def compose(
    stage: str, overrides: Sequence[str] = (), *, config_dir: str | None = None
) -> DictConfig:
    """Compose the config of ``stage`` with ``overrides`` (no run directory, no files)."""
    return _compose(stage, overrides, config_dir, with_hydra=False)


def compose_with_choices(
    stage: str, overrides: Sequence[str] = (), *, config_dir: str | None = None
) -> tuple[DictConfig, dict[str, Any]]:
    """:func:`compose`, plus the option chosen in each config group (``problem: burgers``)."""
    cfg = _compose(stage, overrides, config_dir, with_hydra=True)
    choices = {
        k: v
        for k, v in OmegaConf.to_container(cfg.hydra.runtime.choices).items()
        if not k.startswith(("hydra/", "schema", "debug/")) and not (k == "debug" and v == "none")
    }
    with open_dict(cfg):
        del cfg["hydra"]
    return cfg, choices


def _compose(
    stage: str, overrides: Sequence[str], config_dir: str | None, *, with_hydra: bool
) -> DictConfig:
    from hydra import compose as hydra_compose

    from pbdl_cli.stages import store_stage_schemas

    store_stage_schemas()
    with _search_path(config_dir), _hydra_context(stage):
        try:
            return hydra_compose(stage, overrides=overrides, return_hydra_config=with_hydra)
        except Exception as error:  # Hydra raises many types; all become one message
            raise compose_error(error, stage) from None


@dataclasses.dataclass
class Built:
    """What a stage built from one composed config before Hydra started: its settings,
    the config they came from (:func:`config_key`) and the log records building emitted
    (replayed into the run's log, which Hydra sets up only when the run starts)."""

    key: str
    settings: Any
    records: list[logging.LogRecord]


def config_key(cfg: DictConfig) -> str:
    """The resolved config as text: equal keys mean the same run settings ('' where the
    config cannot be resolved outside Hydra, e.g. it refers to ``${hydra:...}``)."""
    try:
        return OmegaConf.to_yaml(cfg, resolve=True)
    except Exception:
        return ""


class _Recorder(logging.Handler):
    """Keeps the log records it receives."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@contextlib.contextmanager
def _recorded_logs() -> Iterator[list[logging.LogRecord]]:
    """Route every log record emitted inside the block into the yielded list (instead of
    the terminal: the run logs them once it has started)."""
    root, recorder = logging.getLogger(), _Recorder()
    handlers, level = root.handlers[:], root.level
    root.handlers, root.level = [recorder], logging.DEBUG
    try:
        yield recorder.records
    finally:
        root.handlers, root.level = handlers, level


def check(stage_name: str, args: argparse.Namespace) -> Built | None:
    """Compose and build the config of a command line: every sweep value of a sweep
    (raises PbdlError); for a single run, what was built, for the run to use."""
    from pbdl_cli.stages import STAGES

    stage = STAGES.get(stage_name)()
    runs = args.cfg is None  # --cfg only prints the config: what is on disk does not matter
    if not args.multirun:
        cfg = _compose(stage.config_name, args.overrides, args.config_dir, with_hydra=True)
        run_dir = _run_dir(cfg)
        with open_dict(cfg):
            del cfg["hydra"]
        with _recorded_logs() as records:
            settings = stage.build(cfg)
        if runs:
            if run_dir is not None:  # before Hydra creates it
                check_writable(run_dir, "run directory")
            stage.preflight(settings, run_dir)
        return Built(config_key(cfg), settings, records)
    # warnings (e.g. resolution hints) are logged once, by each job
    logging.disable(logging.WARNING)
    try:
        combinations = sweep_combinations(args.overrides)
        if runs:  # Hydra creates the sweep directory before any job starts
            _check_sweep_dir(stage.config_name, combinations[0], args.config_dir)
        for overrides in combinations:
            settings = stage.build(
                compose(stage.config_name, overrides, config_dir=args.config_dir)
            )
            if runs:
                stage.preflight(settings, None)
    finally:
        logging.disable(logging.NOTSET)
    return None


def _run_dir(cfg: DictConfig) -> Path | None:
    """``hydra.run.dir`` of a composed config, where it resolves before Hydra starts."""
    try:
        return Path(str(cfg.hydra.run.dir))
    except Exception:
        return None


def _check_sweep_dir(config_name: str, overrides: list[str], config_dir: str | None) -> None:
    """Refuse a ``hydra.sweep.dir`` that cannot be written (one line, before any job)."""
    cfg = _compose(config_name, overrides, config_dir, with_hydra=True)
    try:
        sweep_dir = Path(str(cfg.hydra.sweep.dir))
    except Exception:  # does not resolve before Hydra starts
        return
    check_writable(sweep_dir, "sweep directory")


# -- execution through Hydra ---------------------------------------------------------------
class StageTask:
    """The Hydra task function of a stage (a picklable object, for process launchers).

    ``built`` is what :func:`check` built for a single run: the task uses it when Hydra's
    config is the one it was built from, so the run is built once.
    """

    def __init__(self, stage_name: str, built: Built | None = None) -> None:
        self.stage_name = stage_name
        self.built = built
        self.__name__ = f"pbdl_{stage_name}"
        self.__module__ = __name__

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "built": None}  # a process launcher's job builds its own

    def settings(self, stage: Any, cfg: DictConfig) -> Any:
        """The stage's settings for ``cfg``: those built before the run started, if they
        were built from this config (their log records are emitted now), else new ones."""
        built, self.built = self.built, None
        if built is None or not built.key or built.key != config_key(cfg):
            return stage.build(cfg)
        for record in built.records:
            logger = logging.getLogger(record.name)
            if logger.isEnabledFor(record.levelno):
                logger.handle(record)
        return built.settings

    def __call__(self, cfg: DictConfig) -> Any:
        from hydra.core.hydra_config import HydraConfig

        from pbdl_cli.console import report_error
        from pbdl_cli.stages import STAGES

        try:
            prepare_plugins(list(cfg.get("plugins", None) or []))
            stage = STAGES.get(self.stage_name)()
            settings = self.settings(stage, cfg)
            run_dir = Path(HydraConfig.get().runtime.output_dir)
            stage.preflight(settings, run_dir)
            with _sigterm_as_interrupt():
                return stage.run(settings, run_dir)
        except PbdlError as error:
            report_error(str(error))
            raise SystemExit(error.exit_code) from None
        except KeyboardInterrupt:
            report_error("interrupted; results written before the interruption are kept")
            raise SystemExit(130) from None
        except (OSError, RuntimeError) as error:  # a full disk where no writer named it
            if not is_disk_full(error):
                raise
            where = getattr(error, "filename", None) or Path.cwd()
            report_error(str(disk_full_error(where, cleaned=False)))
            raise SystemExit(1) from None


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """Treat SIGTERM (a cluster's time limit, `kill`) like Ctrl-C, so stages clean up."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _resumed(
    stage_name: str, args: list[str], parsed: argparse.Namespace
) -> tuple[list[str], argparse.Namespace]:
    """``resume=true``: the run's stored overrides before the new ones, and Hydra's record
    of this resume in ``.hydra/resume-<k>`` (see :mod:`pbdl_cli.stages.resume`)."""
    from pbdl_cli.stages import STAGES
    from pbdl_cli.stages.resume import (
        merge_overrides,
        override_key,
        record_subdir,
        stored_overrides,
    )

    if not any(override_key(o) == "resume" for o in parsed.overrides):
        return args, parsed
    stage = STAGES.get(stage_name)
    cfg = _compose(stage.config_name, parsed.overrides, parsed.config_dir, with_hydra=True)
    run_dir = _run_dir(cfg)
    if not cfg.get("resume") or run_dir is None:
        return args, parsed
    stored = stored_overrides(run_dir)
    if stored is None:  # nothing recorded: the checkpoint's config is checked alone
        return args, parsed
    given = set(parsed.overrides)
    merged = merge_overrides(stored, parsed.overrides)
    merged.append(f"hydra.output_subdir={record_subdir(run_dir)}")
    flags = [a for a in args if a not in given]
    return [*flags, *merged], parse_args(stage_name, [*flags, *merged])


def run_stage(stage_name: str, args: list[str]) -> None:
    """Validate ``args`` for ``stage_name`` and run it through Hydra's main entry point."""
    import hydra

    from pbdl_cli.stages import STAGES

    parsed = parse_args(stage_name, args)
    prepare_plugins(plugin_modules(parsed.overrides))
    if parsed.config_name is not None or parsed.config_path is not None:
        raise PbdlError(
            "--config-name/--config-path are fixed by the stage; use -cd DIR to add configs"
        )
    built = None
    stage = STAGES.get(stage_name)
    if not (parsed.info or parsed.hydra_help or parsed.shell_completion):
        if stage.resumable and not parsed.multirun:
            args, parsed = _resumed(stage_name, args, parsed)
        built = check(stage_name, parsed)
    if not stage.implemented:
        raise PbdlError(
            f"the config is valid, but pbdl {stage_name} is not implemented yet", exit_code=1
        )
    main = hydra.main(
        config_path=f"pkg://{CONFIG_MODULE}",
        config_name=stage.config_name,
        version_base=VERSION_BASE,
    )(StageTask(stage_name, built))
    saved = sys.argv
    sys.argv = [f"pbdl {stage_name}", *args]
    try:
        with _search_path(parsed.config_dir):
            main()
    finally:
        sys.argv = saved
