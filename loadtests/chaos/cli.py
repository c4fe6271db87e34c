"""`python -m loadtests.chaos`: run the chaos test and write `chaos.txt`, `chaos.json` and
`chaos.png` to `--out`; exit 1 if an acknowledged event was lost, duplicated or reordered."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

from harness.cluster import ReferenceCluster
from harness.services_postgres import EmbeddedPostgres
from harness.targets import load_targets
from harness.world import TenantWorld

from . import checker, report, schedule
from .faults import FaultInjector
from .load import Endpoints, Producer, Record, Subscriber, drain

STREAM_NAME = "FLOVYN_STREAMS"  # the reference server's default JetStream stream
# What the servers of the embedded cluster run with: acknowledge only what a quorum stored,
# recreate a lost consumer within ~2 s, keep-alives every second (a paused instance shows).
SERVER_SETTINGS = {"publish_ack": "stored", "nats_heartbeat": 1, "keepalive_interval": 1}


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m loadtests.chaos", description=__doc__)
    p.add_argument("--minutes", type=float, default=10.0, help="length of the load (default 10)")
    p.add_argument("--seed", type=int, default=1, help="seed of the fault schedule (default 1)")
    p.add_argument(
        "--target",
        metavar="FILE",
        help="run against a target file (no faults: "
        "inject your own) instead of the embedded cluster",
    )
    p.add_argument("--out", type=Path, default=Path("reports/chaos"), help="output directory")
    p.add_argument("--instances", type=int, default=3, help="server instances (embedded)")
    p.add_argument("--nats-nodes", type=int, default=3, help="NATS nodes (embedded)")
    p.add_argument("--streams", type=int, default=4, help="workflows under load")
    p.add_argument("--producers", type=int, default=2, help="producers per workflow")
    p.add_argument("--rate", type=float, default=10.0, help="events/s per producer")
    p.add_argument("--batch", type=int, default=1, help="events per call (> 1: in batches)")
    p.add_argument("--drain", type=float, default=30.0, help="seconds to wait for stragglers")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    try:
        return asyncio.run(run(args))
    except KeyboardInterrupt:
        return 130


@contextlib.asynccontextmanager
async def _system(args: argparse.Namespace) -> AsyncIterator[tuple[Any, Endpoints, TenantWorld]]:
    """The cluster (None with --target), its endpoints and a fresh tenant on it."""
    if args.target:
        target = load_targets(args.target)[0]
        world = await TenantWorld.for_target(target)
        try:
            yield None, Endpoints(target.http_urls, target.grpc_addresses), world
        finally:
            await world.close()
        return
    async with ReferenceCluster(
        instances=args.instances, nats_nodes=args.nats_nodes, settings=SERVER_SETTINGS
    ) as cluster:
        first = cluster.instances[0]
        world = await TenantWorld.create(first.http_url, first.grpc_address, cluster.admin_token)
        endpoints = Endpoints(
            [i.http_url for i in cluster.instances], [i.grpc_address for i in cluster.instances]
        )
        try:
            yield cluster, endpoints, world
        finally:
            await world.close()


async def run(args: argparse.Namespace) -> int:
    seconds = args.minutes * 60
    args.out.mkdir(parents=True, exist_ok=True)
    async with _system(args) as (cluster, endpoints, world):
        faults: list[schedule.Fault] = []
        if cluster is not None:
            faults = schedule.draw(
                args.seed, seconds, instances=args.instances, nats_nodes=args.nats_nodes
            )
            if not isinstance(cluster.postgres, EmbeddedPostgres):  # someone else's: hands off
                faults = [f for f in faults if f.kind != "postgres-stop"]
        logging.info("%d faults planned over %.0fs (seed %d)", len(faults), seconds, args.seed)
        streams = [await world.workflow(kind="chaos") for _ in range(args.streams)]
        record = Record()
        subscribers = [
            Subscriber(
                f"{wf[:8]}@{i}",
                wf,
                endpoints,
                world.slug,
                world.user.token,
                record,
                start=i,
                stall_after=3.0,
            )
            for wf in streams
            for i in range(len(endpoints.http_urls))
        ]
        stop_subs, stop_load = asyncio.Event(), asyncio.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):  # end early, but check and clean up
            asyncio.get_running_loop().add_signal_handler(sig, stop_load.set)
        sub_tasks = [asyncio.create_task(s.run(stop_subs)) for s in subscribers]
        async with asyncio.timeout(30):
            await asyncio.gather(*(s.connected.wait() for s in subscribers))
        record.t0 = record.t0 + record.now()  # times count from the start of the load
        producers = [
            Producer(
                f"p{n}-{wf[:8]}",
                wf,
                endpoints,
                world.worker.token,
                record,
                rate=args.rate,
                start=n,
                batch=args.batch,
            )
            for wf in streams
            for n in range(args.producers)
        ]
        load = [asyncio.create_task(p.run(stop_load)) for p in producers]
        injector = FaultInjector(cluster, record, STREAM_NAME) if cluster is not None else None
        chaos = asyncio.create_task(injector.run(faults, stop_load)) if injector else None
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await stop_load.wait()
        stop_load.set()
        await asyncio.gather(*load)
        if chaos is not None:
            await chaos
        left = await drain(record, args.drain)
        stop_subs.set()
        await asyncio.gather(*sub_tasks)
    applied = injector.applied if injector is not None else []
    verdict = checker.check(record, applied)
    meta = {
        "minutes": args.minutes, "seed": args.seed, "target": args.target,
        "instances": len(endpoints.http_urls), "nats_nodes": None if args.target else
        args.nats_nodes, "streams": args.streams, "producers_per_stream": args.producers,
        "rate_per_producer": args.rate, "batch": args.batch, "planned_faults": len(faults),
        "applied_faults": len(applied), "missing_after_drain": left,
        "failed_faults": injector.failed if injector is not None else [],
        "server_settings": None if args.target else SERVER_SETTINGS,
    }  # fmt: skip
    text = report.table(verdict)
    (args.out / "chaos.txt").write_text(text + "\n")
    report.write_json(report.document(verdict, meta), args.out / "chaos.json")
    where = (
        "target " + args.target
        if args.target
        else (f"{len(endpoints.http_urls)} instances on {args.nats_nodes} NATS nodes (R3, file)")
    )
    title = f"chaos run, seed {args.seed}, {args.minutes:g} min, {where}, {len(applied)} faults"
    why = report.plot(record, verdict, args.out / "chaos.png", title)
    print(text)
    print(f"\nwritten: {args.out}/chaos.txt, chaos.json" + (f" ({why})" if why else ", chaos.png"))
    return 0 if verdict.ok else 1
