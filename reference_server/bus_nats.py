"""What the two NATS buses share: the wire format on NATS and one connection with its notices.

The subjects, the JetStream stream over them and the body of each message are defined here and
nowhere else.

Subjects: the items of stream key `workflow.{id}` travel on `flovyn.streams.workflow.{id}`, those
of `task.{id}` on `flovyn.streams.task.{id}`. A body is JSON: an event is
`TaskStreamEvent.to_json()`; an End marker is `{"end": {"targetId": ..., "status": ...}}` (events
have no top-level `end` key). Notices go over core NATS on `flovyn.control.notices` as
`{"origin": <bus id>, "tokenRevoked": {"tokenId"}}` or `{"origin", "descendantCreated":
{"parentId", "childId"}}`; a bus hands its own notices to its listeners at once and ignores their
echo, so each listener sees each notice exactly once per instance.

The buses themselves: `bus_jetstream.JetStreamBus` (default: replay and resume across instances)
and `bus_core.CoreNatsBus` (`nats_mode="core"`, the seed's live-only pub/sub), both `NatsBus`
over one `NatsLink`; `open_nats_bus` picks one. Losing the connection ends every subscription
with `SubscriptionClosed`: clients resume with their last id instead of stalling on a lost feed.
While disconnected, publishing raises `BusError` at once instead of buffering.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import nats.errors
import nats.js.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext, api

from .bus import Delivery, DescendantCreated, End, Notice, NoticeListener, Notices, TokenRevoked
from .errors import BusError
from .events import TaskStreamEvent
from .settings import Settings

if TYPE_CHECKING:
    from .bus_core import CoreNatsBus
    from .bus_jetstream import JetStreamBus

log = logging.getLogger(__name__)

SUBJECT_PREFIX = "flovyn.streams."
ALL_STREAMS = SUBJECT_PREFIX + ">"
NOTICE_SUBJECT = "flovyn.control.notices"
ACK_TIMEOUT = 1.0  # PubAck or barrier echo
API_TIMEOUT = 5.0  # stream and consumer management
NATS_ERRORS = (nats.errors.Error, TimeoutError, OSError)


def open_nats_bus(settings: Settings) -> JetStreamBus | CoreNatsBus:
    """The NATS bus `settings.nats_mode` asks for (not started)."""
    if settings.nats_mode == "core":
        from .bus_core import CoreNatsBus

        return CoreNatsBus(settings)
    from .bus_jetstream import JetStreamBus

    return JetStreamBus(settings)


def subject_of(stream_key: str) -> str:
    return SUBJECT_PREFIX + stream_key


def encode_end(end: End) -> bytes:
    return json.dumps({"end": {"targetId": end.target_id, "status": end.status}}).encode()


def item_of(body: Any) -> TaskStreamEvent | End:
    """The item a decoded message body carries (KeyError, TypeError or ValueError if none)."""
    end = body.get("end") if isinstance(body, dict) else None
    return End(str(end["targetId"]), str(end["status"])) if end else TaskStreamEvent.from_dict(body)


def decode_msg(msg: Msg, cursor: int) -> Delivery | None:
    """The delivery a bus message carries, or None (logged) when it cannot be read."""
    try:
        item = item_of(json.loads(msg.data))
    except (ValueError, KeyError, TypeError):
        log.warning("dropped an undecodable bus message", extra={"subject": msg.subject})
        return None
    return Delivery(cursor, msg.subject.removeprefix(SUBJECT_PREFIX), item)


async def ensure_stream(js: JetStreamContext, settings: Settings) -> None:
    """Create the JetStream stream over all stream subjects, or update it to these limits
    (storage and replicas included); concurrent starts are fine."""
    config = api.StreamConfig(
        name=settings.nats_stream_name, subjects=[ALL_STREAMS],
        storage=api.StorageType(settings.nats_storage), max_age=settings.nats_max_age,
        max_bytes=settings.nats_max_bytes, num_replicas=settings.nats_replicas,
    )  # fmt: skip
    # A memory stream is lost when the broker restarts. Starting a new one at a sequence
    # derived from the clock keeps cursors increasing across such losses, so a cursor of the
    # lost stream is "older than retention" (a `gap`), never silently misplaced in the new one.
    # Milliseconds * 64 keeps the JetStream bus's cursors below 2**53 (see `bus_packs`).
    fresh = replace(config, first_seq=time.time_ns() // 1_000_000 * 64)
    try:
        for attempt in range(20):
            if attempt:
                await asyncio.sleep(0.25)  # another instance's stream is being created
            try:
                current = (await js.stream_info(config.name or "")).config
            except nats.js.errors.NotFoundError:
                try:
                    # Instances starting together race to create it; on a cluster the loser's
                    # request may go unanswered, and a later round finds the winner's stream.
                    async with asyncio.timeout(ACK_TIMEOUT * 2):
                        await js.add_stream(fresh)
                    return
                except TimeoutError:
                    continue
                except nats.js.errors.BadRequestError as error:
                    if error.err_code != 10058:  # 10058: it exists now
                        raise
                    continue
            if _differs(current, config):
                await js.update_stream(config)
            return
        raise BusError("the stream was neither found nor created")
    except NATS_ERRORS as error:
        raise BusError(f"cannot set up JetStream stream: {error!r}") from error


def _differs(current: api.StreamConfig, wanted: api.StreamConfig) -> bool:
    """True if the limits this server sets differ from the stream's (update it then)."""
    keys = ("subjects", "storage", "max_age", "max_bytes", "num_replicas")
    return any(getattr(current, k) != getattr(wanted, k) for k in keys)


def settle(future: asyncio.Future[Any], result: Any = None, error: Exception | None = None) -> None:
    """Resolve `future` unless it already is (acks and timers race to do it)."""
    if future.done():
        return
    if error is None:
        future.set_result(result)
    else:
        future.set_exception(error)


class NatsBus:
    """What both NATS buses do alike, through their `NatsLink`: health, notices, and turning an
    item into a subject and a body. Each bus says how a body is `send`-t and confirmed."""

    _link: NatsLink

    @property
    def healthy(self) -> bool:
        return self._link.healthy

    async def publish(self, event: TaskStreamEvent) -> None:
        await self.send(subject_of(event.stream_key), event.to_json())

    async def publish_end(self, stream_key: str, end: End) -> None:
        await self.send(subject_of(stream_key), encode_end(end))

    async def send(self, subject: str, body: bytes) -> None:
        """Publish one body on `subject`, returning once the broker has it; BusError if not."""
        raise NotImplementedError

    async def announce(self, notice: Notice) -> None:
        await self._link.announce(notice)

    def on_notice(self, listener: NoticeListener) -> None:
        self._link.on_notice(listener)


class NatsLink:
    """One bus's connection: connecting, health, the publish barrier, notices and the bus's
    background tasks. The bus is told of a lost connection (`on_lost`, to end its subscriptions)
    and of one regained (`on_back`, to restore what the broker may have lost)."""

    def __init__(
        self,
        settings: Settings,
        *,
        on_lost: Callable[[], None],
        on_back: Callable[[], Awaitable[None]],
    ) -> None:
        if not settings.nats_url:
            raise ValueError("a NATS bus needs settings.nats_url")
        self.url: str = settings.nats_url
        # One URL per node of a cluster: nats-py fails over between them.
        self.servers = [url.strip() for url in settings.nats_url.split(",") if url.strip()]
        self.nc = Client()
        self.js = self.nc.jetstream(timeout=API_TIMEOUT)
        self.notices = Notices()
        self._name = f"taskstream-{settings.instance_id}"
        self._on_lost = on_lost
        self._on_back = on_back
        self._id = uuid.uuid4().hex
        self._up = False
        self._started = False
        self._tasks: set[asyncio.Task[None]] = set()
        self._barrier_inbox = ""
        self._barrier_next: asyncio.Future[bool] | None = None
        self._barriers: dict[bytes, asyncio.Future[bool]] = {}

    async def start(self, setup: Callable[[], Awaitable[None]] | None = None) -> None:
        """Connect, then run the bus's `setup`; raises BusError (and disconnects) on failure."""
        nc = self.nc
        self._started = True
        try:
            # max_reconnect_attempts=-1 retries even the first connect forever: bound it here.
            async with asyncio.timeout(API_TIMEOUT):
                await nc.connect(
                    self.servers, name=self._name, allow_reconnect=True,
                    max_reconnect_attempts=-1, reconnect_time_wait=0.5,  # type: ignore[arg-type]
                    connect_timeout=2, error_cb=self._on_error,
                    disconnected_cb=self._on_disconnected, reconnected_cb=self._on_reconnected,
                )  # fmt: skip
            self._barrier_inbox = nc.new_inbox()
            await nc.subscribe(self._barrier_inbox, cb=self._on_barrier)
            await nc.subscribe(NOTICE_SUBJECT, cb=self._on_notice_msg)
            if setup is not None:
                await setup()
        except (BusError, *NATS_ERRORS) as error:
            with contextlib.suppress(*NATS_ERRORS):
                await nc.close()
            raise BusError(f"cannot start the bus on NATS at {self.url}: {error!r}") from error
        self._up = True

    async def close(self) -> None:
        """Wait for the background tasks, then disconnect (the bus ended its feeds first)."""
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._up = False
        if self._started:
            with contextlib.suppress(*NATS_ERRORS):
                await self.nc.close()
        self._fail_barriers()

    @property
    def healthy(self) -> bool:
        return self._up and self.nc.is_connected

    def check_up(self) -> None:
        if not self.healthy:
            raise BusError("not connected to NATS")

    # -- the barrier -----------------------------------------------------------------------------

    async def barrier(self) -> None:
        """Wait until the broker has processed what this connection sent before the call.

        Concurrent core publishes share one barrier: a marker this connection sends itself after
        them, whose echo proves the broker has processed them (nats-py's `flush()` writes its PING
        ahead of buffered commands, so a PONG proves less). Every caller that arrives before the
        marker goes out shares it; an echo that does not come within ACK_TIMEOUT raises BusError.
        """
        future = self._barrier_next
        if future is None:
            future = self._barrier_next = asyncio.get_running_loop().create_future()
            asyncio.get_running_loop().call_later(ACK_TIMEOUT, settle, future, False)
            self.spawn(self._send_barrier(future))
        if not await asyncio.shield(future):
            raise BusError("the broker did not confirm the publish in time")

    async def _send_barrier(self, future: asyncio.Future[bool]) -> None:
        self._barrier_next = None  # later publishes need a later marker
        token = uuid.uuid4().bytes
        self._barriers[token] = future
        try:
            await self.nc.publish(self._barrier_inbox, token)
        except NATS_ERRORS:
            settle(self._barriers.pop(token), False)

    async def _on_barrier(self, msg: Msg) -> None:
        future = self._barriers.pop(msg.data, None)
        if future is not None:
            settle(future, True)

    def _fail_barriers(self) -> None:
        barriers, self._barriers = self._barriers, {}
        for future in barriers.values():
            settle(future, False)

    # -- notices ---------------------------------------------------------------------------------

    async def announce(self, notice: Notice) -> None:
        await self.notices.dispatch(notice)
        if isinstance(notice, TokenRevoked):
            body: dict[str, Any] = {"tokenRevoked": {"tokenId": notice.token_id}}
        else:
            body = {"descendantCreated": {"parentId": notice.parent_id, "childId": notice.child_id}}
        try:
            self.check_up()
            body["origin"] = self._id
            await self.nc.publish(NOTICE_SUBJECT, json.dumps(body).encode())
            await self.barrier()
        except (BusError, *NATS_ERRORS) as error:
            # Other instances miss it; revocations still reach them through the store.
            log.warning("notice not sent to other instances", extra={"reason": repr(error)})

    def on_notice(self, listener: NoticeListener) -> None:
        self.notices.listen(listener)

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
        await self.notices.dispatch(notice)

    # -- connection and tasks --------------------------------------------------------------------

    async def _on_disconnected(self) -> None:
        self._up = False
        self._fail_barriers()
        self._on_lost()

    async def _on_reconnected(self) -> None:
        self.spawn(self.recover())  # nats-py awaits this inside its reconnect loop

    async def recover(self) -> None:
        """Let the bus restore what the broker may have lost, then count as up again."""
        await self._on_back()
        self._up = self.nc.is_connected

    async def _on_error(self, error: Exception) -> None:
        log.debug("NATS client error: %r", error)

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        """Run `coro` in the background; `close` waits for it, a failure is logged."""
        task = asyncio.create_task(coro, name="nats-bus")
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("NATS bus task failed", exc_info=task.exception())
