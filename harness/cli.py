"""`python -m harness`: watch a stream (`tail`) or send events (`publish`) from a terminal,
against any implementation."""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from .publisher import EVENT_TYPES, Publisher
from .sse_client import SSEStream, StreamClosed


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m harness", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    tail = commands.add_parser("tail", help="print the events of an SSE stream as they arrive")
    tail.add_argument("url", help="full stream URL")
    tail.add_argument("--token", help="bearer token (sent in the Authorization header)")
    tail.add_argument("--last-event-id", help="resume after this id")
    tail.add_argument("--json", action="store_true", help="one JSON object per event")
    tail.add_argument("--count", type=int, default=0, help="stop after N events (0 = never)")
    publish = commands.add_parser("publish", help="send events with StreamTaskData")
    publish.add_argument("payload", nargs="+", help="one event per payload")
    publish.add_argument("--grpc", required=True, help="gRPC address, host:port")
    publish.add_argument("--token", required=True, help="worker token")
    publish.add_argument("--workflow", default="", help="workflow execution id")
    publish.add_argument("--task", default="", help="task execution id")
    publish.add_argument("--type", default="token", choices=sorted(EVENT_TYPES))
    publish.add_argument(
        "--batch", type=int, default=0, metavar="N",
        help="send the payloads in StreamTaskDataBatch calls of up to N events (0 = one call each)",
    )  # fmt: skip
    cluster = commands.add_parser(
        "cluster", help="run PostgreSQL, NATS and N reference servers until Ctrl-C"
    )
    cluster.add_argument("--instances", type=int, default=2, help="server instances (default 2)")
    cluster.add_argument("--no-nats", action="store_true", help="in-memory bus (1 instance only)")
    cluster.add_argument(
        "--nats-nodes", type=int, default=1,
        help="NATS nodes; more than 1 = a JetStream cluster, streams R3 on file (default 1)",
    )  # fmt: skip
    cluster.add_argument("--write-target", metavar="FILE", help="write a target file (TOML)")
    cluster.add_argument(
        "--set", action="append", default=[], metavar="NAME=VALUE",
        help="server setting, e.g. --set idle_timeout=30 (repeatable)",
    )  # fmt: skip
    return parser


async def _tail(args: argparse.Namespace) -> int:
    async with SSEStream.open(args.url, token=args.token, last_event_id=args.last_event_id) as s:
        if s.status != 200:
            print(f"HTTP {s.status}: {s.body_text}", file=sys.stderr)
            return 1
        seen = 0
        while not args.count or seen < args.count:
            try:
                event = await s.next_event(timeout=3600)
            except StreamClosed:
                print("-- stream closed by the server", file=sys.stderr)
                return 0
            seen += 1
            if args.json:
                print(json.dumps({"id": event.id, "event": event.event, "data": event.data}))
            else:
                print(f"[{event.id}] {event.event}: {event.data}")
            sys.stdout.flush()
    return 0


async def _publish(args: argparse.Namespace) -> int:
    async with Publisher(args.grpc, args.token) as pub:
        if args.batch > 0:
            return await _publish_batches(pub, args)
        for payload in args.payload:
            ack = await pub.send(args.type, payload, workflow_id=args.workflow, task_id=args.task)
            print(f"sent {args.type} {payload!r}: acknowledged={ack}")
    return 0


async def _publish_batches(pub: Publisher, args: argparse.Namespace) -> int:
    """`--batch N`: exit 1 when the server refused any event (each refusal is printed)."""
    refused = 0
    for start in range(0, len(args.payload), args.batch):
        chunk = args.payload[start : start + args.batch]
        answer = await pub.batch(
            [pub.request(args.type, p, workflow_id=args.workflow, task_id=args.task) for p in chunk]
        )
        print(f"sent a batch of {len(chunk)} {args.type} events: accepted={answer.accepted}")
        for index, code, message in answer.rejected:
            print(f"  rejected #{start + index} {chunk[index]!r}: {code} {message}")
        refused += len(answer.rejected)
    return 1 if refused else 0


async def _cluster(args: argparse.Namespace) -> int:
    from .cluster import ReferenceCluster
    from .targets import write_target_file

    settings = dict(item.split("=", 1) for item in args.set)
    async with ReferenceCluster(
        instances=args.instances, nats=not args.no_nats, nats_nodes=args.nats_nodes,
        settings=settings,
    ) as cluster:  # fmt: skip
        assert cluster.postgres is not None
        print(f"postgres  {cluster.postgres.url}")
        if cluster.nats_cluster is not None:
            for node in cluster.nats_cluster.nodes:
                print(f"nats n{node.index}   {node.url} (cluster port {node.route_url})")
        elif cluster.nats is not None:
            print(f"nats      {cluster.nats.url}")
        for instance in cluster.instances:
            print(f"{instance.name}  http={instance.http_url} grpc={instance.grpc_address}")
        print(f"admin token: {cluster.admin_token}")
        if args.write_target:
            await asyncio.to_thread(write_target_file, Path(args.write_target), [cluster.target()])
            print(f"target file: {args.write_target}")
        print(f"ready in {cluster.startup_seconds:.1f}s; Ctrl-C stops everything", flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    runners = {"tail": _tail, "publish": _publish, "cluster": _cluster}
    runner = runners[args.command]
    try:
        return asyncio.run(runner(args))
    except KeyboardInterrupt:
        return 130
    except Exception as error:  # a terminal tool: say what failed, no traceback
        print(f"error: {error}", file=sys.stderr)
        return 1
