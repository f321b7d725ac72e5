"""Off-policy estimators: a hand-worked example of OBP's formulas and a coverage simulation."""

from __future__ import annotations

import numpy as np
import pytest

from ensayo.errors import InvalidArgument
from ensayo.stats import (
    Estimator,
    StatWarning,
    doubly_robust,
    effective_sample_size,
    evaluate_policy,
    ips,
    snips,
)

# Four logged decisions worked by hand from the definitions in Saito et al. 2020 (OBP):
# w = pi_e / pi_b = [2, 2, 0.25, 0]; w·r = [2, 0, 0.25, 0].
REWARDS = [1.0, 0.0, 1.0, 0.0]
LOGGED = [0.5, 0.25, 0.8, 0.4]
TARGET = [1.0, 0.5, 0.2, 0.0]
Q_LOGGED = [0.6, 0.3, 0.7, 0.2]
Q_TARGET = [0.6, 0.4, 0.5, 0.3]


class TestHandExample:
    def test_ips(self):
        """IPS = mean(w·r) = 2.25 / 4 = 0.5625."""
        assert ips(REWARDS, LOGGED, TARGET).value == pytest.approx(0.5625)

    def test_snips(self):
        """SNIPS = Σw·r / Σw = 2.25 / 4.25."""
        assert snips(REWARDS, LOGGED, TARGET).value == pytest.approx(2.25 / 4.25)

    def test_doubly_robust(self):
        """DR terms q̂(π_e) + w·(r - q̂(a)) = [1.4, -0.2, 0.575, 0.3]; mean 0.51875."""
        result = doubly_robust(REWARDS, LOGGED, TARGET, Q_LOGGED, Q_TARGET)
        assert result.estimator is Estimator.DR
        assert result.value == pytest.approx(0.51875)
        terms = np.array([1.4, -0.2, 0.575, 0.3])
        assert result.std_error == pytest.approx(np.std(terms, ddof=1) / 2)

    def test_effective_sample_size(self):
        """ESS = (Σw)² / Σw² = 4.25² / 8.0625."""
        assert effective_sample_size([2, 2, 0.25, 0]) == pytest.approx(4.25**2 / 8.0625)

    def test_evaluate_policy_bundles_everything(self):
        """evaluate_policy returns IPS, SNIPS, DR, the ESS and the logged mean reward."""
        evaluation = evaluate_policy(
            REWARDS,
            LOGGED,
            TARGET,
            predicted_rewards=Q_LOGGED,
            target_expected_rewards=Q_TARGET,
        )
        assert [e.estimator for e in evaluation.estimates] == [
            Estimator.IPS,
            Estimator.SNIPS,
            Estimator.DR,
        ]
        assert evaluation.logged_value == pytest.approx(0.5)
        assert evaluation.n == 4


class TestCoverage:
    def test_intervals_cover_true_value(self):
        """In 100 seeded replicates each estimator's 95% CI covers the known value ≥ 90 times."""
        rng = np.random.default_rng(2024)
        actions, n = 3, 3000
        # Reward probability by context (2 kinds) and action; the reward model is biased.
        mu = np.array([[0.10, 0.30, 0.20], [0.40, 0.15, 0.25]])
        logging = np.array([[0.5, 0.2, 0.3], [0.2, 0.4, 0.4]])
        target = np.array([[0.1, 0.8, 0.1], [0.8, 0.1, 0.1]])
        model = mu + 0.05
        true_value = 0.5 * (target[0] @ mu[0]) + 0.5 * (target[1] @ mu[1])
        hits = dict.fromkeys(Estimator, 0)
        for _ in range(100):
            context = rng.integers(0, 2, n)
            u = rng.random(n)[:, None]
            action = np.minimum((u > np.cumsum(logging[context], axis=1)).sum(axis=1), actions - 1)
            reward = (rng.random(n) < mu[context, action]).astype(float)
            evaluation = evaluate_policy(
                reward,
                logging[context, action],
                target[context, action],
                predicted_rewards=model[context, action],
                target_expected_rewards=(target[context] * model[context]).sum(axis=1),
            )
            for estimate in evaluation.estimates:
                hits[estimate.estimator] += estimate.ci_low <= true_value <= estimate.ci_high
        assert all(count >= 90 for count in hits.values()), hits


class TestDegenerate:
    def test_no_decisions(self):
        """No logged decision gives None figures and a warning, never NaN."""
        evaluation = evaluate_policy([], [], [])
        assert evaluation.effective_sample_size is None
        assert evaluation.logged_value is None
        assert all(e.value is None for e in evaluation.estimates)
        assert StatWarning.NO_LOGGED_DECISIONS in evaluation.warnings

    def test_target_never_takes_logged_actions(self):
        """All-zero importance weights leave SNIPS None with a warning; IPS is 0."""
        evaluation = evaluate_policy([1.0, 0.0, 1.0], [0.5, 0.5, 0.5], [0.0, 0.0, 0.0])
        ips_estimate, snips_estimate = evaluation.estimates
        assert ips_estimate.value == 0.0
        assert snips_estimate.value is None
        assert StatWarning.ZERO_TARGET_WEIGHT in evaluation.warnings

    @pytest.mark.parametrize(
        ("logged", "target", "field"),
        [
            ([0.0, 0.5], [0.5, 0.5], "propensities"),
            ([0.5, 1.5], [0.5, 0.5], "propensities"),
            ([0.5, 0.5], [0.5, -0.1], "target_probabilities"),
            ([0.5, 0.5], [0.5], "target_probabilities"),
        ],
    )
    def test_invalid_probabilities_rejected(self, logged, target, field):
        """A zero propensity or an out-of-range probability raises InvalidArgument."""
        with pytest.raises(InvalidArgument) as caught:
            ips([1.0, 0.0], logged, target)
        assert caught.value.field == field
