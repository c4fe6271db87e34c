"""The public hook (reference_server.extensions): a build of the server with one part replaced
changes exactly that part, and the rest behaves as the reference does."""

from __future__ import annotations

import dataclasses
import uuid

import pytest

from harness.world import TenantWorld
from reference_server.bus import Bus
from reference_server.events import TaskStreamEvent
from reference_server.extensions import BusWrapper, Extension
from reference_server.http_streams import StreamSession
from reference_server.policies import Policies
from reference_server.settings import Settings
from reference_server.sse_writer import StreamWriter
from tests.conftest import ServerFactory

pytestmark = pytest.mark.integration


class NoGapSession(StreamSession):
    async def write_gap(self, writer: StreamWriter, after: int | None) -> None:
        return None


class CountingBus(BusWrapper):
    def __init__(self, inner: Bus) -> None:
        super().__init__(inner)
        self.published: list[TaskStreamEvent] = []

    async def publish(self, event: TaskStreamEvent) -> None:
        self.published.append(event)
        await super().publish(event)


class Build(Extension):
    def __init__(self) -> None:
        self.counting: CountingBus | None = None

    def settings(self, settings: Settings) -> Settings:
        return settings.with_changes(max_streams_per_tenant=7)

    def policies(self, policies: Policies) -> Policies:
        return dataclasses.replace(policies, session=NoGapSession)

    def bus(self, bus: Bus) -> Bus:
        self.counting = CountingBus(bus)
        return self.counting


async def test_an_extension_replaces_the_session_the_bus_and_settings(
    make_server: ServerFactory,
) -> None:
    build = Build()
    server = await make_server(extension=build)
    assert server.settings.max_streams_per_tenant == 7
    world = await TenantWorld.create(server.http_url, server.grpc_address, server.admin_token)
    try:
        wf = await world.workflow()
        async with world.publisher() as pub:
            await pub.token("kept", workflow_id=wf, task_id=str(uuid.uuid4()))
        # The reference answers this cursor with `gap` first; the replaced session skips it.
        async with await world.subscribe(wf, last_event_id="999999999") as stream:
            first = await stream.next_event()
    finally:
        await world.close()
    assert (first.event, first.data) == ("token", "kept")
    assert build.counting is not None
    assert [e.payload for e in build.counting.published] == ["kept"]
