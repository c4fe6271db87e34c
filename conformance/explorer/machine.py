"""The explorer's state machine: random sequences of operations on a target, checked against
the model (`model.py`) after each one that can be checked.

The machine drives the async clients on an event loop of its own, running in a thread, so open
streams keep reading between steps. Every step is also written down as a line of Python
(`steps`), which is how a shrunk failure is printed as a script that replays it.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, precondition, rule

from harness.admin import IssuedToken
from harness.publisher import Publisher
from harness.sse import SSEEvent
from harness.sse_client import SSEStream
from harness.targets import Target
from harness.world import TenantWorld

from ..wire import payload_of
from .model import (
    Expectation,
    Finding,
    ModelViolation,
    Received,
    Sent,
    Workflow,
    after_gap,
    check_stream,
    live_expectation,
    resume_expectation,
    tree,
)

T = TypeVar("T")
DATA_EVENTS = frozenset({"token", "progress", "data", "error"})
MAX_OPEN = 4  # well under any per-tenant stream limit the cases accept
LARGE = 2048  # bytes of a large event
SETTLE = 5.0  # seconds an event may take to reach a stream (as the revocation bound)
PROMPT_CLOSE = 1.0  # SPEC sse/4.11/5
RETENTION_MARGIN = 1.0


class _AlreadyEnded(Exception):
    """The stream had ended before the step that would end it."""


@dataclass(frozen=True, slots=True)
class Setup:
    """What the machine explores: the target and the facts about it the model needs."""

    target: Target
    loop: asyncio.AbstractEventLoop
    retention_seconds: float | None
    notifies_server: bool
    subscriber_buffer: int
    record: Callable[[Finding, list[str]], None]
    started: Callable[[], None]  # called as each sequence starts: raises when time is up

    def has(self, profile: str) -> bool:
        return self.target.has(profile)


@dataclass(slots=True)
class Watch:
    """One open stream and what it must receive."""

    stream: SSEStream
    root: str
    consolidated: bool
    instance: int
    token: IssuedToken
    expectation: Expectation
    opened_at: float
    closed_at: asyncio.Future[float]
    bursts: int = 0  # deep bursts while open: the server may evict a reader that lags
    gap_allowed_before: float = float("-inf")
    retained_since: float = float("-inf")
    ended: bool = False  # ended by the server (and checked as such)

    def events(self) -> list[SSEEvent]:
        return list(self.stream.events_received)


@dataclass(slots=True)
class Cursor:
    """A closed stream's last event (None when it had none): where a resume starts."""

    root: str
    consolidated: bool
    event: Sent | None
    id: str
    received_at: float
    seen: set[str] = field(default_factory=set)


class Explorer(RuleBasedStateMachine):
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
        self.instances = len(self.setup.target.http_urls) if self.setup.has("multi-instance") else 1

    # -- plumbing ----------------------------------------------------------------------------

    def _run(self, coro: Coroutine[Any, Any, T], timeout: float = 60) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.setup.loop).result(timeout)

    def _step(self, line: str) -> None:
        self.steps.append(line)

    def _fail(self, finding: Finding) -> None:
        self.setup.record(finding, list(self.steps))
        raise ModelViolation(finding)

    def _publisher(self, instance: int) -> Publisher:
        if instance not in self.publishers:

            async def make() -> Publisher:
                return Publisher(
                    self.setup.target.grpc_addresses[instance], self.world.worker.token
                )

            self.publishers[instance] = self._run(make())
        return self.publishers[instance]

    def _open_workflows(self) -> list[Workflow]:
        return [w for w in self.workflows if w.completed is None]

    def _scope(self, root: str, consolidated: bool) -> set[str]:
        return tree(self.workflows, root) if consolidated else {root}

    def _publish_many(
        self, payloads: list[list[str]], wf: str, instance: int, *, pad: int = 0
    ) -> None:
        """Each inner list is one producer, awaiting each acknowledgement before its next.
        `pad` bytes after a space make an event larger; the model knows it by its first word."""
        pub = self._publisher(instance)
        padding = " " + "." * pad if pad else ""

        async def produce(batch: list[str]) -> None:
            task = str(uuid.uuid4())
            for payload in batch:
                record = self.sent[payload] = Sent(payload, wf, instance, time.monotonic())
                await pub.token(payload + padding, workflow_id=wf, task_id=task)
                record.acked_at = time.monotonic()

        async def all_of() -> None:
            await asyncio.gather(*(produce(b) for b in payloads))

        self._run(all_of())

    def _payloads(self, n: int) -> list[str]:
        start = len(self.sent)
        return [f"x{start + k}" for k in range(n)]

    # -- rules -------------------------------------------------------------------------------

    @rule(parent=st.none() | st.integers(0, 20))
    def new_workflow(self, parent: int | None) -> None:
        self._step(f"state.new_workflow(parent={parent})")
        choices = self._open_workflows()
        parent_id = choices[parent % len(choices)].id if parent is not None and choices else None
        wf = self._run(self.world.workflow(parent=parent_id))
        self.workflows.append(Workflow(wf, parent_id))

    @precondition(lambda self: len(self.watches) < MAX_OPEN and self.workflows)
    @rule(wf=st.integers(0, 20), consolidated=st.booleans(), instance=st.integers(0, 2))
    def open_stream(self, wf: int, consolidated: bool, instance: int) -> None:
        self._step(f"state.open_stream(wf={wf}, consolidated={consolidated}, instance={instance})")
        consolidated = consolidated and self.setup.has("consolidated")
        root = self.workflows[wf % len(self.workflows)]
        if root.completed is not None:
            self._finished_stream(root, consolidated, instance % self.instances)
            return
        self._open(root.id, consolidated, instance % self.instances, None, None)

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
        last = self.sent.get(_name(data[-1])) if data and data[-1].id else None
        seen = {_name(e) for e in data}
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

    @precondition(lambda self: self.watches)
    @rule(which=st.integers(0, 10))
    def revoke(self, which: int) -> None:
        """Revoke the token an open stream was opened with: the stream ends, the token is 401."""
        self._step(f"state.revoke(which={which})")
        watch = self.watches.pop(which % len(self.watches))
        self._run(self.world.api.revoke_token(watch.token.id))
        try:
            if watch.ended:
                raise _AlreadyEnded
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
            async with SSEStream.open(url, token=watch.token.token) as again:
                return again.status

        got = self._run(status())
        if got != 401:
            self._fail(Finding("sse/4.1/6", "status with a revoked token", "401", str(got)))

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

    # -- streams -----------------------------------------------------------------------------

    def _retained_since(self) -> float:
        seconds = self.setup.retention_seconds
        return float("-inf") if seconds is None else time.monotonic() - seconds + RETENTION_MARGIN

    def _open(
        self,
        root: str,
        consolidated: bool,
        instance: int,
        expectation: Expectation | None,
        cursor: tuple[Cursor, bool] | str | None,
        *,
        during: int = 0,
    ) -> None:
        base = self.setup.target.http_urls[instance]
        query: dict[str, str] = {}
        last_event_id = None
        if cursor == "start":
            query["from"] = "start"
        elif isinstance(cursor, tuple):
            if cursor[1]:
                query["lastEventId"] = cursor[0].id
            else:
                last_event_id = cursor[0].id
        url = self.world.workflow_url(root, consolidated=consolidated, base=base, query=query)
        token = self._run(self.world.api.create_token(self.world.slug, "user"))
        requested = time.monotonic()

        async def opened() -> tuple[SSEStream, asyncio.Future[float]]:
            stream = await SSEStream.open(url, token=token.token, last_event_id=last_event_id)
            loop = asyncio.get_running_loop()

            async def closed_at() -> float:
                await stream.closed_event.wait()
                return time.monotonic()

            return stream, loop.create_task(closed_at())

        stream, closed = self._run(opened())
        headers_at = time.monotonic()
        if stream.status != 200:
            self._run(stream.close())
            self._fail(
                Finding("sse/4.1/1", "status of a stream of the tenant", "200", str(stream.status))
            )
        scope = self._scope(root, consolidated)
        if expectation is None:
            expectation = live_expectation(
                self.sent.values(),
                scope,
                requested,
                headers_at,
                "bus/5.1/1" if self.instances > 1 else "sse/4.6/8",
            )
        watch = Watch(stream, root, consolidated, instance, token, expectation, headers_at, closed)
        if isinstance(cursor, tuple):
            # A cursor older than retention may be answered with `gap` and what is left.
            event = cursor[0].event
            assert event is not None
            watch.gap_allowed_before = event.acked_at + RETENTION_MARGIN
            watch.retained_since = self._retained_since()
        self.watches.append(watch)
        if during:
            root_wf = next(w for w in self.workflows if w.id == root)
            if root_wf.completed is None:
                names = self._payloads(during)
                self._publish_many([names], root, instance)
                watch.expectation.must.update(names)

    def _finished_stream(self, root: Workflow, consolidated: bool, instance: int) -> None:
        """A finished workflow's stream: `end` with its status at once, then the end of it."""
        token = self._run(self.world.api.create_token(self.world.slug, "user"))
        url = self.world.workflow_url(
            root.id, consolidated=consolidated, base=self.setup.target.http_urls[instance]
        )

        async def opened() -> tuple[SSEStream, asyncio.Future[float]]:
            stream = await SSEStream.open(url, token=token.token)

            async def closed_at() -> float:
                await stream.closed_event.wait()
                return time.monotonic()

            return stream, asyncio.get_running_loop().create_task(closed_at())

        stream, closed = self._run(opened())
        watch = Watch(
            stream,
            root.id,
            consolidated,
            instance,
            token,
            Expectation("sse/4.11/2"),
            time.monotonic(),
            closed,
        )
        self._expect_end(watch, str(root.completed), "sse/4.11/2")

    def _expect_end(self, watch: Watch, status: str, rid: str) -> None:
        """The stream's next control event is `end` with `status`, then its body ends."""

        async def wait_end() -> SSEEvent | None:
            deadline = time.monotonic() + SETTLE
            while time.monotonic() < deadline:
                ends = [e for e in watch.events() if e.event == "end"]
                if ends:
                    return ends[0]
                if watch.stream.closed:
                    return None
                await asyncio.sleep(0.02)
            return None

        end = self._run(wait_end())
        try:
            if end is None:
                self._fail(Finding(rid, "event after completion", f"end ({status})", "none"))
            assert end is not None
            try:
                got = json.loads(end.data).get("status")
            except (ValueError, AttributeError):
                got = end.data
            if got != status:
                self._fail(Finding(rid, "status of end", status, repr(got)))
            after = [e.event for e in watch.events()[watch.events().index(end) + 1 :]]
            if after:
                self._fail(Finding(rid, "events after end", "none", repr(after[:5])))
            remaining = max(0.0, end.received_at + PROMPT_CLOSE - time.monotonic())
            try:
                self._run(asyncio.wait_for(asyncio.shield(watch.closed_at), remaining + 0.05))
            except TimeoutError:
                self._fail(
                    Finding(
                        "sse/4.11/5",
                        "end of the response after end",
                        f"within {PROMPT_CLOSE:g} s",
                        "still open",
                    )
                )
        finally:
            self._run(watch.stream.close())

    def _settle(self, *, complete: bool) -> None:
        for watch in self.watches:
            if not watch.ended:
                self._check(watch, complete=complete)

    def _received(self, watch: Watch) -> list[Received]:
        return [
            Received(_name(e), e.id, e.received_at)
            for e in watch.events()
            if e.event in DATA_EVENTS
        ]

    def _check(self, watch: Watch, *, complete: bool, controls_allowed: bool = False) -> None:
        """Check a stream; with `complete`, first wait (up to SETTLE) for what it must carry."""
        if complete:

            async def caught_up() -> None:
                deadline = time.monotonic() + SETTLE
                while time.monotonic() < deadline and not watch.stream.closed:
                    got = {r.payload for r in self._received(watch)}
                    if watch.expectation.must <= got:
                        return
                    await asyncio.sleep(0.02)

            self._run(caught_up())
        events = watch.events()
        controls = [e.event for e in events if e.event not in DATA_EVENTS]
        if "gap" in controls:
            if controls.index("gap") != 0 or events[0].event != "gap":
                self._fail(Finding("sse/4.10/5", "position of gap", "first event", repr(controls)))
            if time.monotonic() < watch.gap_allowed_before + self._retention():
                self._fail(
                    Finding(
                        watch.expectation.requirement,
                        "gap for a cursor within retention",
                        "the events after the cursor",
                        "gap",
                    )
                )
            after_gap(watch.expectation, self.sent.values(), watch.retained_since)
        ended = [c for c in controls if c != "gap"]
        if ended and not controls_allowed:
            if "end" in ended:
                rid = "sse/4.11/3" if watch.consolidated else "sse/4.11/1"
                self._fail(Finding(rid, "end of an unfinished workflow's stream", "none", "end"))
            self._fail(
                Finding(
                    "explore/9.1/1",
                    "control event on a stream nothing ended (its token is valid)",
                    "none",
                    repr(ended),
                )
            )
        scope = self._scope(watch.root, watch.consolidated)
        closed_early = watch.stream.closed and not controls_allowed
        finding = check_stream(
            self._received(watch),
            self.sent,
            scope,
            watch.expectation,
            complete=complete and not closed_early,
        )
        if finding is not None:
            self._fail(finding)
        if closed_early:
            watch.ended = True  # stays listed: the rules' choices must not depend on timing
            self._ended_by_server(watch)

    def _retention(self) -> float:
        seconds = self.setup.retention_seconds
        return float("inf") if seconds is None else seconds

    def _ended_by_server(self, watch: Watch) -> None:
        """A stream the server ended without `end`: only idleness or a lagging reader excuse it."""
        received = self._received(watch)
        last = max([watch.opened_at, *(r.at for r in received)])
        idle = self.setup.target.idle_timeout
        closed = watch.closed_at.result() if watch.closed_at.done() else time.monotonic()
        if watch.bursts and self.setup.has("limits"):
            return
        if closed - last >= idle - max(0.5, 0.1 * idle):
            return
        self._fail(
            Finding(
                "explore/9.1/1",
                "stream ended by the server without end, idleness, lag or revocation",
                f"open until {idle:g} s without events",
                f"ended {closed - last:.1f} s after its last event ({watch.stream.error!r})",
            )
        )


def _name(event: SSEEvent) -> str:
    """The published name of an event (its payload up to the padding of a large one)."""
    return payload_of(event).split(" ", 1)[0]
