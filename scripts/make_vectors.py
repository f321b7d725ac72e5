"""Write tests/vectors/hashing.json and conditions.json from the ``growthbook`` Python package.

Run as ``python scripts/make_vectors.py``. The expected values come from GrowthBook's own
functions (``gbhash``, ``getBucketRanges``, ``chooseVariation``, ``inRange``,
``evalCondition``), never from Ensayo, so the vectors are an independent reference.
"""

from __future__ import annotations

import json
import random
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

from growthbook.core import (
    chooseVariation,
    evalCondition,
    fnv1a32,
    gbhash,
    getBucketRanges,
    inRange,
)

ROOT = Path(__file__).resolve().parents[1]
VECTORS = ROOT / "tests" / "vectors"
SEED = 20_250_601

SEEDS = ["", "exp-checkout", "layer:pricing", "seed", "éxpériment", "🧪-test"]
EDGE_IDS = [
    "",
    "0",
    " ",
    "a",
    "1",
    "123",
    "user-1",
    "USER-1",
    "tab\there",
    "newline\n",
    "nul\u0000char",
    "ß",
    "é",  # U+00E9, one code unit
    "e\u0301",  # e + combining acute: looks the same, hashes differently
    "İstanbul",
    "ünïcödé-ユーザー",
    "中文用户",
    "مستخدم",
    "😀",
    "user-😀-1",
    "\U0001f468\u200d\U0001f469\u200d\U0001f467",  # family emoji: 3 astral chars + 2 ZWJ
    "\U0001d518\U0001d52b\U0001d526\U0001d520\U0001d52c\U0001d521\U0001d522",  # Fraktur
    "\uffff",
    "\U00010000",
    "2f1e6a4c-9d0b-4f6e-8a51-3c2b7d9e0f11",
    "x" * 256,
]
ALPHABET = (
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.:@ "
    "éñüßçøåЖжλΩ中文ユ😀🚀\U0001d518"
)
CONFIGS: list[tuple[list[float], float]] = [
    ([0.5, 0.5], 1.0),
    ([0.5, 0.5], 0.37),
    ([0.5, 0.5], 0.0),
    ([0.1, 0.9], 1.0),
    ([1 / 3, 1 / 3, 1 / 3], 1.0),
    ([1 / 3, 1 / 3, 1 / 3], 0.37),
    ([0.2, 0.3, 0.5], 0.5),
    ([0.25, 0.25, 0.25, 0.25], 1.0),
    ([0.1, 0.2, 0.3, 0.15, 0.25], 0.37),
    ([0.5, 0.0, 0.5], 1.0),
    ([1.0], 0.8),
]
RANGES = [(0.0, 0.1), (0.25, 0.5), (0.5, 1.0), (0.0, 0.0), (0.9999, 1.0)]


def _hash(seed: str, unit_id: str) -> float:
    n = gbhash(seed, unit_id, 2)
    assert n is not None  # noqa: S101 - version 2 always hashes
    return n


def _random_ids(rng: random.Random, count: int) -> list[str]:
    return ["".join(rng.choice(ALPHABET) for _ in range(rng.randint(1, 24))) for _ in range(count)]


def _hash_rows(rng: random.Random) -> list[dict[str, Any]]:
    rows = []
    for seed in SEEDS:
        ids = EDGE_IDS if seed in ("", "exp-checkout", "🧪-test") else EDGE_IDS[:8]
        for unit_id in [*ids, *_random_ids(rng, 12)]:
            first = fnv1a32(seed + unit_id)
            second = fnv1a32(str(first))
            rows.append(
                {
                    "seed": seed,
                    "id": unit_id,
                    "fnv1": first,
                    "fnv2": second,
                    "bucket": second % 10_000,
                    "hash": _hash(seed, unit_id),
                }
            )
    return rows


def _ids_by_bucket(seed: str, count: int) -> dict[int, str]:
    """Map a bucket to the first id ``edge-<i>`` that falls in it, to pin range edges."""
    found: dict[int, str] = {}
    for i in range(count):
        unit_id = f"edge-{i}"
        found.setdefault(round(_hash(seed, unit_id) * 10_000), unit_id)
    return found


def _edge_buckets(points: list[float]) -> set[int]:
    """Return the buckets at, just below and just above each range boundary."""
    edges: set[int] = set()
    for p in points:
        b = int(p * 10_000)
        edges.update(x for x in (b - 1, b, b + 1) if 0 <= x < 10_000)
    return edges


def _bucketing_rows(rng: random.Random) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    seed = "exp-checkout"
    by_bucket = _ids_by_bucket(seed, 120_000)
    layouts, rows = [], []
    for weights, coverage in CONFIGS:
        ranges = getBucketRanges(len(weights), coverage, weights)
        layouts.append(
            {"weights": weights, "coverage": coverage, "ranges": [list(r) for r in ranges]}
        )
        points = [p for r in ranges for p in r]
        edge_ids = [by_bucket[b] for b in sorted(_edge_buckets(points)) if b in by_bucket]
        for unit_id in [*edge_ids, *EDGE_IDS[1:], *_random_ids(rng, 10)]:
            n = _hash(seed, unit_id)
            rows.append(
                {
                    "seed": seed,
                    "weights": weights,
                    "coverage": coverage,
                    "id": unit_id,
                    "hash": n,
                    "variant": chooseVariation(n, ranges),
                }
            )
    return layouts, rows


def _range_rows(rng: random.Random) -> list[dict[str, Any]]:
    rows = []
    for salt in ("layer:pricing", "holdout:global-2025"):
        by_bucket = _ids_by_bucket(salt, 60_000)
        for start, end in RANGES:
            edges = [by_bucket[b] for b in sorted(_edge_buckets([start, end])) if b in by_bucket]
            for unit_id in [*edges, "user-1", "😀", *_random_ids(rng, 4)]:
                n = _hash(salt, unit_id)
                rows.append(
                    {
                        "salt": salt,
                        "id": unit_id,
                        "start": start,
                        "end": end,
                        "hash": n,
                        "in_range": inRange(n, (start, end)),
                    }
                )
    return rows


# Hand-written cases over Ensayo's operators; expected values come from GrowthBook.
CONDITION_CASES: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
    ("empty condition", {}, {"country": "ES"}),
    ("literal string - pass", {"country": "ES"}, {"country": "ES"}),
    ("literal string - case", {"country": "ES"}, {"country": "es"}),
    ("literal number int vs float", {"orders": 3}, {"orders": 3.0}),
    ("literal number vs string", {"orders": 3}, {"orders": "3"}),
    ("literal bool vs number", {"vip": True}, {"vip": 1}),
    ("literal null - missing", {"coupon": None}, {}),
    ("literal array - pass", {"tags": ["a", "b"]}, {"tags": ["a", "b"]}),
    ("literal array - order", {"tags": ["a", "b"]}, {"tags": ["b", "a"]}),
    ("literal object - pass", {"geo": {"city": "Madrid"}}, {"geo": {"city": "Madrid"}}),
    ("$in - pass", {"country": {"$in": ["ES", "MX"]}}, {"country": "MX"}),
    ("$in - fail", {"country": {"$in": ["ES", "MX"]}}, {"country": "FR"}),
    ("$in - missing", {"country": {"$in": ["ES", "MX"]}}, {}),
    ("$in - null listed, missing", {"country": {"$in": [None, "ES"]}}, {}),
    ("$in - array intersects", {"tags": {"$in": ["vip", "beta"]}}, {"tags": ["x", "beta"]}),
    ("$in - bool is not 1", {"flag": {"$in": [1]}}, {"flag": True}),
    ("$in - number is not string", {"orders": {"$in": ["3"]}}, {"orders": 3}),
    ("$in - non-ascii", {"city": {"$in": ["Málaga", "東京"]}}, {"city": "東京"}),
    ("$nin - pass", {"country": {"$nin": ["ES", "MX"]}}, {"country": "FR"}),
    ("$nin - missing", {"country": {"$nin": ["ES"]}}, {}),
    ("$nin - array", {"tags": {"$nin": ["vip"]}}, {"tags": ["vip", "x"]}),
    ("$eq - pass", {"plan": {"$eq": "pro"}}, {"plan": "pro"}),
    ("$eq - type", {"orders": {"$eq": 3}}, {"orders": "3"}),
    ("$ne - missing", {"plan": {"$ne": "pro"}}, {}),
    ("$ne - fail", {"plan": {"$ne": "pro"}}, {"plan": "pro"}),
    ("$gte - pass", {"orders": {"$gte": 3}}, {"orders": 3}),
    ("$gte - fail", {"orders": {"$gte": 3}}, {"orders": 2.5}),
    ("$gt - string number", {"orders": {"$gt": 3}}, {"orders": "10"}),
    ("$lt - missing", {"orders": {"$lt": 3}}, {}),
    ("$lt - bool", {"orders": {"$lt": 3}}, {"orders": False}),
    ("$gt $lt - range", {"age": {"$gt": 17, "$lt": 65}}, {"age": 40}),
    ("$gt - strings", {"name": {"$gt": "m"}}, {"name": "z"}),
    ("$lt - utf16 order", {"s": {"$lt": "\uff5e"}}, {"s": "😀"}),
    ("$gt - utf16 order", {"s": {"$gt": "😀"}}, {"s": "\uff5e"}),
    ("$exists true - pass", {"email": {"$exists": True}}, {"email": "a@b.c"}),
    ("$exists true - null", {"email": {"$exists": True}}, {"email": None}),
    ("$exists false - missing", {"email": {"$exists": False}}, {}),
    ("$regex - pass", {"email": {"$regex": "@example\\.com$"}}, {"email": "ana@example.com"}),
    ("$regex - fail", {"email": {"$regex": "@example\\.com$"}}, {"email": "ana@example.org"}),
    ("$regex - not string", {"zip": {"$regex": "^28"}}, {"zip": 28001}),
    ("$regex - unicode", {"name": {"$regex": "^Jos[ée]"}}, {"name": "José"}),
    ("$regex - missing", {"name": {"$regex": ".*"}}, {}),
    ("$type - number", {"orders": {"$type": "number"}}, {"orders": 2.5}),
    ("$type - boolean is not number", {"orders": {"$type": "number"}}, {"orders": True}),
    ("$type - null missing", {"orders": {"$type": "null"}}, {}),
    ("$type - array", {"tags": {"$type": "array"}}, {"tags": []}),
    ("$size - pass", {"tags": {"$size": 2}}, {"tags": ["a", "b"]}),
    ("$size - operator", {"tags": {"$size": {"$gte": 1}}}, {"tags": []}),
    ("$size - not array", {"tags": {"$size": 0}}, {"tags": ""}),
    ("$all - pass", {"tags": {"$all": ["a", "b"]}}, {"tags": ["b", "c", "a"]}),
    ("$all - fail", {"tags": {"$all": ["a", "b"]}}, {"tags": ["a"]}),
    ("$all - empty list", {"tags": {"$all": []}}, {"tags": []}),
    ("$all - operators", {"n": {"$all": [{"$gt": 5}, {"$lt": 0}]}}, {"n": [-1, 7]}),
    ("$elemMatch - value", {"scores": {"$elemMatch": {"$gte": 90}}}, {"scores": [70, 95]}),
    (
        "$elemMatch - object",
        {"orders": {"$elemMatch": {"status": "paid", "total": {"$gt": 100}}}},
        {"orders": [{"status": "paid", "total": 50}, {"status": "paid", "total": 150}]},
    ),
    (
        "$elemMatch - object fail",
        {"orders": {"$elemMatch": {"status": "paid", "total": {"$gt": 100}}}},
        {"orders": [{"status": "open", "total": 500}, {"status": "paid", "total": 10}]},
    ),
    (
        "$elemMatch - $or inside",
        {"items": {"$elemMatch": {"$or": [{"sku": "A"}, {"sku": "B"}]}}},
        {"items": [{"sku": "C"}, {"sku": "B"}]},
    ),
    ("$elemMatch - skips null", {"xs": {"$elemMatch": {"$exists": False}}}, {"xs": [None, 1]}),
    ("$not - value", {"country": {"$not": {"$in": ["ES"]}}}, {"country": "FR"}),
    ("$not - literal", {"country": {"$not": "ES"}}, {"country": "ES"}),
    ("$not - condition", {"$not": {"country": "ES"}}, {"country": "FR"}),
    ("$and - pass", {"$and": [{"a": 1}, {"b": 2}]}, {"a": 1, "b": 2}),
    ("$and - fail", {"$and": [{"a": 1}, {"b": 2}]}, {"a": 1, "b": 3}),
    ("$or - pass", {"$or": [{"a": 1}, {"b": 2}]}, {"a": 0, "b": 2}),
    ("$or - empty", {"$or": []}, {}),
    ("$nor - pass", {"$nor": [{"a": 1}, {"b": 2}]}, {"a": 0, "b": 0}),
    ("$nor - empty", {"$nor": []}, {}),
    ("$and - empty", {"$and": []}, {}),
    ("dotted path - pass", {"address.country": "ES"}, {"address": {"country": "ES"}}),
    ("dotted path - through string", {"address.country": "ES"}, {"address": "ES"}),
    ("dotted path - array index", {"tags.0": "vip"}, {"tags": ["vip", "x"]}),
    ("dotted path - array length", {"tags.length": {"$gt": 1}}, {"tags": ["a", "b"]}),
    ("dotted path - non canonical index", {"tags.01": "x"}, {"tags": ["a", "x"]}),
    ("$vgt - pass", {"app": {"$vgt": "1.2.9"}}, {"app": "1.2.10"}),
    ("$vgt - prerelease", {"app": {"$vgt": "1.0.0-rc.1"}}, {"app": "1.0.0"}),
    ("$vgte - v prefix", {"app": {"$vgte": "v2.0.0"}}, {"app": "2.0.0"}),
    ("$vlt - build ignored", {"app": {"$vlt": "2.0.0"}}, {"app": "2.0.0+build.7"}),
    ("$veq - build ignored", {"app": {"$veq": "2.0.0"}}, {"app": "2.0.0+build.7"}),
    ("$vne - type mismatch", {"app": {"$vne": "2.0.0"}}, {"app": 2}),
    ("$veq - numbers", {"api": {"$veq": 2}}, {"api": 2.0}),
    ("$vgt - number vs string", {"api": {"$vgt": "1.0.0"}}, {"api": 2}),
    ("$vlte - missing", {"app": {"$vlte": "9.9.9"}}, {}),
    (
        "realistic targeting",
        {
            "country": {"$in": ["ES", "MX"]},
            "orders": {"$gte": 3},
            "$or": [{"plan": "pro"}, {"tags": {"$elemMatch": {"$eq": "beta"}}}],
            "app_version": {"$vgte": "4.2.0"},
        },
        {"country": "MX", "orders": 5, "plan": "free", "tags": ["beta"], "app_version": "4.10.1"},
    ),
]

# Ensayo rejects these when they are defined; GrowthBook would evaluate them to false.
INVALID_CASES: list[tuple[str, dict[str, Any], str]] = [
    ("unknown field operator", {"country": {"$foo": 1}}, "targeting.country.$foo"),
    ("unknown condition operator", {"$xor": []}, "targeting.$xor"),
    ("$in needs a list", {"country": {"$in": "ES"}}, "targeting.country.$in"),
    ("$in needs scalars", {"country": {"$in": [["ES"]]}}, "targeting.country.$in[0]"),
    ("$and needs a list", {"$and": {"a": 1}}, "targeting.$and"),
    ("$or needs conditions", {"$or": [{"a": 1}, 3]}, "targeting.$or[1]"),
    ("$exists needs a bool", {"email": {"$exists": 1}}, "targeting.email.$exists"),
    ("$regex must compile", {"name": {"$regex": "(unclosed"}}, "targeting.name.$regex"),
    ("$regex length", {"name": {"$regex": "a" * 1001}}, "targeting.name.$regex"),
    ("$type name", {"n": {"$type": "integer"}}, "targeting.n.$type"),
    ("$gt needs number or string", {"n": {"$gt": [1]}}, "targeting.n.$gt"),
    ("$eq needs a scalar", {"n": {"$eq": {"a": 1}}}, "targeting.n.$eq"),
    ("$size needs a number", {"tags": {"$size": "2"}}, "targeting.tags.$size"),
    ("$not needs a condition", {"$not": [1]}, "targeting.$not"),
    ("mixed operators and keys", {"geo": {"$eq": "x", "city": "y"}}, "targeting.geo"),
    ("$or on a field", {"a": {"$or": [{"b": 1}]}}, "targeting.a.$or"),
    ("nested error path", {"$and": [{"a": 1}, {"b": {"$lt": None}}]}, "targeting.$and[1].b.$lt"),
    (
        "elemMatch condition",
        {"xs": {"$elemMatch": {"a": {"$bad": 1}}}},
        "targeting.xs.$elemMatch.a.$bad",
    ),
]

# Deliberate differences from GrowthBook, with what each side answers.
DIFFERENCES: list[tuple[str, dict[str, Any], dict[str, Any], bool, str]] = [
    (
        "object literal key order",
        {"geo": {"city": "Madrid", "country": "ES"}},
        {"geo": {"country": "ES", "city": "Madrid"}},
        True,
        "Struct maps keep no key order, so Ensayo compares objects as sets of keys",
    ),
]


def _condition_doc() -> dict[str, Any]:
    return {
        "description": (
            "Ensayo targeting conditions. cases: expected is what GrowthBook's evalCondition "
            "answers. invalid: conditions Ensayo rejects, with the field its InvalidArgument "
            "names. differences: where Ensayo deliberately answers otherwise than GrowthBook."
        ),
        "generator": "scripts/make_vectors.py",
        "reference": f"growthbook {metadata.version('growthbook')} (Python), evalCondition",
        "cases": [
            {"name": n, "condition": c, "attributes": a, "expected": evalCondition(a, c)}
            for n, c, a in CONDITION_CASES
        ],
        "invalid": [{"name": n, "condition": c, "field": f} for n, c, f in INVALID_CASES],
        "differences": [
            {
                "name": n,
                "condition": c,
                "attributes": a,
                "ensayo": ours,
                "growthbook": evalCondition(a, c),
                "why": why,
            }
            for n, c, a, ours, why in DIFFERENCES
        ],
    }


def _hashing_doc() -> dict[str, Any]:
    rng = random.Random(SEED)  # noqa: S311 - reproducible vectors, not secrets
    layouts, bucketing = _bucketing_rows(rng)
    return {
        "description": (
            "Ensayo bucketing vectors (GrowthBook hash version 2); see docs/hashing.md. "
            "hash: fnv1 = fnv1a32(seed + id), fnv2 = fnv1a32(decimal text of fnv1), "
            "bucket = fnv2 % 10000, hash = bucket / 10000; FNV-1a runs over UTF-16 code units. "
            "ranges: bucket ranges for weights and coverage. bucketing: the variant index "
            "(-1 = not covered) of an id. range: layer and holdout membership, "
            "start <= hash(salt, id) < end."
        ),
        "generator": "scripts/make_vectors.py",
        "reference": (
            f"growthbook {metadata.version('growthbook')} (Python): gbhash(seed, id, 2), "
            "getBucketRanges, chooseVariation, inRange"
        ),
        "hash": _hash_rows(rng),
        "ranges": layouts,
        "bucketing": bucketing,
        "range": _range_rows(rng),
    }


def _dump(doc: dict[str, Any]) -> str:
    """JSON with one row per line, so diffs of the vectors stay readable."""
    lines = ["{"]
    items = list(doc.items())
    for i, (key, value) in enumerate(items):
        comma = "," if i < len(items) - 1 else ""
        if isinstance(value, list):
            rows = [f"    {json.dumps(row, ensure_ascii=False)}" for row in value]
            lines.append(f"  {json.dumps(key)}: [\n" + ",\n".join(rows) + f"\n  ]{comma}")
        else:
            lines.append(f"  {json.dumps(key)}: {json.dumps(value, ensure_ascii=False)}{comma}")
    lines.append("}")
    return "\n".join(lines) + "\n"


def main() -> int:
    """Write both vector files; returns 0."""
    for name, doc in (("hashing.json", _hashing_doc()), ("conditions.json", _condition_doc())):
        path = VECTORS / name
        path.write_text(_dump(doc), encoding="utf-8")
        print(f"wrote {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
