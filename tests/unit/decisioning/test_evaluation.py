"""Off-policy evaluation inputs: parsing logs, target policies, and coverage in simulation."""

from __future__ import annotations

import numpy as np
import pytest

from ensayo.bandits import ExplorationPolicy, ExplorationSpec
from ensayo.catalog.model import Action
from ensayo.decisioning import engine
from ensayo.decisioning.evaluation import (
    CandidatePolicy,
    LoggedDecision,
    beta_rates,
    build_arrays,
    evaluate,
    parse_decision,
    target_probabilities,
)
from ensayo.decisioning.learning import ModelParams
from ensayo.decisioning.model import DecisioningSettings
from ensayo.errors import InvalidArgument

KEYS = ("a0", "a1", "a2", "a3", "a4")
TRUE_RATES = np.array([0.05, 0.10, 0.30, 0.20, 0.15])
SNAPSHOT_RATES = {"a0": 0.04, "a1": 0.12, "a2": 0.21, "a3": 0.25, "a4": 0.10}  # a3 looks best
LOGGING_SCORES = np.array([0.3, 0.2, 0.1, 0.15, 0.25])  # the logger prefers a0
CATALOG = [Action(k, "email") for k in KEYS]
SUBSETS = ((0, 1, 2, 3, 4), (0, 1, 4))  # each decision sees one, with probability 1/2
LOGGER = DecisioningSettings(
    exploration=ExplorationSpec(ExplorationPolicy.EPSILON_GREEDY, epsilon=0.6)
)


def _true_value(policy: CandidatePolicy) -> float:
    """E over candidate sets of Σ_a π(a | x)·r(a): the estimand, in closed form."""
    total = 0.0
    for subset in SUBSETS:
        decision = LoggedDecision("x", tuple(KEYS[i] for i in subset), ())
        target = target_probabilities(
            policy, decision, {a.key: a for a in CATALOG}, SNAPSHOT_RATES
        )
        total += 0.5 * sum(p * TRUE_RATES[KEYS.index(k)] for k, p in target.items())
    return total


def _simulate(seed: int, n: int):
    """Log n decisions with the real tiered epsilon-greedy choice; Bernoulli rewards."""
    rng = np.random.default_rng(seed)
    which = rng.integers(0, 2, n)
    ids = [f"s{seed}-{i}" for i in range(n)]
    masks = np.zeros((n, len(KEYS)), dtype=bool)
    for i, w in enumerate(which):
        masks[i, list(SUBSETS[w])] = True
    choices = engine.choose(
        LOGGER,
        np.zeros(len(KEYS), dtype=np.int64),
        np.broadcast_to(LOGGING_SCORES, (n, len(KEYS))),
        masks,
        [1] * n,
        ids,
    )
    decisions, outcomes = [], []
    for i, choice in enumerate(choices):
        a = int(choice.indices[0])
        decisions.append(
            {
                "event_id": ids[i],
                "properties": {
                    "candidates": [KEYS[j] for j in np.flatnonzero(masks[i])],
                    "chosen": [
                        {"action_key": KEYS[a], "propensity": float(choice.propensities[0])}
                    ],
                    "context": {},
                    "max_actions": 1,
                    "holdout": False,
                },
            }
        )
        if rng.random() < TRUE_RATES[a]:
            outcomes.append(
                {"decision_id": ids[i], "value": 1.0, "properties": {"action_key": KEYS[a]}}
            )
    return decisions, outcomes


class TestParsing:
    def test_event_dicts_in_either_shape(self) -> None:
        """A $decision event with properties, or flat properties with decision_id, parses."""
        props = {"candidates": ["a", "b"], "chosen": [{"action_key": "a", "propensity": 0.7}]}
        one = parse_decision({"event_id": "d1", "properties": props})
        two = parse_decision({"decision_id": "d1", **props})
        assert one == two == LoggedDecision("d1", ("a", "b"), (("a", 0.7),), {}, 1, False)

    def test_missing_fields_are_named(self) -> None:
        """No id, or no candidates/chosen, is INVALID_ARGUMENT naming what is missing."""
        with pytest.raises(InvalidArgument) as info:
            parse_decision({"properties": {"candidates": [], "chosen": []}})
        assert info.value.field == "decision_id"
        with pytest.raises(InvalidArgument) as info:
            parse_decision({"decision_id": "d", "properties": {}})
        assert info.value.field == "properties"


class TestTargets:
    def test_candidate_policies(self) -> None:
        """Greedy takes the best rate x value, value-only the best value, random is uniform."""
        catalog = {"a": Action("a", value=1.0), "b": Action("b", value=3.0), "c": Action("c")}
        decision = LoggedDecision("d", ("a", "b", "c"), (("a", 0.5),))
        rates = {"a": 0.9, "b": 0.2, "c": 0.1}
        greedy = target_probabilities(CandidatePolicy.GREEDY, decision, catalog, rates)
        assert greedy == {"a": 1.0, "b": 0.0, "c": 0.0}
        value = target_probabilities(CandidatePolicy.VALUE_ONLY, decision, catalog, rates)
        assert value == {"a": 0.0, "b": 1.0, "c": 0.0}
        uniform = target_probabilities(CandidatePolicy.RANDOM, decision, catalog, rates)
        assert uniform == pytest.approx({"a": 1 / 3, "b": 1 / 3, "c": 1 / 3})
        assert target_probabilities(CandidatePolicy.LOGGED, decision, catalog, rates) == {"a": 0.5}

    def test_tiers_and_ties_and_levers(self) -> None:
        """Tiers come first, ties split evenly, and lever overrides change the greedy pick."""
        catalog = {"a": Action("a", priority=1), "b": Action("b"), "c": Action("c")}
        decision = LoggedDecision("d", ("a", "b", "c"), (("a", 1.0),), max_actions=2)
        rates = {"a": 0.1, "b": 0.5, "c": 0.5}
        greedy = target_probabilities(CandidatePolicy.GREEDY, decision, catalog, rates)
        assert greedy == pytest.approx({"a": 1.0, "b": 0.5, "c": 0.5})
        tilted = target_probabilities(
            CandidatePolicy.GREEDY, decision, catalog, rates, levers={"c": 2.0}
        )
        assert tilted == pytest.approx({"a": 1.0, "b": 0.0, "c": 1.0})

    def test_targets_get_the_slots_the_decision_had(self) -> None:
        """A channel-wide cap left one slot of max_actions=2: a target policy is evaluated
        with one slot too (it was given two), read from the log's ``slots``."""
        catalog = {k: Action(k) for k in ("a", "b")}
        event = {
            "decision_id": "d",
            "properties": {
                "candidates": ["a", "b"],
                "chosen": [{"action_key": "a", "propensity": 0.5}],
                "max_actions": 2,
                "slots": 1,
            },
        }
        decision = parse_decision(event)
        assert (decision.max_actions, decision.slots, decision.returnable) == (2, 1, 1)
        rates = {"a": 0.5, "b": 0.5}
        uniform = target_probabilities(CandidatePolicy.RANDOM, decision, catalog, rates)
        assert uniform == pytest.approx({"a": 0.5, "b": 0.5})
        arrays = build_arrays([event], [], CandidatePolicy.RANDOM, list(catalog.values()), rates)
        assert arrays.target_expected_rewards.tolist() == pytest.approx([0.5])
        del event["properties"]["slots"]  # logs written before slots were: max_actions
        assert parse_decision(event).returnable == 2

    def test_beta_rates_from_model_params(self) -> None:
        """The Beta snapshot's rate is (alpha0 + s) / (alpha0 + beta0 + s + f)."""
        rates = beta_rates(ModelParams(beta={"a": (3.0, 1.0)}), prior=(1.0, 1.0))
        assert rates == {"a": pytest.approx(4 / 6)}

    def test_holdouts_are_skipped_and_logged_policy_is_the_logged_mean(self) -> None:
        """Holdout decisions are skipped; the logged policy's estimates equal the mean reward."""
        decisions, outcomes = _simulate(0, 400)
        decisions.append(
            {"event_id": "h", "properties": {"candidates": [], "chosen": [], "holdout": True}}
        )
        arrays = build_arrays(decisions, outcomes, CandidatePolicy.LOGGED, CATALOG, SNAPSHOT_RATES)
        assert arrays.decisions == 400 and arrays.skipped == 1
        result = evaluate(decisions, outcomes, CandidatePolicy.LOGGED, CATALOG, SNAPSHOT_RATES)
        for estimate in result.estimates:
            assert estimate.value == pytest.approx(result.logged_value)


class TestCoverage:
    @pytest.mark.parametrize("policy", [CandidatePolicy.GREEDY, CandidatePolicy.RANDOM])
    def test_intervals_cover_the_true_value(self, policy) -> None:
        """In 100 seeded replicates the 95% CI of IPS, SNIPS and DR covers the true value
        at least 90 times (the true value is computed in closed form from the simulation)."""
        truth = _true_value(policy)
        covered = {"IPS": 0, "SNIPS": 0, "DR": 0}
        for seed in range(100):
            decisions, outcomes = _simulate(seed, 600)
            result = evaluate(decisions, outcomes, policy, CATALOG, SNAPSHOT_RATES)
            for estimate in result.estimates:
                covered[str(estimate.estimator)] += estimate.ci_low <= truth <= estimate.ci_high
        assert all(count >= 90 for count in covered.values()), covered
