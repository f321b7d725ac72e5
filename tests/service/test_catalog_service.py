"""CatalogService over real gRPC: apply, version, list, audit and every error status."""

from __future__ import annotations

import base64
import math

import grpc
import pytest
from google.protobuf import struct_pb2, timestamp_pb2
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from ensayo.v1 import catalog_service_pb2 as c
from ensayo.v1 import definitions_pb2 as d


def _metric(stub, key: str = "conv") -> None:
    stub.ApplyMetric(
        c.ApplyMetricRequest(
            metric=d.Metric(key=key, event_name="purchase", kind=d.METRIC_KIND_CONVERSION)
        )
    )


def _experiment(key: str = "exp", **kw) -> d.Experiment:
    return d.Experiment(key=key, variants=[d.Variant(key="control"), d.Variant(key="b")], **kw)


def _code(call) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as info:
        call()
    return info.value.code(), info.value.details()


class TestApplyAndRead:
    def test_apply_returns_version_one_and_get_reads_it(self, catalog) -> None:
        """A new definition is version 1 and reads back equal."""
        _metric(catalog)
        stored = catalog.ApplyExperiment(
            c.ApplyExperimentRequest(experiment=_experiment(metrics=["conv"]))
        ).experiment
        assert stored.version == 1
        assert stored.state == d.EXPERIMENT_STATE_DRAFT
        assert stored.HasField("update_time")
        got = catalog.GetExperiment(c.GetExperimentRequest(key="exp")).experiment
        assert got == stored

    def test_every_write_is_a_new_immutable_version(self, catalog) -> None:
        """Version N stays readable after version N+1 is written."""
        catalog.ApplyExperiment(c.ApplyExperimentRequest(experiment=_experiment(coverage=0.5)))
        catalog.ApplyExperiment(c.ApplyExperimentRequest(experiment=_experiment(coverage=0.8)))
        latest = catalog.GetExperiment(c.GetExperimentRequest(key="exp")).experiment
        first = catalog.GetExperiment(c.GetExperimentRequest(key="exp", version=1)).experiment
        assert (latest.version, latest.coverage) == (2, 0.8)
        assert (first.version, first.coverage) == (1, 0.5)

    @pytest.mark.parametrize("kind", ["Holdout", "Layer", "Metric", "Action", "ContactPolicy"])
    def test_every_kind_applies_gets_and_lists(self, catalog, kind: str) -> None:
        """Each definition kind has Apply, Get and List behaving alike."""
        bodies = {
            "Holdout": d.Holdout(key="k", fraction=0.1),
            "Layer": d.Layer(key="k"),
            "Metric": d.Metric(key="k", event_name="e", kind=d.METRIC_KIND_MEAN),
            "Action": d.Action(key="k", channel="email"),
            "ContactPolicy": d.ContactPolicy(key="k", max_contacts=3, window_s=86400),
        }
        field = {"ContactPolicy": "contact_policy"}.get(kind, kind.lower())
        plural = {"ContactPolicy": "ContactPolicies"}.get(kind, kind + "s")
        apply = getattr(catalog, f"Apply{kind}")
        stored = getattr(apply(getattr(c, f"Apply{kind}Request")(**{field: bodies[kind]})), field)
        assert stored.version == 1
        got = getattr(catalog, f"Get{kind}")(getattr(c, f"Get{kind}Request")(key="k"))
        assert getattr(got, field) == stored
        listed = getattr(catalog, f"List{plural}")(getattr(c, f"List{plural}Request")())
        assert [x.key for x in listed.ListFields()[0][1]] == ["k"]

    def test_list_paginates_in_key_order(self, catalog) -> None:
        """page_size and page_token walk every item once, in key order."""
        for i in range(7):
            catalog.ApplyLayer(c.ApplyLayerRequest(layer=d.Layer(key=f"l{i}")))
        seen, token = [], ""
        while True:
            page = catalog.ListLayers(c.ListLayersRequest(page_size=3, page_token=token))
            seen += [x.key for x in page.layers]
            token = page.next_page_token
            if not token:
                break
        assert seen == [f"l{i}" for i in range(7)]

    def test_default_page_size_is_50(self, catalog) -> None:
        """Unset page_size returns at most 50 items."""
        for i in range(52):
            catalog.ApplyLayer(c.ApplyLayerRequest(layer=d.Layer(key=f"l{i:02d}")))
        page = catalog.ListLayers(c.ListLayersRequest())
        assert len(page.layers) == 50
        assert page.next_page_token


class TestVersions:
    def test_stale_expected_version_is_aborted(self, catalog) -> None:
        """expected_version N fails with ABORTED unless the stored version is N."""
        catalog.ApplyLayer(c.ApplyLayerRequest(layer=d.Layer(key="l")))
        catalog.ApplyLayer(c.ApplyLayerRequest(layer=d.Layer(key="l"), expected_version=1))
        code, details = _code(
            lambda: catalog.ApplyLayer(
                c.ApplyLayerRequest(layer=d.Layer(key="l"), expected_version=1)
            )
        )
        assert code == grpc.StatusCode.ABORTED
        assert details.startswith("expected_version:")
        assert "version 2" in details

    def test_expected_version_zero_creates_only(self, catalog) -> None:
        """expected_version 0 creates, and is ALREADY_EXISTS the second time."""
        catalog.ApplyLayer(c.ApplyLayerRequest(layer=d.Layer(key="l"), expected_version=0))
        code, _ = _code(
            lambda: catalog.ApplyLayer(
                c.ApplyLayerRequest(layer=d.Layer(key="l"), expected_version=0)
            )
        )
        assert code == grpc.StatusCode.ALREADY_EXISTS

    def test_expected_version_on_a_missing_key_is_aborted(self, catalog) -> None:
        """Expecting version 3 of something that does not exist is ABORTED."""
        code, _ = _code(
            lambda: catalog.ApplyLayer(
                c.ApplyLayerRequest(layer=d.Layer(key="nope"), expected_version=3)
            )
        )
        assert code == grpc.StatusCode.ABORTED


class TestStateMachine:
    def test_legal_moves(self, catalog) -> None:
        """DRAFT -> RUNNING -> PAUSED -> RUNNING -> STOPPED, each a new version."""
        catalog.ApplyExperiment(c.ApplyExperimentRequest(experiment=_experiment()))
        versions = []
        for state in (
            d.EXPERIMENT_STATE_RUNNING,
            d.EXPERIMENT_STATE_PAUSED,
            d.EXPERIMENT_STATE_RUNNING,
            d.EXPERIMENT_STATE_STOPPED,
        ):
            exp = catalog.SetExperimentState(
                c.SetExperimentStateRequest(key="exp", state=state)
            ).experiment
            assert exp.state == state
            versions.append(exp.version)
        assert versions == [2, 3, 4, 5]

    @pytest.mark.parametrize(
        ("path", "target"),
        [
            ([], d.EXPERIMENT_STATE_PAUSED),
            ([d.EXPERIMENT_STATE_RUNNING], d.EXPERIMENT_STATE_DRAFT),
            ([d.EXPERIMENT_STATE_STOPPED], d.EXPERIMENT_STATE_RUNNING),
        ],
    )
    def test_illegal_moves_fail_precondition(self, catalog, path, target) -> None:
        """Moves outside the state machine are FAILED_PRECONDITION."""
        catalog.ApplyExperiment(c.ApplyExperimentRequest(experiment=_experiment()))
        for state in path:
            catalog.SetExperimentState(c.SetExperimentStateRequest(key="exp", state=state))
        code, details = _code(
            lambda: catalog.SetExperimentState(
                c.SetExperimentStateRequest(key="exp", state=target)
            )
        )
        assert code == grpc.StatusCode.FAILED_PRECONDITION
        assert "cannot move" in details

    def test_stopped_experiment_cannot_be_changed(self, catalog) -> None:
        """Applying a STOPPED experiment is FAILED_PRECONDITION."""
        catalog.ApplyExperiment(c.ApplyExperimentRequest(experiment=_experiment()))
        catalog.SetExperimentState(
            c.SetExperimentStateRequest(key="exp", state=d.EXPERIMENT_STATE_STOPPED)
        )
        code, _ = _code(
            lambda: catalog.ApplyExperiment(
                c.ApplyExperimentRequest(experiment=_experiment(coverage=0.2))
            )
        )
        assert code == grpc.StatusCode.FAILED_PRECONDITION

    def test_apply_keeps_the_stored_state(self, catalog) -> None:
        """Re-applying a running experiment without a state keeps it running."""
        catalog.ApplyExperiment(
            c.ApplyExperimentRequest(experiment=_experiment(state=d.EXPERIMENT_STATE_RUNNING))
        )
        again = catalog.ApplyExperiment(
            c.ApplyExperimentRequest(experiment=_experiment(coverage=0.3))
        ).experiment
        assert again.state == d.EXPERIMENT_STATE_RUNNING

    def test_unknown_experiment_state_change_is_not_found(self, catalog) -> None:
        """Changing the state of an unknown key is NOT_FOUND."""
        code, _ = _code(
            lambda: catalog.SetExperimentState(
                c.SetExperimentStateRequest(key="ghost", state=d.EXPERIMENT_STATE_RUNNING)
            )
        )
        assert code == grpc.StatusCode.NOT_FOUND


class TestErrors:
    def test_invalid_definition_names_fields_with_bad_request_details(self, catalog) -> None:
        """INVALID_ARGUMENT's message starts with the field path; BadRequest lists each."""
        bad = d.Experiment(
            key="exp", variants=[d.Variant(key="a"), d.Variant(key="b", weight=-1)], coverage=2
        )
        with pytest.raises(grpc.RpcError) as info:
            catalog.ApplyExperiment(c.ApplyExperimentRequest(experiment=bad))
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert info.value.details().startswith(
            "experiment.variants[1].weight: must be finite and non-negative"
        )
        status = rpc_status.from_call(info.value)
        assert status is not None
        detail = error_details_pb2.BadRequest()
        assert status.details[0].Unpack(detail)
        fields = [(v.field, v.description) for v in detail.field_violations]
        assert ("experiment.coverage", "must be in [0, 1]") in fields

    def test_unknown_key_is_not_found(self, catalog) -> None:
        """Get of an unknown key (or version) is NOT_FOUND."""
        code, details = _code(lambda: catalog.GetHoldout(c.GetHoldoutRequest(key="ghost")))
        assert code == grpc.StatusCode.NOT_FOUND
        assert "ghost" in details
        catalog.ApplyLayer(c.ApplyLayerRequest(layer=d.Layer(key="l")))
        code, _ = _code(lambda: catalog.GetLayer(c.GetLayerRequest(key="l", version=9)))
        assert code == grpc.StatusCode.NOT_FOUND

    def test_reference_to_missing_metric(self, catalog) -> None:
        """An experiment naming a metric that does not exist is INVALID_ARGUMENT."""
        code, details = _code(
            lambda: catalog.ApplyExperiment(
                c.ApplyExperimentRequest(experiment=_experiment(metrics=["ghost"]))
            )
        )
        assert code == grpc.StatusCode.INVALID_ARGUMENT
        assert details.startswith("experiment.metrics[0]: metric 'ghost' does not exist")

    def test_bad_targeting_operator(self, catalog) -> None:
        """An unknown operator in targeting is INVALID_ARGUMENT naming its path."""
        exp = _experiment()
        exp.targeting.update({"country": {"$like": "E%"}})
        code, details = _code(
            lambda: catalog.ApplyExperiment(c.ApplyExperimentRequest(experiment=exp))
        )
        assert code == grpc.StatusCode.INVALID_ARGUMENT
        assert details.startswith("experiment.targeting")
        assert "$like" in details

    @pytest.mark.parametrize("size", [0, 1001])
    def test_page_size_out_of_range(self, catalog, size: int) -> None:
        """page_size outside 1..1000 is INVALID_ARGUMENT."""
        code, details = _code(lambda: catalog.ListLayers(c.ListLayersRequest(page_size=size)))
        assert code == grpc.StatusCode.INVALID_ARGUMENT
        assert details.startswith("page_size:")

    def test_garbage_page_token(self, catalog) -> None:
        """A page token that no response produced is INVALID_ARGUMENT."""
        code, details = _code(
            lambda: catalog.ListAuditRecords(c.ListAuditRecordsRequest(page_token="%%%"))
        )
        assert code == grpc.StatusCode.INVALID_ARGUMENT
        assert details.startswith("page_token:")


class TestAudit:
    def test_every_write_is_audited_newest_first(self, catalog) -> None:
        """Audit records carry actor, kind, key, version, operation and the changed fields."""
        catalog.ApplyExperiment(c.ApplyExperimentRequest(experiment=_experiment(coverage=0.5)))
        catalog.ApplyExperiment(c.ApplyExperimentRequest(experiment=_experiment(coverage=0.7)))
        catalog.SetExperimentState(
            c.SetExperimentStateRequest(key="exp", state=d.EXPERIMENT_STATE_RUNNING)
        )
        records = catalog.ListAuditRecords(c.ListAuditRecordsRequest()).records
        assert [(r.version, r.operation) for r in records] == [
            (3, d.AUDIT_OPERATION_SET_STATE),
            (2, d.AUDIT_OPERATION_UPDATE),
            (1, d.AUDIT_OPERATION_CREATE),
        ]
        assert all(r.actor == "local" and r.kind == "experiment" for r in records)
        update = records[1]
        assert dict(update.diff.fields["coverage"].struct_value) == {"before": 0.5, "after": 0.7}
        assert set(update.diff.fields) == {"coverage"}

    def test_audit_filters_and_pages(self, catalog) -> None:
        """kind/key filters and pagination work together."""
        for i in range(3):
            catalog.ApplyLayer(c.ApplyLayerRequest(layer=d.Layer(key="l", description=str(i))))
        catalog.ApplyHoldout(c.ApplyHoldoutRequest(holdout=d.Holdout(key="h")))
        page1 = catalog.ListAuditRecords(c.ListAuditRecordsRequest(kind="layer", page_size=2))
        page2 = catalog.ListAuditRecords(
            c.ListAuditRecordsRequest(kind="layer", page_size=2, page_token=page1.next_page_token)
        )
        versions = [r.version for r in (*page1.records, *page2.records)]
        assert versions == [3, 2, 1]
        assert not page2.next_page_token


class TestCliApply:
    def test_a_refused_document_stops_apply_and_says_what_was_not_applied(
        self, catalog_server, tmp_path, capsys
    ) -> None:
        """`ensayo apply` names the refused document and counts what was and was not
        applied (it printed only the server's message, so a partial apply went unnoticed)."""
        from ensayo.cli.main import main

        spec = tmp_path / "defs.yaml"
        spec.write_text(
            "kind: Layer\nspec: {key: lay}\n---\n"
            "kind: Metric\nspec: {key: r, event_name: e, kind: ratio}\n---\n"
            "kind: Metric\nspec: {key: ok, event_name: e, kind: conversion}\n"
        )
        code = main(
            ["apply", "-f", str(spec), "--catalog", f"127.0.0.1:{catalog_server.port}"], env={}
        )
        out, err = capsys.readouterr()
        assert code == 1
        assert "layer/lay applied (version 1)" in out  # (the server logs here too)
        assert "metric/ok applied" not in out
        assert f"{spec}: document 2 (metric/r): INVALID_ARGUMENT" in err
        assert "1 applied, 2 not applied" in err


def _struct(**values) -> struct_pb2.Struct:
    out = struct_pb2.Struct()
    out.update(values)
    return out


def _two_variants(**kw) -> d.Experiment:
    return d.Experiment(key="e", variants=[d.Variant(key="a"), d.Variant(key="b")], **kw)


class TestBadFieldsAreInvalid:
    """Found in review: each of these was INTERNAL (an exception outside validation)."""

    @pytest.mark.parametrize(
        ("call", "field"),
        [
            (
                lambda s: s.ApplyExperiment(
                    c.ApplyExperimentRequest(
                        experiment=_two_variants(targeting=_struct(age=math.nan))
                    )
                ),
                "experiment",
            ),
            (
                lambda s: s.ApplyAction(
                    c.ApplyActionRequest(
                        action=d.Action(
                            key="a",
                            channel="email",
                            start_time=timestamp_pb2.Timestamp(seconds=10**13),
                        )
                    )
                ),
                "action",
            ),
            (
                lambda s: s.ListAuditRecords(
                    c.ListAuditRecordsRequest(
                        page_token=base64.urlsafe_b64encode(b"99999999999999999999").decode()
                    )
                ),
                "page_token",
            ),
            (
                lambda s: s.ApplyExperiment(
                    c.ApplyExperimentRequest(
                        experiment=_two_variants(
                            allocation=d.ALLOCATION_FIXED,
                            bandit=d.BanditConfig(exploration_floor=math.nan),
                        )
                    )
                ),
                "experiment.bandit.exploration_floor",
            ),
        ],
        ids=["nan-in-struct", "timestamp-out-of-range", "huge-page-token", "unused-bandit-nan"],
    )
    def test_invalid_argument_naming_the_field(self, catalog, call, field) -> None:
        code, details = _code(lambda: call(catalog))
        assert code == grpc.StatusCode.INVALID_ARGUMENT
        assert details.startswith(f"{field}:")
