"""gRPC publishers of task events (async for tests, sync for Locust), with typed helpers.

async with Publisher("127.0.0.1:50051", worker_token) as pub:
    await pub.token("hello", workflow_id=wf, task_id=task)
"""

from __future__ import annotations

import collections
import time
from types import TracebackType
from typing import Self

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


class Publisher:
    """Async publisher over one grpc.aio channel; errors surface as `grpc.aio.AioRpcError`."""

    def __init__(self, address: str, credentials: str | None, *, timeout: float = 10.0) -> None:
        self.address = address
        self.credentials = credentials
        self.timeout = timeout
        self._channel = aio_channel(address)
        self._stub = pb_grpc.TaskExecutionStub(self._channel)
        self._sequences = _Sequences()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

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

    async def token(self, payload: str, *, workflow_id: str = "", task_id: str = "") -> bool:
        """A TOKEN event (an LLM token, say)."""
        return await self.send("token", payload, workflow_id=workflow_id, task_id=task_id)

    async def progress(self, payload: str, *, workflow_id: str = "", task_id: str = "") -> bool:
        return await self.send("progress", payload, workflow_id=workflow_id, task_id=task_id)

    async def data(self, payload: str, *, workflow_id: str = "", task_id: str = "") -> bool:
        return await self.send("data", payload, workflow_id=workflow_id, task_id=task_id)

    async def error(self, payload: str, *, workflow_id: str = "", task_id: str = "") -> bool:
        return await self.send("error", payload, workflow_id=workflow_id, task_id=task_id)


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
