"""Packed JetStream messages and the cursors (SSE ids) of the JetStream bus.

A batch publish sends each run of consecutive events of one stream as ONE JetStream message, a
pack: `{"packed": [<event>, ...]}` with up to PACK events and at most the broker's max payload.
Its cost on NATS (one publish, one PubAck, one delivery per consumer) is paid per pack, not per
event. A single event (a unary publish, or a run of one) and an End marker stay one message each,
in the format they always had (`bus_nats`), so messages written before packing existed still read.

Cursors: the `i`-th of the `n` items of the message at stream sequence `s` has cursor
`s * PACK + PACK - n + i`. The items of one message are right-aligned below `(s + 1) * PACK`, so
ids are strictly increasing across and within messages, and the last item of a message (a whole
single-event message included) has cursor `(s + 1) * PACK - 1`. Resuming after cursor `c` starts
the consumer at sequence `(c + 1) // PACK`: the next message when `c` ended one, else the pack
holding `c`, whose items up to `c` are skipped. A cursor inside a pack needs that pack retained;
one that ended a message only needs the stream to go on after it (as before packing).

Numbers: a new stream starts at `ms * 64` (`ms` the Unix time in milliseconds, `bus_nats`), so a
cursor today is about 1.8e12 * 64 * 32 = 3.6e15, below 2**53 (9.0e15, the largest integer a
browser holds exactly) until about the year 2100. A stream lost with its broker is replaced by
one starting above all of its cursors if it stored fewer than 64,000 messages per second on
average over its life. Cursors of the bus before packing (plain sequences) read as long-expired
ones: resuming with them yields `gap` and a replay of what is retained, never wrong events.
Instances before packing drop packs as undecodable and number ids otherwise, so a rolling upgrade
within one stream is not supported: upgrade every instance of a stream at once.

Reading a message parses it once per instance: what this instance published is `remember`-ed and
handed to its own subscribers as the very objects published.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence

from nats.aio.msg import Msg

from .bus import Delivery, End
from .bus_nats import SUBJECT_PREFIX, item_of, subject_of
from .events import TaskStreamEvent

log = logging.getLogger(__name__)

PACK = 32  # cursors per stream sequence: the most items one message carries
_JSON = json.JSONEncoder(separators=(",", ":"))  # json.dumps builds one per call
Item = TaskStreamEvent | End


def next_start(after: int) -> int:
    """The stream sequence a consumer resuming after cursor `after` starts at."""
    return (after + 1) // PACK


def end_cursor(sequence: int) -> int:
    """The cursor of the last item of the message at `sequence`."""
    return (sequence + 1) * PACK - 1


def resumable(after: int, first: int, last: int) -> bool:
    """True if the stream (retaining sequences `first`..`last`) holds everything after `after`:
    no gap. A cursor beyond the last message is not one the stream issued."""
    return after >= 0 and first * PACK - 1 <= after <= end_cursor(last)


def pack(events: Sequence[TaskStreamEvent], max_payload: int) -> list[tuple[str, bytes]]:
    """The messages (subject, body) carrying `events` in order: each run of one stream in packs
    of at most PACK events and `max_payload` bytes; a run of one event as a plain event."""
    messages: list[tuple[str, bytes]] = []
    start = 0
    for end in range(1, len(events) + 1):
        if (
            end == len(events)
            or end - start == PACK
            or events[end].stream_key != events[start].stream_key
        ):
            _encode(events[start:end], max_payload, messages)
            start = end
    return messages


def _encode(
    run: Sequence[TaskStreamEvent], max_payload: int, messages: list[tuple[str, bytes]]
) -> None:
    """One run in one body (one encoder call for all of it), halved while it is too large."""
    if len(run) == 1:
        body = run[0].to_json()
    else:
        body = _JSON.encode({"packed": [event.to_dict() for event in run]}).encode()
        if len(body) > max_payload:
            _encode(run[: len(run) // 2], max_payload, messages)
            _encode(run[len(run) // 2 :], max_payload, messages)
            return
    messages.append((subject_of(run[0].stream_key), remember(body, run)))


# The items of recent bodies, by body: what this instance published (`remember`) is delivered
# to its own subscribers without parsing it back, and fan-out to several consumers parses a
# message once. At most _CACHED bodies of at most _CACHED_BODY bytes each (16 MiB).
_CACHED, _CACHED_BODY = 256, 64 * 1024
_items: dict[bytes, tuple[Item, ...]] = {}


def remember(body: bytes, items: Sequence[Item]) -> bytes:
    """Note that `body` carries `items` (what `decode` would read from it); returns `body`."""
    if len(body) <= _CACHED_BODY:
        if len(_items) >= _CACHED:
            del _items[next(iter(_items))]  # the oldest
        _items[body] = tuple(items)
    return body


def _read(data: bytes) -> tuple[Item, ...]:
    items = _items.get(data)
    if items is not None:
        return items
    body = json.loads(data)
    packed = body.get("packed") if isinstance(body, dict) else None
    if packed is None:
        items = (item_of(body),)
    elif isinstance(packed, list) and 0 < len(packed) <= PACK:
        items = tuple(TaskStreamEvent.from_dict(event) for event in packed)
    else:
        raise ValueError("a pack holds 1 to PACK events")
    remember(data, items)
    return items


def decode(subject: str, data: bytes, sequence: int) -> tuple[Delivery, ...]:
    """The items of the message at `sequence`, with their cursors."""
    items = _read(data)
    stream_key = subject.removeprefix(SUBJECT_PREFIX)
    base = end_cursor(sequence) + 1 - len(items)
    return tuple(Delivery(base + i, stream_key, item) for i, item in enumerate(items))


def decode_msg(msg: Msg, sequence: int) -> tuple[Delivery, ...]:
    """The deliveries a message carries; none (logged) when it cannot be read."""
    try:
        return decode(msg.subject, msg.data, sequence)
    except (ValueError, KeyError, TypeError):
        log.warning("dropped an undecodable bus message", extra={"subject": msg.subject})
        return ()
