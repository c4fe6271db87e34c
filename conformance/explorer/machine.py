"""The explorer's state machine: random sequences of operations on a target, checked against
the model (`model.py`) after each one that can be checked.

The machine drives the async clients on an event loop of its own, running in a thread, so open
streams keep reading between steps. Every step is also written down as a line of Python
(`steps`), which is how a shrunk failure is printed as a script that replays it.
"""

from __future__ import annotations

import asyncio
import time
from typing import ClassVar

from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, precondition, rule

from harness.publisher import Publisher
from harness.sse_client import SSEStream
from harness.world import TenantWorld

from ..wire import new_id, rpc_status
from .keeper import StreamKeeper
from .model import Expectation, Finding, Sent, Workflow, resume_expectation
from .state import (
    DATA_EVENTS,
    EXPIRING,
    LARGE,
    MAX_OPEN,
    MAX_RETENTION_WAIT,
    MAX_WORKFLOWS,
    RETENTION_MARGIN,
    SETTLE,
    AlreadyEnded,
    Cursor,
    Setup,
    Watch,
    name_of,
)

__all__ = ["Explorer", "Setup"]


class Explorer(StreamKeeper, RuleBasedStateMachine):
    setup: ClassVar[Setup]

    def __init__(self) -> None:
        super().__init__()
        self.setup.started()
        self.steps: list[str] = []
        self.world = self._run(TenantWorld.for_target(self.setup.target))
        self.workflows: list[Workflow] = []
        self.sent: dict[str, Sent] = {}
        self.watches: list[Watch] = []
        self.cursors: list[Cursor] = []
        self.publishers: dict[int, Publisher] = {}
        self.done: set[str] = set()  # the rules that run at most once per sequence
        self.instances = len(self.setup.target.http_urls) if self.setup.has("multi-instance") else 1

    # -- rules -------------------------------------------------------------------------------

    @precondition(lambda self: len(self.workflows) < MAX_WORKFLOWS)
    @rule(parent=st.none() | st.integers(0, 20))
    def new_workflow(self, parent: int | None) -> None:
        self._step(f"state.new_workflow(parent={parent})")
        choices = self._open_workflows()
        parent_id = choices[parent % len(choices)].id if parent is not None and choices else None
        wf = self._run(self.world.workflow(parent=parent_id))
        self.workflows.append(Workflow(wf, parent_id))

    @precondition(lambda self: len(self.watches) < MAX_OPEN and self.workflows)
    @rule(
        wf=st.integers(0, 20),
        consolidated=st.booleans(),
        instance=st.integers(0, 2),
        stream_token=st.booleans(),
    )
    def open_stream(self, wf: int, consolidated: bool, instance: int, stream_token: bool) -> None:
        """Open a stream with a user token of its own (revocable), or a stream token in the
        URL (`browser-auth`)."""
        self._step(
            f"state.open_stream(wf={wf}, consolidated={consolidated}, instance={instance}, "
            f"stream_token={stream_token})"
        )
        consolidated = consolidated and self.setup.has("consolidated")
        stream_token = stream_token and self.setup.has("browser-auth")
        root = self.workflows[wf % len(self.workflows)]
        if root.completed is not None:
            self._finished_stream(root, consolidated, instance % self.instances)
            return
        self._open(
            root.id, consolidated, instance % self.instances, None, None, stream_token=stream_token
        )

    @precondition(lambda self: self._open_workflows())
    @rule(wf=st.integers(0, 20), instance=st.integers(0, 2))
    def publish(self, wf: int, instance: int) -> None:
        self._step(f"state.publish(wf={wf}, instance={instance})")
        choices = self._open_workflows()
        target = choices[wf % len(choices)].id
        self._publish_many([self._payloads(1)], target, instance % self.instances)
        self._settle(complete=False)

    @precondition(lambda self: self._open_workflows())
    @rule(
        wf=st.integers(0, 20),
        producers=st.integers(2, 4),
        depth=st.integers(4, 12),
        instance=st.integers(0, 2),
        large=st.booleans(),
    )
    def burst(self, wf: int, producers: int, depth: int, instance: int, large: bool) -> None:
        """Concurrent publishes, deeper together than the subscriber buffer when it is small;
        `large` events (2 KiB) outgrow the socket's buffer, so the server queues some."""
        self._step(
            f"state.burst(wf={wf}, producers={producers}, depth={depth}, instance={instance}, "
            f"large={large})"
        )
        choices = self._open_workflows()
        target = choices[wf % len(choices)].id
        names = self._payloads(producers * depth)
        batches = [names[p::producers] for p in range(producers)]
        if producers * depth > self.setup.subscriber_buffer // 2:
            for watch in self.watches:
                watch.bursts += 1
        self._publish_many(batches, target, instance % self.instances, pad=LARGE if large else 0)
        self._settle(complete=False)

    @precondition(lambda self: self.watches)
    @rule(which=st.integers(0, 10))
    def close_stream(self, which: int) -> None:
        self._step(f"state.close_stream(which={which})")
        watch = self.watches.pop(which % len(self.watches))
        if not watch.ended:
            self._check(watch, complete=True)
        self._run(watch.stream.close())
        # Always a cursor, so that which rules can run never depends on the server's timing
        # (Hypothesis replays a sequence and needs the same choices).
        data = [e for e in watch.events() if e.event in DATA_EVENTS]
        last = self.sent.get(name_of(data[-1])) if data and data[-1].id else None
        seen = {name_of(e) for e in data}
        at = data[-1].received_at if data else 0.0
        cursor_id = data[-1].id if data and data[-1].id else ""
        self.cursors.append(Cursor(watch.root, watch.consolidated, last, cursor_id, at, seen))

    @precondition(lambda self: self.setup.has("resume") and self.cursors)
    @rule(
        which=st.integers(0, 10),
        via_query=st.booleans(),
        instance=st.integers(0, 2),
        during=st.integers(0, 30),
    )
    def resume(self, which: int, via_query: bool, instance: int, during: int) -> None:
        """Resume after a closed stream's last event, publishing `during` events meanwhile."""
        self._step(
            f"state.resume(which={which}, via_query={via_query}, instance={instance}, "
            f"during={during})"
        )
        cursor = self.cursors[which % len(self.cursors)]
        root = next(w for w in self.workflows if w.id == cursor.root)
        if root.completed is not None or len(self.watches) >= MAX_OPEN or cursor.event is None:
            return
        scope = self._scope(cursor.root, cursor.consolidated)
        rid = "sse/4.10/3" if via_query else "sse/4.10/2"
        if cursor.consolidated:
            rid = "sse/4.10/6"
        if during:
            rid = "sse/4.10/7"
        assert cursor.event is not None
        expectation = resume_expectation(
            self.sent.values(), scope, cursor.event, cursor.received_at, cursor.seen, rid
        )
        self._open(
            cursor.root,
            cursor.consolidated,
            instance % self.instances,
            expectation,
            (cursor, via_query),
            during=during,
        )

    @precondition(lambda self: self.setup.has("resume") and self.workflows)
    @rule(wf=st.integers(0, 20), consolidated=st.booleans(), instance=st.integers(0, 2))
    def from_start(self, wf: int, consolidated: bool, instance: int) -> None:
        self._step(f"state.from_start(wf={wf}, consolidated={consolidated}, instance={instance})")
        consolidated = consolidated and self.setup.has("consolidated")
        root = self.workflows[wf % len(self.workflows)]
        if root.completed is not None or len(self.watches) >= MAX_OPEN:
            return
        scope = self._scope(root.id, consolidated)
        retained = self._retained_since()
        must = {e.payload for e in self.sent.values() if e.workflow in scope}
        must = {p for p in must if self.sent[p].sent_at > retained}
        expectation = Expectation("sse/4.10/4", must=must)
        self._open(root.id, consolidated, instance % self.instances, expectation, "start")

    @precondition(
        lambda self: (
            self.setup.has("lifecycle") and self.setup.notifies_server and self._open_workflows()
        )
    )
    @rule(wf=st.integers(0, 20), status=st.sampled_from(["COMPLETED", "FAILED", "CANCELLED"]))
    def complete(self, wf: int, status: str) -> None:
        self._step(f"state.complete(wf={wf}, status={status!r})")
        choices = self._open_workflows()
        workflow = choices[wf % len(choices)]
        self._settle(complete=True)
        self._run(self.world.api.complete_workflow(self.world.slug, workflow.id, status))
        workflow.completed = status
        for watch in [w for w in self.watches if w.root == workflow.id]:
            self.watches.remove(watch)
            if watch.ended:
                self._run(watch.stream.close())
                continue
            self._expect_end(watch, status, "sse/4.11/3" if watch.consolidated else "sse/4.11/1")

    @precondition(lambda self: any(w.token is not None for w in self.watches))
    @rule(which=st.integers(0, 10))
    def revoke(self, which: int) -> None:
        """Revoke the token an open stream was opened with: the stream ends, the token is 401."""
        self._step(f"state.revoke(which={which})")
        revocable = [w for w in self.watches if w.token is not None]
        watch = revocable[which % len(revocable)]
        self.watches.remove(watch)
        assert watch.token is not None
        self._run(self.world.api.revoke_token(watch.token.id))
        try:
            if watch.ended:
                raise AlreadyEnded
            self._run(asyncio.wait_for(asyncio.shield(watch.closed_at), SETTLE + 1))
        except TimeoutError:
            self._run(watch.stream.close())
            self._fail(
                Finding(
                    "sse/4.3/1",
                    "stream after its token was revoked",
                    "ended within 5 s",
                    "still open",
                )
            )
        if not watch.ended:
            self._check(watch, complete=False, controls_allowed=True)
        self._run(watch.stream.close())
        url = self.world.workflow_url(watch.root, base=self.setup.target.http_urls[watch.instance])

        async def status() -> int:
            assert watch.token is not None
            async with SSEStream.open(url, token=watch.token.token) as again:
                return again.status

        got = self._run(status())
        if got != 401:
            self._fail(Finding("sse/4.1/6", "status with a revoked token", "401", str(got)))

    @precondition(lambda self: "revoke_worker" not in self.done)
    @rule()
    def revoke_worker(self) -> None:
        """A worker token publishes, is revoked, and is refused on its next call."""
        self._step("state.revoke_worker()")
        self.done.add("revoke_worker")
        open_ = self._open_workflows()
        if not open_:
            return
        worker = self._run(self.world.api.create_token(self.world.slug, "worker"))
        address = self.setup.target.grpc_addresses[0]
        wf = open_[0].id
        payload = self._payloads(1)[0]

        async def publish() -> str:
            async with Publisher(address, worker.token) as pub:
                return await rpc_status(pub.token(payload, workflow_id=wf, task_id=new_id()))

        record = self.sent[payload] = Sent(payload, wf, 0, time.monotonic())
        first = self._run(publish())
        record.acked_at = time.monotonic()
        if first != "OK":
            self._fail(Finding("grpc/3.1/1", "status of a publish", "OK", first))
        self._run(self.world.api.revoke_token(worker.id))
        payload = self._payloads(1)[0]
        again = self._run(publish())
        if again != "UNAUTHENTICATED":
            self._fail(
                Finding(
                    "grpc/3.2/5", "publish with a revoked worker token", "UNAUTHENTICATED", again
                )
            )

    @precondition(
        lambda self: (
            self.setup.long_run
            and "expire_stream_token" not in self.done
            and self.setup.has("browser-auth")
            and len(self.watches) < MAX_OPEN
            and self._open_workflows()
        )
    )
    @rule(wf=st.integers(0, 20))
    def expire_stream_token(self, wf: int) -> None:
        """A stream opened with a stream token of 2 s ends within 5 s of its expiry."""
        self._step(f"state.expire_stream_token(wf={wf})")
        self.done.add("expire_stream_token")
        choices = self._open_workflows()
        root = choices[wf % len(choices)].id
        self._open(root, False, 0, None, None, stream_token=True, ttl=EXPIRING)
        watch = self.watches.pop()
        started = watch.opened_at
        try:
            self._run(asyncio.wait_for(asyncio.shield(watch.closed_at), EXPIRING + SETTLE + 1))
        except TimeoutError:
            self._run(watch.stream.close())
            self._fail(
                Finding("sse/4.3/2", "stream after its token expired", "ended in 5 s", "open")
            )
        self._check(watch, complete=False, controls_allowed=True)
        self._run(watch.stream.close())
        took = watch.closed_at.result() - started
        if took < EXPIRING - 1:
            self._fail(
                Finding(
                    "sse/4.3/2",
                    "end of a stream token's stream",
                    f"after {EXPIRING} s",
                    f"{took:.1f} s",
                )
            )

    @precondition(
        lambda self: (
            self.setup.long_run
            and "outlive_retention" not in self.done
            and self.setup.has("resume")
            and self.setup.retention_seconds is not None
            and self.setup.retention_seconds <= MAX_RETENTION_WAIT
            and self.sent
        )
    )
    @rule()
    def outlive_retention(self) -> None:
        """Let everything published so far fall out of retention (time passing is the point)."""
        self._step("state.outlive_retention()")
        self.done.add("outlive_retention")
        seconds = self.setup.retention_seconds
        assert seconds is not None
        self._run(asyncio.sleep(seconds + RETENTION_MARGIN), timeout=seconds + 30)

    @precondition(lambda self: self.watches)
    @rule()
    def settle(self) -> None:
        """Let every open stream catch up, and check it against the model."""
        self._step("state.settle()")
        self._settle(complete=True)

    def teardown(self) -> None:
        try:
            if not self.steps or self.steps[-1] != "state.settle()":
                self._settle(complete=True)
        finally:

            async def close_all() -> None:
                for watch in self.watches:
                    await watch.stream.close()
                for pub in self.publishers.values():
                    await pub.close()
                await self.world.close()

            self._run(close_all())
