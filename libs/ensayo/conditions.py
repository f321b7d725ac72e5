"""MongoDB-style targeting conditions with GrowthBook's ``evalCondition`` semantics.

Conditions are validated once (every bad operator or operand is named by its path), then
compiled into closures; evaluation never raises and never uses ``eval``.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable, Mapping, Sequence
from functools import lru_cache
from typing import Any, TypeGuard

from ensayo.errors import InvalidArgument

__all__ = [
    "Condition",
    "Evaluator",
    "MAX_DEPTH",
    "MAX_REGEX_LENGTH",
    "TYPE_NAMES",
    "validate_condition",
    "compile_condition",
    "evaluate",
    "version_key",
]

Condition = Mapping[str, object]
"""A condition: attribute paths (``"address.country"``) or ``$and/$or/$nor/$not``."""
Evaluator = Callable[[Mapping[str, object]], bool]
"""A compiled condition: attributes in, match or not out."""
_Predicate = Callable[[object], bool]

MAX_REGEX_LENGTH = 1000
"""Longest ``$regex`` pattern accepted, in characters."""
MAX_DEPTH = 32
"""Deepest nesting of conditions, operators and literals accepted."""
TYPE_NAMES = ("string", "number", "boolean", "array", "object", "null")
"""The operands ``$type`` accepts: JSON types as GrowthBook names them."""

_LOGICAL = ("$and", "$or", "$nor")
_ORDERING = ("$gt", "$gte", "$lt", "$lte")
_VERSION = ("$vgt", "$vgte", "$vlt", "$vlte", "$veq", "$vne")
_EVAL_ERRORS = (
    TypeError,
    ValueError,
    AttributeError,
    IndexError,
    KeyError,
    ArithmeticError,
    RecursionError,
)


def _always(_value: object) -> bool:
    return True


def _never(_value: object) -> bool:
    return False


# -- validation -------------------------------------------------------------------------


def validate_condition(condition: Mapping[str, object], field: str = "targeting") -> None:
    """Raise ``InvalidArgument`` unless ``condition`` is a well-formed condition.

    The error's ``field`` is the path to the first bad part, built from ``field``, the
    attribute paths and operators, and list indices: ``targeting.country.$foo``,
    ``targeting.$or[1].age.$gt``. Rejected: unknown operators (at condition level only
    ``$and/$or/$nor/$not`` and attribute paths), an object mixing operators with plain
    keys, operands of the wrong type (``$in/$nin`` a list of scalars, ``$and/$or/$nor`` a
    list of conditions, ``$exists`` a bool, ``$regex`` a pattern of at most
    ``MAX_REGEX_LENGTH`` characters that compiles, ``$type`` one of ``TYPE_NAMES``, ...),
    values that are not JSON (NaN, sets, bytes), and nesting deeper than ``MAX_DEPTH``.
    GrowthBook evaluates such conditions to false; Ensayo refuses to store them.

    Regex safety: patterns run on Python's ``re``, which has no backtracking limit or
    timeout, so a pattern such as ``(a+)+$`` can take exponential time on a crafted
    attribute value. The only guards are the length cap and that patterns come from catalog
    authors, never from the subjects being evaluated; prefer anchored, simple patterns.
    Patterns use Python syntax, as in GrowthBook's Python SDK (close to, not equal to, JS).
    """
    _check_condition(condition, field, 0)


def _check_depth(field: str, depth: int) -> None:
    if depth > MAX_DEPTH:
        raise InvalidArgument(field, f"nested deeper than {MAX_DEPTH} levels")


def _check_condition(condition: object, field: str, depth: int) -> None:
    _check_depth(field, depth)
    if not isinstance(condition, Mapping):
        raise InvalidArgument(field, f"must be an object (a condition), got {_kind(condition)}")
    for key, value in condition.items():
        if not isinstance(key, str) or not key:
            raise InvalidArgument(field, f"keys must be non-empty strings, got {key!r}")
        path = f"{field}.{key}"
        if key in _LOGICAL:
            if not _is_list(value):
                raise InvalidArgument(path, f"must be a list of conditions, got {_kind(value)}")
            for i, item in enumerate(value):
                _check_condition(item, f"{path}[{i}]", depth + 1)
        elif key == "$not":
            _check_condition(value, path, depth + 1)
        elif key.startswith("$"):
            raise InvalidArgument(
                path, "unknown condition operator; expected $and, $or, $nor, $not or a field"
            )
        else:
            _check_value_condition(value, path, depth + 1)


def _check_value_condition(value: object, field: str, depth: int) -> None:
    """Check an attribute's condition: an operator object or a literal to compare with."""
    _check_depth(field, depth)
    if isinstance(value, Mapping) and _has_operator(value):
        if not _is_operator_object(value):
            raise InvalidArgument(field, "mixes operators ($...) with plain keys")
        for op, operand in value.items():
            _check_operator(op, operand, f"{field}.{op}", depth + 1)
    else:
        _check_literal(value, field, depth)


def _check_operator(op: str, operand: object, field: str, depth: int) -> None:  # noqa: PLR0912
    _check_depth(field, depth)
    if op in ("$eq", "$ne"):
        if not _is_scalar(operand):
            raise InvalidArgument(field, "needs a string, number, boolean or null")
        _check_literal(operand, field, depth)
    elif op in _ORDERING:
        if not (isinstance(operand, str) or _is_number(operand)):
            raise InvalidArgument(field, f"needs a number or a string, got {_kind(operand)}")
        _check_literal(operand, field, depth)
    elif op in _VERSION:
        if not (isinstance(operand, str) or _is_number(operand)):
            raise InvalidArgument(field, f"needs a version string, got {_kind(operand)}")
        _check_literal(operand, field, depth)
    elif op in ("$in", "$nin"):
        if not _is_list(operand):
            raise InvalidArgument(field, f"needs a list, got {_kind(operand)}")
        for i, item in enumerate(operand):
            if not _is_scalar(item):
                raise InvalidArgument(f"{field}[{i}]", "must be a string, number, boolean or null")
            _check_literal(item, f"{field}[{i}]", depth + 1)
    elif op == "$all":
        if not _is_list(operand):
            raise InvalidArgument(field, f"needs a list, got {_kind(operand)}")
        for i, item in enumerate(operand):
            _check_value_condition(item, f"{field}[{i}]", depth + 1)
    elif op == "$elemMatch":
        if not isinstance(operand, Mapping):
            raise InvalidArgument(field, f"needs an object, got {_kind(operand)}")
        if _elem_match_on_value(operand):
            _check_value_condition(operand, field, depth)
        else:
            _check_condition(operand, field, depth)
    elif op == "$size":
        if not (_is_number(operand) or _is_nonempty_operator_object(operand)):
            raise InvalidArgument(field, f"needs a number or operators, got {_kind(operand)}")
        _check_value_condition(operand, field, depth)
    elif op == "$exists":
        if not isinstance(operand, bool):
            raise InvalidArgument(field, f"needs true or false, got {_kind(operand)}")
    elif op == "$type":
        if operand not in TYPE_NAMES:
            raise InvalidArgument(field, f"needs one of {', '.join(TYPE_NAMES)}")
    elif op == "$regex":
        _check_regex(operand, field)
    elif op == "$not":
        _check_value_condition(operand, field, depth)
    elif op in _LOGICAL:
        raise InvalidArgument(field, f"{op} combines conditions; it cannot apply to a field")
    else:
        raise InvalidArgument(field, "unknown operator")


def _check_regex(pattern: object, field: str) -> None:
    if not isinstance(pattern, str):
        raise InvalidArgument(field, f"needs a pattern string, got {_kind(pattern)}")
    if len(pattern) > MAX_REGEX_LENGTH:
        raise InvalidArgument(field, f"pattern longer than {MAX_REGEX_LENGTH} characters")
    try:
        re.compile(pattern)
    except re.error as exc:
        raise InvalidArgument(field, f"invalid pattern: {exc}") from None


def _check_literal(value: object, field: str, depth: int) -> None:
    _check_depth(field, depth)
    if value is None or isinstance(value, bool | str):
        return
    if isinstance(value, int | float):
        if isinstance(value, float) and math.isnan(value):
            raise InvalidArgument(field, "NaN is not a JSON value")
        return
    if _is_list(value):
        for i, item in enumerate(value):
            _check_literal(item, f"{field}[{i}]", depth + 1)
        return
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str):
                raise InvalidArgument(field, f"object keys must be strings, got {key!r}")
            _check_literal(item, f"{field}.{key}", depth + 1)
        return
    raise InvalidArgument(field, f"{_kind(value)} is not a JSON value")


# -- compilation ------------------------------------------------------------------------


def compile_condition(condition: Mapping[str, object], field: str = "targeting") -> Evaluator:
    """Validate ``condition`` (see ``validate_condition``) and return a fast evaluator.

    The evaluator takes the subject's attributes and returns whether they match. It is
    pure and thread-safe, compiles each regex once, and never raises: an attribute of an
    unexpected type simply does not match, as in GrowthBook. An empty condition matches
    everything.
    """
    validate_condition(condition, field)
    predicate = _compile_condition(condition)

    def evaluator(attributes: Mapping[str, object]) -> bool:
        try:
            return predicate(attributes)
        except _EVAL_ERRORS:  # e.g. absurdly deep attributes; fail the whole condition
            return False

    return evaluator


def evaluate(condition: Mapping[str, object], attributes: Mapping[str, object]) -> bool:
    """Whether ``attributes`` match ``condition``; compiles on every call.

    For one-off checks and tests; hot paths keep the ``compile_condition`` result. Raises
    ``InvalidArgument`` (field ``targeting...``) for an invalid condition, never for odd
    attribute values.
    """
    return compile_condition(condition)(attributes)


def _compile_condition(condition: Mapping[str, object]) -> _Predicate:
    parts: list[_Predicate] = []
    for key, value in condition.items():
        if key in _LOGICAL:
            subs = [_compile_condition(_as_mapping(c)) for c in _as_list(value)]
            parts.append(_logical(key, subs))
        elif key == "$not":
            parts.append(_negate(_compile_condition(_as_mapping(value))))
        else:
            parts.append(_on_path(key, _compile_value(value)))
    return _all_of(parts)


def _logical(op: str, subs: list[_Predicate]) -> _Predicate:
    if op == "$and":
        return _all_of(subs)
    # An empty $or matches (GrowthBook); an empty $nor therefore does not.
    if op == "$or":
        return (lambda attrs: any(p(attrs) for p in subs)) if subs else _always
    return (lambda attrs: not any(p(attrs) for p in subs)) if subs else _never


def _all_of(parts: list[_Predicate]) -> _Predicate:
    if not parts:
        return _always
    if len(parts) == 1:
        return parts[0]
    if len(parts) == 2:
        first, second = parts
        return lambda value: first(value) and second(value)
    every = tuple(parts)

    def predicate(value: object) -> bool:
        for p in every:  # noqa: SIM110 - a plain loop is faster than all() on a generator
            if not p(value):
                return False
        return True

    return predicate


def _negate(predicate: _Predicate) -> _Predicate:
    return lambda value: not predicate(value)


def _on_path(path: str, predicate: _Predicate) -> _Predicate:
    """Apply ``predicate`` to the value at a dotted ``path`` (missing → None)."""
    segments = tuple(path.split("."))
    if len(segments) == 1:
        return lambda attrs: predicate(
            attrs.get(path)
            if type(attrs) is dict or isinstance(attrs, Mapping)
            else _get_path(attrs, segments)
        )
    return lambda attrs: predicate(_get_path(attrs, segments))


def _get_path(current: object, segments: tuple[str, ...]) -> object:
    """GrowthBook's ``getPath``: objects by key, arrays by canonical index or ``length``."""
    for segment in segments:
        if isinstance(current, Mapping):
            if segment not in current:
                return None
            current = current[segment]
        elif _is_list(current):
            if segment == "length":
                current = len(current)
            elif _is_index(segment, len(current)):
                current = current[int(segment)]
            else:
                return None
        else:
            return None
    return current


def _is_index(segment: str, length: int) -> bool:
    return (
        len(segment) <= 10
        and segment.isascii()
        and segment.isdigit()
        and (segment == "0" or segment[0] != "0")
        and int(segment) < length
    )


def _compile_value(value: object) -> _Predicate:
    """Predicate on one attribute value: an operator object or a literal equality."""
    if isinstance(value, Mapping) and _is_operator_object(value):
        return _all_of([_compile_operator(op, operand) for op, operand in value.items()])
    if isinstance(value, str):
        return lambda v: isinstance(v, str) and v == value
    if value is None:
        return lambda v: v is None
    return lambda v: _deep_equal(value, v)


def _compile_operator(op: str, operand: object) -> _Predicate:  # noqa: PLR0911
    if op == "$eq":
        return lambda v: _scalar_equal(v, operand)
    if op == "$ne":
        return lambda v: not _scalar_equal(v, operand)
    if op in _ORDERING:
        return _ordering(op, operand)
    if op in _VERSION:
        return _version(op, operand)
    if op in ("$in", "$nin"):
        inside = _membership(_as_list(operand))
        return inside if op == "$in" else _negate(inside)
    if op == "$all":
        wanted = [_compile_value(item) for item in _as_list(operand)]
        return lambda v: _is_list(v) and all(any(p(x) for x in v) for p in wanted)
    if op == "$elemMatch":
        spec = _as_mapping(operand)
        each = _compile_value(spec) if _elem_match_on_value(spec) else _compile_condition(spec)
        return lambda v: _is_list(v) and any(each(x) for x in v if x is not None)
    if op == "$size":
        size = _compile_value(operand)
        return lambda v: _is_list(v) and size(len(v))
    if op == "$exists":
        return (lambda v: v is not None) if operand else (lambda v: v is None)
    if op == "$type":
        return lambda v: _json_type(v) == operand
    if op == "$regex":
        pattern = re.compile(str(operand))
        return lambda v: isinstance(v, str) and pattern.search(v) is not None
    if op == "$not":
        return _negate(_compile_value(operand))
    raise AssertionError(f"unvalidated operator {op}")  # validation rejects it first


_COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    "$gt": operator.gt,
    "$gte": operator.ge,
    "$lt": operator.lt,
    "$lte": operator.le,
}


def _ordering(op: str, operand: object) -> _Predicate:
    test: Callable[[int], bool] = {
        "$gt": lambda c: c > 0,
        "$gte": lambda c: c >= 0,
        "$lt": lambda c: c < 0,
        "$lte": lambda c: c <= 0,
    }[op]
    if isinstance(operand, str):
        text = operand
        return lambda v: isinstance(v, str) and test(_compare_text(v, text))
    number = _as_number(operand)
    compare = _COMPARE[op]  # on numbers that are not NaN, the same as test(sign)

    def predicate(v: object) -> bool:
        kind = type(v)
        if kind is float or kind is int:
            return compare(v, number)  # NaN compares false, as it must
        if isinstance(v, bool) or not isinstance(v, int | float) or v != v:  # noqa: PLR0124
            return False
        return test((v > number) - (v < number))

    return predicate


def _compare_text(a: str, b: str) -> int:
    """Order strings like JS: by UTF-16 code unit (an astral character sorts below U+E000)."""
    if not (a.isascii() and b.isascii()):
        ua = a.encode("utf-16-be", "surrogatepass")
        ub = b.encode("utf-16-be", "surrogatepass")
        return (ua > ub) - (ua < ub)
    return (a > b) - (a < b)


def _version(op: str, operand: object) -> _Predicate:
    want = version_key(_as_version(operand))
    operand_is_text = isinstance(operand, str)
    mismatch = op == "$vne"  # a type mismatch matches $vne only, as in GrowthBook
    test: Callable[[str], bool] = {
        "$vgt": lambda k: k > want,
        "$vgte": lambda k: k >= want,
        "$vlt": lambda k: k < want,
        "$vlte": lambda k: k <= want,
        "$veq": lambda k: k == want,
        "$vne": lambda k: k != want,
    }[op]

    def predicate(v: object) -> bool:
        if isinstance(v, str) if operand_is_text else _is_number(v):
            return test(version_key(_as_version(v)))
        return mismatch

    return predicate


def _membership(values: Sequence[object]) -> _Predicate:
    """``$in``: the value, or any element of an array value, strictly equals a listed one."""
    keys = frozenset(k for k in map(_scalar_key, values) if k is not None)
    texts = frozenset(v for kind, v in keys if kind == "string")

    def predicate(v: object) -> bool:
        if type(v) is str:
            return v in texts
        if _is_list(v):
            return any(_scalar_key(x) in keys for x in v)
        return _scalar_key(v) in keys

    return predicate


# -- value model (JSON types as GrowthBook sees them) -----------------------------------


def _json_type(value: object) -> str:  # noqa: PLR0911
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if _is_list(value):
        return "array"
    if isinstance(value, Mapping):
        return "object"
    return "unknown"


def _scalar_key(value: object) -> tuple[str, object] | None:
    """Hashable identity for strict (``===``) equality of scalars; None for the rest."""
    kind = _json_type(value)
    if kind in ("array", "object", "unknown"):
        return None
    if kind == "number" and value != value:  # noqa: PLR0124 - NaN equals nothing
        return None
    return (kind, value)


def _scalar_equal(a: object, b: object) -> bool:
    """JS ``===`` between JSON values: same type, scalars only, NaN never equal."""
    key = _scalar_key(a)
    return key is not None and key == _scalar_key(b)


def _deep_equal(a: object, b: object) -> bool:
    """Literal equality as GrowthBook compares JSON: types must match at every level.

    Deliberate difference: objects compare regardless of key order (GrowthBook compares
    JS property order), because conditions and attributes reach Ensayo through
    ``google.protobuf.Struct``, whose maps keep no order.
    """
    kind = _json_type(a)
    if kind != _json_type(b):
        return False
    if kind == "array":
        xs, ys = _as_list(a), _as_list(b)
        return len(xs) == len(ys) and all(
            _deep_equal(_nested(x), _nested(y)) for x, y in zip(xs, ys, strict=True)
        )
    if kind == "object":
        ma, mb = _as_mapping(a), _as_mapping(b)
        return ma.keys() == mb.keys() and all(
            _deep_equal(_nested(ma[k]), _nested(mb[k])) for k in ma
        )
    return bool(a == b)


def _nested(value: object) -> object:
    """JSON has no NaN or Infinity: nested, they compare as null (``JSON.stringify``)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _is_number(value: object) -> TypeGuard[int | float]:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _as_number(value: object) -> float:
    assert isinstance(value, int | float)  # noqa: S101 - narrowed by validation
    return value


def _is_list(value: object) -> TypeGuard[list[object] | tuple[object, ...]]:
    return isinstance(value, list | tuple)


def _as_list(value: object) -> Sequence[object]:
    assert isinstance(value, list | tuple)  # noqa: S101 - narrowed by validation
    return value


def _as_mapping(value: object) -> Mapping[str, object]:
    assert isinstance(value, Mapping)  # noqa: S101 - narrowed by validation
    return value


def _is_scalar(value: object) -> bool:
    return value is None or isinstance(value, bool | int | float | str)


def _is_nonempty_operator_object(value: object) -> bool:
    return isinstance(value, Mapping) and bool(value) and _is_operator_object(value)


def _has_operator(value: Mapping[Any, object]) -> bool:
    return any(isinstance(k, str) and k.startswith("$") for k in value)


def _is_operator_object(value: Mapping[Any, object]) -> bool:
    """GrowthBook's ``isOperatorObject``: every key an operator (an empty object too)."""
    return all(isinstance(k, str) and k.startswith("$") for k in value)


def _elem_match_on_value(spec: Mapping[str, object]) -> bool:
    """Whether ``$elemMatch`` tests elements themselves rather than their fields.

    It does unless it holds a condition (fields or ``$and/$or/$nor``), in which case each
    element is matched as an object.
    """
    return _is_operator_object(spec) and not any(k in _LOGICAL for k in spec)


def _kind(value: object) -> str:
    return _json_type(value) if _json_type(value) != "unknown" else type(value).__name__


# -- versions ---------------------------------------------------------------------------


def version_key(version: str | float) -> str:
    """Return the string GrowthBook's ``$v*`` operators compare (``paddedVersionString``).

    A leading ``v`` and any ``+build`` suffix are dropped; the rest splits on ``.`` and
    ``-``; a plain ``MAJOR.MINOR.PATCH`` gets a ``~`` part so it sorts after its
    pre-releases; numeric parts are left-padded with spaces to width 5; parts are joined
    with ``-``. Comparing keys as strings orders versions: ``"1.2.10" > "1.2.9"``,
    ``"1.0.0" > "1.0.0-rc.1"``. A number is first written as JS would (``2.0`` → ``"2"``);
    an empty string counts as ``"0"``. Numeric parts are ASCII digits, as in the JS SDK.
    """
    text = _js_number_text(version) if _is_number(version) else version
    if not isinstance(text, str) or not text:
        text = "0"
    return _padded_version(text)


_VERSION_STRIP = re.compile(r"(^v|\+.*$)")
_VERSION_SPLIT = re.compile(r"[-.]")


@lru_cache(maxsize=1024)
def _padded_version(text: str) -> str:
    parts = _VERSION_SPLIT.split(_VERSION_STRIP.sub("", text))
    if len(parts) == 3:
        parts.append("~")  # "~" sorts after every other printable ASCII character
    return "-".join(p.rjust(5) if p.isascii() and p.isdigit() else p for p in parts)


def _as_version(value: object) -> str | float:
    if isinstance(value, str):
        return value
    return _as_number(value)


def _js_number_text(value: float) -> str:  # noqa: PLR0911
    """Write a number as JS ``String(x)`` does (ECMAScript Number::toString).

    ``2.0`` → ``"2"``, ``1e21`` → ``"1e+21"``; Python's ``repr`` gives the shortest
    round-trip digits, which the ECMAScript rules then lay out.
    """
    try:
        x = float(value)
    except OverflowError:
        x = math.inf if value > 0 else -math.inf
    if math.isnan(x):
        return "NaN"
    if x == 0:
        return "0"
    if x < 0:
        return "-" + _js_number_text(-x)
    if math.isinf(x):
        return "Infinity"
    mantissa, _, exponent = repr(x).partition("e")
    whole, _, fraction = mantissa.partition(".")
    significant = (whole + fraction).lstrip("0")
    digits = significant.rstrip("0")
    k = len(digits)
    n = len(significant) + int(exponent or "0") - len(fraction)  # x = 0.digits * 10**n
    if k <= n <= 21:
        return digits + "0" * (n - k)
    if 0 < n <= 21:
        return f"{digits[:n]}.{digits[n:]}"
    if -6 < n <= 0:
        return "0." + "0" * -n + digits
    head = digits[0] + (f".{digits[1:]}" if k > 1 else "")
    return f"{head}e{'+' if n > 0 else '-'}{abs(n - 1)}"
