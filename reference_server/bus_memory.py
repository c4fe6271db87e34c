"""In-process bus: per-stream fan-out with a bounded replay ring (count and age)."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from .bus import Delivery, End, Fanout, Notice, NoticeListener, Notices, Subscription
from .events import TaskStreamEvent

log = logging.getLogger(__name__)


@dataclass(slots=True)
class _Channel:
    ring: collections.deque[tuple[float, Delivery]]
    subscribers: Fanout = field(default_factory=Fanout)
    dropped_upto: int = 0  # highest cursor no longer retained


class InMemoryBus:
    """Single-instance bus. Publishing is synchronous fan-out, so subscribers see items in cursor
    order and a subscribe never races a publish."""

    def __init__(
        self,
        *,
        replay_max_events: int = 1000,
        replay_max_age: float = 3600.0,
        subscriber_buffer: int = 1024,
        cleanup_interval: float = 30.0,
    ) -> None:
        self._max_events = replay_max_events
        self._max_age = replay_max_age
        self._buffer = subscriber_buffer
        self._cleanup_interval = cleanup_interval
        self._channels: dict[str, _Channel] = {}
        self._cursor = 0
        self._forgotten_upto = 0  # dropped_upto of channels already cleaned up
        self._notices = Notices()
        self._cleaner: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._cleaner = asyncio.create_task(self._clean_periodically(), name="bus-cleanup")

    async def close(self) -> None:
        if self._cleaner is not None:
            self._cleaner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._cleaner
        for channel in list(self._channels.values()):
            for sub in list(channel.subscribers.members):
                sub.close()

    @property
    def healthy(self) -> bool:
        return True

    @property
    def channel_count(self) -> int:
        return len(self._channels)

    async def publish(self, event: TaskStreamEvent) -> None:
        self._append(event.stream_key, event)

    async def publish_many(self, events: Sequence[TaskStreamEvent]) -> None:
        """One pass over the batch; each subscriber then gets its share in one offer (one write
        when its socket is idle), in cursor order."""
        now = time.monotonic()
        shares: dict[Subscription, list[Delivery]] = {}
        for event in events:
            key = event.stream_key
            self._cursor += 1
            delivery = Delivery(self._cursor, key, event)
            channel = self._channel(key)
            if len(channel.ring) == channel.ring.maxlen:
                channel.dropped_upto = channel.ring[0][1].cursor
            channel.ring.append((now, delivery))
            for sub in channel.subscribers.members:
                share = shares.get(sub)
                if share is None:
                    shares[sub] = [delivery]
                else:
                    share.append(delivery)
        for key in {event.stream_key for event in events}:
            self._trim(self._channels[key], now)
        for sub, share in shares.items():
            sub.offer_many(share)

    async def publish_end(self, stream_key: str, end: End) -> None:
        self._append(stream_key, end)

    def _append(self, key: str, item: TaskStreamEvent | End) -> None:
        self._cursor += 1
        delivery = Delivery(self._cursor, key, item)
        channel = self._channel(key)
        now = time.monotonic()
        if len(channel.ring) == channel.ring.maxlen:
            channel.dropped_upto = channel.ring[0][1].cursor
        channel.ring.append((now, delivery))
        self._trim(channel, now)
        channel.subscribers.offer(delivery)

    async def subscribe(
        self, keys: Sequence[str], *, after: int | None = None, from_start: bool = False
    ) -> Subscription:
        replay: list[Delivery] = []
        gap = False
        if after is not None or from_start:
            floor = 0 if from_start or after is None else after
            gap = not from_start and not self._placeable(keys, floor)
            # A cursor we cannot place: the client learns of the gap, then gets all we have.
            replay = self._retained(keys, 0 if gap else floor)
        sub = Subscription(keys, self._buffer, self._cursor, gap=gap, release=self._detach)
        sub.start_with(replay)
        for key in keys:
            self._channel(key).subscribers.add(sub)
        return sub

    async def add_keys(self, subscription: Subscription, keys: Sequence[str]) -> None:
        new = [k for k in keys if k not in subscription.keys]
        if not subscription.attached or not new:
            return
        # Items of the new streams that raced ahead of the notice are delivered from the ring,
        # as long as they keep ids increasing.
        for delivery in self._retained(new, subscription.last_cursor):
            subscription.offer(delivery)
        subscription.cover(new)
        for key in new:
            self._channel(key).subscribers.add(subscription)

    async def announce(self, notice: Notice) -> None:
        await self._notices.dispatch(notice)

    def on_notice(self, listener: NoticeListener) -> None:
        self._notices.listen(listener)

    def _channel(self, key: str) -> _Channel:
        channel = self._channels.get(key)
        if channel is None:
            channel = _Channel(ring=collections.deque(maxlen=self._max_events))
            self._channels[key] = channel
        return channel

    def _detach(self, sub: Subscription) -> None:
        for key in sub.keys:
            channel = self._channels.get(key)
            if channel is not None:
                channel.subscribers.discard(sub)

    def _trim(self, channel: _Channel, now: float) -> None:
        while channel.ring and now - channel.ring[0][0] > self._max_age:
            channel.dropped_upto = channel.ring.popleft()[1].cursor

    def _placeable(self, keys: Sequence[str], after: int) -> bool:
        if after < 0 or after > self._cursor:
            return False  # from the future (or another bus's numbering)
        now = time.monotonic()
        for key in keys:
            channel = self._channels.get(key)
            if channel is None:
                if after < self._forgotten_upto:
                    return False  # cleaned-up channels might have held events after it
                continue
            self._trim(channel, now)
            if channel.dropped_upto > after:
                return False
        return True

    def _retained(self, keys: Sequence[str], after: int) -> list[Delivery]:
        found: list[Delivery] = []
        for key in keys:
            channel = self._channels.get(key)
            if channel is not None:
                found.extend(d for _, d in channel.ring if d.cursor > after)
        found.sort(key=lambda d: d.cursor)
        return found

    def cleanup(self) -> int:
        """Drop channels with no subscriber and nothing retained; returns how many."""
        now = time.monotonic()
        removed = 0
        for key, channel in list(self._channels.items()):
            self._trim(channel, now)
            if not channel.subscribers and not channel.ring:
                self._forgotten_upto = max(self._forgotten_upto, channel.dropped_upto)
                del self._channels[key]
                removed += 1
        return removed

    async def _clean_periodically(self) -> None:
        while True:
            await asyncio.sleep(self._cleanup_interval)
            removed = self.cleanup()
            if removed:
                log.debug("removed %d idle channels", removed)
