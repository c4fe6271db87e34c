"""The Locust scenarios, and the fixture each one needs on the target (tenant, tokens,
workflows), made by the target's own provisioner from `harness`.

- `llm`: one publisher per workflow (~50 tokens/s), one subscriber per workflow.
- `fanout`: 1 publisher (`--publishers`) on one workflow; every other user subscribes to it.
- `consolidated`: 2 publishers (`--publishers`), round-robin over the 20 children of a parent;
  subscribers read the parent's consolidated stream.
- `churn`: as `llm`, but subscribers disconnect every 0.5-3 s and resume with `Last-Event-ID`.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import asdict, dataclass, field
from typing import Any

from harness.targets import Target
from harness.world import TenantWorld


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    summary: str
    rate: float  # events/s per publisher
    publishers: int | None  # fixed number of publisher users; None = as many as subscribers
    one_workflow: bool = False  # every publisher and subscriber on the same workflow
    children: int = 0  # consolidated: children of the parent (subscribers watch the parent)
    churn: bool = False  # subscribers disconnect and resume all the time


SCENARIOS = {
    s.name: s
    for s in (
        Scenario("llm", "LLM token streaming: many workflows, one subscriber each", 50.0, None),
        Scenario("fanout", "fan-out: one workflow, hundreds of subscribers", 20.0, 1, True),
        Scenario(
            "consolidated", "a parent with 20 children, consolidated stream", 25.0, 2, children=20
        ),
        Scenario("churn", "connect/disconnect storm with resume", 20.0, None, churn=True),
    )
}


@dataclass(frozen=True, slots=True)
class Fixture:
    """What users need, as JSON: the master provisions it and hands it to workers."""

    scenario: str
    http_urls: list[str]
    grpc_addresses: list[str]
    tenant: str
    user_token: str
    worker_token: str
    streams: list[tuple[str, str]]  # (workflow, task) pairs publishers publish to
    subscriptions: list[str]  # workflow ids subscribers open
    consolidated: bool = False
    resume: bool = True  # the target declares the `resume` profile
    settings: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> Fixture:
        data = json.loads(text)
        data["streams"] = [tuple(pair) for pair in data["streams"]]
        return cls(**data)

    def stream_url(self, workflow: str, index: int) -> str:
        """Subscribers spread over the target's instances (multi-instance targets)."""
        base = self.http_urls[index % len(self.http_urls)]
        suffix = "/consolidated" if self.consolidated else ""
        return f"{base}/api/tenants/{self.tenant}/stream/workflows/{workflow}{suffix}"

    def grpc_address(self, index: int) -> str:
        return self.grpc_addresses[index % len(self.grpc_addresses)]


async def provision(target: Target, scenario: Scenario, workflows: int) -> Fixture:
    """A fresh tenant and the scenario's workflows (each publishing task belongs to one)."""
    world = await TenantWorld.for_target(target)
    gate = asyncio.Semaphore(8)

    async def pair(parent: str | None = None) -> tuple[str, str]:
        async with gate:
            workflow = await world.workflow(parent=parent, kind="loadtest")
            return workflow, await world.task(workflow, kind="loadtest")

    try:
        if scenario.children:
            parent = await world.workflow(kind="loadtest-parent")
            streams = await asyncio.gather(*(pair(parent) for _ in range(scenario.children)))
            subscriptions = [parent]
        else:
            count = 1 if scenario.one_workflow else max(1, workflows)
            streams = await asyncio.gather(*(pair() for _ in range(count)))
            subscriptions = [workflow for workflow, _ in streams]
    finally:
        await world.close()
    return Fixture(
        scenario=scenario.name,
        http_urls=list(target.http_urls),
        grpc_addresses=list(target.grpc_addresses),
        tenant=world.slug,
        user_token=world.user.token,
        worker_token=world.worker.token,
        streams=list(streams),
        subscriptions=subscriptions,
        consolidated=bool(scenario.children),
        resume=target.has("resume"),
    )
