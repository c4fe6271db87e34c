"""Writing deliveries to one SSE response: in batches from the stream's task, or straight from the
bus's fan-out while the socket is idle (no task wake-up; a published batch in one write)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

from aiohttp import web

from .bus import Delivery, End
from .events import StreamEventType
from .metrics import Metrics
from .sse import SseFraming

# Above this many bytes waiting in the socket's buffer, the direct path steps aside and the
# stream's task takes over (it awaits drain, and a stalled client ends up evicted).
_DIRECT_HIGH_WATER = 64 * 1024


class StreamWriter:
    """Encodes deliveries for one stream: in batches from its task (`write`), or straight from the
    bus's fan-out while the socket is idle (`direct`)."""

    def __init__(
        self,
        metrics: Metrics,
        framing: SseFraming,
        *,
        target: str,
        consolidated: bool,
        task_filter: str | None,
        response: web.StreamResponse,
        transport: asyncio.Transport | None,
    ) -> None:
        self.response = response
        self.count = 0
        self.last_write = asyncio.get_running_loop().time()
        self._busy = False
        self._transport = transport
        # Set by aiohttp when it prepared the response (HTTP/1.1 without a length).
        self._chunked = response.headers.get("Transfer-Encoding", "").lower() == "chunked"
        self.target = target
        self._consolidated = consolidated
        self._task_filter = task_filter
        self._encode = framing.delivery
        self._end = framing.end
        self._delivered = metrics.delivered_by_type
        self._latency = metrics.delivery_latency

    async def write(self, batch: list[Delivery]) -> bool:
        """Write what belongs to this stream; True once its `end` has been written."""
        chunks: list[bytes] = []
        ended = False
        oldest_ms = 0
        counts: dict[StreamEventType, int] = {}
        for delivery in batch:
            item = delivery.item
            if isinstance(item, End):
                if item.target_id == self.target:
                    chunks.append(self._end(item, delivery.cursor))
                    ended = True
                    break
                continue
            if self._task_filter is not None and item.task_execution_id != self._task_filter:
                continue
            chunks.append(self._encode(delivery, self._consolidated))
            counts[item.event_type] = counts.get(item.event_type, 0) + 1
            if item.published_at_ms and not oldest_ms:
                oldest_ms = item.published_at_ms
        if chunks:
            self.count += len(chunks)
            self._busy = True
            try:
                await self.response.write(b"".join(chunks))
            finally:
                self._busy = False
            self.last_write = asyncio.get_running_loop().time()
            # Per batch, not per event: fan-out multiplies every per-event cost by subscribers.
            for event_type, n in counts.items():
                self._delivered[event_type].inc(n)
            if oldest_ms:
                self._latency.observe(max(0.0, time.time() * 1000 - oldest_ms) / 1000)
        return ended

    async def write_raw(self, data: bytes) -> None:
        """A comment or control event, through the same path as batches."""
        self._busy = True
        try:
            await self.response.write(data)
        finally:
            self._busy = False

    def direct(self, delivery: Delivery) -> bool:
        """Write one delivery synchronously if the socket can take it now; False hands it to the
        stream's task (busy writer, full buffer, or an `end`, which closes the stream). The
        fan-out path: kept apart from `direct_many` so a unary publish pays for no batch."""
        transport = self._transport
        item = delivery.item
        if (
            self._busy
            or isinstance(item, End)
            or transport is None
            or transport.is_closing()
            or transport.get_write_buffer_size() > _DIRECT_HIGH_WATER
        ):
            return False
        if self._task_filter is not None and item.task_execution_id != self._task_filter:
            return True  # not this stream's: nothing to write
        data = self._encode(delivery, self._consolidated)
        if self._chunked:  # HTTP/1.1: the framing aiohttp's writer would add
            transport.write(b"%x\r\n%b\r\n" % (len(data), data))
        else:
            transport.write(data)
        self.count += 1
        self.last_write = asyncio.get_running_loop().time()
        self._delivered[item.event_type].inc()
        if item.published_at_ms:
            self._latency.observe(max(0.0, time.time() * 1000 - item.published_at_ms) / 1000)
        return True

    def direct_many(self, deliveries: Sequence[Delivery]) -> bool:
        """Write deliveries synchronously, all in one write, if the socket can take them now;
        False hands them to the stream's task (busy writer, full buffer, or an `end`, which
        closes the stream)."""
        transport = self._transport
        if (
            self._busy
            or transport is None
            or transport.is_closing()
            or transport.get_write_buffer_size() > _DIRECT_HIGH_WATER
        ):
            return False
        chunks: list[bytes] = []
        counts: dict[StreamEventType, int] = {}
        oldest_ms = 0
        task_filter = self._task_filter
        for delivery in deliveries:
            item = delivery.item
            if isinstance(item, End):
                return False
            if task_filter is not None and item.task_execution_id != task_filter:
                continue  # not this stream's: nothing to write
            chunks.append(self._encode(delivery, self._consolidated))
            counts[item.event_type] = counts.get(item.event_type, 0) + 1
            if item.published_at_ms and not oldest_ms:
                oldest_ms = item.published_at_ms
        if not chunks:
            return True
        data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        if self._chunked:  # HTTP/1.1: the framing aiohttp's writer would add
            transport.write(b"%x\r\n%b\r\n" % (len(data), data))
        else:
            transport.write(data)
        self.count += len(chunks)
        self.last_write = asyncio.get_running_loop().time()
        for event_type, n in counts.items():
            self._delivered[event_type].inc(n)
        if oldest_ms:
            self._latency.observe(max(0.0, time.time() * 1000 - oldest_ms) / 1000)
        return True
