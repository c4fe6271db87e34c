"""SPEC §4.13 to 4.15: per-tenant stream limits, slow consumers, and releasing subscriptions."""

from __future__ import annotations

import asyncio
import contextlib
import math
import time

from conformance import requirement
from conformance.checks import Band, Mismatch, expect, expect_that, informational
from conformance.fixtures import Facts, WorldFactory
from conformance.wire import metric_samples, metric_sum, new_id, sse_answer
from harness.sse_client import SSEStream
from harness.wire.stalled import StalledReader
from harness.world import TenantWorld

MAX_LIMIT_TESTED = 64
PAYLOAD = "x" * 60_000
GAUGE = "flovyn_stream_subscribers_active"


def _limit(facts: Facts) -> int:
    limit = facts.max_streams_per_tenant
    if limit is None:
        informational("the target file does not declare max_streams_per_tenant")
    if limit > MAX_LIMIT_TESTED:
        informational(
            f"max_streams_per_tenant = {limit}: more streams than this case opens "
            f"(at most {MAX_LIMIT_TESTED}); declare a lower limit on a test deployment"
        )
    return limit


async def _hold(stack: contextlib.AsyncExitStack, world: TenantWorld, n: int) -> list[SSEStream]:
    """`n` open streams of the tenant on its first instance (each must be 200)."""
    wf = await world.workflow()
    streams = []
    for k in range(n):
        stream = await stack.enter_async_context(
            SSEStream.open(world.workflow_url(wf), token=world.user.token)
        )
        expect(f"status of held stream {k + 1} of {n}", stream.status, 200)
        streams.append(stream)
    return streams


@requirement("sse/4.13/1")
async def test_streams_over_the_limit_are_429(world: TenantWorld, facts: Facts) -> None:
    limit = _limit(facts)
    async with contextlib.AsyncExitStack() as stack:
        await _hold(stack, world, limit)
        extra = await sse_answer(world.workflow_url(await world.workflow()), token=world.user.token)
    expect(
        "status and Retry-After of one stream over the limit",
        (extra.status, bool(extra.header("Retry-After"))),
        (429, True),
    )


@requirement("sse/4.13/2")
async def test_the_limit_is_per_tenant(
    world: TenantWorld, other_world: TenantWorld, facts: Facts
) -> None:
    limit = _limit(facts)
    async with contextlib.AsyncExitStack() as stack:
        await _hold(stack, world, limit)
        answer = await sse_answer(
            other_world.workflow_url(await other_world.workflow()), token=other_world.user.token
        )
    expect("status of another tenant's stream", answer.status, 200)


@requirement("sse/4.13/3")
async def test_a_closed_stream_frees_its_slot(world: TenantWorld, facts: Facts) -> None:
    limit = _limit(facts)
    band = Band(0.0, 2.0, 5.0)
    url = world.workflow_url(await world.workflow())
    async with contextlib.AsyncExitStack() as stack:
        streams = await _hold(stack, world, limit)
        await streams[0].close()
        closed = time.monotonic()
        freed: float | None = None
        while time.monotonic() - closed < band.late:
            if (await sse_answer(url, token=world.user.token)).status == 200:
                freed = time.monotonic() - closed
                break
            await asyncio.sleep(0.1)
    band.check_within("a new stream admitted after one closed", freed)


async def _burst_with_stalled_reader(
    world: TenantWorld, events: int
) -> tuple[StalledReader, list[float]]:
    """A stalled raw-socket subscriber, and a healthy one reading along a burst of 60 KB events;
    returns the stalled one (still open) and each event's publish→receipt latency."""
    if not world.http_url.startswith("http://"):
        informational("the stalled subscriber is a raw socket: it needs a plain http:// endpoint")
    wf = await world.workflow()
    stalled = await StalledReader.open(world.workflow_url(wf), world.user.token)
    latencies: list[float] = []
    try:
        expect("status of the stalled subscriber's stream", stalled.status, 200)
        async with await world.subscribe(wf) as healthy, world.publisher() as pub:
            for n in range(events):
                sent = time.monotonic()
                await pub.data(f"{n:06d}{PAYLOAD}", workflow_id=wf, task_id=new_id())
                latencies.append((await healthy.next_event(timeout=10)).received_at - sent)
    except BaseException:
        stalled.close()
        raise
    return stalled, latencies


@requirement("sse/4.14/1")
async def test_a_subscriber_that_stops_reading_is_disconnected(
    world: TenantWorld, facts: Facts
) -> None:
    burst = facts.subscriber_buffer + math.ceil(16 * 1024 * 1024 / len(PAYLOAD))
    stalled, _ = await _burst_with_stalled_reader(world, burst)
    try:
        drained = await stalled.drain(events=burst, event_size=len(PAYLOAD), timeout=15)
    finally:
        stalled.close()
    expect_that(
        "stalled subscriber's connection",
        drained.ended and drained.events < burst,
        f"ended by the server before all {burst} events",
        f"{drained.how} after {drained.events} events",
    )


@requirement("sse/4.14/2")
async def test_a_stalled_subscriber_does_not_slow_the_others(world: TenantWorld) -> None:
    stalled, latencies = await _burst_with_stalled_reader(world, 150)
    stalled.close()
    Band(0.0, 1.0, 5.0).check("slowest delivery to the healthy subscriber", max(latencies))


async def _gauge(base_url: str) -> float:
    value = metric_sum(await metric_samples(base_url), GAUGE)
    if value is None:
        raise Mismatch(f"{GAUGE} on {base_url}/metrics", "exposed", "absent")
    return value


@requirement("sse/4.15/1")
async def test_disconnected_clients_subscription_is_released(
    world: TenantWorld, make_world: WorldFactory, facts: Facts
) -> None:
    streams_total, slack = 16, 8  # slack: streams of concurrent cases on the same instance
    per_tenant = min(streams_total, facts.max_streams_per_tenant or streams_total)
    worlds = [world] + [
        await make_world() for _ in range(math.ceil(streams_total / per_tenant) - 1)
    ]
    base = world.http_url
    band = Band(0.0, 2.0, 5.0)
    async with contextlib.AsyncExitStack() as stack:
        before = await _gauge(base)
        left = streams_total
        for tenant in worlds:
            await _hold(stack, tenant, min(left, per_tenant))
            left -= per_tenant
        opened = await _gauge(base)
    closed = time.monotonic()  # the exit stack closed every client
    expect_that(
        f"{GAUGE} rise with {streams_total} streams open",
        opened - before >= streams_total - slack,
        f"at least +{streams_total - slack}",
        f"{opened - before:+.0f}",
    )
    released: float | None = None
    while time.monotonic() - closed < band.late:
        if await _gauge(base) <= opened - streams_total + slack:
            released = time.monotonic() - closed
            break
        await asyncio.sleep(0.1)
    band.check_within(f"{GAUGE} back down after the clients left", released)
