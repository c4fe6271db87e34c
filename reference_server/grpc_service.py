"""flovyn.v1.TaskExecution/StreamTaskData: authenticate, validate, check ownership, publish."""

from __future__ import annotations

import logging
import time

import grpc

from taskstream_proto import task_streaming_pb2 as pb
from taskstream_proto import task_streaming_pb2_grpc as pb_grpc

from .auth import bearer_token
from .context import ServerContext
from .errors import (
    BusError,
    ErrorCode,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    StreamingError,
    Unauthenticated,
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
    ErrorCode.UNAVAILABLE: grpc.StatusCode.UNAVAILABLE,
}
_ACK = pb.StreamTaskDataResponse(acknowledged=True)


class TaskExecutionService(pb_grpc.TaskExecutionServicer):
    def __init__(self, ctx: ServerContext) -> None:
        self._ctx = ctx
        self._codes = {
            code: ctx.metrics.grpc_requests.labels(code.name) for code in grpc.StatusCode
        }
        self._published = {t: ctx.metrics.events_published.labels(t.name) for t in StreamEventType}

    async def StreamTaskData(
        self, request: pb.StreamTaskDataRequest, context: grpc.aio.ServicerContext[
            pb.StreamTaskDataRequest, pb.StreamTaskDataResponse]
    ) -> pb.StreamTaskDataResponse:  # fmt: skip
        try:
            event = await self._accept(request, context)
        except StreamingError as error:
            code = GRPC_STATUS[error.code]
            self._codes[code].inc()
            log.info("StreamTaskData refused", extra={"code": code.name, "reason": error.detail})
            await context.abort(code, error.detail)
        try:
            await self._ctx.bus.publish(event)
        except BusError as error:
            # Fire-and-forget: the worker must not stall on the bus; the loss is counted.
            self._ctx.metrics.publish_errors.inc()
            log.warning("publish failed", extra={"reason": str(error)})
        else:
            self._published[event.event_type].inc()
        self._codes[grpc.StatusCode.OK].inc()
        return _ACK

    async def _accept(
        self, request: pb.StreamTaskDataRequest, context: grpc.aio.ServicerContext[
            pb.StreamTaskDataRequest, pb.StreamTaskDataResponse]
    ) -> TaskStreamEvent:  # fmt: skip
        ctx = self._ctx
        metadata = dict(context.invocation_metadata() or ())
        raw = metadata.get("authorization")
        token = bearer_token(raw if isinstance(raw, str) else None)
        principal = await ctx.auth.authenticate(token)
        if principal.kind != "worker":
            raise PermissionDenied(f"a {principal.kind} token cannot publish; use a worker token")
        event_type = StreamEventType.from_proto(request.type)
        if event_type is None:
            raise InvalidArgument(
                f"type must be TOKEN, PROGRESS, DATA or ERROR (got {request.type})"
            )
        if not request.task_execution_id and not request.workflow_execution_id:
            raise InvalidArgument("task_execution_id and workflow_execution_id are both empty")
        if len(request.payload.encode()) > ctx.settings.max_payload_bytes:
            raise InvalidArgument(f"payload exceeds {ctx.settings.max_payload_bytes} bytes (UTF-8)")
        task_id = (
            parse_uuid(request.task_execution_id, "task_execution_id")
            if (request.task_execution_id)
            else None
        )
        if request.workflow_execution_id:
            workflow_id = parse_uuid(request.workflow_execution_id, "workflow_execution_id")
            owner, noun = await ctx.directory.workflow(workflow_id), "workflow"
            what = f"workflow execution {workflow_id}"
        else:
            assert task_id is not None  # both empty was refused above
            owner, noun = await ctx.directory.task(task_id), "task"
            what = f"task execution {task_id}"
        if owner is None:
            raise NotFound(f"{what} not found")
        ctx.policies.publish.check_owner(principal, owner.tenant_id, noun)
        return TaskStreamEvent(
            task_execution_id=request.task_execution_id,
            workflow_execution_id=request.workflow_execution_id,
            sequence=request.sequence,
            event_type=event_type,
            payload=request.payload,
            timestamp_ms=request.timestamp_ms,
            published_at_ms=int(time.time() * 1000),
        )


__all__ = ["GRPC_STATUS", "TaskExecutionService", "Unauthenticated"]
