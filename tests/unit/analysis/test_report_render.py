"""``ensayo report`` renderers: a readable table, JSON, one self-contained HTML page."""

from __future__ import annotations

import json

from ensayo.cli.report import render_html, render_json, render_table
from ensayo.v1 import analysis_service_pb2 as pb
from ensayo.v1 import definitions_pb2 as defs


def _report(srm_ok: bool = True) -> pb.ExperimentReport:
    report = pb.ExperimentReport(
        experiment_key="checkout",
        method=pb.ANALYSIS_METHOD_FREQUENTIST,
        variants=[
            pb.VariantSummary(key="control", units=5012, expected_share=0.5),
            pb.VariantSummary(key="b", units=4988, expected_share=0.5),
        ],
        srm=pb.SampleRatioCheck(p_value=0.81 if srm_ok else 1e-6, ok=srm_ok),
        metrics=[
            pb.MetricResult(
                metric_key="conv",
                kind=defs.METRIC_KIND_CONVERSION,
                comparisons=[
                    pb.Comparison(
                        variant_key="b",
                        control_mean=0.1,
                        treatment_mean=0.12,
                        absolute_lift=0.02,
                        relative_lift=0.2,
                        ci_low=0.008,
                        ci_high=0.032,
                        relative_ci_low=0.07,
                        relative_ci_high=0.33,
                        p_value=0.0011,
                        variance_reduction=0.0,
                        significant=True,
                        control_units=5012,
                        treatment_units=4988,
                    )
                ],
            )
        ],
        warnings=["metric <x> & y"],
        recommendation="Ship 'b'",
        alpha=0.05,
        correction=pb.CORRECTION_NONE,
    )
    report.generate_time.GetCurrentTime()
    return report


class TestRenderers:
    def test_table_shows_srm_first_and_only_computed_columns(self) -> None:
        """The SRM line comes right after the title; Bayesian columns are absent."""
        text = render_table(_report())
        lines = text.splitlines()
        assert lines[1].startswith("Sample ratio check: OK")
        assert "+20.0% [+7.0%, +33.0%]" in text
        assert "chance to win" not in text
        assert "Recommendation: Ship 'b'" in text

    def test_table_flags_a_mismatch(self) -> None:
        """A failed SRM check says to distrust the figures."""
        assert "MISMATCH" in render_table(_report(srm_ok=False))

    def test_json_keeps_proto_field_names(self) -> None:
        """JSON uses the contract's snake_case names."""
        data = json.loads(render_json(_report()))
        assert data["metrics"][0]["comparisons"][0]["relative_ci_high"] == 0.33

    def test_json_keeps_a_failed_srm_check(self) -> None:
        """ok=false and p=0 are defaults, which MessageToDict leaves out: a reader would have
        seen an empty check and assumed it passed (found in review)."""
        report = _report()
        report.srm.CopyFrom(pb.SampleRatioCheck(p_value=0.0, ok=False))
        assert json.loads(render_json(report))["srm"] == {"p_value": 0.0, "ok": False}

    def test_chart_colours_by_the_change_not_by_the_relative_lift(self) -> None:
        """A significant rise from a negative control mean is a win (green), whatever sign a
        relative figure has."""
        report = _report()
        comparison = report.metrics[0].comparisons[0]
        comparison.control_mean, comparison.treatment_mean = -10.0, -5.0
        comparison.absolute_lift, comparison.relative_lift = 5.0, -0.5
        comparison.relative_ci_low, comparison.relative_ci_high = -0.6, -0.4
        assert 'class="ci win"' in render_html(report)

    def test_html_is_one_self_contained_page_with_a_chart(self) -> None:
        """Inline SVG, inline CSS, nothing fetched, text escaped."""
        page = render_html(_report())
        assert page.startswith("<!doctype html>")
        assert "<svg" in page and "<style>" in page
        for fetch in ("<script", "<link", "src=", "@import", "url("):
            assert fetch not in page
        assert "metric &lt;x&gt; &amp; y" in page
