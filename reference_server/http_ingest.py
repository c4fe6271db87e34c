"""`POST /api/tenants/{tenant}/task-data`: a batch of events as NDJSON, for workers without gRPC
(edge functions, webhooks, curl). Each line is one `StreamTaskDataRequest` in the proto3 JSON
mapping; the events go through the same validation and bus call as a gRPC batch.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web
from google.protobuf import json_format

from taskstream_proto import task_streaming_pb2 as pb

from . import ingest
from .context import CONTEXT
from .errors import BatchTooLarge, InvalidArgument, PermissionDenied
from .http_guard import mark_authenticated
from .ingest import Rejection

NDJSON = "application/x-ndjson"
_INT32 = 2**31
_INT64 = 2**63
# The proto3 JSON names the fast path maps by hand; anything else goes to json_format.
_STRINGS = {
    "taskExecutionId": "task_execution_id",
    "workflowExecutionId": "workflow_execution_id",
    "payload": "payload",
}
_TYPES = dict(pb.StreamEventType.items())


async def post_task_data(request: web.Request) -> web.Response:
    ctx = request.app[CONTEXT]
    principal = await ingest.worker_principal(ctx, request.headers.get("Authorization"))
    mark_authenticated(request)  # the connection no longer counts as unauthenticated
    if principal.tenant_slug != request.match_info["tenant"]:
        raise PermissionDenied("the token belongs to another tenant")
    if request.content_type != NDJSON:
        raise web.HTTPUnsupportedMediaType(text=f"the body must be {NDJSON}, one event per line")
    body = await _read_body(request, ctx.settings.max_batch_bytes)
    lines = [line for line in body.split(b"\n") if line.strip()]
    if len(lines) > ctx.settings.max_batch_events:
        raise BatchTooLarge(
            f"a batch holds at most {ctx.settings.max_batch_events} events (got {len(lines)})"
        )
    requests: list[pb.StreamTaskDataRequest] = []
    positions: list[int] = []  # index in the body of each parsed event
    rejected: list[Rejection] = []
    for index, line in enumerate(lines):
        try:
            requests.append(parse_line(line))
        except InvalidArgument as error:
            rejected.append(Rejection(index, "INVALID_ARGUMENT", error.detail))
        else:
            positions.append(index)
    batch = await ingest.accept_batch(ctx, principal, requests)
    rejected.extend(Rejection(positions[r.index], r.code, r.message) for r in batch.rejected)
    rejected.sort(key=lambda r: r.index)
    await ingest.publish(ctx, batch.events)
    return web.json_response(
        {
            "accepted": len(batch.events),
            "rejected": [
                {"index": r.index, "code": r.code, "message": r.message} for r in rejected
            ],
        }
    )


async def _read_body(request: web.Request, limit: int) -> bytes:
    """The body, refused with 413 as soon as it passes `limit` (not after buffering it all)."""
    if request.content_length is not None and request.content_length > limit:
        raise BatchTooLarge(f"a batch holds at most {limit} bytes (got {request.content_length})")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.content.iter_any():
        size += len(chunk)
        if size > limit:
            raise BatchTooLarge(f"a batch holds at most {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def parse_line(line: bytes) -> pb.StreamTaskDataRequest:
    """One NDJSON line in the proto3 JSON mapping. The common spelling (camelCase names, `type`
    as a name or number, numbers as JSON numbers) is mapped directly; every other spelling the
    mapping allows (original field names, 64-bit numbers as strings, nulls) goes through
    protobuf's own parser, which also produces the error messages."""
    try:
        text = line.decode()
        fast = _fast(json.loads(text))
        if fast is not None:
            return fast
        return json_format.Parse(text, pb.StreamTaskDataRequest())
    except (ValueError, RecursionError, json_format.ParseError) as error:  # incl. Unicode
        raise InvalidArgument(f"not a StreamTaskDataRequest in proto3 JSON: {error}") from None


def _fast(data: Any) -> pb.StreamTaskDataRequest | None:
    if type(data) is not dict:
        return None
    fields: dict[str, Any] = {}
    for key, value in data.items():
        if key in _STRINGS:
            if type(value) is not str:
                return None
            fields[_STRINGS[key]] = value
        elif key == "type":
            if type(value) is str and value in _TYPES:
                fields["type"] = _TYPES[value]
            elif type(value) is int and -_INT32 <= value < _INT32:
                fields["type"] = value
            else:
                return None
        elif key == "sequence":
            if type(value) is not int or not -_INT32 <= value < _INT32:
                return None
            fields["sequence"] = value
        elif key == "timestampMs":
            if type(value) is not int or not -_INT64 <= value < _INT64:
                return None
            fields["timestamp_ms"] = value
        else:
            return None
    return pb.StreamTaskDataRequest(**fields)
