"""flovyn.v1.TaskExecution: the unary call, batches and client streams, all through the one
validation of `ingest`; this module only speaks gRPC (metadata, statuses, messages)."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any, Generic, TypeVar

import grpc
from google.protobuf.message import DecodeError, Message

from taskstream_proto import task_streaming_pb2 as pb
from taskstream_proto import task_streaming_pb2_grpc as pb_grpc

from . import ingest
from .context import ServerContext
from .errors import InvalidArgument, StreamingError, Unauthenticated
from .ingest import GRPC_STATUS, Rejection

log = logging.getLogger(__name__)
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
            reason = str(error) or type(error).__name__
            return Undecodable(f"not a {message.DESCRIPTOR.name}: {reason}")

    return parse


def decoded(request: M | Undecodable[M]) -> M:
    """The message, or INVALID_ARGUMENT (checked after authentication, like every refusal)."""
    if isinstance(request, Undecodable):
        raise InvalidArgument(f"the request is {request.reason}")
    return request


def add_to_server(service: TaskExecutionService, server: grpc.aio.Server) -> None:
    """Register the service as the generated `add_TaskExecutionServicer_to_server` does, but
    with request deserializers that never raise (see `Undecodable`)."""
    batch = lenient(pb.StreamTaskDataBatchRequest)
    answer = pb.StreamTaskDataBatchResponse.SerializeToString
    handlers = {
        "StreamTaskData": grpc.unary_unary_rpc_method_handler(
            service.StreamTaskData,
            request_deserializer=lenient(pb.StreamTaskDataRequest),
            response_serializer=pb.StreamTaskDataResponse.SerializeToString,
        ),
        "StreamTaskDataBatch": grpc.unary_unary_rpc_method_handler(
            service.StreamTaskDataBatch, request_deserializer=batch, response_serializer=answer
        ),
        "StreamTaskDataStream": grpc.stream_unary_rpc_method_handler(
            service.StreamTaskDataStream, request_deserializer=batch, response_serializer=answer
        ),
    }
    name = pb.DESCRIPTOR.services_by_name["TaskExecution"].full_name
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(name, handlers),))


_ACK = pb.StreamTaskDataResponse(acknowledged=True)
Context = grpc.aio.ServicerContext[pb.StreamTaskDataRequest, pb.StreamTaskDataResponse]
BatchContext = grpc.aio.ServicerContext[
    pb.StreamTaskDataBatchRequest, pb.StreamTaskDataBatchResponse
]


def _authorization(context: grpc.aio.ServicerContext[Any, Any]) -> str | None:
    for key, value in context.invocation_metadata() or ():
        if key == "authorization":
            return value if isinstance(value, str) else None
    return None


class TaskExecutionService(pb_grpc.TaskExecutionServicer):
    def __init__(self, ctx: ServerContext) -> None:
        self._ctx = ctx
        self._codes = {
            code: ctx.metrics.grpc_requests.labels(code.name) for code in grpc.StatusCode
        }

    async def _refuse(
        self, context: grpc.aio.ServicerContext[Any, Any], method: str, error: StreamingError
    ) -> None:
        code = GRPC_STATUS[error.code]
        self._codes[code].inc()
        log.info(f"{method} refused", extra={"code": code.name, "reason": error.detail})
        await context.abort(code, error.detail)

    async def StreamTaskData(
        self, request: pb.StreamTaskDataRequest | Undecodable[Any], context: Context
    ) -> pb.StreamTaskDataResponse:
        ctx = self._ctx
        try:
            principal = await ingest.worker_principal(ctx, _authorization(context))
            lookups = ingest.Lookups(ctx.directory)
            now_ms = int(time.time() * 1000)
            event = await ingest.accept(ctx, principal, decoded(request), lookups, now_ms)
            await ingest.publish(ctx, [event])  # raises only with --publish-ack stored
        except StreamingError as error:
            await self._refuse(context, "StreamTaskData", error)
        self._codes[grpc.StatusCode.OK].inc()
        return _ACK

    async def StreamTaskDataBatch(
        self, request: pb.StreamTaskDataBatchRequest | Undecodable[Any], context: BatchContext
    ) -> pb.StreamTaskDataBatchResponse:
        ctx = self._ctx
        try:
            principal = await ingest.worker_principal(ctx, _authorization(context))
            events = decoded(request).events
            ingest.check_size(ctx, events)
            batch = await ingest.accept_batch(ctx, principal, events)
            await ingest.publish(ctx, batch.events)  # raises only with --publish-ack stored
        except StreamingError as error:
            await self._refuse(context, "StreamTaskDataBatch", error)
        self._codes[grpc.StatusCode.OK].inc()
        return _response(len(batch.events), batch.rejected)

    async def StreamTaskDataStream(
        self,
        request_iterator: AsyncIterator[pb.StreamTaskDataBatchRequest | Undecodable[Any]],
        context: BatchContext,
    ) -> pb.StreamTaskDataBatchResponse:
        ctx = self._ctx
        accepted, index = 0, 0
        rejected: list[Rejection] = []
        try:
            authorization = _authorization(context)
            principal = await ingest.worker_principal(ctx, authorization)
            async for message in request_iterator:
                # Cached, so cheap per message: a token revoked or expired mid-stream ends it.
                principal = await ingest.worker_principal(ctx, authorization)
                events = decoded(message).events
                ingest.check_size(ctx, events)
                batch = await ingest.accept_batch(ctx, principal, events, first_index=index)
                index += len(events)
                # Published before the next message is read: order holds across batches.
                await ingest.publish(ctx, batch.events)
                accepted += len(batch.events)
                rejected.extend(batch.rejected)
        except StreamingError as error:
            await self._refuse(context, "StreamTaskDataStream", error)
        self._codes[grpc.StatusCode.OK].inc()
        return _response(accepted, rejected)


def _response(accepted: int, rejected: list[Rejection]) -> pb.StreamTaskDataBatchResponse:
    return pb.StreamTaskDataBatchResponse(
        accepted=accepted,
        rejected=[
            pb.StreamTaskDataRejection(index=r.index, code=r.code, message=r.message)
            for r in rejected
        ],
    )


__all__ = ["GRPC_STATUS", "TaskExecutionService", "Unauthenticated", "add_to_server"]
