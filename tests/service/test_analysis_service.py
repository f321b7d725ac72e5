"""AnalysisService over real gRPC: reports from tracked events, and every error status."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import grpc
import numpy as np
import pytest
import redis as redis_lib
from scipy import stats as sps

from ensayo.catalog.model import (
    Action,
    Experiment,
    ExperimentState,
    Holdout,
    Metric,
    MetricKind,
    Variant,
)
from ensayo.catalog.usecases import CatalogUseCases
from ensayo.client.analysis import AnalysisClient
from ensayo.client.events import EventsClient
from ensayo.decisioning.evaluation import CandidatePolicy, beta_rates, evaluate
from ensayo.events.model import DECISION, EXPOSURE, OUTCOME, Event, exposure_id
from ensayo.state.consumer import StreamConsumer
from ensayo.state.models import RedisModelStore
from ensayo.stats import MetricKind as StatsKind
from ensayo.stats import sample_size
from ensayo.storage import engine as sql
from ensayo.storage.catalog_repo import SqlCatalogRepository
from ensayo.storage.events_repo import SqlEventStore
from ensayo.v1 import analysis_service_pb2 as pb
from ensayo.v1 import analysis_service_pb2_grpc as pb_grpc
from ensayo.v1 import definitions_pb2 as defs
from services.analysis.config import AnalysisConfig
from services.analysis.server import create_server
from tests.service.conftest import loopback_config

T0 = datetime.now(UTC) - timedelta(hours=2)


@pytest.fixture
def env(sqlite_url, redis_url):
    config = loopback_config(
        "analysis",
        ENSAYO_DATABASE_URL=sqlite_url,
        ENSAYO_REDIS_URL=redis_url,
        ENSAYO_SNAPSHOT_POLL_S="0.1",
    )
    running = create_server(config, AnalysisConfig(consumer="off"), serve_metrics=False)
    engine = sql.create(sqlite_url)
    catalog = CatalogUseCases(SqlCatalogRepository(engine), None, lambda: datetime.now(UTC))
    for definition in (
        Metric("conv", event_name="purchase", kind=MetricKind.CONVERSION),
        Metric("rev", event_name="purchase", kind=MetricKind.MEAN),
        Holdout("global", fraction=0.1),
        Action("a", channel="email", value=1.0),
        Action("b", channel="email", value=5.0),
        Experiment(
            "exp",
            (Variant("control"), Variant("treatment")),
            metrics=("conv", "rev"),
            state=ExperimentState.RUNNING,
        ),
    ):
        catalog.apply(definition, None, "test", "definition")
    channel = grpc.insecure_channel(f"127.0.0.1:{running.port}")
    redis = redis_lib.Redis.from_url(redis_url, socket_timeout=5)

    def drain() -> int:
        return StreamConsumer(redis, SqlEventStore(engine), name="t", block_ms=10).drain()

    yield channel, drain
    channel.close()
    redis.close()
    running.stop(0.5)
    engine.dispose()


def _error(call) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        call()
    return info.value


def _experiment_events(units: int = 600, seed: int = 3):
    rng = np.random.default_rng(seed)
    events, values = [], {"control": [], "treatment": []}
    for i in range(units):
        variant = "control" if i % 2 else "treatment"
        unit = f"u{i}"
        t = T0 + timedelta(seconds=i)
        events.append(
            Event(
                exposure_id("exp", 1, unit),
                unit,
                EXPOSURE,
                t,
                experiment_key="exp",
                experiment_version=1,
                variant_key=variant,
                probability=0.5,
            )
        )
        total = 0.0
        if rng.random() < (0.3 if variant == "control" else 0.4):
            total = float(rng.integers(1, 40))
            events.append(Event(f"p{i}", unit, "purchase", t + timedelta(seconds=1), total))
        values[variant].append(total)
    return events, {k: np.array(v) for k, v in values.items()}


class TestExperimentReport:
    def test_report_through_grpc_matches_scipy(self, env) -> None:
        """Track raw events, consume them, read the report: Welch's numbers from scipy."""
        channel, drain = env
        events, values = _experiment_events()
        EventsClient(channel).track_all(events)
        drain()
        report = AnalysisClient(channel).experiment_report("exp")
        assert [(v.key, v.units) for v in report.variants] == [
            ("control", 300),
            ("treatment", 300),
        ]
        assert report.srm.ok
        assert [m.metric_key for m in report.metrics] == ["conv", "rev"]
        rev = report.metrics[1].comparisons[0]
        reference = sps.ttest_ind(values["treatment"], values["control"], equal_var=False)
        assert rev.p_value == pytest.approx(reference.pvalue, rel=1e-9)
        assert rev.treatment_units == rev.control_units == 300
        assert report.generate_time.seconds > 0

    @pytest.mark.parametrize(
        ("method", "present", "absent"),
        [
            ("bayesian", "chance_to_win", "p_value"),
            ("sequential", "p_value", "chance_to_win"),
        ],
    )
    def test_methods_fill_their_own_fields(self, env, method, present, absent) -> None:
        """Each method sets what it computes and leaves the rest unset."""
        channel, drain = env
        EventsClient(channel).track_all(_experiment_events()[0])
        drain()
        report = AnalysisClient(channel).experiment_report("exp", method=method)
        comparison = report.metrics[0].comparisons[0]
        assert comparison.HasField(present)
        assert not comparison.HasField(absent)

    def test_correction_fills_adjusted_p_values(self, env) -> None:
        """Holm across the report's comparisons."""
        channel, drain = env
        EventsClient(channel).track_all(_experiment_events()[0])
        drain()
        report = AnalysisClient(channel).experiment_report("exp", correction="holm")
        assert all(c.HasField("adjusted_p_value") for m in report.metrics for c in m.comparisons)
        assert report.correction == pb.CORRECTION_HOLM

    def test_unknown_experiment_is_not_found(self, env) -> None:
        """An unknown key in a request about it is NOT_FOUND."""
        stub = pb_grpc.AnalysisServiceStub(env[0])
        error = _error(
            lambda: stub.GetExperimentReport(pb.GetExperimentReportRequest(experiment_key="no"))
        )
        assert error.code() == grpc.StatusCode.NOT_FOUND

    def test_unknown_metric_is_not_found(self, env) -> None:
        """Asking for a metric the catalog does not have."""
        stub = pb_grpc.AnalysisServiceStub(env[0])
        request = pb.GetExperimentReportRequest(experiment_key="exp", metric_keys=["nope"])
        assert _error(lambda: stub.GetExperimentReport(request)).code() == (
            grpc.StatusCode.NOT_FOUND
        )

    def test_alpha_out_of_range_is_invalid(self, env) -> None:
        """alpha must be in (0, 1)."""
        stub = pb_grpc.AnalysisServiceStub(env[0])
        request = pb.GetExperimentReportRequest(experiment_key="exp", alpha=1.5)
        error = _error(lambda: stub.GetExperimentReport(request))
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert error.details().startswith("alpha")


class TestHoldoutReport:
    def test_holdout_against_everyone_else(self, env) -> None:
        """Groups holdout/exposed over every unit seen, one comparison per metric."""
        channel, drain = env
        EventsClient(channel).track_all(_experiment_events()[0])
        drain()
        report = AnalysisClient(channel).holdout_report("global", metric_keys=["rev"])
        assert [g.key for g in report.groups] == ["holdout", "exposed"]
        assert sum(g.units for g in report.groups) == 600
        assert report.metrics[0].comparisons[0].variant_key == "exposed"

    def test_unknown_holdout_is_not_found(self, env) -> None:
        """NOT_FOUND for an unknown holdout key."""
        stub = pb_grpc.AnalysisServiceStub(env[0])
        request = pb.GetHoldoutReportRequest(holdout_key="nope")
        assert _error(lambda: stub.GetHoldoutReport(request)).code() == grpc.StatusCode.NOT_FOUND


class TestPlanSampleSize:
    def test_equals_the_statistics_library(self, env) -> None:
        """The RPC returns ensayo.stats.sample_size's plan (contract defaults filled in)."""
        reply = AnalysisClient(env[0]).plan_sample_size(
            "conversion", baseline_mean=0.1, minimum_detectable_effect=0.1, variants=3
        )
        plan = sample_size(
            StatsKind.CONVERSION, baseline_mean=0.1, minimum_detectable_effect=0.1, variants=3
        )
        assert (reply.units_per_variant, reply.total_units) == (
            plan.units_per_variant,
            plan.total_units,
        )

    def test_missing_kind_and_bad_mde_are_invalid(self, env) -> None:
        """Both name their field."""
        stub = pb_grpc.AnalysisServiceStub(env[0])
        no_kind = pb.PlanSampleSizeRequest(baseline_mean=0.1, minimum_detectable_effect=0.1)
        assert _error(lambda: stub.PlanSampleSize(no_kind)).details().startswith("metric_kind")
        zero = pb.PlanSampleSizeRequest(metric_kind=defs.METRIC_KIND_CONVERSION, baseline_mean=0.1)
        error = _error(lambda: stub.PlanSampleSize(zero))
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert error.details().startswith("minimum_detectable_effect")

    def test_an_effect_too_small_to_plan_is_invalid(self, env) -> None:
        """A plan beyond int64 units, or an effect that underflows, names the effect (both
        were INTERNAL; found in review)."""
        stub = pb_grpc.AnalysisServiceStub(env[0])
        for baseline, mde in ((1.0, 1e-10), (1e-300, 1e-300)):
            request = pb.PlanSampleSizeRequest(
                metric_kind=defs.METRIC_KIND_MEAN,
                baseline_mean=baseline,
                baseline_variance=1.0,
                minimum_detectable_effect=mde,
            )
            error = _error(lambda r=request: stub.PlanSampleSize(r))
            assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert error.details().startswith("minimum_detectable_effect: too small")


class TestEvaluatePolicy:
    def _log(self, n: int = 400, seed: int = 5):
        rng = np.random.default_rng(seed)
        decisions, outcomes, events = [], [], []
        for i in range(n):
            chosen = "a" if rng.random() < 0.7 else "b"
            propensity = 0.7 if chosen == "a" else 0.3
            props = {
                "channel": "email",
                "placement": "inbox",
                "candidates": ["a", "b"],
                "chosen": [{"action_key": chosen, "propensity": propensity, "score": 0.1}],
                "policy_version": 1,
            }
            decisions.append({"decision_id": f"d{i}", "properties": props})
            events.append(Event(f"d{i}", f"u{i}", DECISION, T0, properties=props))
            if rng.random() < (0.2 if chosen == "a" else 0.5):
                outcomes.append({"decision_id": f"d{i}", "action_key": chosen, "value": 1.0})
                events.append(
                    Event(
                        f"r{i}",
                        f"u{i}",
                        OUTCOME,
                        T0,
                        1.0,
                        decision_id=f"d{i}",
                        properties={"action_key": chosen},
                    )
                )
        return decisions, outcomes, events

    def test_estimates_equal_the_decisioning_evaluation_on_the_same_log(self, env) -> None:
        """IPS/SNIPS/DR over tracked $decision/$outcome events match the pure library."""
        channel, drain = env
        decisions, outcomes, events = self._log()
        EventsClient(channel).track_all(events)
        drain()
        reply = AnalysisClient(channel).evaluate_policy("value_only", "email")
        actions = [
            Action("a", channel="email", value=1.0),
            Action("b", channel="email", value=5.0),
        ]
        expected = evaluate(decisions, outcomes, CandidatePolicy.VALUE_ONLY, actions, {})
        assert reply.decisions == 400
        got = {e.estimator: e for e in reply.estimates}
        for estimate in expected.estimates:
            assert got[estimate.estimator.value].value == pytest.approx(estimate.value, rel=1e-12)
        assert reply.logged_value == pytest.approx(len(outcomes) / 400)

    def test_greedy_uses_the_current_beta_models(self, env, redis_url) -> None:
        """greedy ranks by the decision models' Beta rates stored in Redis."""
        channel, drain = env
        decisions, outcomes, events = self._log()
        EventsClient(channel).track_all(events)
        drain()
        client = redis_lib.Redis.from_url(redis_url)
        store = RedisModelStore(client)
        for i, (action, reward) in enumerate([("a", 0.0)] * 8 + [("b", 1.0)] * 8):
            store.apply_outcome(
                f"m{i}",
                action,
                reward,
                features=(),
                feature_spec="",
                ridge=1.0,
                discount=1.0,
                ttl_s=60,
            )
        rates = beta_rates(store.load("", 0))
        client.close()
        reply = AnalysisClient(channel).evaluate_policy("greedy", "email")
        actions = [
            Action("a", channel="email", value=1.0),
            Action("b", channel="email", value=5.0),
        ]
        expected = evaluate(decisions, outcomes, CandidatePolicy.GREEDY, actions, rates)
        got = {e.estimator: e.value for e in reply.estimates}
        assert rates["b"] > rates["a"]
        assert not reply.warnings
        for estimate in expected.estimates:
            assert got[estimate.estimator.value] == pytest.approx(estimate.value, rel=1e-12)

    def test_logged_policy_recovers_the_logged_value(self, env) -> None:
        """Weights of 1: IPS equals the mean logged reward."""
        channel, drain = env
        EventsClient(channel).track_all(self._log()[2])
        drain()
        reply = AnalysisClient(channel).evaluate_policy("logged", "email")
        ips = next(e for e in reply.estimates if e.estimator == "IPS")
        assert ips.value == pytest.approx(reply.logged_value)

    def test_unknown_policy_and_missing_channel_are_invalid(self, env) -> None:
        """Both are INVALID_ARGUMENT naming the field."""
        stub = pb_grpc.AnalysisServiceStub(env[0])
        bad = _error(
            lambda: stub.EvaluatePolicy(pb.EvaluatePolicyRequest(policy="x", channel="e"))
        )
        assert bad.details().startswith("policy")
        missing = _error(lambda: stub.EvaluatePolicy(pb.EvaluatePolicyRequest(policy="random")))
        assert missing.details().startswith("channel")
        for field in ("start_time", "end_time"):  # outside Timestamp's range: was INTERNAL
            request = pb.EvaluatePolicyRequest(policy="random", channel="email")
            getattr(request, field).seconds = -(10**15)
            error = _error(lambda r=request: stub.EvaluatePolicy(r))
            assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert error.details().startswith(f"{field}: out of range")

    def test_no_decisions_is_explained(self, env) -> None:
        """An empty window answers with a warning, not an error."""
        reply = AnalysisClient(env[0]).evaluate_policy("random", "push")
        assert reply.decisions == 0
        assert reply.warnings
