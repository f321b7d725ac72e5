"""Decide over gRPC beside a trivial echo server, and vectorised vs looped scoring.

``python -m bench decide``. Loopback only: a private redis-server, each server in its own
process, one load-generating client process with a few threads; bounded to about a minute.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import platform
import tempfile
import threading
import time
import timeit
from concurrent import futures
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc
import numpy as np

from ensayo.bandits import (
    BIAS,
    BetaParams,
    ExplorationPolicy,
    ExplorationSpec,
    FeatureSpec,
    coefficients,
    featurize,
    linear_prior,
    update_batch,
)
from ensayo.catalog.model import Action, ContactPolicy, Snapshot
from ensayo.cli.local import start_redis
from ensayo.decisioning import engine
from ensayo.decisioning.compiled import compile_snapshot
from ensayo.decisioning.contacts import ContactRequest, ContactState
from ensayo.decisioning.learning import ModelView
from ensayo.decisioning.model import DecisioningSettings, DecisionRecord, ModelKind
from ensayo.events.model import DECISION, Event
from ensayo.events.shipper import EventShipper
from ensayo.serverkit.config import ServerConfig
from ensayo.serverkit.logging import configure
from ensayo.serverkit.protoconv import struct_to_dict
from ensayo.serverkit.server import start_server
from ensayo.state.client import connect
from ensayo.state.contacts import RedisContactStore
from ensayo.state.decisions import new_decision_id
from ensayo.state.events import RedisEventLog
from ensayo.state.snapshots import RedisSnapshotPublisher
from ensayo.v1 import common_pb2
from ensayo.v1 import decisioning_service_pb2 as pb
from services.decisioning.server import create_server

DURATION_S = 5.0
ROUNDS = 2
WARMUP_S = 1.0
CLIENT_THREADS = 8
ACTIONS = 100
FEATURES = 20
CHANNEL = "web"
PAYLOADS = 20_000
"""Distinct requests per run, each for its own unit: at the rates seen here a unit is decided
about once, so the contact policy reserves rather than finds the unit capped."""


def _feature_names() -> list[str]:
    return [f"f{i}" for i in range(FEATURES)]


def _snapshot():
    actions = tuple(
        Action(
            key=f"offer-{i:03d}",
            channel=CHANNEL,
            value=1.0 + i % 7,
            weight=1.0 + (i % 3) / 10,
            priority=1 if i < 2 else 0,
            eligibility={"age": {"$gte": 18}} if i % 4 == 0 else {},
            exclusions=({"country": "XX"},) if i % 5 == 0 else (),
        )
        for i in range(ACTIONS)
    )
    policy = ContactPolicy("web-daily", channel=CHANNEL, max_contacts=3, window_s=86_400)
    return Snapshot(version=1, actions=actions, contact_policies=(policy,))


def _settings():
    return DecisioningSettings(
        model=ModelKind.LINEAR,
        features=FeatureSpec((BIAS, *_feature_names())),
        exploration=ExplorationSpec(ExplorationPolicy.EPSILON_GREEDY, epsilon=0.1),
        ucb_alpha=0.5,
    )


def _request_bytes(i: int) -> bytes:
    unit = common_pb2.Unit(id=f"unit-{i}")
    unit.attributes.update({"age": 30 + i % 40, "country": "ES"})
    context = {name: float((i + j) % 10) / 10 for j, name in enumerate(_feature_names())}
    return pb.DecideRequest(unit=unit, channel=CHANNEL, context=context).SerializeToString()


# --- servers (each in its own process) -----------------------------------------------------


def _serve_decisioning(redis_url: str, ready: Any, stop: Any) -> None:
    env = {
        "ENSAYO_DECISIONING_ADDR": "127.0.0.1:0",
        "ENSAYO_REDIS_URL": redis_url,
        "ENSAYO_LOG_LEVEL": "warning",
    }
    config = ServerConfig.from_env("decisioning", env)
    configure(config.log_level, "json")
    running = create_server(config, settings=_settings(), serve_metrics=False)
    ready.put(running.port)
    stop.wait()
    running.stop(0.5)


def _serve_floor(redis_url: str, ready: Any, stop: Any) -> None:
    """What every Decide must do whatever it decides, and nothing else.

    The same server kit and request; the unit's contact policy settled in Redis with the
    decision record (the same script and arguments as Decide's), a ``$decision`` event with
    the same properties handed to the same shipper, one ranked action answered. No screening,
    features, scores or exploration: the floor under Decide's cost in this design.
    """
    client = connect(redis_url)
    contacts = RedisContactStore(client)
    shipper = EventShipper(RedisEventLog(client))
    compiled = compile_snapshot(_snapshot())
    actions = compiled.channel(CHANNEL)
    chosen = actions.keys[5]
    expected = ContactState((False,) * len(actions.watched), 1)
    candidates = list(actions.keys)
    version = engine.policy_version(1, 1)

    def decide(request: pb.DecideRequest, _context: object) -> pb.DecideResponse:
        unit_id, now = request.unit.id, datetime.now(UTC)
        attributes, context = struct_to_dict(request.unit.attributes), dict(request.context)
        decision_id = new_decision_id(unit_id)
        record = DecisionRecord(
            decision_id, unit_id, now, (chosen,), (1.0, *context.values()), "bench"
        )
        contacts.settle(
            [
                ContactRequest(
                    unit_id,
                    decision_id,
                    CHANNEL,
                    now,
                    actions.policies,
                    actions.watched,
                    1,
                    expected,
                    (chosen,),
                    True,
                    compiled.retention_s,
                    record,
                    604_800,
                )
            ]
        )
        properties = {
            "channel": CHANNEL,
            "placement": "",
            "context": context,
            "candidates": candidates,
            "chosen": [
                {"action_key": chosen, "propensity": 0.9, "score": 1.5, "expected_value": 2.0}
            ],
            "policy_version": version,
            "snapshot_version": 1,
            "model_version": 1,
            "holdout": False,
            "holdout_key": "",
            "max_actions": 1,
            "model": "linear",
            "exploration": "epsilon_greedy",
            "propensity_exact": bool(attributes),
        }
        shipper.submit(
            [
                Event(
                    decision_id,
                    unit_id,
                    DECISION,
                    now,
                    decision_id=decision_id,
                    probability=0.9,
                    properties=properties,
                )
            ]
        )
        response = pb.DecideResponse(decision_id=decision_id, policy_version=version)
        response.actions.add(action_key=chosen, score=1.5, propensity=0.9, expected_value=2.0)
        return response

    handler = grpc.method_handlers_generic_handler(
        "ensayo.v1.DecisioningService",
        {
            "Decide": grpc.unary_unary_rpc_method_handler(
                decide,
                request_deserializer=pb.DecideRequest.FromString,
                response_serializer=pb.DecideResponse.SerializeToString,
            )
        },
    )

    _serve_with_kit(handler, ready, stop)
    shipper.close()


def _serve_with_kit(handler: grpc.GenericRpcHandler, ready: Any, stop: Any) -> None:
    """Serve ``handler`` behind decisioning's server kit (interceptor, auth, metrics, health)."""
    config = ServerConfig.from_env(
        "decisioning", {"ENSAYO_DECISIONING_ADDR": "127.0.0.1:0", "ENSAYO_LOG_LEVEL": "warning"}
    )
    configure(config.log_level, "json")

    def register(server: grpc.Server) -> list[str]:
        server.add_generic_rpc_handlers((handler,))
        return []

    running = start_server(config, register, serve_metrics=False)
    ready.put(running.port)
    stop.wait()
    running.stop(0.5)


def _echo(request: bytes, _context: object) -> bytes:
    return request


def _serve_echo(chassis: bool, ready: Any, stop: Any) -> None:
    handler = grpc.method_handlers_generic_handler(
        "bench.Echo",
        {"Echo": grpc.unary_unary_rpc_method_handler(_echo)},
    )
    if chassis:
        _serve_with_kit(handler, ready, stop)
        return
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=16))
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    ready.put(port)
    stop.wait()
    server.stop(0.5)


# --- load ----------------------------------------------------------------------------------


def _load(port: int, method: str, first_unit: int, results: Any) -> None:
    payloads = [_request_bytes(first_unit + i) for i in range(PAYLOADS)]
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    call = channel.unary_unary(method)
    for p in payloads[:20]:
        call(p, timeout=10)
    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()
    start = time.perf_counter()
    measure_from = start + WARMUP_S
    end = measure_from + DURATION_S

    def worker(offset: int) -> None:
        i = offset
        local: list[float] = []
        while True:
            t0 = time.perf_counter()
            if t0 >= end:
                break
            try:
                call(payloads[i % len(payloads)], timeout=10)
            except grpc.RpcError:
                with lock:
                    errors[0] += 1
            t1 = time.perf_counter()
            if t0 >= measure_from:
                local.append(t1 - t0)
            i += CLIENT_THREADS
        with lock:
            latencies.extend(local)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(CLIENT_THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    channel.close()
    lat = np.sort(np.array(latencies))
    results.put(
        {
            "rps": lat.size / DURATION_S,
            "p50_ms": float(np.percentile(lat, 50) * 1000),
            "p99_ms": float(np.percentile(lat, 99) * 1000),
            "errors": errors[0],
        }
    )


def _cpu_seconds(pid: int | None) -> float:
    """User + system CPU seconds of a process (Linux ``/proc``; NaN elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _measure(
    ctx: Any, target: Any, args: tuple[Any, ...], method: str, first_unit: int = 0
) -> dict[str, float]:
    ready, stop = ctx.Queue(), ctx.Event()
    server = ctx.Process(target=target, args=(*args, ready, stop), daemon=True)
    server.start()
    try:
        port = ready.get(timeout=60)
        results = ctx.Queue()
        client = ctx.Process(target=_load, args=(port, method, first_unit, results), daemon=True)
        before = _cpu_seconds(server.pid)
        client.start()
        out: dict[str, float] = results.get(timeout=120)
        used = _cpu_seconds(server.pid) - before
        # Requests during warm-up and measurement, at the measured rate (an approximation).
        out["cpu_ms"] = used / max(out["rps"] * (WARMUP_S + DURATION_S), 1.0) * 1000
        client.join(30)
        return out
    finally:
        stop.set()
        server.join(30)
        if server.is_alive():
            server.kill()


# --- in-process scoring --------------------------------------------------------------------


def _scoring() -> dict[str, float]:
    """Score 100 actions for one context: the engine's one call vs a loop over actions."""
    settings = _settings()
    actions = compile_snapshot(_snapshot()).channel(CHANNEL)
    rng = np.random.default_rng(0)
    d = len(settings.features)
    observations = 2000
    model = update_batch(
        linear_prior(ACTIONS, d, settings.ridge),
        rng.integers(0, ACTIONS, observations),
        rng.random((observations, d)),
        rng.random(observations),
    )

    view = ModelView(BetaParams(np.ones(ACTIONS), np.ones(ACTIONS)), model, coefficients(model), 1)
    context = {name: float(j) / 10 for j, name in enumerate(_feature_names())}
    lever = np.ones(ACTIONS)
    x = featurize(context, {}, settings.features)[None, :]

    def vectorised() -> np.ndarray:
        return engine.score_actions(actions, view, lever, settings, x, 1).score

    def looped() -> np.ndarray:
        out = np.empty(ACTIONS)
        v = x[0]
        theta = view.theta
        for a in range(ACTIONS):  # the same formula and cached θ, one action at a time
            bonus = settings.ucb_alpha * np.sqrt(max(float(v @ model.a_inv[a] @ v), 0.0))
            out[a] = (float(v @ theta[a]) + bonus) * actions.values[a] * actions.weights[a]
        return out

    np.testing.assert_allclose(vectorised()[0], looped(), rtol=1e-9)
    # Many short repeats, interleaved, best of each: the minimum filters out preemption by
    # other processes on a shared machine.
    t_vec = t_loop = float("inf")
    for _ in range(30):
        t_vec = min(t_vec, timeit.timeit(vectorised, number=50) / 50)
        t_loop = min(t_loop, timeit.timeit(looped, number=5) / 5)
    return {"vectorised_us": t_vec * 1e6, "loop_us": t_loop * 1e6}


def main() -> str:
    ctx = mp.get_context("spawn")
    workdir = Path(tempfile.mkdtemp(prefix="bench-decide-"))
    redis_process, redis_url = start_redis(workdir)
    try:
        RedisSnapshotPublisher(connect(redis_url)).publish(_snapshot())
        runs: dict[str, list[dict[str, float]]] = {
            k: [] for k in ("echo", "chassis", "floor", "decide")
        }
        decide_method = "/ensayo.v1.DecisioningService/Decide"
        first_unit = 0
        for _ in range(ROUNDS):  # interleaved, so a noisy neighbour hits every server alike
            runs["echo"].append(_measure(ctx, _serve_echo, (False,), "/bench.Echo/Echo"))
            for name, target in (("decide", _serve_decisioning), ("floor", _serve_floor)):
                runs[name].append(_measure(ctx, target, (redis_url,), decide_method, first_unit))
                first_unit += PAYLOADS  # units never seen, so none is capped
            runs["chassis"].append(_measure(ctx, _serve_echo, (True,), "/bench.Echo/Echo"))
        echo, chassis, floor, decide = (
            max(runs[k], key=lambda r: r["rps"]) for k in ("echo", "chassis", "floor", "decide")
        )
    finally:
        redis_process.terminate()
        redis_process.wait(10)
    scoring = _scoring()
    rows = [
        ("echo (bare grpc)", echo),
        ("echo (Ensayo server kit)", chassis),
        ("Decide floor: contact settle + `$decision` event only", floor),
        ("Decide", decide),
    ]
    lines = [
        "## Decide (`bench/bench_decide.py`)",
        "",
        "Command: `python -m bench decide`. "
        f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
        f"servers and the client ({CLIENT_THREADS} threads, {DURATION_S:g} s after a "
        f"{WARMUP_S:g} s warm-up) in separate processes on loopback, with a private "
        f"redis-server; {ROUNDS} interleaved rounds, the better one of each server shown. "
        "Loopback only, so the numbers are relative; "
        "Decide: "
        f"{ACTIONS} live actions in one channel (a quarter with an eligibility condition, a "
        f"fifth with an exclusion, two in a higher tier), {FEATURES} context features into a "
        "LinUCB model (21 features with the bias), epsilon-greedy exploration, a per-channel "
        "contact policy settled in Redis on every call, the decision record and the "
        "`$decision` event written. The echo servers return the same request bytes; the "
        "server-kit echo adds Ensayo's interceptor (auth, metrics, request ids) like "
        "decisioning has. Log level warning for both server-kit servers.",
        "",
        "| server | requests/s | p50 ms | p99 ms | server CPU ms/request | errors "
        "| rps vs echo | p99 vs echo |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, r in rows:
        lines.append(
            f"| {name} | {r['rps']:.0f} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | "
            f"≈{r['cpu_ms']:.2f} | {int(r['errors'])} | {r['rps'] / echo['rps']:.0%} | "
            f"{r['p99_ms'] / echo['p99_ms']:.2f}x |"
        )
    floor_p99 = floor["p99_ms"] / echo["p99_ms"]
    extra_ms = decide["cpu_ms"] - floor["cpu_ms"]
    lines += [
        "",
        f"Goal: Decide ≥ 40% of the echo's requests/s and p99 ≤ 3x the echo's. "
        f"Against the bare echo: {decide['rps'] / echo['rps']:.0%} and "
        f"{decide['p99_ms'] / echo['p99_ms']:.2f}x; against the server-kit echo: "
        f"{decide['rps'] / chassis['rps']:.0%} and {decide['p99_ms'] / chassis['p99_ms']:.2f}x. "
        f"The floor, which does only what every Decide must (parse, settle the contact policy "
        f"with the decision record, hand over the `$decision` event, answer), reaches "
        f"{floor['rps'] / echo['rps']:.0%} of the bare echo and {floor_p99:.2f}x its p99; "
        f"deciding adds ≈{extra_ms:.2f} ms of server CPU per request on top.",
        "",
        "| scoring 100 actions, one context (LinUCB x value x weight) | µs per call |",
        "|---|---:|",
        f"| one vectorised numpy pass (`engine.score_actions`) | {scoring['vectorised_us']:.1f} |",
        f"| Python loop over actions (same formula) | {scoring['loop_us']:.1f} |",
        f"| speed-up (goal ≥ 10x) | {scoring['loop_us'] / scoring['vectorised_us']:.1f}x |",
        "",
        "Where a Decide's server time goes (perf, py-spy and per-thread CPU of the in-process "
        "path and of a live server under this load, 2026-11-23): one thread calling the use "
        "case decides in ~0.30 ms of CPU, of which ~0.09 ms is the contact round trip (the "
        "loopback `sendall` alone ~0.04 ms: the kernel runs Redis's receive path in the "
        "sender's time) and ~0.03 ms the background `$decision` shipper. In the server a Decide"
        " costs ~0.75-0.85 ms. The floor row is what the mandatory part costs there: ~0.43 ms "
        "(server kit ~0.19, contact settle ~0.15, event ~0.06, parse and answer the rest); "
        "deciding adds ~0.35-0.4 ms, two to three times its single-thread time, because with 16"
        " handler threads, the gRPC poller and the shipper a Decide causes ~27 voluntary "
        "context switches (the echo ~10), perf finds about half the server's samples in the "
        "kernel's scheduler, and py-spy sees the GIL held only ~40% of the time. Tried without "
        "a gain beyond noise: coalescing concurrent Decides into one batch (leader/follower; "
        "batches of ~2), 1 to 16 handler threads. Two or three server processes on one port "
        "(SO_REUSEPORT, the client on 4-6 channels) gave Decide 1.5-1.7x, but the echo 1.2x too"
        " (27-33% of it). Since the floor alone sits at the goal, a Decide meeting it would "
        "have to decide in no time: the goal is out of reach for this design in CPython on this"
        " machine. What could move it: a cheaper Redis hop, compiled decision logic, or Python "
        "without a GIL. ",
        "Numbers move by ±30% between runs on this shared 2-core machine.",
        "",
    ]
    section = "\n".join(lines)
    print(section)
    return section


if __name__ == "__main__":
    main()
