"""Multiple-comparison corrections: Holm (family-wise error) and Benjamini-Hochberg (FDR).

A report with several variants and metrics runs many tests; the corrections adjust the p-values
so that ``adjusted_p < alpha`` controls the family-wise error rate (Holm) or the false
discovery rate (Benjamini-Hochberg) over the whole family.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ensayo.errors import InvalidArgument
from ensayo.stats._lift import check_alpha
from ensayo.stats.model import Comparison, Correction

__all__ = ["adjust_p_values", "apply_correction", "benjamini_hochberg", "holm"]


def _p_values(p_values: ArrayLike) -> NDArray[np.float64]:
    p = np.asarray(p_values, dtype=np.float64)
    if p.ndim != 1:
        raise InvalidArgument("p_values", "must be one-dimensional")
    if not np.all((p >= 0) & (p <= 1)):  # also rejects NaN
        raise InvalidArgument("p_values", "must be in [0, 1]")
    return p


def holm(p_values: ArrayLike) -> NDArray[np.float64]:
    """Holm's step-down adjusted p-values (Holm 1979), in the input's order.

    With ``p_(1) ≤ … ≤ p_(m)``: ``adj_(i) = min(1, max_{j ≤ i} (m - j + 1)·p_(j))``; equals
    ``statsmodels.stats.multitest.multipletests(p, method="holm")[1]``. Never below the raw
    p-value. Raises ``InvalidArgument`` unless every p-value is in [0, 1].
    """
    p = _p_values(p_values)
    m = p.size
    if m == 0:
        return p.copy()
    order = np.argsort(p, kind="stable")
    scaled = (m - np.arange(m)) * p[order]
    adjusted = np.minimum(np.maximum.accumulate(scaled), 1.0)
    result = np.empty(m)
    result[order] = adjusted
    return result


def benjamini_hochberg(p_values: ArrayLike) -> NDArray[np.float64]:
    """Benjamini-Hochberg step-up adjusted p-values (Benjamini & Hochberg 1995).

    With ``p_(1) ≤ … ≤ p_(m)``: ``adj_(i) = min(1, min_{j ≥ i} m·p_(j)/j)``; equals
    ``multipletests(p, method="fdr_bh")[1]``. Never above Holm's. Raises ``InvalidArgument``
    unless every p-value is in [0, 1].
    """
    p = _p_values(p_values)
    m = p.size
    if m == 0:
        return p.copy()
    order = np.argsort(p, kind="stable")
    scaled = m * p[order] / np.arange(1, m + 1)
    adjusted = np.minimum(np.minimum.accumulate(scaled[::-1])[::-1], 1.0)
    result = np.empty(m)
    result[order] = adjusted
    return result


def adjust_p_values(p_values: ArrayLike, correction: Correction) -> NDArray[np.float64]:
    """Adjust ``p_values`` with ``correction``; ``Correction.NONE`` returns a copy."""
    if correction is Correction.HOLM:
        return holm(p_values)
    if correction is Correction.BENJAMINI_HOCHBERG:
        return benjamini_hochberg(p_values)
    return _p_values(p_values).copy()


def apply_correction(
    comparisons: Sequence[Comparison], correction: Correction, *, alpha: float = 0.05
) -> tuple[Comparison, ...]:
    """Fill ``adjusted_p_value`` over one family of comparisons and re-decide ``significant``.

    The family is every comparison that has a ``p_value`` (Bayesian ones have none and pass
    through unchanged); the caller chooses it, typically every variant of every metric in
    one report. ``significant`` becomes ``adjusted_p_value < alpha``. Intervals are not
    widened. With ``Correction.NONE`` nothing changes and ``adjusted_p_value`` stays ``None``.
    Raises ``InvalidArgument`` when ``alpha`` is not in (0, 1).
    """
    check_alpha(alpha)
    if correction is Correction.NONE:
        return tuple(comparisons)
    tested = [i for i, c in enumerate(comparisons) if c.p_value is not None]
    raw = [p for c in comparisons if (p := c.p_value) is not None]
    adjusted = adjust_p_values(raw, correction)
    result = list(comparisons)
    for index, value in zip(tested, adjusted, strict=True):
        result[index] = dataclasses.replace(
            result[index], adjusted_p_value=float(value), significant=bool(value < alpha)
        )
    return tuple(result)
