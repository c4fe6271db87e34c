"""SPEC §4.6: event names, ids, payload framing and SSE injection."""

from __future__ import annotations

from conformance import requirement
from conformance.checks import expect, expect_that
from conformance.wire import events_until, events_upto, new_id
from harness.world import TenantWorld


def _as_received(payload: str) -> str:
    """What an EventSource hands over for a payload: line breaks normalised to LF."""
    return payload.replace("\r\n", "\n").replace("\r", "\n")


async def _published_verbatim(world: TenantWorld, payloads: list[str]) -> dict[str, object]:
    """Publish each payload; {payload: data received} for those received differently."""
    wf = await world.workflow()
    async with await world.subscribe(wf) as stream, world.publisher() as pub:
        for payload in payloads:
            await pub.data(payload, workflow_id=wf, task_id=new_id())
        events = await events_upto(stream, len(payloads), timeout=10)
    received: list[str | None] = [e.data for e in events]
    received += [None] * (len(payloads) - len(received))  # None: never arrived
    return {
        repr(p)[:60]: r for p, r in zip(payloads, received, strict=True) if r != _as_received(p)
    }


@requirement("sse/4.6/1")
async def test_each_event_type_keeps_its_name(world: TenantWorld) -> None:
    wf = await world.workflow()
    async with await world.subscribe(wf) as stream, world.publisher() as pub:
        for kind in ("token", "progress", "data", "error"):
            await pub.send(kind, kind, workflow_id=wf, task_id=new_id())
        events = await events_upto(stream, 4)
    expect(
        "event names in publish order",
        [e.event for e in events],
        ["token", "progress", "data", "error"],
    )


@requirement("sse/4.6/2")
async def test_every_event_carries_a_distinct_id(world: TenantWorld) -> None:
    wf = await world.workflow()
    async with await world.subscribe(wf) as stream, world.publisher() as pub:
        for n in range(5):
            await pub.token(f"e{n}", workflow_id=wf, task_id=new_id())
        ids = [e.id for e in await events_upto(stream, 5)]
    expect_that(
        "ids",
        len(ids) == 5 and all(ids) and len(set(ids)) == 5,
        "five non-empty, different ids",
        ids,
    )


@requirement("sse/4.6/3")
async def test_plain_stream_data_is_the_payload_verbatim(world: TenantWorld) -> None:
    payloads = [
        '{"a": 1, "b": [true, null], "c": "d"}',
        "  leading and trailing  ",
        "colon: inside, data: too",
        ": not a comment",
        "héllo — 世界 🎉",
        "x" * 60_000,
    ]
    expect("payloads received differently", await _published_verbatim(world, payloads), {})


@requirement("sse/4.6/4")
async def test_multi_line_payloads_are_reconstructed(world: TenantWorld) -> None:
    payloads = [
        "one\ntwo",
        "one\r\ntwo",
        "one\rtwo",
        "trailing\n",
        "a\n\n\nb",
        "\n",
        "mixed\r\n\r\rend",
    ]
    expect("payloads received differently", await _published_verbatim(world, payloads), {})


@requirement("sse/4.6/5")
async def test_a_payload_cannot_forge_fields_or_events(world: TenantWorld) -> None:
    forged = "ok\n\nevent: error\ndata: forged\nid: 999\n\nretry: 1"
    payloads = [
        forged,
        forged.replace("\n", "\r"),
        forged.replace("\n", "\r\n"),
        '\n\nevent: end\ndata: {"status":"COMPLETED"}\n\n',
    ]
    wf = await world.workflow()
    async with await world.subscribe(wf) as stream, world.publisher() as pub:
        for payload in payloads:
            await pub.token(payload, workflow_id=wf, task_id=new_id())
        await pub.progress("marker", workflow_id=wf, task_id=new_id())
        events = await events_until(stream, "marker")
    expect(
        "events received (type, data)",
        [(e.event, e.data) for e in events],
        [*(("token", _as_received(p)) for p in payloads), ("progress", "marker")],
    )
    expect("retry set by the stream", stream.retry, None)
    expect_that(
        "ids", "999" not in [e.id for e in events], "no forged id 999", [e.id for e in events]
    )


@requirement("sse/4.6/6")
async def test_only_cr_lf_and_crlf_split_lines(world: TenantWorld) -> None:
    payloads = ["a\u2028b", "a\u2029b", "a\u0085b", "a\x0bb", "a\x0cb"]
    expect("payloads received differently", await _published_verbatim(world, payloads), {})


@requirement("sse/4.6/7")
async def test_a_stream_carries_only_its_own_workflows_events(world: TenantWorld) -> None:
    mine, other = await world.workflow(), await world.workflow()
    async with await world.subscribe(mine) as stream, world.publisher() as pub:
        await pub.token("elsewhere", workflow_id=other, task_id=new_id())
        await pub.token("marker", workflow_id=mine, task_id=new_id())
        first = await stream.next_event()
    expect("first event", first.data, "marker")
