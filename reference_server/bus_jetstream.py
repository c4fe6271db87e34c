"""The default NATS bus: JetStream, for replay and resume across instances.

One stream (`nats_stream_name`) over `flovyn.streams.>`, bounded by `nats_max_age` and
`nats_max_bytes`, in memory or on file with `nats_replicas` copies (`nats_storage`). A batch's
events of one stream travel as one message; cursors derive from stream sequences (`bus_packs`):
global and strictly increasing, so an SSE id issued by one instance resumes on any other. A
subscription with a cursor owns an ephemeral push consumer (AckNone, flow control, heartbeats)
filtered on its subjects, starting at the message after the cursor (or the pack holding it):
retained and live messages come in one ordered feed, with no gap and no duplicate; what it had
pending when created becomes `subscription.replay`. A cursor before the first retained message,
after the last, or unparseable (-1) yields `gap` and a replay of all that is retained.
Live-only subscriptions of the same streams share one consumer per instance (`SharedFeed`): fan-out
costs one message per event, not one per subscriber. `add_keys` swaps in a consumer over the
larger subject set starting after `subscription.last_cursor` (leaving a shared one), and ignores
the old consumer from that instant on. Ephemeral consumers have one replica, on any node of a
cluster: one that stops heartbeating (its node died) is recreated from the cursor its feed
reached, so the stream goes on without a gap or a duplicate.

Publishing never flushes per message (about 5k msg/s instead of 140k here): each publish awaits
its own PubAck, so concurrent ones share round trips; no ack within a second raises `BusError`.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Sequence

import nats.js.errors
from nats.aio.msg import Msg
from nats.js import api

from .bus import Delivery, Subscription, SubscriptionClosed
from .bus_feeds import Consumer, Feed, SharedFeed
from .bus_nats import (
    ACK_TIMEOUT,
    NATS_ERRORS,
    NatsBus,
    NatsLink,
    ensure_stream,
    settle,
    subject_of,
)
from .bus_packs import decode_msg, end_cursor, next_start, pack, remember, resumable
from .errors import BusError
from .events import TaskStreamEvent
from .nats_acks import NoStream, PubAcks, Refused
from .settings import Settings

log = logging.getLogger(__name__)

STALL_LIMIT = 30.0  # seconds a consumer may stay lost (recreation failing) before its feed ends
REPLAY_TIMEOUT = 10.0
_ALL, _FROM = api.DeliverPolicy.ALL, api.DeliverPolicy.BY_START_SEQUENCE


class JetStreamBus(NatsBus):
    """The Bus protocol on NATS JetStream; `start()` connects, `close()` releases everything."""

    def __init__(self, settings: Settings) -> None:
        self._link = NatsLink(settings, on_lost=self._on_lost, on_back=self._restore_stream)
        self._s = settings
        self._js = self._link.js
        self._recovering = False
        self._feeds: dict[Subscription | SharedFeed, Feed] = {}
        self._shared: dict[frozenset[str], SharedFeed] = {}
        self._member_of: dict[Subscription, SharedFeed] = {}
        self._watcher: asyncio.Task[None] | None = None
        self._heartbeat = settings.nats_heartbeat
        self._acks = PubAcks(ACK_TIMEOUT)

    async def start(self) -> None:
        await self._link.start(self._ensure_stream)
        await self._acks.start(self._link.nc)
        self._watcher = asyncio.create_task(self._watch_consumers(), name="nats-consumers")

    async def close(self) -> None:
        self._end_all("bus closed")
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher
        await self._acks.close()
        await self._link.close()

    # -- publishing ------------------------------------------------------------------------------

    async def publish(self, event: TaskStreamEvent) -> None:
        # Remembered: this instance's subscribers get the event without parsing it back.
        await self.send(subject_of(event.stream_key), remember(event.to_json(), (event,)))

    async def publish_many(self, events: Sequence[TaskStreamEvent]) -> None:
        """Pipelined: every message is written before any PubAck is awaited, then one wait for
        all of them (one round trip per batch, not per event)."""
        self._link.check_up()
        messages = pack(events, self._link.nc.max_payload)
        try:
            await self._acks.publish(self._link.nc, messages)
        except NoStream as error:
            self._link.spawn(self._link.recover())
            raise BusError("no JetStream stream answered") from error
        except Refused as error:
            raise BusError(f"JetStream refused a message: {error}") from error
        except NATS_ERRORS as error:
            raise BusError(f"publish failed: {error!r}") from error

    async def send(self, subject: str, body: bytes) -> None:
        self._link.check_up()
        try:
            # A timer on the ack future itself: cheaper than wait_for or asyncio.timeout.
            ack = await self._js.publish_async(subject, body)
            expiry = asyncio.get_running_loop().call_later(
                ACK_TIMEOUT, settle, ack, None, TimeoutError("no PubAck in time")
            )
            try:
                await ack
            finally:
                expiry.cancel()
        except nats.js.errors.NoStreamResponseError as error:
            self._link.spawn(self._link.recover())  # the broker restarted without its store
            raise BusError("no JetStream stream answered") from error
        except NATS_ERRORS as error:
            raise BusError(f"publish failed: {error!r}") from error

    # -- subscribing -----------------------------------------------------------------------------

    async def subscribe(
        self, keys: Sequence[str], *, after: int | None = None, from_start: bool = False
    ) -> Subscription:
        self._link.check_up()
        try:
            if after is None and not from_start:
                return await self._join_shared(keys)
            state = (await self._js.stream_info(self._s.nats_stream_name)).state
            first, last = state.first_seq, state.last_seq
            start: int | None  # first sequence to deliver; None = all that is retained
            if after is not None and resumable(after, first, last):
                start, floor, gap = next_start(after), after, False
            else:
                start, floor, gap = None, 0, not from_start
            sub = Subscription(
                keys, self._s.subscriber_buffer, floor, gap=gap, release=self._detach
            )
            feed = self._feeds[sub] = Feed(sub)
            replay = await self._open(feed, start, replay=True)
            # No await since the replay was collected: every later message goes through `offer`.
            sub.start_with([d for d in replay or () if d.cursor > floor])
            return sub
        except NATS_ERRORS as error:
            raise BusError(f"subscribe failed: {error!r}") from error

    async def _join_shared(self, keys: Sequence[str]) -> Subscription:
        """A live-only subscription: a member of the shared consumer for exactly these keys."""
        keyset = frozenset(keys)
        shared = self._shared.get(keyset)
        if shared is None or shared.failure is not None:
            last = (await self._js.stream_info(self._s.nats_stream_name)).state.last_seq
            shared = self._shared.get(keyset)  # another subscribe may have made it meanwhile
            if shared is None or shared.failure is not None:
                shared = self._shared[keyset] = SharedFeed(keyset, end_cursor(last), self._drop)
                feed = self._feeds[shared] = Feed(shared)
                try:
                    await self._open(feed, last + 1, replay=False)
                finally:
                    shared.ready.set()
        await shared.ready.wait()
        if shared.failure is not None:
            raise BusError(f"subscribe failed: {shared.failure!r}")
        sub = Subscription(
            keys, self._s.subscriber_buffer, shared.last_cursor, release=self._detach
        )
        shared.members.add(sub)
        self._member_of[sub] = shared
        return sub

    async def _open(self, feed: Feed, start: int | None, *, replay: bool) -> list[Delivery] | None:
        try:
            return await self._attach(feed, start, replay=replay)
        except BaseException as error:
            feed.sink.fail(SubscriptionClosed(f"subscribe failed: {error!r}"))
            raise

    async def _attach(
        self, feed: Feed, start: int | None, *, replay: bool
    ) -> list[Delivery] | None:
        """Give `feed` a new consumer from `start`; the previous one is ignored from now on.
        With `replay`, returns what the consumer had pending when created."""
        loop = asyncio.get_running_loop()
        consumer = feed.consumer = Consumer(loop.time(), [] if replay else None)
        if not feed.sink.keys:
            return consumer.replay
        # The deliver subject is subscribed before the consumer exists: AckNone messages
        # pushed to an inbox nobody listens to yet would never be redelivered.
        inbox = self._link.nc.new_inbox()
        cb = functools.partial(self._on_msg, feed, consumer)
        consumer.inbox = await self._link.nc.subscribe(inbox, cb=cb)
        config = api.ConsumerConfig(
            deliver_subject=inbox, filter_subjects=sorted(map(subject_of, feed.sink.keys)),
            deliver_policy=_ALL if start is None else _FROM, opt_start_seq=start,
            ack_policy=api.AckPolicy.NONE, flow_control=True, idle_heartbeat=self._heartbeat,
            inactive_threshold=30.0, mem_storage=True, num_replicas=1,
        )  # fmt: skip
        info = await self._js.add_consumer(self._s.nats_stream_name, config=config)
        consumer.name = info.name
        if consumer.replay is None:
            return None
        delivered = info.delivered.consumer_seq if info.delivered is not None else 0
        consumer.replay_target = delivered + (info.num_pending or 0)
        if consumer.delivered >= consumer.replay_target:
            consumer.caught_up.set()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(REPLAY_TIMEOUT):
                await consumer.caught_up.wait()
        collected, consumer.replay = consumer.replay, None
        return collected

    async def _on_msg(self, feed: Feed, consumer: Consumer, msg: Msg) -> None:
        if feed.consumer is not consumer:
            return  # replaced by add_keys, or closed
        consumer.seen = asyncio.get_running_loop().time()
        headers = msg.headers or {}
        if not msg.data and headers.get("Status") == "100":  # heartbeat or flow control
            for reply in (msg.reply, headers.get("Nats-Consumer-Stalled")):
                if reply:  # we read as fast as it comes: answer at once
                    await self._link.nc.publish(reply)
            last = headers.get("Nats-Last-Consumer")
            if last is not None and int(last) != consumer.delivered:
                feed.sink.fail(SubscriptionClosed("the NATS consumer skipped messages"))
            return
        meta = msg.metadata
        if meta.sequence.consumer != consumer.delivered + 1:
            feed.sink.fail(SubscriptionClosed("the NATS consumer skipped messages"))
            return
        consumer.delivered = meta.sequence.consumer
        deliveries = decode_msg(msg, meta.sequence.stream)
        if deliveries and consumer.replay is None:
            if not feed.pending:
                asyncio.get_running_loop().call_soon(feed.flush)
            feed.pending.extend(deliveries)
        elif deliveries and consumer.replay is not None:
            consumer.replay.extend(deliveries)
        if consumer.delivered >= consumer.replay_target >= 0 or meta.num_pending == 0:
            consumer.caught_up.set()

    async def add_keys(self, subscription: Subscription, keys: Sequence[str]) -> None:
        if subscription in self._member_of and set(keys) - subscription.keys:
            # Its streams now differ from its peers': leave the shared consumer for one of its
            # own, which starts right after what the shared one delivered to it.
            self._leave_shared(subscription)
            self._feeds[subscription] = Feed(subscription)
        feed = self._feeds.get(subscription)
        if feed is None:
            return
        async with feed.lock:
            new = [k for k in dict.fromkeys(keys) if k not in subscription.keys]
            if not new or not subscription.attached:
                return
            subscription.cover(new)
            old = feed.consumer
            try:
                # One step: the old consumer is ignored from the cursor the new one starts
                # after; `offer` drops anything the new one repeats.
                await self._attach(feed, next_start(subscription.last_cursor), replay=False)
            except (BusError, *NATS_ERRORS) as error:
                subscription.fail(SubscriptionClosed(f"could not add streams: {error!r}"))
            finally:
                if old is not None:
                    self._link.spawn(self._release(old))

    # -- letting go ------------------------------------------------------------------------------

    def _detach(self, sub: Subscription) -> None:
        if sub in self._member_of:
            self._leave_shared(sub)
        else:
            self._drop(sub)

    def _leave_shared(self, sub: Subscription) -> None:
        shared = self._member_of.pop(sub)
        shared.members.discard(sub)
        if not shared.members:
            if self._shared.get(shared.keys) is shared:
                del self._shared[shared.keys]
            shared.close()  # releases the shared consumer

    def _drop(self, sink: Subscription | SharedFeed) -> None:
        feed = self._feeds.pop(sink, None)
        if feed is not None and feed.consumer is not None:
            consumer, feed.consumer = feed.consumer, None
            consumer.caught_up.set()  # a subscribe still collecting its replay returns now
            self._link.spawn(self._release(consumer))

    async def _release(self, consumer: Consumer) -> None:
        with contextlib.suppress(*NATS_ERRORS):
            if consumer.inbox is not None:
                await consumer.inbox.unsubscribe()
            if consumer.name and self._link.nc.is_connected:
                async with asyncio.timeout(ACK_TIMEOUT * 2):
                    await self._js.delete_consumer(self._s.nats_stream_name, consumer.name)

    def _end_all(self, reason: str) -> None:
        for sink in list(self._feeds):
            sink.fail(SubscriptionClosed(reason))

    def _on_lost(self) -> None:
        if self._feeds:
            log.warning("lost the NATS connection; ending %d subscriptions", len(self._feeds))
        self._end_all("lost the NATS connection")

    async def _watch_consumers(self) -> None:
        """A consumer that stops heartbeating must not stall its stream: on a cluster, the node
        holding it died. It is recreated (`_reattach`); one still collecting a replay, or lost
        for longer than STALL_LIMIT, ends its feed instead (clients resume with their cursor)."""
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self._heartbeat / 2)
            deadline = loop.time() - 2 * self._heartbeat
            for feed in list(self._feeds.values()):
                consumer = feed.consumer
                if consumer is None or not consumer.name or consumer.seen >= deadline:
                    continue
                if consumer.replay is not None or consumer.seen < loop.time() - STALL_LIMIT:
                    feed.sink.fail(SubscriptionClosed("the NATS consumer stopped heartbeating"))
                elif not feed.lock.locked():
                    self._link.spawn(self._reattach(feed))

    async def _reattach(self, feed: Feed) -> None:
        """Replace a lost consumer by one starting right after the feed's cursor; if that fails
        (no stream leader yet), the old one stays and the watcher tries again."""
        async with feed.lock:
            old = feed.consumer
            if (
                old is None
                or feed.sink.failure is not None
                or self._feeds.get(feed.sink) is not feed
            ):
                return
            try:
                await self._attach(feed, next_start(feed.sink.last_cursor), replay=False)
            except (BusError, *NATS_ERRORS) as error:
                failed, feed.consumer = feed.consumer, old
                if failed is not None and failed is not old:
                    self._link.spawn(self._release(failed))
                log.info("recreating a lost NATS consumer failed", extra={"reason": repr(error)})
                return
            log.info("recreated a lost NATS consumer from cursor %d", feed.sink.last_cursor)
            self._link.spawn(self._release(old))

    async def _ensure_stream(self) -> None:
        await ensure_stream(self._js, self._s)

    async def _restore_stream(self) -> None:
        """After a reconnect: a broker restarted without its store lost the stream."""
        if self._recovering:
            return
        self._recovering = True
        try:
            await self._ensure_stream()
        except BusError as error:
            log.warning("stream check after reconnecting failed", extra={"reason": str(error)})
        finally:
            self._recovering = False
