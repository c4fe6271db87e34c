"""gRPC publishers of task events (async for tests, sync for Locust), with typed helpers.

async with Publisher("127.0.0.1:50051", worker_token) as pub:
    await pub.token("hello", workflow_id=wf, task_id=task)
    ack = await pub.batch([pub.request("token", t, workflow_id=wf, task_id=task) for t in "abc"])
    async with pub.stream(flush_events=50, flush_ms=20) as s:  # the way an SDK would buffer
        await s.token("hello", workflow_id=wf, task_id=task)
"""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Self

import grpc

from harness.closing import AsyncClosing
from harness.wire.grpc_calls import aio_channel, sync_channel
from taskstream_proto import task_streaming_pb2 as pb
from taskstream_proto import task_streaming_pb2_grpc as pb_grpc

EVENT_TYPES = {"token": pb.TOKEN, "progress": pb.PROGRESS, "data": pb.DATA, "error": pb.ERROR}


def build_request(
    *,
    workflow_id: str,
    task_id: str,
    event_type: int | str,
    payload: str,
    sequence: int,
    timestamp_ms: int | None = None,
) -> pb.StreamTaskDataRequest:
    kind = EVENT_TYPES[event_type.lower()] if isinstance(event_type, str) else event_type
    return pb.StreamTaskDataRequest(
        task_execution_id=task_id,
        workflow_execution_id=workflow_id,
        sequence=sequence,
        type=kind,  # type: ignore[arg-type]  # out-of-range values are for negative tests
        payload=payload,
        timestamp_ms=int(time.time() * 1000) if timestamp_ms is None else timestamp_ms,
    )


@dataclass(frozen=True, slots=True)
class BatchAck:
    """The answer to a batch or a stream: events accepted, and (index, code, message) of each
    refused one."""

    accepted: int
    rejected: list[tuple[int, str, str]]

    @classmethod
    def from_proto(cls, response: pb.StreamTaskDataBatchResponse) -> BatchAck:
        return cls(
            int(response.accepted), [(r.index, r.code, r.message) for r in response.rejected]
        )


def batch_request(requests: Sequence[pb.StreamTaskDataRequest]) -> pb.StreamTaskDataBatchRequest:
    return pb.StreamTaskDataBatchRequest(events=list(requests))


class _Sequences:
    """Per-task auto-incrementing `sequence`, as a worker SDK would assign it."""

    def __init__(self) -> None:
        self._next: collections.Counter[str] = collections.Counter()

    def next(self, task_id: str) -> int:
        self._next[task_id] += 1
        return self._next[task_id]

    def request(
        self,
        event_type: int | str,
        payload: str,
        workflow_id: str,
        task_id: str,
        sequence: int | None,
        timestamp_ms: int | None,
    ) -> pb.StreamTaskDataRequest:
        """A request with the next sequence of its task unless one is given."""
        return build_request(
            workflow_id=workflow_id,
            task_id=task_id,
            event_type=event_type,
            payload=payload,
            sequence=self.next(task_id) if sequence is None else sequence,
            timestamp_ms=timestamp_ms,
        )


class Publisher(AsyncClosing):
    """Async publisher over one grpc.aio channel; errors surface as `grpc.aio.AioRpcError`.

    Its calls are observable (`harness.wire.observe`) unless `observed=False`: the bench's load
    generators opt out, so that they measure the server with a bare channel.
    """

    def __init__(
        self,
        address: str,
        credentials: str | None,
        *,
        timeout: float = 10.0,
        observed: bool = True,
    ) -> None:
        self.address = address
        self.credentials = credentials
        self.timeout = timeout
        self._channel = aio_channel(address, observed=observed)
        self._stub = pb_grpc.TaskExecutionStub(self._channel)
        self._sequences = _Sequences()

    async def close(self) -> None:
        await self._channel.close(None)

    def _metadata(self, token: str | None) -> list[tuple[str, str]]:
        token = self.credentials if token is None else token
        return [("authorization", f"Bearer {token}")] if token else []

    async def send(
        self,
        event_type: int | str,
        payload: str,
        *,
        workflow_id: str = "",
        task_id: str = "",
        sequence: int | None = None,
        timestamp_ms: int | None = None,
        token: str | None = None,
        metadata: list[tuple[str, str]] | None = None,
    ) -> bool:
        """Send one event; returns the server's `acknowledged`."""
        request = self._sequences.request(
            event_type, payload, workflow_id, task_id, sequence, timestamp_ms
        )
        return await self.send_request(request, token=token, metadata=metadata)

    async def send_request(
        self,
        request: pb.StreamTaskDataRequest,
        *,
        token: str | None = None,
        metadata: list[tuple[str, str]] | None = None,
    ) -> bool:
        md = self._metadata(token) if metadata is None else metadata
        response = await self._stub.StreamTaskData(request, metadata=md, timeout=self.timeout)
        return bool(response.acknowledged)

    def request(
        self,
        event_type: int | str,
        payload: str,
        *,
        workflow_id: str = "",
        task_id: str = "",
        sequence: int | None = None,
        timestamp_ms: int | None = None,
    ) -> pb.StreamTaskDataRequest:
        """One event for `batch`, with the next sequence of its task unless one is given."""
        return self._sequences.request(
            event_type, payload, workflow_id, task_id, sequence, timestamp_ms
        )

    async def batch(
        self,
        requests: Sequence[pb.StreamTaskDataRequest],
        *,
        token: str | None = None,
        metadata: list[tuple[str, str]] | None = None,
    ) -> BatchAck:
        """Publish events in one StreamTaskDataBatch call."""
        md = self._metadata(token) if metadata is None else metadata
        response = await self._stub.StreamTaskDataBatch(
            batch_request(requests), metadata=md, timeout=self.timeout
        )
        return BatchAck.from_proto(response)

    def stream(
        self,
        *,
        flush_events: int = 50,
        flush_ms: float = 20.0,
        token: str | None = None,
        metadata: list[tuple[str, str]] | None = None,
    ) -> BufferedStream:
        """A buffered producer over one StreamTaskDataStream call: events go out every
        `flush_events` events or `flush_ms` milliseconds, whichever comes first; leaving the
        block flushes, closes the call and sets `result`."""
        md = self._metadata(token) if metadata is None else metadata
        return BufferedStream(self, md, flush_events, flush_ms / 1000)

    async def token(self, payload: str, *, workflow_id: str = "", task_id: str = "") -> bool:
        """A TOKEN event (an LLM token, say)."""
        return await self.send("token", payload, workflow_id=workflow_id, task_id=task_id)

    async def progress(self, payload: str, *, workflow_id: str = "", task_id: str = "") -> bool:
        return await self.send("progress", payload, workflow_id=workflow_id, task_id=task_id)

    async def data(self, payload: str, *, workflow_id: str = "", task_id: str = "") -> bool:
        return await self.send("data", payload, workflow_id=workflow_id, task_id=task_id)

    async def error(self, payload: str, *, workflow_id: str = "", task_id: str = "") -> bool:
        return await self.send("error", payload, workflow_id=workflow_id, task_id=task_id)


class BufferedStream:
    """See `Publisher.stream`. Errors of the call (an auth failure, a batch over the limits)
    surface as `grpc.aio.AioRpcError` from the next `send` or from leaving the block."""

    def __init__(
        self, publisher: Publisher, metadata: list[tuple[str, str]], size: int, interval: float
    ) -> None:
        self._publisher = publisher
        self._metadata = metadata
        self._size = size
        self._interval = interval
        self._buffer: list[pb.StreamTaskDataRequest] = []
        self._call: grpc.aio.StreamUnaryCall[
            pb.StreamTaskDataBatchRequest, pb.StreamTaskDataBatchResponse
        ] | None = None  # fmt: skip
        self._timer: asyncio.TimerHandle | None = None
        self._flushing: asyncio.Task[None] | None = None
        self.result: BatchAck | None = None
        self.batches = 0

    async def __aenter__(self) -> Self:
        # Without a request iterator grpc.aio lets the caller `write` (the stubs miss that form).
        self._call = self._publisher._stub.StreamTaskDataStream(  # type: ignore[call-arg]
            metadata=self._metadata
        )
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._call is not None
        if exc is not None:
            self._call.cancel()
            return
        await self.flush()
        await self._call.done_writing()
        self.result = BatchAck.from_proto(await self._call)

    async def send(
        self,
        event_type: int | str,
        payload: str,
        *,
        workflow_id: str = "",
        task_id: str = "",
        sequence: int | None = None,
    ) -> None:
        """Buffer one event; flushes when the buffer is full."""
        self._buffer.append(
            self._publisher.request(
                event_type, payload, workflow_id=workflow_id, task_id=task_id, sequence=sequence
            )
        )
        if len(self._buffer) >= self._size:
            await self.flush()
        elif self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self._interval, self._on_timer)

    async def token(self, payload: str, *, workflow_id: str = "", task_id: str = "") -> None:
        await self.send("token", payload, workflow_id=workflow_id, task_id=task_id)

    async def progress(self, payload: str, *, workflow_id: str = "", task_id: str = "") -> None:
        await self.send("progress", payload, workflow_id=workflow_id, task_id=task_id)

    def _on_timer(self) -> None:
        self._timer = None
        if self._flushing is None or self._flushing.done():
            self._flushing = asyncio.ensure_future(self.flush())

    async def flush(self) -> None:
        """Send what is buffered as one batch (in order with earlier ones)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._flushing is not None and asyncio.current_task() is not self._flushing:
            await self._flushing  # a timer flush in progress goes first: order is kept
        if not self._buffer:
            return
        assert self._call is not None
        events, self._buffer = self._buffer, []
        self.batches += 1
        try:
            await self._call.write(batch_request(events))
        except (grpc.aio.AioRpcError, asyncio.InvalidStateError):
            await self._call  # the server ended the call: raise its status, not the write's
            raise


class SyncPublisher:
    """Blocking publisher (for Locust with `grpc.experimental.gevent.init_gevent()`)."""

    def __init__(self, address: str, credentials: str | None, *, timeout: float = 10.0) -> None:
        self.address = address
        self.credentials = credentials
        self.timeout = timeout
        self._channel = sync_channel(address)
        self._stub = pb_grpc.TaskExecutionStub(self._channel)
        self._sequences = _Sequences()

    def close(self) -> None:
        self._channel.close()

    def send(
        self,
        event_type: int | str,
        payload: str,
        *,
        workflow_id: str = "",
        task_id: str = "",
        sequence: int | None = None,
        timestamp_ms: int | None = None,
    ) -> bool:
        request = self._sequences.request(
            event_type, payload, workflow_id, task_id, sequence, timestamp_ms
        )
        md = [("authorization", f"Bearer {self.credentials}")] if self.credentials else []
        response = self._stub.StreamTaskData(request, metadata=tuple(md), timeout=self.timeout)
        return bool(response.acknowledged)

    def batch(self, requests: Sequence[pb.StreamTaskDataRequest]) -> BatchAck:
        """Publish events in one StreamTaskDataBatch call."""
        md = [("authorization", f"Bearer {self.credentials}")] if self.credentials else []
        response = self._stub.StreamTaskDataBatch(
            batch_request(requests), metadata=tuple(md), timeout=self.timeout
        )
        return BatchAck.from_proto(response)

    def request(
        self, event_type: int | str, payload: str, *, workflow_id: str = "", task_id: str = ""
    ) -> pb.StreamTaskDataRequest:
        """One event for `batch`, with the next sequence of its task."""
        return self._sequences.request(event_type, payload, workflow_id, task_id, None, None)
