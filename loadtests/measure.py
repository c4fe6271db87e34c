"""One bench measurement each: peak end-to-end rate, latency at an offered rate, fan-out, RSS of
idle connections, and a stalled subscriber under load. They talk to an `Endpoint` (the
reference server, a floor, or any implementation) only through load-generator processes.

Every result says how much of a core each process used (`cpu`: 1.0 = one full core), which
tells what limited the run: the server, or a load generator.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field, replace
from typing import Any

import aiohttp

from .procs import Child, cpu_seconds, rss_kib

Result = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where to publish and where to subscribe. `streams` are (workflow, task) pairs and
    `sse_urls` their stream URLs (same order); `pid` is the server process, when local."""

    grpc: str
    token: str | None = None
    streams: list[tuple[str, str]] = field(default_factory=list)
    sse_urls: list[str] = field(default_factory=list)
    sse_token: str | None = None
    pid: int | None = None


class _ServerCpu:
    def __init__(self, pid: int | None) -> None:
        self._pid = pid
        self._start = cpu_seconds(pid) if pid is not None else 0.0

    def share(self, seconds: float) -> float | None:
        if self._pid is None or seconds <= 0:
            return None
        try:
            return round((cpu_seconds(self._pid) - self._start) / seconds, 2)
        except OSError:
            return None


def _cpu(server: float | None, seconds: float, **generators: Result | None) -> dict[str, float]:
    shares = {"server": server} if server is not None else {}
    for name, result in generators.items():
        if result is not None and seconds > 0 and "cpu_seconds" in result:
            shares[name] = round(result["cpu_seconds"] / seconds, 2)
    return {name: value for name, value in shares.items() if value is not None}


def _publisher(ep: Endpoint, **config: Any) -> Child:
    streams = [list(s) for s in ep.streams] or [["", ""]]
    return Child.loadgen(
        "publish",
        {"grpc": ep.grpc, "token": ep.token, "streams": streams, "max_seconds": 600, **config},
    )


def _subscriber(urls: list[str], token: str | None, **config: Any) -> Child:
    return Child.loadgen("subscribe", {"urls": urls, "token": token, "max_seconds": 600, **config})


async def _publish_and_receive(ep: Endpoint, publish: Result) -> Result:
    """Run one publisher against `ep`, with one subscriber per stream URL when there are any."""
    async with contextlib.AsyncExitStack() as stack:
        sub = None
        if ep.sse_urls:
            sub = await stack.enter_async_context(_subscriber(ep.sse_urls, ep.sse_token))
            await sub.start()
        pub = await stack.enter_async_context(_publisher(ep, **publish))
        await pub.start()
        if sub is not None:
            await sub.send("reset")
        server = _ServerCpu(ep.pid)
        await pub.send("go")
        sent = await pub.result(timeout=float(publish.get("duration", 5)) + 60)
        received = None
        if sub is not None:
            await sub.send(f"wait {sent['sent']}")
            received = await sub.result()
        seconds = float(received["seconds"] if received else sent["seconds"])
        cpu = _cpu(server.share(seconds), seconds, publisher=sent, subscriber=received)
        return {"published": sent, "received": received, "cpu": cpu}


async def peak_rate(ep: Endpoint, duration: float, concurrency: int, batch: int = 1) -> Result:
    """Closed-loop publishing with `concurrency` calls in flight (each of `batch` events): the
    most the target sustains. `events_per_s` is measured at the subscribers (publish → SSE
    receipt), or at the publisher when the endpoint has no streams (the bare gRPC floor)."""
    run = await _publish_and_receive(
        ep, {"mode": "max", "duration": duration, "concurrency": concurrency, "batch": batch}
    )
    side = run["received"] or run["published"]
    return {"events_per_s": side["per_second"], **run}


async def latency_at(ep: Endpoint, rate: float, duration: float) -> Result:
    """Open-loop publishing at `rate` events/s; latency = receipt - publish timestamp (or the
    call's round trip when there are no subscribers)."""
    run = await _publish_and_receive(ep, {"mode": "rate", "rate": rate, "duration": duration})
    side = run["received"] or run["published"]
    latency = side["latency_ms"] if run["received"] else side["call_latency_ms"]
    return {
        "offered_per_s": rate,
        "achieved_per_s": side["per_second"],
        "latency_ms": latency,
        **run,
    }


async def fanout_server(
    ep: Endpoint, url: str, subscribers: int, events: int, concurrency: int = 32
) -> Result:
    """`events` publishes to one workflow with `subscribers` streams open on it: deliveries/s
    from the first receipt to the last (`events` stays under the subscriber buffer, so the
    server drains its backlog instead of evicting)."""
    async with _subscriber([url], ep.sse_token, connections=subscribers, latencies=False) as sub:
        opened = await sub.start()
        # No warm-up publish: its deliveries would still be arriving when counting starts.
        async with _publisher(
            ep, mode="max", events=events, concurrency=concurrency, duration=120, warmup=0
        ) as pub:
            await pub.start()
            await sub.send("reset")
            server = _ServerCpu(ep.pid)
            await pub.send("go")
            sent = await pub.result()
        await sub.send(f"wait {sent['sent'] * opened['open']}")
        received = await sub.result()
    seconds = received["seconds"]
    cpu = _cpu(server.share(seconds), seconds, subscriber=received)
    return _fanout_result(received, opened, sent["sent"], cpu)


async def fanout_floor(http_url: str, pid: int, subscribers: int, events: int) -> Result:
    """The SSE floor's fan-out: it writes `events` frames to every open stream itself."""
    async with _subscriber(
        [f"{http_url}/sse"], None, connections=subscribers, latencies=False
    ) as sub:
        opened = await sub.start()
        await sub.send("reset")
        server = _ServerCpu(pid)
        async with (
            aiohttp.ClientSession() as session,
            session.post(f"{http_url}/fanout?events={events}") as response,
        ):
            response.raise_for_status()
        await sub.send(f"wait {events * opened['open']}")
        received = await sub.result()
    seconds = received["seconds"]
    return _fanout_result(
        received, opened, events, _cpu(server.share(seconds), seconds, subscriber=received)
    )


def _fanout_result(received: Result, opened: Result, events: int, cpu: dict[str, float]) -> Result:
    return {
        "deliveries_per_s": received["per_second"],
        "subscribers": opened["open"],
        "events": events,
        "expected": events * opened["open"],
        "received": received,
        "cpu": cpu,
    }


async def idle_rss(pid: int, urls: list[str], token: str | None, connections: int) -> Result:
    """Server RSS growth per idle SSE connection, with `connections` open over `urls`."""
    before = rss_kib(pid)
    async with _subscriber(
        urls, token, connections=connections, latencies=False, open_concurrency=100
    ) as sub:
        opened = await sub.start(timeout=300)
        await asyncio.sleep(1.0)  # let the server settle (handlers parked, buffers released)
        after = rss_kib(pid)
        await sub.stop()
    count = int(opened["open"])
    return {
        "connections": count,
        "failed": opened["failed"],
        "errors": opened["errors"],
        "rss_before_kib": before,
        "rss_after_kib": after,
        "kib_per_connection": (after - before) / count if count else None,
    }


async def stalled_subscriber(ep: Endpoint, duration: float) -> Result:
    """Full-rate batched publishing to a workflow that has one stalled subscriber (never reads)
    and one healthy one: the server's RSS must stay bounded and the stalled one must be dropped."""
    assert ep.pid is not None
    pid = ep.pid
    one = replace(ep, streams=ep.streams[:1], sse_urls=ep.sse_urls[:1])
    samples: list[int] = [rss_kib(pid)]

    async def sample() -> None:
        while True:
            await asyncio.sleep(0.1)
            samples.append(rss_kib(pid))

    async with Child.loadgen(
        "stall", {"urls": one.sse_urls, "token": ep.sse_token, "max_seconds": 600}
    ) as stall:
        await stall.start()
        sampler = asyncio.create_task(sample())
        try:
            # Batched, the way a busy worker publishes: unary calls fill only loopback's kernel
            # buffers in a short run, so the server's own buffer and its eviction go untested.
            run = await peak_rate(one, duration, concurrency=8, batch=50)
        finally:
            sampler.cancel()
        stalled = await stall.stop()
    return {
        "rss_start_kib": samples[0],
        "rss_peak_kib": max(samples),
        "rss_end_kib": samples[-1],
        "rss_growth_kib": max(samples) - samples[0],
        "stalled_evicted": stalled["evicted"],
        "healthy_received": (run["received"] or {}).get("events"),
        "published": run["published"]["sent"],
        "events_per_s": run["events_per_s"],
        "cpu": run["cpu"],
    }
