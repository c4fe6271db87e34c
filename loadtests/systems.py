"""What the bench measures, started once for the whole run: the floors, the reference server
on each bus (or a `--target`), with the tenants and workflows each measurement uses."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import uuid
from dataclasses import dataclass, field
from typing import Any

from harness.cluster import ReferenceCluster
from harness.services import Service, nats_service, postgres_service
from harness.targets import Target, load_targets
from harness.world import TenantWorld

from .measure import Endpoint
from .procs import Child

SECTIONS = ("floors", "memory", "nats")
SERVER_SETTINGS = {
    "log_level": "WARNING",  # INFO logs every stream opened: noise at 5,000 connections
    "max_streams_per_tenant": 100_000,
    "idle_timeout": 3600,
    "keepalive_interval": 15,
}


@dataclass(frozen=True, slots=True)
class Sizes:
    window: float  # seconds of each peak-rate run
    latency_window: float  # seconds of each fixed-rate run
    repeats: int  # rounds of the peak and fan-out runs (the median is kept)
    concurrency: int  # calls in flight in peak-rate runs
    streams: int  # workflows (one subscriber each) in end-to-end runs
    fanout_subscribers: int
    fanout_events: int  # kept under the subscriber buffer (1,024)
    idle_connections: int
    idle_workflows: int
    stall_seconds: float
    batch: int = 50  # events per StreamTaskDataBatch call in the batched runs
    batch_concurrency: int = 8  # batch calls in flight in batched peak runs


QUICK = Sizes(
    window=3,
    latency_window=2,
    repeats=1,
    concurrency=32,
    streams=16,
    fanout_subscribers=1000,
    fanout_events=80,
    idle_connections=2000,
    idle_workflows=100,
    stall_seconds=3,
)
FULL = Sizes(
    window=15,
    latency_window=10,
    repeats=3,
    concurrency=32,
    streams=16,
    fanout_subscribers=1000,
    fanout_events=200,
    idle_connections=5000,
    idle_workflows=500,
    stall_seconds=10,
)


@dataclass(slots=True)
class System:
    """A floor or a server under test, and what each measurement needs of it."""

    name: str
    label: str
    e2e: Endpoint | None = None
    batch_e2e: Endpoint | None = None  # where batched peak runs publish (and subscribe)
    fanout: Endpoint | None = None
    idle_urls: list[str] = field(default_factory=list)
    idle_token: str | None = None
    sse_floor_url: str | None = None  # the SSE floor drives its own fan-out
    pid: int | None = None
    results: dict[str, Any] = field(default_factory=dict)


async def provision(
    world: TenantWorld, grpc: str, pid: int | None, sizes: Sizes, name: str, label: str, idle: bool
) -> System:
    """Workflows (each with a task) for the runs, made by the target's own provisioner."""
    gate = asyncio.Semaphore(8)

    async def pair() -> tuple[str, str]:
        async with gate:
            workflow = await world.workflow(kind="bench")
            return workflow, await world.task(workflow, kind="bench")

    async def workflow() -> str:
        async with gate:
            return await world.workflow(kind="bench-idle")

    pairs = await asyncio.gather(*(pair() for _ in range(sizes.streams + 1)))
    idle_ids = await asyncio.gather(
        *(workflow() for _ in range(sizes.idle_workflows if idle else 0))
    )
    token, user = world.worker.token, world.user.token
    streams, fan = list(pairs[:-1]), pairs[-1]
    e2e = Endpoint(grpc, token, streams, [world.workflow_url(w) for w, _ in streams], user, pid)
    return System(
        name,
        label,
        pid=pid,
        idle_token=user,
        e2e=e2e,
        batch_e2e=e2e,
        fanout=Endpoint(grpc, token, [fan], [world.workflow_url(fan[0])], user, pid),
        idle_urls=[world.workflow_url(w) for w in idle_ids] if idle else [],
    )


async def start_systems(
    stack: contextlib.AsyncExitStack, opts: argparse.Namespace, sizes: Sizes
) -> tuple[list[System], list[System], str | None]:
    """(floors, servers, NATS URL of the floor), all running until `stack` closes."""
    sections = set(opts.sections)
    floors: list[System] = []
    servers: list[System] = []
    nats: Service | None = None
    if sections & {"floors", "nats"} and not opts.target:
        nats = await nats_service(opts.nats_url)
        stack.push_async_callback(nats.stop)
    if "floors" in sections:
        ack = await stack.enter_async_context(Child("loadtests.floors", "grpc-ack"))
        address = await ack.start()
        streams = [(str(uuid.uuid4()), str(uuid.uuid4())) for _ in range(sizes.streams)]
        floors.append(
            System(
                "grpc_ack",
                "floor: bare gRPC ack",
                pid=ack.pid,
                e2e=Endpoint(address, streams=streams, pid=ack.pid),
            )
        )
        batch = await stack.enter_async_context(Child("loadtests.floors", "batch"))
        where = await batch.start()
        pairs = [(str(uuid.uuid4()), str(uuid.uuid4())) for _ in range(sizes.streams)]
        urls = [f"{where['http']}/stream/{workflow}" for workflow, _ in pairs]
        floors.append(
            System(
                "batch",
                "floor: bare batched gRPC + SSE",
                pid=batch.pid,
                batch_e2e=Endpoint(where["grpc"], streams=pairs, sse_urls=urls, pid=batch.pid),
            )
        )
        sse = await stack.enter_async_context(Child("loadtests.floors", "sse"))
        url = await sse.start()
        floors.append(
            System(
                "sse_writer",
                "floor: bare SSE writer",
                pid=sse.pid,
                sse_floor_url=url,
                idle_urls=[f"{url}/sse"],
            )
        )
    if opts.target:
        target = _pick_target(opts.target, opts.target_name)
        servers.append(
            await _server(stack, target, opts.server_pid, sizes, "target", f"target {target.name}")
        )
        return floors, servers, None
    wanted = [bus for bus in ("memory", "nats") if bus in sections]
    if "memory" in wanted and getattr(opts, "loop_trial", None):
        wanted.append("memory_loop")  # the in-memory server again, on the other event loop
    if wanted:
        postgres = await postgres_service(None)
        stack.push_async_callback(postgres.stop)
    loop = getattr(opts, "event_loop", None)
    for bus in wanted:
        nats_url = nats.url if bus == "nats" and nats is not None else None
        settings = dict(SERVER_SETTINGS)
        if loop:
            settings["event_loop"] = loop
        if bus == "memory_loop":
            settings["event_loop"] = opts.loop_trial
        cluster = await stack.enter_async_context(
            ReferenceCluster(
                instances=1,
                nats=nats_url is not None,
                nats_url=nats_url,
                database_url=postgres.url,
                settings=settings,
            )
        )
        label = {
            "memory": "reference, in-memory bus",
            "nats": "reference, NATS JetStream",
            "memory_loop": f"reference, in-memory bus, {settings.get('event_loop')} loop",
        }[bus]
        servers.append(
            await _server(stack, cluster.target(), cluster.instances[0].pid, sizes, bus, label)
        )
    return floors, servers, nats.url if nats is not None and "floors" in sections else None


async def _server(
    stack: contextlib.AsyncExitStack,
    target: Target,
    pid: int | None,
    sizes: Sizes,
    name: str,
    label: str,
) -> System:
    world = await TenantWorld.for_target(target)
    stack.push_async_callback(world.close)
    # RSS is measured only where the process is known, and on one bus (it is per connection).
    idle = pid is not None and name == "memory"
    return await provision(world, target.grpc_address, pid, sizes, name, label, idle)


def _pick_target(path: str, name: str | None) -> Target:
    for target in load_targets(path):
        if name is None or target.name == name:
            return target
    raise SystemExit(f"no target named {name!r} in {path}")
