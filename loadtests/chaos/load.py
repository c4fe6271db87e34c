"""Steady load that records what happened: publishers note every event the servers acknowledged
(and every publish that failed), subscribers note every event they received.

A producer publishes `{producer}:{seq}` with a fresh `seq` for every attempt: a failed publish is
never retried with the same payload, so an event delivered twice is a duplicate made by the
system, not by the load. A producer sends through one instance until a call fails, then moves on
to the next. A subscriber starts on its own instance with `?from=start`; when its stream ends,
fails or goes silent (no event and no keep-alive for `stall_after` seconds: a paused instance),
it reconnects to the next instance with `Last-Event-ID`, as a browser behind a load balancer
would.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from dataclasses import dataclass, field

import grpc

from harness.publisher import Publisher
from harness.services import wait_until
from harness.sse_client import SSEStream, StreamClosed


@dataclass(slots=True)
class Record:
    """Everything the load saw, in seconds since `t0` (monotonic)."""

    t0: float = field(default_factory=time.monotonic)
    sent: dict[tuple[str, int], float] = field(default_factory=dict)  # (producer, seq) -> at
    acked: dict[tuple[str, int], tuple[str, float]] = field(default_factory=dict)  # -> stream, at
    # one per event of a failed call: at, producer, code
    publish_errors: list[tuple[float, str, str]] = field(default_factory=list)
    # subscriber -> [(at, producer, seq, cursor)]
    deliveries: dict[str, list[tuple[float, str, int, str]]] = field(default_factory=dict)
    stream_of: dict[str, str] = field(default_factory=dict)  # subscriber -> stream (workflow)
    gaps: dict[str, list[float]] = field(default_factory=dict)  # subscriber -> [at]
    reconnects: dict[str, int] = field(default_factory=dict)
    foreign: int = 0  # events whose data is not ours (must stay 0)

    def now(self) -> float:
        return time.monotonic() - self.t0


@dataclass(frozen=True, slots=True)
class Endpoints:
    http_urls: list[str]
    grpc_addresses: list[str]


class Producer:
    """One producer of one stream: `rate` events/s through a rotating instance, one event per
    call, or `batch` events per StreamTaskDataBatch call (acknowledged only if all are)."""

    def __init__(
        self,
        name: str,
        stream: str,
        endpoints: Endpoints,
        token: str,
        record: Record,
        *,
        rate: float,
        start: int,
        batch: int = 1,
        timeout: float = 2.0,
    ) -> None:
        self.name, self.stream, self.record, self.rate = name, stream, record, rate
        self.batch = batch
        self._publishers = [Publisher(a, token, timeout=timeout) for a in endpoints.grpc_addresses]
        self._index = start % len(self._publishers)

    async def run(self, stop: asyncio.Event) -> None:
        record, loop = self.record, asyncio.get_running_loop()
        period, next_at = self.batch / self.rate, loop.time()
        try:
            for first in itertools.count(1, self.batch):
                if stop.is_set():
                    return
                seqs = range(first, first + self.batch)
                for seq in seqs:
                    record.sent[(self.name, seq)] = record.now()
                try:
                    ok = await self._send(self._publishers[self._index], seqs)
                except grpc.aio.AioRpcError as error:
                    failed_at, code = record.now(), error.code().name
                    record.publish_errors.extend((failed_at, self.name, code) for _ in seqs)
                    self._index = (self._index + 1) % len(self._publishers)
                else:
                    for seq in seqs if ok else ():
                        record.acked[(self.name, seq)] = (self.stream, record.now())
                next_at = max(next_at + period, loop.time())
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(max(0.0, next_at - loop.time())):
                        await stop.wait()
        finally:
            for publisher in self._publishers:
                await publisher.close()

    async def _send(self, publisher: Publisher, seqs: range) -> bool:
        payloads = [f"{self.name}:{seq}" for seq in seqs]
        if self.batch == 1:
            return await publisher.data(payloads[0], workflow_id=self.stream, task_id="")
        requests = [publisher.request("data", p, workflow_id=self.stream) for p in payloads]
        return (await publisher.batch(requests)).accepted == len(requests)


class Subscriber:
    """One SSE subscriber of one stream, resuming on any instance when its stream breaks."""

    def __init__(
        self,
        name: str,
        stream: str,
        endpoints: Endpoints,
        tenant: str,
        token: str,
        record: Record,
        *,
        start: int,
        stall_after: float,
    ) -> None:
        self.name, self.stream, self.record = name, stream, record
        self._urls = [
            f"{base}/api/tenants/{tenant}/stream/workflows/{stream}" for base in endpoints.http_urls
        ]
        self._token = token
        self._index = start % len(self._urls)
        self._stall_after = stall_after
        self.last_id: str | None = None
        self.connected = asyncio.Event()  # the first stream is open
        record.deliveries[name] = []
        record.stream_of[name] = stream
        record.gaps[name] = []
        record.reconnects[name] = 0

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            url = self._urls[self._index]
            if self.last_id is None:
                url += "?from=start"
            try:
                stream = await SSEStream.open(
                    url, token=self._token, last_event_id=self.last_id, timeout=self._stall_after
                )
            except Exception:  # aiohttp raises several unrelated types here
                await self._next_instance(stop)
                continue
            try:
                if stream.status == 200:
                    self.connected.set()
                    await self._read(stream, stop)
            finally:
                await stream.close()
            await self._next_instance(stop)

    async def _next_instance(self, stop: asyncio.Event) -> None:
        self._index = (self._index + 1) % len(self._urls)
        if not stop.is_set():
            self.record.reconnects[self.name] += 1
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(0.1):
                    await stop.wait()

    async def _read(self, stream: SSEStream, stop: asyncio.Event) -> None:
        record, mine = self.record, self.record.deliveries[self.name]
        quiet_since, comments = record.now(), len(stream.comments)
        while not stop.is_set():
            try:
                event = await stream.next_event(timeout=0.5)
            except StreamClosed:
                return
            except TimeoutError:
                if len(stream.comments) != comments:
                    quiet_since, comments = record.now(), len(stream.comments)
                elif record.now() - quiet_since > self._stall_after:
                    return  # a paused instance: nothing, not even keep-alives
                continue
            quiet_since = record.now()
            if event.event == "gap":
                record.gaps[self.name].append(record.now())
                continue
            producer, _, seq = event.data.rpartition(":")
            if not producer or not seq.isdigit():
                record.foreign += 1
                continue
            self.last_id = event.id
            mine.append((record.now(), producer, int(seq), event.id or ""))


def missing(record: Record) -> int:
    """Acknowledged events some subscriber of their stream has not received yet."""
    seen = {name: {(p, s) for _, p, s, _ in d} for name, d in record.deliveries.items()}
    count = 0
    for key, (stream, _) in list(record.acked.items()):
        for name, got in seen.items():
            if record.stream_of[name] == stream and key not in got:
                count += 1
    return count


async def drain(record: Record, within: float) -> int:
    """Wait until every subscriber has every acknowledged event of its stream (or `within`
    seconds); returns how many are still missing."""

    async def complete() -> bool:
        return missing(record) == 0

    with contextlib.suppress(TimeoutError):
        await wait_until(complete, within, "every acknowledged event", interval=0.25)
    return missing(record)
