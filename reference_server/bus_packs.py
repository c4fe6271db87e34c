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
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Sequence

from nats.aio.msg import Msg

from .bus import Delivery
from .bus_nats import SUBJECT_PREFIX, item_of, subject_of
from .events import TaskStreamEvent

log = logging.getLogger(__name__)

PACK = 32  # cursors per stream sequence: the most items one message carries
_OPEN, _CLOSE = b'{"packed":[', b"]}"


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
    run: list[bytes] = []
    size, key = 0, ""

    def close() -> None:
        if len(run) == 1:
            messages.append((subject_of(key), run[0]))
        elif run:
            messages.append((subject_of(key), _OPEN + b",".join(run) + _CLOSE))
        run.clear()

    limit = max_payload - len(_OPEN) - len(_CLOSE)
    for event in events:
        body = event.to_json()
        if event.stream_key != key or len(run) >= PACK or size + len(body) + 1 > limit:
            close()
            size, key = 0, event.stream_key
        run.append(body)
        size += len(body) + 1
    close()
    return messages


def decode(subject: str, data: bytes, sequence: int) -> tuple[Delivery, ...]:
    """The items of the message at `sequence`, with their cursors."""
    body = json.loads(data)
    stream_key = subject.removeprefix(SUBJECT_PREFIX)
    packed = body.get("packed") if isinstance(body, dict) else None
    if packed is None:
        return (Delivery(end_cursor(sequence), stream_key, item_of(body)),)
    if not isinstance(packed, list) or not 0 < len(packed) <= PACK:
        raise ValueError("a pack holds 1 to PACK events")
    base = end_cursor(sequence) + 1 - len(packed)
    return tuple(
        Delivery(base + i, stream_key, TaskStreamEvent.from_dict(event))
        for i, event in enumerate(packed)
    )


# Fan-out decodes each message once, not once per subscriber's consumer (a pack is at most the
# broker's max payload, 1 MiB by default: the cache holds at most 64 of them).
_decode_shared = functools.lru_cache(maxsize=64)(decode)


def decode_msg(msg: Msg, sequence: int) -> tuple[Delivery, ...]:
    """The deliveries a message carries; none (logged) when it cannot be read."""
    try:
        return _decode_shared(msg.subject, msg.data, sequence)
    except (ValueError, KeyError, TypeError):
        log.warning("dropped an undecodable bus message", extra={"subject": msg.subject})
        return ()
