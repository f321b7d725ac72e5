"""``ensayo report``: an experiment report as a table, JSON or an HTML page."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping
from pathlib import Path

from google.protobuf import json_format

from ensayo.client.channel import open_channel
from ensayo.serverkit.config import DEFAULT_ADDRS
from ensayo.v1 import analysis_service_pb2 as pb
from ensayo.v1 import analysis_service_pb2_grpc as pb_grpc

__all__ = ["run_report"]

_METHOD = {
    "frequentist": pb.ANALYSIS_METHOD_FREQUENTIST,
    "bayesian": pb.ANALYSIS_METHOD_BAYESIAN,
    "sequential": pb.ANALYSIS_METHOD_SEQUENTIAL,
}
_CORRECTION = {
    "none": pb.CORRECTION_NONE,
    "holm": pb.CORRECTION_HOLM,
    "benjamini_hochberg": pb.CORRECTION_BENJAMINI_HOCHBERG,
}


def run_report(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    """Fetch the report and render it in the requested format."""
    addr = args.analysis or env.get("ENSAYO_ANALYSIS_ADDR") or DEFAULT_ADDRS["analysis"]
    stub = pb_grpc.AnalysisServiceStub(open_channel(addr, api_key=env.get("ENSAYO_API_KEY", "")))
    request = pb.GetExperimentReportRequest(
        experiment_key=args.experiment,
        metric_keys=args.metric,
        method=_METHOD[args.method],
        cuped=args.cuped,
        correction=_CORRECTION[args.correction],
    )
    if args.alpha is not None:
        request.alpha = args.alpha
    report = stub.GetExperimentReport(request, timeout=args.timeout).report
    data = json_format.MessageToDict(report, preserving_proto_field_name=True)
    text = json.dumps(data, indent=2)
    if args.out:
        Path(args.out).write_text(text + "\n", encoding="utf-8")
    else:
        sys.stdout.write(text + "\n")
    return 0
