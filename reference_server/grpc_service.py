"""flovyn.v1.TaskExecution/StreamTaskData: authenticate, validate, check ownership, publish."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Generic, TypeVar

import grpc
from google.protobuf.message import DecodeError, Message

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
M = TypeVar("M", bound=Message)


class Undecodable(Generic[M]):
    """Request bytes that are not a `M` message. grpc.aio decodes before the handler runs and
    turns a decoder exception into `UNKNOWN` with an ERROR traceback; a deserializer that
    returns this instead lets the handler answer `INVALID_ARGUMENT`, counted like any refusal."""

    __slots__ = ("reason",)

    def __init__(self, reason: str) -> None:
        self.reason = reason


def lenient(message: type[M]) -> Callable[[bytes], M | Undecodable[M]]:
    """A request deserializer for `message` that never raises."""

    def parse(raw: bytes) -> M | Undecodable[M]:
        try:
            return message.FromString(raw)
        except (DecodeError, RecursionError, ValueError) as error:
            return Undecodable(str(error) or type(error).__name__)

    return parse


_Request = pb.StreamTaskDataRequest | Undecodable[pb.StreamTaskDataRequest]
_Context = grpc.aio.ServicerContext[pb.StreamTaskDataRequest, pb.StreamTaskDataResponse]


def add_to_server(service: TaskExecutionService, server: grpc.aio.Server) -> None:
    """Register the service as the generated `add_TaskExecutionServicer_to_server` does, but
    with request deserializers that never raise (see `Undecodable`)."""
    handlers = {
        "StreamTaskData": grpc.unary_unary_rpc_method_handler(
            service.StreamTaskData,
            request_deserializer=lenient(pb.StreamTaskDataRequest),
            response_serializer=pb.StreamTaskDataResponse.SerializeToString,
        ),
    }
    name = pb.DESCRIPTOR.services_by_name["TaskExecution"].full_name
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(name, handlers),))


class TaskExecutionService(pb_grpc.TaskExecutionServicer):
    def __init__(self, ctx: ServerContext) -> None:
        self._ctx = ctx
        self._codes = {
            code: ctx.metrics.grpc_requests.labels(code.name) for code in grpc.StatusCode
        }
        self._published = {t: ctx.metrics.events_published.labels(t.name) for t in StreamEventType}

    async def StreamTaskData(
        self, request: _Request, context: _Context
    ) -> pb.StreamTaskDataResponse:
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

    async def _accept(self, request: _Request, context: _Context) -> TaskStreamEvent:
        ctx = self._ctx
        metadata = dict(context.invocation_metadata() or ())
        raw = metadata.get("authorization")
        token = bearer_token(raw if isinstance(raw, str) else None)
        principal = await ctx.auth.authenticate(token)
        if principal.kind != "worker":
            raise PermissionDenied(f"a {principal.kind} token cannot publish; use a worker token")
        if isinstance(request, Undecodable):
            raise InvalidArgument(f"the request is not a StreamTaskDataRequest: {request.reason}")
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
            if request.task_execution_id
            else None
        )
        if request.workflow_execution_id:
            workflow_id = parse_uuid(request.workflow_execution_id, "workflow_execution_id")
            owner, noun = await ctx.directory.workflow(workflow_id), "workflow"
            what = f"workflow execution {workflow_id}"
        else:
            assert task_id is not None  # both empty was refused above
            workflow_id = None
            owner, noun = await ctx.directory.task(task_id), "task"
            what = f"task execution {task_id}"
        if owner is None:
            raise NotFound(f"{what} not found")
        publish = ctx.policies.publish
        publish.check_owner(principal, owner.tenant_id, noun)
        if workflow_id is not None and task_id is not None:
            # Misses are cached (`task_label`): the hot path stays free of queries.
            publish.check_task_label(await ctx.directory.task_label(task_id), workflow_id)
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
