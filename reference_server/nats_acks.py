"""Pipelined JetStream publishes with one wait per batch: every message of a batch carries the
same reply subject, and the PubAcks that come back to it are counted rather than each resolving
its own future (nats-py's `publish_async` costs a task-free wait, a future, a NUID and a JSON
parse per message, which dominated the batched publish path).

An ack is read without parsing it: a PubAck is `{"stream":…,"seq":…}`, a refusal carries
`"error"`, and a publish no stream listens to gets an empty `503` status message.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import nats.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription as NatsSubscription


class NoStream(Exception):
    """No JetStream stream took the messages (the broker lost it)."""


class Refused(Exception):
    """The stream refused a message (its PubAck carried an error)."""


@dataclass(slots=True)
class _Batch:
    left: int
    done: asyncio.Future[None]


class PubAcks:
    """Counts PubAcks per batch on one wildcard inbox of the connection."""

    def __init__(self, timeout: float) -> None:
        self._timeout = timeout
        self._prefix = ""
        self._ids = itertools.count()
        self._batches: dict[str, _Batch] = {}
        self._sub: NatsSubscription | None = None

    async def start(self, nc: Client) -> None:
        self._prefix = nc.new_inbox()
        self._sub = await nc.subscribe(f"{self._prefix}.*", cb=self._on_ack)

    async def publish(self, nc: Client, messages: Sequence[tuple[str, bytes]]) -> None:
        """Publish `messages` in order and wait until the stream has stored every one; raises
        TimeoutError, NoStream or Refused (and nats-py's errors while writing)."""
        if not messages:
            return
        reply = f"{self._prefix}.{next(self._ids)}"
        loop = asyncio.get_running_loop()
        batch = _Batch(len(messages), loop.create_future())
        self._batches[reply] = batch
        try:
            for subject, body in messages:
                await nc.publish(subject, body, reply=reply)
            expiry = loop.call_later(self._timeout, _settle, batch.done, TimeoutError())
            try:
                await batch.done
            finally:
                expiry.cancel()
        finally:
            del self._batches[reply]
            if batch.done.done() and not batch.done.cancelled():
                batch.done.exception()  # retrieved, even when writing failed first

    async def _on_ack(self, msg: Msg) -> None:
        batch = self._batches.get(msg.subject)
        if batch is None:
            return  # a batch that already failed or timed out
        data = msg.data
        if b'"seq"' in data and b'"error"' not in data:
            batch.left -= 1
            if batch.left == 0:
                _settle(batch.done, None)
        elif not data and (msg.headers or {}).get("Status") == "503":
            _settle(batch.done, NoStream())
        else:
            _settle(batch.done, Refused(data[:200].decode(errors="replace")))

    async def close(self) -> None:
        if self._sub is not None:
            sub, self._sub = self._sub, None
            with contextlib.suppress(nats.errors.Error):
                await sub.unsubscribe()
        for batch in list(self._batches.values()):
            _settle(batch.done, TimeoutError("the bus closed"))


def _settle(future: asyncio.Future[None], error: Exception | None) -> None:
    if future.done():
        return
    if error is None:
        future.set_result(None)
    else:
        future.set_exception(error)
