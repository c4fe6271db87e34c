"""NATS bus: JetStream for replay and resume across instances, or core pub/sub (live only).

Subjects: the items of stream key `workflow.{id}` travel on `flovyn.streams.workflow.{id}`, those
of `task.{id}` on `flovyn.streams.task.{id}`. A body is JSON: an event is
`TaskStreamEvent.to_json()`; an End marker is `{"end": {"targetId": ..., "status": ...}}` (events
have no top-level `end` key). Notices go over core NATS on `flovyn.control.notices` as
`{"origin": <bus id>, "tokenRevoked": {"tokenId"}}` or `{"origin", "descendantCreated":
{"parentId", "childId"}}`; a bus hands its own notices to its listeners at once and ignores their
echo, so each listener sees each notice exactly once per instance.

JetStream mode (default): one memory stream (`nats_stream_name`) over `flovyn.streams.>`, bounded
by `nats_max_age` and `nats_max_bytes`. Cursors are stream sequence numbers: global and strictly
increasing, so an SSE id issued by one instance resumes on any other. A subscription with a
cursor owns an ephemeral push consumer (AckNone, flow control, heartbeats) filtered on its
subjects and starting right after the cursor, so retained and live messages come in one ordered
feed: no gap and no duplicate between replay and live; what the consumer had pending when
created becomes `subscription.replay`, the rest is live. Live-only subscriptions of the same
streams share one consumer per instance (`_Fanout`): fan-out costs one message per event, not
one per subscriber. `add_keys` swaps in a consumer over the larger subject set starting after
`subscription.last_cursor` (a fan-out member leaves the shared one for it), and ignores the old
consumer from that instant on. A
cursor before the stream's first retained sequence, after its last, or unparseable (-1) yields
`gap` and a replay of all that is retained. Losing the connection ends every subscription with
`SubscriptionClosed`: clients resume with their last id instead of stalling on a lost consumer.

Core mode (`nats_mode="core"`, the seed's pub/sub): one core subscription per subject, shared by
this instance's subscribers. Nothing is retained: cursors are a per-instance counter, and `after`
or `from_start` give `gap` and no replay.

Publishing never flushes per message (about 5k msg/s instead of 140k here). JetStream publishes
are asynchronous, each awaiting its own PubAck, so concurrent ones share round trips. Concurrent
core publishes share one barrier: a marker this connection sends itself after them, whose echo
proves the broker has processed them (nats-py's `flush()` writes its PING ahead of buffered
commands, so a PONG proves less). While disconnected, publishing raises `BusError` at once
instead of buffering; an ack or echo that does not come within a second raises it too.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import nats.errors
import nats.js.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription as NatsSubscription
from nats.js import api

from .bus import (
    Delivery,
    DescendantCreated,
    End,
    Notice,
    NoticeListener,
    Subscription,
    SubscriptionClosed,
    TokenRevoked,
)
from .errors import BusError
from .events import TaskStreamEvent
from .settings import Settings

log = logging.getLogger(__name__)

SUBJECT_PREFIX = "flovyn.streams."
NOTICE_SUBJECT = "flovyn.control.notices"
ACK_TIMEOUT = 1.0  # PubAck or barrier echo
API_TIMEOUT = 5.0  # stream and consumer management
HEARTBEAT = 5.0  # consumer idle heartbeat; three missed in a row end the subscription
REPLAY_TIMEOUT = 10.0
_NATS_ERRORS = (nats.errors.Error, TimeoutError, OSError)
_ALL, _FROM = api.DeliverPolicy.ALL, api.DeliverPolicy.BY_START_SEQUENCE


def subject_of(stream_key: str) -> str:
    return SUBJECT_PREFIX + stream_key


def encode_end(end: End) -> bytes:
    return json.dumps({"end": {"targetId": end.target_id, "status": end.status}}).encode()


def decode(subject: str, data: bytes, cursor: int) -> Delivery:
    body = json.loads(data)
    end = body.get("end")
    item = End(str(end["targetId"]), str(end["status"])) if end else TaskStreamEvent.from_dict(body)
    return Delivery(cursor, subject.removeprefix(SUBJECT_PREFIX), item)


# Fan-out decodes each message once, not once per subscriber's consumer (payloads <= 64 KiB).
_decode_shared = functools.lru_cache(maxsize=256)(decode)


def _settle(
    future: asyncio.Future[Any], result: Any = None, error: Exception | None = None
) -> None:
    if future.done():
        return
    if error is None:
        future.set_result(result)
    else:
        future.set_exception(error)


@dataclass(eq=False, slots=True)
class _Consumer:
    """One JetStream push consumer and the core subscription on its deliver subject."""

    seen: float  # loop time of its last message or heartbeat
    replay: list[Delivery] | None  # collecting the replay while not None
    inbox: NatsSubscription | None = None
    name: str = ""
    delivered: int = 0  # consumer sequence of the last data message
    replay_target: int = -1
    caught_up: asyncio.Event = field(default_factory=asyncio.Event)


@dataclass(eq=False, slots=True)
class _Feed:
    sub: Subscription
    consumer: _Consumer | None = None  # JetStream mode: the current consumer
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


@dataclass(eq=False, slots=True)
class _Channel:
    """Core mode: one core subscription per subject, shared by this instance's subscribers."""

    subs: set[Subscription] = field(default_factory=set)
    nsub: NatsSubscription | None = None


class _Fanout(Subscription):
    """Live-only subscribers of the same streams share one JetStream consumer: an event crosses
    the connection once per instance, not once per browser. It stands in the consumer's feed as
    one subscription and passes every delivery (and its failure) on to its members."""

    def __init__(self, keys: Sequence[str], start_cursor: int) -> None:
        super().__init__(keys, 1, start_cursor)
        self.members: set[Subscription] = set()
        self.ready = asyncio.Event()  # its consumer exists (or it failed)

    def _offer(self, delivery: Delivery) -> None:
        if self._failure is not None or delivery.cursor <= self.last_cursor:
            return
        self.last_cursor = delivery.cursor
        for member in list(self.members):
            member._offer(delivery)

    def _fail(self, error: Exception) -> None:
        members, self.members = list(self.members), set()
        super()._fail(error)
        self.ready.set()
        for member in members:
            member._fail(error)


class NatsBus:
    """The Bus protocol on NATS; `start()` connects, `close()` releases everything."""

    def __init__(self, settings: Settings) -> None:
        if not settings.nats_url:
            raise ValueError("NatsBus needs settings.nats_url")
        self._s = settings
        self._url: str = settings.nats_url
        self._jetstream = settings.nats_mode != "core"
        self._id = uuid.uuid4().hex
        self._nc = Client()
        self._js = self._nc.jetstream(timeout=API_TIMEOUT)
        self._up = False
        self._started = False
        self._recovering = False
        self._feeds: dict[Subscription, _Feed] = {}
        self._fanouts: dict[frozenset[str], _Fanout] = {}
        self._member_of: dict[Subscription, _Fanout] = {}
        self._channels: dict[str, _Channel] = {}
        self._counter = 0  # core mode cursors
        self._listeners: list[NoticeListener] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._watcher: asyncio.Task[None] | None = None
        self._barrier_inbox = ""
        self._barrier_next: asyncio.Future[bool] | None = None
        self._barriers: dict[bytes, asyncio.Future[bool]] = {}

    async def start(self) -> None:
        nc = self._nc
        self._started = True
        try:
            # max_reconnect_attempts=-1 retries even the first connect forever: bound it here.
            async with asyncio.timeout(API_TIMEOUT):
                await nc.connect(
                    self._url, name=f"taskstream-{self._s.instance_id}", allow_reconnect=True,
                    max_reconnect_attempts=-1, reconnect_time_wait=0.5,  # type: ignore[arg-type]
                    connect_timeout=2, error_cb=self._on_error,
                    disconnected_cb=self._on_disconnected, reconnected_cb=self._on_reconnected,
                )  # fmt: skip
            self._barrier_inbox = nc.new_inbox()
            await nc.subscribe(self._barrier_inbox, cb=self._on_barrier)
            await nc.subscribe(NOTICE_SUBJECT, cb=self._on_notice_msg)
            if self._jetstream:
                await self._ensure_stream()
        except (BusError, *_NATS_ERRORS) as error:
            with contextlib.suppress(*_NATS_ERRORS):
                await nc.close()
            raise BusError(f"cannot start the bus on NATS at {self._url}: {error!r}") from error
        if self._jetstream:
            self._watcher = asyncio.create_task(self._watch_consumers(), name="nats-consumers")
        self._up = True

    async def close(self) -> None:
        for sub in list(self._feeds):
            sub._fail(SubscriptionClosed("bus closed"))
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._up = False
        if self._started:
            with contextlib.suppress(*_NATS_ERRORS):
                await self._nc.close()
        self._fail_barriers()

    @property
    def healthy(self) -> bool:
        return self._up and self._nc.is_connected

    # -- publishing ------------------------------------------------------------------------------

    async def publish(self, event: TaskStreamEvent) -> None:
        await self._send(subject_of(event.stream_key), event.to_json())

    async def publish_many(self, events: Sequence[TaskStreamEvent]) -> None:
        """JetStream: every message written before any PubAck is awaited, then one wait for all
        of them; core: the messages, then one barrier."""
        if not self.healthy:
            raise BusError("not connected to NATS")
        try:
            if not self._jetstream:
                for event in events:
                    await self._nc.publish(subject_of(event.stream_key), event.to_json())
                await self._barrier()
                return
            acks = [
                await self._js.publish_async(subject_of(event.stream_key), event.to_json())
                for event in events
            ]
            all_acked = asyncio.gather(*acks)
            expiry = asyncio.get_running_loop().call_later(
                ACK_TIMEOUT, _settle, all_acked, None, TimeoutError("no PubAck in time")
            )
            try:
                await all_acked
            finally:
                expiry.cancel()
        except nats.js.errors.NoStreamResponseError as error:
            self._spawn(self._recover())
            raise BusError("no JetStream stream answered") from error
        except _NATS_ERRORS as error:
            raise BusError(f"publish failed: {error!r}") from error

    async def publish_end(self, stream_key: str, end: End) -> None:
        await self._send(subject_of(stream_key), encode_end(end))

    async def _send(self, subject: str, body: bytes) -> None:
        if not self.healthy:
            raise BusError("not connected to NATS")
        try:
            if self._jetstream:
                # A timer on the ack future itself: cheaper than wait_for or asyncio.timeout.
                ack = await self._js.publish_async(subject, body)
                expiry = asyncio.get_running_loop().call_later(
                    ACK_TIMEOUT, _settle, ack, None, TimeoutError("no PubAck in time")
                )
                try:
                    await ack
                finally:
                    expiry.cancel()
            else:
                await self._nc.publish(subject, body)
                await self._barrier()
        except nats.js.errors.NoStreamResponseError as error:
            self._spawn(self._recover())  # the broker lost the stream (restarted without store)
            raise BusError("no JetStream stream answered") from error
        except _NATS_ERRORS as error:
            raise BusError(f"publish failed: {error!r}") from error

    async def _barrier(self) -> None:
        """Wait until the broker has processed what this connection sent before the call.

        Every caller that arrives before the marker goes out shares it."""
        future = self._barrier_next
        if future is None:
            future = self._barrier_next = asyncio.get_running_loop().create_future()
            asyncio.get_running_loop().call_later(ACK_TIMEOUT, _settle, future, False)
            self._spawn(self._send_barrier(future))
        if not await asyncio.shield(future):
            raise BusError("the broker did not confirm the publish in time")

    async def _send_barrier(self, future: asyncio.Future[bool]) -> None:
        self._barrier_next = None  # later publishes need a later marker
        token = uuid.uuid4().bytes
        self._barriers[token] = future
        try:
            await self._nc.publish(self._barrier_inbox, token)
        except _NATS_ERRORS:
            _settle(self._barriers.pop(token), False)

    async def _on_barrier(self, msg: Msg) -> None:
        future = self._barriers.pop(msg.data, None)
        if future is not None:
            _settle(future, True)

    def _fail_barriers(self) -> None:
        barriers, self._barriers = self._barriers, {}
        for future in barriers.values():
            _settle(future, False)

    # -- subscribing -----------------------------------------------------------------------------

    async def subscribe(
        self, keys: Sequence[str], *, after: int | None = None, from_start: bool = False
    ) -> Subscription:
        if not self.healthy:
            raise BusError("not connected to NATS")
        try:
            if not self._jetstream:
                sub = Subscription(keys, self._s.subscriber_buffer, self._counter)
                sub.gap = after is not None or from_start  # nothing is retained: live only
                return await self._open(sub, lambda feed: self._join(feed.sub, keys))
            if after is None and not from_start:
                return await self._join_fanout(keys)
            state = (await self._js.stream_info(self._s.nats_stream_name)).state
            first, last = state.first_seq, state.last_seq
            start: int | None  # first sequence to deliver; None = all that is retained
            if after is None and not from_start:
                start, floor, gap = last + 1, last, False
            elif after is not None and first - 1 <= after <= last and after >= 0:
                start, floor, gap = after + 1, after, False
            else:
                start, floor, gap = None, 0, not from_start
            sub = Subscription(keys, self._s.subscriber_buffer, floor)
            sub.gap = gap
            replay = after is not None or from_start
            return await self._open(sub, lambda feed: self._attach(feed, start, replay=replay))
        except _NATS_ERRORS as error:
            raise BusError(f"subscribe failed: {error!r}") from error

    async def _join_fanout(self, keys: Sequence[str]) -> Subscription:
        """A live-only subscription: a member of the shared consumer for exactly these keys."""
        keyset = frozenset(keys)
        fan = self._fanouts.get(keyset)
        if fan is None or fan.failure is not None:
            last = (await self._js.stream_info(self._s.nats_stream_name)).state.last_seq
            fan = self._fanouts.get(keyset)  # another subscribe may have made it meanwhile
            if fan is None or fan.failure is not None:
                fan = self._fanouts[keyset] = _Fanout(keys, last)
                try:
                    await self._open(fan, lambda feed: self._attach(feed, last + 1, replay=False))
                finally:
                    fan.ready.set()
        await fan.ready.wait()
        if fan.failure is not None:
            raise BusError(f"subscribe failed: {fan.failure!r}")
        sub = Subscription(keys, self._s.subscriber_buffer, fan.last_cursor)
        fan.members.add(sub)
        self._member_of[sub] = fan
        sub._detach = self._leave_fanout
        return sub

    def _leave_fanout(self, sub: Subscription) -> None:
        fan = self._member_of.pop(sub, None)
        if fan is None:
            return
        fan.members.discard(sub)
        if not fan.members:
            if self._fanouts.get(frozenset(fan.keys)) is fan:
                del self._fanouts[frozenset(fan.keys)]
            fan.close()  # releases the shared consumer

    async def _open(
        self, sub: Subscription, setup: Callable[[_Feed], Awaitable[None]]
    ) -> Subscription:
        feed = self._feeds[sub] = _Feed(sub)
        sub._detach = self._detach
        try:
            await setup(feed)
        except BaseException:
            sub.close()
            raise
        return sub

    async def _attach(self, feed: _Feed, start: int | None, *, replay: bool) -> None:
        """Give `feed` a new consumer from `start`; the previous one is ignored from now on."""
        loop = asyncio.get_running_loop()
        consumer = feed.consumer = _Consumer(loop.time(), [] if replay else None)
        if not feed.sub.keys:
            return
        # The deliver subject is subscribed before the consumer exists: AckNone messages
        # pushed to an inbox nobody listens to yet would never be redelivered.
        inbox = self._nc.new_inbox()
        cb = functools.partial(self._on_js_msg, feed, consumer)
        consumer.inbox = await self._nc.subscribe(inbox, cb=cb)
        config = api.ConsumerConfig(
            deliver_subject=inbox, filter_subjects=sorted(map(subject_of, feed.sub.keys)),
            deliver_policy=_ALL if start is None else _FROM, opt_start_seq=start,
            ack_policy=api.AckPolicy.NONE, flow_control=True, idle_heartbeat=HEARTBEAT,
            inactive_threshold=30.0, mem_storage=True, num_replicas=1,
        )  # fmt: skip
        info = await self._js.add_consumer(self._s.nats_stream_name, config=config)
        consumer.name = info.name
        if consumer.replay is None:
            return
        delivered = info.delivered.consumer_seq if info.delivered is not None else 0
        consumer.replay_target = delivered + (info.num_pending or 0)
        if consumer.delivered >= consumer.replay_target:
            consumer.caught_up.set()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(REPLAY_TIMEOUT):
                await consumer.caught_up.wait()
        # No await from here on: every later message goes through `_offer`.
        feed.sub.replay, consumer.replay = consumer.replay, None
        if feed.sub.replay:
            feed.sub.last_cursor = max(feed.sub.last_cursor, feed.sub.replay[-1].cursor)

    async def _on_js_msg(self, feed: _Feed, consumer: _Consumer, msg: Msg) -> None:
        if feed.consumer is not consumer:
            return  # replaced by add_keys, or closed
        consumer.seen = asyncio.get_running_loop().time()
        headers = msg.headers or {}
        if not msg.data and headers.get("Status") == "100":  # heartbeat or flow control
            for reply in (msg.reply, headers.get("Nats-Consumer-Stalled")):
                if reply:  # we read as fast as it comes: answer at once
                    await self._nc.publish(reply)
            last = headers.get("Nats-Last-Consumer")
            if last is not None and int(last) != consumer.delivered:
                feed.sub._fail(SubscriptionClosed("the NATS consumer skipped messages"))
            return
        meta = msg.metadata
        if meta.sequence.consumer != consumer.delivered + 1:
            feed.sub._fail(SubscriptionClosed("the NATS consumer skipped messages"))
            return
        consumer.delivered = meta.sequence.consumer
        delivery = self._decode(msg, meta.sequence.stream, shared=True)
        if delivery is not None and consumer.replay is None:
            feed.sub._offer(delivery)
        elif delivery is not None and consumer.replay is not None:
            consumer.replay.append(delivery)
        if consumer.delivered >= consumer.replay_target >= 0 or meta.num_pending == 0:
            consumer.caught_up.set()

    async def _join(self, sub: Subscription, keys: Iterable[str]) -> None:
        for key in keys:
            channel = self._channels.get(key)
            if channel is None:
                channel = self._channels[key] = _Channel()
                cb = functools.partial(self._on_core_msg, channel)
                channel.nsub = await self._nc.subscribe(subject_of(key), cb=cb)
            channel.subs.add(sub)
        await self._barrier()  # the broker has our SUBs: the subscription is live

    async def _on_core_msg(self, channel: _Channel, msg: Msg) -> None:
        self._counter += 1
        delivery = self._decode(msg, self._counter)
        if delivery is not None:
            for sub in list(channel.subs):
                sub._offer(delivery)

    def _decode(self, msg: Msg, cursor: int, *, shared: bool = False) -> Delivery | None:
        try:
            return (_decode_shared if shared else decode)(msg.subject, msg.data, cursor)
        except (ValueError, KeyError, TypeError):
            log.warning("dropped an undecodable bus message", extra={"subject": msg.subject})
            return None

    async def add_keys(self, subscription: Subscription, keys: Sequence[str]) -> None:
        if subscription in self._member_of and set(keys) - subscription.keys:
            # Its streams now differ from its peers': leave the shared consumer for one of its
            # own, which starts right after what the shared one delivered to it.
            self._leave_fanout(subscription)
            self._feeds[subscription] = _Feed(subscription)
            subscription._detach = self._detach
        feed = self._feeds.get(subscription)
        if feed is None:
            return
        async with feed.lock:
            new = [k for k in dict.fromkeys(keys) if k not in subscription.keys]
            if not new or subscription._detach is None:
                return
            subscription.keys.update(new)
            old = feed.consumer
            try:
                if self._jetstream:
                    # One step: the old consumer is ignored from the cursor the new one starts
                    # after; `_offer` drops anything the new one repeats.
                    await self._attach(feed, subscription.last_cursor + 1, replay=False)
                else:
                    await self._join(subscription, new)
            except (BusError, *_NATS_ERRORS) as error:
                subscription._fail(SubscriptionClosed(f"could not add streams: {error!r}"))
            finally:
                if old is not None:
                    self._spawn(self._release(old))

    def _detach(self, sub: Subscription) -> None:
        feed = self._feeds.pop(sub, None)
        if feed is not None and feed.consumer is not None:
            consumer, feed.consumer = feed.consumer, None
            consumer.caught_up.set()  # a subscribe still collecting its replay returns now
            self._spawn(self._release(consumer))
        for key in sub.keys:
            channel = self._channels.get(key)
            if channel is not None:
                channel.subs.discard(sub)
                if not channel.subs:
                    del self._channels[key]
                    self._spawn(self._release(channel.nsub))

    async def _release(self, what: _Consumer | NatsSubscription | None) -> None:
        nsub, name = (what.inbox, what.name) if isinstance(what, _Consumer) else (what, "")
        with contextlib.suppress(*_NATS_ERRORS):
            if nsub is not None:
                await nsub.unsubscribe()
            if name and self._nc.is_connected:
                async with asyncio.timeout(ACK_TIMEOUT * 2):
                    await self._js.delete_consumer(self._s.nats_stream_name, name)

    async def _watch_consumers(self) -> None:
        """A consumer that stops heartbeating (lost by the broker) must not stall its stream."""
        while True:
            await asyncio.sleep(HEARTBEAT)
            deadline = asyncio.get_running_loop().time() - 3 * HEARTBEAT
            for feed in list(self._feeds.values()):
                consumer = feed.consumer
                if consumer is not None and consumer.name and consumer.seen < deadline:
                    feed.sub._fail(SubscriptionClosed("the NATS consumer stopped heartbeating"))

    # -- notices ---------------------------------------------------------------------------------

    async def announce(self, notice: Notice) -> None:
        await self._dispatch(notice)
        if isinstance(notice, TokenRevoked):
            body: dict[str, Any] = {"tokenRevoked": {"tokenId": notice.token_id}}
        else:
            body = {"descendantCreated": {"parentId": notice.parent_id, "childId": notice.child_id}}
        try:
            if not self.healthy:
                raise BusError("not connected to NATS")
            body["origin"] = self._id
            await self._nc.publish(NOTICE_SUBJECT, json.dumps(body).encode())
            await self._barrier()
        except (BusError, *_NATS_ERRORS) as error:
            # Other instances miss it; revocations still reach them through the store.
            log.warning("notice not sent to other instances", extra={"reason": repr(error)})

    def on_notice(self, listener: NoticeListener) -> None:
        self._listeners.append(listener)

    async def _on_notice_msg(self, msg: Msg) -> None:
        try:
            body = json.loads(msg.data)
            if body.get("origin") == self._id:
                return  # handed to our listeners when announced
            notice: Notice
            if "tokenRevoked" in body:
                notice = TokenRevoked(str(body["tokenRevoked"]["tokenId"]))
            else:
                created = body["descendantCreated"]
                notice = DescendantCreated(str(created["parentId"]), str(created["childId"]))
        except (ValueError, KeyError, TypeError):
            log.warning("dropped an undecodable notice")
            return
        await self._dispatch(notice)

    async def _dispatch(self, notice: Notice) -> None:
        for listener in list(self._listeners):
            try:
                await listener(notice)
            except Exception:
                log.exception("notice listener failed")

    # -- connection ------------------------------------------------------------------------------

    async def _ensure_stream(self) -> None:
        """Create the stream, or update it to these limits; concurrent starts are fine."""
        config = api.StreamConfig(
            name=self._s.nats_stream_name, subjects=[SUBJECT_PREFIX + ">"],
            storage=api.StorageType.MEMORY, max_age=self._s.nats_max_age,
            max_bytes=self._s.nats_max_bytes, num_replicas=1,
        )  # fmt: skip
        # A memory stream is lost when the broker restarts. Starting a new one at a sequence
        # derived from the clock keeps cursors increasing across such losses, so a cursor of the
        # lost stream is "older than retention" (a `gap`), never silently misplaced in the new one.
        fresh = replace(config, first_seq=time.time_ns() // 1_000_000 * 1000)
        try:
            try:
                await self._js.add_stream(fresh)
            except nats.js.errors.BadRequestError as error:
                if error.err_code != 10058:  # 10058: exists with another configuration
                    raise
                await self._js.update_stream(config)
        except _NATS_ERRORS as error:
            raise BusError(f"cannot set up JetStream stream: {error!r}") from error

    async def _on_disconnected(self) -> None:
        self._up = False
        self._fail_barriers()
        if self._feeds:
            log.warning("lost the NATS connection; ending %d subscriptions", len(self._feeds))
        for sub in list(self._feeds):
            sub._fail(SubscriptionClosed("lost the NATS connection"))

    async def _on_reconnected(self) -> None:
        self._spawn(self._recover())  # nats-py awaits this inside its reconnect loop

    async def _recover(self) -> None:
        if self._jetstream and not self._recovering:
            self._recovering = True
            try:
                await self._ensure_stream()  # a broker restarted without its store lost it
            except BusError as error:
                log.warning("stream check after reconnecting failed", extra={"reason": str(error)})
            finally:
                self._recovering = False
        self._up = self._nc.is_connected

    async def _on_error(self, error: Exception) -> None:
        log.debug("NATS client error: %r", error)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro, name="nats-bus")
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("NATS bus task failed", exc_info=task.exception())
