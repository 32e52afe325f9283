"""What ``pbdl info`` prints: a rich rendering of a dataset summary
(:class:`~pbdl_cli.data.summary.DatasetInfo`) or of a samples file's header
(:class:`~pbdl_cli.data.samples.SamplesInfo`)."""

from __future__ import annotations

from typing import Any

from rich.console import Console, Group, RenderableType
from rich.syntax import Syntax
from rich.table import Table
from rich.text import Text

from pbdl_cli.data.samples import SamplesInfo
from pbdl_cli.data.schema import human_size
from pbdl_cli.data.summary import DatasetInfo


def _fmt_shape(shape: tuple[int, ...]) -> str:
    return "[" + ", ".join(str(d) for d in shape) + "]"


def _fmt_value(value: Any, limit: int = 60) -> str:
    text = f"{value:.6g}" if isinstance(value, float) else str(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def render_info(info: DatasetInfo, *, show_config: bool = False) -> RenderableType:
    """A compact rich summary of a dataset file.

    Args:
        info: from :func:`read_info`.
        show_config: also print the full resolved config YAML.
    """
    head = Table.grid(padding=(0, 2))
    head.add_column(style="bold", no_wrap=True)
    head.add_column(overflow="fold")
    head.add_row("file", str(info.path))
    head.add_row("size", human_size(info.size_bytes))
    head.add_row("schema", f"version {info.schema_version}")
    head.add_row(
        "problem / solver / split",
        " / ".join(v or "?" for v in (info.problem, info.solver, info.split)),
    )
    head.add_row("trajectories", f"{info.num_trajectories} trajectories × {info.num_times} times")
    shown = {"schema_version", "problem", "solver", "split", "checksum", "config"}
    for key in ("dt", "seed", "created", "pbdl_version"):
        if key in info.attrs:
            head.add_row(key, _fmt_value(info.attrs[key]))
    for key, value in sorted(info.attrs.items()):
        if key not in shown and key not in ("dt", "seed", "created", "pbdl_version"):
            head.add_row(key, _fmt_value(value))

    table = Table(box=None, header_style="bold", pad_edge=False)
    for col in ("dataset", "dtype", "shape"):
        table.add_column(col)
    for col in ("min", "max", "mean"):
        table.add_column(col, justify="right")
    for group, shapes in (
        ("fields", info.fields),
        ("params", info.params),
        ("coords", info.coords),
    ):
        for name, shape in shapes.items():
            key = f"{group}/{name}"
            stats = info.stats.get(key)
            cells = [f"{v:.4g}" for v in stats] if stats else ["", "", ""]
            table.add_row(key, info.dtypes.get(key, "?"), _fmt_shape(shape), *cells)

    if info.checksum is None:
        mark = Text("no checksum stored", style="bold red")
    elif info.checksum_ok is None:
        mark = Text("not verified", style="yellow")
    elif info.checksum_ok:
        mark = Text("verified", style="bold green")
    else:
        mark = Text("MISMATCH", style="bold red")
    check = Text.assemble(("checksum ", "bold"), (info.checksum or "-", ""), "  ", mark)

    parts: list[RenderableType] = [head, Text(""), table, Text(""), check]
    config = info.attrs.get("config")
    if show_config and isinstance(config, str):
        parts += [Text(""), Text("config", style="bold"), Syntax(config, "yaml")]
    return Group(*parts)


def render_samples_info(info: SamplesInfo) -> RenderableType:
    """A compact rich summary of a samples file: provenance, sampler, cost, shapes."""
    head = Table.grid(padding=(0, 2))
    head.add_column(style="bold", no_wrap=True)
    head.add_column(overflow="fold")
    head.add_row("file", str(info.path))
    head.add_row("size", human_size(info.size_bytes))
    head.add_row("schema", f"pbdl-samples, version {info.version}")
    for key, value in info.provenance.items():
        head.add_row(key, _fmt_value(value))
    head.add_row("sampler", f"{info.sampler}, {info.steps or 'default'} steps")
    nfe, seconds = info.evaluations, info.seconds
    head.add_row(
        "samples",
        f"{info.num_conditions} conditions × {info.num_samples} samples "
        f"{_fmt_shape(info.sample_shape)}, {info.num_reference} reference samples each",
    )
    head.add_row(
        "cost per condition",
        f"{nfe.mean():.6g} network evaluations, {seconds.mean():.3g} s (mean over "
        f"{len(nfe)}; total {seconds.sum():.3g} s)",
    )
    for key in ("created", "pbdl_version"):
        head.add_row(key, getattr(info, key) or "?")
    table = Table(box=None, header_style="bold", pad_edge=False)
    for col in ("dataset", "dtype", "shape"):
        table.add_column(col)
    for name, shape in info.shapes.items():
        table.add_row(name, info.dtypes[name], _fmt_shape(shape))
    return Group(head, Text(""), table)


def print_info(info: DatasetInfo, console: Console, *, show_config: bool = False) -> None:
    """Prints :func:`render_info` to ``console``."""
    console.print(render_info(info, show_config=show_config))
