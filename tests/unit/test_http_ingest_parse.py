"""NDJSON lines of the HTTP ingest route: the hand-mapped fast path agrees with protobuf's own
proto3 JSON parser, and nothing a client sends escapes as anything but InvalidArgument."""

from __future__ import annotations

import json

import pytest
from google.protobuf import json_format
from hypothesis import given
from hypothesis import strategies as st

from reference_server.errors import InvalidArgument
from reference_server.http_ingest import parse_line
from taskstream_proto import task_streaming_pb2 as pb

FIELDS = ("taskExecutionId", "workflowExecutionId", "sequence", "type", "payload", "timestampMs")
values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False),
    st.text(max_size=8),
    st.sampled_from(["TOKEN", "DATA", "STREAM_EVENT_TYPE_UNSPECIFIED", "7", "1e3"]),
    st.lists(st.integers(), max_size=2),
)
lines = st.dictionaries(st.sampled_from((*FIELDS, "task_execution_id", "other")), values)


def _protobuf(text: str) -> pb.StreamTaskDataRequest | None:
    try:
        return json_format.Parse(text, pb.StreamTaskDataRequest())
    except (json_format.ParseError, ValueError):
        return None


@given(lines)
def test_parse_line_agrees_with_protobuf(line: dict[str, object]) -> None:
    text = json.dumps(line)
    expected = _protobuf(text)
    if expected is None:
        with pytest.raises(InvalidArgument):
            parse_line(text.encode())
    else:
        assert parse_line(text.encode()) == expected


@given(st.binary(max_size=64))
def test_any_bytes_parse_or_are_invalid_argument(raw: bytes) -> None:
    try:
        parsed = parse_line(raw)
    except InvalidArgument as error:
        assert error.detail.startswith("not a StreamTaskDataRequest")
    else:
        assert isinstance(parsed, pb.StreamTaskDataRequest)


def test_common_spellings() -> None:
    line = {"taskExecutionId": "t", "type": "DATA", "payload": "p", "sequence": -3}
    assert parse_line(json.dumps(line).encode()) == pb.StreamTaskDataRequest(
        task_execution_id="t", type=pb.DATA, payload="p", sequence=-3
    )
    assert parse_line(b'{"type": 99}').type == 99  # open enum: refused later, as by gRPC


@pytest.mark.parametrize("line", [b"[" * 100_000, b'{"payload":' * 50_000, b"\xff\xfe"])
def test_hostile_lines_are_invalid_argument(line: bytes) -> None:
    with pytest.raises(InvalidArgument):
        parse_line(line)
