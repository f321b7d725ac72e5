"""Tests for ensayo.conditions: GrowthBook's cases, our vectors, and differential runs."""

from __future__ import annotations

import json
import math
import random
import re
from pathlib import Path
from typing import Any

import pytest

from ensayo import conditions
from ensayo.conditions import (
    MAX_DEPTH,
    MAX_REGEX_LENGTH,
    TYPE_NAMES,
    compile_condition,
    evaluate,
    validate_condition,
    version_key,
)
from ensayo.errors import InvalidArgument

VECTORS = Path(__file__).resolve().parents[1] / "vectors"
GB_CASES = json.loads((VECTORS / "growthbook_cases.json").read_text(encoding="utf-8"))
CONDITIONS = json.loads((VECTORS / "conditions.json").read_text(encoding="utf-8"))

# GrowthBook cases Ensayo deliberately answers otherwise: it rejects the condition when it
# is defined (InvalidArgument on this field) where GrowthBook evaluates it to false.
REJECTED_CASES = {
    "$in - not array": ("targeting.num.$in", "an $in operand must be a list"),
    "$nin - not array": ("targeting.num.$nin", "a $nin operand must be a list"),
    "unknown operator - pass": ("targeting.name.$regx", "unknown operators are typos"),
    "$regex invalid - pass": ("targeting.name.$regex", "a pattern must compile"),
    "$regex invalid - fail": ("targeting.name.$regex", "a pattern must compile"),
}


class TestGrowthbookCases:
    @pytest.mark.parametrize(
        "case",
        [c for c in GB_CASES["evalCondition"] if c[0] not in REJECTED_CASES],
        ids=lambda c: c[0],
    )
    def test_eval_condition(self, case: list[Any]) -> None:
        """evaluate reproduces GrowthBook's evalCondition cases from cases.json."""
        _name, condition, attributes, expected = case
        assert evaluate(condition, attributes) is expected

    @pytest.mark.parametrize(
        "case",
        [c for c in GB_CASES["evalCondition"] if c[0] in REJECTED_CASES],
        ids=lambda c: c[0],
    )
    def test_rejected_instead_of_false(self, case: list[Any]) -> None:
        """Cases GrowthBook evaluates to false because they are malformed are rejected up front."""
        name, condition, _attributes, expected = case
        assert expected is False
        field, _why = REJECTED_CASES[name]
        with pytest.raises(InvalidArgument) as info:
            validate_condition(condition)
        assert info.value.field == field

    @pytest.mark.parametrize(
        ("relation", "row"),
        [(rel, row) for rel, rows in GB_CASES["versionCompare"].items() for row in rows],
        ids=lambda x: x if isinstance(x, str) else f"{x[0]}|{x[1]}",
    )
    def test_version_compare(self, relation: str, row: list[Any]) -> None:
        """version_key orders versions as cases.json versionCompare says."""
        a, b, expected = row
        ka, kb = version_key(a), version_key(b)
        got = {"lt": ka < kb, "gt": ka > kb, "eq": ka == kb}[relation]
        assert got is expected


class TestVersionKey:
    def test_numbers_are_written_as_js_does(self) -> None:
        """A number is compared as JS String(number) writes it: 2.0 is "2", 1e21 is "1e+21"."""
        assert version_key(2.0) == version_key("2")
        assert version_key(1.5) == version_key("1.5")
        assert version_key(1e21) == version_key("1e+21")
        assert version_key(0.000001) == version_key("0.000001")
        assert version_key(1e-7) == version_key("1e-7")

    def test_empty_is_zero(self) -> None:
        """An empty version string counts as "0"."""
        assert version_key("") == version_key("0")

    def test_non_ascii_digits_are_not_numeric(self) -> None:
        """Only ASCII digits are padded as numbers, as in the JS SDK's /^[0-9]+$/."""
        assert version_key("1.².3") == "    1-²-    3-~"


class TestPublishedVectors:
    @pytest.mark.parametrize("case", CONDITIONS["cases"], ids=lambda c: c["name"])
    def test_cases(self, case: dict[str, Any]) -> None:
        """Every case of conditions.json evaluates to its expected value."""
        assert evaluate(case["condition"], case["attributes"]) is case["expected"]

    @pytest.mark.parametrize("case", CONDITIONS["invalid"], ids=lambda c: c["name"])
    def test_invalid(self, case: dict[str, Any]) -> None:
        """Every invalid condition of conditions.json is rejected, naming the published field."""
        with pytest.raises(InvalidArgument) as info:
            validate_condition(case["condition"])
        assert info.value.field == case["field"]

    @pytest.mark.parametrize("case", CONDITIONS["differences"], ids=lambda c: c["name"])
    def test_differences(self, case: dict[str, Any]) -> None:
        """Each documented difference holds: Ensayo and GrowthBook answer as published."""
        assert evaluate(case["condition"], case["attributes"]) is case["ensayo"]
        assert case["ensayo"] is not case["growthbook"]
        gb = pytest.importorskip("growthbook.core")
        assert gb.evalCondition(case["attributes"], case["condition"]) is case["growthbook"]

    def test_cases_agree_with_growthbook(self) -> None:
        """The published expectations are GrowthBook's own answers (the file is faithful)."""
        gb = pytest.importorskip("growthbook.core")
        for case in CONDITIONS["cases"]:
            got = gb.evalCondition(case["attributes"], case["condition"])
            assert got is case["expected"], case["name"]


class TestValidation:
    @pytest.mark.parametrize(
        ("condition", "field"),
        [
            ({"country": {"$foo": 1}}, "targeting.country.$foo"),
            ({"$or": [{"a": 1}, {"b": {"$in": 3}}]}, "targeting.$or[1].b.$in"),
            ({"$not": {"a": {"$exists": "yes"}}}, "targeting.$not.a.$exists"),
            ({"a": {"$all": [{"$gt": []}]}}, "targeting.a.$all[0].$gt"),
            ({"a": {"$size": {"$eq": [1]}}}, "targeting.a.$size.$eq"),
            ({"a": {"$elemMatch": 3}}, "targeting.a.$elemMatch"),
            ({"a": {"$not": {"$regex": 5}}}, "targeting.a.$not.$regex"),
            ({"a": {"$vgt": True}}, "targeting.a.$vgt"),
            ({"a": {"$in": [1, math.nan]}}, "targeting.a.$in[1]"),
            ({"a": math.nan}, "targeting.a"),
            ({"a": {"x": {1, 2}}}, "targeting.a.x"),
            ({"a": b"bytes"}, "targeting.a"),
            ({"": 1}, "targeting"),
            ({"$nor": "x"}, "targeting.$nor"),
        ],
    )
    def test_names_the_bad_field(self, condition: dict[str, Any], field: str) -> None:
        """The error's field is the exact path to the first bad operator or operand."""
        with pytest.raises(InvalidArgument) as info:
            validate_condition(condition)
        assert info.value.field == field
        assert info.value.reason

    def test_field_prefix(self) -> None:
        """The caller's field name prefixes the path (e.g. an action's eligibility)."""
        with pytest.raises(InvalidArgument) as info:
            validate_condition({"a": {"$bad": 1}}, field="actions[2].eligibility")
        assert info.value.field == "actions[2].eligibility.a.$bad"

    def test_not_a_mapping(self) -> None:
        """A condition that is not an object is rejected on the field itself."""
        with pytest.raises(InvalidArgument) as info:
            validate_condition([{"a": 1}])  # type: ignore[arg-type]
        assert info.value.field == "targeting"

    def test_regex_length_limit(self) -> None:
        """A pattern of MAX_REGEX_LENGTH characters is accepted and one more is rejected."""
        validate_condition({"a": {"$regex": "a" * MAX_REGEX_LENGTH}})
        with pytest.raises(InvalidArgument, match="longer than"):
            validate_condition({"a": {"$regex": "a" * (MAX_REGEX_LENGTH + 1)}})

    def test_depth_limit(self) -> None:
        """Conditions nested deeper than MAX_DEPTH are rejected instead of recursing forever."""
        shallow: dict[str, Any] = {"a": 1}
        for _ in range(MAX_DEPTH // 2 - 1):
            shallow = {"$not": shallow}
        validate_condition(shallow)
        deep: dict[str, Any] = {"a": 1}
        for _ in range(MAX_DEPTH + 1):
            deep = {"$not": deep}
        with pytest.raises(InvalidArgument, match="nested deeper"):
            validate_condition(deep)

    def test_every_type_name_is_accepted(self) -> None:
        """$type accepts exactly the JSON type names."""
        for name in TYPE_NAMES:
            validate_condition({"a": {"$type": name}})
        with pytest.raises(InvalidArgument):
            validate_condition({"a": {"$type": "int"}})

    def test_compile_and_evaluate_validate(self) -> None:
        """compile_condition and evaluate raise InvalidArgument for a bad condition."""
        with pytest.raises(InvalidArgument):
            compile_condition({"a": {"$nope": 1}})
        with pytest.raises(InvalidArgument):
            evaluate({"a": {"$nope": 1}}, {"a": 1})


class TestEvaluation:
    def test_empty_condition_matches_everything(self) -> None:
        """{} matches any attributes, even none."""
        assert evaluate({}, {})
        assert evaluate({}, {"x": [1, {"y": None}]})

    ODD_CONDITION: dict[str, Any] = {  # noqa: RUF012 - read-only test data
        "$or": [
            {"v": {"$gt": 1}},
            {"v": {"$vgte": "1.0.0"}},
            {"v": {"$regex": "x"}},
            {"v": {"$in": [1, "x"]}},
            {"v": {"$elemMatch": {"a": 1}}},
            {"v": {"$size": 1}},
            {"v": {"$all": [1]}},
            {"v": [1]},
            {"v.a.b": 1},
        ]
    }

    @pytest.mark.parametrize(
        "value", [object(), {1, 2}, b"x", complex(1, 2), math.nan, {"a": object()}, range(3)]
    )
    def test_non_json_attribute_values_do_not_match(self, value: object) -> None:
        """Attribute values that are not JSON fail every operator, and $ne/$nin hold."""
        assert evaluate(self.ODD_CONDITION, {"v": value}) is False
        assert evaluate({"v": {"$ne": 1}, "w": {"$nin": [1]}}, {"v": value}) is True

    @pytest.mark.parametrize("value", [math.inf, -math.inf, 10**400, 1e308, [[[[]]]], ""])
    def test_extreme_values_never_raise(self, value: object) -> None:
        """Infinities, ints beyond float range and nested arrays evaluate without raising."""
        matcher = compile_condition(self.ODD_CONDITION)
        assert isinstance(matcher({"v": value}), bool)
        for op in ("$vgt", "$veq", "$vne"):
            assert isinstance(evaluate({"v": {op: 1}}, {"v": value}), bool)

    def test_absurdly_deep_attributes_fail_closed(self) -> None:
        """Attributes nested beyond the recursion limit evaluate to false instead of raising."""
        deep: list[Any] = []
        for _ in range(5000):
            deep = [deep]
        assert evaluate({"v": [[1]]}, {"v": deep}) is False

    def test_string_order_is_utf16(self) -> None:
        """Strings order by UTF-16 code unit as in JS: an emoji sorts below U+FF5E."""
        assert evaluate({"s": {"$lt": "\uff5e"}}, {"s": "😀"})
        assert not evaluate({"s": {"$gt": "\uff5e"}}, {"s": "😀"})

    def test_object_literal_ignores_key_order(self) -> None:
        """Object literals compare as key sets: Struct maps reach us without an order."""
        condition = {"geo": {"city": "Madrid", "country": "ES"}}
        assert evaluate(condition, {"geo": {"country": "ES", "city": "Madrid"}})
        assert not evaluate(condition, {"geo": {"country": "ES"}})

    def test_compiled_evaluator_is_reusable_and_compiles_regex_once(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A compiled evaluator reuses its regex: re.compile is not called per evaluation."""
        matcher = compile_condition({"email": {"$regex": "@example\\.com$"}})
        calls: list[str] = []
        real = re.compile

        def counting(pattern: str, flags: int = 0) -> re.Pattern[str]:
            calls.append(pattern)
            return real(pattern, flags)

        monkeypatch.setattr(conditions.re, "compile", counting)
        results = [matcher({"email": f"u{i}@example.com"}) for i in range(50)]
        assert all(results)
        assert calls == []

    def test_large_in_list(self) -> None:
        """$in over 10,000 values matches by strict equality (string "5" is not number 5)."""
        matcher = compile_condition({"id": {"$in": [str(i) for i in range(10_000)]}})
        assert matcher({"id": "9999"})
        assert not matcher({"id": 9999})
        assert not matcher({"id": "10000"})

    def test_dotted_paths(self) -> None:
        """Dotted paths walk objects, canonical array indices and an array's length."""
        attrs = {"a": {"b": [{"c": 1}, {"c": 2}]}}
        assert evaluate({"a.b.1.c": 2}, attrs)
        assert evaluate({"a.b.length": 2}, attrs)
        assert not evaluate({"a.b.01.c": 2}, attrs)
        assert evaluate({"a.x.y": {"$exists": False}}, attrs)


class _RandomConditions:
    """Seeded generator of valid-looking conditions and attributes over Ensayo's operators."""

    SCALARS = (None, True, False, 0, 1, 2, 1.5, -3, 10, 2.0, "", "a", "b", "A", "é", "😀")
    SCALARS += ("ab", "1.2.3", "1.10.0", "v2.0.0", "1.0.0-beta", "2")
    ODD = (math.inf, -math.inf, math.nan, 1e21, 1e-7, 10**30)
    KEYS = ("x", "y", "0", "10", "2")
    PATHS = ("a", "b", "c.d", "c.0", "l.length", "l.1", "x", "c.x.y")
    REGEXES = ("^a", "b$", "[0-9]", "é", "(?i)A", "", "^1\\.2")
    VERSIONS = ("1.2.3", "1.10.0", "v2.0.0", "1.0.0-beta", "2", "1.2.3+b", 1, 2.0, 1.5)

    def __init__(self, seed: int) -> None:
        self.r = random.Random(seed)

    def scalar(self, odd: bool = False) -> Any:
        if self.r.random() < 0.15:
            return "".join(self.r.choice("abAé😀.-019v") for _ in range(self.r.randint(0, 5)))
        return self.r.choice(self.SCALARS + (self.ODD if odd else ()))

    def json(self, depth: int = 2, odd: bool = False) -> Any:
        k = self.r.random()
        if depth == 0 or k < 0.6:
            return self.scalar(odd)
        if k < 0.8:
            return [self.json(depth - 1, odd) for _ in range(self.r.randint(0, 3))]
        items = {self.r.choice(self.KEYS): self.json(depth - 1, odd) for _ in range(3)}
        return dict(sorted(items.items()))  # same key order on both sides (see differences)

    def operator(self, depth: int) -> tuple[str, Any]:  # noqa: PLR0911
        r = self.r
        kinds = ["eq", "cmp", "ver", "in", "size", "exists", "type", "regex"]
        kinds += ["all", "elem", "sizeop", "not"] if depth > 0 else []
        kind = r.choice(kinds)
        if kind == "eq":
            return r.choice(["$eq", "$ne"]), self.scalar()
        if kind == "cmp":
            operand = r.choice([r.randint(-5, 5), 1.5, "a", "b", "é", "😀", "A1"])
            return r.choice(["$gt", "$gte", "$lt", "$lte"]), operand
        if kind == "ver":
            ops = ["$vgt", "$vgte", "$vlt", "$vlte", "$veq", "$vne"]
            return r.choice(ops), r.choice(self.VERSIONS)
        if kind == "in":
            return r.choice(["$in", "$nin"]), [self.scalar() for _ in range(r.randint(0, 4))]
        if kind == "size":
            return "$size", r.randint(0, 3)
        if kind == "exists":
            return "$exists", r.random() < 0.5
        if kind == "type":
            return "$type", r.choice(TYPE_NAMES)
        if kind == "regex":
            return "$regex", r.choice(self.REGEXES)
        if kind == "all":
            return "$all", [self.value(depth - 1) for _ in range(r.randint(0, 3))]
        if kind == "elem":
            inner = self.operators(depth - 1) if r.random() < 0.6 else self.condition(depth - 1)
            return "$elemMatch", inner
        if kind == "sizeop":
            return "$size", self.operators(depth - 1, at_least=1)
        return "$not", self.value(depth - 1)

    def operators(self, depth: int, at_least: int = 0) -> dict[str, Any]:
        return dict(self.operator(depth) for _ in range(self.r.randint(at_least, 2)))

    def value(self, depth: int) -> Any:
        return self.json(1) if self.r.random() < 0.3 else self.operators(depth)

    def condition(self, depth: int = 3) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for _ in range(self.r.randint(0, 3)):
            k = self.r.random()
            if depth > 0 and k < 0.2:
                subs = [self.condition(depth - 1) for _ in range(self.r.randint(0, 3))]
                out[self.r.choice(["$and", "$or", "$nor"])] = subs
            elif depth > 0 and k < 0.3:
                out["$not"] = self.condition(depth - 1)
            else:
                out[self.r.choice(self.PATHS)] = self.value(depth)
        return out

    def attributes(self) -> dict[str, Any]:
        out = {
            key: self.json(2, odd=True) for key in ("a", "b", "c", "x") if self.r.random() < 0.7
        }
        if self.r.random() < 0.7:
            out["l"] = [self.json(1, odd=True) for _ in range(self.r.randint(0, 3))]
        return out


class TestDifferentialAgainstGrowthbook:
    @pytest.mark.parametrize("seed", [1, 2, 3])
    def test_random_conditions_agree(self, seed: int) -> None:
        """On 2,000 random conditions and attributes, evaluate equals growthbook.evalCondition."""
        gb = pytest.importorskip("growthbook.core")
        gen = _RandomConditions(seed)
        outcomes: list[bool] = []
        for _ in range(2_000):
            condition, attributes = gen.condition(), gen.attributes()
            try:
                matcher = compile_condition(condition)
            except InvalidArgument:
                continue  # e.g. an object mixing operators and keys: rejected on purpose
            ours = matcher(attributes)
            assert ours is gb.evalCondition(attributes, condition), (condition, attributes)
            outcomes.append(ours)
        assert len(outcomes) > 1_900  # nearly every generated condition is valid
        assert 0.2 < sum(outcomes) / len(outcomes) < 0.8  # both answers are well exercised
