"""``ensayo``: up, serve, apply, get, report, migrate.

Definitions in YAML: one object per document, ``kind`` (``Experiment``, ``Holdout``, ``Layer``,
``Metric``, ``Action``, ``ContactPolicy``), ``spec`` with the protobuf field names in snake_case
and enum values by their short lower-case name (``state: running``, ``kind: conversion``), and
optionally ``expected_version``.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import signal
import sys
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import grpc
import yaml

from ensayo.client.catalog import KINDS, CatalogClient
from ensayo.client.channel import open_channel
from ensayo.serverkit.config import DEFAULT_ADDRS, SERVICES
from ensayo.serverkit.protoconv import from_message, to_message

__all__ = ["Document", "load_documents", "main"]

_APPLY_ORDER = list(KINDS)  # dependencies first: layers, holdouts, metrics, actions...
_SINGULAR = {name.lower(): name for name in KINDS} | {"contact-policy": "ContactPolicy"}
_PLURAL = {
    "experiments": "Experiment",
    "holdouts": "Holdout",
    "layers": "Layer",
    "metrics": "Metric",
    "actions": "Action",
    "contact-policies": "ContactPolicy",
    "contactpolicies": "ContactPolicy",
}


def _addr(env: Mapping[str, str], service: str) -> str:
    return env.get(f"ENSAYO_{service.upper()}_ADDR") or DEFAULT_ADDRS[service]


class Document(NamedTuple):
    """One YAML document to apply, and where it came from (``file: document 3``)."""

    kind: str
    message: Any
    expected_version: int | None
    where: str


def load_documents(text: str, source: str) -> list[Document]:
    """Parse YAML documents into :class:`Document` s, dependencies first.

    Raises ValueError naming the document and field of the first problem (or the YAML error).
    """
    try:
        parsed = list(yaml.safe_load_all(text))
    except yaml.YAMLError as exc:
        raise ValueError(f"{source}: not valid YAML: {exc}") from exc
    out = []
    for index, doc in enumerate(parsed):
        if doc is None:
            continue
        where = f"{source}: document {index + 1}"
        if not isinstance(doc, dict):
            raise ValueError(f"{where}: must be a mapping with a 'kind'")
        kind, body, expected = doc.get("kind"), doc.get("spec"), doc.get("expected_version")
        if kind not in KINDS:
            raise ValueError(f"{where}: kind must be one of {', '.join(KINDS)}, not {kind!r}")
        extra = set(doc) - {"kind", "spec", "expected_version"}
        if extra:
            raise ValueError(f"{where}: unknown top-level keys {sorted(extra)} (use spec:)")
        if not isinstance(body, dict):
            raise ValueError(f"{where}: spec must be a mapping")
        if expected is not None and (isinstance(expected, bool) or not isinstance(expected, int)):
            raise ValueError(f"{where}: expected_version must be an integer")
        message_class = KINDS[kind][0]
        try:
            message = to_message(body, message_class(), strict=True)
        except ValueError as exc:
            raise ValueError(f"{where} ({kind}): {exc}") from exc
        out.append(Document(kind, message, expected, where))
    out.sort(key=lambda item: _APPLY_ORDER.index(item.kind))
    return out


def _print(data: Any, fmt: str) -> None:
    if fmt == "json":
        print(json.dumps(data, indent=2, default=str, ensure_ascii=False))
    else:
        print(yaml.safe_dump(data, sort_keys=False, allow_unicode=True).rstrip())


def _cmd_serve(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    module = importlib.import_module(f"services.{args.service}.server")
    code: int = module.main(env)
    return code


def _cmd_up(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    from ensayo.cli.local import default_workdir, start_platform  # noqa: PLC0415

    workdir = Path(args.workdir).resolve() if args.workdir else default_workdir()
    try:
        platform = start_platform(env, workdir, timeout_s=args.timeout)
    except RuntimeError as exc:
        print(f"ensayo up: {exc}", file=sys.stderr)
        return 1
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    print("Ensayo is up (Ctrl-C stops everything):")
    for service, addr in platform.addrs.items():
        metrics = platform.env[f"ENSAYO_{service.upper()}_METRICS_ADDR"]
        print(f"  {service:<12} grpc {addr:<22} metrics http://{metrics}/metrics")
    print(f"  redis        {platform.env['ENSAYO_REDIS_URL']}")
    print(f"  database     {platform.env['ENSAYO_DATABASE_URL']}")
    print(f"  logs         {workdir / 'logs'}", flush=True)
    try:
        while not stop.wait(0.5):
            for service, process in platform.processes.items():
                if process.poll() is not None:
                    print(
                        f"ensayo up: {service} exited ({process.returncode}); stopping",
                        file=sys.stderr,
                    )
                    stop.set()
    finally:
        print("stopping...", flush=True)
        platform.stop()
    return 0


def _catalog(args: argparse.Namespace, env: Mapping[str, str]) -> CatalogClient:
    channel = open_channel(
        args.catalog or _addr(env, "catalog"), api_key=env.get("ENSAYO_API_KEY", "")
    )
    return CatalogClient(channel, timeout_s=args.timeout)


def _cmd_apply(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    """Apply in dependency order; stop at the first refusal and say what was left undone."""
    docs: list[Document] = []
    for name in args.file:
        text = sys.stdin.read() if name == "-" else Path(name).read_text(encoding="utf-8")
        docs.extend(load_documents(text, name))
    client = _catalog(args, env)
    for done, doc in enumerate(docs):
        try:
            stored = client.apply(doc.kind, doc.message, doc.expected_version)
        except grpc.RpcError as exc:
            name = f"{doc.kind.lower()}/{doc.message.key}"
            print(
                f"ensayo apply: {doc.where} ({name}): {exc.code().name}: {exc.details()}\n"
                f"ensayo apply: {done} applied, {len(docs) - done} not applied (this one and "
                "every document after it)",
                file=sys.stderr,
            )
            return 1
        print(f"{doc.kind.lower()}/{stored.key} applied (version {stored.version})")
    return 0


def _cmd_get(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    client = _catalog(args, env)
    what = args.what.lower()
    if what in ("audit", "audit-records"):
        records = [from_message(r) for r in client.audit(kind=args.key or "")]
        _print(records, args.output)
        return 0
    if what in _PLURAL:
        _print([from_message(m) for m in client.list(_PLURAL[what])], args.output)
        return 0
    if what in _SINGULAR:
        if not args.key:
            print(f"ensayo get {what}: KEY is required", file=sys.stderr)
            return 2
        _print(from_message(client.get(_SINGULAR[what], args.key, args.version)), args.output)
        return 0
    known = ", ".join([*_PLURAL, *_SINGULAR, "audit"])
    print(f"ensayo get: unknown object type {args.what!r} (one of {known})", file=sys.stderr)
    return 2


def _cmd_report(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    from ensayo.cli.report import run_report  # noqa: PLC0415

    return run_report(args, env)


def _cmd_migrate(_args: argparse.Namespace, env: Mapping[str, str]) -> int:
    from ensayo.serverkit.config import DEFAULT_DATABASE_URL  # noqa: PLC0415
    from ensayo.storage import engine  # noqa: PLC0415

    url = env.get("ENSAYO_DATABASE_URL") or DEFAULT_DATABASE_URL
    engine.migrate(engine.create(url))
    print("database is at the newest schema")
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ensayo", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start Redis (if needed) and all four services locally")
    up.add_argument("--workdir", help="where the SQLite file, Redis and logs go (./.ensayo)")
    up.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for SERVING")
    serve = sub.add_parser("serve", help="serve one service in the foreground")
    serve.add_argument("service", choices=SERVICES)
    client_args = argparse.ArgumentParser(add_help=False)
    client_args.add_argument("--catalog", help="catalog address (ENSAYO_CATALOG_ADDR)")
    client_args.add_argument("--timeout", type=float, default=10.0, help="deadline in seconds")
    apply = sub.add_parser("apply", parents=[client_args], help="apply YAML definitions")
    apply.add_argument("-f", "--file", action="append", required=True, help="YAML file or -")
    get = sub.add_parser("get", parents=[client_args], help="read definitions or the audit log")
    get.add_argument("what", help="experiments | experiment KEY | holdouts | ... | audit [KIND]")
    get.add_argument("key", nargs="?", default="")
    get.add_argument("--version", type=int, default=0, help="a past version (0: latest)")
    get.add_argument("-o", "--output", choices=["yaml", "json"], default="yaml")
    report = sub.add_parser("report", parents=[client_args], help="an experiment report")
    report.add_argument("experiment")
    report.add_argument("--format", choices=["table", "json", "html"], default="table")
    report.add_argument(
        "--method", choices=["frequentist", "bayesian", "sequential"], default="frequentist"
    )
    report.add_argument("--cuped", action="store_true")
    report.add_argument("--alpha", type=float)
    report.add_argument(
        "--correction", choices=["none", "holm", "benjamini_hochberg"], default="none"
    )
    report.add_argument("--metric", action="append", default=[], help="metric key (repeat)")
    report.add_argument("--analysis", help="analysis address (ENSAYO_ANALYSIS_ADDR)")
    report.add_argument("-o", "--out", help="write to this file instead of stdout")
    sub.add_parser("migrate", help="upgrade the SQL schema (ENSAYO_DATABASE_URL)")
    return parser


_COMMANDS = {
    "up": _cmd_up,
    "serve": _cmd_serve,
    "apply": _cmd_apply,
    "get": _cmd_get,
    "report": _cmd_report,
    "migrate": _cmd_migrate,
}


def main(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    """Entry point of the ``ensayo`` command."""
    args = _parser().parse_args(argv)
    environ = os.environ if env is None else env
    try:
        return _COMMANDS[args.command](args, environ)
    except grpc.RpcError as exc:
        print(f"ensayo {args.command}: {exc.code().name}: {exc.details()}", file=sys.stderr)
        return 1
    except (ValueError, OSError) as exc:
        print(f"ensayo {args.command}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
