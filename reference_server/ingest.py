"""Accepting worker events: the one validation every ingest path shares (unary, batch, client
stream, HTTP NDJSON), so that a rule added here applies to all four at once.

A batch is validated event by event exactly as the unary call validates one event; a bad event
becomes a `Rejection` (its index and the gRPC status name the unary call would have returned)
and the others go to the bus together, in order. Ownership answers come from the directory's
cache, and within one batch each distinct id is looked up once, so a batch of 50 events of one
workflow costs one lookup, and a cached workflow none at all in PostgreSQL.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field

import grpc

from taskstream_proto import task_streaming_pb2 as pb

from .auth import Principal, bearer_token
from .context import ServerContext
from .directory import Directory, Owner
from .errors import (
    BatchTooLarge,
    BusError,
    ErrorCode,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    StreamingError,
    Unavailable,
)
from .events import StreamEventType, TaskStreamEvent
from .ids import parse_uuid

log = logging.getLogger(__name__)

GRPC_STATUS = {
    ErrorCode.UNAUTHENTICATED: grpc.StatusCode.UNAUTHENTICATED,
    ErrorCode.PERMISSION_DENIED: grpc.StatusCode.PERMISSION_DENIED,
    ErrorCode.INVALID_ARGUMENT: grpc.StatusCode.INVALID_ARGUMENT,
    ErrorCode.NOT_FOUND: grpc.StatusCode.NOT_FOUND,
    ErrorCode.CONFLICT: grpc.StatusCode.ALREADY_EXISTS,
    ErrorCode.PAYLOAD_TOO_LARGE: grpc.StatusCode.INVALID_ARGUMENT,
    ErrorCode.RESOURCE_EXHAUSTED: grpc.StatusCode.RESOURCE_EXHAUSTED,
    ErrorCode.BATCH_TOO_LARGE: grpc.StatusCode.RESOURCE_EXHAUSTED,
    ErrorCode.UNAVAILABLE: grpc.StatusCode.UNAVAILABLE,
}
"""The one table from error codes to gRPC statuses (rejections carry the status's name)."""


@dataclass(frozen=True, slots=True)
class Rejection:
    """An event of a batch that was refused; `code` is a gRPC status name (`NOT_FOUND`)."""

    index: int
    code: str
    message: str


@dataclass(slots=True)
class Batch:
    """What validation made of a batch: the events to publish (in order) and the refusals."""

    events: list[TaskStreamEvent] = field(default_factory=list)
    rejected: list[Rejection] = field(default_factory=list)


class Lookups:
    """Ownership answers for one batch: each distinct id reaches the directory once. Misses are
    kept only for the batch (the execution may be created a moment later)."""

    __slots__ = ("_directory", "_labels", "_tasks", "_workflows")

    def __init__(self, directory: Directory) -> None:
        self._directory = directory
        self._workflows: dict[uuid.UUID, Owner | None] = {}
        self._tasks: dict[uuid.UUID, Owner | None] = {}
        self._labels: dict[uuid.UUID, Owner | None] = {}

    async def workflow(self, workflow_id: uuid.UUID) -> Owner | None:
        if workflow_id in self._workflows:
            return self._workflows[workflow_id]
        owner = self._workflows[workflow_id] = await self._directory.workflow(workflow_id)
        return owner

    async def task(self, task_id: uuid.UUID) -> Owner | None:
        if task_id in self._tasks:
            return self._tasks[task_id]
        owner = self._tasks[task_id] = await self._directory.task(task_id)
        return owner

    async def task_label(self, task_id: uuid.UUID) -> Owner | None:
        """The task a workflow event's task id names, if any (see `Directory.task_label`)."""
        if task_id in self._labels:
            return self._labels[task_id]
        owner = self._labels[task_id] = await self._directory.task_label(task_id)
        return owner


async def worker_principal(ctx: ServerContext, authorization: str | None) -> Principal:
    """Authenticate the caller of an ingest call; only worker tokens publish."""
    principal = await ctx.auth.authenticate(bearer_token(authorization))
    if principal.kind != "worker":
        raise PermissionDenied(f"a {principal.kind} token cannot publish; use a worker token")
    return principal


async def accept(
    ctx: ServerContext,
    principal: Principal,
    request: pb.StreamTaskDataRequest,
    lookups: Lookups,
    accepted_at_ms: int,
) -> TaskStreamEvent:
    """Validate one event (type, ids, payload limit, existence, tenant) for `principal`; raises
    the StreamingError the unary call answers with. Every ingest path calls this."""
    event_type = StreamEventType.from_proto(request.type)
    if event_type is None:
        raise InvalidArgument(f"type must be TOKEN, PROGRESS, DATA or ERROR (got {request.type})")
    task_raw, workflow_raw = request.task_execution_id, request.workflow_execution_id
    if not task_raw and not workflow_raw:
        raise InvalidArgument("task_execution_id and workflow_execution_id are both empty")
    payload = request.payload
    limit = ctx.settings.max_payload_bytes
    # A character is at most 4 UTF-8 bytes: most payloads are measured without encoding them.
    if len(payload) * 4 > limit and len(payload.encode()) > limit:
        raise InvalidArgument(f"payload exceeds {limit} bytes (UTF-8)")
    task_id = parse_uuid(task_raw, "task_execution_id") if task_raw else None
    workflow_id = parse_uuid(workflow_raw, "workflow_execution_id") if workflow_raw else None
    if workflow_id is not None:
        target, noun = workflow_id, "workflow"
        owner = await lookups.workflow(workflow_id)
    else:
        assert task_id is not None  # both empty was refused above
        target, noun = task_id, "task"
        owner = await lookups.task(task_id)
    if owner is None:
        raise NotFound(f"{noun} execution {target} not found")
    publish = ctx.policies.publish
    publish.check_owner(principal, owner.tenant_id, noun)
    if workflow_id is not None and task_id is not None:
        # Misses are cached (`task_label`): the hot path stays free of queries.
        publish.check_task_label(await lookups.task_label(task_id), workflow_id)
    return TaskStreamEvent(
        task_execution_id=task_raw,
        workflow_execution_id=workflow_raw,
        sequence=request.sequence,
        event_type=event_type,
        payload=payload,
        timestamp_ms=request.timestamp_ms,
        published_at_ms=accepted_at_ms,
    )


def check_size(ctx: ServerContext, requests: Sequence[pb.StreamTaskDataRequest]) -> None:
    """The per-batch limits; over them nothing of the batch is delivered."""
    settings = ctx.settings
    if len(requests) > settings.max_batch_events:
        raise BatchTooLarge(
            f"a batch holds at most {settings.max_batch_events} events (got {len(requests)})"
        )
    size = sum(request.ByteSize() for request in requests)
    if size > settings.max_batch_bytes:
        raise BatchTooLarge(f"a batch holds at most {settings.max_batch_bytes} bytes (got {size})")


async def accept_batch(
    ctx: ServerContext,
    principal: Principal,
    requests: Sequence[pb.StreamTaskDataRequest],
    *,
    first_index: int = 0,
) -> Batch:
    """Validate every event of a batch with `accept`; indexes start at `first_index` (a stream
    numbers events across its batches)."""
    batch = Batch()
    lookups = Lookups(ctx.directory)
    now_ms = int(time.time() * 1000)
    for index, request in enumerate(requests, first_index):
        try:
            batch.events.append(await accept(ctx, principal, request, lookups, now_ms))
        except StreamingError as error:
            batch.rejected.append(Rejection(index, GRPC_STATUS[error.code].name, error.detail))
    return batch


async def publish(ctx: ServerContext, events: list[TaskStreamEvent]) -> None:
    """Hand accepted events to the bus in one call. Like the unary call this is fire-and-forget
    for the worker: a bus failure is counted and logged, never turned into a refusal, unless
    the server runs with `--publish-ack stored` (SPEC.md section 3): then it raises
    `Unavailable`, and the worker retries the call (some of a batch may have been stored)."""
    if not events:
        return
    try:
        if len(events) == 1:
            await ctx.bus.publish(events[0])  # the unary path, as lean as before batches
        else:
            await ctx.bus.publish_many(events)
    except BusError as error:
        ctx.metrics.publish_errors.inc(len(events))
        log.warning("publish failed", extra={"reason": str(error), "events": len(events)})
        if ctx.settings.publish_ack == "stored":
            raise Unavailable(f"the bus did not store the events; retry: {error}") from error
        return
    counter = ctx.metrics.events_published
    counts: dict[StreamEventType, int] = {}
    for event in events:
        counts[event.event_type] = counts.get(event.event_type, 0) + 1
    for event_type, n in counts.items():
        counter.labels(event_type.name).inc(n)
