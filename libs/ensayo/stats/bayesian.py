"""Bayesian comparison: a normal likelihood on the lift (gbstats' default engine), closed forms.

Chance to win, expected loss and the credible interval come from a normal posterior; for
conversion metrics a Beta-Binomial Monte Carlo gives an independent cross-check.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np
from scipy import stats as sps

from ensayo.errors import InvalidArgument
from ensayo.stats._lift import (
    LiftMoments,
    arm_from_ratio,
    arm_from_sample,
    check_alpha,
    finite_or_none,
    lift_moments,
)
from ensayo.stats.model import Comparison, RatioStats, SampleStats, StatTest, StatWarning

__all__ = [
    "MonteCarloComparison",
    "Prior",
    "bayesian_test",
    "beta_binomial_test",
    "chance_to_win",
    "expected_loss",
]


@dataclass(frozen=True, slots=True)
class Prior:
    """Normal prior on the relative lift (0.05 = +5 %), as gbstats' ``GaussianPrior``.

    ``proper=False`` (the default) means a flat prior: the posterior is the likelihood, and the
    credible interval equals the z interval. With ``proper=True`` the posterior is the
    precision-weighted mix of prior and data; for the absolute lift the prior is scaled by the
    control mean (``mean·μ_c``, ``variance·μ_c²``). ``variance`` must be finite and positive.
    """

    mean: float = 0.0
    variance: float = 1.0
    proper: bool = False

    def __post_init__(self) -> None:
        if not math.isfinite(self.mean):
            raise InvalidArgument("prior.mean", "must be finite")
        if not (math.isfinite(self.variance) and self.variance > 0):
            raise InvalidArgument("prior.variance", "must be finite and positive")


@dataclass(frozen=True, slots=True)
class MonteCarloComparison:
    """A sampled comparison and what reproduces it: the seed and the number of draws."""

    comparison: Comparison
    seed: int
    draws: int


def chance_to_win(mean: float, std_error: float, *, lower_is_better: bool = False) -> float:
    """Posterior probability that the treatment is better, for a lift ``~ N(mean, std_error²)``.

    ``Φ(mean/sd)``, or ``Φ(-mean/sd)`` when lower is better. ``std_error`` must be positive.
    """
    with np.errstate(all="ignore"):
        win = sps.norm.sf(0.0, loc=mean, scale=std_error)
    return float(1.0 - win if lower_is_better else win)


def expected_loss(mean: float, std_error: float, *, lower_is_better: bool = False) -> float:
    """Return the expected loss of shipping the treatment, ``E[max(0, -lift)]``.

    When lower is better the loss is ``E[max(0, lift)]`` instead.

    Closed form for a normal lift ``N(mu, sd²)``:
    ``E[max(0, -lift)] = sd·φ(mu/sd) - mu·Φ(-mu/sd)`` (the mean of a truncated normal times its
    mass; gbstats' ``risk`` of the treatment). In the lift's units; never negative.
    """
    z = mean / std_error
    with np.errstate(all="ignore"):  # a huge |z| underflows the density to 0, correctly
        pdf = float(sps.norm.pdf(z))
        if lower_is_better:
            return max(std_error * pdf + mean * float(sps.norm.cdf(z)), 0.0)
        return max(std_error * pdf - mean * float(sps.norm.cdf(-z)), 0.0)


def _posterior(
    estimate: float, std_error: float, prior_mean: float, prior_variance: float | None
) -> tuple[float, float]:
    """Normal-normal update; ``prior_variance is None`` is a flat prior."""
    if prior_variance is None:
        return estimate, std_error
    # numpy scalars: a square that underflows gives inf precision, not ZeroDivisionError;
    # the caller turns non-finite results into None.
    with np.errstate(all="ignore"):
        data_precision = 1.0 / np.square(np.float64(std_error))
        prior_precision = 1.0 / np.float64(prior_variance)
        precision = prior_precision + data_precision
        mean = (prior_mean * prior_precision + estimate * data_precision) / precision
        return float(mean), float(np.sqrt(1.0 / precision))


def bayesian_test(
    control: SampleStats | RatioStats,
    treatment: SampleStats | RatioStats,
    *,
    alpha: float = 0.05,
    prior: Prior | None = None,
    lower_is_better: bool = False,
    variant_key: str = "",
) -> Comparison:
    """Gaussian Bayesian comparison: chance to win, expected loss and credible intervals.

    The likelihood of each lift is normal with the frequentist standard error (Welch's for
    means, the delta method for ratios and relative lifts); with the prior it gives a normal
    posterior (gbstats' effect-based Bayesian test). ``chance_to_win`` and ``expected_loss``
    (in the metric's units) come from the absolute lift's posterior; ``ci_*`` and
    ``relative_ci_*`` are equal-tailed credible intervals at level ``1 - alpha``.
    ``absolute_lift``/``relative_lift`` stay the observed differences, so
    ``absolute_lift = treatment_mean - control_mean`` holds; with a proper prior the intervals
    centre on the shrunk posterior mean instead. ``significant`` means the absolute credible
    interval excludes 0. ``p_value`` is ``None``. Degenerate input is explained as in
    :func:`~ensayo.stats.frequentist.welch_test`. Raises ``InvalidArgument`` when ``alpha`` is
    not in (0, 1) or the arms are of different kinds.
    """
    check_alpha(alpha)
    prior = prior or Prior()
    moments = _moments(control, treatment)
    warnings = list(moments.warnings)
    z = float(sps.norm.ppf(1.0 - alpha / 2.0))
    result = Comparison(
        variant_key=variant_key,
        control_mean=finite_or_none(moments.control.mean),
        treatment_mean=finite_or_none(moments.treatment.mean),
        absolute_lift=finite_or_none(moments.absolute),
        relative_lift=finite_or_none(moments.relative),
        variance_reduction=0.0,
        warnings=moments.warnings,
        test=StatTest.BAYES_GAUSSIAN,
    )
    if moments.absolute is None or moments.absolute_se is None:
        return result
    mean_c = moments.control.mean or 0.0
    abs_prior_variance: float | None = None
    if prior.proper:
        if mean_c != 0:
            abs_prior_variance = prior.variance * mean_c * mean_c
        else:
            warnings.append(StatWarning.PRIOR_IGNORED_FOR_ABSOLUTE)
    abs_mean, abs_sd = _posterior(
        moments.absolute, moments.absolute_se, prior.mean * mean_c, abs_prior_variance
    )
    if not (math.isfinite(abs_mean) and math.isfinite(abs_sd) and abs_sd > 0):
        warnings.append(StatWarning.NOT_FINITE)
        return dataclasses.replace(result, warnings=tuple(dict.fromkeys(map(str, warnings))))
    rel_low = rel_high = None
    if moments.relative is not None and moments.relative_se is not None:
        rel_mean, rel_sd = _posterior(
            moments.relative,
            moments.relative_se,
            prior.mean,
            prior.variance if prior.proper else None,
        )
        rel_low, rel_high = rel_mean - z * rel_sd, rel_mean + z * rel_sd
    ci_low, ci_high = abs_mean - z * abs_sd, abs_mean + z * abs_sd
    return Comparison(
        variant_key=variant_key,
        control_mean=result.control_mean,
        treatment_mean=result.treatment_mean,
        absolute_lift=result.absolute_lift,
        relative_lift=result.relative_lift,
        ci_low=finite_or_none(ci_low),
        ci_high=finite_or_none(ci_high),
        relative_ci_low=finite_or_none(rel_low),
        relative_ci_high=finite_or_none(rel_high),
        chance_to_win=finite_or_none(
            chance_to_win(abs_mean, abs_sd, lower_is_better=lower_is_better)
        ),
        expected_loss=finite_or_none(
            expected_loss(abs_mean, abs_sd, lower_is_better=lower_is_better)
        ),
        variance_reduction=0.0,
        significant=bool(ci_low > 0 or ci_high < 0),
        warnings=tuple(dict.fromkeys(str(w) for w in warnings)),
        test=StatTest.BAYES_GAUSSIAN,
    )


def _moments(
    control: SampleStats | RatioStats, treatment: SampleStats | RatioStats
) -> LiftMoments:
    if isinstance(control, SampleStats) and isinstance(treatment, SampleStats):
        return lift_moments(arm_from_sample(control), arm_from_sample(treatment), welch=True)
    if isinstance(control, RatioStats) and isinstance(treatment, RatioStats):
        return lift_moments(arm_from_ratio(control), arm_from_ratio(treatment), welch=False)
    raise InvalidArgument("treatment", "must be of the same kind as control")


def _check_binary(field: str, stats: SampleStats) -> tuple[float, float]:
    successes = stats.sum
    if not (0 <= successes <= stats.n and successes == round(successes)):
        raise InvalidArgument(f"{field}.sum", "must be a whole number of conversions in [0, n]")
    if stats.sum_squares != stats.sum:
        raise InvalidArgument(f"{field}.sum_squares", "must equal sum for a conversion metric")
    return successes, stats.n - successes


# Limits of the normal approximation that sampling from the Beta posteriors does not share.
_NORMAL_ONLY = frozenset(
    {StatWarning.TOO_FEW_UNITS, StatWarning.ZERO_VARIANCE, StatWarning.RELATIVE_VARIANCE_ZERO}
)


def beta_binomial_test(
    control: SampleStats,
    treatment: SampleStats,
    *,
    rng: np.random.Generator,
    draws: int = 100_000,
    alpha: float = 0.05,
    prior_successes: float = 1.0,
    prior_failures: float = 1.0,
    lower_is_better: bool = False,
    variant_key: str = "",
) -> MonteCarloComparison:
    """Beta-Binomial Monte Carlo comparison of two conversion rates (a cross-check).

    Each arm's rate has the posterior ``Beta(prior_successes + s, prior_failures + n - s)``
    (uniform prior by default); ``draws`` joint samples give ``chance_to_win = P(p_t > p_c)``,
    ``expected_loss = E[max(0, p_c - p_t)]`` and equal-tailed credible intervals of the
    absolute and relative lift. A seed drawn from ``rng`` is recorded in the result, so the
    same seed reproduces every sample. Empty arms and a control rate of 0 are explained as in
    :func:`bayesian_test`. Raises ``InvalidArgument`` when an arm is not binary data, ``draws``
    is below 100, a prior count is not positive, or ``alpha`` is not in (0, 1).
    """
    check_alpha(alpha)
    if draws < 100:
        raise InvalidArgument("draws", "must be at least 100")
    if not (prior_successes > 0 and prior_failures > 0):
        raise InvalidArgument("prior_successes", "prior counts must be positive")
    s_c, f_c = _check_binary("control", control)
    s_t, f_t = _check_binary("treatment", treatment)
    seed = int(rng.integers(0, 2**63 - 1))
    moments = lift_moments(arm_from_sample(control), arm_from_sample(treatment), welch=True)
    base = Comparison(
        variant_key=variant_key,
        control_mean=moments.control.mean,
        treatment_mean=moments.treatment.mean,
        absolute_lift=moments.absolute,
        relative_lift=moments.relative,
        variance_reduction=0.0,
        warnings=tuple(w for w in moments.warnings if w not in _NORMAL_ONLY),
        test=StatTest.BETA_BINOMIAL_MONTE_CARLO,
    )
    if moments.absolute is None:
        return MonteCarloComparison(base, seed, draws)
    sampler = np.random.default_rng(seed)
    p_c = sampler.beta(prior_successes + s_c, prior_failures + f_c, size=draws)
    p_t = sampler.beta(prior_successes + s_t, prior_failures + f_t, size=draws)
    lift = p_t - p_c
    quantiles = [alpha / 2.0, 1.0 - alpha / 2.0]
    low, high = (float(q) for q in np.quantile(lift, quantiles))
    wins = float(np.mean(lift < 0 if lower_is_better else lift > 0))
    loss = float(np.mean(np.maximum(lift if lower_is_better else -lift, 0.0)))
    rel_low = rel_high = None
    if moments.relative is not None:
        rel_low, rel_high = (float(q) for q in np.quantile(p_t / p_c - 1.0, quantiles))
    comparison = Comparison(
        variant_key=variant_key,
        control_mean=base.control_mean,
        treatment_mean=base.treatment_mean,
        absolute_lift=base.absolute_lift,
        relative_lift=base.relative_lift,
        ci_low=low,
        ci_high=high,
        relative_ci_low=rel_low,
        relative_ci_high=rel_high,
        chance_to_win=wins,
        expected_loss=loss,
        variance_reduction=0.0,
        significant=low > 0 or high < 0,
        warnings=base.warnings,
        test=StatTest.BETA_BINOMIAL_MONTE_CARLO,
    )
    return MonteCarloComparison(comparison, seed, draws)
