"""Holm and Benjamini-Hochberg against statsmodels' multipletests, plus properties."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from statsmodels.stats.multitest import multipletests

from ensayo.errors import InvalidArgument
from ensayo.stats import (
    Comparison,
    Correction,
    apply_correction,
    benjamini_hochberg,
    holm,
)

p_lists = st.lists(st.floats(min_value=0.0, max_value=1.0), min_size=1, max_size=40)


class TestAgainstStatsmodels:
    @pytest.mark.parametrize("seed", [1, 2, 3])
    def test_holm_and_bh_match(self, seed):
        """Holm and BH equal multipletests(method='holm' / 'fdr_bh'), ties included."""
        rng = np.random.default_rng(seed)
        p = np.concatenate([rng.uniform(0, 0.05, 5), rng.uniform(0, 1, 20), [0.01, 0.01]])
        rng.shuffle(p)
        assert holm(p) == pytest.approx(multipletests(p, method="holm")[1])
        assert benjamini_hochberg(p) == pytest.approx(multipletests(p, method="fdr_bh")[1])

    def test_rejects_out_of_range(self):
        """A p-value outside [0, 1] or NaN raises InvalidArgument."""
        with pytest.raises(InvalidArgument):
            holm([0.1, 1.2])
        with pytest.raises(InvalidArgument):
            benjamini_hochberg([np.nan])

    def test_empty_family(self):
        """An empty family gives an empty result."""
        assert holm([]).size == 0
        assert benjamini_hochberg([]).size == 0


class TestProperties:
    @settings(max_examples=200, deadline=None)
    @given(p_lists)
    def test_order_of_adjustments(self, p):
        """Raw ≤ BH ≤ Holm ≤ 1 for every p-value."""
        raw = np.asarray(p)
        bh, hm = benjamini_hochberg(raw), holm(raw)
        assert np.all(raw <= bh + 1e-15)
        assert np.all(bh <= hm + 1e-15)
        assert np.all(hm <= 1.0)


class TestApplyCorrection:
    def test_fills_adjusted_and_redecides_significance(self):
        """Holm adjusts only comparisons with a p-value and re-decides significance."""
        family = [
            Comparison("a", p_value=0.01, significant=True),
            Comparison("b", p_value=0.04, significant=True),
            Comparison("c", chance_to_win=0.97),
            Comparison("d", p_value=0.30),
        ]
        corrected = apply_correction(family, Correction.HOLM, alpha=0.05)
        assert corrected[0].adjusted_p_value == pytest.approx(0.03)
        assert corrected[0].significant
        assert corrected[1].adjusted_p_value == pytest.approx(0.08)
        assert not corrected[1].significant
        assert corrected[2] == family[2]
        assert corrected[3].adjusted_p_value == pytest.approx(0.30)

    def test_none_leaves_adjusted_unset(self):
        """Correction NONE changes nothing: adjusted_p_value stays None."""
        family = [Comparison("a", p_value=0.01, significant=True)]
        assert apply_correction(family, Correction.NONE) == tuple(family)
