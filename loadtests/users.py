"""Locust users: a gRPC publisher and an SSE subscriber, built on the `harness` clients.

Each published payload is JSON `{"t": <time_ns at publish>, "p": <publisher id>, "seq": n, ...}`.
The subscriber fires one Locust request event per received event, named by its type, with
response time = receipt - `t` (one clock: run the load generators on one machine, or keep their
clocks in sync). An event later than `--deliver-timeout-ms`, a hole in a publisher's `seq`
(`missing`), a repeat (`duplicate`), a `gap` control event, or a stream silent for the deliver
timeout (`stalled`) is a failure.
"""

from __future__ import annotations

import json
import os
import random
import secrets
import time
from dataclasses import dataclass
from typing import Any

import grpc
from locust import User, constant, task
from locust.env import Environment
from locust.exception import StopUser

from harness.publisher import SyncPublisher
from harness.wire.blocking import HTTPStatusError, SSEConnection
from harness.wire.sse import SSEEvent

from .scenarios import SCENARIOS, Fixture, Scenario
from .slots import SLOTS

EVENT_NAMES = frozenset({"token", "progress", "data", "error"})
_WORDS = ("The", " quick", " brown", " fox", " jumps", " over", " the", " lazy", " dog", ".")


class LateEvent(Exception):
    """Delivered, but after the deliver timeout."""


class MissingEvents(Exception):
    """A publisher's sequence jumped: events were never delivered."""


class DuplicateEvent(Exception):
    """An event was delivered twice (a broken resume)."""


class StreamProblem(Exception):
    """A control event or a silence that means events were lost or withheld."""


@dataclass(slots=True)
class RunConfig:
    """What this process's users need; set by the locustfile's listeners."""

    fixture: Fixture | None = None
    scenario: Scenario = SCENARIOS["llm"]
    rate: float = 50.0
    deliver_timeout: float = 2.0  # seconds
    churn_seconds: tuple[float, float] = (0.5, 3.0)

    def require(self) -> Fixture:
        if self.fixture is None:
            raise RuntimeError("no fixture: the target was not provisioned (see the log)")
        return self.fixture


RUN = RunConfig()
_publishers: dict[tuple[str, str], SyncPublisher] = {}


def _fire(
    env: Environment, kind: str, name: str, ms: float, size: int, error: BaseException | None = None
) -> None:
    hook: Any = env.events.request  # (locust does not type its events)
    hook.fire(
        request_type=kind,
        name=name,
        response_time=ms,
        response_length=size,
        exception=error,
        context={},
    )


class GrpcPublisher(User):
    """Sends TOKEN events with StreamTaskData at the scenario's rate (`--rate` per user)."""

    _due = 0.0  # when the next call is due (time.monotonic)

    def wait_time(self) -> float:
        # Fixed pacing: the next call is due one interval after the previous one was due.
        now = time.monotonic()
        self._due = max(self._due + 1.0 / RUN.rate, now - 1.0)  # catch up at most 1 s
        return max(0.0, self._due - now)

    def on_start(self) -> None:
        fixture = RUN.require()
        self.slot = SLOTS.take(self.environment, "publisher")
        self.id = f"{secrets.token_hex(3)}-{os.getpid()}-{self.slot}"
        address = fixture.grpc_address(self.slot)
        key = (address, fixture.worker_token)
        if key not in _publishers:  # one channel per process and instance, as a worker SDK would
            _publishers[key] = SyncPublisher(address, fixture.worker_token, timeout=10.0)
        self.publisher = _publishers[key]
        self.seq = 0
        self._turn = self.slot
        self._due = time.monotonic()

    @task
    def publish(self) -> None:
        fixture = RUN.require()
        workflow, task_id = fixture.streams[self._turn % len(fixture.streams)]
        if RUN.scenario.children:  # round-robin over the parent's children
            self._turn += 1
        seq = self.seq + 1
        payload = json.dumps(
            {"t": time.time_ns(), "p": self.id, "seq": seq, "tok": _WORDS[seq % len(_WORDS)]}
        )
        started = time.perf_counter()
        error: grpc.RpcError | None = None
        try:
            self.publisher.send(
                "token", payload, workflow_id=workflow, task_id=task_id, sequence=seq
            )
        except grpc.RpcError as failure:
            error = failure  # the seq is reused, so a failed call leaves no hole
        else:
            self.seq = seq
        elapsed = (time.perf_counter() - started) * 1000
        _fire(self.environment, "gRPC", "StreamTaskData", elapsed, len(payload), error)


class SSESubscriber(User):
    """Holds one SSE stream (the scenario's), reconnecting with `Last-Event-ID` when it ends;
    in `churn` it also disconnects on purpose every 0.5-3 s."""

    wait_time = constant(0)

    def on_start(self) -> None:
        fixture = RUN.require()
        self.slot = SLOTS.take(self.environment, "subscriber")
        workflow = fixture.subscriptions[self.slot % len(fixture.subscriptions)]
        self.url = fixture.stream_url(workflow, self.slot)
        self.last_id: str | None = None
        self.seen: dict[str, int] = {}  # publisher id -> highest seq received
        self.connections = 0

    @task
    def listen(self) -> None:
        fixture = RUN.require()
        resume = fixture.resume and self.last_id is not None
        name = "resume" if resume else ("reconnect" if self.connections else "connect")
        conn = SSEConnection(
            self.url, fixture.user_token, last_event_id=self.last_id if resume else None
        )
        started = time.perf_counter()
        try:
            conn.open()
        except (OSError, HTTPStatusError) as error:
            conn.close()
            _fire(self.environment, "SSE-open", name, _ms(started), 0, error)
            time.sleep(1.0)  # (gevent-patched) do not hammer a target that refuses us
            return
        _fire(self.environment, "SSE-open", name, _ms(started), 0)
        self.connections += 1
        if not resume:
            self.seen.clear()  # a live-only stream starts wherever it starts
        try:
            self._read(conn)
        finally:
            self.last_id = conn.last_event_id or self.last_id
            conn.close()

    def _read(self, conn: SSEConnection) -> None:
        until = None
        if RUN.scenario.churn:
            until = time.monotonic() + random.uniform(*RUN.churn_seconds)
        received = 0
        try:
            for event in conn.events(read_timeout=max(RUN.deliver_timeout, 1.0)):
                received += 1
                self._on_event(event)
                if until is not None and time.monotonic() >= until:
                    return
        except TimeoutError as error:
            if received:  # events were flowing, then stopped: they are being withheld
                _fire(self.environment, "SSE", "stalled", 0, 0, StreamProblem(str(error)))

    def _on_event(self, event: SSEEvent) -> None:
        env = self.environment
        if event.event not in EVENT_NAMES:
            if event.event == "end":
                raise StopUser  # the workflow finished: nothing more will come
            _fire(env, "SSE", event.event, 0, len(event.data), StreamProblem(event.data[:200]))
            return
        now = time.time_ns()
        try:
            body: dict[str, Any] = json.loads(event.data)
            if RUN.require().consolidated:
                body = json.loads(body["data"])
            sent, publisher, seq = int(body["t"]), str(body["p"]), int(body["seq"])
        except (ValueError, KeyError, TypeError) as error:
            _fire(env, "SSE", event.event, 0, len(event.data), error)
            return
        latency = (now - sent) / 1e6
        late = LateEvent(f"{latency:.0f} ms") if latency > RUN.deliver_timeout * 1000 else None
        _fire(env, "SSE", event.event, latency, len(event.data), late)
        last = self.seen.get(publisher)
        if last is not None and seq <= last:
            _fire(env, "SSE", "duplicate", 0, 0, DuplicateEvent(f"seq {seq} after {last}"))
            return
        if last is not None and seq > last + 1:
            hole = MissingEvents(f"{seq - last - 1} event(s) missing")
            _fire(env, "SSE", "missing", 0, 0, hole)
        self.seen[publisher] = seq


def _ms(started: float) -> float:
    return (time.perf_counter() - started) * 1000
