"""The NATS buses (JetStream and core) on a real nats-server: two buses stand for two servers."""

from __future__ import annotations

import asyncio
import socket
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import nats
import pytest
from nats.js import JetStreamContext

from harness.services import EmbeddedNats, ServiceUnavailable
from reference_server.bus import (
    Bus,
    Delivery,
    DescendantCreated,
    End,
    Notice,
    SubscriberEvicted,
    Subscription,
    SubscriptionClosed,
    TokenRevoked,
)
from reference_server.bus_nats import open_nats_bus
from reference_server.errors import BusError
from reference_server.events import StreamEventType, TaskStreamEvent, workflow_key
from reference_server.settings import Settings

pytestmark = pytest.mark.integration

BusFactory = Callable[..., Awaitable[Bus]]


@pytest.fixture
async def broker() -> AsyncIterator[EmbeddedNats]:
    svc = EmbeddedNats()
    try:
        await svc.start()
    except ServiceUnavailable as exc:
        pytest.skip(exc.reason)
    try:
        yield svc
    finally:
        await svc.stop()


@pytest.fixture
def stream_name() -> str:
    return f"TEST_{uuid.uuid4().hex[:10].upper()}"


@pytest.fixture
async def make_bus(broker: EmbeddedNats, stream_name: str) -> AsyncIterator[BusFactory]:
    """Started buses on the broker (one stream per test); all closed after the test."""
    buses: list[Bus] = []

    async def make(**overrides: Any) -> Bus:
        values: dict[str, Any] = {
            "nats_url": broker.url, "nats_stream_name": stream_name, **overrides,
        }  # fmt: skip
        bus = open_nats_bus(Settings(**values))
        buses.append(bus)
        await bus.start()
        return bus

    yield make
    for bus in buses:
        await bus.close()


@pytest.fixture
async def js_admin(broker: EmbeddedNats) -> AsyncIterator[JetStreamContext]:
    """A separate client for looking at the stream and its consumers."""
    nc = await nats.connect(broker.url)
    yield nc.jetstream()
    await nc.close()


def event(workflow_id: str, sequence: int) -> TaskStreamEvent:
    return TaskStreamEvent(
        task_execution_id=str(uuid.uuid4()),
        workflow_execution_id=workflow_id,
        sequence=sequence,
        event_type=StreamEventType.TOKEN,
        payload=f"token {sequence}",
        timestamp_ms=1,
    )


async def receive(sub: Subscription, count: int, within: float = 5.0) -> list[Delivery]:
    got: list[Delivery] = []
    async with asyncio.timeout(within):
        while len(got) < count:
            got += await sub.next_batch()
    return got


async def nothing_more(sub: Subscription, within: float = 0.3) -> None:
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(within):
            await sub.next_batch()


async def publish_all(bus: Bus, events: list[TaskStreamEvent], concurrency: int = 20) -> None:
    for i in range(0, len(events), concurrency):
        await asyncio.gather(*(bus.publish(e) for e in events[i : i + concurrency]))


def payloads(deliveries: list[Delivery]) -> list[int]:
    return [d.item.sequence for d in deliveries if isinstance(d.item, TaskStreamEvent)]


async def eventually(check: Callable[[], Awaitable[bool]], within: float = 5.0) -> None:
    deadline = time.monotonic() + within
    while not await check():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


async def test_publish_on_one_instance_reaches_subscribers_on_both(make_bus: BusFactory) -> None:
    a, b = await asyncio.gather(make_bus(), make_bus())  # both create the stream at once
    wf = str(uuid.uuid4())
    on_b = await b.subscribe([workflow_key(wf)])
    on_a = await a.subscribe([workflow_key(wf)])
    await publish_all(a, [event(wf, i) for i in range(5)])
    got_b, got_a = await receive(on_b, 5), await receive(on_a, 5)
    assert payloads(got_b) == payloads(got_a) == [0, 1, 2, 3, 4]
    cursors = [d.cursor for d in got_b]
    assert cursors == sorted(set(cursors)) and [d.cursor for d in got_a] == cursors
    assert {d.stream_key for d in got_b} == {workflow_key(wf)}
    assert on_b.replay == [] and not on_b.gap
    assert a.healthy and b.healthy


async def test_start_updates_the_limits_of_an_existing_stream(
    make_bus: BusFactory, js_admin: JetStreamContext, stream_name: str
) -> None:
    await make_bus(nats_max_age=3600.0)
    await make_bus(nats_max_age=60.0, nats_max_bytes=1 << 20)
    config = (await js_admin.stream_info(stream_name)).config
    assert (config.max_age, config.max_bytes) == (60.0, 1 << 20)
    assert config.subjects == ["flovyn.streams.>"]


async def test_consolidated_subscription_and_add_keys(make_bus: BusFactory) -> None:
    a, b = await make_bus(), await make_bus()
    root, child, late = (str(uuid.uuid4()) for _ in range(3))
    sub = await b.subscribe([workflow_key(root), workflow_key(child)])
    await a.publish(event(root, 1))
    await a.publish(event(child, 2))
    await a.publish(event(late, 3))  # before add_keys and after the last delivery: joins
    assert payloads(await receive(sub, 2)) == [1, 2]
    await b.add_keys(sub, [workflow_key(late)])
    await a.publish(event(late, 4))
    await a.publish(event(root, 5))
    got = await receive(sub, 3)
    assert payloads(got) == [3, 4, 5]
    assert sub.keys == {workflow_key(w) for w in (root, child, late)}
    await nothing_more(sub)


async def test_add_keys_under_load_loses_and_repeats_nothing(make_bus: BusFactory) -> None:
    a, b = await make_bus(), await make_bus(subscriber_buffer=10_000)
    w1, w2 = str(uuid.uuid4()), str(uuid.uuid4())
    sub = await b.subscribe([workflow_key(w1)])
    events = [event(w1 if i % 2 else w2, i) for i in range(400)]
    publisher = asyncio.create_task(publish_all(a, events, concurrency=10))
    await asyncio.sleep(0.02)
    await b.add_keys(sub, [workflow_key(w2)])
    await publisher
    got = await receive(sub, 200 + 1)  # all w1 events and at least one w2 event
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.5):
            while True:
                got += await sub.next_batch()
    cursors = [d.cursor for d in got]
    assert cursors == sorted(set(cursors)), "cursors must strictly increase: no duplicate"
    seen = payloads(got)
    assert [s for s in seen if s % 2] == list(range(1, 400, 2)), "every w1 event, in order"
    w2_seen = [s for s in seen if not s % 2]
    assert w2_seen == list(range(w2_seen[0], 400, 2)), "w2 events from the switch on, no hole"


async def test_resume_on_the_other_instance_without_gap_or_duplicate(
    make_bus: BusFactory,
) -> None:
    a, b = await make_bus(), await make_bus(subscriber_buffer=10_000)
    wf = str(uuid.uuid4())
    first = await a.subscribe([workflow_key(wf)])
    await publish_all(a, [event(wf, i) for i in range(3)])
    cursor = (await receive(first, 3))[-1].cursor
    first.close()
    await publish_all(a, [event(wf, i) for i in range(3, 6)])
    # Publishing continues while the resumed subscription is being set up.
    publisher = asyncio.create_task(publish_all(a, [event(wf, i) for i in range(6, 306)], 10))
    await asyncio.sleep(0.01)
    resumed = await b.subscribe([workflow_key(wf)], after=cursor)
    assert not resumed.gap
    await publisher
    live: list[Delivery] = []
    if payloads(resumed.replay)[-1:] != [305]:
        live = await receive(resumed, 305 - payloads(resumed.replay)[-1])
    got = resumed.replay + live
    assert payloads(got) == list(range(3, 306))
    cursors = [d.cursor for d in got]
    assert cursors == sorted(set(cursors)) and cursors[0] > cursor
    await nothing_more(resumed)


async def test_from_start_replays_everything_retained_then_goes_live(make_bus: BusFactory) -> None:
    a, b = await make_bus(), await make_bus()
    wf, other = str(uuid.uuid4()), str(uuid.uuid4())
    await publish_all(a, [event(wf, 0), event(other, 99), event(wf, 1)])
    sub = await b.subscribe([workflow_key(wf)], from_start=True)
    assert not sub.gap
    assert payloads(sub.replay) == [0, 1]
    await a.publish(event(wf, 2))
    assert payloads(await receive(sub, 1)) == [2]
    assert sub.replay[0].cursor < sub.replay[1].cursor < sub.last_cursor


async def test_cursor_older_than_retention_yields_gap(
    make_bus: BusFactory, js_admin: JetStreamContext, stream_name: str
) -> None:
    bus = await make_bus(nats_max_age=1.0)
    wf = str(uuid.uuid4())
    await publish_all(bus, [event(wf, i) for i in range(3)])

    async def expired() -> bool:
        return (await js_admin.stream_info(stream_name)).state.messages == 0

    await eventually(expired, within=10.0)
    await bus.publish(event(wf, 3))
    sub = await bus.subscribe([workflow_key(wf)], after=1)
    assert sub.gap
    assert payloads(sub.replay) == [3]


async def test_cursor_from_the_future_or_unparseable_yields_gap_and_replay(
    make_bus: BusFactory,
) -> None:
    bus = await make_bus()
    wf = str(uuid.uuid4())
    await publish_all(bus, [event(wf, i) for i in range(3)])
    everything = await bus.subscribe([workflow_key(wf)], from_start=True)
    last = everything.replay[-1].cursor
    everything.close()
    for after in (last + 1000, -1):
        sub = await bus.subscribe([workflow_key(wf)], after=after)
        assert sub.gap
        assert payloads(sub.replay) == [0, 1, 2]
        sub.close()
    placed = await bus.subscribe([workflow_key(wf)], after=last)
    assert not placed.gap and placed.replay == []


async def test_end_markers_travel_with_their_stream(make_bus: BusFactory) -> None:
    a, b = await make_bus(), await make_bus()
    wf = str(uuid.uuid4())
    sub = await b.subscribe([workflow_key(wf)])
    await a.publish(event(wf, 0))
    await a.publish_end(workflow_key(wf), End(wf, "COMPLETED"))
    got = await receive(sub, 2)
    assert got[1].item == End(wf, "COMPLETED")
    assert got[1].cursor > got[0].cursor and got[1].stream_key == workflow_key(wf)
    replayed = await a.subscribe([workflow_key(wf)], from_start=True)
    assert [d.item for d in replayed.replay][1:] == [End(wf, "COMPLETED")]


async def test_notices_reach_every_instance_exactly_once(make_bus: BusFactory) -> None:
    a, b = await make_bus(), await make_bus()
    seen: dict[str, list[Notice]] = {"a": [], "b": []}

    def recorder(name: str) -> Callable[[Notice], Awaitable[None]]:
        async def listener(notice: Notice) -> None:
            seen[name].append(notice)

        return listener

    a.on_notice(recorder("a"))
    b.on_notice(recorder("b"))
    revoked, created = TokenRevoked(str(uuid.uuid4())), DescendantCreated("p", "c")
    await a.announce(revoked)
    await b.announce(created)

    async def arrived() -> bool:
        return len(seen["a"]) >= 2 and len(seen["b"]) >= 2

    await eventually(arrived)
    await asyncio.sleep(0.3)  # bounded wait: no echo arrives late
    assert sorted(map(repr, seen["a"])) == sorted(map(repr, [revoked, created]))
    assert sorted(map(repr, seen["b"])) == sorted(map(repr, [revoked, created]))


async def test_slow_subscriber_is_evicted_without_slowing_others(make_bus: BusFactory) -> None:
    a = await make_bus()
    slow_bus = await make_bus(subscriber_buffer=5)
    wf = str(uuid.uuid4())
    slow = await slow_bus.subscribe([workflow_key(wf)])
    fast = await a.subscribe([workflow_key(wf)])
    await publish_all(a, [event(wf, i) for i in range(20)])
    assert payloads(await receive(fast, 20)) == list(range(20))

    async def evicted() -> bool:
        return slow.pending == 0 and not slow.attached

    await eventually(evicted)
    with pytest.raises(SubscriberEvicted):
        await slow.next_batch()


async def test_closing_a_subscription_releases_its_consumer(
    make_bus: BusFactory, js_admin: JetStreamContext, stream_name: str
) -> None:
    bus = await make_bus()
    sub = await bus.subscribe([workflow_key(str(uuid.uuid4()))])
    assert len(await js_admin.consumers_info(stream_name)) == 1

    async def released() -> bool:
        return len(await js_admin.consumers_info(stream_name)) == 0

    sub.close()
    await eventually(released, within=2.0)


async def test_live_subscribers_of_the_same_streams_share_one_consumer(
    make_bus: BusFactory, js_admin: JetStreamContext, stream_name: str
) -> None:
    """Fan-out: one consumer per instance however many watch; each still gets every event once,
    a resumed subscriber keeps its own, and the last one leaving releases the shared one."""
    bus = await make_bus()
    wf = str(uuid.uuid4())
    watchers = await asyncio.gather(*(bus.subscribe([workflow_key(wf)]) for _ in range(30)))
    assert len(await js_admin.consumers_info(stream_name)) == 1
    await publish_all(bus, [event(wf, i) for i in range(5)])
    received = [await receive(watcher, 5) for watcher in watchers]
    assert all(payloads(got) == list(range(5)) for got in received)
    resumed = await bus.subscribe([workflow_key(wf)], after=received[0][2].cursor)
    assert payloads(resumed.replay) == [3, 4]
    assert len(await js_admin.consumers_info(stream_name)) == 2
    # A member whose streams grow (a late child) moves to a consumer of its own, losing nothing.
    child = str(uuid.uuid4())
    await bus.add_keys(watchers[1], [workflow_key(child)])
    await publish_all(bus, [event(child, 10), event(wf, 11)])
    assert payloads(await receive(watchers[1], 2)) == [10, 11]
    assert payloads(await receive(watchers[2], 1)) == [11]
    for sub in (*watchers, resumed):
        sub.close()

    async def released() -> bool:
        return len(await js_admin.consumers_info(stream_name)) == 0

    await eventually(released, within=2.0)


async def test_core_mode_is_live_only(make_bus: BusFactory) -> None:
    a, b = await make_bus(nats_mode="core"), await make_bus(nats_mode="core")
    wf = str(uuid.uuid4())
    sub = await b.subscribe([workflow_key(wf)])
    twin = await b.subscribe([workflow_key(wf)])
    await publish_all(a, [event(wf, i) for i in range(50)])
    await a.publish_end(workflow_key(wf), End(wf, "FAILED"))
    got = await receive(sub, 51)
    assert payloads(got) == list(range(50)) and got[-1].item == End(wf, "FAILED")
    cursors = [d.cursor for d in got]
    assert cursors == sorted(set(cursors))
    assert [d.cursor for d in await receive(twin, 51)] == cursors
    for kwargs in ({"after": cursors[0]}, {"from_start": True}):
        resumed = await b.subscribe([workflow_key(wf)], **kwargs)
        assert resumed.gap and resumed.replay == []
        resumed.close()
    sub.close()
    await a.publish(event(wf, 50))
    assert payloads(await receive(twin, 1)) == [50]


@pytest.mark.parametrize("mode", ["jetstream", "core"])
async def test_broker_outage_fails_fast_and_recovers(
    make_bus: BusFactory, broker: EmbeddedNats, mode: str
) -> None:
    a, b = await make_bus(nats_mode=mode), await make_bus(nats_mode=mode)
    wf = str(uuid.uuid4())
    sub = await b.subscribe([workflow_key(wf)])
    broker.kill()
    started = time.monotonic()
    with pytest.raises(BusError):
        await a.publish(event(wf, 0))
    assert time.monotonic() - started < 1.5
    with pytest.raises(SubscriptionClosed):
        async with asyncio.timeout(3):
            await sub.next_batch()

    async def down() -> bool:
        return not a.healthy

    await eventually(down, within=2.0)
    started = time.monotonic()
    with pytest.raises(BusError):
        await a.publish(event(wf, 1))
    assert time.monotonic() - started < 0.5, "a known outage fails at once"
    with pytest.raises(BusError):
        await b.subscribe([workflow_key(wf)])

    await broker.start()

    async def up() -> bool:
        return a.healthy and b.healthy

    await eventually(up, within=10.0)
    fresh = await b.subscribe([workflow_key(wf)])
    await a.publish(event(wf, 2))
    assert payloads(await receive(fresh, 1)) == [2]
    # Batches too: their acknowledgements are counted on an inbox that outlives the outage.
    await a.publish_many([event(wf, 3), event(wf, 4)])
    assert payloads(await receive(fresh, 2)) == [3, 4]


async def test_start_without_a_broker_fails_with_bus_error() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    bus = open_nats_bus(Settings(nats_url=f"nats://127.0.0.1:{port}"))
    started = time.monotonic()
    with pytest.raises(BusError):
        await bus.start()
    assert time.monotonic() - started < 8
    assert not bus.healthy
    await bus.close()


@pytest.mark.parametrize("mode", ["jetstream", "core"])
async def test_publish_many_keeps_order_across_streams_and_instances(
    make_bus: BusFactory, mode: str
) -> None:
    a, b = await make_bus(nats_mode=mode), await make_bus(nats_mode=mode)
    one, two = str(uuid.uuid4()), str(uuid.uuid4())
    sub_one, sub_two = (
        await b.subscribe([workflow_key(one)]),
        await b.subscribe([workflow_key(two)]),
    )
    batch = [event(wf, i) for i in range(50) for wf in (one, two)]
    await a.publish_many(batch[:60])
    await a.publish_many(batch[60:])
    await a.publish_many([])
    got_one, got_two = await receive(sub_one, 50), await receive(sub_two, 50)
    assert payloads(got_one) == payloads(got_two) == list(range(50))
    await nothing_more(sub_one)


async def test_publish_many_without_a_stream_is_a_bus_error_then_recovers(
    make_bus: BusFactory, js_admin: JetStreamContext, stream_name: str
) -> None:
    bus = await make_bus()
    wf = str(uuid.uuid4())
    await js_admin.delete_stream(stream_name)  # as a broker restarted without its store
    with pytest.raises(BusError, match="no JetStream stream"):
        await bus.publish_many([event(wf, 0)])

    async def recreated() -> bool:
        try:
            await bus.publish_many([event(wf, 1)])
        except BusError:
            return False
        return True

    await eventually(recreated, within=5.0)
