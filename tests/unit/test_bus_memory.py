"""The in-memory bus (seed phase 3): fan-out, replay ring, gaps, eviction, cleanup."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from reference_server.bus import Delivery, End, SubscriberEvicted, TokenRevoked
from reference_server.bus_memory import InMemoryBus
from reference_server.events import StreamEventType, TaskStreamEvent, workflow_key

WF = "11111111-1111-1111-1111-111111111111"
KEY = workflow_key(WF)


def event(n: int, workflow: str = WF) -> TaskStreamEvent:
    return TaskStreamEvent("task", workflow, n, StreamEventType.TOKEN, f"p{n}", 0)


def payloads(deliveries: list) -> list[str]:  # type: ignore[type-arg]
    return [d.item.payload for d in deliveries]


async def test_publish_and_subscribe() -> None:
    bus = InMemoryBus()
    sub = await bus.subscribe([KEY])
    await bus.publish(event(1))
    assert payloads(await sub.next_batch()) == ["p1"]


async def test_no_subscriber_does_not_error() -> None:
    await InMemoryBus().publish(event(1))


async def test_multiple_subscribers_receive_the_same_event() -> None:
    bus = InMemoryBus()
    first, second = await bus.subscribe([KEY]), await bus.subscribe([KEY])
    await bus.publish(event(1))
    one, two = await first.next_batch(), await second.next_batch()
    assert one == two


async def test_closed_subscriber_stops_receiving_and_others_continue() -> None:
    bus = InMemoryBus()
    gone, staying = await bus.subscribe([KEY]), await bus.subscribe([KEY])
    gone.close()
    await bus.publish(event(1))
    assert gone.pending == 0
    assert payloads(await staying.next_batch()) == ["p1"]


async def test_batches_hand_over_everything_queued_in_order() -> None:
    bus = InMemoryBus()
    sub = await bus.subscribe([KEY])
    for n in range(5):
        await bus.publish(event(n))
    batch = await sub.next_batch()
    assert payloads(batch) == [f"p{n}" for n in range(5)]
    assert [d.cursor for d in batch] == sorted(d.cursor for d in batch)


async def test_replay_after_a_cursor_then_live_without_duplicates() -> None:
    bus = InMemoryBus()
    for n in range(4):
        await bus.publish(event(n))
    sub = await bus.subscribe([KEY], after=2)
    await bus.publish(event(4))
    assert payloads(sub.replay) == ["p2", "p3"]
    assert payloads(await sub.next_batch()) == ["p4"]
    assert not sub.gap


async def test_ring_keeps_only_the_newest_and_reports_gaps() -> None:
    bus = InMemoryBus(replay_max_events=2)
    for n in range(5):
        await bus.publish(event(n))
    assert payloads((await bus.subscribe([KEY], from_start=True)).replay) == ["p3", "p4"]
    old = await bus.subscribe([KEY], after=1)
    assert old.gap and payloads(old.replay) == ["p3", "p4"]
    fresh = await bus.subscribe([KEY], after=5)  # cursors start at 1: p4 is cursor 5
    assert not fresh.gap and fresh.replay == []


async def test_ring_ages_out_events() -> None:
    bus = InMemoryBus(replay_max_age=0.05)
    await bus.publish(event(1))
    await asyncio.sleep(0.1)
    sub = await bus.subscribe([KEY], after=0)
    assert sub.gap and sub.replay == []


@pytest.mark.parametrize("cursor", [-1, 10**9])
async def test_unplaceable_cursors_are_gaps(cursor: int) -> None:
    bus = InMemoryBus()
    await bus.publish(event(1))
    sub = await bus.subscribe([KEY], after=cursor)
    assert sub.gap and payloads(sub.replay) == ["p1"]


async def test_slow_subscriber_is_evicted_and_the_other_is_not() -> None:
    bus = InMemoryBus(subscriber_buffer=3)
    slow, fast = await bus.subscribe([KEY]), await bus.subscribe([KEY])
    for n in range(5):
        await bus.publish(event(n))
        await fast.next_batch()
    with pytest.raises(SubscriberEvicted):
        await slow.next_batch()


async def test_multi_key_subscription_and_late_keys() -> None:
    other = "22222222-2222-2222-2222-222222222222"
    bus = InMemoryBus()
    sub = await bus.subscribe([KEY])
    await bus.add_keys(sub, [workflow_key(other)])
    await bus.publish(event(1, other))
    await bus.publish(event(2))
    assert payloads(await sub.next_batch()) == ["p1", "p2"]


async def test_end_markers_travel_in_the_stream() -> None:
    bus = InMemoryBus()
    sub = await bus.subscribe([KEY])
    await bus.publish(event(1))
    await bus.publish_end(KEY, End(WF, "COMPLETED"))
    items = [d.item for d in await sub.next_batch()]
    assert items[1] == End(WF, "COMPLETED")


async def test_cleanup_removes_idle_channels_only() -> None:
    bus = InMemoryBus(replay_max_age=0.05)
    held = await bus.subscribe([KEY])
    await bus.publish(event(1, "33333333-3333-3333-3333-333333333333"))
    await asyncio.sleep(0.1)
    assert bus.cleanup() == 1  # the aged-out channel nobody listens to
    assert bus.channel_count == 1  # the subscribed one stays
    held.close()
    assert bus.cleanup() == 1
    assert bus.channel_count == 0


async def test_notices_reach_listeners() -> None:
    bus = InMemoryBus()
    seen: list[object] = []

    async def listener(notice: object) -> None:
        seen.append(notice)

    bus.on_notice(listener)
    await bus.announce(TokenRevoked("t"))
    assert seen == [TokenRevoked("t")]


class _Recorder:
    """A receiver that takes everything, recording each call's deliveries."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def take(self, delivery: Delivery) -> bool:
        self.calls.append(payloads([delivery]))
        return True

    def take_many(self, deliveries: Sequence[Delivery]) -> bool:
        self.calls.append(payloads(list(deliveries)))
        return True

    def failed(self, error: Exception) -> None:
        pass


async def test_publish_many_hands_each_subscriber_its_share_in_one_call() -> None:
    bus = InMemoryBus()
    other = "22222222-2222-2222-2222-222222222222"
    mine, theirs, both = _Recorder(), _Recorder(), _Recorder()
    for keys, receiver in (
        ([KEY], mine),
        ([workflow_key(other)], theirs),
        ([KEY, workflow_key(other)], both),
    ):
        (await bus.subscribe(keys)).set_receiver(receiver)
    await bus.publish_many([event(1), event(2, other), event(3), event(4, other)])
    assert mine.calls == [["p1", "p3"]]
    assert theirs.calls == [["p2", "p4"]]
    assert both.calls == [["p1", "p2", "p3", "p4"]]


async def test_publish_many_queues_in_order_and_retains_for_resume() -> None:
    bus = InMemoryBus()
    sub = await bus.subscribe([KEY])
    await bus.publish(event(0))
    await bus.publish_many([event(n) for n in range(1, 6)])
    batch = await sub.next_batch()
    assert payloads(batch) == [f"p{n}" for n in range(6)]
    resumed = await bus.subscribe([KEY], after=batch[2].cursor)
    assert payloads(resumed.replay) == ["p3", "p4", "p5"]


async def test_publish_many_evicts_a_subscriber_it_would_overflow() -> None:
    bus = InMemoryBus(subscriber_buffer=3)
    slow, fine = await bus.subscribe([KEY]), await bus.subscribe([KEY])
    fine.set_receiver(_Recorder())
    await bus.publish_many([event(n) for n in range(5)])
    with pytest.raises(SubscriberEvicted):
        await slow.next_batch()
    assert fine.failure is None
