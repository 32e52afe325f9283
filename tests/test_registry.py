"""The plugin registry, config validation helpers and metrics."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from hydra.core.config_store import ConfigStore
from omegaconf import OmegaConf

from pbdl_cli.config import describe_type, to_schema
from pbdl_cli.errors import PbdlError
from pbdl_cli.evaluation.metrics import METRICS, evaluate_all
from pbdl_cli.overrides import sweep_combinations
from pbdl_cli.problems import PROBLEMS
from pbdl_cli.registry import PluginConfig, Registry
from pbdl_cli.solvers import SOLVERS


@dataclasses.dataclass
class ToyConfig(PluginConfig):
    size: int = 3
    rate: float = 0.5
    mode: str = "a"

    def __post_init__(self) -> None:
        if self.size < 1:
            raise ValueError("size must be >= 1")


def test_register_get_build_and_list():
    registry: Registry = Registry("toy")

    @registry.register("first_toy")
    class First:
        """The first toy.

        More text that is not the summary."""

        Config = ToyConfig

        def __init__(self, config, *, extra=None):
            self.config, self.extra = config, extra

    assert registry.names() == ["first_toy"] and "first_toy" in registry and len(registry) == 1
    assert registry.entry("first_toy").summary == "The first toy."
    built = registry.build({"name": "first_toy", "size": 7}, extra=1)
    assert isinstance(built, First) and built.config == ToyConfig(name="first_toy", size=7)
    assert built.extra == 1


def test_unknown_and_duplicate_names():
    registry: Registry = Registry("toy")
    registry.register("alpha")(object)
    with pytest.raises(
        PbdlError, match=r"unknown toy 'alpah' \(did you mean 'alpha'\?\); available: alpha"
    ):
        registry.get("alpah")
    with pytest.raises(ValueError, match="already registered"):
        registry.register("alpha")(object)
    with pytest.raises(ValueError, match="lower_snake_case"):
        registry.register("Bad-Name")


def test_registering_stores_a_typed_hydra_option():
    registry: Registry = Registry("toy", group="toy_group_for_tests")
    registry.register("stored_toy", schema=ToyConfig)(object)
    node = ConfigStore.instance().repo["toy_group_for_tests"]["stored_toy.yaml"].node
    assert node.name == "stored_toy" and node.size == 3
    assert OmegaConf.get_type(node) is ToyConfig


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (
            {"sise": 2},
            r"toy\.sise: unknown key \(did you mean 'size'\?\); valid keys here: name, size",
        ),
        ({"size": "many"}, r"toy\.size: invalid value 'many': expected an integer"),
        ({"size": 0}, r"toy: size must be >= 1"),
    ],
)
def test_to_schema_messages(values, message):
    with pytest.raises(PbdlError, match=message):
        to_schema(OmegaConf.create({"name": "t", **values}), ToyConfig, path="toy")


def test_missing_value_message():
    node = OmegaConf.structured(ToyConfig(name="t"))
    node.rate = "???"  # what `toy.rate=???` on the command line does to a typed node
    with pytest.raises(PbdlError, match=r"toy\.rate: missing required value \(a number\)"):
        to_schema(node, ToyConfig, path="toy")


def test_describe_type():
    from pbdl_cli.problems.burgers import BurgersConfig

    assert describe_type(BurgersConfig, "nx") == "an integer"
    assert describe_type(BurgersConfig, "bc") == "one of periodic, dirichlet"
    assert describe_type(BurgersConfig, "nu_range") == "a list (a number each) or null"


def test_every_builtin_plugin_builds_from_its_defaults():
    for entry in PROBLEMS:
        problem = PROBLEMS.build({"name": entry.name})
        for solver in SOLVERS:
            if solver.obj.supports(problem):
                SOLVERS.build({"name": solver.name}, problem=problem)


def test_sweep_combinations_cover_every_value_once():
    combos = sweep_combinations(["a=1,2,3", "b=x,y", "c=5"])
    assert combos == [
        ["a=1", "b=x", "c=5"],
        ["a=2", "b=x", "c=5"],
        ["a=3", "b=x", "c=5"],
        ["a=1", "b=y", "c=5"],
    ]


def test_metrics_against_hand_computed_values():
    p = torch.tensor([[1.0, 2.0, 3.0, 4.0]])
    r = torch.tensor([[1.0, 1.0, 1.0, 1.0]])
    values = {k: v.item() for k, v in evaluate_all(p, r).items()}
    # differences 0, 1, 2, 3
    assert values["mse"] == pytest.approx(14 / 4)
    assert values["mae"] == pytest.approx(6 / 4)
    assert values["max_error"] == pytest.approx(3)
    assert values["rel_l2"] == pytest.approx(14**0.5 / 2)
    assert values["nrmse"] == pytest.approx((14 / 4) ** 0.5)
    assert set(METRICS.names()) >= {"mse", "mae", "max_error", "rel_l2", "nrmse"}
    batch = evaluate_all(torch.zeros(3, 2, 5), torch.ones(3, 2, 5))
    assert batch["rel_l2"].shape == (3,) and torch.allclose(batch["rel_l2"], torch.ones(3))
