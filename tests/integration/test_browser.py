"""A real browser (headless Chromium) on the /demo page: EventSource with a stream token,
events rendered, reconnection with Last-Event-ID across a server restart, `end` honoured."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from harness.cluster import ReferenceCluster
from harness.world import TenantWorld
from reference_server.app import Server

pytestmark = pytest.mark.integration


@pytest.fixture
async def page(chromium: Any) -> AsyncIterator[Any]:
    # The page forbids eval (CSP); Playwright needs it for wait_for_function.
    page = await chromium.new_page(bypass_csp=True)
    yield page
    await page.close()


async def _open_demo(page: Any, world: TenantWorld, base: str, wf: str) -> None:
    token = await world.api.stream_token(world.slug, workflow=wf)
    await page.goto(f"{base}/demo#tenant={world.slug}&workflow={wf}&token={token}")
    await page.wait_for_function("document.getElementById('state').dataset.state === 'open'")


async def _text(page: Any, element: str) -> str:
    value: str = await page.eval_on_selector(f"#{element}", "e => e.textContent")
    return value


async def test_published_events_appear_and_end_stops_reconnecting(
    page: Any, world: TenantWorld, server: Server
) -> None:
    wf = await world.workflow()
    task = await world.task(wf)
    await _open_demo(page, world, server.http_url, wf)
    async with world.publisher() as pub:
        for word in ("Hello", ", ", "browser"):
            await pub.token(word, workflow_id=wf, task_id=task)
        await pub.progress("40", workflow_id=wf, task_id=task)
        await pub.data('{"rows": 3}', workflow_id=wf, task_id=task)
        await pub.error("tool failed", workflow_id=wf, task_id=task)
    await page.wait_for_function("document.querySelectorAll('#errors li').length === 1")
    assert await _text(page, "tokens") == "Hello, browser"
    assert await page.eval_on_selector("#progress", "e => e.value") == 40
    assert await _text(page, "data") == '{"rows": 3}'
    assert await _text(page, "errors") == "tool failed"
    assert await _text(page, "state") == "open"  # a task error is not a connection error

    before = (await world.metrics())['flovyn_stream_sse_responses_total{status="200"}']
    await world.api.complete_workflow(world.slug, wf)
    await page.wait_for_function("document.getElementById('state').dataset.state === 'ended'")
    await page.wait_for_timeout(3500)  # longer than EventSource's reconnection delay
    after = (await world.metrics())['flovyn_stream_sse_responses_total{status="200"}']
    assert after == before, "the browser reconnected after `end`"


@pytest.mark.parametrize(
    ("payload", "percent", "shown"),
    [
        ("40", 40, "40%"),
        ("0.25", 25, "25%"),
        ('{"progress": 0.5, "step": "indexing"}', 50, "50%"),
        ('{"progress": 75}', 75, "75%"),
        ("250", 100, "100%"),
    ],
)
async def test_progress_is_a_number_or_json_with_a_progress_field(
    page: Any, world: TenantWorld, server: Server, payload: str, percent: int, shown: str
) -> None:
    wf = await world.workflow()
    task = await world.task(wf)
    await _open_demo(page, world, server.http_url, wf)
    text = "document.getElementById('progress-text').textContent"
    async with world.publisher() as pub:
        await pub.progress(payload, workflow_id=wf, task_id=task)
        await page.wait_for_function(f"{text} === {shown!r}")
        assert await page.eval_on_selector("#progress", "e => e.value") == percent
        await pub.progress("not a number", workflow_id=wf, task_id=task)
        await page.wait_for_function(f"{text} === 'not a number'")
    assert await page.eval_on_selector("#progress", "e => e.value") == percent  # unchanged


@pytest.fixture
async def cluster() -> AsyncIterator[ReferenceCluster]:
    async with ReferenceCluster(instances=2, nats=True, settings={"keepalive_interval": 1}) as c:
        yield c


async def test_browser_resumes_across_a_server_restart_without_loss_or_repeat(
    page: Any, cluster: ReferenceCluster
) -> None:
    a, b = cluster.instances
    world = await TenantWorld.create(a.http_url, a.grpc_address, cluster.admin_token)
    wf = await world.workflow()
    task = str(uuid.uuid4())
    await _open_demo(page, world, a.http_url, wf)
    async with world.publisher(a.grpc_address) as pub_a, world.publisher(b.grpc_address) as pub_b:
        for i in range(3):
            await pub_a.token(f"[{i}]", workflow_id=wf, task_id=task)
        await page.wait_for_function(
            "document.getElementById('tokens').textContent === '[0][1][2]'"
        )
        await a.stop()
        for i in range(3, 6):  # while the browser's instance is down, through the other one
            await pub_b.token(f"[{i}]", workflow_id=wf, task_id=task)
        await a.start()
        await page.wait_for_function("document.getElementById('reconnects').textContent === '1'",
                                     timeout=20_000)  # fmt: skip
    async with world.publisher(a.grpc_address) as pub_a:
        await pub_a.token("[6]", workflow_id=wf, task_id=task)
    expected = "".join(f"[{i}]" for i in range(7))
    await page.wait_for_function(
        f"document.getElementById('tokens').textContent.length >= {len(expected)}"
    )
    await page.wait_for_timeout(300)  # room for a duplicate to show up, if there were one
    assert await _text(page, "tokens") == expected
    await world.close()
