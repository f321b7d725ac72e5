"""Stratified comparison for bandits: fixed-effect meta-analysis (statsmodels), Simpson."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as sps
from statsmodels.stats.meta_analysis import combine_effects

from ensayo.errors import InvalidArgument
from ensayo.stats import (
    SampleStats,
    StatTest,
    StatWarning,
    Weighting,
    stratified_test,
    welch_test,
)


def _strata(seed: int):
    rng = np.random.default_rng(seed)
    sizes = [(400, 400), (150, 650), (100, 900)]
    base = [5.0, 6.0, 7.5]
    control, treatment = [], []
    for (n_c, n_t), level in zip(sizes, base, strict=True):
        control.append(rng.normal(level, 2.0, n_c))
        treatment.append(rng.normal(level + 0.3, 2.5, n_t))
    return control, treatment


class TestInverseVariance:
    def test_matches_fixed_effect_meta_analysis(self):
        """The combined lift and CI equal statsmodels' combine_effects fixed-effect row."""
        control, treatment = _strata(1)
        effects = np.array([t.mean() - c.mean() for c, t in zip(control, treatment, strict=True)])
        variances = np.array(
            [
                c.var(ddof=1) / c.size + t.var(ddof=1) / t.size
                for c, t in zip(control, treatment, strict=True)
            ]
        )
        reference = combine_effects(effects, variances, use_t=False).summary_frame()
        fixed = reference.loc["fixed effect"]
        result = stratified_test(
            [SampleStats.from_values(c) for c in control],
            [SampleStats.from_values(t) for t in treatment],
        )
        assert result.test is StatTest.Z_STRATIFIED
        assert result.absolute_lift == pytest.approx(fixed["eff"])
        assert result.ci_low == pytest.approx(fixed["ci_low"])
        assert result.ci_high == pytest.approx(fixed["ci_upp"])
        assert result.p_value == pytest.approx(2 * sps.norm.sf(fixed["eff"] / fixed["sd_eff"]))

    def test_single_stratum_is_the_z_version_of_welch(self):
        """With one stratum the combined lift and SE equal Welch's."""
        control, treatment = _strata(2)
        c, t = SampleStats.from_values(control[0]), SampleStats.from_values(treatment[0])
        one = stratified_test([c], [t])
        welch = welch_test(c, t)
        assert one.absolute_lift == pytest.approx(welch.absolute_lift)
        assert one.relative_lift == pytest.approx(welch.relative_lift)


class TestUnitWeights:
    def test_post_stratified_estimate(self):
        """Unit weighting gives Σ (n_p / n)·lift_p, computed directly on the raw data."""
        control, treatment = _strata(3)
        units = np.array([c.size + t.size for c, t in zip(control, treatment, strict=True)])
        lifts = np.array([t.mean() - c.mean() for c, t in zip(control, treatment, strict=True)])
        result = stratified_test(
            [SampleStats.from_values(c) for c in control],
            [SampleStats.from_values(t) for t in treatment],
            weighting=Weighting.UNITS,
        )
        assert result.absolute_lift == pytest.approx(units @ lifts / units.sum())

    def test_removes_simpsons_paradox(self):
        """Traffic shifting to treatment as the baseline rises biases pooling, not strata."""
        control, treatment = _strata(4)
        pooled = welch_test(
            SampleStats.from_values(np.concatenate(control)),
            SampleStats.from_values(np.concatenate(treatment)),
        )
        stratified = stratified_test(
            [SampleStats.from_values(c) for c in control],
            [SampleStats.from_values(t) for t in treatment],
            weighting=Weighting.UNITS,
        )
        assert pooled.absolute_lift > 0.8  # true lift is 0.3
        assert stratified.ci_low < 0.3 < stratified.ci_high


class TestStratifiedDegenerate:
    def test_small_stratum_dropped_with_warning(self):
        """A stratum with one unit in an arm is left out and named in the warnings."""
        control, treatment = _strata(5)
        result = stratified_test(
            [SampleStats.from_values(c) for c in control] + [SampleStats(1, 5.0, 25.0)],
            [SampleStats.from_values(t) for t in treatment] + [SampleStats(3, 15.0, 80.0)],
        )
        assert StatWarning.STRATUM_DROPPED in result.warnings
        assert result.p_value is not None

    def test_no_usable_stratum(self):
        """No stratum with two units per arm gives an empty comparison and a warning."""
        result = stratified_test([SampleStats(1, 1, 1)], [SampleStats(1, 0, 0)])
        assert result.absolute_lift is None
        assert StatWarning.NO_USABLE_STRATUM in result.warnings

    def test_mismatched_strata_rejected(self):
        """Different numbers of strata per arm raise InvalidArgument."""
        with pytest.raises(InvalidArgument):
            stratified_test([SampleStats(2, 1, 1)], [])
