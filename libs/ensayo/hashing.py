"""Deterministic bucketing: GrowthBook's hash version 2, bucket ranges and range tests.

Bit-for-bit compatible with the ``growthbook`` SDKs (JS and Python 4.x), so a team can move an
experiment between GrowthBook and Ensayo without re-bucketing anyone. See ``docs/hashing.md``.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

from ensayo.errors import InvalidArgument

__all__ = [
    "BUCKETS",
    "FNV_OFFSET_BASIS",
    "FNV_PRIME",
    "WEIGHT_SUM_TOLERANCE",
    "fnv1a32",
    "hash_v2",
    "hash_v2_many",
    "bucket_ranges",
    "normalize_weights",
    "choose_variant",
    "choose_variants",
    "in_range",
    "in_range_many",
]

FNV_OFFSET_BASIS = 0x811C9DC5
"""32-bit FNV offset basis (Fowler, Noll, Vo; draft-eastlake-fnv)."""
FNV_PRIME = 0x01000193
"""32-bit FNV prime, 16777619."""
BUCKETS = 10_000
"""Hash version 2 maps every unit to one of this many equal buckets of [0, 1)."""
WEIGHT_SUM_TOLERANCE = 0.01
"""Weights must sum to 1 within this; GrowthBook accepts sums in [0.99, 1.01] unchanged."""

_MASK = 0xFFFFFFFF
_CHUNK = 1 << 16  # ids per vectorised batch: bounds memory, keeps the working set in cache
_PRIME_U32 = np.uint32(FNV_PRIME)
_ASCII_ZERO = np.uint32(ord("0"))


def fnv1a32(text: str) -> int:
    """32-bit FNV-1a of ``text`` read as UTF-16 code units, as GrowthBook hashes strings.

    GrowthBook's JS SDK feeds ``charCodeAt(i)`` (a UTF-16 code unit, 0..65535) into FNV-1a,
    and its Python SDK reproduces that; so do we. For ASCII text the code units are the
    bytes; a character above U+FFFF (an emoji) is two units, its surrogate pair; a lone
    surrogate in a Python string is one unit. Returns an int in [0, 2**32).
    """
    h = FNV_OFFSET_BASIS
    for unit in _code_units(text):
        h = ((h ^ unit) * FNV_PRIME) & _MASK
    return h


def _code_units(text: str) -> Sequence[int]:
    if text.isascii():
        return text.encode("ascii")
    data = text.encode("utf-16-le", "surrogatepass")
    return [data[i] | (data[i + 1] << 8) for i in range(0, len(data), 2)]


def hash_v2(seed: str, unit_id: str) -> float:
    """GrowthBook hash version 2 of ``unit_id`` under ``seed``: a float in [0, 1).

    ``n = fnv1a32(str(fnv1a32(seed + unit_id))) % 10000`` and the result is ``n / 10000``,
    so it is always a multiple of 1e-4 (one of ``BUCKETS`` buckets). The second FNV pass
    over the decimal text of the first spreads ids that differ only at the end. Equals
    ``growthbook.core.gbhash(seed, unit_id, 2)`` for every string, the empty one included
    (GrowthBook itself never buckets an empty id: callers must treat it as missing).
    """
    return (fnv1a32(str(fnv1a32(seed + unit_id))) % BUCKETS) / BUCKETS


def hash_v2_many(seed: str, unit_ids: Sequence[str]) -> NDArray[np.float64]:
    """``hash_v2(seed, id)`` for every id, vectorised: float64 array of the ids' length.

    Equal to ``hash_v2`` element for element, for any text (non-ASCII and astral ids are
    hashed through their UTF-16 code units, in numpy too). The FNV state after the seed
    is computed once; the ids are then encoded in one call per batch and hashed code unit
    by code unit across all ids with uint32 wraparound; the second pass runs over the
    decimal digits of the first hash, also across all ids. An empty input gives an empty
    array.
    """
    n = len(unit_ids)
    out = np.empty(n, dtype=np.float64)
    if n == 0:
        return out
    state = FNV_OFFSET_BASIS
    for unit in _code_units(seed):
        state = ((state ^ unit) * FNV_PRIME) & _MASK
    for lo in range(0, n, _CHUNK):
        chunk = unit_ids[lo : lo + _CHUNK]
        first = _fnv_continue(np.uint32(state), chunk)
        second = _fnv_decimal(first)
        out[lo : lo + len(chunk)] = (second % np.uint32(BUCKETS)).astype(np.float64) / BUCKETS
    return out


def _fnv_continue(state: np.uint32, ids: Sequence[str]) -> NDArray[np.uint32]:
    """FNV-1a continued from ``state`` over each id's UTF-16 code units."""
    count = len(ids)
    joined = "".join(ids)
    lengths = np.fromiter(map(len, ids), dtype=np.int64, count=count)
    units: NDArray[np.uint8] | NDArray[np.uint16]
    if joined.isascii():
        units = np.frombuffer(joined.encode("ascii"), dtype=np.uint8)
    else:
        units = np.frombuffer(joined.encode("utf-16-le", "surrogatepass"), dtype="<u2")
        # A code point above U+FFFF takes two UTF-16 units: add each id's count of them.
        points = np.frombuffer(joined.encode("utf-32-le", "surrogatepass"), dtype="<u4")
        astral = np.concatenate(([0], np.cumsum(points > 0xFFFF)))
        ends = np.cumsum(lengths)
        lengths = lengths + astral[ends] - astral[ends - lengths]
    h = np.full(count, state, dtype=np.uint32)
    longest = int(lengths.max())
    if longest == 0:
        return h
    if int(lengths.min()) == longest:
        # Same length everywhere (UUIDs, fixed-width keys): walk the columns of one matrix.
        columns = np.ascontiguousarray(units.reshape(count, longest).T)
        for column in columns:
            h ^= column
            h *= _PRIME_U32
        return h
    # Ragged: order ids by length, longest first, so column j concerns a prefix of them.
    order = np.argsort(-lengths, kind="stable")
    starts = (np.cumsum(lengths) - lengths)[order]
    ascending = lengths[order][::-1]
    active = count - np.searchsorted(ascending, np.arange(longest), side="right")
    hs = h[order]
    for j in range(longest):
        k = int(active[j])
        part = hs[:k]
        part ^= units[starts[:k] + j]
        part *= _PRIME_U32
    h[order] = hs
    return h


def _fnv_decimal(values: NDArray[np.uint32]) -> NDArray[np.uint32]:
    """FNV-1a of each value's decimal text (``str(int)``: no sign, no leading zeros)."""
    h = np.full(values.shape, FNV_OFFSET_BASIS, dtype=np.uint32)
    for power in range(9, -1, -1):  # 2**32 - 1 has 10 digits; 10**9 still fits in uint32
        place = np.uint32(10**power)
        digit = (values // place) % np.uint32(10)
        stepped = (h ^ (digit + _ASCII_ZERO)) * _PRIME_U32
        h = stepped if power == 0 else np.where(values >= place, stepped, h)
    return h


def normalize_weights(weights: Sequence[float], field: str = "weights") -> tuple[float, ...]:
    """Scale non-negative ``weights`` to sum to 1 (``[1, 1, 2]`` → ``(0.25, 0.25, 0.5)``).

    For the catalog, which stores normalised weights so that ``bucket_ranges`` (and
    GrowthBook) see the same numbers. Raises ``InvalidArgument`` on an empty list, a
    negative, non-finite or boolean weight, or an all-zero list.
    """
    values = _checked_weights(weights, field)
    total = math.fsum(values)
    if total <= 0.0:
        raise InvalidArgument(field, "at least one weight must be positive")
    return tuple(w / total for w in values)


def _checked_weights(weights: Sequence[float], field: str) -> list[float]:
    if isinstance(weights, str | bytes) or len(weights) == 0:
        raise InvalidArgument(field, "needs at least one weight")
    values: list[float] = []
    for i, w in enumerate(weights):
        value = _real(w, f"{field}[{i}]")
        if not math.isfinite(value) or value < 0:
            raise InvalidArgument(f"{field}[{i}]", f"must be finite and >= 0, got {w!r}")
        values.append(value)
    return values


def _real(value: object, field: str) -> float:
    """Return a real number (numpy scalars included) as a float; a bool is not a number."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise InvalidArgument(field, f"must be a number, got {value!r}")
    return float(value)


def bucket_ranges(weights: Sequence[float], coverage: float = 1.0) -> list[tuple[float, float]]:
    """GrowthBook's ``getBucketRanges``: one half-open range [start, end) per variant.

    Variant i starts at the cumulative weight of the variants before it and is
    ``coverage * weights[i]`` wide, so lowering coverage shrinks every range from its end
    and a unit never moves to another variant, it only leaves or joins. The arithmetic is
    GrowthBook's, float for float: ``start_i = w_0 + ... + w_(i-1)`` summed left to right,
    ``end_i = start_i + coverage * w_i``.

    ``weights`` must already sum to 1 within ``WEIGHT_SUM_TOLERANCE`` (use
    ``normalize_weights``); they are used as given, as GrowthBook does. Unlike GrowthBook,
    which silently falls back to equal weights and clamps coverage, invalid input raises
    ``InvalidArgument`` naming ``weights`` or ``coverage``: an empty list, a negative,
    non-finite or boolean weight, a sum outside [0.99, 1.01], or coverage outside [0, 1].
    """
    values = _checked_weights(weights, "weights")
    total = math.fsum(values)
    if abs(total - 1.0) > WEIGHT_SUM_TOLERANCE:
        raise InvalidArgument(
            "weights", f"must sum to 1 (within {WEIGHT_SUM_TOLERANCE}), got {total!r}"
        )
    cover = _real(coverage, "coverage")
    if not 0.0 <= cover <= 1.0:  # also rejects NaN
        raise InvalidArgument("coverage", f"must be in [0, 1], got {coverage!r}")
    ranges: list[tuple[float, float]] = []
    cumulative = 0.0
    for w in values:
        start = cumulative
        cumulative += w
        ranges.append((start, start + cover * w))
    return ranges


def choose_variant(n: float, ranges: Sequence[tuple[float, float]]) -> int:
    """Index of the first range holding ``n`` (``start <= n < end``), or -1 if none does.

    GrowthBook's ``chooseVariation``; with coverage below 1 the gaps between ranges are the
    units left out of the experiment.
    """
    for i, (start, end) in enumerate(ranges):
        if start <= n < end:
            return i
    return -1


def choose_variants(
    ns: NDArray[np.float64], ranges: Sequence[tuple[float, float]]
) -> NDArray[np.int32]:
    """``choose_variant`` for every hash in ``ns``: int32 array, -1 outside every range.

    Vectorised over units (the loop is over the few ranges); the first matching range wins,
    as in ``choose_variant``, even for overlapping hand-written ranges.
    """
    values = np.asarray(ns, dtype=np.float64)
    out = np.full(values.shape, -1, dtype=np.int32)
    for i in range(len(ranges) - 1, -1, -1):
        start, end = ranges[i]
        out[(values >= start) & (values < end)] = i
    return out


def in_range(n: float, start: float, end: float) -> bool:
    """Whether ``start <= n < end`` (GrowthBook's ``inRange``).

    Layers: an experiment owning ``[start, end)`` of a layer sees only units with
    ``in_range(hash_v2(layer.salt, id), start, end)``. Holdouts: a holdout of ``fraction``
    f holds out ``in_range(hash_v2(holdout.salt, id), 0, f)``. An empty or inverted range
    holds nothing.
    """
    return start <= n < end


def in_range_many(ns: NDArray[np.float64], start: float, end: float) -> NDArray[np.bool_]:
    """``in_range`` for every hash in ``ns``: a boolean array of the same shape."""
    values = np.asarray(ns, dtype=np.float64)
    result: NDArray[np.bool_] = (values >= start) & (values < end)
    return result
