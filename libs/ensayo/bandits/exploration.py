"""Exploration over decisioning's ranked candidates, with propensities.

Choose the ordered list of actions to return and each one's propensity, the probability that
the policy put it in the list (what off-policy evaluation divides by): exact where a closed
form exists, seeded Monte Carlo otherwise.
"""

from __future__ import annotations

import functools
import hashlib
from bisect import bisect_left, bisect_right
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ensayo.bandits.model import ExplorationPolicy, ExplorationSpec
from ensayo.bandits.scoring import ScoreSampler
from ensayo.errors import InvalidArgument

__all__ = [
    "BatchSelection",
    "Propensities",
    "Selection",
    "inclusion_probabilities",
    "rng_for",
    "seed_for",
    "select",
    "select_batch",
]

# Softmax weights below e^-600 of the best are raised to it: the probabilities change only
# below ~1e-260, and the exact formulas never divide by an underflowed zero.
_MIN_LOG_WEIGHT = -600.0


def seed_for(key: str) -> int:
    """Derive a 64-bit seed from ``key``: BLAKE2b with an 8-byte digest, read big-endian.

    Unlike ``hash()``, it is the same in every process, on every machine and release.
    """
    digest = hashlib.blake2b(key.encode("utf-8"), digest_size=8, person=b"ensayo.rng").digest()
    return int.from_bytes(digest, "big")


def rng_for(key: str) -> np.random.Generator:
    """Create the generator of one decision (``key``: its id), ``PCG64(seed_for(key))``.

    Replaying a decision with the same id, candidates, scores and spec gives the same list
    and propensities (with the same numpy release: NEP 19 lets distributions change).
    """
    return np.random.Generator(np.random.PCG64(seed_for(key)))


@dataclass(frozen=True, slots=True, eq=False)
class Propensities:
    """Each candidate's probability of being in the returned list.

    ``values`` sum to ``min(m, k)``; ``standard_errors`` are 0 where ``exact``, else the
    Monte Carlo standard error ``(1 - η) · sqrt(p̂(1 - p̂) / draws)``.
    """

    values: NDArray[np.float64]
    standard_errors: NDArray[np.float64]
    exact: bool


@dataclass(frozen=True, slots=True, eq=False)
class Selection:
    """One decision: the chosen candidates (indices into ``scores``) in rank order.

    ``propensities[j]`` is the probability that ``indices[j]`` is in the list;
    ``explored`` is true when a uniformly random pick made the list (the floor mixture
    or an epsilon slot), for explanations.
    """

    indices: NDArray[np.intp]
    propensities: NDArray[np.float64]
    standard_errors: NDArray[np.float64]
    exact: bool
    explored: bool


@dataclass(frozen=True, slots=True, eq=False)
class BatchSelection:
    """``n`` decisions over ``k`` candidates each: arrays of shape ``(n, min(m, k))``."""

    indices: NDArray[np.intp]
    propensities: NDArray[np.float64]
    standard_errors: NDArray[np.float64]
    exact: bool
    explored: NDArray[np.bool_]

    def row(self, i: int) -> Selection:
        """Decision ``i`` as a :class:`Selection`."""
        return Selection(
            self.indices[i],
            self.propensities[i],
            self.standard_errors[i],
            self.exact,
            bool(self.explored[i]),
        )


def select(
    spec: ExplorationSpec,
    scores: ArrayLike,
    max_actions: int,
    rng: np.random.Generator,
    *,
    sampler: ScoreSampler | None = None,
) -> Selection:
    """Choose up to ``max_actions`` of ``k`` candidates and their propensities.

    ``scores`` holds one finite score per eligible candidate (higher is better). Thompson
    sampling ranks by ``sampler`` draws instead (required for it, ignored otherwise) and
    only reads ``k`` from ``scores``. The random draws, in order: ``rng.random(1 + k + 2m)``
    (mixture coin, ``k`` keys, ``m`` epsilon coins, ``m`` epsilon picks), then for Thompson
    one ``sampler(rng, 1)`` row, then the Monte Carlo draws of an estimated propensity.
    ``k = 0`` gives an empty selection. See ``docs/bandits.md`` for each policy.
    """
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim != 1:
        raise InvalidArgument("scores", "must be a vector, one score per candidate")
    return select_batch(spec, s[None, :], max_actions, [rng], sampler=sampler).row(0)


def select_batch(
    spec: ExplorationSpec,
    scores: ArrayLike,
    max_actions: int,
    rng: np.random.Generator | Sequence[np.random.Generator],
    *,
    sampler: ScoreSampler | Sequence[ScoreSampler] | None = None,
) -> BatchSelection:
    """:func:`select` for ``n`` decisions over the same ``k`` candidates, scores ``(n, k)``.

    With one generator per decision (``rng_for(decision_id)`` each) row ``i`` equals
    ``select`` with that generator and sampler. With a single shared generator the draws
    for all rows come from it (vectorised), exact propensities are computed once per
    distinct score row, and an estimated one once per distinct row (softmax) or once for
    the batch (Thompson, whose ``sampler`` is then shared by every row). One row with an
    exact policy (Decide's case) takes a path over Python lists with the same draws and
    the same results to the bit.
    """
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim != 2 or not np.isfinite(s).all():
        raise InvalidArgument("scores", "must be an (n, k) matrix of finite scores")
    n, k = s.shape
    m = min(_slots(max_actions), k)
    thompson = spec.policy is ExplorationPolicy.THOMPSON
    if n == 1 and k > 0 and not thompson and not _needs_monte_carlo(spec, m, k):
        return _select_one(spec, s[0], m, _one_generator(rng))  # one exact decision: Decide
    streams = _streams(spec, rng, sampler, n)
    if k == 0:
        empty = np.zeros((n, 0))
        return BatchSelection(
            empty.astype(np.intp), empty, empty, exact=True, explored=np.zeros(n, dtype=bool)
        )
    return _select_rows(spec, s, m, streams)


def _select_rows(
    spec: ExplorationSpec, s: NDArray[np.float64], m: int, streams: _Streams
) -> BatchSelection:
    """The vectorised path for any ``n``, policy and generators, and the fast path's reference."""
    chosen, explored = _choose(spec, s, m, streams)
    values, errors, exact = _batch_inclusion(spec, s, m, streams)
    propensities = np.take_along_axis(values, chosen, axis=1)
    if not exact:
        # An estimate of 0 for a candidate that was in fact chosen is replaced by the
        # smallest value Monte Carlo could not tell from zero.
        propensities = np.maximum(propensities, 1.0 / (spec.propensity_draws + 1))
    return BatchSelection(
        chosen,
        propensities,
        np.take_along_axis(errors, chosen, axis=1),
        exact,
        explored,
    )


def inclusion_probabilities(
    spec: ExplorationSpec,
    scores: ArrayLike,
    max_actions: int,
    rng: np.random.Generator | None = None,
    *,
    sampler: ScoreSampler | None = None,
) -> Propensities:
    """Every candidate's probability of being among the ``max_actions`` returned.

    Exact for epsilon-greedy (any ``m``) and softmax with ``m ≤ 2``; a Monte Carlo estimate
    from ``spec.propensity_draws`` draws of ``rng`` for softmax with ``m ≥ 3`` and for
    Thompson sampling (``sampler`` required). Includes the floor mixture. These are the
    numbers :func:`select` reports for the chosen candidates; off-policy evaluation can use
    them to score a candidate policy on logged decisions.
    """
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim != 1 or not np.all(np.isfinite(s)):
        raise InvalidArgument("scores", "must be a vector of finite scores")
    k = s.size
    m = min(_slots(max_actions), k)
    if k == 0:
        return Propensities(np.zeros(0), np.zeros(0), exact=True)
    if spec.policy is ExplorationPolicy.THOMPSON and sampler is None:
        raise InvalidArgument("sampler", "Thompson sampling needs a posterior sampler")
    if _needs_monte_carlo(spec, m, k) and rng is None:
        raise InvalidArgument("rng", f"{spec.policy} with {m} slots needs a generator")
    values, errors, exact = _row_inclusion(spec, s, m, rng, sampler)
    return Propensities(values, errors, exact)


# --- one decision ---------------------------------------------------------------------
# Decide chooses one unit at a time. The batch code above spends dozens of numpy calls on a
# single row (each a few µs, and many release the GIL, a hand-off in a threaded server);
# these functions make the same draws and the same choices over Python lists and only call
# numpy where the reference's own arithmetic (log, exp, pairwise sums) must be reproduced
# bit for bit. Tests compare them with the batch path, the reference, over random scores.


def _one_generator(
    rng: np.random.Generator | Sequence[np.random.Generator],
) -> np.random.Generator:
    """The generator of a one-row batch, refused as :func:`_streams` refuses it."""
    if isinstance(rng, np.random.Generator):
        return rng
    own = tuple(rng)
    if len(own) != 1:
        raise InvalidArgument("rng", f"need one generator per decision (1), got {len(own)}")
    return own[0]


def _select_one(
    spec: ExplorationSpec, scores: NDArray[np.float64], m: int, rng: np.random.Generator
) -> BatchSelection:
    """One row of :func:`select_batch` for an exact policy: the same draws, list, numbers."""
    k = scores.size
    uniforms = rng.random(1 + k + 2 * m)
    draws: list[float] = uniforms.tolist()
    keys = draws[1 : 1 + k]
    mixed = draws[0] < spec.uniform_mix
    if spec.policy is ExplorationPolicy.EPSILON_GREEDY:
        listed: list[float] = scores.tolist()
        ascending = sorted(listed)
        coins = [c < spec.epsilon for c in draws[1 + k : 1 + k + m]]
        explored = mixed or any(coins)
        if mixed:
            chosen = _leaders(keys, m)
        else:
            chosen = _epsilon_list(listed, ascending, keys, coins, draws[1 + k + m :])
        values = _epsilon_values(listed, ascending, chosen, m, spec.epsilon)
    else:
        logits = _softmax_logits(scores, spec.temperature)
        explored = mixed
        if mixed:
            chosen = _leaders(keys, m)
        else:
            chosen = _leaders((logits + _gumbel(uniforms[1 : 1 + k])).tolist(), m)
        values = _softmax_values(logits, chosen, m)
    floor = spec.uniform_mix * m / k  # _mix's arithmetic, in its order
    propensities = [(1.0 - spec.uniform_mix) * v + floor for v in values]
    return BatchSelection(
        np.array([chosen], dtype=np.intp),
        np.array([propensities]),
        np.zeros((1, m)),
        exact=True,
        explored=np.array([explored]),
    )


def _leaders(
    values: list[float],
    n: int,
    keys: list[float] | None = None,
    ascending: list[float] | None = None,
) -> list[int]:
    """One row's first ``n`` indices by value: :func:`_top`, or epsilon-greedy's lexsort order.

    Largest value first; ties by ``keys`` (smallest first) when given, then by index. Only the
    candidates at or above the ``n``-th largest value are sorted (``ascending``:
    ``sorted(values)`` when the caller has it).
    """
    if n == 1:
        threshold = max(values)
        if keys is None or values.count(threshold) == 1:
            return [values.index(threshold)]
    else:
        ordered = ascending if ascending is not None else sorted(values)
        threshold = ordered[len(values) - n]
    pool = [i for i, v in enumerate(values) if v >= threshold]  # by index: the sorts are stable
    if keys is None:
        pool.sort(key=values.__getitem__, reverse=True)
    else:
        pool.sort(key=lambda i: (-values[i], keys[i]))
    return pool[:n]


def _epsilon_list(
    scores: list[float],
    ascending: list[float],
    keys: list[float],
    coins: list[bool],
    picks: list[float],
) -> list[int]:
    """:func:`_epsilon_lists` for one row, sorting only as deep as the slots reach.

    The ranks the slots take do not depend on the scores, so they are drawn first and only
    the rank order down to the deepest of them is worked out.
    """
    k = len(scores)
    remaining = list(range(k))  # ranks still free, best first
    ranks = []
    for j, uniform in enumerate(coins):
        left = k - j
        target = int(min(picks[j] * left, left - 1)) if uniform else 0
        ranks.append(remaining.pop(target))
    order = _leaders(scores, max(ranks) + 1, keys, ascending)
    return [order[r] for r in ranks]


@functools.lru_cache(maxsize=512)
def _epsilon_cumulative(k: int, m: int, epsilon: float) -> tuple[float, ...]:
    """The running sums of :func:`_epsilon_by_rank` that :func:`_epsilon_inclusion` uses."""
    cumulative = np.concatenate(([0.0], np.cumsum(_epsilon_by_rank(k, m, epsilon))))
    return tuple(cumulative.tolist())


def _epsilon_values(
    scores: list[float], ascending: list[float], chosen: list[int], m: int, epsilon: float
) -> list[float]:
    """:func:`_epsilon_inclusion` of the chosen candidates: the mean over their tie group."""
    k = len(scores)
    if m >= k:
        return [1.0] * len(chosen)
    cumulative = _epsilon_cumulative(k, m, float(epsilon))
    values = []
    for c in chosen:
        start = k - bisect_right(ascending, scores[c])  # ranks of the better candidates
        end = k - 1 - bisect_left(ascending, scores[c])  # the group's last rank
        values.append((cumulative[end + 1] - cumulative[start]) / (end - start + 1))
    return values


def _softmax_values(logits: NDArray[np.float64], chosen: list[int], m: int) -> list[float]:
    """:func:`_softmax_inclusion` of the chosen candidates, the same to the bit.

    Its sums are numpy's (pairwise summation) over arrays equal to the reference's, element
    for element; everything else is one IEEE operation on the same operands.
    """
    if m >= logits.size:
        return [1.0] * len(chosen)
    w = np.exp(logits)
    total = float(w.sum())
    if m == 1:
        return [float(w[c]) / total for c in chosen]
    weights: list[float] = w.tolist()
    top = weights.index(max(weights))
    w[top] = 0.0  # from here on the weights without the top
    without_top = float(w.sum())
    rest = total - w  # W - w_j; the top's is summed without it, free of cancellation
    rest[top] = without_top
    ratio = w / rest  # the top's ratio is 0 here: the sum over the others first
    excluding_top = float(ratio.sum())
    ratio[top] = weights[top] / without_top
    full = float(ratio.sum())
    values = []
    for c in chosen:
        excluding = excluding_top if c == top else full - float(ratio[c])
        first = weights[c] / total
        values.append(min(first + first * excluding, 1.0))
    return values


# --- policies -------------------------------------------------------------------------


def _slots(max_actions: int) -> int:
    if isinstance(max_actions, bool) or not isinstance(max_actions, int | np.integer):
        raise InvalidArgument("max_actions", "must be an integer")
    if max_actions < 1:
        raise InvalidArgument("max_actions", f"must be at least 1, got {max_actions}")
    return int(max_actions)


@dataclass(frozen=True, slots=True)
class _Streams:
    """Where a batch's draws come from: one generator per decision (``own``) or ``shared``.

    ``samplers`` (Thompson only) has one sampler per row with ``own``, else exactly one.
    """

    shared: np.random.Generator | None
    own: tuple[np.random.Generator, ...]
    samplers: tuple[ScoreSampler, ...]

    def uniforms(self, n: int, width: int) -> NDArray[np.float64]:
        if self.shared is not None:
            return self.shared.random((n, width))
        return np.stack([g.random(width) for g in self.own]).reshape(n, width)

    def decision_rows(self, n: int, k: int) -> NDArray[np.float64]:
        if self.shared is not None:
            return _draw(self.samplers[0], self.shared, n, k)
        rows = [_draw(f, g, 1, k)[0] for f, g in zip(self.samplers, self.own, strict=True)]
        return np.stack(rows).reshape(n, k)


def _streams(
    spec: ExplorationSpec,
    rng: np.random.Generator | Sequence[np.random.Generator],
    sampler: ScoreSampler | Sequence[ScoreSampler] | None,
    n: int,
) -> _Streams:
    shared = rng if isinstance(rng, np.random.Generator) else None
    own = () if shared is not None else tuple(rng)  # type: ignore[arg-type]
    if shared is None and len(own) != n:
        raise InvalidArgument("rng", f"need one generator per decision ({n}), got {len(own)}")
    if spec.policy is not ExplorationPolicy.THOMPSON:
        return _Streams(shared, own, ())
    if sampler is None:
        raise InvalidArgument("sampler", "Thompson sampling needs a posterior sampler")
    if callable(sampler):
        return _Streams(shared, own, (sampler,) * (1 if shared is not None else n))
    samplers = tuple(sampler)
    if shared is not None or len(samplers) != n:
        raise InvalidArgument("sampler", "one sampler per decision needs one generator each")
    return _Streams(shared, own, samplers)


def _choose(
    spec: ExplorationSpec, scores: NDArray[np.float64], m: int, streams: _Streams
) -> tuple[NDArray[np.intp], NDArray[np.bool_]]:
    """Draw every row's list: ``1 + k + 2m`` uniforms, then Thompson's decision row."""
    n, k = scores.shape
    uniforms = streams.uniforms(n, 1 + k + 2 * m)
    coin, keys = uniforms[:, 0], uniforms[:, 1 : 1 + k]
    mixed = coin < spec.uniform_mix
    explored = mixed.copy()
    if spec.policy is ExplorationPolicy.EPSILON_GREEDY:
        coins, picks = uniforms[:, 1 + k : 1 + k + m], uniforms[:, 1 + k + m :]
        chosen, slot_explored = _epsilon_lists(scores, keys, coins, picks, spec.epsilon)
        explored |= slot_explored
    elif spec.policy is ExplorationPolicy.SOFTMAX:
        chosen = _top(_softmax_logits(scores, spec.temperature) + _gumbel(keys), m)
    else:
        chosen = _top(streams.decision_rows(n, k), m)
    return np.where(mixed[:, None], _top(keys, m), chosen), explored


def _draw(
    sampler: ScoreSampler, rng: np.random.Generator, draws: int, k: int
) -> NDArray[np.float64]:
    rows = np.asarray(sampler(rng, draws), dtype=np.float64)
    if rows.shape != (draws, k) or not np.all(np.isfinite(rows)):
        raise InvalidArgument("sampler", f"must return {draws} x {k} finite draws")
    return rows


def _top(values: NDArray[np.float64], m: int) -> NDArray[np.intp]:
    """Column indices of each row's ``m`` largest values, largest first; ties by index."""
    order: NDArray[np.intp] = np.argsort(-values, axis=1, kind="stable")[:, :m]
    return order


def _top_mask(values: NDArray[np.float64], m: int) -> NDArray[np.bool_]:
    """Membership of each row's top ``m`` (the set :func:`_top` picks) in ``O(k)`` per row."""
    k = values.shape[1]
    threshold = np.partition(values, k - m, axis=1)[:, k - m : k - m + 1]  # m-th largest
    above = values > threshold
    at = values == threshold
    room = m - above.sum(axis=1, keepdims=True)
    mask: NDArray[np.bool_] = above | (at & (np.cumsum(at, axis=1) <= room))
    return mask


def _gumbel(u: NDArray[np.float64]) -> NDArray[np.float64]:
    # Inverse CDF of the standard Gumbel; u = 0 (probability 2^-53) maps to -inf, never chosen.
    with np.errstate(divide="ignore"):
        g: NDArray[np.float64] = -np.log(-np.log(u))
    return g


def _softmax_logits(scores: NDArray[np.float64], temperature: float) -> NDArray[np.float64]:
    z = (scores - scores.max(axis=-1, keepdims=True)) / temperature
    clipped: NDArray[np.float64] = np.maximum(z, _MIN_LOG_WEIGHT)
    return clipped


def _epsilon_lists(
    scores: NDArray[np.float64],
    keys: NDArray[np.float64],
    coins: NDArray[np.float64],
    picks: NDArray[np.float64],
    epsilon: float,
) -> tuple[NDArray[np.intp], NDArray[np.bool_]]:
    """Fill the slots of epsilon-greedy lists for every row.

    Slot by slot: with probability ε a uniform pick among the remaining, else the best
    remaining; ties in score are broken by the random ``keys`` (a uniform tie order).
    """
    n, k = scores.shape
    m = coins.shape[1]
    order = np.lexsort((keys, -scores), axis=1)  # rank → candidate
    remaining = np.ones((n, k), dtype=bool)  # over ranks
    ranks = np.empty((n, m), dtype=np.intp)
    rows = np.arange(n)
    uniform = coins < epsilon
    for j in range(m):  # slots, not candidates
        left = k - j
        target = np.where(uniform[:, j], np.minimum(picks[:, j] * left, left - 1), 0)
        position = np.argmax(
            np.cumsum(remaining, axis=1) > target.astype(np.intp)[:, None], axis=1
        )
        ranks[:, j] = position
        remaining[rows, position] = False
    chosen: NDArray[np.intp] = np.take_along_axis(order, ranks, axis=1)
    explored: NDArray[np.bool_] = np.any(uniform, axis=1)
    return chosen, explored


@functools.lru_cache(maxsize=512)
def _epsilon_by_rank(k: int, m: int, epsilon: float) -> NDArray[np.float64]:
    """P(the candidate ranked ``r`` is in the list) for epsilon-greedy, exact, by DP.

    For the candidate at rank ``r`` only ``u``, how many better-ranked candidates remain,
    matters: after slot ``j`` there are ``k - j`` left, ``l = k - j - 1 - u`` of them worse.
    A slot picks it with ``(1 - ε)·[u = 0] + ε / (k - j)``, removes a better one with
    ``(1 - ε)·[u > 0] + ε·u / (k - j)`` and a worse one with ``ε·l / (k - j)``. ``O(m·k²)``.
    """
    u = np.arange(k)
    state = np.eye(k)  # state[r, u] = P(rank r not yet picked, u better ones remain)
    inclusion = np.zeros(k)
    for j in range(m):
        left = k - j
        worse = np.maximum(left - 1 - u, 0)
        pick = (1.0 - epsilon) * (u == 0) + epsilon / left
        better_gone = (1.0 - epsilon) * (u > 0) + epsilon * u / left
        inclusion += state @ pick
        moved = state * better_gone
        state = state * (epsilon * worse / left)
        state[:, :-1] += moved[:, 1:]
    inclusion.setflags(write=False)
    return inclusion


def _epsilon_inclusion(scores: NDArray[np.float64], m: int, epsilon: float) -> NDArray[np.float64]:
    """Map rank inclusion probabilities to candidates (rows of ``scores``).

    A candidate gets the mean over the ranks of its tie group: exact, because a uniform tie
    order makes every rank of the group equally likely.
    """
    n, k = scores.shape
    by_rank = _epsilon_by_rank(k, m, float(epsilon))
    order = np.argsort(-scores, axis=1, kind="stable")
    ranked = np.take_along_axis(scores, order, axis=1)
    positions = np.broadcast_to(np.arange(k), (n, k))
    new_group = np.ones((n, k), dtype=bool)
    new_group[:, 1:] = ranked[:, 1:] != ranked[:, :-1]
    start = np.maximum.accumulate(np.where(new_group, positions, 0), axis=1)
    ends_group = np.ones((n, k), dtype=bool)
    ends_group[:, :-1] = new_group[:, 1:]
    end = np.minimum.accumulate(np.where(ends_group, positions, k - 1)[:, ::-1], axis=1)[:, ::-1]
    cumulative = np.concatenate(([0.0], np.cumsum(by_rank)))
    averaged = (cumulative[end + 1] - cumulative[start]) / (end - start + 1)
    result = np.empty((n, k))
    np.put_along_axis(result, order, averaged, axis=1)
    return result


def _softmax_inclusion(logits: NDArray[np.float64], m: int) -> NDArray[np.float64]:
    """Exact Plackett-Luce inclusion for ``m ≤ 2`` (rows of logits, max 0).

    ``P(i first) = w_i / W``; ``P(i second) = (w_i / W) · Σ_{j≠i} w_j / (W - w_j)``
    (Plackett 1975; Luce 1959). ``W - w_j`` is summed over the others for the top
    candidate so no cancellation occurs; only the top's own term can dominate the sum, so it
    is summed directly for the top and subtracted for the rest.
    """
    w = np.exp(logits)
    total = w.sum(axis=1, keepdims=True)
    first: NDArray[np.float64] = w / total
    if m == 1:
        return first
    n = w.shape[0]
    top = np.argmax(w, axis=1)
    rows = np.arange(n)
    rest = total - w  # W - w_j, at least half of it left for every j but the top
    without_top = w.copy()
    without_top[rows, top] = 0.0
    rest[rows, top] = without_top.sum(axis=1)  # the top's W - w_j, summed without cancellation
    ratio = w / rest
    full = ratio.sum(axis=1, keepdims=True)
    excluding = full - ratio
    ratio_wo_top = ratio.copy()
    ratio_wo_top[rows, top] = 0.0
    excluding[rows, top] = ratio_wo_top.sum(axis=1)
    result: NDArray[np.float64] = first + first * excluding
    return np.minimum(result, 1.0)


def _needs_monte_carlo(spec: ExplorationSpec, m: int, k: int) -> bool:
    if m >= k:
        return False
    if spec.policy is ExplorationPolicy.THOMPSON:
        return True
    return spec.policy is ExplorationPolicy.SOFTMAX and m >= 3


def _monte_carlo(
    spec: ExplorationSpec,
    scores: NDArray[np.float64],
    m: int,
    rng: np.random.Generator,
    sampler: ScoreSampler | None,
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    draws = spec.propensity_draws
    k = scores.size
    if spec.policy is ExplorationPolicy.THOMPSON:
        assert sampler is not None  # noqa: S101 - callers check it
        rows = _draw(sampler, rng, draws, k)
    else:
        logits = _softmax_logits(scores, spec.temperature)
        rows = logits + _gumbel(rng.random((draws, k)))
    counts = _top_mask(rows, m).sum(axis=0)
    estimate = counts / draws
    return estimate, np.sqrt(estimate * (1.0 - estimate) / draws)


def _row_inclusion(
    spec: ExplorationSpec,
    scores: NDArray[np.float64],
    m: int,
    rng: np.random.Generator | None,
    sampler: ScoreSampler | None,
) -> tuple[NDArray[np.float64], NDArray[np.float64], bool]:
    values, errors, exact = _policy_inclusion(spec, scores[None, :], m)
    if not exact:
        assert rng is not None  # noqa: S101 - checked by callers
        estimate, se = _monte_carlo(spec, scores, m, rng, sampler)
        values, errors = estimate[None, :], se[None, :]
    return _mix(spec, values[0], m), (1.0 - spec.uniform_mix) * errors[0], exact


def _policy_inclusion(
    spec: ExplorationSpec, scores: NDArray[np.float64], m: int
) -> tuple[NDArray[np.float64], NDArray[np.float64], bool]:
    """Exact inclusion per row before the mixture, or ``exact=False`` with placeholders."""
    n, k = scores.shape
    zeros = np.zeros((n, k))
    if m >= k:
        return np.ones((n, k)), zeros, True
    if spec.policy is ExplorationPolicy.EPSILON_GREEDY:
        return _epsilon_inclusion(scores, m, spec.epsilon), zeros, True
    if spec.policy is ExplorationPolicy.SOFTMAX and m <= 2:
        logits = _softmax_logits(scores, spec.temperature)
        return _softmax_inclusion(logits, m), zeros, True
    return zeros, zeros, False


def _mix(spec: ExplorationSpec, values: NDArray[np.float64], m: int) -> NDArray[np.float64]:
    k = values.shape[-1]
    mixed: NDArray[np.float64] = (1.0 - spec.uniform_mix) * values + spec.uniform_mix * m / k
    return mixed


def _batch_inclusion(
    spec: ExplorationSpec, scores: NDArray[np.float64], m: int, streams: _Streams
) -> tuple[NDArray[np.float64], NDArray[np.float64], bool]:
    """Every row's inclusion probabilities, drawing Monte Carlo after the lists were chosen."""
    n, k = scores.shape
    monte_carlo = _needs_monte_carlo(spec, m, k)
    thompson = spec.policy is ExplorationPolicy.THOMPSON
    if monte_carlo and streams.shared is None:
        results = [  # one estimate per decision, on its own generator
            _row_inclusion(spec, scores[i], m, g, streams.samplers[i] if thompson else None)
            for i, g in enumerate(streams.own)
        ]
        return np.stack([r[0] for r in results]), np.stack([r[1] for r in results]), False
    if monte_carlo and thompson:
        # One shared sampler: every row has the same distribution, so one estimate.
        values, errors, _ = _row_inclusion(spec, scores[0], m, streams.shared, streams.samplers[0])
        return np.broadcast_to(values, (n, k)), np.broadcast_to(errors, (n, k)), False
    if n == 1:  # one decision: nothing to de-duplicate, and np.unique(axis=0) is costly
        distinct, inverse = scores, np.zeros(1, dtype=np.intp)
    else:
        distinct, inverse = np.unique(scores, axis=0, return_inverse=True)
        inverse = inverse.reshape(-1)
    if monte_carlo:
        results = [_row_inclusion(spec, row, m, streams.shared, None) for row in distinct]
        values = np.stack([r[0] for r in results])
        errors = np.stack([r[1] for r in results])
        return values[inverse], errors[inverse], False
    values, errors, exact = _policy_inclusion(spec, distinct, m)
    return _mix(spec, values, m)[inverse], errors[inverse], exact
