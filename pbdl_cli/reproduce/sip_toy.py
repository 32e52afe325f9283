"""PBDL book ch. 38.4, "SIP training in action" (Holl, Koltun & Thuerey 2022 [HKT22]):
an MLP learns to invert P(x) = (sin(x^_1) / xi, x^_2 xi), x^ = R_phi x, trained
through the physics by Adam, plain SGD and SIP (the problem's analytic local inverse,
then Adam on the proxy loss). The book gives no numbers, only curves; its claims:

- xi = 1: every optimizer converges (Adam slightly best);
- xi = 32: only SIP and Adam make significant progress (fig. 38.3 right);
- xi = 32, phi from 0 to 45 deg: Adam's accuracy deteriorates by more than an order of
  magnitude, SIP's does not (fig. 38.4 right).

Judged on the x-space error ``x_loss`` = mean 1/2 |x - x*|^2 over the fixed test set
(see :data:`NOTES` for why x- and not y-space).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from pbdl_cli.reproduce.base import Reproduction, Variant, register
from pbdl_cli.reproduce.checks import AtLeast, AtMost, Below, Check, Eval, VariantResult

#: training steps of a run (quick: CI scale); 100 samples a step
STEPS, QUICK_STEPS = 10000, 2000
#: plain SGD (no momentum) through the physics: the best of 1e-6..1e-3 at xi = 32 by the
#: y-space loss (x-space: ~0.17 for all of them), and the best of 1e-2, 1e-1 at xi = 1
SGD_LR = {1: "0.1", 32: "1e-4"}
#: Adam's rate under SIP (the preset's 3e-3 is plain Adam's: the best of 1e-4, 1e-3, 3e-3
#: in x-space at xi = 32; SIP's x_loss was lower at 1e-3 than at 3e-3)
SIP_LR = "1e-3"
#: the angles of the phi sweep at xi = 32 (quick runs 0 and 45)
PHIS = (0, 15, 30, 45)
LABEL = {"adam": "Adam", "sip": "SIP", "sgd": "SGD", "sip_pinv": "SIP (pinv)"}
COLOR = {"adam": "#FF7F0E", "sip": "#1F77B4", "sgd": "#D62728", "sip_pinv": "#2CA02C"}
#: the untrained error level: x^* uniform in [-1, 1]^2 and x = 0 give 1/2 E|x*|^2 = 1/3
UNTRAINED = 1.0 / 3.0

NOTES = f"""
- **Setup.** `experiment=rotated_sine`: x^* uniform in [-1, 1]^2 (sin is monotone
  there, so every target has one preimage in the box), x* = R_phi^T x^*, y* = P(x*),
  a fresh batch of 100 targets every step (the paper's on-the-fly targets, batch 100).
  The network sees y* / (1/xi, xi), inputs of size ~1 like the paper's y* in [-1, 1]^2
  (`problem.normalize_input=false`: the raw y*). MLP with 3 hidden ReLU layers of 64
  (the paper's code: 32, 64, 32), float32, {STEPS} steps ({QUICK_STEPS} with --quick;
  the paper trains each optimizer for 10 minutes).
- **Optimizers.** Adam 3e-3 (the best of 1e-4, 1e-3 and 3e-3 in x-space at xi = 32:
  over seeds 0-2 at {QUICK_STEPS} steps, phi = 0, 1.5e-3..4.2e-3 against 1.4e-3..1.0e-2
  at the paper's 1e-3; at phi = 45 all three stay at ~0.17-0.20), SIP with Adam
  {SIP_LR} (7.3e-6 against 8.6e-6 at 3e-3) and eta = 1 on the proxy loss
  1/2 |x - x~|^2 (the paper's SIP uses a saddle-free Newton step and an L1 proxy; our
  analytic inverse makes x~ the exact preimage of y*, so SIP is supervised training on
  on-the-fly targets), plain SGD without momentum at lr {SGD_LR[32]} for xi = 32 and
  {SGD_LR[1]} for xi = 1 (the best of a sweep; the paper scales SGD's rate as
  1e-2 / xi^2). The book compares optimizers by wall-clock time; the figure does too.
- **Which loss.** The checks use the x-space error `x_loss` = mean 1/2 |x - x*|^2 over
  the 1024 test targets: the paper's curves plot the x-distance to the closest solution
  (its code logs `x_dist`, and its plots label the axes "x-Distance"), and the book notes that
  SIP is more accurate in x while not always in the loss L. y-space `y_loss` is
  reported beside it: at xi = 32 a y-error is dominated by y_2 = 32 x^_2, so Adam can
  reach a lower `y_loss` than SIP while its x is far off (x^_1 barely moves: its
  gradient is scaled by 1/xi^2).
- **Untrained level.** x = 0 has x_loss = {UNTRAINED:.3f}; an x^_2 learned exactly with
  x^_1 untouched leaves 1/6. "No progress" is judged as x_loss >= 0.05.
- The `pinv` variant (full only) replaces the analytic inverse by the Gauss-Newton
  local inverse x + J^+ (y* - y) with J from autograd.
"""


def _name(method: str, xi: int, phi: int) -> str:
    return f"{method}_xi{xi}_phi{phi}"


def _variant(method: str, xi: int, phi: int, full_only: bool) -> Variant:
    overrides = ["experiment=rotated_sine", f"problem.xi={xi}", f"problem.phi={phi}"]
    if method == "sip":
        overrides += ["method=sip", f"trainer.lr={SIP_LR}"]
    elif method == "sip_pinv":
        overrides += ["method=sip", "method.inverse=pinv", f"trainer.lr={SIP_LR}"]
    elif method == "sgd":
        overrides += ["trainer.optimizer=sgd", "trainer.momentum=0", f"trainer.lr={SGD_LR[xi]}"]
    return Variant(
        _name(method, xi, phi),
        (*overrides, f"trainer.max_steps={STEPS}"),
        quick=(f"trainer.max_steps={QUICK_STEPS}",),
        label=f"{LABEL[method]}, xi {xi}, phi {phi} deg",
        full_only=full_only,
    )


VARIANTS = (
    *(_variant(m, 32, phi, phi not in (0, 45)) for phi in PHIS for m in ("adam", "sip")),
    _variant("sgd", 32, 0, False),
    _variant("sgd", 32, 45, True),
    _variant("sip_pinv", 32, 45, True),
    *(_variant(m, 1, 45, True) for m in ("adam", "sip", "sgd")),
)
X = Eval("x_loss")


def _method(name: str) -> str:
    return name.split("_xi")[0]


def curves(out: Path, results: Mapping[str, VariantResult]) -> list[Path]:
    """Validation x_loss over wall-clock time per optimizer (one panel per xi, phi),
    and the final test x_loss over phi at xi = 32 (the book's fig. 38.3 and 38.4)."""
    from matplotlib.figure import Figure

    from pbdl_cli.evaluation.figures import save_figure

    panels = [(1, 45), (32, 0), (32, 45)]
    panels = [p for p in panels if any(n.endswith(f"_xi{p[0]}_phi{p[1]}") for n in results)]
    fig = Figure(figsize=(4 * len(panels) + 4, 3.6), layout="constrained")
    axes = fig.subplots(1, len(panels) + 1)
    for ax, (xi, phi) in zip(axes, panels, strict=False):
        for name, result in results.items():
            if not name.endswith(f"_xi{xi}_phi{phi}"):
                continue
            rows = [r for r in result.history if "val/x_loss" in r]
            method = _method(name)
            ax.plot(
                [r.get("time", r["step"]) for r in rows],
                [r["val/x_loss"] for r in rows],
                color=COLOR[method],
                label=LABEL[method],
            )
        ax.set(xscale="linear", yscale="log", xlabel="time [s]", ylabel="val x_loss")
        ax.set_title(f"xi = {xi}, phi = {phi} deg")
        ax.legend()
    ax = axes[-1]
    for method in ("adam", "sip"):
        points = [
            (phi, X.read(results[_name(method, 32, phi)]))
            for phi in PHIS
            if _name(method, 32, phi) in results
        ]
        points = [(p, v) for p, v in points if v is not None]
        if points:
            ax.plot(*zip(*points, strict=True), "o-", color=COLOR[method], label=LABEL[method])
    ax.set(yscale="log", xlabel="phi [deg]", ylabel="test x_loss", title="xi = 32, over phi")
    ax.legend()
    return [save_figure(fig, out / "curves.png")]


def table(results: Mapping[str, VariantResult]) -> str:
    """Final test x_loss and y_loss of every variant."""
    lines = ["| variant | x_loss (checked) | y_loss | train time [s] |", "|---|---|---|---|"]
    for name, result in results.items():
        x, y = X.read(result), Eval("y_loss").read(result)
        seconds = result.summary.get("seconds")
        cells = [f"{v:.3e}" if isinstance(v, int | float) else "-" for v in (x, y)]
        t = f"{seconds:.1f}" if isinstance(seconds, int | float) else "-"
        lines.append(f"| {name} | {cells[0]} | {cells[1]} | {t} |")
    return "\n".join(lines)


def _checks() -> tuple[Check, ...]:
    adam0, adam45 = _name("adam", 32, 0), _name("adam", 32, 45)
    sip0, sip45 = _name("sip", 32, 0), _name("sip", 32, 45)
    sgd0 = _name("sgd", 32, 0)
    quick = (
        Check("xi 32, phi 0: Adam makes progress", adam0, X, criterion=AtMost(0.02), quick=True),
        Check("xi 32, phi 0: SIP makes progress", sip0, X, criterion=AtMost(1e-3), quick=True),
        Check(
            "xi 32, phi 0: plain SGD makes no significant progress",
            sgd0,
            X,
            criterion=AtLeast(0.05),
            quick=True,
        ),
        Check(
            "xi 32, phi 0: Adam more than 10x below SGD",
            adam0,
            X,
            criterion=Below(sgd0, X, factor=0.1),
            quick=True,
        ),
        Check(
            "xi 32: Adam degrades more than 10x from phi 0 to 45",
            adam0,
            X,
            criterion=Below(adam45, X, factor=0.1),
            quick=True,
        ),
        Check(
            "xi 32: SIP does not degrade from phi 0 to 45 (< 3x)",
            sip45,
            X,
            criterion=Below(sip0, X, factor=3.0),
            quick=True,
        ),
        Check(
            "xi 32, phi 45: SIP more than 10x below Adam",
            sip45,
            X,
            criterion=Below(adam45, X, factor=0.1),
            quick=True,
        ),
    )
    full = (
        *(
            Check(
                f"xi 32, phi {phi}: SIP does not degrade from phi 0 (< 3x)",
                _name("sip", 32, phi),
                X,
                criterion=Below(sip0, X, factor=3.0),
                full_only=True,
            )
            for phi in (15, 30)
        ),
        *(
            Check(f"xi 32, phi {phi}: Adam", _name("adam", 32, phi), X, full_only=True)
            for phi in (15, 30)
        ),
        Check(
            "xi 32, phi 45: plain SGD makes no significant progress",
            _name("sgd", 32, 45),
            X,
            criterion=AtLeast(0.05),
            full_only=True,
        ),
        Check(
            "xi 32, phi 45: SIP with the pinv inverse more than 10x below Adam",
            _name("sip_pinv", 32, 45),
            X,
            criterion=Below(adam45, X, factor=0.1),
            full_only=True,
        ),
        *(
            Check(
                f"xi 1, phi 45: {LABEL[m]} converges",
                _name(m, 1, 45),
                X,
                criterion=AtMost(1e-3),
                full_only=True,
            )
            for m in ("adam", "sip", "sgd")
        ),
    )
    return quick + full


register(
    Reproduction(
        name="sip_toy",
        title="Adam, SGD and SIP inverting a rotated, ill-conditioned sine",
        source="PBDL book ch. 38.4 (SIP training in action; Holl, Koltun & Thuerey 2022)",
        variants=VARIANTS,
        checks=_checks(),
        notes=NOTES,
        figures=curves,
        summary=table,
    )
)
