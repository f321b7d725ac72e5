"""Deterministic bucketing: GrowthBook's hash version 2, bucket ranges and range tests.

Bit-for-bit compatible with the ``growthbook`` SDKs (JS and Python 4.x), so a team can move an
experiment between GrowthBook and Ensayo without re-bucketing anyone. See ``docs/hashing.md``.
"""

from __future__ import annotations

import math
import numbers
import struct
from array import array
from collections.abc import Sequence
from functools import lru_cache

import numpy as np
from numpy.typing import NDArray

from ensayo.errors import InvalidArgument
from ensayo.unit_ids import FixedWidthIds

__all__ = [
    "BUCKETS",
    "FNV_OFFSET_BASIS",
    "FNV_PRIME",
    "WEIGHT_SUM_TOLERANCE",
    "bucket_v2",
    "buckets_v2",
    "fnv1a32",
    "hash_v2",
    "hash_v2_many",
    "bucket_ranges",
    "normalize_weights",
    "choose_variant",
    "choose_variants",
    "in_range",
    "in_range_many",
    "seed_state",
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
_UNMASKED_UNITS = 32  # texts up to this many code units are reduced mod 2**32 once
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
    return _fnv_from(FNV_OFFSET_BASIS, text)


def _fnv_from(h: int, text: str) -> int:
    """FNV-1a continued from state ``h`` over the UTF-16 code units of ``text``."""
    prime = FNV_PRIME
    units = text.encode("ascii") if text.isascii() else _code_units(text)
    if len(units) <= _UNMASKED_UNITS:
        # XOR with a code unit and multiplication both commute with reduction mod 2**32,
        # so a short text is hashed with one reduction at the end.
        for unit in units:
            h = (h ^ unit) * prime
        return h & _MASK
    mask = _MASK
    for unit in units:
        h = ((h ^ unit) * prime) & mask
    return h


def _code_units(text: str) -> Sequence[int]:
    if text.isascii():
        return text.encode("ascii")
    data = text.encode("utf-16-le", "surrogatepass")
    return [data[i] | (data[i + 1] << 8) for i in range(0, len(data), 2)]


def seed_state(seed: str) -> int:
    """The FNV-1a state after hashing ``seed``: where ``hash_v2(seed, id)`` continues from.

    FNV-1a reads its input left to right, so hashing ``seed + id`` equals hashing ``id``
    from this state: compiled experiments, holdouts and layers compute it once.
    """
    return _fnv_from(FNV_OFFSET_BASIS, seed)


def bucket_v2(state: int, unit_id: str) -> int:
    """Hash version 2's bucket of ``unit_id``, in [0, BUCKETS), given ``seed_state(seed)``.

    ``hash_v2(seed, unit_id) == bucket_v2(seed_state(seed), unit_id) / BUCKETS`` exactly.
    """
    first = _fnv_from(state, unit_id)
    # The second pass hashes the decimal text of ``first``: the state after its leading
    # digits (all but the last five) comes from a table, the last five are hashed here.
    high, low = divmod(first, _LOW_PLACE)
    if high:
        a, b, c, d, e = b"%05d" % low
        p = FNV_PRIME
        h = ((((_DECIMAL_PREFIX[high] ^ a) * p ^ b) * p ^ c) * p ^ d) * p
        return (((h ^ e) * p) & _MASK) % BUCKETS
    return _fnv_from(FNV_OFFSET_BASIS, str(low)) % BUCKETS


def buckets_v2(states: Sequence[int], unit_id: str) -> list[int]:
    """``bucket_v2(state, unit_id)`` for each seed state: one id under many seeds at once.

    For a unit assigned to many experiments. From three seeds on, the states are packed
    into one Python integer, 64 bits per seed, and both FNV passes step every seed at once
    (a lane holds a 32-bit state; times the 25-bit prime it never carries into the next
    lane); the decimal digits of the first hashes are taken lane by lane with
    multiply-shift divisions (by 100,000 and by 10). Equal to ``bucket_v2`` for every
    input.
    """
    n = len(states)
    if n < _PACKED_MIN:
        return [bucket_v2(state, unit_id) for state in states]
    if n > _PACKED_MAX:
        out: list[int] = []
        for lo in range(0, n, _PACKED_MAX):
            out.extend(buckets_v2(states[lo : lo + _PACKED_MAX], unit_id))
        return out
    lanes = _lanes(n)
    prime, ones, mask = FNV_PRIME, lanes.ones, lanes.mask
    h = int.from_bytes(lanes.pack(*states), "little")
    for unit in unit_id.encode("ascii") if unit_id.isascii() else _code_units(unit_id):
        h = ((h ^ (unit * ones)) * prime) & mask
    # Each lane's first hash is high * 100_000 + x: high = (h >> 5) // 3125, exactly.
    high = ((((h >> 5) & lanes.high_mask) * _DIV3125_MUL) >> _DIV3125_SHIFT) & lanes.quotient_mask
    x = h - high * _LOW_PLACE
    highs = lanes.unpack(high.to_bytes(8 * n, "little"))[::2]
    if 0 in highs:  # a first hash of fewer than six digits (1 in 43,000 per seed)
        return [bucket_v2(state, unit_id) for state in states]
    h = int.from_bytes(lanes.pack(*[_DECIMAL_PREFIX[value] for value in highs]), "little")
    digits = []  # the last five digits, least significant first
    for _ in range(4):
        q = ((x * _DIV10_MUL) >> _DIV10_SHIFT) & lanes.quotient_mask  # x // 10 in each lane
        digits.append(x - q * 10)
        x = q
    digits.append(x)
    for digit in reversed(digits):
        h = ((h ^ (digit | lanes.ascii_zero)) * prime) & mask
    return [value % BUCKETS for value in lanes.unpack(h.to_bytes(8 * n, "little"))[::2]]


_PACKED_MIN = 3  # below, the scalar loop is faster
_PACKED_MAX = 64  # seeds per packed integer
_DIV10_MUL = 0xCCCCCCCD  # (x * _DIV10_MUL) >> 35 == x // 10 for every x < 2**32
_DIV10_SHIFT = 35
_DIV3125_SHIFT = 44
_DIV3125_MUL = -(-(1 << _DIV3125_SHIFT) // 3125)  # (x * it) >> 44 == x // 3125, x < 2**27


class _Lanes:
    """Constants for ``n`` 64-bit lanes packed in one integer."""

    __slots__ = ("ascii_zero", "high_mask", "mask", "ones", "pack", "quotient_mask", "unpack")

    def __init__(self, n: int) -> None:
        self.ones = sum(1 << (64 * i) for i in range(n))
        self.mask = _MASK * self.ones
        self.high_mask = ((1 << 27) - 1) * self.ones  # a 32-bit value shifted right by 5
        self.quotient_mask = ((1 << 17) - 1) * self.ones  # every quotient here is < 2**17
        self.ascii_zero = ord("0") * self.ones
        self.pack = struct.Struct(f"<{n}Q").pack
        self.unpack = struct.Struct(f"<{2 * n}I").unpack  # low and high halves of each lane


@lru_cache(maxsize=_PACKED_MAX)
def _lanes(n: int) -> _Lanes:
    return _Lanes(n)


def hash_v2(seed: str, unit_id: str) -> float:
    """GrowthBook hash version 2 of ``unit_id`` under ``seed``: a float in [0, 1).

    ``n = fnv1a32(str(fnv1a32(seed + unit_id))) % 10000`` and the result is ``n / 10000``,
    so it is always a multiple of 1e-4 (one of ``BUCKETS`` buckets). The second FNV pass
    over the decimal text of the first spreads ids that differ only at the end. Equals
    ``growthbook.core.gbhash(seed, unit_id, 2)`` for every string, the empty one included
    (GrowthBook itself never buckets an empty id: callers must treat it as missing).
    """
    return bucket_v2(_fnv_from(FNV_OFFSET_BASIS, seed), unit_id) / BUCKETS


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
        second = _fnv_decimal_tabled(first)
        out[lo : lo + len(chunk)] = (second % np.uint32(BUCKETS)).astype(np.float64) / BUCKETS
    return out


def _fnv_continue(state: np.uint32, ids: Sequence[str]) -> NDArray[np.uint32]:
    """FNV-1a continued from ``state`` over each id's UTF-16 code units."""
    count = len(ids)
    if isinstance(ids, FixedWidthIds):  # ASCII of one width: the columns are the bytes
        return _fnv_columns(np.full(count, state, dtype=np.uint32), ids.matrix.T)
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
        return _fnv_columns(h, units.reshape(count, longest).T)
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


def _fnv_columns(
    h: NDArray[np.uint32], columns: NDArray[np.uint8] | NDArray[np.uint16]
) -> NDArray[np.uint32]:
    """FNV-1a continued from ``h`` over the rows of ``columns`` (code unit j of every id)."""
    for column in np.ascontiguousarray(columns):
        h ^= column
        h *= _PRIME_U32
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


_LOW_PLACE = 100_000
_DECIMAL_PREFIX_U32 = _fnv_decimal(np.arange(_MASK // _LOW_PLACE + 1, dtype=np.uint32))
_DECIMAL_PREFIX: array[int] = array("L", _DECIMAL_PREFIX_U32.tolist())
"""``fnv1a32(str(n))`` for every ``n`` up to ``(2**32 - 1) // 100_000``: leading digits."""


def _fnv_decimal_tabled(values: NDArray[np.uint32]) -> NDArray[np.uint32]:
    """:func:`_fnv_decimal` with the leading digits from the table (as ``bucket_v2`` does).

    A value of 100,000 or more continues from its leading digits' state over its last five
    digits, zero-padded; a smaller one hashes its own digits from the offset basis.
    """
    high, low = np.divmod(values, np.uint32(_LOW_PLACE))
    padded = high > 0
    h = np.where(padded, _DECIMAL_PREFIX_U32[high], np.uint32(FNV_OFFSET_BASIS))
    for power in range(4, -1, -1):
        place = np.uint32(10**power)
        digit = (low // place) % np.uint32(10)
        stepped = (h ^ (digit + _ASCII_ZERO)) * _PRIME_U32
        h = stepped if power == 0 else np.where(padded | (low >= place), stepped, h)
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
