"""SSE framing: payloads cannot forge fields or events, and survive byte for byte."""

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from harness.wire.sse import SSEParser
from reference_server.sse import encode_comment, encode_event


def _normalized(payload: str) -> str:
    """SSE has one line break on the way out (LF): CRLF and CR arrive as LF. That is the only
    change a payload can undergo; everything else survives byte for byte."""
    return re.sub(r"\r\n|\r", "\n", payload)


def _parse(raw: bytes) -> list[tuple[str, str, str | None]]:
    parser = SSEParser()
    return [(e.event, e.data, e.id) for e in parser.feed(raw)]


def test_single_line_event_has_id_event_and_data() -> None:
    assert encode_event("token", "hello", "7") == b"id: 7\nevent: token\ndata: hello\n\n"


@pytest.mark.parametrize("payload", ["a\nb", "a\rb", "a\r\nb", "a\n\nb", "\n", "x\r", ""])
def test_line_breaks_become_separate_data_lines(payload: str) -> None:
    assert _parse(encode_event("data", payload, "1")) == [("data", _normalized(payload), "1")]


def test_injection_attempt_stays_inside_data() -> None:
    evil = "ok\n\nevent: error\ndata: forged\nid: 999\n\n"
    events = _parse(encode_event("token", evil, "3"))
    assert events == [("token", _normalized(evil), "3")]


def test_leading_space_and_colon_survive() -> None:
    assert _parse(encode_event("token", " :x", "1")) == [("token", " :x", "1")]


def test_unicode_line_separators_do_not_split() -> None:
    payload = "a\u2028b\u0085c"
    raw = encode_event("token", payload, "1")
    assert raw.count(b"data:") == 1
    assert _parse(raw) == [("token", payload, "1")]


def test_event_name_and_id_must_be_single_line() -> None:
    with pytest.raises(ValueError):
        encode_event("tok\nen", "x")
    with pytest.raises(ValueError):
        encode_event("token", "x", "1\r2")


def test_comment_dispatches_nothing() -> None:
    assert _parse(encode_comment("keep-alive")) == []


@given(st.text())
def test_any_payload_round_trips_as_exactly_one_event(payload: str) -> None:
    events = _parse(encode_event("data", payload, "5"))
    assert events == [("data", _normalized(payload), "5")]
