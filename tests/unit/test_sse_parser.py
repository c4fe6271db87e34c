"""Unit tests of harness.sse.SSEParser against WHATWG "event stream interpretation".

The corpus is modelled on the web-platform-tests ``eventsource/format-*`` cases. Every
case is checked fed whole, byte by byte, split at every single position and in random
chunks: chunking must never change the result.
"""

from __future__ import annotations

import dataclasses
import random
import time
from dataclasses import dataclass, field

import pytest

from harness.wire.sse import SSEComment, SSEEvent, SSEParser

# (event type, data, id, retry)
Ev = tuple[str, str, str | None, int | None]


@dataclass(frozen=True)
class Case:
    name: str
    stream: bytes
    events: list[Ev]
    comments: list[str] = field(default_factory=list)
    last_event_id: str | None = None
    retry: int | None = None


def msg(data: str, id: str | None = None, retry: int | None = None, event: str = "message") -> Ev:
    return (event, data, id, retry)


CORPUS: list[Case] = [
    # -- line endings ------------------------------------------------------------------
    Case("lf", b"data: hello\n\n", [msg("hello")]),
    Case("crlf", b"data: a\r\n\r\ndata: b\r\n\r\n", [msg("a"), msg("b")]),
    Case("cr", b"data: a\r\rdata: b\r\r", [msg("a"), msg("b")]),
    Case(
        "mixed-line-endings",
        b"data: a\r\ndata: b\rdata: c\n\r\ndata: d\r\r\n",
        [msg("a\nb\nc"), msg("d")],
    ),
    Case("crlf-is-one-ending", b"data: a\r\ndata: b\r\n\r\n", [msg("a\nb")]),
    Case("lf-cr-is-two-endings", b"data: x\n\rdata: y\n\n", [msg("x"), msg("y")]),
    Case("cr-cr-lf", b"data: x\r\r\ndata: y\r\n\r\n", [msg("x"), msg("y")]),
    Case("leading-blank-lines", b"\n\r\n\r\ndata: x\n\n", [msg("x")]),
    # -- comments ----------------------------------------------------------------------
    Case(
        "comments-between-fields",
        b": hello\ndata: a\n:no space\n:  two spaces\ndata: b\n: \n\n",
        [msg("a\nb")],
        comments=["hello", "no space", " two spaces", ""],
    ),
    Case("comment-only", b":\n\n: ping\r\n\r\n", [], comments=["", "ping"]),
    Case("comment-with-colon", b":a: b\ndata: x\n\n", [msg("x")], comments=["a: b"]),
    Case("unterminated-comment", b"data: x\n\n: partial", [msg("x")]),
    # -- byte order mark ---------------------------------------------------------------
    Case("bom", b"\xef\xbb\xbfdata: a\n\n", [msg("a")]),
    Case("bom-twice", b"\xef\xbb\xbf\xef\xbb\xbfdata: a\n\ndata: b\n\n", [msg("b")]),
    Case("bom-in-data", b"data: \xef\xbb\xbfa\n\n", [msg("\ufeffa")]),
    Case("bom-later-line", b"data: a\n\n\xef\xbb\xbfdata: b\n\n", [msg("a")]),
    Case("bom-then-comment", b"\xef\xbb\xbf: hi\ndata: a\n\n", [msg("a")], comments=["hi"]),
    # -- id ----------------------------------------------------------------------------
    Case(
        "id-with-nul-ignored",
        b"id: 1\ndata: a\n\nid: 2\x00x\ndata: b\n\nid: \x00\ndata: c\n\n",
        [msg("a", "1"), msg("b", "1"), msg("c", "1")],
        last_event_id="1",
    ),
    Case(
        "id-persists",
        b"id: 7\ndata: a\n\ndata: b\n\nevent: e\ndata: c\n\n",
        [msg("a", "7"), msg("b", "7"), msg("c", "7", event="e")],
        last_event_id="7",
    ),
    Case(
        "empty-id-resets",
        b"id: 7\ndata: a\n\nid\ndata: b\n\nid: 8\n\nid:\ndata: c\n\n",
        [msg("a", "7"), msg("b", ""), msg("c", "")],
        last_event_id="",
    ),
    Case(
        "id-without-data-still-committed",
        b"id: 9\n\ndata: x\n\n",
        [msg("x", "9")],
        last_event_id="9",
    ),
    Case("id-only-stream", b"id: 3\n\n", [], last_event_id="3"),
    Case(
        "id-with-colon-and-spaces",
        b"id:  a:b \ndata: x\n\n",
        [msg("x", " a:b ")],
        last_event_id=" a:b ",
    ),
    Case(
        "id-after-data-same-event",
        b"data: x\nid: 5\n\n",
        [msg("x", "5")],
        last_event_id="5",
    ),
    Case(
        "id-of-unterminated-event-not-committed",
        b"id: 1\ndata: a\n\nid: 2\ndata: b\n",
        [msg("a", "1")],
        last_event_id="1",
    ),
    # -- retry -------------------------------------------------------------------------
    Case("retry-valid", b"retry: 1500\ndata: a\n\n", [msg("a", retry=1500)], retry=1500),
    Case("retry-zero", b"retry: 0\ndata: a\n\n", [msg("a", retry=0)], retry=0),
    Case("retry-no-space", b"retry:250\ndata: a\n\n", [msg("a", retry=250)], retry=250),
    Case("retry-leading-zeros", b"retry: 0042\ndata: a\n\n", [msg("a", retry=42)], retry=42),
    Case(
        "retry-invalid-values-ignored",
        (
            b"retry: 1000\n"
            b"retry: 1.5\nretry: -1\nretry: 12a\nretry:  100\nretry:\nretry\n"
            b"retry: \xc2\xb2\nretry: \xd9\xa3\nretry: 1e3\nretry: 100 \n"
            b"data: a\n\n"
        ),
        [msg("a", retry=1000)],
        retry=1000,
    ),
    Case("retry-without-data", b"retry: 10\n\n", [], retry=10),
    Case(
        "retry-changes-between-events",
        b"data: a\n\nretry: 5\ndata: b\n\nretry: 7\n\ndata: c\n\n",
        [msg("a"), msg("b", retry=5), msg("c", retry=7)],
        retry=7,
    ),
    # -- field parsing -----------------------------------------------------------------
    Case("field-without-colon", b"data\n\ndata\ndata\n\n", [msg(""), msg("\n")]),
    Case("event-without-colon", b"event\ndata: x\n\n", [msg("x")]),
    Case("no-space-after-colon", b"data:a\n\n", [msg("a")]),
    Case("only-one-space-removed", b"data:  a\n\n", [msg(" a")]),
    Case("trailing-space-kept", b"data: a \n\n", [msg("a ")]),
    Case("tab-not-stripped", b"data:\ta\n\n", [msg("\ta")]),
    Case("event-type-space", b"event:  foo\ndata: x\n\n", [msg("x", event=" foo")]),
    Case("value-with-colons", b"data: a: b:c\n\n", [msg("a: b:c")]),
    Case(
        "unknown-fields-ignored",
        b"foo: bar\nData: x\nDATA: y\ndata: z\nevent : q\n data: w\nid : 4\n\n",
        [msg("z")],
    ),
    Case("unknown-field-only", b"foo: bar\n\n", []),
    Case("nul-in-data-kept", b"data: a\x00b\n\n", [msg("a\x00b")]),
    # -- data --------------------------------------------------------------------------
    Case("data-joined", b"data: a\ndata: b\ndata: c\n\n", [msg("a\nb\nc")]),
    Case("empty-data-line", b"data:\n\n", [msg("")]),
    Case("data-then-empty", b"data: a\ndata:\n\n", [msg("a\n")]),
    Case("three-empty-data", b"data:\ndata\ndata:\n\n", [msg("\n\n")]),
    Case("data-with-crlf-inside-lines", b"data: a\r\ndata: \r\n\r\n", [msg("a\n")]),
    # -- event type and dispatch -------------------------------------------------------
    Case(
        "event-types",
        b"event: add\ndata: 1\n\nevent: remove\ndata: 2\n\ndata: 3\n\n",
        [msg("1", event="add"), msg("2", event="remove"), msg("3")],
    ),
    Case("last-event-field-wins", b"event: a\nevent: b\ndata: x\n\n", [msg("x", event="b")]),
    Case("empty-event-is-message", b"event:\ndata: x\n\n", [msg("x")]),
    Case(
        "event-without-data-not-dispatched",
        b"event: foo\n\ndata: x\n\n",
        [msg("x")],  # the event type is reset too
    ),
    Case("unterminated-last-event-lf", b"data: a\n\ndata: b\n", [msg("a")]),
    Case("unterminated-last-event-no-eol", b"data: a\n\ndata: b", [msg("a")]),
    Case("unterminated-after-cr", b"data: a\r\rdata: b\r", [msg("a")]),
    # -- encoding ----------------------------------------------------------------------
    Case(
        "utf8-multibyte",
        "data: héllo €𝄞\nevent: ünï\n\n".encode(),
        [msg("héllo €𝄞", event="ünï")],
    ),
    Case("utf8-id", "id: ✓\ndata: x\n\n".encode(), [msg("x", "✓")], last_event_id="✓"),
    Case("invalid-utf8-replaced", b"data: \xff\xfea\n\n", [msg("\ufffd\ufffda")]),
    Case("truncated-utf8-at-eof", b"data: a\n\ndata: \xe2\x82", [msg("a")]),
]


def _ids(case: Case) -> str:
    return case.name


def _as_tuples(events: list[SSEEvent]) -> list[Ev]:
    return [(e.event, e.data, e.id, e.retry) for e in events]


def _run(chunks: list[bytes]) -> tuple[SSEParser, list[SSEEvent]]:
    parser = SSEParser()
    events: list[SSEEvent] = []
    for i, chunk in enumerate(chunks):
        events += parser.feed(chunk, now=float(i))
    events += parser.close()
    return parser, events


def _check(case: Case, chunks: list[bytes]) -> None:
    assert b"".join(chunks) == case.stream
    parser, events = _run(chunks)
    assert _as_tuples(events) == case.events
    assert [c.text for c in parser.comments] == case.comments
    assert parser.last_event_id == case.last_event_id
    assert parser.retry == case.retry


def test_corpus_names_unique() -> None:
    assert len({c.name for c in CORPUS}) == len(CORPUS)


@pytest.mark.parametrize("case", CORPUS, ids=_ids)
def test_whole(case: Case) -> None:
    _check(case, [case.stream])


@pytest.mark.parametrize("case", CORPUS, ids=_ids)
def test_byte_by_byte(case: Case) -> None:
    _check(case, [case.stream[i : i + 1] for i in range(len(case.stream))])


@pytest.mark.parametrize("case", CORPUS, ids=_ids)
def test_every_split_point(case: Case) -> None:
    s = case.stream
    for i in range(len(s) + 1):
        _check(case, [s[:i], s[i:]])


@pytest.mark.parametrize("case", CORPUS, ids=_ids)
def test_random_chunks_with_empty_ones(case: Case) -> None:
    rng = random.Random(case.name)
    s = case.stream
    for _ in range(20):
        chunks: list[bytes] = []
        pos = 0
        while pos < len(s):
            size = rng.choice([0, 1, 2, 3, 5, 8])
            chunks.append(s[pos : pos + size])
            pos += size
        _check(case, chunks)


# -- targeted behaviour ----------------------------------------------------------------


def test_cr_at_chunk_end_followed_by_lf_is_one_line_ending() -> None:
    parser = SSEParser()
    assert parser.feed(b"data: a\r") == []
    assert parser.feed(b"\ndata: b\r") == []
    assert parser.feed(b"") == []  # an empty chunk must not forget the pending CR
    assert parser.feed(b"\n") == []
    events = parser.feed(b"\r\n")
    assert _as_tuples(events) == [msg("a\nb")]


def test_cr_at_chunk_end_then_cr_dispatches() -> None:
    parser = SSEParser()
    assert parser.feed(b"data: a\r") == []
    assert _as_tuples(parser.feed(b"\r")) == [msg("a")]


def test_event_dispatched_as_soon_as_blank_line_arrives() -> None:
    parser = SSEParser()
    assert parser.feed(b"data: a\n") == []
    assert _as_tuples(parser.feed(b"\n")) == [msg("a")]


def test_utf8_char_split_across_chunks() -> None:
    euro = "€".encode()
    clef = "𝄞".encode()
    parser = SSEParser()
    assert parser.feed(b"data: " + euro[:1]) == []
    assert parser.feed(euro[1:2]) == []
    assert parser.feed(euro[2:] + clef[:3]) == []
    events = parser.feed(clef[3:] + b"\n\n")
    assert [e.data for e in events] == ["€𝄞"]


def test_bom_split_across_chunks_stripped_once() -> None:
    parser = SSEParser()
    assert parser.feed(b"\xef") == []
    assert parser.feed(b"\xbb") == []
    assert parser.feed(b"\xbf") == []
    assert parser.feed(b"\xef\xbb\xbfdata: a\n\n") == []  # "\ufeffdata" is unknown
    assert _as_tuples(parser.feed(b"data: b\n\n")) == [msg("b")]


def test_bom_not_stripped_after_first_text() -> None:
    parser = SSEParser()
    assert parser.feed(b"\n") == []
    events = parser.feed(b"\xef\xbb\xbfdata: a\n\ndata: b\n\n")
    assert [e.data for e in events] == ["b"]  # the late BOM made "\ufeffdata" unknown


def test_received_at_uses_feed_time() -> None:
    parser = SSEParser()
    assert parser.feed(b": hb\ndata: a", now=1.0) == []
    events = parser.feed(b"\n\n: hb2\n", now=2.5)
    assert [e.received_at for e in events] == [2.5]
    assert parser.comments == [SSEComment("hb", 1.0), SSEComment("hb2", 2.5)]


def test_received_at_defaults_to_monotonic() -> None:
    before = time.monotonic()
    parser = SSEParser()
    (event,) = parser.feed(b": c\ndata: a\n\n")
    after = time.monotonic()
    assert before <= event.received_at <= after
    assert before <= parser.comments[0].received_at <= after


def test_unterminated_event_discarded_on_close() -> None:
    parser = SSEParser()
    assert parser.feed(b"id: 1\nretry: 5\nevent: e\ndata: a\n") == []
    assert parser.close() == []
    assert parser.closed
    assert parser.last_event_id is None  # never committed by a blank line
    assert parser.retry == 5  # retry takes effect when the field is parsed
    assert parser.close() == []  # idempotent


def test_feed_after_close_rejected() -> None:
    parser = SSEParser()
    parser.close()
    with pytest.raises(RuntimeError, match="after close"):
        parser.feed(b"data: a\n\n")


def test_initial_state() -> None:
    parser = SSEParser()
    assert parser.last_event_id is None
    assert parser.retry is None
    assert parser.comments == []
    assert not parser.closed


def test_event_id_none_until_set() -> None:
    parser = SSEParser()
    events = parser.feed(b"data: a\n\nid: 1\ndata: b\n\n")
    assert [e.id for e in events] == [None, "1"]


def test_event_json_helper() -> None:
    parser = SSEParser()
    (event,) = parser.feed(b'event: task\ndata: {"id": "t1",\ndata:  "n": [1, 2]}\n\n')
    assert event.event == "task"
    assert event.json() == {"id": "t1", "n": [1, 2]}


def test_event_json_helper_invalid() -> None:
    event = SSEEvent(event="message", data="not json", id=None, retry=None, received_at=0.0)
    with pytest.raises(ValueError):
        event.json()


def test_dataclasses_frozen_with_slots() -> None:
    event = SSEEvent(event="message", data="x", id="1", retry=None, received_at=0.0)
    comment = SSEComment(text="hb", received_at=0.0)
    for obj in (event, comment):
        assert not hasattr(obj, "__dict__")
        with pytest.raises(dataclasses.FrozenInstanceError):
            obj.received_at = 1.0  # type: ignore[misc]
    assert event == SSEEvent("message", "x", "1", None, 0.0)


def test_many_events_in_one_chunk_in_order() -> None:
    stream = b"".join(f"id: {i}\ndata: {i}\n\n".encode() for i in range(500))
    parser = SSEParser()
    events = parser.feed(stream)
    assert [e.data for e in events] == [str(i) for i in range(500)]
    assert parser.last_event_id == "499"


def test_long_line_fed_in_small_chunks() -> None:
    payload = "x" * 100_000
    stream = f"data: {payload}\n\n".encode()
    parser = SSEParser()
    events: list[SSEEvent] = []
    for i in range(0, len(stream), 7):
        events += parser.feed(stream[i : i + 7])
    assert [len(e.data) for e in events] == [100_000]
