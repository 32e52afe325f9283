"""Resuming a run: the stored overrides, what a resume may change, and its record.

``pbdl train resume=true hydra.run.dir=RUN [overrides]`` continues the run in ``RUN``
with the config it was trained with: the run's own overrides (``RUN/.hydra/
overrides.yaml``) come first and the new ones after them (a key given anew replaces the
stored one), so a run trained with ``model.width=16`` resumes with it without repeating
it. A resume may only extend the run (:data:`EXTENDING`: more steps, other logging and
checkpoint intervals, another device or thread count); any other difference between the
checkpoint's config and the resumed one (model, problem, method, learning rate, ...) is
refused with one line naming the keys, before anything is written. Hydra writes the
resumed config into ``RUN/.hydra/resume-<k>/`` (:func:`record_subdir`): the run's
original ``.hydra/`` stays as it was, and each resume has its own record.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from pbdl_cli.errors import PbdlError

#: keys a resume may change: they extend the run or only change how it is watched and
#: where it runs, not what it computes
EXTENDING = frozenset(
    {
        "resume",
        "overwrite",
        "threads",
        "device",
        "plugins",
        "trainer.max_steps",
        "trainer.lbfgs_steps",
        "trainer.max_seconds",
        "trainer.log_every",
        "trainer.eval_every",
        "trainer.checkpoint_every",
        "trainer.tensorboard",
    }
)
#: stored overrides a resume never repeats
DROPPED = frozenset({"resume", "overwrite"})


def override_key(override: str) -> str:
    """The key an override sets: ``+model.width=3`` -> ``model.width``, ``~x`` -> ``x``."""
    return override.split("=", 1)[0].lstrip("+~")


def stored_overrides(run_dir: Path) -> list[str] | None:
    """The overrides the run in ``run_dir`` was started with (its ``.hydra/overrides.yaml``,
    read with the safe YAML loader); None if it has none."""
    path = run_dir / ".hydra" / "overrides.yaml"
    if not path.is_file():
        return None
    try:
        stored = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError, UnicodeDecodeError) as error:
        raise PbdlError(f"cannot read {path} ({type(error).__name__})") from None
    if stored is None:
        return []
    if not isinstance(stored, list) or not all(isinstance(o, str) for o in stored):
        raise PbdlError(f"{path} is not a list of overrides")
    return stored


def merge_overrides(stored: Sequence[str], new: Sequence[str]) -> list[str]:
    """The stored overrides without the keys given anew (and without ``resume``,
    ``overwrite``), followed by the new ones."""
    given = {override_key(o) for o in new}
    kept = [o for o in stored if override_key(o) not in given | DROPPED]
    return [*kept, *new]


def record_subdir(run_dir: Path) -> str:
    """``hydra.output_subdir`` of the next resume of ``run_dir``: ``.hydra/resume-<k>``."""
    k = 1
    while (run_dir / ".hydra" / f"resume-{k}").exists():
        k += 1
    return f".hydra/resume-{k}"


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}`` (lists stay values)."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            flat |= flatten(value, f"{dotted}.")
        else:
            flat[dotted] = value
    return flat


def changed_keys(stored: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
    """Dotted keys whose values differ between two config trees (present in either)."""
    a, b = flatten(stored), flatten(current)
    return sorted(k for k in a.keys() | b.keys() if a.get(k, _ABSENT) != b.get(k, _ABSENT))


_ABSENT = object()


def check_resume(
    stored: Mapping[str, Any],
    current: Mapping[str, Any],
    *,
    step: int,
    phase: str,
    checkpoint: Path,
) -> None:
    """Refuse a resume that would change the experiment or cannot continue it.

    Args:
        stored: the config the checkpoint was written with (plain values).
        current: the resumed run's config in the same form.
        step, phase: where the checkpoint stands (``phase``: the optimizer's name, or
            ``lbfgs`` once the L-BFGS phase has begun).
        checkpoint: its path, for the messages.
    """
    changed = changed_keys(stored, current)
    refused = [k for k in changed if k not in EXTENDING]
    if refused:
        shown = ", ".join(_difference(k, stored, current) for k in refused[:3])
        more = f" and {len(refused) - 3} more" if len(refused) > 3 else ""
        raise PbdlError(
            f"resume=true would change the run: {shown}{more}; a resume continues the "
            f"run's own config and may change only {', '.join(sorted(EXTENDING - DROPPED))} "
            "(start a new run for anything else)"
        )
    trainer = current.get("trainer", {})
    if "trainer.max_steps" in changed:
        if phase == "lbfgs" and trainer.get("optimizer") != "lbfgs":
            raise PbdlError(
                f"trainer.max_steps cannot change: the run in {checkpoint.parent.parent} is "
                "already in its L-BFGS phase; raise trainer.lbfgs_steps to train further"
            )
        if trainer.get("scheduler") == "cosine":
            raise PbdlError(
                "trainer.max_steps cannot change on resume with trainer.scheduler=cosine "
                "(the schedule's length is max_steps); raise trainer.lbfgs_steps or start "
                "a new run"
            )
    total = int(trainer.get("max_steps", 0)) + int(trainer.get("lbfgs_steps", 0))
    if step > total:
        raise PbdlError(
            f"{checkpoint} is at step {step}, past trainer.max_steps + trainer.lbfgs_steps "
            f"= {total}; raise them to train further"
        )


def _difference(key: str, stored: Mapping[str, Any], current: Mapping[str, Any]) -> str:
    a, b = flatten(stored).get(key, "(absent)"), flatten(current).get(key, "(absent)")
    return f"{key}={_short(b)} (the run has {_short(a)})"


def _short(value: Any) -> str:
    text = str(value)
    return text if len(text) <= 40 else text[:37] + "..."
