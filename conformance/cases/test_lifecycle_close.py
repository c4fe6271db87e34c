"""SPEC §4.11: after `end`, the response ends at once, whatever the idle timeout."""

from __future__ import annotations

import time

from conformance import requirement
from conformance.checks import Mismatch, expect, informational
from conformance.fixtures import Facts
from conformance.wire import new_id
from harness.sse_client import StreamClosed
from harness.world import TenantWorld

# The requirement's own bound; an idle close could not be told apart under twice this.
PROMPT_CLOSE = 1.0


@requirement("sse/4.11/5")
async def test_the_response_ends_promptly_after_end(world: TenantWorld, facts: Facts) -> None:
    facts.require_notifying_provisioner()
    if facts.idle_timeout < 2 * PROMPT_CLOSE:
        informational(f"the idle timeout ({facts.idle_timeout:g} s) is under 2 s")
    wf = await world.workflow()
    async with await world.subscribe(wf) as stream, world.publisher() as pub:
        await pub.token("before end", workflow_id=wf, task_id=new_id())
        expect("first event", (await stream.next_event()).data, "before end")
        await world.api.complete_workflow(world.slug, wf, "COMPLETED")
        try:
            end = await stream.next_event(timeout=5)
        except (TimeoutError, StreamClosed) as error:
            raise Mismatch("next event", "end", type(error).__name__) from None
        expect("next event", end.event, "end")
        try:
            await stream.wait_closed(max(0.0, end.received_at + PROMPT_CLOSE - time.monotonic()))
        except TimeoutError:
            raise Mismatch(
                "end of the response after `end`",
                f"within {PROMPT_CLOSE:g} s (terminating chunk or close)",
                f"still open {time.monotonic() - end.received_at:.1f} s after it",
            ) from None
