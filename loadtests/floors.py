"""The floors: the least a server of each kind can do, measured on the same machine in the same
run as the server under test, so that results are ratios rather than numbers tied to a machine.

    python -m loadtests.floors grpc-ack   # a grpc.aio server that only acknowledges StreamTaskData
    python -m loadtests.floors sse        # an aiohttp server that only writes SSE frames
    python -m loadtests.floors batch      # acks StreamTaskDataBatch and writes its SSE frames

Each prints one line `READY <address>` once it listens (the batch floor: `READY {"grpc": …,
"http": …}`), then serves until SIGTERM/SIGINT.

The batch floor is the least a Python server can do with batched ingest end to end: a grpc.aio
server that takes `StreamTaskDataBatch` calls (no checks at all) and writes each batch's frames
to the subscribers of `GET /stream/{workflow}` in one write per subscriber, in the same process
and event loop, as the reference server does.

The SSE floor holds every `GET /sse` open (idle) and, on `POST /fanout?events=N`, writes N events
to every open stream, one write per event and stream, as fast as it can; the events carry the
same `{"t": <time_ns>, "seq": n}` payload as the bench's publishes, so the same load generator
counts them and measures their latency.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import time
from collections.abc import AsyncIterator, Sequence

import grpc
from aiohttp import web

from taskstream_proto import task_streaming_pb2 as pb
from taskstream_proto import task_streaming_pb2_grpc as pb_grpc

_ACK = pb.StreamTaskDataResponse(acknowledged=True)
_SSE_HEADERS = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
_STREAMS = web.AppKey("streams", set[web.StreamResponse])
_BY_WORKFLOW = web.AppKey("by_workflow", dict[str, set[web.StreamResponse]])
_BatchContext = grpc.aio.ServicerContext[
    pb.StreamTaskDataBatchRequest, pb.StreamTaskDataBatchResponse
]


class _AckOnly(pb_grpc.TaskExecutionServicer):
    async def StreamTaskData(
        self,
        request: pb.StreamTaskDataRequest,
        context: grpc.aio.ServicerContext[pb.StreamTaskDataRequest, pb.StreamTaskDataResponse],
    ) -> pb.StreamTaskDataResponse:
        return _ACK

    async def StreamTaskDataBatch(
        self, request: pb.StreamTaskDataBatchRequest, context: _BatchContext
    ) -> pb.StreamTaskDataBatchResponse:
        return pb.StreamTaskDataBatchResponse(accepted=len(request.events))

    async def StreamTaskDataStream(
        self, request_iterator: AsyncIterator[pb.StreamTaskDataBatchRequest], context: _BatchContext
    ) -> pb.StreamTaskDataBatchResponse:
        accepted = 0
        async for message in request_iterator:
            accepted += (await self.StreamTaskDataBatch(message, context)).accepted
        return pb.StreamTaskDataBatchResponse(accepted=accepted)


class _BatchWriter(_AckOnly):
    """Acks batches and writes their frames to the subscribers of each event's workflow."""

    def __init__(self, streams: dict[str, set[web.StreamResponse]]) -> None:
        self._streams = streams
        self._cursor = 0

    async def StreamTaskDataBatch(
        self, request: pb.StreamTaskDataBatchRequest, context: _BatchContext
    ) -> pb.StreamTaskDataBatchResponse:
        frames: dict[str, list[bytes]] = {}
        for event in request.events:
            self._cursor += 1
            frames.setdefault(event.workflow_execution_id, []).append(
                b"id: %d\nevent: token\ndata: %s\n\n" % (self._cursor, event.payload.encode())
            )
        for workflow, chunks in frames.items():
            data = b"".join(chunks)
            for response in list(self._streams.get(workflow, ())):
                with contextlib.suppress(ConnectionError):
                    await response.write(data)
        return pb.StreamTaskDataBatchResponse(accepted=len(request.events))


async def serve_grpc_ack(host: str, port: int, stop: asyncio.Event) -> None:
    server = grpc.aio.server()
    pb_grpc.add_TaskExecutionServicer_to_server(_AckOnly(), server)
    bound = server.add_insecure_port(f"{host}:{port}")
    await server.start()
    print(f"READY {host}:{bound}", flush=True)
    await stop.wait()
    await server.stop(grace=0.5)


async def _sse(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse(headers=_SSE_HEADERS)
    await response.prepare(request)
    streams = request.app[_STREAMS]
    streams.add(response)
    try:
        await asyncio.Event().wait()  # idle until the client leaves or the server stops
    finally:
        streams.discard(response)
    return response


async def _fanout(request: web.Request) -> web.Response:
    events = int(request.query.get("events", "100"))
    registered = request.app[_STREAMS]
    streams = list(registered)
    started = time.perf_counter()
    for seq in range(1, events + 1):
        frame = f'id: {seq}\nevent: token\ndata: {{"t":{time.time_ns()},"seq":{seq}}}\n\n'.encode()
        for response in streams:
            with contextlib.suppress(ConnectionError):
                await response.write(frame)
    elapsed = time.perf_counter() - started
    return web.json_response({"streams": len(streams), "events": events, "seconds": elapsed})


async def serve_sse(host: str, port: int, stop: asyncio.Event) -> None:
    app = web.Application()
    app[_STREAMS] = set()
    app.router.add_get("/sse", _sse)
    app.router.add_post("/fanout", _fanout)
    runner = web.AppRunner(app, handler_cancellation=True, access_log=None, shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, host, port, backlog=1024)
    await site.start()
    bound = runner.addresses[0][1]
    print(f"READY http://{host}:{bound}", flush=True)
    await stop.wait()
    await runner.cleanup()


async def _stream(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse(headers=_SSE_HEADERS)
    await response.prepare(request)
    subscribers = request.app[_BY_WORKFLOW].setdefault(request.match_info["workflow"], set())
    subscribers.add(response)
    try:
        await asyncio.Event().wait()  # written to by the gRPC handler until the client leaves
    finally:
        subscribers.discard(response)
    return response


async def serve_batch(host: str, port: int, stop: asyncio.Event) -> None:
    app = web.Application()
    app[_BY_WORKFLOW] = {}
    app.router.add_get("/stream/{workflow}", _stream)
    runner = web.AppRunner(app, handler_cancellation=True, access_log=None, shutdown_timeout=0.5)
    await runner.setup()
    await web.TCPSite(runner, host, 0, backlog=1024).start()
    server = grpc.aio.server()
    pb_grpc.add_TaskExecutionServicer_to_server(_BatchWriter(app[_BY_WORKFLOW]), server)
    bound = server.add_insecure_port(f"{host}:{port}")
    await server.start()
    http = f"http://{host}:{runner.addresses[0][1]}"
    print(f'READY {{"grpc": "{host}:{bound}", "http": "{http}"}}', flush=True)
    await stop.wait()
    await server.stop(grace=0.5)
    await runner.cleanup()


async def _main(kind: str, host: str, port: int) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    if kind == "grpc-ack":
        await serve_grpc_ack(host, port, stop)
    elif kind == "batch":
        await serve_batch(host, port, stop)
    else:
        await serve_sse(host, port, stop)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m loadtests.floors", description=__doc__)
    parser.add_argument("kind", choices=["grpc-ack", "sse", "batch"])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    asyncio.run(_main(args.kind, args.host, args.port))


if __name__ == "__main__":
    main()
