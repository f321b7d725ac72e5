"""Pure statistics over sufficient statistics: tests, CUPED, SRM, corrections, power, OPE.

Imports only numpy and scipy. The analysis service aggregates one row per variant in SQL and
calls these functions; ``docs/statistics.md`` gives every formula, source and default.
"""

from __future__ import annotations

from ensayo.stats.bayesian import (
    MonteCarloComparison,
    Prior,
    bayesian_test,
    beta_binomial_test,
    chance_to_win,
    expected_loss,
)
from ensayo.stats.cuped import CupedAdjustment, cuped_adjust, cuped_theta, variance_reduction
from ensayo.stats.engine import compare_variants
from ensayo.stats.frequentist import (
    LiftArrays,
    ratio_test,
    t_interval,
    welch_test,
    welch_test_arrays,
)
from ensayo.stats.model import (
    AnalysisMethod,
    Comparison,
    Correction,
    CupedStats,
    Estimator,
    MetricKind,
    PolicyEstimate,
    PolicyEvaluation,
    RatioStats,
    SampleSizePlan,
    SampleStats,
    SampleStatsArrays,
    SrmResult,
    StatTest,
    StatWarning,
    Weighting,
)
from ensayo.stats.multiple import adjust_p_values, apply_correction, benjamini_hochberg, holm
from ensayo.stats.ope import (
    doubly_robust,
    effective_sample_size,
    evaluate_policy,
    importance_weights,
    ips,
    snips,
)
from ensayo.stats.power import sample_size
from ensayo.stats.sequential import (
    DEFAULT_PLANNED_UNITS_PER_ARM,
    always_valid_p_value,
    confidence_sequence_halfwidth,
    sequential_rho,
    sequential_test,
    sequential_test_arrays,
)
from ensayo.stats.srm import SRM_THRESHOLD, srm_test, stratified_srm_test
from ensayo.stats.stratified import strata_weights, stratified_test

__all__ = [
    # sufficient statistics and results
    "SampleStats",
    "SampleStatsArrays",
    "RatioStats",
    "CupedStats",
    "Comparison",
    "SrmResult",
    "SampleSizePlan",
    "PolicyEstimate",
    "PolicyEvaluation",
    "LiftArrays",
    "CupedAdjustment",
    "MonteCarloComparison",
    "Prior",
    # closed sets
    "AnalysisMethod",
    "Correction",
    "Estimator",
    "MetricKind",
    "StatTest",
    "StatWarning",
    "Weighting",
    # one metric, every variant
    "compare_variants",
    # frequentist
    "welch_test",
    "ratio_test",
    "welch_test_arrays",
    "t_interval",
    # CUPED
    "cuped_adjust",
    "cuped_theta",
    "variance_reduction",
    # Bayesian
    "bayesian_test",
    "beta_binomial_test",
    "chance_to_win",
    "expected_loss",
    # sequential
    "DEFAULT_PLANNED_UNITS_PER_ARM",
    "sequential_test",
    "sequential_test_arrays",
    "sequential_rho",
    "confidence_sequence_halfwidth",
    "always_valid_p_value",
    # stratified (bandits)
    "stratified_test",
    "strata_weights",
    # sample-ratio mismatch
    "SRM_THRESHOLD",
    "srm_test",
    "stratified_srm_test",
    # multiple comparisons
    "holm",
    "benjamini_hochberg",
    "adjust_p_values",
    "apply_correction",
    # planning
    "sample_size",
    # off-policy evaluation
    "importance_weights",
    "ips",
    "snips",
    "doubly_robust",
    "effective_sample_size",
    "evaluate_policy",
]
