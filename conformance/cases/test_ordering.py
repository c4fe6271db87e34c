"""SPEC §4.6: order and exactly-once delivery under a burst deeper than the subscriber buffer."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from conformance import requirement
from conformance.checks import Mismatch, expect_that
from conformance.fixtures import Facts
from conformance.wire import new_id
from harness.publisher import Publisher
from harness.sse_client import SSEStream, StreamClosed
from harness.world import TenantWorld

PRODUCERS = 8
PER_PRODUCER = 25


@dataclass(slots=True)
class Sent:
    payload: str
    sent_at: float
    acked_at: float = float("inf")


async def _produce(pub: Publisher, wf: str, producer: int, sent: list[Sent]) -> None:
    task = new_id()
    for n in range(PER_PRODUCER):
        record = Sent(f"p{producer}-{n}", time.monotonic())
        sent.append(record)
        await pub.token(record.payload, workflow_id=wf, task_id=task)
        record.acked_at = time.monotonic()


async def _read_all(
    world: TenantWorld, wf: str, stream: SSEStream, wanted: int, resume: bool
) -> tuple[list[str], int]:
    """Payloads received until `wanted` arrived; reconnects after an eviction when it may."""
    received: list[str] = []
    reconnects = 0
    while len(received) < wanted:
        try:
            received.append((await stream.next_event(timeout=10)).data)
        except StreamClosed:
            if not resume or reconnects >= 20:
                break
            reconnects += 1
            cursor = stream.last_event_id
            await stream.close()
            stream = await world.subscribe(wf, last_event_id=cursor)
        except TimeoutError:
            break
    await stream.close()
    return received, reconnects


def order_violations(received: list[str], sent: list[Sent]) -> list[str]:
    """Events out of acknowledged order: B received before A although A was acknowledged
    before B was sent (which covers each producer's own sequence)."""
    position = {payload: n for n, payload in enumerate(received)}
    return [
        f"{b.payload} before {a.payload}"
        for a in sent
        for b in sent
        if a.acked_at < b.sent_at
        and a.payload in position
        and b.payload in position
        and position[b.payload] < position[a.payload]
    ]


@requirement("sse/4.6/8")
async def test_a_burst_arrives_once_in_acknowledged_order(world: TenantWorld, facts: Facts) -> None:
    wf = await world.workflow()
    sent: list[Sent] = []
    total = PRODUCERS * PER_PRODUCER
    stream = await world.subscribe(wf)
    async with world.publisher() as pub:
        reader = asyncio.create_task(
            _read_all(world, wf, stream, total, facts.target.has("resume"))
        )
        await asyncio.gather(*(_produce(pub, wf, p, sent) for p in range(PRODUCERS)))
        received, reconnects = await reader
    duplicates = sorted({p for p in received if received.count(p) > 1})
    expect_that(
        "events received once each", not duplicates, "no duplicate", f"duplicated {duplicates[:5]}"
    )
    missing = [s.payload for s in sent if s.payload not in set(received)]
    if missing:
        raise Mismatch(
            f"events of the burst received ({reconnects} reconnects)",
            f"all {total}",
            f"{len(received)}; missing {missing[:5]}",
        )
    wrong = order_violations(received, sent)
    expect_that("order of the burst", not wrong, "acknowledged order", f"{len(wrong)}: {wrong[:5]}")
