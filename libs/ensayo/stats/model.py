"""Sufficient statistics that merge with ``+``, and the result records of every statistic.

The analysis service aggregates one row of sufficient statistics per variant in SQL; the pure
functions of this package turn those rows into the records below, which map one to one onto
the report's messages (CONTRACT.md, ``AnalysisService``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ensayo.errors import InvalidArgument

__all__ = [
    "AnalysisMethod",
    "Correction",
    "Estimator",
    "MetricKind",
    "StatTest",
    "StatWarning",
    "Weighting",
    "SampleStats",
    "SampleStatsArrays",
    "RatioStats",
    "CupedStats",
    "Comparison",
    "SrmResult",
    "SampleSizePlan",
    "PolicyEstimate",
    "PolicyEvaluation",
]


class AnalysisMethod(StrEnum):
    """Which inference a report uses (``AnalysisMethod`` in the contract)."""

    FREQUENTIST = "frequentist"
    BAYESIAN = "bayesian"
    SEQUENTIAL = "sequential"


class Correction(StrEnum):
    """Multiple-comparison correction applied to a report's p-values."""

    NONE = "none"
    HOLM = "holm"
    BENJAMINI_HOCHBERG = "benjamini_hochberg"


class MetricKind(StrEnum):
    """Kind of metric (``Metric.kind`` in the contract)."""

    CONVERSION = "conversion"
    MEAN = "mean"
    RATIO = "ratio"


class Estimator(StrEnum):
    """Off-policy estimators (Saito et al. 2020, Open Bandit Pipeline's names)."""

    IPS = "IPS"
    SNIPS = "SNIPS"
    DR = "DR"


class Weighting(StrEnum):
    """How per-stratum estimates are combined (see ``ensayo.stats.stratified``)."""

    INVERSE_VARIANCE = "inverse_variance"
    UNITS = "units"


class StatTest(StrEnum):
    """Which test produced a comparison, so a reader knows how to read its numbers."""

    WELCH_T = "welch_t"
    Z_DELTA_METHOD = "z_delta_method"
    Z_STRATIFIED = "z_stratified"
    BAYES_GAUSSIAN = "bayes_gaussian"
    BETA_BINOMIAL_MONTE_CARLO = "beta_binomial_monte_carlo"
    CONFIDENCE_SEQUENCE = "confidence_sequence"


class StatWarning(StrEnum):
    """Why a result is partly or wholly empty; the value is the sentence shown to people."""

    NO_CONTROL_UNITS = "control has no units: nothing to compare"
    NO_TREATMENT_UNITS = "treatment has no units: nothing to compare"
    TOO_FEW_UNITS = "fewer than 2 units in an arm: variance, intervals and p-value are undefined"
    ZERO_VARIANCE = "no variance in either arm: intervals and p-value are undefined"
    CONTROL_MEAN_ZERO = "control mean is 0: relative figures are undefined"
    RELATIVE_VARIANCE_ZERO = (
        "delta-method variance of the relative lift is 0: no relative interval"
    )
    DENOMINATOR_ZERO = "ratio denominator sums to 0 in an arm: the ratio is undefined"
    COVARIATE_CONSTANT = "CUPED covariate has no variance within variants: CUPED not applied"
    CUPED_NOT_FOR_RATIO = "CUPED is not applied to ratio metrics"
    NO_COVARIATE = "metric has no covariate: CUPED not applied"
    PRIOR_IGNORED_FOR_ABSOLUTE = (
        "control mean is 0: the relative prior cannot be scaled, absolute lift uses a flat prior"
    )
    NOT_FINITE = "a figure falls outside floating-point range and is left unset"
    NO_UNITS = "no units observed: the check cannot run"
    UNEXPECTED_UNITS = "units observed in a variant whose intended weight is 0"
    STRATUM_DROPPED = "a stratum with fewer than 2 units in an arm was left out"
    NO_USABLE_STRATUM = "no stratum has 2 or more units in both arms"
    NO_LOGGED_DECISIONS = "no logged decisions: nothing to evaluate"
    TOO_FEW_DECISIONS = "fewer than 2 logged decisions: intervals are undefined"
    ZERO_TARGET_WEIGHT = "the target policy gives weight 0 to every logged action: SNIPS undefined"


def _check_count(field: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 0:
        raise InvalidArgument(field, "must be a non-negative integer")


def _check_finite(field: str, value: float) -> None:
    if not math.isfinite(value):
        raise InvalidArgument(field, "must be finite")


def _check_sum_squares(field: str, value: float) -> None:
    _check_finite(field, value)
    if value < 0:
        raise InvalidArgument(field, "must be non-negative")


def _as_vector(field: str, values: ArrayLike) -> np.ndarray[tuple[int], np.dtype[np.float64]]:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1:
        raise InvalidArgument(field, "must be one-dimensional")
    if not np.all(np.isfinite(array)):
        raise InvalidArgument(field, "must be finite")
    return array


def _variance(n: int, total: float, squares: float) -> float | None:
    """Unbiased sample variance from sums; ``None`` below 2 units; clamped at 0 for rounding."""
    if n < 2:
        return None
    return max((squares - total * total / n) / (n - 1), 0.0)


def _covariance(n: int, sum_a: float, sum_b: float, cross: float) -> float | None:
    """Unbiased sample covariance from sums; ``None`` below 2 units."""
    if n < 2:
        return None
    return (cross - sum_a * sum_b / n) / (n - 1)


@dataclass(frozen=True, slots=True)
class SampleStats:
    """Count, sum and sum of squares of one arm's per-unit values (conversion or mean metric).

    For a conversion metric each unit's value is 0 or 1, so ``sum_squares == sum``. Two
    records of disjoint units merge with ``+``. ``mean`` is ``None`` with no unit and
    ``variance`` (unbiased, divisor ``n - 1``) is ``None`` below two units.

    Raises:
        InvalidArgument: ``n`` is negative or not an integer, a sum is not finite, or
            ``sum_squares`` is negative.

    """

    n: int = 0
    sum: float = 0.0
    sum_squares: float = 0.0

    def __post_init__(self) -> None:
        _check_count("n", self.n)
        _check_finite("sum", self.sum)
        _check_sum_squares("sum_squares", self.sum_squares)

    def __add__(self, other: SampleStats) -> SampleStats:
        if not isinstance(other, SampleStats):
            return NotImplemented
        return SampleStats(
            self.n + other.n, self.sum + other.sum, self.sum_squares + other.sum_squares
        )

    @classmethod
    def from_values(cls, values: ArrayLike) -> SampleStats:
        """Build the statistics of a 1-d array of per-unit values (tests and small callers)."""
        array = _as_vector("values", values)
        return cls(int(array.size), float(array.sum()), float(np.dot(array, array)))

    @property
    def mean(self) -> float | None:
        """Mean per unit; ``None`` when ``n == 0``."""
        return self.sum / self.n if self.n > 0 else None

    @property
    def variance(self) -> float | None:
        """Unbiased variance per unit; ``None`` when ``n < 2``."""
        return _variance(self.n, self.sum, self.sum_squares)


@dataclass(frozen=True, slots=True)
class SampleStatsArrays:
    """Many :class:`SampleStats` at once, one array per field (vectorised simulations, batches).

    ``mean`` and ``variance`` are NaN where ``SampleStats`` would give ``None``.
    """

    n: NDArray[np.float64]
    sum: NDArray[np.float64]
    sum_squares: NDArray[np.float64]

    @classmethod
    def of(cls, n: ArrayLike, total: ArrayLike, sum_squares: ArrayLike) -> SampleStatsArrays:
        """Build from array-likes, broadcast to one shape."""
        arrays = np.broadcast_arrays(
            np.asarray(n, dtype=np.float64),
            np.asarray(total, dtype=np.float64),
            np.asarray(sum_squares, dtype=np.float64),
        )
        return cls(arrays[0], arrays[1], arrays[2])

    @property
    def mean(self) -> NDArray[np.float64]:
        """Mean per unit; NaN where ``n == 0``."""
        with np.errstate(all="ignore"):
            return np.where(self.n > 0, self.sum / self.n, np.nan)

    @property
    def variance(self) -> NDArray[np.float64]:
        """Unbiased variance per unit, clamped at 0; NaN where ``n < 2``."""
        with np.errstate(all="ignore"):
            raw = (self.sum_squares - self.sum**2 / self.n) / (self.n - 1)
            return np.where(self.n >= 2, np.maximum(raw, 0.0), np.nan)


@dataclass(frozen=True, slots=True)
class RatioStats:
    """Sufficient statistics of a ratio metric: per-unit numerator and denominator sums.

    The metric is ``num_sum / den_sum`` (CONTRACT.md, ``METRIC_KIND_RATIO``); its variance
    needs the numerator's and denominator's moments and their cross-product
    ``num_den_cross = Σ numerator·denominator`` (delta method, Deng et al. 2018).

    Raises:
        InvalidArgument: a count is negative, a sum is not finite, or a sum of squares is
            negative.

    """

    n: int = 0
    num_sum: float = 0.0
    num_sum_squares: float = 0.0
    den_sum: float = 0.0
    den_sum_squares: float = 0.0
    num_den_cross: float = 0.0

    def __post_init__(self) -> None:
        _check_count("n", self.n)
        _check_finite("num_sum", self.num_sum)
        _check_sum_squares("num_sum_squares", self.num_sum_squares)
        _check_finite("den_sum", self.den_sum)
        _check_sum_squares("den_sum_squares", self.den_sum_squares)
        _check_finite("num_den_cross", self.num_den_cross)

    def __add__(self, other: RatioStats) -> RatioStats:
        if not isinstance(other, RatioStats):
            return NotImplemented
        return RatioStats(
            self.n + other.n,
            self.num_sum + other.num_sum,
            self.num_sum_squares + other.num_sum_squares,
            self.den_sum + other.den_sum,
            self.den_sum_squares + other.den_sum_squares,
            self.num_den_cross + other.num_den_cross,
        )

    @classmethod
    def from_values(cls, numerator: ArrayLike, denominator: ArrayLike) -> RatioStats:
        """Build the statistics of parallel 1-d arrays of per-unit numerators and denominators."""
        num = _as_vector("numerator", numerator)
        den = _as_vector("denominator", denominator)
        if num.shape != den.shape:
            raise InvalidArgument("denominator", "must have the numerator's length")
        return cls(
            int(num.size),
            float(num.sum()),
            float(np.dot(num, num)),
            float(den.sum()),
            float(np.dot(den, den)),
            float(np.dot(num, den)),
        )

    @property
    def numerator(self) -> SampleStats:
        """The numerator alone, as per-unit statistics."""
        return SampleStats(self.n, self.num_sum, self.num_sum_squares)

    @property
    def denominator(self) -> SampleStats:
        """The denominator alone, as per-unit statistics."""
        return SampleStats(self.n, self.den_sum, self.den_sum_squares)

    @property
    def ratio(self) -> float | None:
        """``num_sum / den_sum``; ``None`` with no unit or a zero denominator."""
        if self.n == 0 or self.den_sum == 0:
            return None
        return self.num_sum / self.den_sum

    @property
    def covariance(self) -> float | None:
        """Unbiased covariance of numerator and denominator per unit; ``None`` when ``n < 2``."""
        return _covariance(self.n, self.num_sum, self.den_sum, self.num_den_cross)

    @property
    def ratio_variance(self) -> float | None:
        """Delta-method variance of the ratio estimator (not per unit: already divided by n).

        ``Var(N̄/D̄) ≈ (sigma²_N - 2R·sigma_ND + R²·sigma²_D) / (n·μ_D²)`` with ``R = N̄/D̄``
        (Deng, Knoblich & Lu 2018, "Applying the Delta Method in Metric Analytics", eq. 2).
        ``None`` when ``n < 2`` or the denominator's mean is 0.
        """
        ratio = self.ratio
        var_num = self.numerator.variance
        var_den = self.denominator.variance
        cov = self.covariance
        if ratio is None or var_num is None or var_den is None or cov is None:
            return None
        mean_den = self.den_sum / self.n
        scale = self.n * mean_den * mean_den
        if scale == 0:  # a denominator mean so small that its square underflows
            return None
        return max((var_num - 2 * ratio * cov + ratio * ratio * var_den) / scale, 0.0)


@dataclass(frozen=True, slots=True)
class CupedStats:
    """Sufficient statistics for CUPED: outcome ``y``, pre-exposure covariate ``x``, and ``Σxy``.

    Raises:
        InvalidArgument: a count is negative, a sum is not finite, or a sum of squares is
            negative.

    """

    n: int = 0
    y_sum: float = 0.0
    y_sum_squares: float = 0.0
    x_sum: float = 0.0
    x_sum_squares: float = 0.0
    xy_cross: float = 0.0

    def __post_init__(self) -> None:
        _check_count("n", self.n)
        _check_finite("y_sum", self.y_sum)
        _check_sum_squares("y_sum_squares", self.y_sum_squares)
        _check_finite("x_sum", self.x_sum)
        _check_sum_squares("x_sum_squares", self.x_sum_squares)
        _check_finite("xy_cross", self.xy_cross)

    def __add__(self, other: CupedStats) -> CupedStats:
        if not isinstance(other, CupedStats):
            return NotImplemented
        return CupedStats(
            self.n + other.n,
            self.y_sum + other.y_sum,
            self.y_sum_squares + other.y_sum_squares,
            self.x_sum + other.x_sum,
            self.x_sum_squares + other.x_sum_squares,
            self.xy_cross + other.xy_cross,
        )

    @classmethod
    def from_values(cls, y: ArrayLike, x: ArrayLike) -> CupedStats:
        """Build the statistics of parallel 1-d arrays of outcomes and covariates."""
        ys = _as_vector("y", y)
        xs = _as_vector("x", x)
        if ys.shape != xs.shape:
            raise InvalidArgument("x", "must have the outcome's length")
        return cls(
            int(ys.size),
            float(ys.sum()),
            float(np.dot(ys, ys)),
            float(xs.sum()),
            float(np.dot(xs, xs)),
            float(np.dot(xs, ys)),
        )

    @property
    def outcome(self) -> SampleStats:
        """The outcome alone (what the test uses without CUPED)."""
        return SampleStats(self.n, self.y_sum, self.y_sum_squares)

    @property
    def covariate(self) -> SampleStats:
        """The covariate alone."""
        return SampleStats(self.n, self.x_sum, self.x_sum_squares)

    @property
    def covariance(self) -> float | None:
        """Unbiased covariance of outcome and covariate per unit; ``None`` when ``n < 2``."""
        return _covariance(self.n, self.y_sum, self.x_sum, self.xy_cross)


@dataclass(frozen=True, slots=True)
class Comparison:
    """One variant against the control for one metric: the report's ``comparisons`` entry.

    Means are per unit (or the ratio, for ratio metrics); ``absolute_lift`` is in the metric's
    units and ``relative_lift`` a fraction (0.05 = +5 %). Intervals are two-sided at level
    ``1 - alpha``. A field the method does not compute is ``None``; so is every relative figure
    when the control mean is 0, and every figure degenerate input cannot support, each time
    with the reason in ``warnings``. No field is ever NaN or infinite.
    """

    variant_key: str
    control_mean: float | None = None
    treatment_mean: float | None = None
    absolute_lift: float | None = None
    relative_lift: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    relative_ci_low: float | None = None
    relative_ci_high: float | None = None
    p_value: float | None = None
    adjusted_p_value: float | None = None
    chance_to_win: float | None = None
    expected_loss: float | None = None
    variance_reduction: float | None = None
    significant: bool = False
    warnings: tuple[str, ...] = ()
    test: StatTest | None = None


@dataclass(frozen=True, slots=True)
class SrmResult:
    """Sample-ratio-mismatch check: chi-square of observed units against intended weights.

    ``ok`` is false when ``p_value < 0.001`` (CONTRACT.md). With no unit the check cannot run:
    ``p_value`` and ``chi_square`` are ``None`` and ``ok`` is true, with a warning.
    """

    p_value: float | None
    chi_square: float | None
    ok: bool
    degrees_of_freedom: int = 0
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class SampleSizePlan:
    """Units each variant needs to detect a relative effect at the stated alpha and power."""

    units_per_variant: int
    total_units: int
    variants: int
    alpha: float
    alpha_per_comparison: float
    power: float


@dataclass(frozen=True, slots=True)
class PolicyEstimate:
    """One off-policy estimate of a policy's mean reward per decision, with a normal CI."""

    estimator: Estimator
    value: float | None
    ci_low: float | None
    ci_high: float | None
    std_error: float | None = None


@dataclass(frozen=True, slots=True)
class PolicyEvaluation:
    """Every estimator's estimate, the effective sample size and the logged policy's value."""

    estimates: tuple[PolicyEstimate, ...]
    effective_sample_size: float | None
    logged_value: float | None
    n: int
    warnings: tuple[str, ...] = ()
