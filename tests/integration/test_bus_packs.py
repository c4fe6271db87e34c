"""Packed JetStream messages end to end: a batch of one stream travels as few messages, and a
cursor inside a pack resumes on another instance with no gap and no duplicate."""

from __future__ import annotations

import uuid
from dataclasses import replace

import pytest
from nats.js import JetStreamContext

from reference_server import bus_packs
from reference_server.bus_packs import PACK
from reference_server.events import workflow_key
from tests.integration import test_bus_nats as base
from tests.integration.test_bus_nats import (
    BusFactory,
    event,
    eventually,
    nothing_more,
    payloads,
    receive,
)

broker, stream_name = base.broker, base.stream_name
make_bus, js_admin = base.make_bus, base.js_admin


@pytest.fixture(autouse=True, params=["remembered", "parsed"])
def parsing(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Buses in one process share what they published (`bus_packs.remember`); "parsed" turns that
    off, so every message is read back from its bytes as another instance would."""
    if request.param == "parsed":
        monkeypatch.setattr(bus_packs, "_CACHED_BODY", -1)
        monkeypatch.setattr(bus_packs, "_items", {})


async def stored(js_admin: JetStreamContext, stream_name: str) -> int:
    return (await js_admin.stream_info(stream_name)).state.messages


async def test_a_batch_of_one_stream_travels_in_packs(
    make_bus: BusFactory, js_admin: JetStreamContext, stream_name: str
) -> None:
    a, b = await make_bus(), await make_bus()
    wf, other = str(uuid.uuid4()), str(uuid.uuid4())
    live = await b.subscribe([workflow_key(wf)])
    batch = [event(wf, i) for i in range(PACK + 10)]
    await a.publish_many(batch)
    assert await stored(js_admin, stream_name) == 2  # one full pack and the rest
    got = await receive(live, len(batch))
    assert payloads(got) == list(range(len(batch)))
    cursors = [d.cursor for d in got]
    assert cursors == sorted(set(cursors))
    # Runs of another stream in between start new messages; order holds across them.
    await a.publish_many([event(wf, 100), event(other, 0), event(wf, 101), event(wf, 102)])
    assert await stored(js_admin, stream_name) == 5
    more = await receive(live, 3)
    assert payloads(more) == [100, 101, 102] and more[0].cursor > cursors[-1]
    await nothing_more(live)


async def test_a_pack_never_exceeds_the_max_payload(
    make_bus: BusFactory, js_admin: JetStreamContext, stream_name: str
) -> None:
    bus = await make_bus()
    wf = str(uuid.uuid4())
    big = [replace(event(wf, i), payload="x" * 200_000) for i in range(12)]  # 2.4 MB
    await bus.publish_many(big)
    assert await stored(js_admin, stream_name) >= 3
    sub = await bus.subscribe([workflow_key(wf)], from_start=True)
    assert payloads(sub.replay) == list(range(12))


async def test_resume_inside_a_pack_on_another_instance(make_bus: BusFactory) -> None:
    a, b = await make_bus(), await make_bus()
    wf = str(uuid.uuid4())
    first = await a.subscribe([workflow_key(wf)])
    await a.publish_many([event(wf, i) for i in range(PACK + 8)])
    got = await receive(first, PACK + 8)
    for index in (0, 10, PACK - 1, PACK, PACK + 7):
        resumed = await b.subscribe([workflow_key(wf)], after=got[index].cursor)
        assert not resumed.gap
        assert payloads(resumed.replay) == list(range(index + 1, PACK + 8))
        assert [d.cursor for d in resumed.replay] == [d.cursor for d in got[index + 1 :]]
        resumed.close()
    # Resumed inside a pack, then live: the rest of the pack once, then what follows.
    resumed = await b.subscribe([workflow_key(wf)], after=got[5].cursor)
    await a.publish_many([event(wf, 100), event(wf, 101)])
    await a.publish(event(wf, 102))
    live = await receive(resumed, 3)
    assert payloads(resumed.replay + live) == [*range(6, PACK + 8), 100, 101, 102]
    await nothing_more(resumed)
    # A member of the shared live consumer whose streams grow moves to its own consumer,
    # started inside the pack it was reading: nothing lost, nothing repeated.
    watcher = await b.subscribe([workflow_key(wf)])
    await a.publish_many([event(wf, 200), event(wf, 201)])
    assert payloads(await receive(watcher, 2)) == [200, 201]
    child = str(uuid.uuid4())
    await b.add_keys(watcher, [workflow_key(child)])
    await a.publish_many([event(child, 300), event(wf, 301), event(wf, 302)])
    assert payloads(await receive(watcher, 3)) == [300, 301, 302]
    await nothing_more(watcher)


async def test_a_cursor_inside_an_expired_pack_yields_gap(
    make_bus: BusFactory, js_admin: JetStreamContext, stream_name: str
) -> None:
    bus = await make_bus(nats_max_age=1.0)
    wf = str(uuid.uuid4())
    await bus.publish_many([event(wf, i) for i in range(5)])
    seen = await bus.subscribe([workflow_key(wf)], from_start=True)
    inside, last = seen.replay[1].cursor, seen.replay[-1].cursor
    seen.close()

    async def expired() -> bool:
        return await stored(js_admin, stream_name) == 0

    await eventually(expired, within=10.0)
    await bus.publish_many([event(wf, 5), event(wf, 6)])
    lost = await bus.subscribe([workflow_key(wf)], after=inside)
    assert lost.gap and payloads(lost.replay) == [5, 6]
    # The pack's last cursor lost nothing: the stream goes on right after it.
    whole = await bus.subscribe([workflow_key(wf)], after=last)
    assert not whole.gap and payloads(whole.replay) == [5, 6]
