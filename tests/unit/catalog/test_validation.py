"""Catalog validation: every rule names the field path and the reason."""

from __future__ import annotations

import math

import pytest

from ensayo.catalog.model import (
    Action,
    Allocation,
    BanditAlgorithm,
    BanditConfig,
    ContactPolicy,
    Experiment,
    Holdout,
    LayerRange,
    Metric,
    MetricKind,
    Variant,
)
from ensayo.catalog.validation import Known, validate
from ensayo.errors import InvalidArgument

KNOWN = Known(
    metrics=frozenset({"conv", "revenue"}),
    layers=frozenset({"home"}),
    holdouts=frozenset({"global"}),
    actions=frozenset({"offer"}),
    layer_ranges={"home": (("other", LayerRange(0.5, 1.0)),)},
)


def _exp(**kw: object) -> Experiment:
    base: dict[str, object] = {"key": "exp", "variants": (Variant("control"), Variant("b"))}
    base.update(kw)
    return Experiment(**base)  # type: ignore[arg-type]


def _fields(exc: InvalidArgument) -> set[str]:
    return {v.field for v in exc.violations}


class TestExperimentValidation:
    def test_valid_experiment_passes(self) -> None:
        """A complete, consistent experiment raises nothing."""
        validate(
            _exp(
                metrics=("conv",),
                layer="home",
                layer_range=LayerRange(0, 0.5),
                holdouts=("global",),
                targeting={"country": {"$in": ["ES"]}},
                forced={"u1": "b"},
            ),
            "experiment",
            KNOWN,
        )

    @pytest.mark.parametrize(
        ("changes", "field", "reason"),
        [
            ({"key": "Bad Key"}, "experiment.key", "must match"),
            ({"key": ""}, "experiment.key", "required"),
            ({"variants": (Variant("a"),)}, "experiment.variants", "at least two"),
            (
                {"variants": (Variant("a"), Variant("a"))},
                "experiment.variants[1].key",
                "duplicate",
            ),
            (
                {"variants": (Variant("a", -1), Variant("b"))},
                "experiment.variants[0].weight",
                "finite and non-negative",
            ),
            (
                {"variants": (Variant("a", math.nan), Variant("b"))},
                "experiment.variants[0].weight",
                "finite",
            ),
            (
                {"variants": (Variant("a", 0), Variant("b", 0))},
                "experiment.variants",
                "not all be zero",
            ),
            ({"coverage": 1.5}, "experiment.coverage", "[0, 1]"),
            ({"layer": "home"}, "experiment.layer_range", "required with a layer"),
            (
                {"layer": "nope", "layer_range": LayerRange(0, 0.1)},
                "experiment.layer",
                "does not exist",
            ),
            (
                {"layer": "home", "layer_range": LayerRange(0.4, 0.4)},
                "experiment.layer_range",
                "0 <= start < end <= 1",
            ),
            (
                {"layer": "home", "layer_range": LayerRange(0.4, 0.6)},
                "experiment.layer_range",
                "overlaps experiment 'other'",
            ),
            ({"layer_range": LayerRange(0, 1)}, "experiment.layer_range", "only allowed"),
            ({"holdouts": ("ghost",)}, "experiment.holdouts[0]", "does not exist"),
            ({"metrics": ("ghost",)}, "experiment.metrics[0]", "does not exist"),
            ({"forced": {"u": "zzz"}}, "experiment.forced['u']", "unknown variant"),
            ({"targeting": {"country": {"$bogus": 1}}}, "experiment.targeting", ""),
            ({"allocation": Allocation.BANDIT}, "experiment.bandit.algorithm", "required"),
        ],
    )
    def test_rule(self, changes: dict[str, object], field: str, reason: str) -> None:
        """Each broken rule is reported with its path and reason."""
        with pytest.raises(InvalidArgument) as info:
            validate(_exp(**changes), "experiment", KNOWN)
        matching = [v for v in info.value.violations if v.field.startswith(field)]
        assert matching, info.value
        assert any(reason in v.reason for v in matching), info.value

    def test_all_violations_are_reported_together(self) -> None:
        """Several problems come back in one error, in field order."""
        with pytest.raises(InvalidArgument) as info:
            validate(_exp(key="X", coverage=-1, metrics=("ghost",)), "experiment", KNOWN)
        assert {"experiment.key", "experiment.coverage", "experiment.metrics[0]"} <= _fields(
            info.value
        )
        assert str(info.value).startswith("experiment.key: ")

    def test_bandit_rules(self) -> None:
        """A bandit needs a reward metric among its metrics and k x floor <= 1."""
        bandit = BanditConfig(BanditAlgorithm.THOMPSON_BERNOULLI, "revenue", 0.6, 0, -1)
        with pytest.raises(InvalidArgument) as info:
            validate(
                _exp(allocation=Allocation.BANDIT, bandit=bandit, metrics=("conv",)),
                "experiment",
                KNOWN,
            )
        fields = _fields(info.value)
        assert {
            "experiment.bandit.reward_metric",
            "experiment.bandit.exploration_floor",
            "experiment.bandit.update_period_s",
            "experiment.bandit.burn_in_units",
        } <= fields

    def test_own_range_does_not_overlap_itself(self) -> None:
        """Re-applying an experiment does not collide with its own stored range."""
        known = Known(
            layers=frozenset({"home"}), layer_ranges={"home": (("exp", LayerRange(0, 0.5)),)}
        )
        validate(_exp(layer="home", layer_range=LayerRange(0, 0.6)), "experiment", known)


class TestOtherDefinitions:
    def test_holdout_fraction(self) -> None:
        """A holdout fraction outside [0, 1] is rejected."""
        with pytest.raises(InvalidArgument, match=r"holdout.fraction: must be in \[0, 1\]"):
            validate(Holdout("h", fraction=1.2), "holdout")

    def test_metric_rules(self) -> None:
        """Metrics need an event and a kind; ratios need a denominator, others must not."""
        with pytest.raises(InvalidArgument) as info:
            validate(Metric("m"), "metric")
        assert _fields(info.value) == {"metric.event_name", "metric.kind"}
        with pytest.raises(InvalidArgument, match="metric.denominator_event: required"):
            validate(Metric("m", "e", MetricKind.RATIO), "metric")
        with pytest.raises(InvalidArgument, match="only allowed for a ratio"):
            validate(Metric("m", "e", MetricKind.MEAN, denominator_event="x"), "metric")

    def test_action_rules(self) -> None:
        """Actions need a channel, non-negative value and weight, valid conditions and times."""
        from datetime import UTC, datetime

        t = datetime(2026, 1, 1, tzinfo=UTC)
        with pytest.raises(InvalidArgument) as info:
            validate(
                Action(
                    "a",
                    value=-1,
                    weight=math.inf,
                    exclusions=({},),
                    eligibility={"$nope": 1},
                    start_time=t,
                    end_time=t,
                ),
                "action",
            )
        fields = _fields(info.value)
        assert {
            "action.channel",
            "action.value",
            "action.weight",
            "action.exclusions[0]",
            "action.end_time",
        } <= fields
        assert any(f.startswith("action.eligibility") for f in fields)

    def test_channels_and_placements_are_plain_text(self) -> None:
        """A control character in a channel or placement is refused (stored contacts are
        split on 0x1F: such a channel escaped its caps), and value and weight are bounded."""
        with pytest.raises(InvalidArgument) as info:
            validate(
                Action("a", channel="e\x1fmail", placements=("top\n",), value=1e10, weight=2e9),
                "action",
            )
        assert {
            "action.channel",
            "action.placements[0]",
            "action.value",
            "action.weight",
        } <= _fields(info.value)
        with pytest.raises(InvalidArgument) as info:
            validate(ContactPolicy("p", channel="sms\x1f", max_contacts=1, window_s=60), "policy")
        assert "policy.channel" in _fields(info.value)
        validate(Action("a", channel="e-mail.EU 2", value=1e9, weight=1e9), "action")

    def test_contact_policy_rules(self) -> None:
        """Caps need a positive window, a non-negative max and an existing action."""
        with pytest.raises(InvalidArgument) as info:
            validate(
                ContactPolicy("c", action_key="ghost", max_contacts=-1, window_s=0),
                "contact_policy",
                KNOWN,
            )
        assert _fields(info.value) == {
            "contact_policy.max_contacts",
            "contact_policy.window_s",
            "contact_policy.action_key",
        }
