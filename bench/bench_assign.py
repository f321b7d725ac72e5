"""Assignment benchmark: Assign vs an echo server; AssignBatch vs GrowthBook and a bare server.

Run: ``.venv/bin/python -m bench assign`` or ``.venv/bin/python bench/bench_assign.py``
(about a minute). Every server runs
in its own subprocess on loopback, with a private redis-server; peers are measured side by
side in the same run, interleaved round by round. ``main()`` prints and returns the markdown
section saved as ``docs/benchmarks/assign.md``.
"""

from __future__ import annotations

import asyncio
import os
import platform
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from concurrent import futures
from contextlib import contextmanager
from importlib.metadata import version
from pathlib import Path

import growthbook
import grpc
import numpy as np
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from ensayo.assignment.engine import build_index, candidates_many
from ensayo.assignment.model import BatchResult
from ensayo.assignment.usecases import check_unit_ids
from ensayo.catalog.model import Experiment, ExperimentState, Snapshot, Variant
from ensayo.cli.local import free_port, start_redis, wait_serving
from ensayo.serverkit.config import ServerConfig
from ensayo.serverkit.logging import configure
from ensayo.serverkit.server import start_server, wait_for_termination
from ensayo.state.client import connect
from ensayo.state.snapshots import RedisSnapshotPublisher
from ensayo.v1 import assignment_service_pb2 as pb
from ensayo.v1 import assignment_service_pb2_grpc as pb_grpc
from ensayo.v1 import common_pb2
from services.assignment import convert

ROOT = Path(__file__).resolve().parents[1]

UNARY_ROUNDS = 3
UNARY_SECONDS = 3.0
UNARY_WARMUP_S = 0.5
UNARY_CONCURRENCY = 8
AUDIENCE = 1_000_000
BATCH = 100_000
BATCH_ROUNDS = 3
GROWTHBOOK_UNITS = 20_000
TARGETING = {"country": {"$in": ["ES", "MX"]}, "orders": {"$gte": 3}}
ATTRIBUTES = {"country": "ES", "orders": 5, "plan": "pro"}
N_EXPERIMENTS = 20
AUDIENCE_EXPERIMENT = "audience"
FLOOR_EXPERIMENT = "floor"
ASSIGN_METHOD = "/ensayo.v1.AssignmentService/Assign"
BATCH_METHOD = "/ensayo.v1.AssignmentService/AssignBatch"


# -- processes ------------------------------------------------------------------------------


@contextmanager
def _process(argv: Sequence[str], env: dict[str, str], port: int) -> Iterator[None]:
    process = subprocess.Popen(
        argv, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        wait_serving(f"127.0.0.1:{port}", 30, process)
        yield
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "libs"), str(ROOT)])
    env.update(extra)
    return env


def _server_env(port: int, redis_url: str) -> dict[str, str]:
    return _env(
        ENSAYO_ASSIGNMENT_ADDR=f"127.0.0.1:{port}",
        ENSAYO_ASSIGNMENT_METRICS_ADDR="127.0.0.1:0",
        ENSAYO_REDIS_URL=redis_url,
        ENSAYO_LOG_LEVEL="warning",
        ENSAYO_LOG_FORMAT="json",
    )


# -- the peers (run with --serve-peer / --serve-raw in a subprocess) ---------------------------


class _PeerServicer(pb_grpc.AssignmentServiceServicer):
    """Echo for Assign; parse-and-pack for AssignBatch: the gRPC floor of each call."""

    def Assign(
        self, request: pb.AssignRequest, context: grpc.ServicerContext
    ) -> pb.AssignResponse:
        return pb.AssignResponse(
            assignments=[
                pb.Assignment(experiment_key=k, variant_key=request.unit.id)
                for k in request.experiment_keys
            ]
        )

    def AssignBatch(
        self, request: pb.AssignBatchRequest, context: grpc.ServicerContext
    ) -> pb.AssignBatchResponse:
        if request.experiment_key == FLOOR_EXPERIMENT:
            n = len(request.unit_ids)  # the transport floor: ids never become Python strings
        else:
            n = len(list(request.unit_ids))  # what any Python handler does to read the ids
        response = pb.AssignBatchResponse(variant_keys=["control", "treatment"])
        packed = np.zeros(n, dtype=np.uint8).tobytes()  # zigzag(0): one byte per unit
        response.MergeFromString(b"\x12" + _varint(len(packed)) + packed)
        return response


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        low, n = n & 0x7F, n >> 7
        if not n:
            return bytes([*out, low])
        out.append(low | 0x80)


def _serve_peer(port: int) -> None:
    """The peer on Ensayo's server kit: same interceptor, logging, metrics, thread pool."""
    config = ServerConfig.from_env("assignment", _server_env(port, "redis://unused:1"))
    configure(config.log_level, config.log_format)

    def register(server: grpc.Server) -> list[str]:
        pb_grpc.add_AssignmentServiceServicer_to_server(_PeerServicer(), server)
        return ["ensayo.v1.AssignmentService"]

    running = start_server(config, register)
    wait_for_termination(running, 1.0)


def _serve_raw(port: int, workers: int = 16) -> None:
    """The peer on a bare grpc.server (no interceptor): a reference row."""
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=workers),
        options=[("grpc.max_receive_message_length", 64 << 20)],
    )
    pb_grpc.add_AssignmentServiceServicer_to_server(_PeerServicer(), server)
    health_servicer = health.HealthServicer()
    health_servicer.set("", health_pb2.HealthCheckResponse.SERVING)  # for wait_serving
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    server.wait_for_termination()


# -- catalog ------------------------------------------------------------------------------------


def _publish_snapshot(redis_url: str) -> None:
    experiments = [
        Experiment(
            f"exp-{i:02d}",
            (Variant("control"), Variant("treatment", payload={"color": "green"})),
            targeting=TARGETING,
            state=ExperimentState.RUNNING,
            version=1,
        )
        for i in range(N_EXPERIMENTS)
    ]
    experiments.append(
        Experiment(
            AUDIENCE_EXPERIMENT,
            (Variant("control"), Variant("treatment")),
            state=ExperimentState.RUNNING,
            version=1,
        )
    )
    client = connect(redis_url)
    RedisSnapshotPublisher(client).publish(Snapshot(1, experiments=tuple(experiments)))
    client.close()


@contextmanager
def _redis() -> Iterator[str]:
    with tempfile.TemporaryDirectory() as workdir:
        process, url = start_redis(Path(workdir))
        try:
            yield url
        finally:
            process.terminate()
            process.wait(10)


# -- load -------------------------------------------------------------------------------------


BARE_ECHO = "echo (bare grpc.server)"
KIT_ECHO = "echo (Ensayo server kit, reference)"
FEW_THREADS = 2
BARE_ECHO_FEW = f"echo (bare grpc.server, {FEW_THREADS} threads)"
ASSIGN_FEW = f"Assign, 1 experiment, `ENSAYO_GRPC_WORKERS={FEW_THREADS}`"


def _unary_requests(keys: Sequence[str]) -> list[bytes]:
    out = []
    for i in range(1000):
        unit = common_pb2.Unit(id=f"user-{i:07d}")
        unit.attributes.update(ATTRIBUTES)
        out.append(pb.AssignRequest(unit=unit, experiment_keys=list(keys)).SerializeToString())
    return out


async def _unary_load(port: int, requests: list[bytes], seconds: float) -> tuple[int, list[float]]:
    """Closed loop: UNARY_CONCURRENCY callers send pre-serialized requests for ``seconds``."""
    latencies: list[float] = []
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        call = channel.unary_unary(ASSIGN_METHOD)  # bytes in, bytes out
        await call(requests[0], timeout=10)
        stop = time.perf_counter() + UNARY_WARMUP_S + seconds
        start_measuring = time.perf_counter() + UNARY_WARMUP_S

        async def caller(offset: int) -> None:
            i = offset
            while (now := time.perf_counter()) < stop:
                await call(requests[i % len(requests)], timeout=10)
                done = time.perf_counter()
                if now >= start_measuring:
                    latencies.append(done - now)
                i += UNARY_CONCURRENCY

        await asyncio.gather(*(caller(k) for k in range(UNARY_CONCURRENCY)))
    return len(latencies), latencies


def _measure_unary(port: int, requests: list[bytes]) -> tuple[int, list[float]]:
    return asyncio.run(_unary_load(port, requests, UNARY_SECONDS))


def _audience() -> list[list[str]]:
    rng = np.random.default_rng(20240611)
    raw = rng.integers(0, 2**63, size=(AUDIENCE, 2), dtype=np.int64)
    ids = [str(uuid.UUID(int=(int(a) << 64) | int(b), version=4)) for a, b in raw]
    return [ids[i : i + BATCH] for i in range(0, AUDIENCE, BATCH)]


def _batch_pass(port: int, payloads: list[bytes]) -> tuple[float, list[np.ndarray]]:
    """Send every batch once (one call in flight); seconds taken and the decoded answers."""
    answers = []
    with grpc.insecure_channel(
        f"127.0.0.1:{port}", options=[("grpc.max_receive_message_length", 64 << 20)]
    ) as channel:
        call = channel.unary_unary(BATCH_METHOD)
        call(payloads[0], timeout=60)  # warm-up (connection, first-call setup)
        start = time.perf_counter()
        for payload in payloads:
            raw = call(payload, timeout=60)
            message = pb.AssignBatchResponse.FromString(raw)
            answers.append(
                np.fromiter(message.variant_index, np.int32, len(message.variant_index))
            )
        elapsed = time.perf_counter() - start
    return elapsed, answers


def _growthbook_rate(ids: Sequence[str]) -> tuple[float, list[int]]:
    experiment = growthbook.Experiment(
        key=AUDIENCE_EXPERIMENT,
        variations=[0, 1],
        weights=[0.5, 0.5],
        coverage=1.0,
        hashVersion=2,
    )
    client = growthbook.GrowthBook(attributes={"id": ids[0]})
    out = []
    start = time.perf_counter()
    for unit_id in ids:
        client.set_attributes({"id": unit_id})
        result = client.run(experiment)
        out.append(result.variationId if result.inExperiment else -1)
    return len(ids) / (time.perf_counter() - start), out


def _server_stages(payload: bytes) -> list[tuple[str, float]]:
    """Where one 100,000-id AssignBatch spends its time inside the server (in process)."""
    snapshot = Snapshot(
        1,
        experiments=(
            Experiment(
                AUDIENCE_EXPERIMENT,
                (Variant("control"), Variant("treatment")),
                state=ExperimentState.RUNNING,
            ),
        ),
    )
    exp = build_index(snapshot).experiments[AUDIENCE_EXPERIMENT]
    request = pb.AssignBatchRequest.FromString(payload)
    query = convert.batch_query_from_pb(payload)  # what the server does: UUIDs stay bytes
    ids = query.unit_ids
    result = None

    def best(step) -> float:
        times = []
        for _ in range(3):
            start = time.perf_counter()
            step()
            times.append(time.perf_counter() - start)
        return min(times) * 1000

    def bucket() -> None:
        nonlocal result
        result = candidates_many(exp, ids)

    out = [
        (
            "protobuf parse of the request (grpc does it for every server)",
            best(lambda: pb.AssignBatchRequest.FromString(payload)),
        ),
        (
            "(ragged ids) parse, ids to Python strings (`list(request.unit_ids)`)",
            best(lambda: convert.batch_query_from_pb(request)),
        ),
        (
            "fixed-width ids read from the wire (`convert.batch_query_from_pb(bytes)`)",
            best(lambda: convert.batch_query_from_pb(payload)),
        ),
        ("id length validation", best(lambda: check_unit_ids(ids))),
        ("`hash_v2_many` + `choose_variants`", best(bucket)),
    ]
    assert result is not None
    packed = BatchResult(AUDIENCE_EXPERIMENT, ("control", "treatment"), result)
    out.append(("packing the answer", best(lambda: convert.batch_result_to_pb(packed))))
    return out


def _pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q)) * 1000


# -- main ---------------------------------------------------------------------------------------


def main() -> str:
    """Run everything, print and return the markdown section."""
    started = time.perf_counter()
    load_before = os.getloadavg()[0]
    ports = {name: free_port() for name in ("assign", "peer", "raw", "assign2", "raw2")}
    script = str(Path(__file__).resolve())
    with _redis() as redis_url:
        _publish_snapshot(redis_url)
        assign_argv = [sys.executable, "-m", "services.assignment"]
        peer_argv = [sys.executable, script, "--serve-peer", str(ports["peer"])]
        raw_argv = [sys.executable, script, "--serve-raw", str(ports["raw"])]
        raw2_argv = [sys.executable, script, "--serve-raw", str(ports["raw2"]), str(FEW_THREADS)]
        assign2_env = _server_env(ports["assign2"], redis_url)
        assign2_env["ENSAYO_GRPC_WORKERS"] = str(FEW_THREADS)
        with (
            _process(assign_argv, _server_env(ports["assign"], redis_url), ports["assign"]),
            _process(peer_argv, _env(), ports["peer"]),
            _process(raw_argv, _env(), ports["raw"]),
            _process(assign_argv, assign2_env, ports["assign2"]),
            _process(raw2_argv, _env(), ports["raw2"]),
        ):
            one = _unary_requests(["exp-00"])
            every = _unary_requests([])
            unary: dict[str, tuple[int, list[float]]] = {}
            plan: list[tuple[str, int, list[bytes]]] = [
                (BARE_ECHO, ports["raw"], one),
                ("Assign, 1 experiment with targeting", ports["assign"], one),
                ("Assign, all 20 running experiments", ports["assign"], every),
                (KIT_ECHO, ports["peer"], one),
                (BARE_ECHO_FEW, ports["raw2"], one),
                (ASSIGN_FEW, ports["assign2"], one),
            ]
            for _ in range(UNARY_ROUNDS):
                for name, port, requests in plan:
                    calls, lat = _measure_unary(port, requests)
                    total, lats = unary.get(name, (0, []))
                    unary[name] = (total + calls, lats + lat)

            batches = _audience()
            payloads = [
                pb.AssignBatchRequest(
                    experiment_key=AUDIENCE_EXPERIMENT, unit_ids=b
                ).SerializeToString()
                for b in batches
            ]
            floor_payloads = [
                pb.AssignBatchRequest(
                    experiment_key=FLOOR_EXPERIMENT, unit_ids=b
                ).SerializeToString()
                for b in batches
            ]
            ragged = [
                pb.AssignBatchRequest(
                    experiment_key=AUDIENCE_EXPERIMENT,
                    unit_ids=[f"user-{int(i[:8], 16)}" for i in b],
                ).SerializeToString()
                for b in batches
            ]
            passes = {
                "assign": (ports["assign"], payloads),
                "peer": (ports["raw"], payloads),
                "floor": (ports["raw"], floor_payloads),
                "ragged": (ports["assign"], ragged),
                "ragged_peer": (ports["raw"], ragged),
            }
            times = dict.fromkeys(passes, float("inf"))
            ours: list[np.ndarray] = []
            for _ in range(BATCH_ROUNDS):
                for name, (port, sent) in passes.items():
                    elapsed, answers = _batch_pass(port, sent)
                    times[name] = min(times[name], elapsed)
                    if name == "assign":
                        ours = answers
    gb_runs = [_growthbook_rate(batches[0][:GROWTHBOOK_UNITS]) for _ in range(3)]
    gb_rate, gb_answers = max(gb_runs, key=lambda run: run[0])  # best of 3, like the batches
    stages = _server_stages(payloads[0])
    agree = bool(np.array_equal(ours[0][:GROWTHBOOK_UNITS], np.asarray(gb_answers)))

    seconds = UNARY_SECONDS * UNARY_ROUNDS
    echo_rps = unary[BARE_ECHO][0] / seconds
    echo_p99 = _pct(unary[BARE_ECHO][1], 99)
    kit_rps = unary[KIT_ECHO][0] / seconds
    rows = []
    for name, (calls, lats) in unary.items():
        rps = calls / seconds
        if name == ASSIGN_FEW:  # against the echo with as few threads
            few_rps = unary[BARE_ECHO_FEW][0] / seconds
            few_p99 = _pct(unary[BARE_ECHO_FEW][1], 99)
            rows.append(
                f"| {name} | {rps:,.0f} | {rps / few_rps:.2f} (of the {FEW_THREADS}-thread "
                f"echo) | | {_pct(lats, 50):.2f} | {_pct(lats, 99):.2f} "
                f"| {_pct(lats, 99) / few_p99:.2f} |"
            )
            continue
        rows.append(
            f"| {name} | {rps:,.0f} | {rps / echo_rps:.2f} | {rps / kit_rps:.2f} "
            f"| {_pct(lats, 50):.2f} | {_pct(lats, 99):.2f} | {_pct(lats, 99) / echo_p99:.2f} |"
        )
    assign_rate = AUDIENCE / times["assign"]
    peer_rate = AUDIENCE / times["peer"]
    floor_rate = AUDIENCE / times["floor"]
    ragged_rate = AUDIENCE / times["ragged"]
    ragged_peer_rate = AUDIENCE / times["ragged_peer"]
    cpu = platform.processor() or platform.machine()
    lines = [
        "## Assignment (`bench/bench_assign.py`)",
        "",
        "Command: `.venv/bin/python -m bench assign` (or `bench/bench_assign.py`). "
        f"Machine: {os.cpu_count()} CPUs ({cpu}), Python {platform.python_version()}, "
        f"grpcio {grpc.__version__}; servers and load generator share the machine. Every server "
        "is its own subprocess on loopback (sync `grpc.server`), log level warning; "
        f"run took {time.perf_counter() - started:.0f} s; 1-minute load average "
        f"{load_before:.1f} before and {os.getloadavg()[0]:.1f} after (other work on the "
        "machine makes these numbers noisy).",
        "",
        f"### Unary `Assign` ({UNARY_CONCURRENCY} concurrent callers, grpc.aio client, "
        f"{UNARY_ROUNDS} interleaved rounds of {UNARY_SECONDS:.0f} s per row)",
        "",
        "Every server runs 16 handler threads (the default) except the last two rows, "
        f"which both run {FEW_THREADS}: fewer threads mean fewer GIL hand-offs, and every "
        "Python gRPC server serves more calls with them when its handlers do not block. "
        "The goal's echo is a bare `grpc.server` (same sync flavour, no "
        "interceptor) answering `Assign` with one `Assignment` per requested key; the "
        "server-kit echo answers the same behind Ensayo's interceptor (auth, request id, "
        "deadline, metrics, access log), which every Ensayo service carries. Each "
        f"experiment has the targeting `{TARGETING}`, which the unit's attributes match.",
        "",
        "| server | calls/s | vs bare echo (goal >= 0.70) | vs server-kit echo | p50 ms "
        "| p99 ms | p99 vs bare echo (goal <= 2) |",
        "|---|---:|---:|---:|---:|---:|---:|",
        *rows,
        "",
        f"### An audience of {AUDIENCE:,} units (UUID4 ids) through `AssignBatch` of {BATCH:,}",
        "",
        "One call in flight; requests pre-serialized once; every answer decoded into a numpy "
        f"array. Best of {BATCH_ROUNDS} interleaved passes. The bare server (plain `grpc.server`) "
        "parses the same message, reads the ids (`list(request.unit_ids)`) and answers a packed "
        "`variant_index` of the same size (all zeros); the transport floor does the same "
        "without reading the ids (`len(request.unit_ids)`). GrowthBook: "
        f"`growthbook` {_growthbook_version()} in process, `set_attributes` + `run` per unit "
        f"over {GROWTHBOOK_UNITS:,} units (best of 3); its variants equal Ensayo's for every "
        f"one of them: {'yes' if agree else 'NO'}.",
        "",
        "| path | units/s | ratio | goal |",
        "|---|---:|---:|---|",
        f"| Ensayo `AssignBatch` | {assign_rate:,.0f} | 1 | |",
        f"| bare gRPC server: parse, read ids, packed answer | {peer_rate:,.0f} | "
        f"{assign_rate / peer_rate:.2f} of it | >= 0.5 |",
        f"| transport floor: parse, `len` only, packed answer | {floor_rate:,.0f} | "
        f"{assign_rate / floor_rate:.2f} of it | (reference) |",
        f"| growthbook SDK in process | {gb_rate:,.0f} | {assign_rate / gb_rate:.1f}x it "
        "| >= 20x |",
        f"| Ensayo `AssignBatch`, ragged ids (`user-<n>`, n < 2^32) "
        f"| {ragged_rate:,.0f} | {ragged_rate / assign_rate:.2f} of the UUID rate | |",
        f"| bare gRPC server reading the same ragged ids | {ragged_peer_rate:,.0f} | "
        f"{ragged_rate / ragged_peer_rate:.2f} of it | |",
        "",
        "UUIDs (and any ids of one width in ASCII) never become Python strings: "
        "`ensayo.protowire` reads them from the request bytes as an `(n, width)` byte matrix "
        "that the hash walks column by column. Ids of several lengths take the parsed path, "
        "which pays for a Python string per id like any Python handler.",
        "",
        f"Where one batch of {BATCH:,} ids spends its time in the server (measured in process, "
        "best of 3):",
        "",
        "| stage | ms |",
        "|---|---:|",
        *(f"| {name} | {ms:.1f} |" for name, ms in stages),
        "",
    ]
    text = "\n".join(lines)
    print(text)
    return text


def _growthbook_version() -> str:
    return version("growthbook")


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--serve-peer":
        _serve_peer(int(sys.argv[2]))
    elif len(sys.argv) in (3, 4) and sys.argv[1] == "--serve-raw":
        _serve_raw(*(int(a) for a in sys.argv[2:]))
    else:
        main()
