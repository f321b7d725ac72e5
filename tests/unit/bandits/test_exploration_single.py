"""One decision at a time (Decide's case): select_batch's one-row path against the vectorised
path it must reproduce draw for draw and bit for bit."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.typing import NDArray

from ensayo.bandits import (
    ExplorationPolicy,
    ExplorationSpec,
    ScoreSampler,
    exploration,
    gaussian_sampler,
    rng_for,
    select,
    select_batch,
)
from ensayo.bandits.exploration import BatchSelection
from ensayo.errors import InvalidArgument

Case = tuple[ExplorationSpec, NDArray[np.float64], int, int, bool]

# A few repeated values make ties (within the score vector, and between -0.0 and 0.0), and
# now and then a large or subnormal score (logits clipped at -600).
TIED = [0.0, -0.0, 1.0, 1.0 + 2**-52, -3.5, 7.25, 2.0]
score = st.one_of(
    st.sampled_from(TIED),
    st.floats(-40.0, 40.0),
    st.floats(-1e150, 1e150),
)


@st.composite
def decisions(draw: st.DrawFn) -> Case:
    k = draw(st.integers(1, 120))
    scores = np.array(draw(st.lists(score, min_size=k, max_size=k)))
    spec = ExplorationSpec(
        draw(st.sampled_from(list(ExplorationPolicy))),
        epsilon=draw(st.sampled_from([0.0, 0.1, 0.5, 1.0])),
        temperature=draw(st.sampled_from([0.05, 0.7, 1.0, 5.0])),
        uniform_mix=draw(st.sampled_from([0.0, 0.05, 0.5, 1.0])),
        propensity_draws=100,
    )
    m = draw(st.integers(1, 4))
    seed = draw(st.integers(0, 2**64 - 1))
    shared = draw(st.booleans())
    return spec, scores, m, seed, shared


def reference(
    spec: ExplorationSpec,
    scores: NDArray[np.float64],
    m: int,
    rng: np.random.Generator,
    sampler: ScoreSampler | None,
) -> BatchSelection:
    """The vectorised path that select_batch takes for many rows, on this one row."""
    s = scores[None, :]
    streams = exploration._streams(spec, [rng], sampler, 1)
    return exploration._select_rows(spec, s, min(m, s.shape[1]), streams)


def assert_same(fast: BatchSelection, slow: BatchSelection) -> None:
    np.testing.assert_array_equal(fast.indices, slow.indices)
    assert fast.indices.dtype == slow.indices.dtype
    assert fast.propensities.tobytes() == slow.propensities.tobytes()  # to the bit
    assert fast.standard_errors.tobytes() == slow.standard_errors.tobytes()
    assert fast.propensities.shape == fast.standard_errors.shape == fast.indices.shape
    assert fast.exact == slow.exact
    np.testing.assert_array_equal(fast.explored, slow.explored)
    assert fast.explored.dtype == np.bool_


class TestOneRowEqualsTheBatchPath:
    @settings(max_examples=600, deadline=None)
    @given(decisions())
    def test_same_draws_list_and_propensities(self, case: Case) -> None:
        """Any policy, k 1..120 with ties, m 1..4, η 0..1, own or shared generator: the same
        list, propensities to the bit, explored flag and generator state afterwards."""
        spec, scores, m, seed, shared = case
        sampler = None
        if spec.policy is ExplorationPolicy.THOMPSON:
            sampler = gaussian_sampler(np.linspace(0.0, 1.0, scores.size), np.ones(scores.size))
        fast_rng, slow_rng = (np.random.Generator(np.random.PCG64(seed)) for _ in range(2))
        rng: np.random.Generator | list[np.random.Generator] = fast_rng if shared else [fast_rng]
        fast = select_batch(spec, scores[None, :], m, rng, sampler=sampler)
        slow = reference(spec, scores, m, slow_rng, sampler)
        assert_same(fast, slow)
        assert fast_rng.bit_generator.state == slow_rng.bit_generator.state  # same draws

    @pytest.mark.parametrize(
        ("policy", "m"),
        [(ExplorationPolicy.EPSILON_GREEDY, m) for m in (1, 2, 3)]
        + [(ExplorationPolicy.SOFTMAX, m) for m in (1, 2)],  # m = 3 is Monte Carlo: general path
    )
    def test_hundred_candidates_over_many_ids(self, policy: ExplorationPolicy, m: int) -> None:
        """Decide's shape (k = 100 with many ties, rng_for per id): 300 decisions agree."""
        scores = np.round(np.random.default_rng(m).normal(size=100), 1)
        spec = ExplorationSpec(policy, epsilon=0.3, uniform_mix=0.05)
        for i in range(300):
            fast = select_batch(spec, scores[None, :], m, [rng_for(f"id-{i}")])
            assert_same(fast, reference(spec, scores, m, rng_for(f"id-{i}"), None))

    def test_the_fast_path_is_taken(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Exact one-row requests never reach the vectorised code; Monte Carlo ones do."""
        calls: list[tuple[Any, ...]] = []
        general = exploration._select_rows

        def counted(*args: Any) -> BatchSelection:
            calls.append(args)
            return general(*args)

        monkeypatch.setattr(exploration, "_select_rows", counted)
        scores = np.arange(10.0)
        select(ExplorationSpec(ExplorationPolicy.EPSILON_GREEDY), scores, 3, rng_for("a"))
        select(ExplorationSpec(ExplorationPolicy.SOFTMAX), scores, 2, rng_for("a"))
        select(ExplorationSpec(ExplorationPolicy.SOFTMAX), scores[:3], 3, rng_for("a"))
        assert calls == []
        select(ExplorationSpec(ExplorationPolicy.SOFTMAX), scores, 3, rng_for("a"))
        assert len(calls) == 1

    def test_single_row_still_validates(self) -> None:
        """A one-row request with the wrong number of generators is refused as before."""
        spec = ExplorationSpec(ExplorationPolicy.EPSILON_GREEDY)
        with pytest.raises(InvalidArgument) as info:
            select_batch(spec, np.zeros((1, 3)), 1, [rng_for("a"), rng_for("b")])
        assert info.value.field == "rng"
