"""Where pbdl's Hydra looks for configs, highest precedence first.

1. the command line (``key=value`` overrides; not a folder),
2. ``-cd DIR`` (``--config-dir``),
3. the project folder: ``$PBDL_CONFIG_DIR`` if set, else ``./conf`` where it exists,
4. the configs shipped in the package (``pkg://pbdl_cli.conf``).

A folder holds files laid out like the packaged tree (``experiment/mine.yaml``,
``debug/mine.yaml``, ...); a file there replaces the packaged file of the same name.
Hydra itself appends ``-cd`` after the packaged configs (new names only); pbdl puts both
folders in front of them through a search-path plugin, registered on first use. A
project folder must not replace a stage's own config (``train.yaml`` ...): a Hydra
project's ``conf/`` found in the working directory is ignored with a warning instead.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

from hydra.core.config_search_path import ConfigSearchPath, SearchPathQuery
from hydra.plugins.search_path_plugin import SearchPathPlugin

from pbdl_cli.errors import PbdlError

ENV_VAR = "PBDL_CONFIG_DIR"
PROJECT_FOLDER = "conf"
PROVIDER = "pbdl-project"

log = logging.getLogger(__name__)

#: folders in front of the packaged configs, highest precedence first (see `searching`)
_active: list[Path] = []
_registered = False
_warned: set[Path] = set()


def config_dirs(
    config_dir: str | None, stage_configs: Sequence[str] = (), cwd: Path | None = None
) -> list[Path]:
    """The folders in front of the packaged configs, highest precedence first: ``-cd``,
    then the project folder (``$PBDL_CONFIG_DIR``, else ``<cwd>/conf`` if it exists)."""
    dirs = []
    if config_dir is not None:
        path = Path(config_dir).expanduser().resolve()
        if not path.is_dir():
            raise PbdlError(f"config dir {config_dir} does not exist")
        dirs.append(path)
    project = project_dir(stage_configs, cwd)
    if project is not None and project not in dirs:
        dirs.append(project)
    return dirs


def project_dir(stage_configs: Sequence[str] = (), cwd: Path | None = None) -> Path | None:
    """The project config folder: ``$PBDL_CONFIG_DIR`` (which must exist) or ``./conf``."""
    named = os.environ.get(ENV_VAR)
    if named:
        path = Path(named).expanduser().resolve()
        if not path.is_dir():
            raise PbdlError(f"{ENV_VAR}={named}: no such directory")
        return path
    path = ((cwd or Path.cwd()) / PROJECT_FOLDER).resolve()
    if not path.is_dir():
        return None
    clashes = [name for name in stage_configs if (path / f"{name}.yaml").exists()]
    if clashes:
        if path not in _warned:  # once per process, though configs are composed often
            _warned.add(path)
            log.warning(
                "ignoring %s: it holds %s, which would replace pbdl's own stage config "
                "(a project folder holds presets such as experiment/NAME.yaml; "
                "set %s to use another folder)",
                path,
                ", ".join(f"{name}.yaml" for name in clashes),
                ENV_VAR,
            )
        return None
    return path


class ProjectSearchPath(SearchPathPlugin):
    """Puts the active folders in front of the packaged configs (Hydra's "main")."""

    def manipulate_search_path(self, search_path: ConfigSearchPath) -> None:
        for path in _active:  # each lands right before main: the first stays in front
            search_path.prepend(PROVIDER, f"file://{path}", anchor=SearchPathQuery("main"))


@contextlib.contextmanager
def searching(dirs: Sequence[Path]) -> Iterator[None]:
    """Compose (or run Hydra's main) with ``dirs`` in front of the packaged configs."""
    global _registered
    if not _registered:
        from hydra.core.plugins import Plugins

        Plugins.instance().register(ProjectSearchPath)
        _registered = True
    saved = list(_active)
    _active[:] = list(dirs)
    try:
        yield
    finally:
        _active[:] = saved
