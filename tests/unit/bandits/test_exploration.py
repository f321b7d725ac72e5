"""Exploration policies: computed propensities against brute-force enumeration, integrals and
100,000 seeded decisions per policy; floors, reproducibility and validation."""

from __future__ import annotations

import itertools
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy import integrate, special, stats

from ensayo.bandits import (
    BetaParams,
    ExplorationPolicy,
    ExplorationSpec,
    beta_sampler,
    gaussian_sampler,
    inclusion_probabilities,
    rng_for,
    seed_for,
    select,
    select_batch,
)
from ensayo.errors import InvalidArgument

DECISIONS = 100_000
SCORES = np.array([3.0, 1.0, 3.0, 0.0, 2.0])  # two tied leaders


def brute_force_epsilon(scores, m, epsilon):
    """Inclusion by enumerating every tie order and every slot outcome of the policy."""
    k = len(scores)
    orders = [
        p for p in itertools.permutations(range(k))
        if all(scores[p[i]] >= scores[p[i + 1]] for i in range(k - 1))
    ]  # fmt: skip
    result = np.zeros(k)

    def walk(remaining, slots, prob, weight):
        if slots == 0:
            return
        for position, candidate in enumerate(remaining):
            p = epsilon / len(remaining) + (1 - epsilon if position == 0 else 0.0)
            result[candidate] += weight * prob * p
            rest = remaining[:position] + remaining[position + 1 :]
            walk(rest, slots - 1, prob * p, weight)

    for order in orders:
        walk(list(order), m, 1.0, 1.0 / len(orders))
    return result


def brute_force_plackett_luce(scores, m, temperature):
    """Inclusion by summing the Plackett-Luce probability of every ordered m-tuple.

    The remaining mass is re-summed over the candidates left (never W - w), so it is exact
    even when one weight dwarfs the rest.
    """
    w = np.exp((np.asarray(scores) - np.max(scores)) / temperature)
    k = len(w)
    result = np.zeros(k)
    for tup in itertools.permutations(range(k), m):
        prob, left = 1.0, set(range(k))
        for c in tup:
            prob *= w[c] / sum(w[j] for j in left)
            left.discard(c)
        result[list(tup)] += prob
    return result


def beta_inclusion_exact(alpha, beta, m):
    """Thompson inclusion of Beta arms by quad: top-1 as ∫ f_i Π F_j, top-2 as 1 - P(worst)."""
    dists = [stats.beta(a, b) for a, b in zip(alpha, beta, strict=True)]
    out = []
    for i, di in enumerate(dists):
        others = [d for j, d in enumerate(dists) if j != i]
        if m == 1:
            f = lambda x, di=di, others=others: di.pdf(x) * np.prod([d.cdf(x) for d in others])  # noqa: E731
            out.append(integrate.quad(f, 0, 1, limit=200)[0])
        else:
            f = lambda x, di=di, others=others: di.pdf(x) * np.prod([d.sf(x) for d in others])  # noqa: E731
            out.append(1.0 - integrate.quad(f, 0, 1, limit=200)[0])
    return np.array(out)


def frequencies(batch, k):
    return np.bincount(batch.indices.ravel(), minlength=k) / batch.indices.shape[0]


def assert_within_3_se(observed, expected, n=DECISIONS):
    se = np.sqrt(expected * (1 - expected) / n)
    assert np.all(np.abs(observed - expected) <= 3 * se + 1e-12), (observed, expected, se)


class TestRngFor:
    def test_seed_is_pinned(self):
        """seed_for is BLAKE2b-64 of the id: a pinned vector, so it never drifts."""
        assert seed_for("decision-1") == 10022324887962695517
        assert seed_for("") == 910351544599071968

    def test_same_id_same_stream_different_id_other_stream(self):
        """The same decision id replays the same draws; another id gives other draws."""
        np.testing.assert_array_equal(rng_for("d-1").random(4), rng_for("d-1").random(4))
        assert not np.array_equal(rng_for("d-1").random(4), rng_for("d-2").random(4))

    def test_stable_across_processes(self):
        """A fresh interpreter with another PYTHONHASHSEED makes the same choice for an id."""
        code = (
            "import numpy as np; from ensayo.bandits import *;"
            "spec = ExplorationSpec(ExplorationPolicy.SOFTMAX);"
            "s = select(spec, np.arange(8.0), 3, rng_for('x'));"
            "print(list(s.indices))"
        )
        libs = str(Path(__file__).resolve().parents[3] / "libs")
        out = subprocess.run(
            [sys.executable, "-c", code],
            env={"PYTHONPATH": libs, "PYTHONHASHSEED": "12345"},
            capture_output=True,
            text=True,
            check=True,
        )
        here = select(ExplorationSpec(ExplorationPolicy.SOFTMAX), np.arange(8.0), 3, rng_for("x"))
        assert out.stdout.strip() == str(list(here.indices))


class TestEpsilonGreedy:
    def test_single_slot_closed_form_with_ties(self):
        """m = 1: (1 - ε)·1[best]/ties + ε/k for every candidate."""
        spec = ExplorationSpec(ExplorationPolicy.EPSILON_GREEDY, epsilon=0.2)
        p = inclusion_probabilities(spec, SCORES, 1)
        np.testing.assert_allclose(p.values, [0.4 + 0.04, 0.04, 0.4 + 0.04, 0.04, 0.04])
        assert p.exact

    @pytest.mark.parametrize("m", [2, 3, 4])
    def test_dynamic_programme_equals_enumeration(self, m):
        """The O(m·k²) DP equals enumerating every tie order and slot outcome."""
        spec = ExplorationSpec(ExplorationPolicy.EPSILON_GREEDY, epsilon=0.35)
        p = inclusion_probabilities(spec, SCORES, m)
        np.testing.assert_allclose(p.values, brute_force_epsilon(SCORES, m, 0.35), atol=1e-13)
        assert p.values.sum() == pytest.approx(m)

    @pytest.mark.parametrize(("m", "mix"), [(1, 0.0), (2, 0.0), (3, 0.2)])
    def test_frequencies_match_propensities(self, m, mix):
        """100,000 seeded decisions: each action's frequency is within 3 SE of its propensity."""
        spec = ExplorationSpec(ExplorationPolicy.EPSILON_GREEDY, epsilon=0.3, uniform_mix=mix)
        scores = np.broadcast_to(SCORES, (DECISIONS, SCORES.size))
        batch = select_batch(spec, scores, m, np.random.default_rng(100 + m))
        expected = inclusion_probabilities(spec, SCORES, m).values
        assert_within_3_se(frequencies(batch, SCORES.size), expected)
        chosen_expected = expected[batch.indices]
        np.testing.assert_allclose(batch.propensities, chosen_expected)

    def test_zero_epsilon_is_greedy(self):
        """ε = 0 returns the best candidates with propensity 1 (ties split)."""
        spec = ExplorationSpec(ExplorationPolicy.EPSILON_GREEDY, epsilon=0.0)
        selection = select(spec, [0.1, 0.9, 0.5], 2, rng_for("g"))
        assert selection.indices.tolist() == [1, 2]
        np.testing.assert_allclose(selection.propensities, [1.0, 1.0])


class TestSoftmax:
    def test_single_slot_is_scipy_softmax(self):
        """m = 1: propensity = scipy.special.softmax(scores / τ), mixed with η/k."""
        spec = ExplorationSpec(ExplorationPolicy.SOFTMAX, temperature=0.5, uniform_mix=0.1)
        p = inclusion_probabilities(spec, SCORES, 1)
        np.testing.assert_allclose(p.values, 0.9 * special.softmax(SCORES / 0.5) + 0.1 / 5)

    @pytest.mark.parametrize("temperature", [0.3, 1.0, 4.0])
    def test_two_slots_equal_plackett_luce_enumeration(self, temperature):
        """m = 2: the closed form equals summing every ordered pair's Plackett-Luce probability."""
        spec = ExplorationSpec(ExplorationPolicy.SOFTMAX, temperature=temperature)
        p = inclusion_probabilities(spec, SCORES, 2)
        expected = brute_force_plackett_luce(SCORES, 2, temperature)
        np.testing.assert_allclose(p.values, expected, rtol=1e-12)
        assert p.exact

    def test_two_slots_without_cancellation_when_one_dominates(self):
        """A leader 50 nats ahead: the others' chance to be second is still exact."""
        scores = np.array([0.0, -50.0, -51.0, -52.0, -53.0])
        p = inclusion_probabilities(ExplorationSpec(ExplorationPolicy.SOFTMAX), scores, 2)
        np.testing.assert_allclose(p.values, brute_force_plackett_luce(scores, 2, 1.0), rtol=1e-12)
        assert round(p.values[1], 6) == 0.643914

    def test_three_slots_monte_carlo_within_its_error(self):
        """m = 3 is estimated; the estimate is within 4 of its own SE of the enumeration."""
        spec = ExplorationSpec(ExplorationPolicy.SOFTMAX, temperature=0.8, propensity_draws=20_000)
        p = inclusion_probabilities(spec, SCORES, 3, np.random.default_rng(9))
        expected = brute_force_plackett_luce(SCORES, 3, 0.8)
        assert not p.exact
        assert np.all(np.abs(p.values - expected) <= 4 * p.standard_errors + 1e-12)
        np.testing.assert_allclose(
            p.standard_errors, np.sqrt(p.values * (1 - p.values) / 20_000), rtol=1e-12
        )

    @pytest.mark.parametrize(("m", "mix"), [(1, 0.0), (2, 0.1), (3, 0.0)])
    def test_frequencies_match_propensities(self, m, mix):
        """100,000 seeded decisions: frequencies are within 3 SE of the exact inclusion."""
        spec = ExplorationSpec(ExplorationPolicy.SOFTMAX, temperature=0.8, uniform_mix=mix)
        scores = np.broadcast_to(SCORES, (DECISIONS, SCORES.size))
        batch = select_batch(spec, scores, m, np.random.default_rng(200 + m))
        exact = (1 - mix) * brute_force_plackett_luce(SCORES, m, 0.8) + mix * m / SCORES.size
        assert_within_3_se(frequencies(batch, SCORES.size), exact)


class TestThompson:
    alpha = np.array([12.0, 20.0, 15.0])
    beta = np.array([40.0, 45.0, 38.0])

    def sampler(self):
        return beta_sampler(BetaParams(self.alpha, self.beta))

    @pytest.mark.parametrize(("m", "mix"), [(1, 0.0), (2, 0.15)])
    def test_frequencies_and_estimate_match_the_integral(self, m, mix):
        """100,000 decisions and the 2,000-draw estimate both match the exact quad integral."""
        spec = ExplorationSpec(ExplorationPolicy.THOMPSON, uniform_mix=mix)
        exact = (1 - mix) * beta_inclusion_exact(self.alpha, self.beta, m) + mix * m / 3
        batch = select_batch(
            spec,
            np.zeros((DECISIONS, 3)),
            m,
            np.random.default_rng(300 + m),
            sampler=self.sampler(),
        )
        assert_within_3_se(frequencies(batch, 3), exact)
        estimate = inclusion_probabilities(
            spec, np.zeros(3), m, np.random.default_rng(7), sampler=self.sampler()
        )
        assert not estimate.exact
        assert np.all(np.abs(estimate.values - exact) <= 4 * estimate.standard_errors + 1e-12)

    def test_two_arm_single_slot_matches_beta_integral(self):
        """m = 1, two arms: P(B chosen) = ∫ f_B·F_A (scipy quad), within 3 SE over 100,000."""
        alpha, beta = np.array([5.0, 8.0]), np.array([20.0, 22.0])
        exact_b = integrate.quad(
            lambda x: stats.beta(8, 22).pdf(x) * stats.beta(5, 20).cdf(x), 0, 1
        )[0]
        spec = ExplorationSpec(ExplorationPolicy.THOMPSON)
        batch = select_batch(
            spec,
            np.zeros((DECISIONS, 2)),
            1,
            np.random.default_rng(31),
            sampler=beta_sampler(BetaParams(alpha, beta)),
        )
        assert_within_3_se(frequencies(batch, 2), np.array([1 - exact_b, exact_b]))

    def test_chosen_propensity_is_never_zero(self):
        """A chosen action whose Monte Carlo estimate is 0 reports 1/(draws + 1) instead."""

        def drifting(rng, draws):  # the decision row favours 0, every later draw favours 1
            row = [1.0, 0.0] if draws == 1 else [0.0, 1.0]
            return np.tile(row, (draws, 1))

        spec = ExplorationSpec(ExplorationPolicy.THOMPSON, propensity_draws=100)
        selection = select(spec, [0.0, 0.0], 1, rng_for("z"), sampler=drifting)
        assert selection.indices.tolist() == [0]
        np.testing.assert_allclose(selection.propensities, [1 / 101])


class TestFloors:
    @pytest.mark.parametrize("policy", list(ExplorationPolicy))
    def test_every_candidate_keeps_the_mixture_floor(self, policy):
        """With η = 0.2, every candidate's propensity is ≥ η·m/k even with extreme scores."""
        scores = np.array([100.0, 0.0, -100.0, -100.0, 5.0, 7.0])
        spec = ExplorationSpec(policy, uniform_mix=0.2, epsilon=0.0, temperature=0.01)
        sampler = gaussian_sampler(scores, np.full(6, 1e-6))
        for m in (1, 2, 3):
            p = inclusion_probabilities(spec, scores, m, rng_for("f"), sampler=sampler)
            assert p.values.min() >= spec.propensity_floor(6, m) - 1e-12
            assert p.values.sum() == pytest.approx(m)

    def test_full_mixture_is_uniform(self):
        """η = 1 gives m/k to every candidate."""
        spec = ExplorationSpec(ExplorationPolicy.SOFTMAX, uniform_mix=1.0)
        p = inclusion_probabilities(spec, SCORES, 2)
        np.testing.assert_allclose(p.values, 2 / 5)


class TestSelect:
    @pytest.mark.parametrize("policy", list(ExplorationPolicy))
    def test_batch_with_own_generators_equals_single_calls(self, policy):
        """select_batch with rng_for(id) per row equals select(rng_for(id)) row by row."""
        spec = ExplorationSpec(policy, uniform_mix=0.1, propensity_draws=300)
        scores = np.random.default_rng(0).normal(size=(6, 7))
        sampler = gaussian_sampler(np.linspace(0, 1, 7), np.full(7, 0.5))
        ids = [f"decision-{i}" for i in range(6)]
        batch = select_batch(spec, scores, 3, [rng_for(i) for i in ids], sampler=sampler)
        for row, decision_id in enumerate(ids):
            one = select(spec, scores[row], 3, rng_for(decision_id), sampler=sampler)
            np.testing.assert_array_equal(batch.indices[row], one.indices)
            np.testing.assert_array_equal(batch.propensities[row], one.propensities)
            assert bool(batch.explored[row]) == one.explored

    def test_same_decision_id_replays(self):
        """The same id, scores and spec give the same list and propensities."""
        spec = ExplorationSpec(ExplorationPolicy.SOFTMAX, temperature=2.0)
        scores = np.linspace(0.0, 1.0, 100)
        first = select(spec, scores, 5, rng_for("replay"))
        second = select(spec, scores, 5, rng_for("replay"))
        np.testing.assert_array_equal(first.indices, second.indices)
        np.testing.assert_array_equal(first.propensities, second.propensities)
        assert len(set(first.indices.tolist())) == 5

    def test_no_candidates_gives_an_empty_list(self):
        """k = 0 returns no action and draws nothing."""
        selection = select(ExplorationSpec(ExplorationPolicy.SOFTMAX), [], 3, rng_for("e"))
        assert selection.indices.size == 0

    def test_more_slots_than_candidates_returns_all(self):
        """max_actions ≥ k returns every candidate with propensity 1."""
        spec = ExplorationSpec(ExplorationPolicy.EPSILON_GREEDY)
        selection = select(spec, [0.3, 0.1], 5, rng_for("all"))
        assert sorted(selection.indices.tolist()) == [0, 1]
        np.testing.assert_array_equal(selection.propensities, [1.0, 1.0])

    @pytest.mark.parametrize(
        ("kwargs", "field"),
        [
            ({"scores": [1.0, np.nan]}, "scores"),
            ({"max_actions": 0}, "max_actions"),
            ({"policy": ExplorationPolicy.THOMPSON}, "sampler"),
            (
                {"policy": ExplorationPolicy.THOMPSON, "sampler": gaussian_sampler([0.0], [1.0])},
                "sampler",
            ),
        ],
    )
    def test_bad_requests_are_rejected(self, kwargs, field):
        """NaN scores, max_actions < 1, Thompson without or with a misshapen sampler raise."""
        policy = kwargs.pop("policy", ExplorationPolicy.SOFTMAX)
        args = {"scores": [1.0, 2.0], "max_actions": 1, **kwargs}
        with pytest.raises(InvalidArgument) as info:
            select(ExplorationSpec(policy), rng=rng_for("bad"), **args)
        assert info.value.field == field

    def test_hundred_candidates_in_one_call(self):
        """100 candidates, 3 slots: one call returns 3 distinct actions with valid propensities."""
        scores = np.random.default_rng(1).normal(size=100)
        for policy in ExplorationPolicy:
            spec = ExplorationSpec(policy, uniform_mix=0.05)
            sampler = gaussian_sampler(scores, np.ones(100))
            selection = select(spec, scores, 3, rng_for(f"big-{policy}"), sampler=sampler)
            assert len(set(selection.indices.tolist())) == 3
            assert np.all((selection.propensities > 0) & (selection.propensities <= 1))
            assert math.isfinite(float(selection.standard_errors.sum()))
