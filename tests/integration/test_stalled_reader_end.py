"""A stalled reader counts the terminating chunk as the end of the response, although the
HTTP/1.1 connection stays open for another request (the reference server keeps it alive)."""

from __future__ import annotations

import pytest

from harness.wire.observe import Recorder, observing
from harness.wire.stalled import StalledReader
from harness.world import TenantWorld

pytestmark = pytest.mark.integration


async def test_a_terminating_chunk_ends_the_stalled_readers_stream(world: TenantWorld) -> None:
    wf = await world.workflow()
    recorder = Recorder()
    with observing(recorder):
        stalled = await StalledReader.open(world.workflow_url(wf), world.user.token)
        await world.api.complete_workflow(world.slug, wf)
        drained = await stalled.drain(timeout=5)
        stalled.close()
    assert drained.ended, drained.how
    assert drained.how == "end of body (connection kept open)"
    (exchange,) = [e for e in recorder.exchanges if e.protocol == "sse"]
    assert exchange.end == "terminating-chunk"
