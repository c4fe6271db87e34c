"""SPEC §7 and §8: discovery, health endpoints and Prometheus metrics."""

from __future__ import annotations

import json

from prometheus_client.parser import text_string_to_metric_families

from conformance import requirement
from conformance.checks import expect, expect_all, expect_that
from conformance.fixtures import Facts
from conformance.wire import http_get, metric_samples, metric_sum, new_id
from harness.world import TenantWorld

FAMILIES = (
    "flovyn_stream_events_published_total",
    "flovyn_stream_events_delivered_total",
    "flovyn_stream_subscribers_active",
)


@requirement("api/7.1/1")
async def test_discovery_document_is_served(facts: Facts) -> None:
    status, _, body = await http_get(facts.target.http_url + "/.well-known/task-streaming")
    expect("status", status, 200)
    try:
        document = json.loads(body)
    except ValueError:
        document = None
    profiles = document.get("profiles") if isinstance(document, dict) else None
    expect_that(
        "discovery document",
        isinstance(profiles, list),
        "a JSON object with a profiles list",
        body[:200],
    )


@requirement("api/7.1/2")
async def test_liveness_and_readiness_answer_200(facts: Facts) -> None:
    statuses: dict[str, object] = {}
    for instance in facts.instances:
        for path in ("/health/live", "/health/ready"):
            statuses[instance.http_url + path] = (await http_get(instance.http_url + path))[0]
    expect_all("status", statuses, 200)


def _missing_families(text: str) -> list[str]:
    names: set[str] = set()
    for family in text_string_to_metric_families(text):
        names.add(family.name)
        names.update(sample.name for sample in family.samples)
    return [f for f in FAMILIES if f not in names and f.removesuffix("_total") not in names]


@requirement("obs/8.1/1")
async def test_metrics_expose_the_stream_families(facts: Facts) -> None:
    missing: dict[str, object] = {}
    for instance in facts.instances:
        status, _, text = await http_get(instance.http_url + "/metrics")
        try:
            missing[instance.http_url] = _missing_families(text) if status == 200 else status
        except ValueError as error:
            missing[instance.http_url] = f"not Prometheus text: {error}"
    expect_all("families missing from /metrics", missing, [])


@requirement("obs/8.1/2")
async def test_published_and_delivered_counters_count_events(world: TenantWorld) -> None:
    names = FAMILIES[:2]

    async def counts() -> list[float]:
        samples = await metric_samples(world.http_url)
        return [metric_sum(samples, name) or 0.0 for name in names]

    wf = await world.workflow()
    async with await world.subscribe(wf) as stream, world.publisher() as pub:
        before = await counts()
        for n in range(3):
            await pub.progress(f"{n}", workflow_id=wf, task_id=new_id())
        await stream.next_events(3)
        after = await counts()
    growth = {name: a - b for name, a, b in zip(names, after, before, strict=True)}
    expect_that(
        "counter growth after three delivered events",
        all(v >= 3 for v in growth.values()),
        "each at least +3",
        growth,
    )
