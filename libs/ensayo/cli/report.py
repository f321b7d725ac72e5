"""``ensayo report``: an experiment report as a terminal table, JSON, or one HTML page.

The HTML page is self-contained (inline CSS and SVG, no script, no CDN): it can be mailed or
archived as it is. Every renderer reads the ``ExperimentReport`` message and shows only the
figures the method computed (unset fields stay blank, never 0).
"""

from __future__ import annotations

import argparse
import html
import json
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from google.protobuf import json_format

from ensayo.client.analysis import AnalysisClient
from ensayo.client.channel import open_channel
from ensayo.serverkit.config import DEFAULT_ADDRS
from ensayo.v1 import analysis_service_pb2 as pb
from ensayo.v1 import definitions_pb2 as defs

__all__ = ["render_html", "render_json", "render_table", "run_report"]

_METHOD = {
    pb.ANALYSIS_METHOD_FREQUENTIST: "frequentist",
    pb.ANALYSIS_METHOD_BAYESIAN: "bayesian",
    pb.ANALYSIS_METHOD_SEQUENTIAL: "sequential (always valid)",
}
_CORRECTION = {
    pb.CORRECTION_NONE: "none",
    pb.CORRECTION_UNSPECIFIED: "none",
    pb.CORRECTION_HOLM: "Holm",
    pb.CORRECTION_BENJAMINI_HOCHBERG: "Benjamini-Hochberg",
}
_KIND = {
    defs.METRIC_KIND_CONVERSION: "conversion",
    defs.METRIC_KIND_MEAN: "mean",
    defs.METRIC_KIND_RATIO: "ratio",
}


def _num(value: float) -> str:
    return f"{value:.4g}" if abs(value) < 1e5 else f"{value:,.0f}"


def _signed(value: float) -> str:
    return f"{value:+.4g}"


def _pct(value: float) -> str:
    return f"{value * 100:+.1f}%"


def _p(value: float) -> str:
    return "<0.0001" if value < 1e-4 else f"{value:.4f}"


def _opt(c: Any, field: str) -> float | None:
    """An optional figure of a comparison, None when the method left it unset."""
    return float(getattr(c, field)) if c.HasField(field) else None


def _cells(c: pb.Comparison) -> dict[str, str]:
    """The printable figures of one comparison; blank where the method computed nothing."""

    def get(field: str, fmt: Callable[[float], str]) -> str:
        value = _opt(c, field)
        return "" if value is None else fmt(value)

    absolute = get("absolute_lift", _signed)
    if c.HasField("ci_low") and c.HasField("ci_high"):
        absolute += f" [{_signed(c.ci_low)}, {_signed(c.ci_high)}]"
    relative = get("relative_lift", _pct)
    if c.HasField("relative_ci_low") and c.HasField("relative_ci_high"):
        relative += f" [{_pct(c.relative_ci_low)}, {_pct(c.relative_ci_high)}]"
    return {
        "variant": c.variant_key,
        "units": f"{c.control_units:,} / {c.treatment_units:,}",
        "control": get("control_mean", _num),
        "treatment": get("treatment_mean", _num),
        "absolute lift [CI]": absolute,
        "relative lift [CI]": relative,
        "p": get("p_value", _p),
        "adjusted p": get("adjusted_p_value", _p),
        "chance to win": get("chance_to_win", lambda v: f"{v:.1%}"),
        "expected loss": get("expected_loss", _num),
        "CUPED variance cut": get("variance_reduction", lambda v: f"{v:.1%}" if v else ""),
        "significant": "yes" if c.significant else "no",
    }


def _rows(metric: pb.MetricResult) -> tuple[list[str], list[list[str]]]:
    """Column names (those with at least one value) and one row per comparison."""
    cells = [_cells(c) for c in metric.comparisons]
    if not cells:
        return [], []
    columns = [k for k in cells[0] if any(row[k] for row in cells)]
    return columns, [[row[k] for k in columns] for row in cells]


def _srm_line(report: pb.ExperimentReport) -> str:
    if report.srm.ok:
        return f"Sample ratio check: OK (p = {report.srm.p_value:.3g})"
    return (
        f"Sample ratio check: MISMATCH (p = {report.srm.p_value:.3g} < 0.001): "
        "the split is broken; do not trust the figures below"
    )


def _grid(columns: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(c), *(len(r[i]) for r in rows)) for i, c in enumerate(columns)]
    line = "  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True))
    out = [line, "  ".join("-" * w for w in widths)]
    out += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)) for r in rows]
    return out


def render_table(report: pb.ExperimentReport) -> str:
    """A plain-text report for the terminal: SRM first, then variants, metrics, warnings."""
    lines = [
        f"Experiment {report.experiment_key}: {_METHOD.get(report.method, 'frequentist')}, "
        f"alpha {report.alpha:g}, correction {_CORRECTION.get(report.correction, 'none')}",
        _srm_line(report),
    ]
    if report.weighting:
        lines.append(f"Bandit weighting: {report.weighting}")
    lines.append("")
    lines += _grid(
        ["variant", "units", "expected share"],
        [[v.key, f"{v.units:,}", f"{v.expected_share:.1%}"] for v in report.variants],
    )
    for index, metric in enumerate(report.metrics):
        kind = _KIND.get(metric.kind, "")
        flags = [kind] + (["primary"] if index == 0 else [])
        flags += ["lower is better"] if metric.lower_is_better else []
        lines += ["", f"Metric {metric.metric_key} ({', '.join(f for f in flags if f)})"]
        columns, rows = _rows(metric)
        lines += _grid(columns, rows) if rows else ["  (no comparison)"]
    if report.warnings:
        lines += ["", "Warnings:"] + [f"  - {w}" for w in report.warnings]
    advice = report.recommendation or "none (the evidence does not support one yet)"
    lines += ["", f"Recommendation: {advice}"]
    return "\n".join(lines) + "\n"


def render_json(report: pb.ExperimentReport) -> str:
    """The report message as JSON, with proto field names.

    Unset optional fields are left out; fields without presence are always there, so a
    ``false`` or a ``0`` is never mistaken for a missing value.
    """
    data = json_format.MessageToDict(
        report,
        preserving_proto_field_name=True,
        # A failed SRM check is ok=false and p=0: defaults, which MessageToDict leaves out.
        always_print_fields_with_no_presence=True,
    )
    return json.dumps(data, indent=2) + "\n"


def _forest(metric: pb.MetricResult) -> str:
    """An inline SVG of each treatment's interval (relative when available) around zero."""
    relative = all(
        c.HasField("relative_ci_low") and c.HasField("relative_ci_high")
        for c in metric.comparisons
    )
    names = (
        ("relative_ci_low", "relative_lift", "relative_ci_high")
        if relative
        else ("ci_low", "absolute_lift", "ci_high")
    )
    items = []
    for c in metric.comparisons:
        low, mid, high = (_opt(c, name) for name in names)
        if low is not None and mid is not None and high is not None:
            items.append((c, low, mid, high))
    if not items:
        return ""
    span = max(max(abs(lo), abs(hi)) for _, lo, _, hi in items) or 1.0
    width, row, left, pad = 640, 34, 130, 20
    height = row * len(items) + 30
    inner = width - left - pad

    def x(value: float) -> float:
        return left + inner * (value + span) / (2 * span)

    fmt = _pct if relative else _signed
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'role="img" aria-label="intervals of {html.escape(metric.metric_key)}">',
        f'<line x1="{x(0):.1f}" y1="4" x2="{x(0):.1f}" y2="{height - 22}" class="zero"/>',
        f'<text x="{left}" y="{height - 6}" class="axis">{html.escape(fmt(-span))}</text>',
        f'<text x="{x(0):.1f}" y="{height - 6}" class="axis" text-anchor="middle">0</text>',
        f'<text x="{width - pad}" y="{height - 6}" class="axis" text-anchor="end">'
        f"{html.escape(fmt(span))}</text>",
    ]
    for i, (c, lo, mid, hi) in enumerate(items):
        y = 18 + i * row
        # The direction of the change itself (the absolute lift), never of the relative one.
        rise = c.absolute_lift > 0
        tone = "flat" if not c.significant else "win" if rise != metric.lower_is_better else "loss"
        parts += [
            f'<text x="{left - 10}" y="{y + 4}" text-anchor="end">'
            f"{html.escape(c.variant_key)}</text>",
            f'<line x1="{x(lo):.1f}" y1="{y}" x2="{x(hi):.1f}" y2="{y}" class="ci {tone}"/>',
            f'<circle cx="{x(mid):.1f}" cy="{y}" r="5" class="{tone}"/>',
            f"<title>{html.escape(c.variant_key)}: {html.escape(fmt(mid))} "
            f"[{html.escape(fmt(lo))}, {html.escape(fmt(hi))}]</title>",
        ]
    parts.append("</svg>")
    caption = "relative lift" if relative else "absolute lift"
    note = f"<figcaption>{caption}, interval at level 1 - alpha</figcaption>"
    return f"<figure>{''.join(parts)}{note}</figure>"


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;
max-width:68rem;color:#1d2330;padding:0 1rem}
h1{font-size:1.5rem;margin-bottom:.2rem}.meta{color:#5b6475;margin-top:0}
table{border-collapse:collapse;margin:.5rem 0 1rem;font-size:.9rem}
th,td{border-bottom:1px solid #dde1e8;padding:.35rem .7rem;text-align:right}
th:first-child,td:first-child{text-align:left}th{background:#f4f6f9}
.ok{background:#e8f6ec;border-left:4px solid #2e9d55;padding:.6rem 1rem}
.bad{background:#fdecea;border-left:4px solid #c62828;padding:.6rem 1rem;font-weight:600}
.warnings li{margin:.2rem 0}.rec{background:#eef3fd;border-left:4px solid #2f5fd0;
padding:.6rem 1rem}svg text{font-size:12px;fill:#1d2330}svg .axis{fill:#5b6475}
svg .zero{stroke:#8892a6;stroke-dasharray:3 3}svg .ci{stroke-width:3}
svg .win{stroke:#2e9d55;fill:#2e9d55}svg .loss{stroke:#c62828;fill:#c62828}
svg .flat{stroke:#5b6475;fill:#5b6475}figcaption{color:#5b6475;font-size:.8rem}
"""


def _html_table(columns: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(v)}</td>" for v in r) + "</tr>" for r in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def render_html(report: pb.ExperimentReport) -> str:
    """One self-contained HTML page: SRM banner, variants, a table and a chart per metric."""
    key = html.escape(report.experiment_key)
    when = report.generate_time.ToDatetime().strftime("%Y-%m-%d %H:%M UTC")
    srm_class = "ok" if report.srm.ok else "bad"
    parts = [
        f'<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f"<title>Ensayo report: {key}</title><style>{_CSS}</style></head><body>",
        f"<h1>Experiment {key}</h1>",
        f'<p class="meta">{html.escape(_METHOD.get(report.method, "frequentist"))} · alpha '
        f"{report.alpha:g} · correction {html.escape(_CORRECTION.get(report.correction, 'none'))}"
        f" · generated {when}</p>",
        f'<p class="{srm_class}">{html.escape(_srm_line(report))}</p>',
    ]
    if report.weighting:
        parts.append(f"<p>Bandit weighting: {html.escape(report.weighting)}</p>")
    parts += [
        "<h2>Variants</h2>",
        _html_table(
            ["variant", "units", "expected share"],
            [[v.key, f"{v.units:,}", f"{v.expected_share:.1%}"] for v in report.variants],
        ),
    ]
    for index, metric in enumerate(report.metrics):
        kind = _KIND.get(metric.kind, "")
        tag = " · primary" if index == 0 else ""
        tag += " · lower is better" if metric.lower_is_better else ""
        parts.append(f"<h2>{html.escape(metric.metric_key)} <small>{kind}{tag}</small></h2>")
        columns, rows = _rows(metric)
        parts.append(_html_table(columns, rows) if rows else "<p>No comparison.</p>")
        parts.append(_forest(metric))
    if report.warnings:
        items = "".join(f"<li>{html.escape(w)}</li>" for w in report.warnings)
        parts.append(f'<h2>Warnings</h2><ul class="warnings">{items}</ul>')
    advice = report.recommendation or "None: the evidence does not support one yet."
    parts.append(f'<h2>Recommendation</h2><p class="rec">{html.escape(advice)}</p>')
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


_RENDER = {"table": render_table, "json": render_json, "html": render_html}


def run_report(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    """Fetch the report and render it in the requested format (stdout or ``--out``)."""
    addr = args.analysis or env.get("ENSAYO_ANALYSIS_ADDR") or DEFAULT_ADDRS["analysis"]
    channel = open_channel(addr, api_key=env.get("ENSAYO_API_KEY", ""))
    client = AnalysisClient(channel, timeout_s=args.timeout)
    report = client.experiment_report(
        args.experiment,
        metric_keys=args.metric,
        method=args.method,
        cuped=args.cuped,
        alpha=args.alpha,
        correction=args.correction,
    )
    text = _RENDER[getattr(args, "format", "table") or "table"](report)
    if args.out:
        Path(args.out).write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return 0
