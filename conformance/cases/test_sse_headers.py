"""SPEC §4.5: the response headers of a stream, and streams being live once they arrive."""

from __future__ import annotations

import time

from conformance import requirement
from conformance.checks import Mismatch, expect, expect_all, expect_in, expect_that
from conformance.wire import new_id, sse_answer
from harness.sse_client import SSEStream, StreamClosed
from harness.world import TenantWorld


@requirement("sse/4.5/1")
async def test_content_type_is_event_stream(world: TenantWorld) -> None:
    answer = await sse_answer(world.workflow_url(await world.workflow()), token=world.user.token)
    expect("status", answer.status, 200)
    expect("media type of Content-Type", answer.content_type, "text/event-stream")


@requirement("sse/4.5/2")
async def test_cache_control_forbids_caching(world: TenantWorld) -> None:
    answer = await sse_answer(world.workflow_url(await world.workflow()), token=world.user.token)
    value = answer.header("Cache-Control") or ""
    directives = {d.strip().lower() for d in value.split(",")}
    expect_that("Cache-Control", "no-cache" in directives, "a value with no-cache", value)


@requirement("sse/4.5/3")
async def test_x_accel_buffering_is_off(world: TenantWorld) -> None:
    answer = await sse_answer(world.workflow_url(await world.workflow()), token=world.user.token)
    expect("X-Accel-Buffering", (answer.header("X-Accel-Buffering") or "").lower(), "no")


@requirement("sse/4.5/4")
async def test_the_stream_is_not_compressed(world: TenantWorld) -> None:
    answer = await sse_answer(
        world.workflow_url(await world.workflow()),
        token=world.user.token,
        headers={"Accept-Encoding": "gzip, deflate, br"},
    )
    expect_in("Content-Encoding", answer.header("Content-Encoding"), (None, "identity"))


@requirement("sse/4.5/5")
async def test_headers_are_flushed_at_once(world: TenantWorld) -> None:
    url = world.workflow_url(await world.workflow())
    started = time.monotonic()
    try:
        async with SSEStream.open(url, token=world.user.token, timeout=2.0) as stream:
            status, took = stream.status, stream.opened_at - started
    except TimeoutError:
        raise Mismatch("status line and headers", "within 2 s", "nothing within 2 s") from None
    expect("status", status, 200)
    expect_that("status line and headers", took <= 2.0, "within 2 s", f"after {took:.2f} s")


@requirement("sse/4.5/6")
async def test_stream_is_live_once_its_headers_arrive(world: TenantWorld) -> None:
    received: dict[str, object] = {}
    async with world.publisher() as pub:
        for attempt in range(5):
            wf = await world.workflow()
            async with await world.subscribe(wf) as stream:
                await pub.token("right away", workflow_id=wf, task_id=new_id())
                try:
                    received[f"stream {attempt}"] = (await stream.next_event(timeout=5)).data
                except (TimeoutError, StreamClosed) as error:
                    received[f"stream {attempt}"] = f"nothing ({type(error).__name__})"
    expect_all("event published as soon as the headers arrived", received, "right away")
