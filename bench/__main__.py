"""Run every ``bench/bench_*.py`` and write their sections into ``docs/benchmarks.md``.

``python -m bench [NAME ...]`` runs the named benchmarks only (e.g. ``assign``); each module
exposes ``main() -> str`` returning a markdown section. Loopback only, bounded in time.
``python -m bench --collect`` only rebuilds ``docs/benchmarks.md`` from the saved sections.
"""

from __future__ import annotations

import importlib
import platform
import sys
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str]) -> int:
    found = sorted(p.stem.removeprefix("bench_") for p in (ROOT / "bench").glob("bench_*.py"))
    names = [] if argv == ["--collect"] else argv or found
    out_dir = ROOT / "docs" / "benchmarks"
    out_dir.mkdir(parents=True, exist_ok=True)
    for name in names:
        module = importlib.import_module(f"bench.bench_{name}")
        section = module.main()
        (out_dir / f"{name}.md").write_text(section.rstrip() + "\n", encoding="utf-8")
    sections = [p.read_text(encoding="utf-8") for p in sorted(out_dir.glob("*.md"))]
    header = (
        "# Benchmarks\n\n"
        "Produced by `make bench` (`python -m bench`), loopback only, peers side by side in the\n"
        f"same run. Collected: {datetime.now(UTC):%Y-%m-%d}, {platform.machine()}, "
        f"Python {platform.python_version()}; this workplace's machines have 2 cores, so\n"
        "numbers are noisy orders of magnitude. Each section names its command.\n\n"
    )
    (ROOT / "docs" / "benchmarks.md").write_text(header + "\n".join(sections), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
