"""Pack layout and cursor arithmetic of the JetStream bus, without a broker."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
from nats.aio.msg import Msg

from reference_server import bus_packs
from reference_server.bus import End
from reference_server.bus_nats import encode_end, subject_of
from reference_server.bus_packs import (
    PACK,
    decode,
    decode_msg,
    end_cursor,
    next_start,
    pack,
    resumable,
)
from reference_server.events import StreamEventType, TaskStreamEvent, workflow_key


@pytest.fixture(autouse=True)
def parse_everything(monkeypatch: pytest.MonkeyPatch) -> None:
    """Nothing remembered: every body is parsed back from its bytes."""
    monkeypatch.setattr(bus_packs, "_CACHED_BODY", -1)
    monkeypatch.setattr(bus_packs, "_items", {})


def event(workflow_id: str, sequence: int, payload: str = "p") -> TaskStreamEvent:
    return TaskStreamEvent(
        task_execution_id="t", workflow_execution_id=workflow_id, sequence=sequence,
        event_type=StreamEventType.TOKEN, payload=payload, timestamp_ms=1,
    )  # fmt: skip


def test_runs_of_one_stream_are_packed_in_order() -> None:
    events = [event("a", i) for i in range(PACK + 3)] + [event("b", 0)] + [event("a", 99)]
    messages = pack(events, 1 << 20)
    assert [(subject, len(json.loads(body).get("packed", [0]))) for subject, body in messages] == [
        (subject_of(workflow_key("a")), PACK), (subject_of(workflow_key("a")), 3),
        (subject_of(workflow_key("b")), 1), (subject_of(workflow_key("a")), 1),
    ]  # fmt: skip
    assert messages[2][1] == events[PACK + 3].to_json()  # a lone event stays a plain message
    items = [d.item for s, (subject, body) in enumerate(messages) for d in decode(subject, body, s)]
    assert items == events


def test_packs_stay_under_the_max_payload() -> None:
    events = [event("a", i, "x" * 1000) for i in range(10)]
    limit = 3 * len(events[0].to_json()) + 20
    messages = pack(events, limit)
    assert all(len(body) <= limit for _, body in messages)
    assert sum(len(json.loads(body).get("packed", [0])) for _, body in messages) == 10


def test_cursors_are_right_aligned_and_resume_at_the_right_message() -> None:
    ((_, body),) = pack([event("a", 0), event("a", 1), event("a", 2)], 1 << 20)
    single = event("a", 3).to_json()
    subject = subject_of(workflow_key("a"))
    three = [d.cursor for d in decode(subject, body, 10)]
    assert three == [11 * PACK - 3, 11 * PACK - 2, 11 * PACK - 1] == [*three[:2], end_cursor(10)]
    (lone,) = decode(subject, single, 11)
    (end,) = decode(subject, encode_end(End("a", "FAILED")), 12)
    assert three[-1] < lone.cursor == end_cursor(11) < end.cursor == end_cursor(12)
    assert end.item == End("a", "FAILED")
    assert next_start(three[0]) == next_start(three[1]) == 10  # inside: the pack again
    assert next_start(three[2]) == next_start(lone.cursor - PACK) == 11  # after its last item
    assert next_start(end_cursor(9)) == 10


def test_resumable_needs_what_follows_the_cursor_retained() -> None:
    first, last = 10, 20
    assert resumable(end_cursor(first - 1), first, last)  # ended the message before the first
    assert not resumable(end_cursor(first - 1) - 1, first, last)  # inside a pack now gone
    assert resumable(first * PACK, first, last) and resumable(end_cursor(last), first, last)
    assert not resumable(end_cursor(last) + 1, first, last)  # issued by no message
    assert not resumable(-1, first, last)
    assert resumable(end_cursor(first - 1), first, first - 1)  # an empty stream


def test_an_unreadable_message_is_dropped() -> None:
    subject = subject_of(workflow_key("a"))
    for data in (b"{", b"[]", b'{"packed": []}', b'{"packed": [{}]}', b'{"packed": 3}'):
        assert decode_msg(Msg(None, subject=subject, data=data), 1) == ()  # type: ignore[arg-type]
    too_many = {"packed": [json.loads(replace(event("a", 0)).to_json())] * (PACK + 1)}
    assert decode_msg(Msg(None, subject=subject, data=json.dumps(too_many).encode()), 1) == ()  # type: ignore[arg-type]


def test_what_was_published_is_delivered_without_parsing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bus_packs, "_CACHED_BODY", 64 * 1024)
    events = [event("a", i) for i in range(3)]
    ((subject, body),) = pack(events, 1 << 20)
    assert [d.item for d in decode(subject, bytes(bytearray(body)), 7)] == events
    assert all(d.item is e for d, e in zip(decode(subject, body, 7), events, strict=True))
