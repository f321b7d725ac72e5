"""Linear contextual bandits: Sherman-Morrison updates, LinUCB/LinTS scores, featurisation and a
segment simulation where the best action differs by segment."""

from __future__ import annotations

import numpy as np
import pytest

from ensayo.bandits import (
    ExplorationPolicy,
    ExplorationSpec,
    FeatureSpec,
    coefficients,
    featurize,
    featurize_batch,
    inclusion_probabilities,
    lin_ts_sample,
    lin_ts_sampler,
    lin_ucb_scores,
    linear_prior,
    predict,
    select_batch,
    update,
    update_batch,
)
from ensayo.errors import InvalidArgument


def trained_model(seed: int = 0, actions: int = 3, d: int = 4, n: int = 300, ridge: float = 2.0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d))
    a = rng.integers(0, actions, n)
    r = rng.normal(size=n)
    return update_batch(linear_prior(actions, d, ridge), a, x, r), x, a, r


class TestShermanMorrison:
    def test_inverse_equals_numpy_inverse(self):
        """After 300 rank-one updates A⁻¹ equals np.linalg.inv(λI + XᵀX) for every action."""
        model, x, a, _ = trained_model()
        for action in range(3):
            rows = x[a == action]
            gram = 2.0 * np.eye(4) + rows.T @ rows
            np.testing.assert_allclose(model.a_inv[action], np.linalg.inv(gram), atol=1e-12)

    def test_coefficients_equal_ridge_regression(self):
        """θ_a = A⁻¹b equals the ridge solution solve(λI + XᵀX, Xᵀy)."""
        model, x, a, r = trained_model()
        for action in range(3):
            rows, y = x[a == action], r[a == action]
            ridge = np.linalg.solve(2.0 * np.eye(4) + rows.T @ rows, rows.T @ y)
            np.testing.assert_allclose(coefficients(model)[action], ridge, atol=1e-10)
        assert model.counts.tolist() == [int((a == i).sum()) for i in range(3)]

    def test_update_is_pure(self):
        """update() returns a new model and leaves its input untouched."""
        model = linear_prior(2, 3)
        before = model.a_inv.copy()
        updated = update(model, 1, [1.0, 2.0, 3.0], 1.0)
        np.testing.assert_array_equal(model.a_inv, before)
        assert updated.counts.tolist() == [0, 1]
        assert not np.allclose(updated.a_inv[1], before[1])

    @pytest.mark.parametrize(
        ("action", "x", "reward", "field"),
        [
            (5, [1.0, 0.0], 1.0, "action_index"),
            (0, [1.0], 1.0, "x"),
            (0, [1.0, 0.0], np.nan, "reward"),
        ],
    )
    def test_bad_observations_are_rejected(self, action, x, reward, field):
        """An unknown action, a wrong-length context or a NaN reward raise InvalidArgument."""
        with pytest.raises(InvalidArgument) as info:
            update(linear_prior(2, 2), action, x, reward)
        assert info.value.field == field


class TestLinUCB:
    def test_scores_match_the_direct_formula(self):
        """Score = xᵀθ + alpha·sqrt(xᵀA⁻¹x), θ and A⁻¹x by np.linalg.solve (Li et al. 2010)."""
        model, x, a, r = trained_model(seed=3)
        context = np.array([0.5, -1.0, 2.0, 0.1])
        expected = []
        for action in range(3):
            rows, y = x[a == action], r[a == action]
            gram = 2.0 * np.eye(4) + rows.T @ rows
            theta = np.linalg.solve(gram, rows.T @ y)
            bonus = np.sqrt(context @ np.linalg.solve(gram, context))
            expected.append(context @ theta + 0.7 * bonus)
        np.testing.assert_allclose(lin_ucb_scores(model, context, 0.7), expected, rtol=1e-10)

    def test_batch_equals_one_call_per_context(self):
        """Scoring (n, d) contexts at once equals scoring each row alone."""
        model, x, _, _ = trained_model(seed=4)
        batch = lin_ucb_scores(model, x[:25], 1.3)
        assert batch.shape == (25, 3)
        for i in range(25):
            np.testing.assert_allclose(batch[i], lin_ucb_scores(model, x[i], 1.3), rtol=1e-12)

    def test_untrained_model_scores_the_prior(self):
        """With no data the mean is 0 and the bonus is alpha·|x|/sqrt(λ)."""
        scores = lin_ucb_scores(linear_prior(2, 2, ridge=4.0), [3.0, 4.0], 1.0)
        np.testing.assert_allclose(scores, [2.5, 2.5])


class TestLinTS:
    def test_marginal_matches_full_parameter_sampling(self):
        """xᵀθ̃ drawn per action matches drawing θ̃ ~ N(θ, v²A⁻¹) in full (Agrawal & Goyal 2013)."""
        model, _, _, _ = trained_model(seed=5)
        context = np.array([1.0, 0.3, -0.2, 0.8])
        ours = lin_ts_sample(model, context, np.random.default_rng(1), 0.5, draws=100_000)
        theta = coefficients(model)
        rng = np.random.default_rng(2)
        for action in range(3):
            full = rng.multivariate_normal(theta[action], 0.25 * model.a_inv[action], 100_000)
            reference = full @ context
            se = reference.std() / np.sqrt(100_000)
            assert abs(ours[:, action].mean() - reference.mean()) < 5 * se
            assert ours[:, action].std() == pytest.approx(reference.std(), rel=0.02)

    def test_shapes(self):
        """One context gives (K,), draws give (draws, K), a batch of contexts gives (n, K)."""
        model, x, _, _ = trained_model(seed=6)
        rng = np.random.default_rng(0)
        assert lin_ts_sample(model, x[0], rng, 1.0).shape == (3,)
        assert lin_ts_sample(model, x[0], rng, 1.0, draws=7).shape == (7, 3)
        assert lin_ts_sample(model, x[:9], rng, 1.0).shape == (9, 3)

    def test_zero_v_is_greedy(self):
        """With v = 0 the draw equals the predicted mean."""
        model, x, _, _ = trained_model(seed=7)
        draw = lin_ts_sample(model, x[0], np.random.default_rng(0), 0.0)
        np.testing.assert_allclose(draw, predict(model, x[0]))


class TestFeaturize:
    def test_stable_order_one_hot_and_bias(self):
        """Features follow the spec: bias, numeric from context or attributes, one-hot levels."""
        spec = FeatureSpec.build(
            ["hour", "orders"], {"country": ["ES", "MX"], "vip": [True, False], "tags": ["new"]}
        )
        assert spec.names == (
            "bias", "hour", "orders", "country=ES", "country=MX", "vip=true", "vip=false",
            "tags=new",
        )  # fmt: skip
        x = featurize(
            {"hour": 13.0},
            {"orders": 4, "country": "MX", "vip": False, "tags": ["old", "new"]},
            spec,
        )
        np.testing.assert_array_equal(x, [1.0, 13.0, 4.0, 0.0, 1.0, 0.0, 1.0, 1.0])

    def test_missing_values_are_zero(self):
        """Absent numbers and unseen categories give 0; only the bias is 1."""
        x = featurize({}, {"country": "FR"}, ["bias", "hour", "country=ES"])
        np.testing.assert_array_equal(x, [1.0, 0.0, 0.0])

    def test_context_wins_over_attributes(self):
        """A name present in both context and attributes takes the context value."""
        assert featurize({"age": 2.0}, {"age": 40}, ["age"]).tolist() == [2.0]

    def test_whole_float_matches_integer_level(self):
        """A Struct number 3.0 matches the one-hot level "3"."""
        assert featurize({}, {"tier": 3.0}, ["tier=3"]).tolist() == [1.0]

    @pytest.mark.parametrize(
        ("context", "attributes", "field"),
        [({"hour": float("nan")}, {}, "context.hour"), ({}, {"hour": "noon"}, "attributes.hour")],
    )
    def test_non_numbers_are_rejected(self, context, attributes, field):
        """A NaN or a string where a number is expected raises InvalidArgument naming it."""
        with pytest.raises(InvalidArgument) as info:
            featurize(context, attributes, ["hour"])
        assert info.value.field == field

    def test_duplicate_names_are_rejected(self):
        """A spec naming a feature twice is invalid."""
        with pytest.raises(InvalidArgument):
            FeatureSpec(("bias", "bias"))

    def test_batch_stacks_rows(self):
        """featurize_batch equals featurize per unit, stacked."""
        spec = FeatureSpec.build(["hour"], {"country": ["ES"]})
        batch = featurize_batch([{"hour": 1.0}, {}], [{"country": "ES"}, {}], spec)
        np.testing.assert_array_equal(batch, [[1.0, 1.0, 1.0], [1.0, 0.0, 0.0]])


# Success rates per segment (rows) and action (columns): the best action differs by segment.
RATES = np.array(
    [
        [0.10, 0.30, 0.15, 0.05],
        [0.25, 0.05, 0.10, 0.15],
        [0.05, 0.10, 0.12, 0.35],
    ]
)
SEGMENTS = ("a", "b", "c")
SPEC = FeatureSpec.build(categorical={"segment": SEGMENTS})


class TestSegmentSimulation:
    rounds = 60
    per_segment = 20

    def contexts(self):
        return featurize_batch([{}] * 3, [{"segment": s} for s in SEGMENTS], SPEC)

    def run(self, score_and_select):
        rng = np.random.default_rng(2024)
        model = linear_prior(4, len(SPEC), ridge=1.0)
        contexts = self.contexts()
        segment = np.repeat(np.arange(3), self.per_segment)
        x = contexts[segment]
        for _ in range(self.rounds):
            chosen, propensities, floor = score_and_select(model, x, segment, rng)
            assert propensities.min() >= floor - 1e-12
            rewards = (rng.random(segment.size) < RATES[segment, chosen]).astype(float)
            model = update_batch(model, chosen, x, rewards)
        return model, contexts

    def test_lin_ucb_learns_the_best_action_per_segment(self):
        """LinUCB + epsilon-greedy: greedy choice is each segment's best; propensities ≥ floor."""
        spec = ExplorationSpec(ExplorationPolicy.EPSILON_GREEDY, epsilon=0.1, uniform_mix=0.1)

        def step(model, x, segment, rng):
            scores = lin_ucb_scores(model, x, alpha=0.5)
            picked = select_batch(spec, scores, 1, rng)
            return picked.indices[:, 0], picked.propensities[:, 0], spec.propensity_floor(4, 1)

        model, contexts = self.run(step)
        assert predict(model, contexts).argmax(axis=1).tolist() == RATES.argmax(axis=1).tolist()
        for x in contexts:  # every action, chosen or not, keeps at least the floor
            everyone = inclusion_probabilities(spec, lin_ucb_scores(model, x, 0.5), 1)
            assert everyone.values.min() >= spec.propensity_floor(4, 1) - 1e-12

    def test_lin_ts_learns_the_best_action_per_segment(self):
        """LinTS + Thompson: greedy choice is each segment's best; propensities ≥ floor."""
        spec = ExplorationSpec(ExplorationPolicy.THOMPSON, uniform_mix=0.1, propensity_draws=200)

        def step(model, x, segment, rng):
            chosen, propensities = [], []
            for s, context in enumerate(self.contexts()):
                rows = int((segment == s).sum())
                sampler = lin_ts_sampler(model, context, v=0.3)
                picked = select_batch(spec, np.zeros((rows, 4)), 1, rng, sampler=sampler)
                chosen.append(picked.indices[:, 0])
                propensities.append(picked.propensities[:, 0])
            return (
                np.concatenate(chosen),
                np.concatenate(propensities),
                spec.propensity_floor(4, 1),
            )

        model, contexts = self.run(step)
        assert predict(model, contexts).argmax(axis=1).tolist() == RATES.argmax(axis=1).tolist()
