"""Command-line overrides before Hydra runs: its parse and composition errors as one
readable line (:func:`compose_error`), and the override lists that visit every value of
a sweep once (:func:`sweep_combinations`, checked before a multirun starts)."""

from __future__ import annotations

from pbdl_cli.config import translate
from pbdl_cli.errors import PbdlError, did_you_mean


def compose_error(error: Exception, stage: str) -> PbdlError:
    """Translate a Hydra composition error into one readable message."""
    from hydra.errors import MissingConfigException, OverrideParseException
    from omegaconf.errors import OmegaConfBaseException

    if isinstance(error, PbdlError):
        return error
    if isinstance(error, OverrideParseException):
        return PbdlError(f"cannot parse override: {str(error).splitlines()[0]}")
    if isinstance(error, MissingConfigException):
        missing = error.missing_cfg_file or ""
        group, _, option = missing.rpartition("/")
        options = [o for o in (error.options or []) if not o.endswith("_default")]
        if group:
            kind = group.replace("/", ".")
            hint = ""
            if group.startswith("hydra/launcher"):
                hint = " (install the launcher plugin, e.g. pip install hydra-joblib-launcher)"
            return PbdlError(
                f"unknown {kind} '{option}'{did_you_mean(option, options)}; "
                f"available: {', '.join(options) or '(none)'}{hint}"
            )
        return PbdlError(f"cannot find config '{missing}'")
    cause = error.__cause__ or error.__context__
    if isinstance(cause, OmegaConfBaseException):
        from pbdl_cli.stages import STAGES

        default = STAGES.entry(stage).obj.Config if stage in STAGES else None
        schema = getattr(cause, "object_type", None) or default
        return translate(cause, schema=schema if isinstance(schema, type) else None)
    message = str(error).strip()
    return PbdlError(message.splitlines()[0] if message else type(error).__name__)


def sweep_combinations(overrides: list[str]) -> list[list[str]]:
    """Override lists that together visit every value of every sweep at least once.

    A cartesian product could be huge; each value of each sweep is checked once, with
    the other sweeps at their first value. Sweeps that cannot be enumerated (intervals,
    globs) are checked with none of their values.
    """
    from hydra.core.override_parser.overrides_parser import OverridesParser

    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
    except Exception as error:
        raise compose_error(error, "") from None
    base: list[str] = []
    sweeps: list[tuple[int, list[str]]] = []
    for override in parsed:
        text = override.input_line
        if override.is_sweep_override():
            try:
                values = list(override.sweep_string_iterator())
            except Exception:
                continue  # not enumerable: leave it to Hydra's sweeper
            key = override.get_key_element()
            sweeps.append((len(base), [f"{key}={v}" for v in values]))
            base.append(sweeps[-1][1][0] if values else text)
        else:
            base.append(text)
    combos = [base]
    for index, values in sweeps:
        for value in values[1:]:
            combo = list(base)
            combo[index] = value
            combos.append(combo)
    return combos
