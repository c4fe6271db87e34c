"""Load generator processes of the bench, one role per process so the server under test keeps
its own core.

    python -m loadtests.loadgen ROLE 'JSON config'

Protocol with the bench (line based): the process sets up (connections open, subscriptions
live), prints `READY {json}`, then obeys commands on stdin: `go` (publishers start), `reset`
(subscribers zero their counters), `stop` (finish); it ends with one line `RESULT {json}`.
Publishers also finish on their own once their duration or count is done; every role has a
hard deadline (`max_seconds`) so that nothing outlives a crashed bench. Subscribers use the
counting client of `harness.wire.counting` (see `sse_count`).
"""

from __future__ import annotations

import array
import asyncio
import itertools
import json
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

import grpc

from harness.publisher import Publisher, build_request
from harness.wire.stalled import StalledReader

from .sse_count import Receipts, open_many, percentiles

Config = dict[str, Any]


async def role_subscribe(cfg: Config, commands: asyncio.StreamReader) -> dict[str, Any]:
    """Hold SSE streams and count what arrives (see `_count_until_done` for the commands)."""
    receipts = Receipts(latencies=bool(cfg.get("latencies", True)))
    urls: list[str] = cfg["urls"]
    count = int(cfg.get("connections", len(urls)))
    concurrency = int(cfg.get("open_concurrency", 64))
    conns, errors = await open_many(urls, cfg.get("token"), count, receipts, concurrency)
    _ready({"open": len(conns), "errors": errors[:5], "failed": len(errors)})
    await _count_until_done(receipts, commands, cfg)
    result = receipts.summary() | {"open": len(conns), "failed": len(errors)}
    for conn in conns:
        conn.close()
    return result


async def _count_until_done(
    receipts: Receipts, commands: asyncio.StreamReader, cfg: Config
) -> None:
    """`reset` zeroes the counters; `stop` ends; `wait [N]` ends once N events arrived or none
    arrived for `idle_seconds`."""
    async for command in _commands(commands, cfg):
        if command == "reset":
            receipts.reset()
        elif command.startswith("wait"):
            expected = int(command.split()[1]) if " " in command else None
            await _settle(receipts, expected, float(cfg.get("idle_seconds", 1.0)))
            return
        elif command == "stop":
            return


async def _settle(receipts: Receipts, expected: int | None, idle: float) -> None:
    """Until `expected` events arrived, or none arrived for `idle` seconds (at most 120 s)."""
    started = time.monotonic()
    while (now := time.monotonic()) - started < 120:
        if expected is not None and receipts.events >= expected:
            return
        if now - max(receipts.last, started) > idle:
            return
        await asyncio.sleep(0.02)


async def role_stall(cfg: Config, commands: asyncio.StreamReader) -> dict[str, Any]:
    """One subscriber that stops reading after the headers. At `stop`, report whether the server
    dropped it (the contract: a slow subscriber is disconnected, never buffered without bound)."""
    stalled = await StalledReader.open(cfg["urls"][0], cfg.get("token"), timeout=30)
    if stalled.status != 200:
        stalled.close()
        raise ConnectionError(f"{cfg['urls'][0]}: HTTP {stalled.status}")
    _ready({"open": 1})
    async for command in _commands(commands, cfg):
        if command == "stop":
            break
    # Read what is buffered; an evicted stream then ends.
    drained = await stalled.drain(timeout=float(cfg.get("drain_seconds", 5)))
    stalled.close()
    return {"evicted": drained.ended, "bytes_received": stalled.received}


# -- gRPC publishers ------------------------------------------------------------------------------


async def role_publish(cfg: Config, commands: asyncio.StreamReader) -> dict[str, Any]:
    """StreamTaskData calls over `streams` ([workflow, task] pairs), round-robin; with `batch`
    N > 1, StreamTaskDataBatch calls of N events each, all of one stream (a worker batching
    its task's tokens). Counts are in events either way.

    mode `max`: `concurrency` calls in flight in a closed loop for `duration` s (or `events`).
    mode `rate`: open loop at `rate` events/s for `duration` s; call latencies are recorded.
    """
    streams: list[list[str]] = cfg["streams"]
    batch = max(1, int(cfg.get("batch", 1)))
    async with Publisher(cfg["grpc"], cfg.get("token"), timeout=10.0, observed=False) as pub:
        for workflow, task in streams[: int(cfg.get("warmup", 8))]:  # channel, caches
            await _call(pub, workflow, task, 0, batch)
        _ready({"streams": len(streams), "batch": batch})
        async for command in _commands(commands, cfg):
            if command == "go":
                break
            if command == "stop":
                return {"sent": 0}
        if cfg.get("mode", "max") == "max":
            return await _closed_loop(pub, cfg, streams)
        return await _open_loop(pub, cfg, streams)


async def _call(pub: Publisher, workflow: str, task: str, seq: int, batch: int = 1) -> None:
    """One call: a unary event, or a batch of `batch` events numbered from `seq`."""
    if batch == 1:
        await pub.send_request(_request(workflow, task, seq))
        return
    answer = await pub.batch([_request(workflow, task, seq + i) for i in range(batch)])
    if answer.rejected:
        _index, code, message = answer.rejected[0]
        raise _Refused(f"{code}: {message}")


def _request(workflow: str, task: str, seq: int) -> Any:
    payload = f'{{"t":{time.time_ns()},"seq":{seq}}}'
    return build_request(
        workflow_id=workflow, task_id=task, event_type="token", payload=payload, sequence=seq
    )


class _Refused(Exception):
    """A batch came back with rejections (counted like a failed call)."""


class _Tally:
    def __init__(self) -> None:
        self.cpu_at_start = time.process_time()
        self.sent = 0
        self.errors: dict[str, int] = {}
        self.latencies: array.array[int] = array.array("q")

    async def call(
        self, pub: Publisher, workflow: str, task: str, seq: int, batch: int = 1
    ) -> None:
        started = time.perf_counter_ns()
        try:
            await _call(pub, workflow, task, seq, batch)
        except (grpc.aio.AioRpcError, _Refused) as error:
            code = error.code().name if isinstance(error, grpc.aio.AioRpcError) else "REJECTED"
            self.errors[code] = self.errors.get(code, 0) + 1
        else:
            self.sent += batch
            self.latencies.append(time.perf_counter_ns() - started)

    def summary(self, seconds: float, **extra: Any) -> dict[str, Any]:
        return {
            "sent": self.sent,
            "errors": self.errors,
            "seconds": seconds,
            "per_second": self.sent / seconds if seconds > 0 else 0.0,
            "cpu_seconds": time.process_time() - self.cpu_at_start,
            "call_latency_ms": percentiles(self.latencies),
            **extra,
        }


async def _closed_loop(pub: Publisher, cfg: Config, streams: list[list[str]]) -> dict[str, Any]:
    tally = _Tally()
    limit = int(cfg.get("events", 0)) or None
    deadline = time.monotonic() + float(cfg.get("duration", 5))
    batch = max(1, int(cfg.get("batch", 1)))
    sequence = itertools.count(1, batch)

    async def worker(offset: int) -> None:
        i = offset
        while time.monotonic() < deadline:
            seq = next(sequence)
            if limit is not None and seq > limit:
                return
            workflow, task = streams[i % len(streams)]
            await tally.call(pub, workflow, task, seq, batch)
            i += 1

    started = time.monotonic()
    await asyncio.gather(*(worker(k) for k in range(int(cfg.get("concurrency", 32)))))
    return tally.summary(time.monotonic() - started)


async def _open_loop(pub: Publisher, cfg: Config, streams: list[list[str]]) -> dict[str, Any]:
    tally = _Tally()
    batch = max(1, int(cfg.get("batch", 1)))
    rate = float(cfg["rate"]) / batch  # calls/s that offer `rate` events/s
    total = int(rate * float(cfg.get("duration", 5)))
    max_inflight = int(cfg.get("max_inflight", 2000))
    inflight: set[asyncio.Task[None]] = set()
    skipped = 0
    loop = asyncio.get_running_loop()
    started = loop.time()
    for i in range(total):
        delay = started + i / rate - loop.time()
        if delay > 0.001:
            await asyncio.sleep(delay)
        if len(inflight) >= max_inflight:
            skipped += 1  # the target cannot keep up: counted, not queued without bound
            continue
        workflow, task = streams[i % len(streams)]
        job = asyncio.create_task(tally.call(pub, workflow, task, i * batch + 1, batch))
        inflight.add(job)
        job.add_done_callback(inflight.discard)
    if inflight:
        await asyncio.wait(inflight)
    return tally.summary(loop.time() - started, offered_rate=rate * batch, skipped=skipped)


# -- NATS floor -----------------------------------------------------------------------------------


async def role_nats_subscribe(cfg: Config, commands: asyncio.StreamReader) -> dict[str, Any]:
    import nats

    receipts = Receipts(latencies=True)
    nc = await nats.connect(cfg["url"])

    async def on_message(msg: Any) -> None:
        receipts.scan(msg.data)

    await nc.subscribe(
        cfg["subject"], cb=on_message, pending_msgs_limit=10_000_000, pending_bytes_limit=1 << 30
    )
    await nc.flush()
    _ready({})
    await _count_until_done(receipts, commands, cfg)
    await nc.drain()
    return receipts.summary()


async def role_nats_publish(cfg: Config, commands: asyncio.StreamReader) -> dict[str, Any]:
    import nats

    nc = await nats.connect(cfg["url"])
    subject = cfg["subject"]
    _ready({})
    async for command in _commands(commands, cfg):
        if command == "go":
            break
    deadline = time.monotonic() + float(cfg.get("duration", 5))
    limit = int(cfg.get("events", 0)) or sys.maxsize
    started, cpu = time.monotonic(), time.process_time()
    sent = 0
    while sent < limit and time.monotonic() < deadline:
        for _ in range(100):  # check the clock once per 100 messages
            sent += 1
            await nc.publish(subject, f'{{"t":{time.time_ns()},"seq":{sent}}}'.encode())
        await asyncio.sleep(0)  # let the client's flusher run
    await nc.flush()
    seconds = time.monotonic() - started
    await nc.close()
    return {
        "sent": sent,
        "seconds": seconds,
        "per_second": sent / seconds,
        "cpu_seconds": time.process_time() - cpu,
    }


# -- plumbing -------------------------------------------------------------------------------------


def _ready(info: dict[str, Any]) -> None:
    print("READY " + json.dumps(info), flush=True)


async def _commands(reader: asyncio.StreamReader, cfg: Config) -> Any:
    """Lines from the bench until EOF or the role's hard deadline."""
    deadline = time.monotonic() + float(cfg.get("max_seconds", 300))
    while (left := deadline - time.monotonic()) > 0:
        try:
            line = await asyncio.wait_for(reader.readline(), left)
        except TimeoutError:
            break
        if not line:
            break
        yield line.decode().strip()
    yield "stop"


ROLES: dict[str, Callable[[Config, asyncio.StreamReader], Awaitable[dict[str, Any]]]] = {
    "subscribe": role_subscribe,
    "stall": role_stall,
    "publish": role_publish,
    "nats-subscribe": role_nats_subscribe,
    "nats-publish": role_nats_publish,
}


async def _main(role: str, cfg: Config) -> None:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    result = await ROLES[role](cfg, reader)
    print("RESULT " + json.dumps(result), flush=True)


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2 or args[0] not in ROLES:
        raise SystemExit(f"usage: python -m loadtests.loadgen {{{','.join(ROLES)}}} 'JSON config'")
    asyncio.run(_main(args[0], json.loads(args[1])))


if __name__ == "__main__":
    main()
