"""PBDL book ch. 37, "Simple example comparing different optimizers": minimize
L = |P(x)|^2 with P(x) = (x0, x1^2) from x = [3, 3] by 10 updates of gradient descent
(eta 0.01), Newton (eta 1/3) and the inverse simulator P^-1(y) = (y0, y1^(1/2)) after a
Newton step in y (eta 0.3). Book values (JAX, float32): iterate 9 GD [2.4512184,
0.96171147], Newton [0.05202458, 0.92383826], PG [0.08474258, 0.50421], distances to
the optimum 2.63, 0.925, 0.51; every iterate is printed (:data:`BOOK`).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from pbdl_cli.reproduce.base import Reproduction, Variant, register
from pbdl_cli.reproduce.checks import Below, Check, Eval, History, Near, VariantResult

#: the book's printed iterates 0..9 (x after each update) per update rule
BOOK: dict[str, list[tuple[float, float]]] = {
    "gd": [
        (2.94, 1.9200001),
        (2.8812, 1.6368846),
        (2.823576, 1.4614503),
        (2.7671044, 1.3365935),
        (2.7117622, 1.2410815),
        (2.657527, 1.1646168),
        (2.6043763, 1.1014326),
        (2.5522888, 1.0479842),
        (2.501243, 1.0019454),
        (2.4512184, 0.96171147),
    ],
    "newton": [
        (2.0, 2.6666667),
        (1.3333333, 2.3703704),
        (0.88888884, 2.1069958),
        (0.59259254, 1.8728852),
        (0.39506167, 1.6647868),
        (0.26337445, 1.4798105),
        (0.17558296, 1.315387),
        (0.1170553, 1.1692328),
        (0.07803687, 1.0393181),
        (0.05202458, 0.92383826),
    ],
    "inverse_simulator": [
        (2.1, 2.5099802),
        (1.4699999, 2.1000001),
        (1.0289999, 1.7569861),
        (0.72029996, 1.47),
        (0.50421, 1.2298902),
        (0.352947, 1.029),
        (0.24706289, 0.86092323),
        (0.17294402, 0.7203),
        (0.12106082, 0.60264623),
        (0.08474258, 0.50421),
    ],
}
#: the book's distances of iterate 9 to the optimum (printed to 2-3 digits)
DISTANCE = {"gd": 2.63, "newton": 0.925, "inverse_simulator": 0.51}
LABEL = {"gd": "GD", "newton": "Newton", "inverse_simulator": "inverse simulator"}
COLOR = {"gd": "#1F77B4", "newton": "#FF7F0E", "inverse_simulator": "#D62728"}
#: the book prints float32 iterates; ours are float64
TOLERANCE = 1e-5

NOTES = """
- `experiment=optimizer_toy method.update=<rule>`: `method=optimize` applies the rule of
  `pbdl_cli/training/updates.py` to x (a `field` of 2 values) 10 times in float64, with
  the book's step sizes. Iterate k is x after update k + 1 (`val/x0`, `val/x1` at step
  k + 1 of `metrics.jsonl`; iterate 9 is the final model that `pbdl evaluate` scores).
- The book's loss is L = |y|^2 (no 1/2: dL/dx = [6, 108] at the start), the inverse
  simulator's step a Newton step in y, y - eta (d^2L/dy^2)^-1 dL/dy = (1 - eta) y,
  mapped back by P^-1(y) = (y0, y1^(1/2)).
- The book computes in float32; the iterates agree with ours to about 2e-7.
- The runs take well under a second each; `--quick` runs the full settings.
"""


def iterate(k: int, component: int) -> History:
    """Component ``component`` of iterate ``k`` (x after update k + 1; -1: the last)."""
    return History(f"val/x{component}", at=k)


def trajectory(result: VariantResult, space: str = "x") -> list[tuple[float, float]]:
    """The start and iterates 0..9 in x (``space="x"``) or y = P(x) (``"y"``)."""
    first = next(r for r in result.history if f"train/{space}0" in r)
    points = [(first[f"train/{space}0"], first[f"train/{space}1"])]
    records = [r for r in result.history if f"val/{space}0" in r]
    return points + [(r[f"val/{space}0"], r[f"val/{space}1"]) for r in records]


def trajectories(out: Path, results: Mapping[str, VariantResult]) -> list[Path]:
    """The book's figures: the three trajectories in x-space and in y-space."""
    from matplotlib.figure import Figure

    from pbdl_cli.evaluation.figures import save_figure

    fig = Figure(figsize=(9, 4.4), layout="constrained")
    for ax, space in zip(fig.subplots(1, 2), ("x", "y"), strict=True):
        for name, result in results.items():
            points = trajectory(result, space)
            ax.plot(*zip(*points, strict=True), "-", color=COLOR[name], lw=0.6, alpha=0.6)
            ax.scatter(*zip(*points, strict=True), s=14, color=COLOR[name], label=LABEL[name])
            if space == "x":
                ax.scatter(*zip(*BOOK[name], strict=True), s=40, marker="+", color="k", lw=0.6)
        ax.scatter([0], [0], marker="x", color="black", lw=0.8)
        ax.set(xlabel=f"{space}0", ylabel=f"{space}1", title=f"{space} space")
        ax.set_box_aspect(1)
        ax.legend()
    fig.suptitle("10 updates from x = [3, 3] (+: the book's iterates)")
    return [save_figure(fig, out / "trajectories.png")]


def table(results: Mapping[str, VariantResult]) -> str:
    """Every iterate: the book's next to ours, and the largest difference per rule."""
    lines = ["| iterate | " + " | ".join(f"{LABEL[n]} book / pbdl" for n in BOOK) + " |"]
    lines.append("|---" * (len(BOOK) + 1) + "|")
    ours = {n: trajectory(results[n])[1:] for n in BOOK if n in results}
    for k in range(10):
        cells = []
        for name, book in BOOK.items():
            mine = ours.get(name)
            pbdl = "-" if mine is None else f"[{mine[k][0]:.7g}, {mine[k][1]:.7g}]"
            cells.append(f"[{book[k][0]:.7g}, {book[k][1]:.7g}] / {pbdl}")
        lines.append(f"| {k} | " + " | ".join(cells) + " |")
    worst = []
    for name, mine in ours.items():
        pairs = zip(BOOK[name], mine, strict=True)
        gap = max(abs(a - b) for p, q in pairs for a, b in zip(p, q, strict=True))
        worst.append(f"{LABEL[name]} {gap:.1e}")
    return "\n".join(lines) + "\n\nLargest difference to the book: " + ", ".join(worst) + "."


def _checks(name: str) -> tuple[Check, ...]:
    label, book = LABEL[name], BOOK[name]
    return (
        *(
            Check(
                f"{label}: iterate {k}, x{c}", name, metric, book[k][c], Near(TOLERANCE), quick=True
            )
            for k, c, metric in (
                (0, 0, iterate(0, 0)),
                (0, 1, iterate(0, 1)),
                (9, 0, Eval("x0")),
                (9, 1, Eval("x1")),
            )
        ),
        Check(
            f"{label}: distance to the optimum",
            name,
            Eval("distance"),
            published=DISTANCE[name],
            criterion=Near(5e-3),
            quick=True,
        ),
    )


register(
    Reproduction(
        name="optimizer_toy",
        title="GD, Newton and an inverse simulator on y = (x0, x1^2)",
        source="PBDL book ch. 37 (simple example comparing different optimizers)",
        variants=tuple(
            Variant(
                name,
                ("experiment=optimizer_toy", f"method.update={name}"),
                label=f"{LABEL[name]}, eta {eta}",
            )
            for name, eta in (("gd", "0.01"), ("newton", "1/3"), ("inverse_simulator", "0.3"))
        ),
        checks=(
            *_checks("gd"),
            *_checks("newton"),
            *_checks("inverse_simulator"),
            Check(
                "Newton ends closer to the optimum than GD",
                "newton",
                Eval("distance"),
                criterion=Below("gd", Eval("distance")),
                quick=True,
            ),
            Check(
                "the inverse simulator ends closer than Newton",
                "inverse_simulator",
                Eval("distance"),
                criterion=Below("newton", Eval("distance")),
                quick=True,
            ),
        ),
        notes=NOTES,
        figures=trajectories,
        summary=table,
    )
)
