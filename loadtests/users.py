"""Locust users: a gRPC publisher (unary or batched), an HTTP-ingest publisher and an SSE
subscriber, built on the `harness` clients.

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
import requests
from locust import User, constant, task
from locust.env import Environment
from locust.exception import StopUser

from harness.http_ingest import NDJSON, ingest_line, ndjson, task_data_url
from harness.publisher import SyncPublisher, build_request
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
    batch: int = 1  # events per publish call
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
    """Sends TOKEN events at the scenario's rate (`--rate` events/s per user): one
    StreamTaskData call per event, or with `--batch N` one StreamTaskDataBatch call per N events
    (a worker SDK buffering its tokens). Its Locust row counts calls; events = calls x N."""

    _due = 0.0  # when the next call is due (time.monotonic)

    def wait_time(self) -> float:
        # Fixed pacing: the next call is due one interval after the previous one was due.
        now = time.monotonic()
        self._due = max(self._due + RUN.batch / RUN.rate, now - 1.0)  # catch up at most 1 s
        return max(0.0, self._due - now)

    def on_start(self) -> None:
        fixture = RUN.require()
        self.slot = SLOTS.take(self.environment, "publisher")
        self.id = f"{secrets.token_hex(3)}-{os.getpid()}-{self.slot}"
        self.seq = 0
        self._turn = self.slot
        self._due = time.monotonic()
        self.connect(fixture)

    def connect(self, fixture: Fixture) -> None:
        address = fixture.grpc_address(self.slot)
        key = (address, fixture.worker_token)
        if key not in _publishers:  # one channel per process and instance, as a worker SDK would
            _publishers[key] = SyncPublisher(address, fixture.worker_token, timeout=10.0)
        self.publisher = _publishers[key]

    @task
    def publish(self) -> None:
        fixture = RUN.require()
        workflow, task_id = fixture.streams[self._turn % len(fixture.streams)]
        if RUN.scenario.children:  # round-robin over the parent's children
            self._turn += 1
        first, count = self.seq + 1, RUN.batch
        payloads = [
            json.dumps({"t": time.time_ns(), "p": self.id, "seq": seq,
                        "tok": _WORDS[seq % len(_WORDS)]})
            for seq in range(first, first + count)
        ]  # fmt: skip
        started = time.perf_counter()
        error: Exception | None = None
        try:
            self.send(workflow, task_id, first, payloads)
        except (grpc.RpcError, OSError, IngestRefused) as failure:
            error = failure  # the seqs are reused, so a failed call leaves no hole
        else:
            self.seq = first + count - 1
        elapsed = (time.perf_counter() - started) * 1000
        size = sum(len(p) for p in payloads)
        _fire(self.environment, self.kind, self.call_name(count), elapsed, size, error)

    kind = "gRPC"

    def call_name(self, count: int) -> str:
        return "StreamTaskData" if count == 1 else f"StreamTaskDataBatch x{count}"

    def send(self, workflow: str, task_id: str, first: int, payloads: list[str]) -> None:
        if len(payloads) == 1:
            self.publisher.send(
                "token", payloads[0], workflow_id=workflow, task_id=task_id, sequence=first
            )
            return
        requests = [
            build_request(workflow_id=workflow, task_id=task_id, event_type="token",
                          payload=payload, sequence=first + i)
            for i, payload in enumerate(payloads)
        ]  # fmt: skip
        answer = self.publisher.batch(requests)
        if answer.rejected:
            raise IngestRefused(f"{len(answer.rejected)} rejected: {answer.rejected[0]}")


class IngestRefused(Exception):
    """Events of a batch were rejected, or the HTTP ingest answered with an error status."""


class HttpIngestPublisher(GrpcPublisher):
    """`GrpcPublisher` over HTTP ingest (`--ingest http`): each call POSTs `--batch` NDJSON
    lines to `/api/tenants/{tenant}/task-data`."""

    weight = 0  # only when chosen (the locustfile swaps it in for GrpcPublisher)
    kind = "HTTP"

    def connect(self, fixture: Fixture) -> None:
        self.url = task_data_url(fixture.http_urls[self.slot % len(fixture.http_urls)],
                                 fixture.tenant)  # fmt: skip
        self.headers = {
            "Authorization": f"Bearer {fixture.worker_token}",
            "Content-Type": NDJSON,
        }
        self.session = requests.Session()  # gevent-patched by Locust

    def call_name(self, count: int) -> str:
        return f"task-data x{count}"

    def send(self, workflow: str, task_id: str, first: int, payloads: list[str]) -> None:
        body = ndjson(
            ingest_line("token", payload, workflow_id=workflow, task_id=task_id,
                        sequence=first + i)
            for i, payload in enumerate(payloads)
        )  # fmt: skip
        response = self.session.post(self.url, data=body, headers=self.headers, timeout=10)
        if response.status_code != 200 or response.json().get("rejected"):
            raise IngestRefused(f"HTTP {response.status_code}: {response.text[:200]}")


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
