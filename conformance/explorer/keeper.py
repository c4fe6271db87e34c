"""The explorer's hands and eyes: publishing, opening streams, and checking what each stream
received against the model. The rules (`machine.py`) only decide what to do next."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Coroutine
from typing import Any, ClassVar

import grpc

from harness.admin import IssuedToken
from harness.publisher import Publisher
from harness.sse import SSEEvent
from harness.sse_client import SSEStream
from harness.world import TenantWorld

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
    tree,
)
from .state import (
    DATA_EVENTS,
    PROMPT_CLOSE,
    RETENTION_MARGIN,
    SETTLE,
    Cursor,
    Setup,
    T,
    Watch,
    name_of,
)


class StreamKeeper:
    """State and checks shared by the rules of `Explorer`."""

    setup: ClassVar[Setup]
    steps: list[str]
    world: TenantWorld
    workflows: list[Workflow]
    sent: dict[str, Sent]
    watches: list[Watch]
    cursors: list[Cursor]
    publishers: dict[int, Publisher]
    instances: int

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
                try:
                    await pub.token(payload + padding, workflow_id=wf, task_id=task)
                except grpc.aio.AioRpcError as error:
                    self._fail(
                        Finding("grpc/3.1/1", "a publish of the tenant", "OK", error.code().name)
                    )
                record.acked_at = time.monotonic()

        async def all_of() -> None:
            await asyncio.gather(*(produce(b) for b in payloads))

        self._run(all_of())

    def _payloads(self, n: int) -> list[str]:
        start = len(self.sent)
        return [f"x{start + k}" for k in range(n)]

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
        stream_token: bool = False,
        ttl: int | None = None,
    ) -> None:
        base = self.setup.target.http_urls[instance]
        query: dict[str, str] = {}
        token: IssuedToken | None = None
        if stream_token:
            query["access_token"] = self._run(
                self.world.api.stream_token(self.world.slug, workflow=root, ttl_seconds=ttl)
            )
        else:
            token = self._run(self.world.api.create_token(self.world.slug, "user"))
        last_event_id = None
        if cursor == "start":
            query["from"] = "start"
        elif isinstance(cursor, tuple):
            if cursor[1]:
                query["lastEventId"] = cursor[0].id
            else:
                last_event_id = cursor[0].id
        url = self.world.workflow_url(root, consolidated=consolidated, base=base, query=query)
        requested = time.monotonic()
        bearer = None if token is None else token.token

        async def opened() -> tuple[SSEStream, asyncio.Future[float]]:
            stream = await SSEStream.open(url, token=bearer, last_event_id=last_event_id)
            loop = asyncio.get_running_loop()

            async def closed_at() -> float:
                await stream.closed_event.wait()
                return time.monotonic()

            return stream, loop.create_task(closed_at())

        stream, closed = self._run(opened())
        headers_at = time.monotonic()
        if stream.status != 200:
            self._run(stream.close())
            rid = "sse/4.2/4" if stream_token and consolidated else "sse/4.1/1"
            rid = "sse/4.2/2" if stream_token and not consolidated else rid
            self._fail(Finding(rid, "status of a stream of the tenant", "200", str(stream.status)))
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
            Received(name_of(e), e.id, e.received_at)
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
        elif complete and watch.gap_allowed_before > float("-inf"):
            self._expired_without_gap(watch)
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

    def _expired_without_gap(self, watch: Watch) -> None:
        """A resume that misses events which had expired when it was opened owes a `gap`."""
        seconds = self.setup.retention_seconds
        if seconds is None:
            return
        expired_before = watch.opened_at - seconds - RETENTION_MARGIN
        got = {r.payload for r in self._received(watch)}
        lost = sorted(
            p for p in watch.expectation.must - got if self.sent[p].acked_at < expired_before
        )
        if lost:
            self._fail(
                Finding(
                    "sse/4.10/8",
                    "resume from a cursor older than retention",
                    "gap first",
                    f"no gap, and {len(lost)} expired events missing: {lost[:5]}",
                )
            )

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
